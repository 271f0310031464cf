"""Linux media detection from ``/proc/self/mountinfo`` and sysfs.

Every file is read through injectable roots (``proc_root``, ``sys_root``, ``dev_root``) and
``statvfs``, so tests build fake trees in code. What is read:

- ``<proc>/self/mountinfo`` (proc(5)): ``ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] -
  FSTYPE SOURCE SUPEROPTS``; paths use octal escapes (``\\040`` for a space);
- ``<sys>/class/block/<name>`` (a partition's parent disk is its ``..``; a partition has a
  ``partition`` file), ``<sys>/block/<disk>/removable``, ``/ro``, ``/device/type`` (SCSI type
  5 = CD/DVD/BD), ``/loop/backing_file``; a disk whose sysfs path runs through ``/usb`` is USB;
- ``<dev>/disk/by-label/<label>`` symlinks (udev escapes, ``\\x20``) for labels; without udev the
  label is read from the filesystem itself (ext2/3/4, FAT, ISO 9660, exFAT, NTFS) when the
  device can be opened.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.core.devices.volumes import Volume, VolumeKind

# Filesystems that are never media: kernel interfaces, memory, containers, snaps.
PSEUDO_FS = frozenset({
    "proc", "sysfs", "tmpfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "overlay", "aufs",
    "securityfs", "debugfs", "tracefs", "pstore", "bpf", "mqueue", "hugetlbfs", "configfs",
    "fusectl", "autofs", "binfmt_misc", "rpc_pipefs", "nsfs", "efivarfs", "ramfs", "squashfs",
    "selinuxfs", "devfs", "none", "nfsd", "fuse.gvfsd-fuse", "fuse.portal", "fuse.lxcfs",
    "fuse.snapfuse", "zram",
})
NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "fuse.sshfs",
    "fuse.rclone", "davfs", "fuse.davfs2", "lustre", "ncpfs",
})
OPTICAL_FS = frozenset({"iso9660", "udf"})
IMAGE_FS = frozenset({"fuse.fuseiso", "fuse.fuseiso9660", "fuse.archivemount", "fuse.squashfuse"})
_ESCAPE = re.compile(r"\\([0-7]{3})")
_UDEV_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def unescape_mountinfo(field: str) -> str:
    """Undo the kernel's octal escapes (``\\040`` space, ``\\011`` tab, ``\\012``, ``\\134``)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def unescape_udev(name: str) -> str:
    """Undo udev's ``\\xNN`` escapes in ``/dev/disk/by-label`` names (UTF-8 bytes)."""
    data = bytearray()
    i = 0
    while i < len(name):
        m = _UDEV_ESCAPE.match(name, i)
        if m:
            data.append(int(m.group(1), 16))
            i = m.end()
        else:
            data.extend(name[i].encode("utf-8"))
            i += 1
    return data.decode("utf-8", "replace")


@dataclass(frozen=True)
class MountEntry:
    """One line of mountinfo, unescaped."""

    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mount_point: str
    mount_options: tuple[str, ...]
    optional: tuple[str, ...]
    fs_type: str
    source: str
    super_options: tuple[str, ...]

    @property
    def read_only(self) -> bool:
        return "ro" in self.mount_options or "ro" in self.super_options


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse mountinfo text; malformed lines are skipped."""
    out: list[MountEntry] = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
            major, minor = fields[2].split(":")
            out.append(MountEntry(
                mount_id=int(fields[0]), parent_id=int(fields[1]),
                major=int(major), minor=int(minor),
                root=unescape_mountinfo(fields[3]),
                mount_point=unescape_mountinfo(fields[4]),
                mount_options=tuple(fields[5].split(",")),
                optional=tuple(fields[6:sep]),
                fs_type=fields[sep + 1],
                source=unescape_mountinfo(fields[sep + 2]) if len(fields) > sep + 2 else "",
                super_options=tuple(fields[sep + 3].split(",")) if len(fields) > sep + 3 else (),
            ))
        except (ValueError, IndexError):
            continue
    return out


def mount_for_path(entries: list[MountEntry], path: str) -> MountEntry | None:
    """The entry whose mount point is the longest prefix of ``path`` (the last mount wins)."""
    best: MountEntry | None = None
    for e in entries:
        mp = e.mount_point.rstrip("/") or "/"
        if path == mp or path.startswith(mp if mp == "/" else mp + "/"):
            if best is None or len(mp) >= len(best.mount_point.rstrip("/") or "/"):
                best = e
    return best


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


# --- filesystem labels read from the device itself (no udev) ---

def _clean_label(raw: bytes, encoding: str = "latin-1") -> str:
    return raw.split(b"\0")[0].decode(encoding, "replace").strip()


def probe_filesystem(head: bytes) -> tuple[str | None, str]:
    """(filesystem type, label) from the first 64 KiB of a volume; (None, "") when unknown."""
    if len(head) >= 1024 + 136 and head[1024 + 56:1024 + 58] == b"\x53\xef":
        return "ext4", _clean_label(head[1024 + 120:1024 + 136], "utf-8")
    if len(head) >= 512 and head[3:11] == b"EXFAT   ":
        return "exfat", ""  # the exFAT label lives in the root directory
    if len(head) >= 512 and head[3:11] == b"NTFS    ":
        return "ntfs", ""  # NTFS keeps its label in the $Volume file
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        if head[82:87] == b"FAT32":
            label = _clean_label(head[71:82])
            return "vfat", "" if label == "NO NAME" else label
        if head[54:59] in (b"FAT12", b"FAT16", b"FAT  "):
            label = _clean_label(head[43:54])
            return "vfat", "" if label == "NO NAME" else label
    if len(head) >= 32768 + 72 and head[32769:32774] == b"CD001":
        return "iso9660", _clean_label(head[32768 + 40:32768 + 72])
    return None, ""


def read_device_head(path: Path, size: int = 65536) -> bytes:
    """The first bytes of a block device ("" when it cannot be opened, e.g. no permission).

    Opened with ``O_NONBLOCK`` so an optical drive does not make the caller wait for its tray.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return b""
    try:
        with os.fdopen(fd, "rb") as fp:
            return fp.read(size)
    except OSError:
        return b""


class LinuxBackend:
    """:class:`app.core.devices.media.MediaBackend` for Linux; every path below an injectable root."""

    def __init__(self, proc_root: str | os.PathLike[str] = "/proc",
                 sys_root: str | os.PathLike[str] = "/sys",
                 dev_root: str | os.PathLike[str] = "/dev",
                 statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
                 read_head: Callable[[Path], bytes] = read_device_head) -> None:
        self.proc = Path(proc_root)
        self.sys = Path(sys_root)
        self.dev = Path(dev_root)
        self.statvfs = statvfs
        self.read_head = read_head
        # (mount ID, device) → (filesystem, label) probed from the device. A watcher polls every
        # few seconds: read each device once per mount, not on every poll (an optical drive
        # would spin up, a scratched disc could stall the poll).
        self._probed: dict[tuple[int, str], tuple[str | None, str]] = {}

    # -- mountinfo --
    def mounts(self) -> list[MountEntry]:
        """The parsed mountinfo (empty when unreadable)."""
        text = _read(self.proc / "self" / "mountinfo")
        return parse_mountinfo(text or "")

    # -- sysfs --
    def block_name(self, entry: MountEntry) -> str | None:
        """Kernel name of the mounted block device (``sdb1``), from the source or MAJ:MIN."""
        if entry.source.startswith("/dev/"):
            name = entry.source[5:]
            if "/" not in name and (self.sys / "class" / "block" / name).exists():
                return name
        link = self.sys / "dev" / "block" / f"{entry.major}:{entry.minor}"
        try:
            return Path(os.readlink(link)).name
        except OSError:
            pass
        if entry.source.startswith("/dev/") and "/" not in entry.source[5:]:
            return entry.source[5:]
        return None

    def parent_disk(self, name: str) -> str:
        """``sdb1`` → ``sdb``, ``nvme0n1p2`` → ``nvme0n1``; a whole disk maps to itself."""
        node = self.sys / "class" / "block" / name
        if not (node / "partition").exists():
            return name
        try:
            parent = node.resolve().parent.name
            if parent and parent != "block":
                return parent
        except OSError:
            pass
        stripped = re.sub(r"p?\d+$", "", name) if re.search(r"\d+p\d+$", name) else \
            re.sub(r"\d+$", "", name)
        return stripped or name

    def _disk_attr(self, disk: str, *parts: str) -> str | None:
        return _read(self.sys.joinpath("block", disk, *parts))

    def classify(self, entry: MountEntry, name: str | None) -> VolumeKind:
        if entry.fs_type in NETWORK_FS or entry.source.startswith("//"):
            return "network"
        if entry.fs_type in IMAGE_FS:
            return "image"
        if name is None:
            return "optical" if entry.fs_type in OPTICAL_FS else "fixed"
        disk = self.parent_disk(name)
        if disk.startswith("loop") or (self.sys / "block" / disk / "loop").exists():
            return "image"
        if disk.startswith("sr") or self._disk_attr(disk, "device", "type") == "5":
            return "optical"
        if entry.fs_type in OPTICAL_FS and disk.startswith(("sr", "scd")):
            return "optical"
        try:
            via_usb = "/usb" in str((self.sys / "block" / disk).resolve())
        except OSError:
            via_usb = False
        if self._disk_attr(disk, "removable") == "1" or via_usb or disk.startswith("mmcblk"):
            return "usb"
        return "fixed"

    def labels(self) -> dict[str, str]:
        """Kernel device name → label from ``<dev>/disk/by-label`` (empty without udev)."""
        out: dict[str, str] = {}
        folder = self.dev / "disk" / "by-label"
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return out
        for e in entries:
            try:
                target = Path(os.readlink(e.path)).name
            except OSError:
                continue
            out[target] = unescape_udev(e.name)
        return out

    def device_read_only(self, name: str | None) -> bool:
        if name is None:
            return False
        return _read(self.sys / "class" / "block" / name / "ro") == "1"

    # -- the volumes --
    def list_volumes(self) -> list[Volume]:
        entries = [e for e in self.mounts() if e.fs_type not in PSEUDO_FS]
        # A device mounted at "/" of its filesystem elsewhere too: drop the bind mounts.
        whole = {(e.major, e.minor) for e in entries if e.root == "/"}
        entries = [e for e in entries if e.root == "/" or (e.major, e.minor) not in whole]
        labels = self.labels()
        seen: dict[str, Volume] = {}
        for e in entries:
            name = self.block_name(e)
            kind = self.classify(e, name)
            fs_type = e.fs_type
            label = labels.get(name or "", "")
            if name is not None and (not label or fs_type == "fuseblk"):
                probed_fs, probed_label = self._probe(e.mount_id, name)
                label = label or probed_label
                if fs_type == "fuseblk" and probed_fs:
                    fs_type = probed_fs
            free = total = 0
            if kind != "network":
                try:
                    st = self.statvfs(e.mount_point)
                    free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
                except OSError:
                    pass
            seen[e.mount_point] = Volume(  # the last mount on a mount point hides earlier ones
                mount_point=e.mount_point, label=label,
                device=f"/dev/{name}" if name else e.source, kind=kind,
                free_bytes=free, total_bytes=total,
                read_only=e.read_only or self.device_read_only(name) or kind == "optical",
                filesystem=fs_type)
        return sorted(seen.values(), key=lambda v: v.mount_point)

    def _probe(self, mount_id: int, name: str) -> tuple[str | None, str]:
        key = (mount_id, name)
        if key not in self._probed:
            if len(self._probed) > 256:
                self._probed.clear()
            self._probed[key] = probe_filesystem(self.read_head(self.dev / name))
        return self._probed[key]

    def filesystem_type(self, path: str) -> str | None:
        """Filesystem of the mount holding ``path`` (``fuseblk`` resolved by probing)."""
        entry = mount_for_path(self.mounts(), os.path.realpath(path))
        if entry is None:
            return None
        if entry.fs_type == "fuseblk":
            name = self.block_name(entry)
            if name is not None:
                probed, _ = probe_filesystem(self.read_head(self.dev / name))
                return probed or entry.fs_type
        return entry.fs_type
