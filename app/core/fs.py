"""Read-only, root-confined access to a medium's files: a folder, a mount point or an .iso image.

Every path here is *relative to the medium root*, ``/``-separated, in the real on-disc spelling.
Implementations refuse to leave the root (``..``, absolute paths, symlinks pointing outside)
by raising :class:`app.core.errors.UnsafePath`. Nothing here ever writes.

:class:`DirFS` serves a folder or mount point, :class:`IsoFS` an .iso image read directly with
pycdlib (no mounting), and :func:`open_fs` picks one for whatever path the user gave.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import struct
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, NamedTuple, Protocol

from app.core.errors import UnreadableMedium, UnsafePath


class Entry(NamedTuple):
    """One directory entry as listed (a tuple: tens of thousands are made per medium)."""

    name: str
    is_dir: bool
    size: int  # bytes; 0 for directories
    is_link: bool = False  # a symlink (DirFS): its target must be checked before it is trusted


class MediumFS(Protocol):
    """What the reader, the viewer and the exporter need from a medium."""

    label: str  # what to show as the root (the folder path, or the .iso path)

    def listdir(self, rel: str) -> list[Entry]:
        """Entries of the directory ``rel`` ("" is the root). Raises OSError when unreadable."""
        ...

    def open(self, rel: str) -> BinaryIO:
        """Open a file for binary reading. Raises OSError / UnsafePath."""
        ...

    def size(self, rel: str) -> int:
        """Size in bytes of a file. Raises OSError / UnsafePath."""
        ...

    def local_path(self, rel: str) -> Path | None:
        """A real filesystem path for ``rel`` (for fast copies), or None (e.g. inside an .iso)."""
        ...


def check_relative(rel: str) -> PurePosixPath:
    """Validate a root-relative path: no absolute, drive, UNC or ``..`` parts. Returns it parsed."""
    if "\\" in rel or "\x00" in rel:
        raise UnsafePath(f"{rel!r}: backslash or NUL in a medium path")
    p = PurePosixPath(rel)
    if p.is_absolute() or (p.parts and ":" in p.parts[0]):
        raise UnsafePath(f"{rel}: absolute path or drive letter leads outside the medium")
    if any(part == ".." for part in p.parts):
        raise UnsafePath(f"{rel}: '..' leads outside the medium")
    return p


def _fast_parts(rel: str) -> tuple[str, ...]:
    """:func:`check_relative`'s parts, without building a path object in the common case."""
    if rel and "\\" not in rel and "\x00" not in rel and ":" not in rel and \
            not rel.startswith("/") and ".." not in rel and "//" not in rel:
        return tuple(p for p in rel.split("/") if p and p != ".")
    return check_relative(rel).parts


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
        """Entries of ``rel``; dangling symlinks are left out (their target does not exist)."""
        out: list[Entry] = []
        with os.scandir(self._real_dir(rel)) as it:
            for de in it:
                try:
                    is_link = de.is_symlink()
                    st = de.stat()  # follows symlinks; cached by scandir for plain entries
                except OSError:
                    if de.is_symlink():
                        continue  # dangling symlink (or a loop): nothing to read there
                    out.append(Entry(de.name, False, 0))
                    continue
                is_dir = stat.S_ISDIR(st.st_mode)
                if not is_dir and not stat.S_ISREG(st.st_mode):
                    continue  # devices, FIFOs, sockets: never open them
                out.append(Entry(de.name, is_dir, 0 if is_dir else st.st_size, is_link))
        return out

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
        """
        parts = _fast_parts(rel)
        if not parts:
            raise IsADirectoryError(21, "Is a directory", str(self.root))
        folder = self._real_dir("/".join(parts[:-1]))
        full = os.path.join(folder, parts[-1])
        try:
            # O_NONBLOCK: a FIFO planted on the medium must not hang the reader
            fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            return open(self._path(rel), "rb")  # a symlink: resolved and checked
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise IsADirectoryError(21, "Not a regular file", rel)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def size(self, rel: str) -> int:
        return self._path(rel).stat().st_size

    def local_path(self, rel: str) -> Path | None:
        return self._path(rel)


# --------------------------------------------------------------------------------------------
# .iso images (PS3.12 Annex F: ISO 9660 Level 1 for CD-R; Annex P: UDF and/or ISO 9660 on DVD)

_VERSION_RE = re.compile(r";\d*$")
ISO_NAMESPACES = ("iso9660", "joliet", "rock_ridge", "udf")


def iso_clean_name(name: str) -> str:
    """An ISO 9660 identifier as DICOM names it: ``IM000001.;1`` → ``IM000001`` (STANDARDS §5)."""
    name = _VERSION_RE.sub("", name)
    stripped = name.rstrip(".")
    return stripped or name


def looks_like_iso(path: str | os.PathLike[str]) -> bool:
    """True when the file carries an ISO 9660 or UDF volume descriptor at sector 16."""
    try:
        with open(path, "rb") as fp:
            fp.seek(32768)
            vd = fp.read(8)
    except OSError:
        return False
    return len(vd) >= 6 and vd[1:6] in (b"CD001", b"BEA01", b"NSR02", b"NSR03")


class _SliceIO(io.RawIOBase):
    """A read-only window ``[start, start + length)`` of a file descriptor, via ``os.pread``.

    Thread-safe (no shared file position); a bad sector surfaces as the OSError it is.
    """

    def __init__(self, fd: int, start: int, length: int, name: str = "") -> None:
        super().__init__()
        self._fd, self._start, self._length, self._pos = fd, start, length, 0
        self.name = name  # what io.BufferedReader.name shows (used in messages)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._length - self._pos)
        if n <= 0:
            return 0
        data = os.pread(self._fd, n, self._start + self._pos)
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


@dataclass
class _IsoNode:
    entry: Entry
    record: Any  # pycdlib DirectoryRecord / UDFFileEntry
    children: dict[str, _IsoNode] | None = None  # filled on first listdir


class IsoFS:
    """An .iso image read directly (no mounting), through pycdlib.

    The ISO 9660 primary names are used (``;1`` and a trailing ``.`` stripped: ``IM000001.;1`` is
    served as ``IM000001``), because PS3.12 makes them the DICOM names. When the primary tree is
    empty (a UDF-only or odd image) the first non-empty of UDF, Joliet and Rock Ridge is used;
    ``namespace`` forces one. Rock Ridge symlinks are never followed. Nothing outside the image
    can be reached: paths are looked up in the image's own directory tree.
    """

    def __init__(self, path: str | os.PathLike[str], namespace: str | None = None) -> None:
        import pycdlib
        from pycdlib.pycdlibexception import PyCdlibException

        self.path = Path(path).resolve()
        self.label = str(self.path)
        self._lock = threading.Lock()
        try:
            self._fp = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise UnreadableMedium(f"{self.path}: cannot open the image ({exc.strerror})") from exc
        self._iso = pycdlib.PyCdlib()
        try:
            self._iso.open_fp(self._fp)
        except (PyCdlibException, OSError, ValueError, IndexError, KeyError, struct.error) as exc:
            self._fp.close()
            raise UnreadableMedium(f"{self.path}: not a readable ISO 9660/UDF image ({exc})") from exc
        self._block = self._iso.logical_block_size
        available = ["iso9660"]
        if self._iso.has_udf():
            available.append("udf")
        if self._iso.has_joliet():
            available.append("joliet")
        if self._iso.has_rock_ridge():
            available.append("rock_ridge")
        self.namespaces = tuple(available)
        if namespace is not None and namespace not in available:
            self.close()
            raise UnreadableMedium(f"{self.path}: the image has no {namespace} tree")
        for ns in [namespace] if namespace else available:
            self.namespace = ns
            self._root_node = _IsoNode(Entry("", True, 0), None)
            try:
                self._root_node.children = self._list(None)
            except OSError as exc:
                self.close()
                raise UnreadableMedium(f"{self.path}: unreadable {ns} directory ({exc})") from exc
            if self._root_node.children:  # the first non-empty tree wins, ISO 9660 first
                break
        else:
            self.namespace = available[0] if namespace is None else namespace
            self._root_node = _IsoNode(Entry("", True, 0), None, {})

    # -- tree ---------------------------------------------------------------------------------
    def _root(self) -> _IsoNode:
        return self._root_node

    def _list(self, record: Any) -> dict[str, _IsoNode]:
        from pycdlib.pycdlibexception import PyCdlibException

        kw = {"iso9660": "iso_path", "joliet": "joliet_path", "rock_ridge": "rr_path",
              "udf": "udf_path"}[self.namespace]
        out: dict[str, _IsoNode] = {}
        try:
            with self._lock:
                if record is None:
                    children = list(self._iso.list_children(**{kw: "/"}))
                elif self.namespace == "udf":
                    children = [fi.file_entry for fi in record.fi_descs.values()
                                if fi.file_entry is not None and not fi.isparent]
                else:
                    children = list(record.children)
        except (PyCdlibException, AttributeError) as exc:
            raise OSError(f"unreadable directory in {self.label}: {exc}") from exc
        for rec in children:
            if rec is None:
                continue
            name = self._name(rec)
            if name is None or name in out:
                continue
            is_dir = bool(rec.is_dir())
            size = 0 if is_dir else int(rec.get_data_length())
            out[name] = _IsoNode(Entry(name, is_dir, size), rec)
        return out

    def _name(self, rec: Any) -> str | None:
        if self.namespace == "udf":
            return rec.file_identifier().decode("utf-8", "replace") or None
        if getattr(rec, "is_dot", lambda: False)() or getattr(rec, "is_dotdot", lambda: False)():
            return None
        ident = rec.file_identifier()
        if ident in (b".", b"..", b"\x00", b"\x01"):
            return None
        if self.namespace == "joliet":
            return iso_clean_name(ident.decode("utf-16-be", "replace"))
        if self.namespace == "rock_ridge":
            rr = rec.rock_ridge
            if rr is None:
                return iso_clean_name(ident.decode("latin-1"))
            if rr.is_symlink():
                return None  # never follow a symlink recorded in the image
            return rr.name().decode("utf-8", "replace")
        return iso_clean_name(ident.decode("latin-1"))

    def _node(self, rel: str) -> _IsoNode:
        parts = check_relative(rel).parts
        node = self._root()
        for i, part in enumerate(parts):
            if node.children is None:
                node.children = self._list(node.record)
            child = node.children.get(part)
            if child is None:
                raise FileNotFoundError(2, "No such file or directory on the image",
                                        "/".join(parts[: i + 1]))
            node = child
        if node.entry.is_dir and node.children is None:
            node.children = self._list(node.record)
        return node

    # -- MediumFS -----------------------------------------------------------------------------
    def listdir(self, rel: str) -> list[Entry]:
        node = self._node(rel)
        if not node.entry.is_dir:
            raise NotADirectoryError(20, "Not a directory", rel)
        assert node.children is not None
        return [c.entry for c in node.children.values()]

    def open(self, rel: str) -> BinaryIO:
        node = self._node(rel)
        if node.entry.is_dir:
            raise IsADirectoryError(21, "Is a directory", rel)
        ino = getattr(node.record, "inode", None)
        if ino is None or node.entry.size == 0:
            return io.BytesIO(b"")  # type: ignore[return-value]
        start = ino.orig_extent_loc * self._block
        raw = _SliceIO(self._fp.fileno(), start, node.entry.size, f"{self.label}/{rel}")
        return io.BufferedReader(raw, 65536)  # type: ignore[return-value]

    def size(self, rel: str) -> int:
        return self._node(rel).entry.size

    def local_path(self, rel: str) -> Path | None:
        self._node(rel)
        return None

    def realpath(self, rel: str) -> str:
        """Images hold no followed symlinks: the path itself (validated)."""
        return check_relative(rel).as_posix().lstrip(".")

    def __reduce__(self) -> tuple[type[IsoFS], tuple[Path, str]]:
        """Pickle as "reopen this image": an export plan can then run in a child process."""
        return (IsoFS, (self.path, self.namespace))

    def close(self) -> None:
        try:
            self._iso.close()
        except Exception:  # noqa: BLE001 - closing a broken image must not raise
            pass
        self._fp.close()

    def __enter__(self) -> IsoFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    if looks_like_iso(p):
        return IsoFS(p), ""
    real = p.resolve()
    return DirFS(real.parent), real.name
