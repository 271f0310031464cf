"""Linux media detection on fake /proc, /sys and /dev trees, and on a real loop-mounted volume."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from app.core.devices.media import Volume, has_dicom_content
from app.core.devices.media_linux import (
    LinuxBackend,
    mount_for_path,
    parse_mountinfo,
    probe_filesystem,
    unescape_mountinfo,
    unescape_udev,
)
from tests.conftest import IN_CI, require_tool

MOUNTINFO = r"""22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime shared:7 - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334556k,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684100k
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw
32 27 0:40 / /var/lib/docker/overlay2/x/merged rw,relatime - overlay overlay rw,lowerdir=/a
33 27 0:41 / /snap/core/1 ro,nodev,relatime - squashfs /dev/loop7 ro
40 27 259:2 / /boot rw,relatime shared:20 - ext4 /dev/nvme0n1p2 rw
41 27 8:17 / /media/user/MY\040STICK rw,nosuid,nodev,relatime shared:300 master:1 - vfat /dev/sdb1 rw,fmask=0022,codepage=437,iocharset=ascii,shortname=mixed,errors=remount-ro
42 27 11:0 / /media/user/DICOM_CD ro,nosuid,nodev,relatime shared:301 - iso9660 /dev/sr0 ro,nojoliet,check=s,map=n,blocksize=2048
43 27 7:0 / /mnt/img rw,relatime - ext4 /dev/loop0 ro
44 27 0:50 / /mnt/nfs rw,relatime - nfs4 server:/export rw,vers=4.2,addr=10.0.0.2
45 27 254:0 /home /srv/home rw,relatime shared:1 - ext4 /dev/vda rw,discard
46 27 8:33 / /media/user/EXT\134DISK rw,nosuid,nodev,relatime - fuseblk /dev/sdc1 rw,user_id=0,group_id=0,allow_other
47 27 179:1 / /media/user/SD rw,relatime - vfat /dev/mmcblk0p1 rw
48 27 0:60 / /home/user/.cache/doc rw,nosuid,nodev,relatime - fuse.portal portal rw,user_id=1000
49 27 0:61 / /home/user/iso rw,nosuid,nodev,relatime - fuse.fuseiso fuseiso rw,user_id=0
50 27 8:49 / /media/user/USBDISK rw,relatime - ext4 /dev/sdd1 rw
garbage line without fields
"""

# A USB stick and a USB hard disk; the SATA DVD writer; the NVMe system disk; a loop device.
DISKS = {
    # name: (sysfs device path, removable, scsi type, partitions)
    "sdb": ("devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb",
            "1", "0", ["sdb1"]),
    "sdc": ("devices/pci0000:00/0000:00:14.0/usb2/2-2/2-2:1.0/host7/target7:0:0/7:0:0:0/block/sdc",
            "1", "0", ["sdc1"]),
    "sdd": ("devices/pci0000:00/0000:00:14.0/usb2/2-3/2-3:1.0/host8/target8:0:0/8:0:0:0/block/sdd",
            "0", "0", ["sdd1"]),
    "sr0": ("devices/pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0/block/sr0",
            "1", "5", []),
    "nvme0n1": ("devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1", "0", None,
                ["nvme0n1p1", "nvme0n1p2"]),
    "vda": ("devices/pci0000:00/0000:00:04.0/virtio1/block/vda", "0", None, []),
    "loop0": ("devices/virtual/block/loop0", "0", None, []),
    "mmcblk0": ("devices/platform/soc/mmc0/mmc_host/mmc0/mmc0:0001/block/mmcblk0", "0", None,
                ["mmcblk0p1"]),
}


def _fat32_boot(label: bytes) -> bytes:
    head = bytearray(512)
    head[3:11] = b"MSDOS5.0"
    head[71:82] = label.ljust(11)
    head[82:90] = b"FAT32   "
    head[510:512] = b"\x55\xaa"
    return bytes(head)


def _ext4_super(label: bytes) -> bytes:
    head = bytearray(4096)
    head[1024 + 56:1024 + 58] = b"\x53\xef"
    head[1024 + 120:1024 + 120 + len(label)] = label
    return bytes(head)


def _exfat_boot() -> bytes:
    head = bytearray(512)
    head[3:11] = b"EXFAT   "
    head[510:512] = b"\x55\xaa"
    return bytes(head)


def _fake_tree(root: Path) -> LinuxBackend:
    proc, sys_, dev = root / "proc", root / "sys", root / "dev"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(MOUNTINFO)
    for name, (path, removable, scsi_type, parts) in DISKS.items():
        d = sys_ / path
        d.mkdir(parents=True)
        (d / "removable").write_text(removable + "\n")
        (d / "ro").write_text("0\n")
        if scsi_type is not None:
            (d / "device").mkdir()
            (d / "device" / "type").write_text(scsi_type + "\n")
        if name.startswith("loop"):
            (d / "loop").mkdir()
            (d / "loop" / "backing_file").write_text("/srv/images/disc.img\n")
            (d / "ro").write_text("1\n")
        (sys_ / "block").mkdir(exist_ok=True)
        (sys_ / "class" / "block").mkdir(parents=True, exist_ok=True)
        os.symlink(Path("..") / path, sys_ / "block" / name)
        os.symlink(Path("../..") / path, sys_ / "class" / "block" / name)
        for i, part in enumerate(parts, 1):
            (d / part).mkdir()
            (d / part / "partition").write_text(f"{i}\n")
            (d / part / "ro").write_text("0\n")
            os.symlink(Path("../..") / path / part, sys_ / "class" / "block" / part)
    # MAJ:MIN links, as /sys/dev/block has them (only some: the source name is tried first).
    (sys_ / "dev" / "block").mkdir(parents=True)
    os.symlink("../../" + DISKS["sdb"][0] + "/sdb1", sys_ / "dev" / "block" / "8:17")
    (dev / "disk" / "by-label").mkdir(parents=True)
    os.symlink("../../sdb1", dev / "disk" / "by-label" / r"MY\x20STICK")
    os.symlink("../../sr0", dev / "disk" / "by-label" / r"DICOM\x20CD\x20\xc3\xa9")
    heads = {"loop0": _ext4_super(b"IMG LABEL"), "sdc1": _exfat_boot(),
             "mmcblk0p1": _fat32_boot(b"CANON"), "sdd1": _ext4_super(b"BACKUP"),
             "vda": _ext4_super(b""), "nvme0n1p2": b""}
    sizes = {"/media/user/MY STICK": (1000, 4096, 2000), "/": (10, 4096, 100)}

    def statvfs(path: str) -> os.statvfs_result:
        if path == "/mnt/nfs":
            raise AssertionError("a network volume must never be statvfs'ed (could hang)")
        bavail, frsize, blocks = sizes.get(path, (0, 2048, 50))
        return os.statvfs_result((frsize, frsize, blocks, bavail, bavail, 0, 0, 0, 0, 255))

    def read_head(path: Path) -> bytes:
        assert path.parent == dev
        reads.append(path.name)
        return heads.get(path.name, b"")

    reads: list[str] = []

    backend = LinuxBackend(proc_root=proc, sys_root=sys_, dev_root=dev, statvfs=statvfs,
                           read_head=read_head)
    backend.reads = reads  # type: ignore[attr-defined]
    return backend


def test_volumes_from_fake_tree(tmp_path: Path) -> None:
    backend = _fake_tree(tmp_path)
    vols = {v.mount_point: v for v in backend.list_volumes()}
    assert sorted(vols) == ["/", "/boot", "/home/user/iso", "/media/user/DICOM_CD",
                            "/media/user/EXT\\DISK", "/media/user/MY STICK", "/media/user/SD",
                            "/media/user/USBDISK", "/mnt/img", "/mnt/nfs"]
    assert vols["/media/user/MY STICK"] == Volume(
        "/media/user/MY STICK", "MY STICK", "/dev/sdb1", "usb", 1000 * 4096, 2000 * 4096,
        False, "vfat")
    assert vols["/media/user/DICOM_CD"] == Volume(
        "/media/user/DICOM_CD", "DICOM CD é", "/dev/sr0", "optical", 0, 50 * 2048, True,
        "iso9660")
    assert vols["/mnt/img"] == Volume("/mnt/img", "IMG LABEL", "/dev/loop0", "image",
                                      0, 50 * 2048, True, "ext4")
    assert vols["/mnt/nfs"] == Volume("/mnt/nfs", "", "server:/export", "network", 0, 0,
                                      False, "nfs4")
    ext = vols["/media/user/EXT\\DISK"]
    assert (ext.kind, ext.filesystem, ext.device, ext.label) == ("usb", "exfat", "/dev/sdc1", "")
    assert (vols["/media/user/SD"].kind, vols["/media/user/SD"].label) == ("usb", "CANON")
    usbdisk = vols["/media/user/USBDISK"]  # not "removable", but attached through USB
    assert (usbdisk.kind, usbdisk.label) == ("usb", "BACKUP")
    assert (vols["/"].kind, vols["/"].label, vols["/"].free_bytes) == ("fixed", "", 40960)
    assert (vols["/boot"].kind, vols["/boot"].device) == ("fixed", "/dev/nvme0n1p2")
    assert vols["/home/user/iso"].kind == "image"
    # Devices with a udev label are not opened; the others once per mount, not once per poll.
    assert sorted(backend.reads) == ["loop0", "mmcblk0p1", "nvme0n1p2", "sdc1", "sdd1", "vda"]
    assert backend.list_volumes() == sorted(vols.values(), key=lambda v: v.mount_point)
    assert len(backend.reads) == 6
    assert [v.mount_point for v in vols.values() if v.removable] == [
        "/home/user/iso", "/media/user/DICOM_CD", "/media/user/EXT\\DISK",
        "/media/user/MY STICK", "/media/user/SD", "/media/user/USBDISK", "/mnt/img"]


def test_partition_to_disk_and_read_only(tmp_path: Path) -> None:
    b = _fake_tree(tmp_path)
    assert b.parent_disk("sdb1") == "sdb"
    assert b.parent_disk("nvme0n1p2") == "nvme0n1"
    assert b.parent_disk("mmcblk0p1") == "mmcblk0"
    assert b.parent_disk("sr0") == "sr0"
    # A partition whose sysfs node cannot be resolved falls back to the name rules.
    node = tmp_path / "sys" / "class" / "block" / "sde3"
    node.mkdir()
    (node / "partition").write_text("3\n")
    assert b.parent_disk("sde3") == "sde"
    # The device's own ro flag makes the volume read-only even when mounted rw.
    (tmp_path / "sys" / "class" / "block" / "sdb1" / "ro").write_text("1\n")
    stick = next(v for v in b.list_volumes() if v.device == "/dev/sdb1")
    assert stick.read_only


def test_parse_mountinfo_fields() -> None:
    entries = parse_mountinfo(MOUNTINFO)
    assert len(entries) == 19  # the garbage line is skipped
    stick = next(e for e in entries if e.source == "/dev/sdb1")
    assert stick.mount_point == "/media/user/MY STICK"
    assert stick.optional == ("shared:300", "master:1")
    assert (stick.major, stick.minor, stick.fs_type) == (8, 17, "vfat")
    assert "errors=remount-ro" in stick.super_options and not stick.read_only
    img = next(e for e in entries if e.source == "/dev/loop0")
    assert img.read_only  # "ro" only in the super options
    assert unescape_mountinfo(r"/a\040b\011c\012d\134e") == "/a b\tc\nd\\e"
    assert unescape_udev(r"MY\x20STICK\x2f\xc3\xa9") == "MY STICK/é"
    assert mount_for_path(entries, "/media/user/MY STICK/PA001").source == "/dev/sdb1"
    assert mount_for_path(entries, "/media/user/MY STICKY").source == "/dev/vda"
    assert mount_for_path(entries, "/boot").fs_type == "ext4"
    assert mount_for_path([], "/x") is None


def test_probe_filesystem() -> None:
    assert probe_filesystem(_ext4_super(b"LBL")) == ("ext4", "LBL")
    assert probe_filesystem(_fat32_boot(b"NO NAME")) == ("vfat", "")
    fat16 = bytearray(512)
    fat16[43:54] = b"PATIENTS   "
    fat16[54:62] = b"FAT16   "
    fat16[510:512] = b"\x55\xaa"
    assert probe_filesystem(bytes(fat16)) == ("vfat", "PATIENTS")
    iso = bytearray(34000)
    iso[32769:32774] = b"CD001"
    iso[32808:32840] = b"DISCBRIDGE".ljust(32)
    assert probe_filesystem(bytes(iso)) == ("iso9660", "DISCBRIDGE")
    ntfs = bytearray(512)
    ntfs[3:11] = b"NTFS    "
    assert probe_filesystem(bytes(ntfs)) == ("ntfs", "")
    assert probe_filesystem(b"") == (None, "")
    assert probe_filesystem(os.urandom(100)) == (None, "")


def test_filesystem_type_resolves_fuseblk(tmp_path: Path) -> None:
    b = _fake_tree(tmp_path)
    assert b.filesystem_type("/media/user/EXT\\DISK/PA001") == "exfat"
    assert b.filesystem_type("/media/user/MY STICK") == "vfat"


def test_missing_proc_gives_no_volumes(tmp_path: Path) -> None:
    assert LinuxBackend(proc_root=tmp_path / "none").list_volumes() == []


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_real_loop_mounted_read_only_volume(tmp_path: Path) -> None:
    """mkfs.ext4 -L on a file, attach read-only, mount; the backend must see label and ro."""
    if os.geteuid() != 0:
        pytest.skip("needs root to attach a loop device and mount it")
    mkfs = require_tool("mkfs.ext4")
    losetup = require_tool("losetup")
    img = tmp_path / "vol.img"
    with open(img, "wb") as fp:
        fp.truncate(8 * 1024 * 1024)
    label = "DB T" + uuid.uuid4().hex[:6].upper()
    content = tmp_path / "content" / "EXAM"
    content.mkdir(parents=True)
    (content / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    # -d copies a folder into the new filesystem (e2fsprogs >= 1.43): a DICOM medium on it.
    subprocess.run([mkfs, "-q", "-F", "-L", label, "-d", str(content.parent), str(img)],
                   check=True, timeout=60)
    attach = _run(losetup, "--find", "--show", "--read-only", str(img))
    if attach.returncode != 0:
        # Allowed under CI too: containers often have no /dev/loop* or no loop-control.
        pytest.skip(f"loop devices unavailable here: {attach.stderr.strip()}")
    device = attach.stdout.strip()
    mnt = tmp_path / "mnt point"  # a space: exercises the \040 escape for real
    mnt.mkdir()
    mounted = False
    try:
        res = _run("mount", "-o", "ro", device, str(mnt))
        if res.returncode != 0:
            msg = f"mount of a loop device failed: {res.stderr.strip()}"
            if IN_CI:  # loop devices work, so a failing mount is a real problem
                pytest.fail(msg)
            pytest.skip(msg)
        mounted = True
        vols = [v for v in LinuxBackend().list_volumes() if v.mount_point == str(mnt)]
        assert len(vols) == 1, LinuxBackend().list_volumes()
        vol = vols[0]
        assert vol.label == label
        assert vol.read_only and vol.kind == "image" and vol.filesystem == "ext4"
        assert vol.device == device
        assert 0 < vol.free_bytes <= vol.total_bytes <= 8 * 1024 * 1024
        assert LinuxBackend().filesystem_type(str(mnt / "x")) == "ext4"
        assert has_dicom_content(vol)
    finally:
        if mounted:
            _run("umount", str(mnt))
        _run(losetup, "-d", device)
    assert not any(v.mount_point == str(mnt) for v in LinuxBackend().list_volumes())


def test_read_device_head(tmp_path: Path) -> None:
    from app.core.devices.media_linux import read_device_head

    f = tmp_path / "dev"
    f.write_bytes(b"x" * 70000)
    assert read_device_head(f) == b"x" * 65536
    assert read_device_head(tmp_path / "absent") == b""
    assert read_device_head(tmp_path) == b""  # a directory: EISDIR on read
