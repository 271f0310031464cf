"""Write the Windows version resource (PyInstaller VSVersionInfo format) from app.__version__."""

from __future__ import annotations

from pathlib import Path

TEMPLATE = """# UTF-8
VSVersionInfo(
  ffi=FixedFileInfo(filevers={t}, prodvers={t}, mask=0x3f, flags=0x0, OS=0x40004,
                    fileType=0x1, subtype=0x0, date=(0, 0)),
  kids=[
    StringFileInfo([StringTable('040904B0', [
      StringStruct('CompanyName', 'DiscBridge contributors'),
      StringStruct('FileDescription', 'DiscBridge - DICOM CDs, DVDs and USB sticks'),
      StringStruct('FileVersion', '{v}'),
      StringStruct('InternalName', 'DiscBridge'),
      StringStruct('LegalCopyright', 'DiscBridge contributors'),
      StringStruct('OriginalFilename', 'DiscBridge.exe'),
      StringStruct('ProductName', 'DiscBridge'),
      StringStruct('ProductVersion', '{v}')])]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])
  ]
)
"""


def write_version_info(version: str, dest: Path) -> None:
    parts = [int(p) for p in version.split(".")[:4] if p.isdigit()]
    parts += [0] * (4 - len(parts))
    dest.write_text(TEMPLATE.format(t=tuple(parts), v=version), encoding="utf-8")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import app

    write_version_info(app.__version__, Path(__file__).with_name("version_info.txt"))
