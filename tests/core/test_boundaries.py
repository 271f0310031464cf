"""Architecture rules that must hold mechanically: the core never imports Qt."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import app.core

ROOT = Path(__file__).resolve().parents[2]


def test_every_core_module_imports_without_qt() -> None:
    names = sorted(m.name for m in pkgutil.walk_packages(app.core.__path__, "app.core."))
    assert len(names) > 30
    code = (
        "import importlib, sys\n"
        f"names = {names!r}\n"
        "for n in names:  # the Windows/macOS backends too: their OS imports are lazy\n"
        "    importlib.import_module(n)\n"
        "qt = sorted(m for m in sys.modules if m.startswith(('PySide6', 'shiboken6')))\n"
        "print(','.join(qt))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"app.core pulled in Qt: {out.stdout.strip()}"


def test_no_core_source_mentions_a_qt_import() -> None:
    offenders = [p.name for p in (ROOT / "app" / "core").rglob("*.py")
                 if any(line.lstrip().startswith(("import PySide6", "from PySide6"))
                        for line in p.read_text(encoding="utf-8").splitlines())]
    assert offenders == []


def test_data_dictionary_without_pydicom_sources() -> None:
    """A frozen build has no ``pydicom/_dicom_dict.py`` on disk: the parser must still work."""
    code = (
        "import importlib.util, tempfile, types\n"
        "empty = tempfile.mkdtemp()  # pydicom's package folder as a frozen build has it\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: (\n"
        "    types.SimpleNamespace(submodule_search_locations=[empty])\n"
        "    if name == 'pydicom' else real(name, *a))\n"
        "from app.core.dicom import elements as dcmbytes\n"
        "d = dcmbytes.dicom_dictionary()\n"
        "assert d[0x00100010][0] == 'PN', d[0x00100010]\n"
        "assert dcmbytes.dictionary_vr(0x00200013) == 'IS'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
