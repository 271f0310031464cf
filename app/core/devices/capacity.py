"""How much fits on a medium, and whether a USB stick has the filesystem PS3.12 requires.

Capacities (bytes of user data, 2048-byte sectors):

========  ==========================  ================  ==============
media     raw data capacity           sectors           CAPACITY
========  ==========================  ================  ==============
cd        CD-R 80 min                 360,000           722,534,400
dvd       DVD±R single layer          2,295,104         4,606,365,532
dvd-dl    DVD+R dual layer            4,173,824         8,377,031,720
bd        BD-R single layer           12,219,392        24,524,808,519
========  ==========================  ================  ==============

:data:`CAPACITY` is the raw capacity minus :data:`SAFETY_MARGIN` (2 %): room for the ISO 9660 /
UDF structures (volume descriptors, path tables, directory records, UDF file entries), the
300 KiB of padding xorriso/cdrecord add, and media that are a few sectors short of nominal. It is
compared with the *sector-rounded* size of the files (:func:`image_size_estimate`), so the
per-file rounding waste is counted exactly and not hidden in the margin. The issue's "CD 700 MB"
is met: 722.5 MB (689 MiB) of payload on an 80-minute CD-R. For USB the capacity is the free
space of the stick (:func:`free_space`).

USB sticks must be FAT16 or FAT32 [STANDARDS.md §5, PS3.12 Annex R]: :func:`usb_filesystem_warning`
says so for exFAT, NTFS, ext4, APFS, HFS+ and others. DiscBridge never reformats anything.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

SECTOR = 2048
RAW_SECTORS: dict[str, int] = {
    "cd": 360_000,  # 80-minute CD-R: 737,280,000 bytes of Mode 1 data
    "dvd": 2_295_104,  # DVD-R / DVD+R single layer (4.7 GB)
    "dvd-dl": 4_173_824,  # DVD+R DL (8.5 GB)
    "bd": 12_219_392,  # BD-R single layer (25 GB)
}
RAW_CAPACITY: dict[str, int] = {k: v * SECTOR for k, v in RAW_SECTORS.items()}
SAFETY_MARGIN = 0.02
CAPACITY: dict[str, int] = {k: int(v * (1 - SAFETY_MARGIN)) for k, v in RAW_CAPACITY.items()}

# FAT names as each OS reports them (Linux mountinfo, macOS diskutil, Windows).
FAT_NAMES = frozenset({"vfat", "msdos", "fat", "fat12", "fat16", "fat32", "umsdos"})
_KNOWN_NONCONFORMANT: dict[str, str] = {
    "exfat": "exFAT", "ntfs": "NTFS", "ntfs3": "NTFS", "fuseblk": "NTFS or exFAT (FUSE)",
    "ext2": "ext2", "ext3": "ext3", "ext4": "ext4", "btrfs": "Btrfs", "xfs": "XFS",
    "apfs": "APFS", "hfs": "HFS+", "hfsplus": "HFS+", "udf": "UDF", "iso9660": "ISO 9660",
    "f2fs": "F2FS", "refs": "ReFS",
}


def image_size_estimate(file_sizes: Iterable[int], n_dirs: int, udf: bool = False) -> int:
    """Upper estimate of the ISO image for files of these sizes in ``n_dirs`` directories.

    Every file occupies whole sectors; each directory takes at least one sector of records
    (more for big ones: one 2048-byte sector per ~40 records of 8.3 names) plus path-table
    entries; 16 system sectors, descriptors and 150 sectors of padding are added, and UDF adds
    a file entry sector per file and directory plus its anchor and descriptor sequences.
    """
    sizes = list(file_sizes)
    data = sum(-(-s // SECTOR) for s in sizes)
    records = len(sizes) + n_dirs
    dir_sectors = n_dirs + 1 + -(-records // 40)
    path_table = 4 * (1 + -(-(n_dirs * 18) // SECTOR))
    overhead = 16 + 4 + path_table + dir_sectors + 150
    if udf:
        overhead += records + 1 + 270
    return (data + overhead) * SECTOR


def fits(media: str, file_sizes: Iterable[int], n_dirs: int) -> bool:
    """Whether files of these sizes fit on ``media`` (``cd``, ``dvd``, ``dvd-dl``, ``bd``)."""
    return image_size_estimate(file_sizes, n_dirs, udf=media == "bd") <= CAPACITY[media]


def _existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path).absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def free_space(path: str | os.PathLike[str]) -> int:
    """Bytes free for this user at ``path`` (or its nearest existing parent)."""
    return shutil.disk_usage(_existing(path)).free


def filesystem_type(path: str | os.PathLike[str], *, platform: str | None = None,
                    backend: object | None = None) -> str | None:
    """The filesystem holding ``path`` as the OS names it, or None when it cannot be told.

    Linux: the ``/proc/self/mountinfo`` entry with the longest mount-point prefix (``fuseblk``
    resolved to ``ntfs``/``exfat`` by reading the boot sector when permitted); macOS:
    ``diskutil info -plist`` ``FilesystemType``; Windows: ``GetVolumeInformationW``.
    ``backend`` (anything with a ``filesystem_type(path)`` method) replaces the OS backend.
    """
    target = str(_existing(path))
    if backend is None:
        platform = platform or sys.platform
        if platform.startswith("linux"):
            from app.core.devices.media_linux import LinuxBackend

            backend = LinuxBackend()
        elif platform == "darwin":
            from app.core.devices.media_macos import MacBackend

            backend = MacBackend()
        elif platform in ("win32", "cygwin"):
            from app.core.devices.media_windows import WindowsBackend

            backend = WindowsBackend()
        else:
            return None
    query: Callable[[str], str | None] = backend.filesystem_type  # type: ignore[attr-defined]
    try:
        return query(target)
    except OSError:
        return None


def usb_filesystem_warning(path: str | os.PathLike[str], *, fs: str | None = None,
                           backend: object | None = None) -> str | None:
    """A warning when the volume at ``path`` is not FAT16/FAT32 (PS3.12 Annex R), else None.

    ``fs`` skips the lookup (the filesystem name as any OS reports it). Nothing is changed on
    the volume: DiscBridge never reformats.
    """
    name = fs if fs is not None else filesystem_type(path, backend=backend)
    if name is None:
        return (f"{path}: cannot tell the filesystem; PS3.12 requires FAT16 or FAT32 on USB "
                "media, so make sure the stick is formatted that way")
    key = name.strip().lower().replace("-", "").replace(" ", "")
    if key in FAT_NAMES or key.startswith(("msdosfat", "fat")):
        return None
    shown = _KNOWN_NONCONFORMANT.get(key, name)
    return (f"{path}: the stick is formatted {shown}; DICOM (PS3.12 Annex R) requires FAT16 or "
            "FAT32 on USB media, so some systems may not read it. DiscBridge will write it "
            "anyway and never reformats; reformat it as FAT32 yourself if the receiver "
            "needs a conformant medium")
