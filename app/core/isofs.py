""".iso images read directly (no mounting), through pycdlib: :class:`IsoFS`.

PS3.12 Annex F (CD-R: ISO 9660 Level 1, multi-session allowed and readers must support it,
STANDARDS §5) and Annex P (DVD: UDF and/or ISO 9660). Paths are root-relative, ``/``-separated,
as for every :class:`app.core.fs.MediumFS`; nothing outside the image can be reached.
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
from app.core.fs import Entry, check_relative
from app.core.iso9660 import RawIso, RawRecord

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


class _RemapIO(io.RawIOBase):
    """The image as pycdlib should see it: the real bytes, except sectors ``[16, 16 + n)``,
    which show the volume descriptor set of a later session, and sector ``16 + n``, zeros (so
    the descriptor set ends there). Extents are absolute LBAs in every session, so everything
    else is read where it is."""

    def __init__(self, fd: int, size: int, vds_sector: int, n: int) -> None:
        super().__init__()
        self._fd, self._size, self._pos = fd, size, 0
        self._lo, self._hi = 16 * ISO_SECTOR, (17 + n) * ISO_SECTOR
        self._shift = (vds_sector - 16) * ISO_SECTOR
        self._zero_from = (16 + n) * ISO_SECTOR

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        pos, want = self._pos, min(len(b), self._size - self._pos)
        if want <= 0:
            return 0
        if pos < self._lo:
            want = min(want, self._lo - pos)
            data = os.pread(self._fd, want, pos)
        elif pos < self._zero_from:
            data = os.pread(self._fd, min(want, self._zero_from - pos), pos + self._shift)
        elif pos < self._hi:
            data = bytes(min(want, self._hi - pos))
        else:
            data = os.pread(self._fd, want, pos)
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = max(0, {0: 0, 1: self._pos, 2: self._size}[whence] + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


class _SectorView(io.RawIOBase):
    """The image with some sectors replaced: ``sectors`` maps a sector number to the bytes
    pycdlib should read there (2048 each). Everything else is read where it is."""

    def __init__(self, fd: int, size: int, sectors: dict[int, bytes]) -> None:
        super().__init__()
        self._fd, self._size, self._pos, self._sectors = fd, size, 0, sectors

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        pos, want = self._pos, min(len(b), self._size - self._pos)
        if want <= 0:
            return 0
        sector, off = divmod(pos, ISO_SECTOR)
        fake = self._sectors.get(sector)
        if fake is not None:
            data = fake[off:off + want]
        else:
            nxt = min((k for k in self._sectors if k > sector), default=None)
            if nxt is not None:
                want = min(want, nxt * ISO_SECTOR - pos)
            data = os.pread(self._fd, want, pos)
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = max(0, {0: 0, 1: self._pos, 2: self._size}[whence] + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


_VRS_IDS = (b"BEA01", b"NSR02", b"NSR03", b"TEA01", b"BOOT2")


def udf_only_view(fd: int, size: int) -> dict[int, bytes] | None:
    """Sectors that let pycdlib read a UDF-only image (BD: UDF 2.5/2.6 only, PS3.12 X; some
    DVDs, PS3.12 P), or None when the image is not one.

    pycdlib needs an ISO 9660 Primary Volume Descriptor before it reads UDF. The view shows an
    empty ISO 9660 volume (PVD and terminator at 16–17, its root directory and path tables in
    the unused system area, sectors 1–3), then the image's own UDF Volume Recognition Sequence
    (ECMA-167 2/8: at sector 16 of the image, shown from 18), then a blank sector that ends the
    descriptor set. The UDF anchors, descriptors and files are read where they are.
    """
    vrs: list[bytes] = []
    for k in range(16, 16 + 8):
        sec = os.pread(fd, ISO_SECTOR, k * ISO_SECTOR)
        if len(sec) < ISO_SECTOR or sec[1:6] not in _VRS_IDS:
            break
        vrs.append(sec)
    if not any(v[1:6] in (b"NSR02", b"NSR03") for v in vrs):
        return None
    import pycdlib

    skel = pycdlib.PyCdlib()
    skel.new(interchange_level=1, vol_ident="UDF")
    buf = io.BytesIO()
    skel.write_fp(buf)
    skel.close()
    img = buf.getvalue()

    def sector(n: int) -> bytearray:
        return bytearray(img[n * ISO_SECTOR:(n + 1) * ISO_SECTOR])

    pvd = sector(16)
    l_at = struct.unpack_from("<I", pvd, 140)[0]
    m_at = struct.unpack_from(">I", pvd, 148)[0]
    root_at = struct.unpack_from("<I", pvd, 158)[0]
    total = size // ISO_SECTOR
    _both(pvd, 80, total)  # the volume: the whole image
    struct.pack_into("<I", pvd, 140, 2)
    struct.pack_into(">I", pvd, 148, 3)
    _both(pvd, 156 + 2, 1)
    root, ltab, mtab = sector(root_at), sector(l_at), sector(m_at)
    for rec in (0, root[0]):  # "." and ".."
        _both(root, rec + 2, 1)
    struct.pack_into("<I", ltab, 2, 1)
    struct.pack_into(">I", mtab, 2, 1)
    view = {1: bytes(root), 2: bytes(ltab), 3: bytes(mtab), 16: bytes(pvd), 17: bytes(sector(17))}
    for j, sec in enumerate(vrs):
        view[18 + j] = sec
    view[18 + len(vrs)] = bytes(ISO_SECTOR)
    return view


def _both(buf: bytearray, at: int, value: int) -> None:
    """An ECMA-119 both-byte-order 32-bit field (7.3.3)."""
    struct.pack_into("<I", buf, at, value)
    struct.pack_into(">I", buf, at + 4, value)


ISO_SECTOR = 2048
SESSION_GAPS = (0, 11400, 6900)  # CD lead-out + lead-in + pre-gap after session 1 / later
SESSION_SCAN = 64  # sectors searched after each plausible start (padding to 16/32 blocks)
MAX_SESSIONS = 99  # a CD holds at most 99 tracks


def _pvd_at(fd: int, sector: int) -> tuple[int, int, int] | None:
    """(volume space size, root extent, descriptor count) of a PVD at ``sector``, or None."""
    try:
        vd = os.pread(fd, ISO_SECTOR, sector * ISO_SECTOR)
    except OSError:
        return None
    if len(vd) < ISO_SECTOR or vd[:7] != b"\x01CD001\x01" or vd[128:130] != b"\x00\x08":
        return None
    space, root = struct.unpack_from("<I", vd, 80)[0], struct.unpack_from("<I", vd, 158)[0]
    n = 1
    while n < 32:  # the set runs to its terminator (ECMA-119 §8.3); UDF structures are not used
        try:
            nxt = os.pread(fd, 7, (sector + n) * ISO_SECTOR)
        except OSError:
            return None
        if nxt[1:6] != b"CD001" or nxt[0] not in (0, 1, 2, 255):
            return None
        n += 1
        if nxt[0] == 255:
            return space, root, n
    return None


def find_sessions(fd: int, size: int) -> list[int]:
    """Start sectors of the sessions of a multi-session image (``[0]`` for a single session).

    STANDARDS §5: multi-session is allowed on CD-R and readers must support it. A ``dd`` of such
    a disc holds each session's own volume descriptor set at its start + 16, with absolute
    extents. After each session's volume space (its PVD's size, counted from the disc start or
    from the session start, as writers differ) a bounded window is searched at each plausible
    gap (none, padding, the CD lead-out/lead-in gaps) for a PVD whose root directory lies
    inside its own session (an .iso *file* stored on the disc has small, relative extents).
    """
    total = size // ISO_SECTOR
    first = _pvd_at(fd, 16)
    if first is None:
        return [0]
    sessions = [0]
    start, (space, _root, _n) = 0, first
    while len(sessions) < MAX_SESSIONS:
        found = None
        ends = sorted({e for e in (space, start + space) if start + 16 < e < total})
        for end in ends:
            for gap in SESSION_GAPS:
                lo = end + gap
                for s in range(lo, min(lo + SESSION_SCAN, total - 17)):
                    got = _pvd_at(fd, s + 16)
                    if got is not None and s + 16 < got[1] < total:
                        found = (s, got)
                        break
                if found:
                    break
            if found:
                break
        if found is None:
            break
        start, (space, _root, _n) = found[0], found[1]
        sessions.append(start)
    return sessions


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
            udf_only = None if _pvd_at(self._fp.fileno(), 16) else udf_only_view(
                self._fp.fileno(), size)
            if udf_only is not None:
                view = io.BufferedReader(_SectorView(self._fp.fileno(), size,  # type: ignore[assignment]
                                                     udf_only))
            elif self.session_start:
                got = _pvd_at(self._fp.fileno(), self.session_start + 16)
                assert got is not None
                view = io.BufferedReader(_RemapIO(self._fp.fileno(), size,  # type: ignore[assignment]
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
                # tree ourselves, directory by directory (app.core.iso9660)
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


