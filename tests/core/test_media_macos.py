"""macOS backend with recorded ``diskutil info -plist`` answers (keys as diskutil prints them)."""

from __future__ import annotations

import os
import plistlib
from pathlib import Path
from typing import Any

from app.core.devices.media import Volume
from app.core.devices.media_macos import MacBackend, classify, diskutil_info

USB_STICK: dict[str, Any] = {
    "Bootable": False, "BusProtocol": "USB", "CanBeMadeBootable": False,
    "DeviceBlockSize": 512, "DeviceIdentifier": "disk4s1", "DeviceNode": "/dev/disk4s1",
    "Ejectable": True, "FilesystemName": "MS-DOS FAT32", "FilesystemType": "msdos",
    "FilesystemUserVisibleName": "MS-DOS (FAT32)", "FreeSpace": 15523708928,
    "Internal": False, "MediaName": "SanDisk Ultra", "MediaType": "Generic",
    "MountPoint": "/Volumes/PATIENT", "Removable": True, "RemovableMedia": True,
    "RemovableMediaOrExternalDevice": True, "Size": 15548940288, "TotalSize": 15548940288,
    "VolumeName": "PATIENT", "VolumeUUID": "2F1E3C0A-7E57-3B0B-9B26-6C1A4F1C9E21",
    "Writable": True, "WritableMedia": True, "WritableVolume": True,
}
SUPERDRIVE_CD: dict[str, Any] = {
    "Bootable": False, "BusProtocol": "USB", "DeviceIdentifier": "disk5",
    "DeviceNode": "/dev/disk5", "Ejectable": True, "FilesystemName": "ISO 9660",
    "FilesystemType": "cd9660", "FreeSpace": 0, "Internal": False,
    "MediaName": "Apple USB SuperDrive", "MountPoint": "/Volumes/DICOM_CD",
    "OpticalDeviceType": "DVD-RW", "OpticalMediaType": "CD-R", "Removable": True,
    "RemovableMedia": True, "Size": 300482560, "TotalSize": 300482560,
    "VolumeName": "DICOM_CD", "Writable": False, "WritableMedia": False, "WritableVolume": False,
}
MAC_HD: dict[str, Any] = {
    "APFSContainerFree": 180000000000, "APFSContainerReference": "disk3",
    "BusProtocol": "Apple Fabric", "DeviceIdentifier": "disk3s1s1",
    "DeviceNode": "/dev/disk3s1s1", "Ejectable": False, "FilesystemName": "APFS",
    "FilesystemType": "apfs", "FreeSpace": 0, "Internal": True, "MountPoint": "/",
    "Removable": False, "RemovableMedia": False, "RemovableMediaOrExternalDevice": False,
    "Size": 494384795648, "TotalSize": 494384795648, "VolumeName": "Macintosh HD",
    "Writable": False, "WritableVolume": False, "VirtualOrPhysical": "Virtual",
}
EXFAT_DISK: dict[str, Any] = {
    "BusProtocol": "USB", "DeviceNode": "/dev/disk6s2", "Ejectable": True,
    "FilesystemName": "ExFAT", "FilesystemType": "exfat", "FreeSpace": 900000000000,
    "Internal": False, "Removable": False, "RemovableMedia": False,
    "RemovableMediaOrExternalDevice": True, "TotalSize": 1000000000000,
    "VolumeName": "BACKUP", "WritableVolume": True,
}
DMG: dict[str, Any] = {
    "BusProtocol": "Disk Image", "DeviceNode": "/dev/disk7s1", "Ejectable": True,
    "FilesystemName": "Mac OS Extended", "FilesystemType": "hfs", "FreeSpace": 1000,
    "Internal": False, "Removable": True, "TotalSize": 5000000, "VolumeName": "Viewer",
    "WritableVolume": False,
}


def _runner(answers: dict[str, dict[str, Any] | bytes | None]):
    calls: list[list[str]] = []

    def run(args: list[str]) -> tuple[int, bytes]:
        calls.append(args)
        assert args[:3] == ["diskutil", "info", "-plist"]
        answer = answers.get(args[3])
        if answer is None:
            return 1, b"Could not find disk: " + args[3].encode() + b"\n"
        if isinstance(answer, bytes):
            return 0, answer
        return 0, plistlib.dumps(answer)

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_volumes_from_recorded_diskutil(tmp_path: Path) -> None:
    vdir = tmp_path / "Volumes"
    for name in ("PATIENT", "DICOM_CD", "Macintosh HD", "BACKUP", "Viewer", "share", ".hidden"):
        (vdir / name).mkdir(parents=True)
    answers = {str(vdir / "PATIENT"): USB_STICK, str(vdir / "DICOM_CD"): SUPERDRIVE_CD,
               str(vdir / "Macintosh HD"): MAC_HD, str(vdir / "BACKUP"): EXFAT_DISK,
               str(vdir / "Viewer"): DMG}
    run = _runner(answers)

    def statvfs(path: str) -> os.statvfs_result:
        assert path == str(vdir / "share")  # only where diskutil gave no sizes
        return os.statvfs_result((4096, 4096, 100, 10, 10, 0, 0, 0, 0, 255))

    vols = {Path(v.mount_point).name: v
            for v in MacBackend(vdir, runner=run, statvfs=statvfs).list_volumes()}
    assert sorted(vols) == ["BACKUP", "DICOM_CD", "Macintosh HD", "PATIENT", "Viewer", "share"]
    assert vols["PATIENT"] == Volume(str(vdir / "PATIENT"), "PATIENT", "/dev/disk4s1", "usb",
                                     15523708928, 15548940288, False, "msdos")
    assert vols["DICOM_CD"] == Volume(str(vdir / "DICOM_CD"), "DICOM_CD", "/dev/disk5",
                                      "optical", 0, 300482560, True, "cd9660")
    hd = vols["Macintosh HD"]
    assert (hd.kind, hd.free_bytes, hd.read_only, hd.filesystem) == (
        "fixed", 180000000000, True, "apfs")
    assert (vols["BACKUP"].kind, vols["BACKUP"].filesystem) == ("usb", "exfat")
    assert vols["Viewer"].kind == "image"
    assert vols["share"] == Volume(str(vdir / "share"), "share", "", "network", 0, 0, False, None)
    assert not any(".hidden" in c[3] for c in run.calls)


def test_diskutil_garbage_and_filesystem_type(tmp_path: Path) -> None:
    run = _runner({"/a": b"not a plist", "/b": plistlib.dumps(["a", "list"]), "/c": USB_STICK})
    assert diskutil_info("/a", run) is None
    assert diskutil_info("/b", run) is None
    assert diskutil_info("/missing", run) is None
    backend = MacBackend(tmp_path, runner=run)
    assert backend.filesystem_type("/c") == "msdos"
    assert backend.filesystem_type("/missing") is None
    assert MacBackend(tmp_path / "absent", runner=run).list_volumes() == []


def test_classify_rules() -> None:
    assert classify({"OpticalMediaType": "DVD-ROM"}) == "optical"
    assert classify({"FilesystemType": "udf", "Ejectable": True}) == "optical"
    assert classify({"BusProtocol": "Secure Digital", "Internal": True}) == "usb"
    assert classify({"BusProtocol": "SATA", "Internal": True}) == "fixed"
    assert classify({"BusProtocol": "Thunderbolt", "Internal": False, "Ejectable": True}) == "usb"
