"""Disc burning behind one interface, with verification by reading the disc back.

One backend per OS (issue 3 item 7):

- Linux: :class:`app.core.devices.burn_xorriso.XorrisoBackend` (xorriso, also drives its ``stdio:FILE``
  pseudo-drive, which writes a real image file: that is how the tests burn for real);
- macOS: :class:`app.core.devices.burn_macos.MacBurnerBackend` (``drutil`` / ``hdiutil burn``);
- Windows: :class:`app.core.devices.burn_windows.ImapiBackend` (IMAPI2 over COM, ``comtypes``).

:func:`burn_image` checks the drive and medium, burns, then reads back as many bytes as the image
holds and compares SHA-256. A burn can be cancelled until the drive starts writing; from then on
the backend calls ``cancel.allow_cancel(False)`` (a half-written disc is ruined), and
:class:`app.core.jobs.Progress` reports carry ``cancellable=False``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import BinaryIO

from app.core.devices.burner import Burner, BurnerBackend, BurnResult
from app.core.errors import DiscBridgeError, ExportError
from app.core.jobs import CancelToken, Progress, ProgressCallback, Throttle

_CHUNK = 1024 * 1024



def for_platform(platform: str | None = None) -> BurnerBackend:
    """The burner backend of this (or the named) OS: ``linux``, ``darwin`` or ``win32``."""
    platform = platform or sys.platform
    if platform.startswith("linux"):
        from app.core.devices.burn_xorriso import XorrisoBackend

        return XorrisoBackend()
    if platform == "darwin":
        from app.core.devices.burn_macos import MacBurnerBackend

        return MacBurnerBackend()
    if platform in ("win32", "cygwin"):
        from app.core.devices.burn_windows import ImapiBackend

        return ImapiBackend()
    raise ExportError(f"no disc burner support on {platform}")


def list_burners(backend: BurnerBackend | None = None) -> list[Burner]:
    """The available burners (an empty list when there are none or the tool is missing)."""
    try:
        return (backend or for_platform()).list_burners()
    except DiscBridgeError:
        return []


def sha256_file(path: Path, size: int | None = None, cancel: CancelToken | None = None) -> str:
    """SHA-256 of a file (of its first ``size`` bytes when given)."""
    with open(path, "rb") as fp:
        return _sha256_stream(fp, size, cancel, None)


def _sha256_stream(fp: BinaryIO, size: int | None, cancel: CancelToken | None,
                   on_progress: Throttle | None) -> str:
    h = hashlib.sha256()
    done = 0
    while size is None or done < size:
        if cancel is not None:
            cancel.raise_if_cancelled()
        want = _CHUNK if size is None else min(_CHUNK, size - done)
        chunk = fp.read(want)
        if not chunk:
            break
        h.update(chunk)
        done += len(chunk)
        if on_progress is not None:
            on_progress(Progress("verify", done_bytes=done, total_bytes=size or 0,
                                 message="reading the disc back", cancellable=True))
    if size is not None and done != size:
        raise ExportError(f"read only {done} of {size} bytes back from the disc")
    return h.hexdigest()


def _find(backend: BurnerBackend, device: str) -> Burner | None:
    if not device.startswith("stdio:"):
        for b in backend.list_burners():
            if b.device == device:
                return b
    describe = getattr(backend, "describe", None)  # e.g. xorriso's stdio: drives are not listed
    return describe(device) if describe is not None else None


def burn_image(iso: Path, device: str, progress: ProgressCallback | None = None,
               cancel: CancelToken | None = None,
               backend: BurnerBackend | None = None) -> BurnResult:
    """Burn ``iso`` to ``device`` and verify it by reading the disc back.

    Refuses (:class:`ExportError`, nothing written) when the drive is unknown, holds no medium,
    a closed or appendable write-once medium, or one too small for the image. Returns a
    :class:`BurnResult`; ``ok`` is False when the read-back differs or cannot be read. Raises
    :class:`Cancelled` when cancelled before the drive started writing.
    """
    iso = Path(iso)
    backend = backend or for_platform()
    cancel = cancel or CancelToken()
    try:
        size = iso.stat().st_size
    except OSError as exc:
        raise ExportError(f"{iso}: cannot read the image ({exc.strerror})") from exc
    report = Throttle(progress) if progress is not None else None
    if report is not None:
        report(Progress("burn", total_bytes=size, message=f"checking {device}"))
    burner = _find(backend, device)
    if burner is None:
        raise ExportError(f"{device}: no such burner")
    if burner.media_state == "none":
        raise ExportError(f"{device}: no disc in the drive")
    if not burner.can_write:
        raise ExportError(f"{device}: the disc is {burner.media_state} ({burner.media_type}); "
                          "insert a blank disc")
    if burner.capacity_bytes and size > burner.capacity_bytes:
        raise ExportError(f"{iso}: {size} bytes do not fit on the disc in {device} "
                          f"({burner.capacity_bytes} bytes free)")
    expected = sha256_file(iso, size, cancel)
    cancel.raise_if_cancelled()
    def backend_progress(p: Progress) -> None:
        assert report is not None  # the final report of the burn always passes the throttle
        report(p, force=p.total_bytes > 0 and p.done_bytes >= p.total_bytes)

    backend.burn(iso, device, backend_progress if report is not None else None, cancel)
    cancel.allow_cancel(False)  # in case the backend could not tell when writing began
    written = size
    if report is not None:
        report(Progress("verify", total_bytes=size, message=f"reading {device} back",
                        cancellable=False), force=True)
    try:
        src = backend.read_back(device, size)
        if isinstance(src, Path):
            with open(src, "rb") as fp:
                _drop_cache(fp)
                got = _sha256_stream(fp, size, None, report)
        else:
            with src:
                got = _sha256_stream(src, size, None, report)
    except (OSError, DiscBridgeError) as exc:
        msg = getattr(exc, "strerror", None) or str(exc)
        return BurnResult(False, device, written, expected, "",
                          f"{device}: burned, but reading the disc back failed ({msg})")
    if report is not None:
        report(Progress("verify", done_bytes=size, total_bytes=size, message=f"read {device} back",
                        cancellable=False), force=True)
    if got != expected:
        return BurnResult(False, device, written, expected, got,
                          f"{device}: the disc differs from the image (SHA-256 mismatch)")
    return BurnResult(True, device, written, expected, got,
                      f"{device}: {written} bytes burned and verified")


def _drop_cache(fp: BinaryIO) -> None:
    """Flush and forget cached pages so the read-back comes from the device (Linux)."""
    if hasattr(os, "posix_fadvise"):
        try:
            os.fsync(fp.fileno())
        except OSError:
            pass
        try:
            os.posix_fadvise(fp.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
