"""Fast, tolerant, header-only reading of one DICOM file.

``read_header(fp, name)`` reads the first 16 KiB (more only when an element before the pixel
data needs it), finds the preamble/``DICM``/File Meta when present (STANDARDS.md §1), guesses the
body's real encoding from the bytes (Explicit/Implicit VR, Little/Big Endian, whatever the meta
claims), skips nested sequences of defined length without descending, and stops at Pixel Data.
It decodes only the keys the tree and the checks need (``HEADER_KEYWORDS``), per the file's
Specific Character Set. No pydicom Dataset is built: it is several times faster than
``dcmread(stop_before_pixels=True)``.

The common layout (preamble, Explicit VR Little Endian meta and body, nothing unusual before
Pixel Data in the first chunk) is read in one pass by :func:`_fast_header`, with no Python
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
from dataclasses import dataclass, field
from typing import BinaryIO

from app.core.dicom.charsets import TEXT_VRS, CharsetDecoder, decoder_for
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
    dicom_dictionary,
    dictionary_vr,
    element_end,
    numeric_value,
)
from app.core.dicom.layout import Layout, find_layout, parse_meta, ts_encoding
from app.core.errors import NotDicom, TruncatedFile

__all__ = ["Header", "read_header", "HEADER_KEYWORDS", "META_KEYWORDS"]

FIRST_CHUNK = 16 * 1024
MAX_HEADER = 256 * 1024 * 1024
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)

# Keys decoded from the dataset (top level only).
HEADER_KEYWORDS: tuple[str, ...] = (
    "SpecificCharacterSet", "ImageType", "SOPClassUID", "SOPInstanceUID", "StudyDate",
    "SeriesDate", "AcquisitionDate", "ContentDate", "StudyTime", "SeriesTime",
    "AcquisitionTime", "ContentTime", "AccessionNumber", "Modality", "Manufacturer",
    "InstitutionName", "ReferringPhysicianName", "StudyDescription", "SeriesDescription",
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "BodyPartExamined", "StudyInstanceUID", "SeriesInstanceUID", "StudyID", "SeriesNumber",
    "AcquisitionNumber", "InstanceNumber", "SamplesPerPixel", "PhotometricInterpretation",
    "NumberOfFrames", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "PlanarConfiguration", "LossyImageCompression",
    "LossyImageCompressionRatio", "LossyImageCompressionMethod",
    "RepresentativeFrameNumber", "MIMETypeOfEncapsulatedDocument", "DocumentTitle",
    "ContentLabel", "ContentDescription", "CompletionFlag", "VerificationFlag",
    "PresentationCreationDate", "PresentationCreationTime", "DoseSummationType",
    "StructureSetLabel", "RTPlanLabel", "DataPointRows", "DataPointColumns",
    "FileSetID",
)
META_KEYWORDS: tuple[str, ...] = (
    "FileMetaInformationGroupLength", "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID",
    "TransferSyntaxUID", "ImplementationClassUID", "ImplementationVersionName",
    "SourceApplicationEntityTitle",
)
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SQ"})
_TRAILING_ONLY = frozenset({"ST", "LT", "UT"})
# VRs whose values are ASCII-only (no Specific Character Set, no escape sequences) and padded
# at both ends: decoded inline.
_PLAIN_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"})
_TAGS: dict[tuple[str, ...], dict[int, str]] = {}


def _tags_for(keywords: tuple[str, ...]) -> dict[int, str]:
    tags = _TAGS.get(keywords)
    if tags is None:
        by_kw = {e[4]: t for t, e in dicom_dictionary().items() if e[4]}
        tags = {by_kw[k]: k for k in keywords if k in by_kw}
        _TAGS[keywords] = tags
    return tags


_DEFAULT_TAGS: tuple[dict[int, str], dict[int, str]] | None = None


def _defaults() -> tuple[dict[int, str], dict[int, str]]:
    global _DEFAULT_TAGS
    if _DEFAULT_TAGS is None:  # a race only computes the same maps twice
        _DEFAULT_TAGS = (_tags_for(HEADER_KEYWORDS), _tags_for(META_KEYWORDS))
    return _DEFAULT_TAGS


def _default_tags() -> dict[int, str]:
    return _defaults()[0]


def _meta_tags() -> dict[int, str]:
    return _defaults()[1]


@dataclass
class Header:
    """What a file's header says (values decoded; absent or empty → None / missing).

    ``values`` by keyword (dataset, top level); ``meta`` by keyword (File Meta group);
    ``transfer_syntax`` the encoding the bytes really use (the declared one when it matches;
    for compressed pixel data, the declared one); ``declared_transfer_syntax`` what the meta
    says; ``ts_mismatch`` they disagree; ``pixel_offset``/``pixel_length`` the Pixel Data value
    (length None when encapsulated); ``truncated`` the file ends inside its Pixel Data;
    ``charset_problem`` a message when text could not be decoded cleanly.
    """

    name: str
    values: dict[str, str | None] = field(default_factory=dict)
    meta: dict[str, str | None] = field(default_factory=dict)
    transfer_syntax: str | None = None
    declared_transfer_syntax: str | None = None
    ts_mismatch: bool = False
    has_preamble: bool = False
    has_meta: bool = False
    has_pixels: bool = False
    is_dicomdir: bool = False
    pixel_offset: int | None = None
    pixel_length: int | None = None
    truncated: bool = False
    charset_problem: str | None = None

    def get(self, keyword: str, default: str | None = None) -> str | None:
        """A value by keyword, from the dataset or else the File Meta."""
        v = self.values.get(keyword)
        if v is None:
            v = self.meta.get(keyword)
        return default if v is None else v

    @property
    def sop_instance_uid(self) -> str | None:
        return self.get("SOPInstanceUID") or self.meta.get("MediaStorageSOPInstanceUID")

    @property
    def sop_class_uid(self) -> str | None:
        return self.get("SOPClassUID") or self.meta.get("MediaStorageSOPClassUID")


def _decode(buf: bytes, vr: str, off: int, length: int, little: bool,
            dec: CharsetDecoder) -> tuple[str | None, bool]:
    if length == 0 or length == UNDEFINED:
        return None, True
    if vr in _NUMERIC_VRS:
        if vr == "US" and length == 2:
            return str(buf[off] | buf[off + 1] << 8 if little else buf[off] << 8 | buf[off + 1]), True
        return numeric_value(buf, vr, off, length, little), True
    if vr in _BINARY_VRS:
        return None, True
    raw = buf[off:off + length]
    clean = True
    if raw.isascii() and b"\x1b" not in raw:
        text = raw.decode("ascii")
        if vr != "PN" and vr not in _TRAILING_ONLY:
            return (text.strip(" \0") or None), True
    elif vr in TEXT_VRS:
        text, clean = dec.decode(raw, vr)
    else:
        text = raw.decode("latin-1")
        clean = False
    text = text.rstrip(" \0") if vr in _TRAILING_ONLY else text.strip(" \0")
    if vr == "PN":
        text = text.rstrip("=")  # empty trailing component groups carry nothing
    return (text or None), clean


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
    (:func:`_fast_header`); anything else, or anything it doubts, the general reader below,
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
    header = _fast_header(buf, name, wanted, eof)
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


_FAST_VRS = {v.encode(): (v, v in ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN",
                                    "UR", "UT", "UV"))
             for v in ("AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS "
                       "ST SV TM UC UI UL UN UR US UT UV").split()}
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


def _tag_at(buf: bytes, pos: int, little: bool) -> int:
    order = "little" if little else "big"
    return (int.from_bytes(buf[pos:pos + 2], order) << 16) | int.from_bytes(buf[pos + 2:pos + 4],
                                                                             order)


def _length_at(buf: bytes, pos: int, little: bool, explicit: bool) -> tuple[int, int]:
    order = "little" if little else "big"
    if explicit and buf[pos + 4:pos + 6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"UN", b"OV"):
        if pos + 12 > len(buf):
            return UNDEFINED, pos + 12
        return int.from_bytes(buf[pos + 8:pos + 12], order), pos + 12
    if explicit and buf[pos + 4:pos + 6].isalpha():
        return int.from_bytes(buf[pos + 6:pos + 8], order), pos + 8
    return int.from_bytes(buf[pos + 4:pos + 8], order), pos + 8


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


# -- the fast path ---------------------------------------------------------------------------
# VR bytes → (VR, 32-bit length?, how a wanted value of it is decoded): 0 ASCII-only VRs
# (_PLAIN_VRS), 1 SH/LO/UC (character set unless plain ASCII), 2 US, 3 anything else (_decode).
_VR_KINDS: dict[bytes, tuple[str, bool, int]] = {
    vb: (vr, long, 0 if vr in _PLAIN_VRS else 1 if vr in ("SH", "LO", "UC") else
         2 if vr == "US" else 3)
    for vb, (vr, long) in _FAST_VRS.items()}
_ASCII = decoder_for(None)
_LE_TAG_VR_LEN = struct.Struct("<HH2sH").unpack_from
_LE_KEY_LEN = struct.Struct("<6sH").unpack_from
_LE_U32 = struct.Struct("<I").unpack_from
_PIXEL_LONG_VRS = (b"OB", b"OW", b"OF", b"OD", b"OL", b"UN", b"OV")
# An element header's first 6 bytes (tag + VR) → (tag, header size, keyword wanted or None,
# decoding kind, VR, encoding-score bonus), per wanted-keyword map: the body loop makes no
# other lookup. Unknown VR bytes → tag -1 (refused). The bonus is what dcmlayout's encoding
# score adds for the element, in halves (a known tag, a VR the dictionary allows).
_ElemInfo = tuple[int, int, "str | None", int, str, int]
_ELEMS: dict[int, tuple[dict[int, str], dict[bytes, _ElemInfo]]] = {}
_REFUSED: _ElemInfo = (-1, 8, None, 3, "", 0)


def _elem_cache(wanted: dict[int, str]) -> dict[bytes, _ElemInfo]:
    got = _ELEMS.get(id(wanted))
    if got is None or got[0] is not wanted:
        got = _ELEMS[id(wanted)] = (wanted, {})
    return got[1]


def _learn(cache: dict[bytes, _ElemInfo], key: bytes, wanted: dict[int, str]) -> _ElemInfo:
    info = _VR_KINDS.get(key[4:6])
    if info is None:
        return _REFUSED
    group, elem = struct.unpack_from("<HH", key)
    tag = group << 16 | elem
    vr, long, kind = info
    entry = dicom_dictionary().get(tag)
    bonus = 0 if entry is None else 1 + (vr in entry[0])
    out = (tag, 12 if long else 8, wanted.get(tag), kind, vr, bonus)
    if len(cache) < 20_000:  # bounded: hostile files cannot grow it without end
        cache[key] = out
    return out


def _fast_header(buf: bytes, name: str, wanted: dict[int, str], eof: bool) -> Header | None:
    """The header of a file in the common layout, in one pass over ``buf``; None when
    anything is unusual (the general reader decides then).

    Accepted: a 128-byte preamble + ``DICM``; an Explicit VR Little Endian File Meta of plain
    elements; a declared Explicit VR Little Endian (or compressed, not deflated) transfer
    syntax; a body of explicit elements in strictly ascending tag order from group 0008 on
    (sequences skipped whole, undefined lengths only after the eighth element), whose first
    eight elements score as Explicit VR LE as :func:`app.core.dicom.layout.guess_encoding`
    counts (so the bytes and the declared transfer syntax agree), reaching a Pixel Data
    element inside ``buf``. Values are decoded as the
    general reader decodes them (same rules, same character set handling, same problems).
    """
    n = len(buf)
    if n < 256 or buf[128:134] != b"DICM\x02\x00":
        return None
    unpack = _LE_TAG_VR_LEN
    u32 = _LE_U32
    kinds = _VR_KINDS
    meta_names = _meta_tags()
    meta: dict[str, str | None] = {}
    ts_at = gl_at = -1
    ts_len = 0
    pos = 132
    count = 0
    while True:  # File Meta, as dcmlayout.parse_meta reads it when nothing is odd
        if pos + 12 > n:
            return None
        group, elem, vrb, length = unpack(buf, pos)
        info = kinds.get(vrb)
        if info is None:
            return None
        if group != 2:
            break
        voff = pos + 8
        if info[1]:
            if vrb == b"SQ" or vrb == b"UN":
                return None
            length = u32(buf, voff)[0]
            voff += 4
        pos = voff + length
        count += 1
        if pos > n or count > 256:
            return None  # also an undefined length
        tag = 0x00020000 | elem
        if tag == 0x00020010:
            ts_at, ts_len = voff, length
        elif tag == 0x00020000 and length == 4:
            gl_at = voff
        kw = meta_names.get(tag)
        if kw is not None:
            vr = info[0]
            raw = buf[voff:pos]
            if vr == "UI":
                meta[kw] = raw.decode("ascii", "replace").strip(" \0") or None
            elif vr == "UL" and length == 4:
                meta[kw] = str(u32(raw)[0])
            elif info[2] <= 1 and raw.isascii() and b"\x1b" not in raw:
                meta[kw] = raw.decode("ascii").strip(" \0") or None
            else:
                meta[kw] = _decode(buf, vr, voff, length, True, _ASCII)[0]
    if ts_at < 0 or (eof and gl_at >= 0 and n < gl_at + 4 + u32(buf, gl_at)[0]):
        return None
    declared = buf[ts_at:ts_at + ts_len].decode("ascii", "replace").strip(" \0") or None
    if ts_encoding(declared) != (True, True) or \
            meta.get("MediaStorageSOPClassUID") == DICOMDIR_SOP_CLASS:
        return None
    # The body, up to Pixel Data. Reading past the buffer (an element cut short, an undefined
    # length) raises struct.error: the general reader decides then.
    values: dict[str, str | None] = {}
    problem: str | None = None
    dec = _ASCII
    elems = _elem_cache(wanted)
    key_len = _LE_KEY_LEN
    last = 0x0007FFFF
    score = count = 0
    try:
        while True:
            key, length = key_len(buf, pos)
            e = elems.get(key)
            if e is None:
                e = _learn(elems, key, wanted)
            tag, hsize, kw, kind, vr, bonus = e
            if not last < tag < 0x7FE00008:
                if tag <= last:
                    return None  # out of order, before group 0008, or not a VR
                break
            if hsize == 12:
                length = u32(buf, pos + 8)[0]
                if length == UNDEFINED:
                    # A sequence (or encapsulated value) of undefined length: skipped to its
                    # delimiter as the general reader's _fast_top does; not among the first
                    # eight elements (the encoding score stops at one).
                    end = element_end(buf, pos, True, True) if count >= 8 else None
                    if end is None:
                        return None
                    last = tag
                    pos = end
                    continue
            voff = pos + hsize
            nxt = voff + length
            if count < 8:
                count += 1
                score += bonus
            if kw is not None:
                if nxt > n:
                    return None
                raw = buf[voff:nxt]
                if kind == 0 and raw.isascii():
                    values[kw] = raw.decode("ascii").strip(" \0") or None
                elif kind == 1 and raw.isascii() and b"\x1b" not in raw:
                    values[kw] = raw.decode("ascii").strip(" \0") or None
                elif kind == 2 and length == 2:
                    values[kw] = str(raw[0] | raw[1] << 8)
                else:
                    if vr == "UN":
                        vr = dictionary_vr(tag)
                    if vr in _PLAIN_VRS and raw.isascii():
                        values[kw] = raw.decode("ascii").strip(" \0") or None
                    else:
                        text, clean = _decode(buf, vr, voff, length, True, dec)
                        values[kw] = text
                        if not clean and problem is None:
                            problem = f"{kw} could not be decoded with its character set"
                if tag == 0x00080005 and length:
                    dec = decoder_for(raw)
                    if not dec.valid:
                        problem = f"unknown Specific Character Set {'/'.join(dec.terms)!r}"
            last = tag
            pos = nxt
        # Pixel Data; eight elements before it that score as Explicit VR LE (≥ 12 of 16 in
        # dcmlayout's count: 8 + bonus halves / 2).
        if tag not in _PIXEL_TAGS or count < 8 or score < 8:
            return None
        vrb = key[4:6]
        if vrb in _PIXEL_LONG_VRS:
            plen: int | None = u32(buf, pos + 8)[0]
            poff = pos + 12
        else:
            plen, poff = _length_at(buf, pos, True, True)
    except struct.error:
        return None
    return Header(name, values, meta, declared, declared, False, True, True, True, False, poff,
                  None if plen == UNDEFINED else plen, False, problem)
