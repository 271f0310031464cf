"""The header reader's fast path: one pass over the first chunk for the common layout.

A preamble and ``DICM``, an Explicit VR Little Endian File Meta and body, no sequence or
undefined length before the first eight elements, Pixel Data inside the chunk: such a file
(nearly every file of a real disc) is read by :func:`fast_header` with one cached lookup per
element header. Anything else, or anything it doubts, returns None and the general reader of
:mod:`app.core.dicom.header` decides; a differential test holds the two to the same result.
"""

from __future__ import annotations

import struct

from app.core.dicom.charsets import decoder_for
from app.core.dicom.elements import (
    UNDEFINED,
    dicom_dictionary,
    dictionary_vr,
    element_end,
)
from app.core.dicom.header_model import (
    _FAST_VRS,
    _PIXEL_TAGS,
    _PLAIN_VRS,
    DICOMDIR_SOP_CLASS,
    Header,
    _decode,
    _length_at,
    _meta_tags,
)
from app.core.dicom.layout import ts_encoding

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


def fast_header(buf: bytes, name: str, wanted: dict[int, str], eof: bool) -> Header | None:
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
