"""A minimal, defensive ISO 9660 directory reader (ECMA-119 §9.1): the fallback of
:class:`app.core.isofs.IsoFS` when pycdlib refuses an image.

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
import os
import struct
import threading
from typing import NamedTuple

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
