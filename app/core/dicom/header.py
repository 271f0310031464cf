"""Fast, tolerant, header-only reading of one DICOM file.

``read_header(fp, name)`` reads the first 16 KiB (more only when an element before the pixel
data needs it), finds the preamble/``DICM``/File Meta when present (STANDARDS.md §1), guesses the
body's real encoding from the bytes (Explicit/Implicit VR, Little/Big Endian, whatever the meta
claims), skips nested sequences of defined length without descending, and stops at Pixel Data.
It decodes only the keys the tree and the checks need (``HEADER_KEYWORDS``), per the file's
Specific Character Set. No pydicom Dataset is built: it is several times faster than
``dcmread(stop_before_pixels=True)``.

The common layout (preamble, Explicit VR Little Endian meta and body, nothing unusual before
Pixel Data in the first chunk) is read in one pass by :func:`app.core.dicom.header_fast.fast_header`, with no Python
object per element; whatever it doubts goes to the general reader, which gives the same
``Header`` for every file both accept (a test compares them on samples and damaged variants).

Raises :class:`~app.core.errors.NotDicom` for bytes that are not DICOM (no ``DICM`` and no
plausible dataset start: HTML, EXE, JPEG, ...) and :class:`~app.core.errors.TruncatedFile` when
the file ends inside its header.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterable
from typing import BinaryIO

from app.core.dicom.charsets import decoder_for
from app.core.dicom.elements import (
    EV_ELEM,
    EV_ITEM,
    EV_ITEM_END,
    EV_SQ,
    EV_SQ_END,
    TS_DEFLATED,
    UNDEFINED,
    ElementReader,
    ParseError,
    dictionary_vr,
    element_end,
)
from app.core.dicom.header_fast import fast_header
from app.core.dicom.header_model import (
    _FAST_VRS,
    _PIXEL_TAGS,
    _PLAIN_VRS,
    DICOMDIR_SOP_CLASS,
    FIRST_CHUNK,
    HEADER_KEYWORDS,
    MAX_HEADER,
    META_KEYWORDS,
    Header,
    _decode,
    _default_tags,
    _length_at,
    _meta_tags,
    _tag_at,
    _tags_for,
)
from app.core.dicom.layout import Layout, find_layout, parse_meta
from app.core.errors import NotDicom, TruncatedFile

__all__ = ["Header", "read_header", "HEADER_KEYWORDS", "META_KEYWORDS"]


def _read_more(fp: BinaryIO, buf: bytes, want: int) -> tuple[bytes, bool]:
    """Grow ``buf`` to ``want`` bytes; returns (buf, at_eof)."""
    need = want - len(buf)
    chunks = [buf]
    while need > 0:
        chunk = fp.read(need)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        need -= len(chunk)
    return b"".join(chunks), False


def _file_size(fp: BinaryIO) -> int | None:
    try:
        return os.fstat(fp.fileno()).st_size
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass
    try:
        pos = fp.tell()
        size = fp.seek(0, io.SEEK_END)
        fp.seek(pos)
        return size
    except (OSError, ValueError, AttributeError):
        return None


def read_header(fp: BinaryIO, name: str, extra_keywords: Iterable[str] = ()) -> Header:
    """Read the header of the DICOM file open in ``fp`` (from its current position).

    The common case (preamble, an Explicit VR Little Endian File Meta and body, no sequence
    or undefined length before Pixel Data, all in the first chunk) takes a one-pass fast path
    (:func:`app.core.dicom.header_fast.fast_header`); anything else, or anything it doubts, the general reader below,
    which gives the same :class:`Header` for the files both accept.

    Parameters
    ----------
    fp : BinaryIO
        Binary stream positioned at the first byte of the file.
    name : str
        The file's path relative to the medium root, used in error messages.
    extra_keywords : iterable of str
        Further top-level keywords to decode besides ``HEADER_KEYWORDS``.

    Raises
    ------
    NotDicom
        The bytes are not DICOM (no ``DICM`` and no plausible dataset start).
    TruncatedFile
        The file ends inside its header.
    """
    extra = tuple(extra_keywords)
    wanted = _tags_for(HEADER_KEYWORDS + extra) if extra else _default_tags()
    buf = fp.read(FIRST_CHUNK)
    eof = False
    if type(buf) is not bytes or len(buf) < FIRST_CHUNK:
        buf, eof = _read_more(fp, bytes(buf or b""), FIRST_CHUNK)
    header = fast_header(buf, name, wanted, eof)
    if header is None:
        header, buf, eof = _read_general(fp, buf, eof, name, wanted)
    if header.has_pixels and header.pixel_length is not None and header.pixel_offset is not None:
        end = header.pixel_offset + header.pixel_length
        if end > len(buf):
            size = len(buf) if eof else _file_size(fp)
            header.truncated = size is not None and end > size
    return header


def _read_general(fp: BinaryIO, buf: bytes, eof: bool, name: str, wanted: dict[int, str]
                  ) -> tuple[Header, bytes, bool]:
    """The general reader: layout (any encoding, meta or not), then the header, reading more
    when an element before the pixel data needs it. Returns (header, bytes read, at EOF)."""
    if not buf:
        raise NotDicom(f"{name}: file is empty")
    while True:
        try:
            layout = find_layout(buf)
        except ParseError as exc:
            if str(exc).startswith("deflated"):
                return _read_deflated(fp, buf, eof, name, wanted), buf, eof
            if not eof and len(buf) < 1024 * 1024 and buf[128:132] == b"DICM":
                buf, eof = _read_more(fp, buf, len(buf) * 16)
                continue
            raise NotDicom(f"{name}: not a DICOM file ({exc})") from None
        if layout.meta_end_reason and not eof:
            buf, eof = _read_more(fp, buf, len(buf) * 16)
            continue
        if eof and (layout.prefix_at is not None or layout.meta):
            gl = layout.meta.get(0x00020000)
            meta_end = (gl[1] + 4 + int.from_bytes(buf[gl[1]:gl[1] + 4], "little")
                        if gl is not None and gl[2] == 4 else 0)
            if layout.body >= len(buf) or len(buf) < meta_end:
                raise TruncatedFile(f"{name}: file ends inside its File Meta Information")
        header, complete = _parse(buf, layout, name, wanted, eof)
        if complete or eof or len(buf) >= MAX_HEADER:
            return header, buf, eof
        buf, eof = _read_more(fp, buf, min(len(buf) * 16, MAX_HEADER))


def _parse(buf: bytes, layout: Layout, name: str, wanted: dict[int, str], eof: bool
           ) -> tuple[Header, bool]:
    """Parse the header in ``buf``; complete=False when more bytes are needed."""
    little = layout.little
    header = Header(name=name, has_preamble=layout.has_preamble, has_meta=bool(layout.meta),
                    declared_transfer_syntax=layout.declared_ts, ts_mismatch=layout.ts_mismatch)
    ascii_dec = decoder_for(None)
    meta_names = _meta_tags()
    meta = header.meta
    for tag, (vr, off, length) in layout.meta.items():
        kw = meta_names.get(tag)
        if kw is not None:
            if vr == "UI" and length != UNDEFINED:
                meta[kw] = buf[off:off + length].decode("ascii", "replace").strip(" \0") or None
            else:
                meta[kw] = _decode(buf, vr, off, length, True, ascii_dec)[0]
    # Compressed transfer syntaxes keep the declared UID: the bytes only tell us the dataset
    # encoding (always Explicit VR LE for them).
    declared = layout.declared_ts
    real = layout.transfer_syntax
    header.transfer_syntax = declared if (declared and not layout.ts_mismatch) else real
    dec = ascii_dec
    values = header.values
    fast = _fast_top(buf, layout, wanted)
    if fast is not None:
        raw_values, pos, header.is_dicomdir = fast
        stopped = False
    else:
        raw_values, pos, stopped = _generic_top(buf, layout, wanted, header, name, eof)
        if raw_values is None:
            return header, False
    for _kw, tag, _vr, off, length in raw_values:
        if tag >= 0x00080005:
            if tag == 0x00080005 and length not in (0, UNDEFINED):
                dec = decoder_for(buf[off:off + length])
                if not dec.valid:
                    header.charset_problem = (
                        f"unknown Specific Character Set {'/'.join(dec.terms)!r}")
            break
    plain = _PLAIN_VRS
    for kw, _tag, vr, off, length in raw_values:
        if vr in plain and length != UNDEFINED:
            raw = buf[off:off + length]
            if raw.isascii():  # ESC is ASCII, but never in these VRs' values
                values[kw] = raw.decode("ascii").strip(" \0") or None
                continue
        text, clean = _decode(buf, vr, off, length, little, dec)
        values[kw] = text
        if not clean and header.charset_problem is None:
            header.charset_problem = f"{kw} could not be decoded with its character set"
    # Pixel Data: the element where the reading stopped.
    if not header.is_dicomdir and not stopped and pos + 8 <= len(buf):
        tag = _tag_at(buf, pos, little)
        if tag in _PIXEL_TAGS:
            header.has_pixels = True
            vlen, voff = _length_at(buf, pos, layout.little, layout.explicit)
            header.pixel_offset = voff
            header.pixel_length = None if vlen == UNDEFINED else vlen
    if layout.meta.get(0x00020002) and header.meta.get("MediaStorageSOPClassUID") == \
            DICOMDIR_SOP_CLASS:
        header.is_dicomdir = True
    return header, True


_RawValues = list[tuple[str, int, str, int, int]]


def _fast_top(buf: bytes, layout: Layout, wanted: dict[int, str]
              ) -> tuple[_RawValues, int, bool] | None:
    """Top-level elements up to Pixel Data in a tight loop; None: leave it to the general
    reader (undefined lengths, odd VRs, data that ends early)."""
    little, explicit = layout.little, layout.explicit
    e = "<" if little else ">"
    hh2sh = struct.Struct(e + "HH2sH").unpack_from
    u32 = struct.Struct(e + "I").unpack_from
    n = len(buf)
    pos = layout.body
    out: _RawValues = []
    vrs = _FAST_VRS
    try:
        while pos + 8 <= n:
            group, elem, vrb, l16 = hh2sh(buf, pos)
            tag = group << 16 | elem
            if tag >= 0x7FE00008:
                return out, pos, False
            if explicit:
                info = vrs.get(vrb)
                if info is None:
                    return None
                vr = info[0]
                if info[1]:
                    length = u32(buf, pos + 8)[0]
                    voff = pos + 12
                else:
                    length = l16
                    voff = pos + 8
            else:
                vr = ""
                length = u32(buf, pos + 4)[0]
                voff = pos + 8
            if group == 0xFFFE:
                return None
            if length == UNDEFINED:
                # An undefined-length sequence (or encapsulated value): the general reader
                # finds its end; the loop carries on after it.
                skipped = element_end(buf, pos, little, explicit)
                if skipped is None:
                    return None
                if tag == 0x00041220:
                    return out, pos, True
                pos = skipped
                continue
            nxt = voff + length
            if nxt > n:
                return None
            kw = wanted.get(tag)
            if kw is not None:
                if not vr or vr == "UN":
                    vr = dictionary_vr(tag)
                out.append((kw, tag, vr, voff, length))
            elif group == 0x0004 and tag in (0x00041200, 0x00041130, 0x00041220):
                return out, pos, True
            pos = nxt
    except struct.error:
        return None
    return None if pos != n else (out, pos, False)


def _generic_top(buf: bytes, layout: Layout, wanted: dict[int, str], header: Header, name: str,
                 eof: bool) -> tuple[_RawValues | None, int, bool]:
    """The general (tolerant, nested) reader for what :func:`_fast_top` leaves."""
    reader = ElementReader(buf, layout.little, layout.explicit)
    raw_values: _RawValues = []
    depth = 0
    for kind, tag, vr, off, length, _pos in reader.events(layout.body, stop_tag=0x7FE00008,
                                                         flat=True):
        if kind == EV_ELEM:
            if depth:
                continue
            kw = wanted.get(tag)
            if kw is not None:
                if vr == "UN":  # explicit UN for a known key: decode per the dictionary
                    vr = dictionary_vr(tag)
                raw_values.append((kw, tag, vr, off, length))
            elif tag >> 16 == 0x0004 and tag in (0x00041200, 0x00041130):
                header.is_dicomdir = True
        elif kind == EV_SQ:
            depth += 1
            if depth == 1 and tag == 0x00041220:
                header.is_dicomdir = True
                break
        elif kind == EV_ITEM:
            depth += 1
        elif kind in (EV_ITEM_END, EV_SQ_END):
            depth -= 1
    if reader.zero_fill and not header.is_dicomdir:
        # Zeros where elements should be: unreadable sectors read back as zeros, or a file
        # that was never written. With nothing before them the file has no dataset at all.
        if not raw_values:
            if layout.meta:
                raise TruncatedFile(f"{name}: the dataset after the File Meta is zero-filled")
            raise NotDicom(f"{name}: not a DICOM file (zeros where the dataset should be)")
        header.truncated = True
        return raw_values, reader.end_position, True
    if reader.truncated and not header.is_dicomdir:
        if not eof:
            return None, 0, True
        if reader.stop_position is not None and reader.stop_position <= layout.body + 8 and (
                not layout.meta and layout.prefix_at is None):
            raise NotDicom(f"{name}: not a DICOM file")
        raise TruncatedFile(f"{name}: file ends inside its header ({reader.stop_reason} at "
                            f"byte {reader.stop_position})")
    return raw_values, reader.end_position, reader.stop_reason is not None



def _read_deflated(fp: BinaryIO, buf: bytes, eof: bool, name: str, wanted: dict[int, str]
                   ) -> Header:
    """Deflated Explicit VR Little Endian: inflate the body (header part only) and parse it."""
    start = 132 if buf[128:132] == b"DICM" else (4 if buf[:4] == b"DICM" else 0)
    meta, body, _reason = parse_meta(buf, start)
    if not eof:
        buf, eof = _read_more(fp, buf, MAX_HEADER)
    try:
        inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(buf[body:], 64 * 1024 * 1024)
    except zlib.error as exc:
        raise TruncatedFile(f"{name}: deflated dataset cannot be inflated ({exc})") from None
    merged = buf[:body] + inflated
    layout = Layout(prefix_at=128 if start == 132 else (0 if start == 4 else None), meta=meta,
                    body=body, little=True, explicit=True, declared_ts=TS_DEFLATED)
    header, _complete = _parse(merged, layout, name, wanted, True)
    header.transfer_syntax = TS_DEFLATED
    header.pixel_offset = None  # offsets refer to the inflated stream
    return header
