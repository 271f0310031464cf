"""Writing an export safely: a staging folder inside DEST, fast copies, flush, atomic install.

Guarantees (issue 3 item 4):

- Everything is written into ``DEST/.discbridge-XXXX`` (same filesystem, so renames are atomic)
  and moved into place only at the end, the DICOMDIR last; on cancel or any error the staging
  folder is removed and DEST is as it was.
- Data is flushed before "done": ``syncfs`` of DEST's filesystem (``os.sync`` where there is
  none, ``fsync`` of every file on Windows), then ``fsync`` of every written directory. Each
  copied file's writeback is *started* as soon as it is copied (Linux ``sync_file_range``
  with ``SYNC_FILE_RANGE_WRITE``: asynchronous, it only queues the pages for the device), so the
  device writes while later files are still being copied and the final flush has little left
  to wait for; that final flush is still what makes "done" true.
- An existing medium in DEST is replaced only with ``force``: the old entries are moved aside into
  the staging folder, the new ones moved in, then the old ones deleted; a failure while moving
  puts the old ones back.
- Copies of unchanged files use the kernel (``copy_file_range`` / ``sendfile``) in chunks, with
  the cancel token checked between chunks; nothing here ever opens a source for writing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from app.core.jobs import CancelToken

STAGING_PREFIX = ".discbridge-"
CHUNK = 32 << 20  # bytes per kernel copy call between cancel checks
HASH_CHUNK = 1 << 20
RW_CHUNK = 8 << 20  # read/write fallback buffer (macOS, Windows)
# Entries of DEST that belong to a medium we would write (or that an earlier export wrote).
_MEDIUM_NAME = re.compile(r"^(DICOMDIR|README\.TXT|README|PA\d{3,6}|VOL\d{2,3})$", re.IGNORECASE)

ByteCallback = Callable[[int], None]


def medium_entries(dest: Path, ours: Iterable[str] = ()) -> list[str]:
    """Names in ``dest`` that form (or would collide with) a medium: DICOMDIR, README.TXT,
    ``PA…``/``VOL…`` folders, and any of ``ours``."""
    if not dest.is_dir():
        return []
    wanted = {n.upper() for n in ours}
    found = []
    for name in sorted(os.listdir(dest)):
        if name.startswith(STAGING_PREFIX):
            continue
        if _MEDIUM_NAME.match(name) or name.upper() in wanted:
            found.append(name)
    return found


def make_staging(dest: Path) -> Path:
    """Create DEST (if needed) and a fresh staging folder inside it."""
    dest.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest))


def remove_tree(path: Path) -> None:
    """Delete a folder we created; never raises (it is the cleanup path)."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path, ignore_errors=True)


def _kernel_copy(src: int, dst: int, count: int, offset: int,
                 cancel: CancelToken | None, on_bytes: ByteCallback | None,
                 written: int = 0) -> None:
    """Copy ``count`` bytes of ``src`` from ``offset`` to the current end of ``dst`` (which
    holds ``written`` bytes already).

    Linux: ``copy_file_range`` (falling back to ``sendfile``); elsewhere (macOS, Windows) a
    plain read/write loop with 8 MiB buffers. Cancel is checked between chunks; each chunk's
    writeback is started as soon as it is copied (:func:`start_writeback`), so a slow device
    holds a copy thread for one chunk at most, never for a whole large file.
    """
    done = 0
    mode = "cfr" if hasattr(os, "copy_file_range") else (
        "sendfile" if sys.platform.startswith("linux") and hasattr(os, "sendfile") else "rw")
    if mode == "rw":
        os.lseek(src, offset, os.SEEK_SET)
    while done < count:
        if cancel is not None:
            cancel.raise_if_cancelled()
        n = min(CHUNK, count - done)
        sent = 0
        if mode == "cfr":
            try:
                sent = os.copy_file_range(src, dst, n, offset + done)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                mode = "sendfile"
                continue
        elif mode == "sendfile":
            sent = os.sendfile(dst, src, offset + done, n)
        else:
            data = os.read(src, min(n, RW_CHUNK))
            sent = len(data)
            view = memoryview(data)
            while view:
                view = view[os.write(dst, view):]
        if sent == 0:
            raise OSError(errno.EIO, "source file ended early (changed while copying?)")
        if done:
            start_writeback(dst, written + done, sent)
        else:  # the first chunk, with what was written before it (a new File Meta header)
            start_writeback(dst, 0, written + sent)
        done += sent
        if on_bytes is not None:
            on_bytes(sent)


def copy_file(src: Path, dst: Path, *, cancel: CancelToken | None = None,
              on_bytes: ByteCallback | None = None, want_hash: bool = False,
              prefix: bytes = b"", offset: int = 0) -> str | None:
    """Create ``dst`` = ``prefix`` + bytes of ``src`` from ``offset``; returns its SHA-256 when
    ``want_hash`` (else None). Without hashing the kernel copies (no
    decode, no userspace buffer); with hashing the bytes pass through once, hashed on the way.
    """
    if want_hash:
        with open(src, "rb") as fin, open(dst, "xb") as fout:
            if os.fstat(fin.fileno()).st_size < offset:
                raise OSError(errno.EIO, f"{src}: shorter than its header")
            h = hashlib.sha256(prefix)
            if prefix:
                fout.write(prefix)
            fin.seek(offset)
            _stream(fin, fout, h, cancel, on_bytes)
            return h.hexdigest()
    fin_fd = os.open(src, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        size = os.fstat(fin_fd).st_size
        if offset > size:
            raise OSError(errno.EIO, f"{src}: shorter than its header")
        fout_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                          0o644)
        try:
            if prefix:
                os.write(fout_fd, prefix)
            _kernel_copy(fin_fd, fout_fd, size - offset, offset, cancel, on_bytes,
                         written=len(prefix))
        finally:
            os.close(fout_fd)
    finally:
        os.close(fin_fd)
    return None


def copy_stream(fin: BinaryIO, dst: Path, *, cancel: CancelToken | None = None,
                on_bytes: ByteCallback | None = None, prefix: bytes = b"",
                offset: int = 0) -> str:
    """Create ``dst`` from an open source (e.g. a file inside an .iso); returns its SHA-256."""
    h = hashlib.sha256(prefix)
    with open(dst, "xb") as fout:
        if prefix:
            fout.write(prefix)
        if offset:
            fin.seek(offset)
        _stream(fin, fout, h, cancel, on_bytes)
    return h.hexdigest()


def _stream(fin: BinaryIO, fout: BinaryIO, h: hashlib._Hash, cancel: CancelToken | None,
            on_bytes: ByteCallback | None) -> None:
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    since_check = 0
    while True:
        n = fin.readinto(view)  # type: ignore[attr-defined]
        if not n:
            break
        chunk = view[:n]
        h.update(chunk)
        fout.write(chunk)
        since_check += n
        if on_bytes is not None:
            on_bytes(n)
        if cancel is not None and since_check >= CHUNK:
            since_check = 0
            cancel.raise_if_cancelled()


def hash_source(src: Path, prefix: bytes = b"", offset: int = 0) -> str:
    """SHA-256 of ``prefix`` + ``src`` from ``offset``: the bytes a copy was meant to hold."""
    h = hashlib.sha256(prefix)
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as fp:
        fp.seek(offset)
        while n := fp.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def write_bytes(dst: Path, data: bytes) -> str:
    """Create ``dst`` with ``data``; returns its SHA-256."""
    with open(dst, "xb") as fout:
        fout.write(data)
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # e.g. Windows: directories cannot be opened; NTFS/FAT metadata is flushed by sync
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_SYNC_FILE_RANGE_WRITE = 2
_libc: list[object] = []  # [CDLL or None], loaded on first use


def _linux_libc() -> Any:
    if not _libc:
        lib = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                lib = ctypes.CDLL(None, use_errno=True)
                lib.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                                ctypes.c_uint]
                lib.syncfs.argtypes = [ctypes.c_int]
            except (OSError, AttributeError):
                lib = None
        _libc.append(lib)
    return _libc[0]


def start_writeback(fd: int, offset: int = 0, nbytes: int = 0) -> None:
    """Start writing ``nbytes`` from ``offset`` of ``fd`` (0: to the end) to the device (Linux
    only; a no-op elsewhere). It does not wait for the device, though the kernel may hold the
    caller while its queue is full (a slow stick: the copy then runs at the device's pace).
    Durability still comes from :func:`flush_tree`; this only overlaps the device's work with
    the copying of later data."""
    lib = _linux_libc()
    if lib is not None:
        lib.sync_file_range(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)  # errors: flush_tree


def _syncfs(root: Path) -> bool:
    """``syncfs`` of the filesystem holding ``root`` (Linux): True when done."""
    lib = _linux_libc()
    if lib is None:
        return False
    try:
        fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return False  # the caller falls back to os.sync
    try:
        return int(lib.syncfs(fd)) == 0
    finally:
        os.close(fd)


def flush_tree(root: Path) -> None:
    """Flush everything written under ``root`` to the device: ``syncfs`` (else ``os.sync``,
    else an fsync per file) + fsync of the dirs."""
    if _syncfs(root):
        pass
    elif hasattr(os, "sync"):
        os.sync()
    else:  # pragma: no cover - Windows: fsync each file
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                with open(os.path.join(dirpath, f), "rb+") as fp:
                    os.fsync(fp.fileno())
    for dirpath, _dirs, _files in os.walk(root):
        _fsync_dir(Path(dirpath))


def install(staging: Path, dest: Path, names: list[str], *, replace: list[str]) -> None:
    """Move ``names`` (top-level entries of ``staging``, DICOMDIR last) into ``dest``.

    ``replace``: existing entries of ``dest`` to move aside first (``force``); they are deleted
    only once every new entry is in place, and put back if a move fails.
    """
    aside = staging / ".old"
    aside.mkdir()
    moved_aside: list[str] = []
    moved_in: list[str] = []
    try:
        for name in replace:
            os.replace(dest / name, aside / name)
            moved_aside.append(name)
        for name in names:
            if (dest / name).exists():
                raise OSError(errno.EEXIST, f"{dest / name} appeared while exporting")
            os.replace(staging / name, dest / name)
            moved_in.append(name)
    except BaseException:
        for name in reversed(moved_in):
            with contextlib.suppress(OSError):
                os.replace(dest / name, staging / name)
        for name in reversed(moved_aside):
            with contextlib.suppress(OSError):
                os.replace(aside / name, dest / name)
        raise
    _fsync_dir(dest)
    remove_tree(aside)
