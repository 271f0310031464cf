"""What a source file's bytes say before it is exported: Pixel Data cut short, and a quiet
console while a copy's pixel data is tried (the codecs' C libraries print to stderr)."""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

_PIXEL_TAGS = {b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00"}


_SEQ_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


_PIXEL_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN"}


def pixel_damage(fp: BinaryIO, offset: int, size: int, implicit: bool,
                 little: bool, head: bytes = b"") -> str | None:
    """Why the Pixel Data starting at ``offset`` is cut short (None when complete or absent).

    A defined length must fit in the file; encapsulated data must end with its Sequence
    Delimitation Item. (Big Endian files are not checked.)
    """
    if not little or offset >= size:
        return None
    if offset + 12 <= len(head):  # already read
        head = head[offset:offset + 12]
    else:
        fp.seek(offset)
        head = fp.read(12)
    if len(head) < 8 or head[:4] not in _PIXEL_TAGS:
        return None
    if not implicit and head[4:6] not in _PIXEL_VRS:
        implicit = True  # no VR: the dataset is Implicit VR whatever its transfer syntax says
    if implicit:
        length, start = struct.unpack_from("<I", head, 4)[0], offset + 8
    else:
        if len(head) < 12:
            return "the file ends inside the Pixel Data element header"
        length, start = struct.unpack_from("<I", head, 8)[0], offset + 12
    if length != 0xFFFFFFFF:
        if start + length > size:
            return (f"cut short: Pixel Data declares {length} bytes, only {max(0, size - start)} "
                    "are in the file")
        return None
    tail_len = min(size - start, 1 << 16)
    fp.seek(size - tail_len)
    if _SEQ_DELIMITER not in fp.read(tail_len):
        return "cut short: the compressed Pixel Data has no end (no sequence delimiter)"
    return None


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """The codecs' C libraries print their complaints about a broken stream straight to file
    descriptor 2: keep them off the console (the copy's fate is reported in words)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
