"""Volume structures of disc images that pycdlib alone does not handle, for
:class:`app.core.medium.isofs.IsoFS`:

- multi-session images (STANDARDS §5: readers must support them): :func:`find_sessions` and
  :class:`RemapIO`, which shows pycdlib the newest session's volume descriptors;
- UDF-only images (BD, some DVDs): :func:`udf_only_view` and :class:`SectorView`;
- a minimal, defensive ISO 9660 directory reader (ECMA-119 §9.1), :class:`RawIso`: the
  fallback when pycdlib refuses an image.

pycdlib parses and validates the whole directory tree when it opens an image and gives up on the
first inconsistency, so one bad sector, a looping directory record or an image cut short would
lose the whole disc. Here each directory is read only when it is listed, with bounds checks
(every extent inside the image, both byte orders agreeing, record lengths inside the sector) and
a set of the directory extents already listed (loops); a damaged directory raises ``OSError``
for that folder alone, which the reader reports as ``read-error`` naming it, and the rest of the
disc is listed (issue 2: "open every disc, broken or not"). Only the primary tree is read: its
names are the DICOM names (PS3.12 F, STANDARDS §5).
"""

from __future__ import annotations

import errno
import io
import os
import struct
import threading
from typing import Any, NamedTuple

SECTOR = 2048
MAX_DIRECTORY = 16 * 1024 * 1024  # bytes of one directory; far above any real one


class RawRecord(NamedTuple):
    """A directory record: its name (as recorded), kind, first block and data length."""

    ident: bytes
    is_dir: bool
    extent: int
    size: int


def _damaged(what: str) -> OSError:
    return OSError(errno.EIO, f"damaged ISO 9660 directory: {what}")


class RawIso:
    """The primary directory tree of the volume whose descriptors start at ``vds_sector``."""

    def __init__(self, fd: int, size: int, vds_sector: int = 16) -> None:
        self._fd, self._size = fd, size
        self._lock = threading.Lock()
        pvd = os.pread(fd, SECTOR, vds_sector * SECTOR)
        if len(pvd) < SECTOR or pvd[:6] != b"\x01CD001":
            raise OSError(errno.EIO, "no ISO 9660 Primary Volume Descriptor")
        if struct.unpack_from("<H", pvd, 128)[0] != SECTOR:
            raise OSError(errno.EIO, "logical block size other than 2048")
        self.root = self._record(pvd, 156, 34)
        if not self.root.is_dir:
            raise _damaged("the root record is not a directory")
        self._listed: set[int] = set()

    def _record(self, data: bytes, pos: int, length: int) -> RawRecord:
        extent, extent_be = struct.unpack_from("<I", data, pos + 2)[0], \
            struct.unpack_from(">I", data, pos + 6)[0]
        size, size_be = struct.unpack_from("<I", data, pos + 10)[0], \
            struct.unpack_from(">I", data, pos + 14)[0]
        if extent != extent_be or size != size_be:
            raise _damaged(f"record at byte {pos}: both byte orders disagree")
        name_len = data[pos + 32]
        if 33 + name_len > length:
            raise _damaged(f"record at byte {pos}: name longer than the record")
        return RawRecord(bytes(data[pos + 33:pos + 33 + name_len]), bool(data[pos + 25] & 2),
                         extent, size)

    def children(self, directory: RawRecord) -> list[RawRecord]:
        """The records of ``directory`` (``.`` and ``..`` left out). Raises OSError when it is
        damaged, loops back to a directory already listed, or lies (partly) past the end."""
        start, length = directory.extent * SECTOR, directory.size
        if length > MAX_DIRECTORY:
            raise _damaged(f"directory of {length} bytes")
        if start + length > self._size:
            raise OSError(errno.EIO, "directory lies past the end of the image (cut short?)")
        with self._lock:
            if directory.extent in self._listed:
                raise OSError(errno.ELOOP, "directory record loops back to a directory "
                              "already listed")
            self._listed.add(directory.extent)
        data = os.pread(self._fd, length, start)
        if len(data) < length:
            raise OSError(errno.EIO, "the image ends inside this directory")
        out: list[RawRecord] = []
        pos, first = 0, True
        while pos < length:
            rec_len = data[pos]
            if rec_len == 0:  # records never span sectors: the rest of this one is padding
                pos = (pos // SECTOR + 1) * SECTOR
                continue
            if rec_len < 34 or pos + rec_len > length \
                    or pos // SECTOR != (pos + rec_len - 1) // SECTOR:
                raise _damaged(f"record at byte {pos} has length {rec_len}")
            rec = self._record(data, pos, rec_len)
            if first and (rec.ident != b"\x00" or rec.extent != directory.extent):
                raise _damaged("its first record is not the directory itself")
            first = False
            pos += rec_len
            if rec.ident not in (b"\x00", b"\x01"):
                out.append(rec)
        if first:
            raise _damaged("no records")
        return out


# --------------------------------------------------------------------------------------------
# sessions and UDF-only images


class _ImageView(io.RawIOBase):
    """A read-only, seekable view of the image file ``fd`` (``size`` bytes) that subclasses
    fill in ``readinto``: pycdlib reads through it as through the file itself."""

    def __init__(self, fd: int, size: int) -> None:
        super().__init__()
        self._fd, self._size, self._pos = fd, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = max(0, {0: 0, 1: self._pos, 2: self._size}[whence] + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


class RemapIO(_ImageView):
    """The image as pycdlib should see it: the real bytes, except sectors ``[16, 16 + n)``,
    which show the volume descriptor set of a later session, and sector ``16 + n``, zeros (so
    the descriptor set ends there). Extents are absolute LBAs in every session, so everything
    else is read where it is."""

    def __init__(self, fd: int, size: int, vds_sector: int, n: int) -> None:
        super().__init__(fd, size)
        self._lo, self._hi = 16 * ISO_SECTOR, (17 + n) * ISO_SECTOR
        self._shift = (vds_sector - 16) * ISO_SECTOR
        self._zero_from = (16 + n) * ISO_SECTOR

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


class SectorView(_ImageView):
    """The image with some sectors replaced: ``sectors`` maps a sector number to the bytes
    pycdlib should read there (2048 each). Everything else is read where it is."""

    def __init__(self, fd: int, size: int, sectors: dict[int, bytes]) -> None:
        super().__init__(fd, size)
        self._sectors = sectors

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


def pvd_at(fd: int, sector: int) -> tuple[int, int, int] | None:
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
    first = pvd_at(fd, 16)
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
                    got = pvd_at(fd, s + 16)
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
