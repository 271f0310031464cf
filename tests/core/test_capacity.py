"""Media capacities, image size estimates against real images, free space, USB filesystem rule."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from app.core.devices.capacity import (
    CAPACITY,
    RAW_CAPACITY,
    SAFETY_MARGIN,
    filesystem_type,
    fits,
    free_space,
    image_size_estimate,
    usb_filesystem_warning,
)
from app.core.devices.iso_image import write_iso


def test_capacities_and_margin() -> None:
    assert RAW_CAPACITY == {"cd": 737_280_000, "dvd": 4_700_372_992, "dvd-dl": 8_547_991_552,
                            "bd": 25_025_314_816}
    for media, raw in RAW_CAPACITY.items():
        assert CAPACITY[media] == int(raw * (1 - SAFETY_MARGIN))
    assert 700 * 10**6 < CAPACITY["cd"] < 700 * 2**20  # "CD 700 MB", margin included
    assert CAPACITY["dvd"] < 4_700_000_000 and CAPACITY["bd"] < 25_000_000_000


def _tree(root: Path, sizes: list[int], per_dir: int) -> int:
    n_dirs = 0
    for i, size in enumerate(sizes):
        if i % per_dir == 0:
            folder = root / "PA001" / "ST001" / f"SE{i // per_dir:03d}"
            folder.mkdir(parents=True)
            n_dirs += 1
        (folder / f"IM{i:06d}").write_bytes(b"\x5a" * size)
    (root / "DICOMDIR").write_bytes(b"d" * 5000)
    return n_dirs + 2  # PA001, ST001


@pytest.mark.parametrize(("sizes", "per_dir", "udf"), [
    ([1] * 400, 400, False),  # one big directory of tiny files
    ([70_000, 3_000_000, 1, 2049] * 30, 7, False),
    ([5000] * 300, 50, True),
])
def test_estimate_bounds_real_images(tmp_path: Path, sizes: list[int], per_dir: int,
                                     udf: bool) -> None:
    n_dirs = _tree(tmp_path / "st", sizes, per_dir)
    iso = tmp_path / "x.iso"
    write_iso(tmp_path / "st", iso, "EST", udf=udf)
    actual = iso.stat().st_size
    estimate = image_size_estimate([*sizes, 5000], n_dirs, udf=udf)
    assert actual <= estimate <= actual + 600 * 2048, (actual, estimate)


def test_fits() -> None:
    assert fits("cd", [10**6] * 700, 10)
    assert not fits("cd", [10**6] * 737, 10)
    assert fits("bd", [10**9] * 24, 3)
    assert not fits("dvd", [2**32 - 1, 2**31], 1)


def test_free_space(tmp_path: Path) -> None:
    assert free_space(tmp_path) == shutil.disk_usage(tmp_path).free
    # A destination folder that does not exist yet: its nearest existing parent counts.
    assert free_space(tmp_path / "new" / "folder") == shutil.disk_usage(tmp_path).free


class FakeBackend:
    def __init__(self, answer: str | None | Exception) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def filesystem_type(self, path: str) -> str | None:
        self.asked.append(path)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_filesystem_type_with_backends(tmp_path: Path) -> None:
    b = FakeBackend("msdos")
    assert filesystem_type(tmp_path / "not" / "yet", backend=b) == "msdos"
    assert b.asked == [str(tmp_path)]
    assert filesystem_type(tmp_path, backend=FakeBackend(OSError("EIO"))) is None
    assert filesystem_type(tmp_path, platform="plan9") is None


def test_filesystem_type_real_linux(tmp_path: Path) -> None:
    findmnt = shutil.which("findmnt")
    if findmnt is None:
        pytest.skip("findmnt (util-linux) not installed")
    want = subprocess.run([findmnt, "-n", "-o", "FSTYPE", "-T", str(tmp_path)],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert filesystem_type(tmp_path, platform="linux") == want


@pytest.mark.parametrize("fs", ["vfat", "msdos", "FAT32", "FAT", "fat16", "MS-DOS FAT32"])
def test_fat_is_fine(fs: str) -> None:
    assert usb_filesystem_warning("/media/STICK", fs=fs) is None


@pytest.mark.parametrize(("fs", "shown"), [
    ("exfat", "exFAT"), ("exFAT", "exFAT"), ("NTFS", "NTFS"), ("ntfs3", "NTFS"),
    ("ext4", "ext4"), ("apfs", "APFS"), ("hfs", "HFS+"), ("hfsplus", "HFS+"),
    ("fuseblk", "NTFS or exFAT (FUSE)"), ("zfs", "zfs"),
])
def test_other_filesystems_warn(fs: str, shown: str) -> None:
    msg = usb_filesystem_warning("/media/STICK", fs=fs)
    assert msg is not None
    assert msg.startswith(f"/media/STICK: the stick is formatted {shown}; ")
    assert "FAT16 or FAT32" in msg and "never reformats" in msg


def test_unknown_filesystem_warns(tmp_path: Path) -> None:
    msg = usb_filesystem_warning(tmp_path, backend=FakeBackend(None))
    assert msg is not None and "cannot tell the filesystem" in msg
    assert usb_filesystem_warning(tmp_path, backend=FakeBackend("vfat")) is None
