"""macOS media detection: ``/Volumes`` + ``diskutil info -plist <mount point>``.

``diskutil info -plist`` prints a property list (parsed with :mod:`plistlib`) with, among
others: ``VolumeName``, ``FilesystemType`` (``msdos``, ``exfat``, ``apfs``, ``hfs``, ``cd9660``,
``udf``, ``ntfs``), ``FilesystemName`` (``MS-DOS FAT32``), ``Removable``/``RemovableMedia``,
``Ejectable``, ``Internal``, ``BusProtocol`` (``USB``, ``SATA``, ``Disk Image``, ``PCI-Express``),
``OpticalDeviceType``/``OpticalMediaType`` (present only for optical media), ``WritableVolume``,
``TotalSize``, ``FreeSpace`` or ``APFSContainerFree``, ``DeviceNode`` (``/dev/disk4s1``) and
``VirtualOrPhysical``. A ``/Volumes`` entry diskutil does not know is a network share (SMB, AFP,
NFS mounts have no disk). The runner is injectable: tests feed recorded plists.
"""

from __future__ import annotations

import os
import plistlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.devices.volumes import Volume, VolumeKind

Runner = Callable[[list[str]], tuple[int, bytes]]


def _default_runner(args: list[str]) -> tuple[int, bytes]:
    try:
        done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return 1, b""
    return done.returncode, done.stdout


def diskutil_info(path: str, runner: Runner = _default_runner) -> dict[str, Any] | None:
    """``diskutil info -plist PATH`` as a dict, or None when diskutil does not know it."""
    rc, out = runner(["diskutil", "info", "-plist", path])
    if rc != 0 or not out:
        return None
    try:
        info = plistlib.loads(out)
    except (plistlib.InvalidFileException, ValueError, TypeError):
        return None
    return info if isinstance(info, dict) else None


def classify(info: dict[str, Any]) -> VolumeKind:
    """The kind of a volume from its diskutil info."""
    optical_fs = info.get("FilesystemType") in ("cd9660", "udf") and bool(info.get("Ejectable"))
    if info.get("OpticalDeviceType") or info.get("OpticalMediaType") or optical_fs:
        return "optical"
    if info.get("BusProtocol") == "Disk Image":
        return "image"
    removable = bool(info.get("Removable") or info.get("RemovableMedia")
                     or info.get("RemovableMediaOrExternalDevice"))
    external = info.get("Internal") is False
    if removable or (external and info.get("Ejectable")) or info.get("BusProtocol") in (
            "USB", "Secure Digital"):
        return "usb"
    return "fixed"


class MacBackend:
    """:class:`app.core.devices.media.MediaBackend` for macOS."""

    def __init__(self, volumes_dir: str | os.PathLike[str] = "/Volumes",
                 runner: Runner = _default_runner,
                 statvfs: Callable[[str], os.statvfs_result] = os.statvfs) -> None:
        self.volumes_dir = Path(volumes_dir)
        self.runner = runner
        self.statvfs = statvfs

    def list_volumes(self) -> list[Volume]:
        try:
            names = sorted(os.listdir(self.volumes_dir))
        except OSError:
            return []
        out: list[Volume] = []
        for name in names:
            if name.startswith("."):
                continue
            mount = str(self.volumes_dir / name)
            info = diskutil_info(mount, self.runner)
            out.append(self.volume(mount, name, info))
        return out

    def volume(self, mount: str, name: str, info: dict[str, Any] | None) -> Volume:
        if info is None:  # SMB/AFP/NFS shares have no disk behind them
            return Volume(mount, name, "", "network", 0, 0, False, None)
        kind = classify(info)
        total = int(info.get("TotalSize") or info.get("VolumeSize") or info.get("Size") or 0)
        free = int(info.get("FreeSpace") or info.get("APFSContainerFree")
                   or info.get("VolumeAvailableSpace") or 0)
        if not total:
            try:
                st = self.statvfs(mount)
                free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
            except OSError:
                pass
        writable = info.get("WritableVolume", info.get("Writable"))
        read_only = writable is False or kind == "optical"
        return Volume(mount_point=mount, label=str(info.get("VolumeName") or name),
                      device=str(info.get("DeviceNode") or ""), kind=kind, free_bytes=free,
                      total_bytes=total, read_only=read_only,
                      filesystem=info.get("FilesystemType") or None)

    def filesystem_type(self, path: str) -> str | None:
        """``FilesystemType`` of the volume holding ``path`` (``msdos``, ``exfat``, ``apfs``…)."""
        info = diskutil_info(path, self.runner)
        return None if info is None else (info.get("FilesystemType") or None)
