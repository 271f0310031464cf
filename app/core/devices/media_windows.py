"""Windows media detection through kernel32 (ctypes), behind the thin :class:`Kernel32` adapter.

Calls (Win32 fileapi.h): ``GetLogicalDrives`` (bit *n* = drive letter A+*n*), ``GetDriveTypeW``
(``DRIVE_REMOVABLE`` 2, ``DRIVE_FIXED`` 3, ``DRIVE_REMOTE`` 4, ``DRIVE_CDROM`` 5,
``DRIVE_RAMDISK`` 6; 0/1 unknown or no root), ``GetVolumeInformationW`` (label, filesystem name
such as ``FAT32``/``exFAT``/``NTFS``/``CDFS``/``UDF``, flags with ``FILE_READ_ONLY_VOLUME``
0x80000; fails for an empty drive) and ``GetDiskFreeSpaceExW`` (free to the caller, total).
Critical-error dialogs ("insert a disk") are suppressed with ``SetErrorMode``. Tests use a fake
adapter with the same four methods; :class:`Kernel32` only imports ctypes' ``windll`` when used.
"""

from __future__ import annotations

from typing import Protocol

from app.core.devices.volumes import Volume, VolumeKind

DRIVE_UNKNOWN = 0
DRIVE_NO_ROOT_DIR = 1
DRIVE_REMOVABLE = 2
DRIVE_FIXED = 3
DRIVE_REMOTE = 4
DRIVE_CDROM = 5
DRIVE_RAMDISK = 6
FILE_READ_ONLY_VOLUME = 0x00080000
SEM_FAILCRITICALERRORS = 0x0001
SEM_NOOPENFILEERRORBOX = 0x8000

_KINDS: dict[int, VolumeKind] = {DRIVE_REMOVABLE: "usb", DRIVE_FIXED: "fixed",
                                 DRIVE_REMOTE: "network", DRIVE_CDROM: "optical",
                                 DRIVE_RAMDISK: "fixed"}


class Kernel32Like(Protocol):
    def logical_drives(self) -> int: ...

    def drive_type(self, root: str) -> int: ...

    def volume_information(self, root: str) -> tuple[str, str, int] | None: ...

    def disk_free_space(self, root: str) -> tuple[int, int] | None: ...


class Kernel32:
    """The real calls, through ctypes (Windows only; imported lazily)."""

    def __init__(self) -> None:
        import ctypes
        from ctypes import wintypes

        self._ctypes = ctypes
        self._wintypes = wintypes
        self._k = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        self._k.GetLogicalDrives.restype = wintypes.DWORD
        self._k.GetDriveTypeW.argtypes = [wintypes.LPCWSTR]
        self._k.GetDriveTypeW.restype = wintypes.UINT
        self._k.GetVolumeInformationW.argtypes = [
            wintypes.LPCWSTR, wintypes.LPWSTR, wintypes.DWORD, ctypes.POINTER(wintypes.DWORD),
            ctypes.POINTER(wintypes.DWORD), ctypes.POINTER(wintypes.DWORD), wintypes.LPWSTR,
            wintypes.DWORD]
        self._k.GetVolumeInformationW.restype = wintypes.BOOL
        self._k.GetDiskFreeSpaceExW.argtypes = [
            wintypes.LPCWSTR, ctypes.POINTER(ctypes.c_ulonglong),
            ctypes.POINTER(ctypes.c_ulonglong), ctypes.POINTER(ctypes.c_ulonglong)]
        self._k.GetDiskFreeSpaceExW.restype = wintypes.BOOL
        self._k.SetErrorMode.argtypes = [wintypes.UINT]
        self._k.SetErrorMode.restype = wintypes.UINT

    def _quiet(self) -> int:
        return int(self._k.SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOOPENFILEERRORBOX))

    def logical_drives(self) -> int:
        return int(self._k.GetLogicalDrives())

    def drive_type(self, root: str) -> int:
        return int(self._k.GetDriveTypeW(root))

    def volume_information(self, root: str) -> tuple[str, str, int] | None:
        ct, wt = self._ctypes, self._wintypes
        label = ct.create_unicode_buffer(261)
        fs = ct.create_unicode_buffer(261)
        serial, maxlen, flags = wt.DWORD(), wt.DWORD(), wt.DWORD()
        old = self._quiet()
        try:
            ok = self._k.GetVolumeInformationW(root, label, 261, ct.byref(serial),
                                               ct.byref(maxlen), ct.byref(flags), fs, 261)
        finally:
            self._k.SetErrorMode(old)
        return (label.value, fs.value, int(flags.value)) if ok else None

    def disk_free_space(self, root: str) -> tuple[int, int] | None:
        ct = self._ctypes
        free, total, total_free = ct.c_ulonglong(), ct.c_ulonglong(), ct.c_ulonglong()
        old = self._quiet()
        try:
            ok = self._k.GetDiskFreeSpaceExW(root, ct.byref(free), ct.byref(total),
                                             ct.byref(total_free))
        finally:
            self._k.SetErrorMode(old)
        return (int(free.value), int(total.value)) if ok else None


class WindowsBackend:
    """:class:`app.core.devices.media.MediaBackend` for Windows. ``kernel32`` defaults to :class:`Kernel32`."""

    def __init__(self, kernel32: Kernel32Like | None = None) -> None:
        self._kernel32 = kernel32

    @property
    def kernel32(self) -> Kernel32Like:
        if self._kernel32 is None:
            self._kernel32 = Kernel32()
        return self._kernel32

    def list_volumes(self) -> list[Volume]:
        k = self.kernel32
        mask = k.logical_drives()
        out: list[Volume] = []
        for i in range(26):
            if not mask & (1 << i):
                continue
            letter = chr(ord("A") + i)
            root = f"{letter}:\\"
            kind = _KINDS.get(k.drive_type(root))
            if kind is None:
                continue
            if kind == "network":  # a dead server would block both calls below for minutes
                out.append(Volume(root, "", f"\\\\.\\{letter}:", kind, 0, 0, False, None))
                continue
            info = k.volume_information(root)
            if info is None:  # an empty card reader or CD drive: no medium, no volume
                continue
            label, fs, flags = info
            space = k.disk_free_space(root) or (0, 0)
            out.append(Volume(mount_point=root, label=label, device=f"\\\\.\\{letter}:",
                              kind=kind, free_bytes=space[0], total_bytes=space[1],
                              read_only=bool(flags & FILE_READ_ONLY_VOLUME) or kind == "optical",
                              filesystem=fs or None))
        return out

    def filesystem_type(self, path: str) -> str | None:
        """Filesystem name of the drive holding ``path`` (``FAT32``, ``exFAT``, ``NTFS``…)."""
        root = volume_root(path)
        if root is None:
            return None
        info = self.kernel32.volume_information(root)
        return None if info is None else (info[1] or None)


def volume_root(path: str) -> str | None:
    """``E:\\PA001`` → ``E:\\``; ``\\\\server\\share\\x`` → ``\\\\server\\share\\``."""
    p = path.replace("/", "\\")
    if len(p) >= 2 and p[1] == ":" and p[0].isalpha():
        return p[0].upper() + ":\\"
    if p.startswith("\\\\"):
        parts = p[2:].split("\\")
        if len(parts) >= 2 and parts[0] and parts[1]:
            return f"\\\\{parts[0]}\\{parts[1]}\\"
    return None
