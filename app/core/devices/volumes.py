"""A mounted volume as every media-detection backend reports it (shared by the registry in
:mod:`app.core.devices.media` and its per-OS backends, which import it from here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

VolumeKind = Literal["optical", "usb", "fixed", "network", "image"]


@dataclass(frozen=True)
class Volume:
    """A mounted volume.

    ``label`` is the filesystem label ("" when it has none or it cannot be read); ``device`` the
    OS device (``/dev/sr0``, ``disk4s1``, ``\\\\.\\E:``; "" when unknown); ``kind`` is ``optical``
    (CD/DVD/BD), ``usb`` (removable: USB sticks and disks, SD cards), ``fixed``, ``network`` or
    ``image`` (a mounted disc image or loop device); sizes in bytes (0 when unknown, e.g. network
    volumes, which are never asked so a dead server cannot hang the watcher); ``filesystem`` as
    the OS names it (``vfat``, ``iso9660``, ``msdos``, ``FAT32``, …) or None.
    """

    mount_point: str
    label: str
    device: str
    kind: VolumeKind
    free_bytes: int
    total_bytes: int
    read_only: bool
    filesystem: str | None

    @property
    def removable(self) -> bool:
        """Optical, USB/SD or image: what the Sources panel lists as media."""
        return self.kind in ("optical", "usb", "image")

    @property
    def display_name(self) -> str:
        """The label, else the mount point's last component, else the mount point."""
        return self.label or Path(self.mount_point).name or self.mount_point


class MediaBackend(Protocol):
    """What an OS backend provides."""

    def list_volumes(self) -> list[Volume]:
        """Every mounted volume, pseudo filesystems left out, sorted by mount point."""
        ...
