"""Read-only, root-confined access to a medium's files: a folder, a mount point or an .iso image.

Every path here is *relative to the medium root*, ``/``-separated, in the real on-disc spelling.
Implementations refuse to leave the root (``..``, absolute paths, symlinks pointing outside)
by raising :class:`app.core.errors.UnsafePath`. Nothing here ever writes.

:class:`DirFS` serves a folder or mount point, :class:`app.core.medium.isofs.IsoFS` an .iso image read
directly with pycdlib (no mounting; importable from here too), and :func:`open_fs` picks one for
whatever path the user gave.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

from app.core.errors import UnreadableMedium, UnsafePath
from app.core.files import Entry, MediumFS, check_relative


def _fast_parts(rel: str) -> tuple[str, ...]:
    """:func:`check_relative`'s parts, without building a path object in the common case."""
    if rel and "\\" not in rel and "\x00" not in rel and ":" not in rel and \
            not rel.startswith("/") and ".." not in rel and "//" not in rel:
        return tuple(p for p in rel.split("/") if p and p != ".")
    return check_relative(rel).parts


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# openat()/fdopendir() (POSIX): how folders deeper than PATH_MAX are reached
_DIR_FD = os.open in os.supports_dir_fd and os.scandir in os.supports_fd


class DirFS:
    """A folder or mount point. Symlinks are followed only while they stay inside the root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.label = str(self.root)
        self._dirs: dict[str, str] = {}

    def _path(self, rel: str) -> Path:
        p = check_relative(rel)
        full = self.root.joinpath(*p.parts) if p.parts else self.root
        real = full.resolve()
        if real != self.root and not real.is_relative_to(self.root):
            raise UnsafePath(f"{rel}: symlink leads outside the medium ({real})")
        return real

    def listdir(self, rel: str) -> list[Entry]:
        """Entries of ``rel``; dangling symlinks are left out (their target does not exist).

        Kinds come from the directory entries themselves (``d_type``): only regular files are
        ``stat``-ed (for their size) and symlinks followed (their target's kind). A folder whose
        path exceeds the system's limit (``ENAMETOOLONG``: deep trees of long names on a USB
        stick) is listed through a descriptor opened component by component.
        """
        try:
            return self._entries(self._real_dir(rel))
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG or not _DIR_FD:
                raise
        fd = self._dir_fd(rel)
        try:
            return self._entries(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _entries(where: str | int) -> list[Entry]:
        out: list[Entry] = []
        with os.scandir(where) as it:
            for de in it:
                try:
                    if de.is_file(follow_symlinks=False):  # the common case first
                        out.append(Entry(de.name, False, de.stat(follow_symlinks=False).st_size))
                    elif de.is_symlink():
                        try:
                            st = de.stat()  # the target's kind and size
                        except OSError as exc:
                            if exc.errno == errno.ENAMETOOLONG:
                                raise
                            continue  # dangling symlink (or a loop): nothing to read there
                        is_dir = stat.S_ISDIR(st.st_mode)
                        if is_dir or stat.S_ISREG(st.st_mode):
                            out.append(Entry(de.name, is_dir, 0 if is_dir else st.st_size, True))
                    elif de.is_dir(follow_symlinks=False):
                        out.append(Entry(de.name, True, 0))
                    # devices, FIFOs, sockets: never listed, never opened
                except OSError as exc:
                    if exc.errno == errno.ENAMETOOLONG:
                        raise  # the caller lists the folder through a descriptor instead
                    out.append(Entry(de.name, False, 0))  # unreadable entry: tried when opened
        return out

    def _dir_fd(self, rel_dir: str) -> int:
        """A descriptor of folder ``rel_dir`` opened component by component (``openat``), for
        paths longer than the system accepts. Starts at the deepest folder already verified
        (:meth:`_real_dir`'s cache) and follows no symlink below it."""
        parts = _fast_parts(rel_dir)
        k = len(parts)
        while k > 0 and "/".join(parts[:k]) not in self._dirs:
            k -= 1
        fd = os.open(self._dirs.get("/".join(parts[:k]), str(self.root)),
                     os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        try:
            for part in parts[k:]:
                try:
                    nfd = os.open(part, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC | _O_NOFOLLOW,
                                  dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise OSError(errno.ENAMETOOLONG, "a symlink below a path longer than "
                                      "the system's limit is not followed", rel_dir) from exc
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def start_bulk_listing(self, max_depth: int = 32) -> BulkListing | None:
        """List the whole tree in a separate ``find`` process (GNU find, Linux), or None.

        Purely a speed-up: the 20,000 ``stat`` calls of a large medium then run on another core
        while this process parses the DICOMDIR (Python threads cannot: the GIL). Whatever the
        output cannot vouch for (an error message, a non-zero exit, a symlink that cannot be
        followed) makes :meth:`BulkListing.result` return None, and the folders are listed one
        by one as usual, with their errors reported.
        """
        if not sys.platform.startswith("linux"):
            return None
        import subprocess  # here: ls of a flat folder or an .iso never pays for it

        find = next((c for c in (os.path.join(d, "find") for d in
                                 os.environ.get("PATH", os.defpath).split(os.pathsep) if d)
                     if os.access(c, os.X_OK) and not os.path.isdir(c)), None)
        if find is None:
            return None
        try:
            proc = subprocess.Popen(
                [find, "-P", ".", "-mindepth", "1", "-maxdepth", str(max_depth + 1),
                 "-printf", "%P\\0%y%Y\\0%s\\0"],
                cwd=self.root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
        except OSError:
            return None
        return BulkListing(proc, self)

    def realpath(self, rel: str) -> str:
        """``rel`` with every symlink resolved, relative to the root. Raises UnsafePath outside it."""
        real = self._path(rel)
        return "" if real == self.root else real.relative_to(self.root).as_posix()

    def _real_dir(self, rel_dir: str) -> str:
        """The verified real path of a folder (cached: resolved once per folder)."""
        got = self._dirs.get(rel_dir)
        if got is None:
            parts = _fast_parts(rel_dir)
            if not parts:
                got = str(self.root)
            else:
                parent = self._real_dir("/".join(parts[:-1]))
                joined = os.path.join(parent, parts[-1])
                if stat.S_ISLNK(os.lstat(joined).st_mode):
                    got = str(self._path(rel_dir))  # a symlink: resolved and checked
                else:
                    got = joined  # a plain folder inside a verified one
            self._dirs[rel_dir] = got
        return got

    def open(self, rel: str) -> BinaryIO:
        """Open a file for reading; never outside the root.

        Fast path: the folder is resolved once (cached) and the file is opened with
        ``O_NOFOLLOW``; a file that is itself a symlink takes the full resolve-and-check path.
        Only regular files open (a FIFO or device planted on the medium is refused at once).
        """
        return os.fdopen(self.open_fd(rel), "rb")

    def open_raw(self, rel: str) -> BinaryIO:
        """:meth:`open` without a buffer (an ``io.FileIO``)."""
        return io.FileIO(self.open_fd(rel), "rb", closefd=True)  # type: ignore[return-value]

    def open_fd(self, rel: str) -> int:
        """:meth:`open` as a bare descriptor (the caller closes it), for the header-only scan,
        where every object per file counts."""
        parts = _fast_parts(rel)
        if not parts:
            raise IsADirectoryError(21, "Is a directory", str(self.root))
        # O_NONBLOCK: a FIFO planted on the medium must not hang the reader
        flags = os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)
        try:
            folder = self._real_dir("/".join(parts[:-1]))
            fd = os.open(os.path.join(folder, parts[-1]), flags)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG and _DIR_FD:
                fd = self._open_long(rel, parts, flags)
            elif exc.errno != errno.ELOOP:
                raise
            else:  # a symlink: resolved and checked
                fd = os.open(self._path(rel), flags & ~_O_NOFOLLOW)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise IsADirectoryError(21, "Not a regular file", rel)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_long(self, rel: str, parts: tuple[str, ...], flags: int) -> int:
        """Open a file below a path longer than the system's limit (no symlink followed)."""
        dfd = self._dir_fd("/".join(parts[:-1]))
        try:
            return os.open(parts[-1], flags, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(errno.ENAMETOOLONG, "a symlink below a path longer than the "
                              "system's limit is not followed", rel) from exc
            raise
        finally:
            os.close(dfd)

    def size(self, rel: str) -> int:
        try:
            return self._path(rel).stat().st_size
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
        with self.open(rel) as fp:
            return os.fstat(fp.fileno()).st_size

    def local_path(self, rel: str) -> Path | None:
        return self._path(rel)



class BulkListing:
    """A running ``find`` over a :class:`DirFS` (see :meth:`DirFS.start_bulk_listing`)."""

    def __init__(self, proc: Any, fs: DirFS) -> None:  # a subprocess.Popen[bytes]
        self._proc, self._fs = proc, fs
        self._out: tuple[bytes, bytes] = (b"", b"")
        self._thread = threading.Thread(target=self._collect, name="medium-find", daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        try:
            self._out = self._proc.communicate()
        except (OSError, ValueError):
            self._out = (b"", b"failed")

    def cancel(self) -> None:
        """Stop the process (idempotent) and wait for it."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._thread.join()

    def result(self) -> dict[str, list[Entry]] | None:
        """Entries by root-relative folder (every folder found, empty ones too), or None."""
        self._thread.join()
        out, err = self._out
        if self._proc.returncode != 0 or err:
            return None
        fields = os.fsdecode(out).split("\0")
        listings: dict[str, list[Entry]] = {"": []}
        new = tuple.__new__
        last: str | None = None
        got: list[Entry] = []
        for path, kind, size in zip(fields[0::3], fields[1::3], fields[2::3], strict=False):
            folder, _, name = path.rpartition("/")
            if folder != last:  # find lists a folder's entries together (mostly)
                last = folder
                got = listings.setdefault(folder, [])
            if kind == "ff":  # %y%Y: a regular file
                got.append(new(Entry, (name, False, int(size), False)))
                continue
            if kind == "dd":
                got.append(new(Entry, (name, True, 0, False)))
                listings.setdefault(path, [])
                continue
            if kind[:1] == "l" and kind[1:] in ("f", "d"):
                try:  # a symlink: its target's kind and size (confinement is checked on use)
                    st = os.stat(os.path.join(self._fs.root, path))
                except OSError:
                    return None
                is_dir = stat.S_ISDIR(st.st_mode)
                if not is_dir and not stat.S_ISREG(st.st_mode):
                    continue
                got.append(Entry(name, is_dir, 0 if is_dir else st.st_size, True))
            # else: dangling or looping symlinks, devices, FIFOs, sockets
        return listings


def __getattr__(name: str) -> Any:
    """``IsoFS`` and its helpers live in :mod:`app.core.medium.isofs` (imported when first used)."""
    if name in ("IsoFS", "iso_clean_name", "looks_like_iso", "find_sessions"):
        from app.core.medium import isofs

        return getattr(isofs, name)
    raise AttributeError(name)


def open_fs(path: str | os.PathLike[str]) -> tuple[MediumFS, str]:
    """A MediumFS for what the user opened, and where to start inside it.

    - a folder or mount point → ``(DirFS(folder), "")``;
    - an .iso image (by its volume descriptors, whatever its name) → ``(IsoFS(image), "")``;
    - any other file (a DICOMDIR, possibly renamed) → ``(DirFS(its folder), its name)``: the
      medium root is the file's folder and the second value names the file to start from.

    Raises UnreadableMedium when the path does not exist or cannot be read.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError as exc:
        raise UnreadableMedium(f"{p}: no such file or folder") from exc
    except OSError as exc:
        raise UnreadableMedium(f"{p}: cannot be read ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(st.st_mode):
        if not os.access(p, os.R_OK | os.X_OK):
            raise UnreadableMedium(f"{p}: folder cannot be read (permission denied)")
        return DirFS(p), ""
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableMedium(f"{p}: not a folder, a DICOMDIR or an .iso image")
    from app.core.medium.isofs import IsoFS, looks_like_iso

    if looks_like_iso(p):
        return IsoFS(p), ""
    real = p.resolve()
    return DirFS(real.parent), real.name
