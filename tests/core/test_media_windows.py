"""Windows backend with a fake kernel32 adapter answering as the Win32 API documents."""

from __future__ import annotations

import sys

import pytest

from app.core.devices.media import Volume
from app.core.devices.media_windows import (
    DRIVE_CDROM,
    DRIVE_FIXED,
    DRIVE_NO_ROOT_DIR,
    DRIVE_REMOTE,
    DRIVE_REMOVABLE,
    FILE_READ_ONLY_VOLUME,
    WindowsBackend,
    volume_root,
)

FILE_CASE_SENSITIVE_SEARCH = 0x1
FILE_UNICODE_ON_DISK = 0x4


class FakeKernel32:
    """Drives C: (NTFS), D: (CD with a disc), E: (FAT32 stick), F: (empty card reader),
    G: (empty CD drive), Z: (network share); bit for Q: set but no root dir."""

    drives = {
        "C": (DRIVE_FIXED, ("Windows", "NTFS", FILE_CASE_SENSITIVE_SEARCH), (10**11, 5 * 10**11)),
        "D": (DRIVE_CDROM, ("DICOM_CD", "CDFS", FILE_READ_ONLY_VOLUME | FILE_UNICODE_ON_DISK),
              (0, 300482560)),
        "E": (DRIVE_REMOVABLE, ("PATIENT", "FAT32", 0x2), (15 * 10**9, 16 * 10**9)),
        "F": (DRIVE_REMOVABLE, None, None),
        "G": (DRIVE_CDROM, None, None),
        "Q": (DRIVE_NO_ROOT_DIR, None, None),
        "Z": (DRIVE_REMOTE, ("share", "NTFS", 0), (1, 2)),
    }

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def logical_drives(self) -> int:
        return sum(1 << (ord(k) - ord("A")) for k in self.drives)

    def drive_type(self, root: str) -> int:
        self.calls.append(("type", root))
        return self.drives[root[0]][0]

    def volume_information(self, root: str) -> tuple[str, str, int] | None:
        self.calls.append(("info", root))
        return self.drives[root[0]][1]

    def disk_free_space(self, root: str) -> tuple[int, int] | None:
        self.calls.append(("space", root))
        return self.drives[root[0]][2]


def test_volumes_from_fake_kernel32() -> None:
    k = FakeKernel32()
    vols = WindowsBackend(k).list_volumes()
    assert vols == [
        Volume("C:\\", "Windows", "\\\\.\\C:", "fixed", 10**11, 5 * 10**11, False, "NTFS"),
        Volume("D:\\", "DICOM_CD", "\\\\.\\D:", "optical", 0, 300482560, True, "CDFS"),
        Volume("E:\\", "PATIENT", "\\\\.\\E:", "usb", 15 * 10**9, 16 * 10**9, False, "FAT32"),
        Volume("Z:\\", "", "\\\\.\\Z:", "network", 0, 0, False, None),
    ]
    assert ("info", "Q:\\") not in k.calls  # no root dir: not even asked
    assert ("space", "F:\\") not in k.calls  # empty reader: no volume, no size query
    assert ("info", "Z:\\") not in k.calls and ("space", "Z:\\") not in k.calls


def test_filesystem_type_and_roots() -> None:
    backend = WindowsBackend(FakeKernel32())
    assert backend.filesystem_type("E:\\PA001\\ST001") == "FAT32"
    assert backend.filesystem_type("e:/x") == "FAT32"
    assert backend.filesystem_type("G:\\") is None
    assert backend.filesystem_type("relative\\path") is None
    assert volume_root("\\\\server\\share\\dir") == "\\\\server\\share\\"
    assert volume_root("\\\\server") is None


@pytest.mark.skipif(sys.platform == "win32", reason="checks the non-Windows failure mode")
def test_real_adapter_needs_windows() -> None:
    with pytest.raises((AttributeError, OSError)):
        WindowsBackend().list_volumes()
