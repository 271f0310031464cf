""".iso images read directly (no mounting), through pycdlib: :class:`IsoFS`.

PS3.12 Annex F (CD-R: ISO 9660 Level 1, multi-session allowed and readers must support it,
STANDARDS §5) and Annex P (DVD: UDF and/or ISO 9660). Paths are root-relative, ``/``-separated,
as for every :class:`app.core.medium.fs.MediumFS`; nothing outside the image can be reached.
"""

from __future__ import annotations

import errno
import io
import os
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from app.core.errors import UnreadableMedium
from app.core.files import Entry, check_relative
from app.core.medium.iso9660 import (
    RawIso,
    RawRecord,
    RemapIO,
    SectorView,
    find_sessions,
    pvd_at,
    udf_only_view,
)

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
        if not data:  # the directory promised more: the image was cut short
            raise OSError(errno.EIO, "the image ends before this file's data (cut short)",
                          self.name)
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
    lost: bool = False  # a file whose data lies past the end of the image


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
            size = self._image_size = os.fstat(self._fp.fileno()).st_size
            self.sessions = find_sessions(self._fp.fileno(), size)
            self.session_start = self.sessions[-1]  # the newest session is the disc's content
            view: BinaryIO = self._fp
            udf_only = None if pvd_at(self._fp.fileno(), 16) else udf_only_view(
                self._fp.fileno(), size)
            if udf_only is not None:
                view = io.BufferedReader(SectorView(self._fp.fileno(), size,  # type: ignore[assignment]
                                                     udf_only))
            elif self.session_start:
                got = pvd_at(self._fp.fileno(), self.session_start + 16)
                assert got is not None
                view = io.BufferedReader(RemapIO(self._fp.fileno(), size,  # type: ignore[assignment]
                                                  self.session_start + 16, got[2]))
            self._raw: RawIso | None = None
            self.fallback: str | None = None  # why pycdlib's reading was not used
            try:
                self._iso.open_fp(view)
            except (PyCdlibException, OSError, ValueError, IndexError, KeyError,
                    struct.error) as exc:
                if udf_only is not None:
                    raise
                # pycdlib refuses the whole image for one bad directory: read the primary
                # tree ourselves, directory by directory (app.core.medium.iso9660)
                self._raw = RawIso(self._fp.fileno(), size, self.session_start + 16)
                self.fallback = str(exc) or type(exc).__name__
        except (PyCdlibException, OSError, ValueError, IndexError, KeyError, struct.error) as exc:
            self._fp.close()
            raise UnreadableMedium(f"{self.path}: not a readable ISO 9660/UDF image "
                                   f"({exc or type(exc).__name__})") from exc
        available = ["iso9660"]
        if self._raw is not None:
            self._block = 2048
            self.namespaces = ("iso9660",)
            self.namespace = "iso9660"
            self._root_node = _IsoNode(Entry("", True, 0), self._raw.root)
            try:
                self._root_node.children = self._list_raw(self._raw.root)
            except OSError as exc:
                self.close()
                raise UnreadableMedium(f"{self.path}: unreadable root directory ({exc})") from exc
            return
        self._block = self._iso.logical_block_size
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

    def _list_raw(self, record: RawRecord) -> dict[str, _IsoNode]:
        out: dict[str, _IsoNode] = {}
        for rec in self._raw.children(record):  # type: ignore[union-attr]
            name = iso_clean_name(rec.ident.decode("latin-1"))
            if name and name not in out:
                out[name] = _IsoNode(Entry(name, rec.is_dir, 0 if rec.is_dir else rec.size), rec)
        return out

    def _list(self, record: Any) -> dict[str, _IsoNode]:
        if self._raw is not None:
            return self._list_raw(record)
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
            node = _IsoNode(Entry(name, is_dir, size), rec)
            if not is_dir and size <= 0 and self._past_end(rec):
                # pycdlib cut the length of a file whose data lies past the end of the image
                # (a download or rip cut short): not an empty file, a lost one
                node = _IsoNode(Entry(name, False, 1), rec, lost=True)
            out[name] = node
        return out

    def _past_end(self, rec: Any) -> bool:
        ino = getattr(rec, "inode", None)
        extent = getattr(ino, "orig_extent_loc", None)
        return extent is not None and extent * self._block >= self._image_size

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
        if node.lost:
            raise OSError(errno.EIO, "the file's data lies past the end of the image "
                          "(cut short)", rel)
        if isinstance(node.record, RawRecord):
            extent: int | None = node.record.extent
        else:
            ino = getattr(node.record, "inode", None)
            extent = None if ino is None else ino.orig_extent_loc
        if extent is None or node.entry.size == 0:
            return io.BytesIO(b"")  # type: ignore[return-value]
        start = extent * self._block
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
            if self._raw is None:
                self._iso.close()
        except Exception:  # noqa: BLE001 - closing a broken image must not raise
            pass
        self._fp.close()

    def __enter__(self) -> IsoFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


