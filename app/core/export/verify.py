"""Verification of a written medium (issue 3 item 5).

Two checks, after the data has been flushed:

1. **Bytes**: every file is read back and its SHA-256 compared with the bytes we meant to write.
   A file whose pixel data was re-encoded is also decoded from the bytes read back, and its
   pixel values compared with the source's (``Expected.pixel_digest``: what the worker decoded
   from the source before converting it).
   The page cache is dropped for each file first (``posix_fadvise(POSIX_FADV_DONTNEED)``, Linux;
   the data is already flushed, so the pages are clean and really go), so the bytes come from the
   device. The File Meta read back must name the planned SOP Class/Instance and transfer syntax.
2. **Records**: the medium is reopened with our reader (``open_medium``) and every record is
   checked against its file: it exists at the planned File ID, with the SOP Instance UID, SOP
   Class UID and transfer syntax of the file; nothing is missing and nothing is extra.

Files are read by two threads (reading and hashing both release the GIL), so the read-back runs
at the speed of the device.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from app.core.export.transcode import parse_meta_info, ts_name
from app.core.jobs import CancelToken, Progress, ProgressCallback, Throttle

CHUNK = 1 << 20


@dataclass(frozen=True)
class Expected:
    """What a written file must be."""

    rel: str  # File ID path, '/' separators, relative to the volume root
    sha256: str
    sop_uid: str | None = None  # None for non-DICOM files (README.TXT) and the DICOMDIR
    sop_class: str | None = None
    transfer_syntax: str | None = None
    size: int = 0  # bytes expected (progress only)
    pixel_digest: str | None = None  # the source's decoded pixel values (re-encoded files only)


def drop_cache(fd: int) -> None:
    """Make the next reads of ``fd`` come from the device, not the page cache.

    Linux: ``posix_fadvise(POSIX_FADV_DONTNEED)`` (the data is flushed, so the clean pages are
    really dropped). macOS: ``F_NOCACHE`` on the descriptor. Windows: no portable way without
    unbuffered I/O; the read-back may then be served from the cache (README states it).
    """
    fadvise = getattr(os, "posix_fadvise", None)
    if fadvise is not None:
        try:
            fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        return
    if sys.platform == "darwin":
        import fcntl

        try:
            fcntl.fcntl(fd, getattr(fcntl, "F_NOCACHE", 48), 1)
        except OSError:
            pass


def read_back(path: Path, keep: bool = False) -> tuple[str, int, bytes]:
    """SHA-256, size and first bytes (with ``keep``: all bytes) of a file, read from the
    device (cache dropped first)."""
    h = hashlib.sha256()
    size = 0
    head = b""
    kept: list[bytes] = []
    with open(path, "rb", buffering=0) as fp:
        drop_cache(fp.fileno())
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            n = fp.readinto(buf)
            if not n:
                break
            if not head:
                head = bytes(view[: min(n, 65536)])
            if keep:
                kept.append(bytes(view[:n]))
            h.update(view[:n])
            size += n
    return h.hexdigest(), size, b"".join(kept) if keep else head


def _check_one(root: Path, exp: Expected) -> tuple[str | None, int]:
    path = root.joinpath(*exp.rel.split("/"))
    try:
        digest, size, head = read_back(path, keep=True) if exp.pixel_digest is not None \
            else read_back(path)
    except FileNotFoundError:
        return f"{exp.rel}: missing on the medium", 0
    except OSError as exc:
        return f"{exp.rel}: cannot be read back ({exc.strerror or exc})", 0
    if digest != exp.sha256:
        return f"{exp.rel}: content differs from what was written (SHA-256 mismatch)", size
    if exp.sop_uid is not None:
        meta = parse_meta_info(head)
        if (meta.sop_instance, meta.sop_class, meta.transfer_syntax) != (
                exp.sop_uid, exp.sop_class, exp.transfer_syntax):
            return (f"{exp.rel}: File Meta names {meta.sop_instance} / {meta.sop_class} / "
                    f"{ts_name(meta.transfer_syntax)}, expected {exp.sop_uid} / "
                    f"{exp.sop_class} / {ts_name(exp.transfer_syntax)}"), size
    if exp.pixel_digest is not None:
        why = _pixels_differ(head, exp.pixel_digest)
        if why:
            return f"{exp.rel}: {why}", size
    return None, size


def _pixels_differ(data: bytes, want: str) -> str | None:
    """Why the pixel values decoded from ``data`` are not the source's, or None."""
    import io
    import warnings

    import pydicom

    from app.core.export.transcode import pixel_digest

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # recorded when the file was made
            got = pixel_digest(pydicom.dcmread(io.BytesIO(data)))
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a verification failure
        return f"its pixel data cannot be decoded back ({type(exc).__name__}: {exc})"
    if got != want:
        return "its decoded pixel values differ from the source's"
    return None


def verify_bytes(root: Path, expected: list[Expected], *,
                 progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> tuple[list[str], int]:
    """Read every expected file back; returns (failure messages, bytes read)."""
    failures: list[str] = []
    total = len(expected)
    done = 0
    nbytes = 0
    total_bytes = sum(e.size for e in expected)
    report = Throttle(progress) if progress is not None else None
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify") as pool:
        # Bounded submission keeps memory flat and lets cancel stop quickly.
        window = 16
        pending = []
        it = iter(expected)
        for exp in it:
            pending.append(pool.submit(_check_one, root, exp))
            if len(pending) >= window:
                break
        while pending:
            fut = pending.pop(0)
            msg, size = fut.result()
            if msg:
                failures.append(msg)
            done += 1
            nbytes += size
            if on_bytes is not None:
                on_bytes(size)
            if report is not None:
                report(Progress("verify", done, total, nbytes, total_bytes,
                                message="reading back from the device"), force=done == total)
            if cancel is not None and cancel.cancelled:
                for f in pending:
                    f.cancel()
                cancel.raise_if_cancelled()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_check_one, root, nxt))
    return failures, nbytes


def verify_records(root: Path, expected: list[Expected],
                   cancel: CancelToken | None = None) -> list[str]:
    """Reopen ``root`` with the reader; every record must match its planned file."""
    from app.core.medium.reader import open_medium

    try:
        medium = open_medium(root, cancel=cancel)
    except Exception as exc:  # noqa: BLE001 - any failure to read our own medium is a failure
        return [f"DICOMDIR: the written medium cannot be read back ({exc})"]
    failures = [f"{p.path or 'medium'}: {p.message}" for p in medium.problems
                if p.severity == "error"]
    if medium.source != "dicomdir":
        failures.append("DICOMDIR: not used when reading the medium back")
    want = {e.sop_uid: e for e in expected if e.sop_uid}
    seen: set[str] = set()
    for inst in medium.instances():
        uid = inst.sop_instance_uid or ""
        exp = want.get(uid)
        if exp is None:
            failures.append(f"{inst.path}: record for an instance that was not exported ({uid})")
            continue
        seen.add(uid)
        if not inst.referenced:
            failures.append(f"{exp.rel}: file not referenced by the DICOMDIR")
        if (inst.path or "").upper() != exp.rel.upper():
            failures.append(f"{exp.rel}: record points to {inst.path}")
        if inst.sop_class_uid != exp.sop_class:
            failures.append(f"{exp.rel}: record SOP Class {inst.sop_class_uid} differs from "
                            f"the file's {exp.sop_class}")
        if inst.transfer_syntax_uid and inst.transfer_syntax_uid != exp.transfer_syntax:
            failures.append(f"{exp.rel}: record transfer syntax "
                            f"{ts_name(inst.transfer_syntax_uid)} differs from the file's "
                            f"{ts_name(exp.transfer_syntax)}")
    for uid, exp in want.items():
        if uid not in seen:
            failures.append(f"{exp.rel}: no DICOMDIR record lists this file")
    return failures
