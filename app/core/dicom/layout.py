"""Where a DICOM dataset starts and how its body is really encoded.

Finds the 128-byte preamble and ``DICM`` (or their absence), reads the File Meta group
(STANDARDS.md §1: always Explicit VR Little Endian, tolerated otherwise) and guesses the body's
real encoding from its bytes, because the Transfer Syntax in the meta sometimes lies and some
writers leave out preamble and meta altogether (STANDARDS.md §7).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from app.core.dicom.elements import (
    _BE_HHI,
    _BE_I,
    _LE_HHI,
    _LE_I,
    _VR_INFO,
    EV_ELEM,
    EV_SQ,
    TS_DEFLATED,
    TS_EXPLICIT_BE,
    TS_EXPLICIT_LE,
    TS_IMPLICIT_LE,
    UNDEFINED,
    ElementReader,
    ParseError,
    _BE_HH2sH,
    _LE_HH2sH,
    dicom_dictionary,
)
from app.core.model import Icon

__all__ = ["Layout", "find_layout", "guess_encoding", "parse_meta", "ts_encoding", "inflate",
           "icon_item"]

MAX_INFLATED = 512 * 1024 * 1024


def inflate(buf: bytes) -> bytes:
    """A Deflated Explicit VR Little Endian file with its body inflated (PS3.5 A.5): the
    preamble and File Meta as they are, then the raw-deflate-decompressed dataset.

    Raises
    ------
    ParseError
        When the body does not inflate.
    """
    start = 132 if buf[128:132] == b"DICM" else (4 if buf[:4] == b"DICM" else 0)
    _meta, body, _reason = parse_meta(buf, start)
    try:
        inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(buf[body:], MAX_INFLATED)
    except zlib.error as exc:
        raise ParseError(f"deflated dataset does not inflate ({exc})") from None
    return buf[:body] + inflated


def _score(buf: bytes, start: int, little: bool, explicit: bool, limit: int = 12) -> float:
    """How plausible it is that a dataset encoded this way starts at ``start``."""
    n = len(buf)
    hh2sh = (_LE_HH2sH if little else _BE_HH2sH).unpack_from
    u32 = (_LE_I if little else _BE_I).unpack_from
    dictionary = dicom_dictionary()
    pos = start
    last = -1
    score = 0.0
    for _ in range(limit):
        if pos + 8 > n:
            break
        group, elem, vrb, len16 = hh2sh(buf, pos)
        tag = (group << 16) | elem
        if tag < last or group == 0xFFFE or group == 0:
            break
        if explicit:
            info = _VR_INFO.get(vrb)
            if info is None:
                break
            if info[1]:
                if pos + 12 > n:
                    break
                length = u32(buf, pos + 8)[0]
                voff = pos + 12
            else:
                length = len16
                voff = pos + 8
            dvr = dictionary.get(tag)
            if dvr is not None and info[0] in dvr[0]:
                score += 0.5
        else:
            length = u32(buf, pos + 4)[0]
            voff = pos + 8
            if _VR_INFO.get(vrb) is not None and length > n:
                break  # looks like an explicit VR read as implicit
        if tag in dictionary:
            score += 0.5
        score += 1
        last = tag
        if length == UNDEFINED:
            score += 1
            break
        if voff + length > n:
            score += 0.25
            break
        pos = voff + length
        if pos == n:
            score += 1
            break
    return score


def guess_encoding(buf: bytes, start: int, prefer: tuple[bool, bool] | None = None
                   ) -> tuple[bool, bool]:
    """Guess ``(little, explicit)`` of the dataset starting at ``start`` from its bytes.

    ``prefer`` (what the Transfer Syntax claims) wins ties; otherwise Explicit VR LE does.
    """
    candidates = [(True, True), (True, False), (False, True), (False, False)]
    if prefer is not None:
        candidates.remove(prefer)
        candidates.insert(0, prefer)
    best = candidates[0]
    best_score = -1.0
    for i, cand in enumerate(candidates):
        s = _score(buf, start, cand[0], cand[1], 8 if i == 0 else 12)
        if i == 0 and s >= 12:
            return cand  # eight plausible elements in a row: no need to try the others
        if s > best_score:
            best, best_score = cand, s
    return best


def ts_encoding(ts: str | None) -> tuple[bool, bool] | None:
    """``(little, explicit)`` a Transfer Syntax UID declares; None when unknown or absent."""
    if not ts or ts == TS_DEFLATED:
        return None
    if ts == TS_IMPLICIT_LE:
        return (True, False)
    if ts == TS_EXPLICIT_BE:
        return (False, True)
    if ts.startswith("1.2.840.10008.1.2"):
        return (True, True)
    return None


@dataclass
class Layout:
    """Where things are in a DICOM byte stream.

    ``preamble``: a 128-byte preamble + ``DICM`` (or only ``DICM`` at 0 when
    ``prefix_at`` is 0); ``meta``: raw File Meta values by tag ((vr, offset, length));
    ``body``: offset of the first dataset element after the meta; ``little``/``explicit``:
    the body's real encoding (guessed from the bytes); ``declared_ts``: the meta's Transfer
    Syntax UID; ``ts_mismatch``: the bytes disagree with it.
    """

    prefix_at: int | None
    meta: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    body: int = 0
    little: bool = True
    explicit: bool = True
    declared_ts: str | None = None
    ts_mismatch: bool = False
    meta_end_reason: str | None = None

    @property
    def has_preamble(self) -> bool:
        return self.prefix_at == 128

    @property
    def transfer_syntax(self) -> str:
        """The Transfer Syntax the body really uses (declared one when it matches)."""
        real = (self.little, self.explicit)
        if self.declared_ts and ts_encoding(self.declared_ts) == real:
            return self.declared_ts
        return {(True, False): TS_IMPLICIT_LE, (False, True): TS_EXPLICIT_BE,
                (False, False): TS_IMPLICIT_LE}.get(real, TS_EXPLICIT_LE)


def parse_meta(buf: bytes, start: int) -> tuple[dict[int, tuple[str, int, int]], int, str | None]:
    """Read group 0002 elements from ``start`` (Explicit VR LE, implicit tolerated).

    Returns ``(meta, end, problem)``: values by tag, the offset just after the last group 2
    element, and a reason when the meta is damaged.
    """
    meta: dict[int, tuple[str, int, int]] = {}
    little, explicit = True, True
    if start + 8 <= len(buf) and _LE_HHI.unpack_from(buf, start)[0] != 2:
        if _BE_HHI.unpack_from(buf, start)[0] == 2:
            little = False  # broken writers put the meta in big endian
    if start + 8 <= len(buf) and _VR_INFO.get(buf[start + 4:start + 6]) is None:
        explicit = False
    reader = ElementReader(buf, little, explicit, max_elements=10_000)
    pos = start
    for kind, tag, vr, voff, length, epos in reader.events(start):
        if kind == EV_ELEM or kind == EV_SQ:
            if tag >> 16 != 2:
                return meta, epos, None
        if kind == EV_ELEM:
            meta[tag] = (vr, voff, length)
            pos = voff + (0 if length == UNDEFINED else length)
        elif kind == EV_SQ:
            return meta, epos, "sequence in File Meta"
    return meta, max(pos, reader.end_position), reader.stop_reason


def _meta_str(buf: bytes, meta: dict[int, tuple[str, int, int]], tag: int) -> str | None:
    v = meta.get(tag)
    if v is None or v[2] == UNDEFINED:
        return None
    s = buf[v[1]:v[1] + v[2]].decode("ascii", "replace").strip(" \0")
    return s or None


def find_layout(buf: bytes) -> Layout:
    """Locate preamble, File Meta and dataset body and guess the body's real encoding.

    Raises
    ------
    ParseError
        When neither ``DICM`` nor a plausible dataset start is found.
    """
    prefix_at: int | None = None
    if len(buf) >= 132 and buf[128:132] == b"DICM":
        prefix_at = 128
    elif buf[:4] == b"DICM":
        prefix_at = 0
    start = prefix_at + 4 if prefix_at is not None else 0
    if prefix_at is None and len(buf) >= 136 and buf[128:130] in (b"\x02\x00", b"\x08\x00") \
            and _LE_HHI.unpack_from(buf, 0)[0] not in (2, 4, 8):
        start = 128  # a preamble without its DICM prefix (seen from broken writers)
    layout = Layout(prefix_at=prefix_at)
    body = start
    if start + 8 <= len(buf) and (_LE_HHI.unpack_from(buf, start)[0] == 2
                                  or _BE_HHI.unpack_from(buf, start)[0] == 2):
        meta, body, reason = parse_meta(buf, start)
        layout.meta = meta
        layout.meta_end_reason = reason
        layout.declared_ts = _meta_str(buf, meta, 0x00020010)
    layout.body = body
    declared = ts_encoding(layout.declared_ts)
    if layout.declared_ts == TS_DEFLATED:
        if body + 8 <= len(buf):
            little, explicit = guess_encoding(buf, body)
            if _score(buf, body, little, explicit) >= 3:
                # The meta says Deflated but the body is plain: the Transfer Syntax lies.
                layout.little, layout.explicit, layout.ts_mismatch = little, explicit, True
                return layout
        raise ParseError("deflated transfer syntax: inflate the body first (inflate())")
    if body >= len(buf):
        if prefix_at is None and not layout.meta:
            raise ParseError("no DICOM data")
        layout.little, layout.explicit = declared or (True, True)
        return layout
    little, explicit = guess_encoding(buf, body, declared)
    if prefix_at is None and not layout.meta:
        # No prefix and no meta: require a plausible dataset start (three sane elements,
        # the first in group 0004 or 0008, as written by preamble-less writers).
        first_group = (_LE_HHI if little else _BE_HHI).unpack_from(buf, body)[0] \
            if body + 8 <= len(buf) else -1
        if first_group not in (0x0004, 0x0008) or _score(buf, body, little, explicit) < 3:
            raise ParseError("no DICM prefix and no plausible dataset start")
    layout.little, layout.explicit = little, explicit
    layout.ts_mismatch = declared is not None and declared != (little, explicit)
    return layout


def icon_item(buf: bytes, little: bool, e: dict[int, tuple[str, int, int]]) -> Icon | str:
    """An Icon Image Sequence item's elements (``tag → (vr, offset, length)``) as an
    undecoded :class:`app.core.model.Icon`, or why it is malformed (STANDARDS.md §3)."""

    def num(tag: int) -> int | None:
        v = e.get(tag)
        if v is None or v[2] == UNDEFINED or v[2] < 2:
            return None
        if v[0] in ("US", "SS", "UN", "OB", "OW") or v[2] == 2:
            fmt = ("<" if little else ">") + ("h" if v[0] == "SS" else "H")
            return struct.unpack_from(fmt, buf, v[1])[0]
        try:
            return int(buf[v[1]:v[1] + v[2]].decode("ascii").strip(" \0"))
        except ValueError:
            return None

    rows, cols = num(0x00280010), num(0x00280011)
    bits = num(0x00280100)
    stored = num(0x00280101) or bits
    spp = num(0x00280002) or 1
    pixrep = num(0x00280103) or 0
    pv = e.get(0x00280004)
    photometric = (buf[pv[1]:pv[1] + pv[2]].decode("ascii", "replace").strip(" \0")
                   if pv is not None and pv[2] != UNDEFINED else "")
    pd = e.get(0x7FE00010)
    if not rows or not cols or not bits:
        return "Icon Image Sequence item lacks Rows, Columns or Bits Allocated"
    if pd is None or pd[2] == UNDEFINED:
        return "icon has no native Pixel Data"
    if bits not in (1, 8, 16) or spp not in (1, 3) or rows > 4096 or cols > 4096:
        return f"icon has an unsupported layout ({rows}x{cols}, {bits} bits, {spp} samples)"
    need = (rows * cols * spp * bits + 7) // 8
    if pd[2] < need:
        return f"icon Pixel Data holds {pd[2]} bytes, {need} needed for {rows}x{cols}x{bits} bits"
    palette = None
    if photometric == "PALETTE COLOR":
        luts = []
        for dtag, ltag in ((0x00281101, 0x00281201), (0x00281102, 0x00281202),
                           (0x00281103, 0x00281203)):
            d, lut = e.get(dtag), e.get(ltag)
            if d is None or lut is None or d[2] < 6 or lut[2] in (0, UNDEFINED):
                return "PALETTE COLOR icon lacks its lookup tables"
            desc = struct.unpack_from(("<" if little else ">") + "HHH", buf, d[1])
            luts.append((desc, bytes(buf[lut[1]:lut[1] + lut[2]])))
        palette = (luts[0][0], luts[0][1], luts[1][1], luts[2][1])
    elif not photometric:
        return "icon lacks Photometric Interpretation"
    return Icon(rows=rows, columns=cols, photometric=photometric, bits_allocated=bits,
                bits_stored=stored or bits, pixel_data=bytes(buf[pd[1]:pd[1] + pd[2]]),
                samples_per_pixel=spp, pixel_representation=pixrep, palette=palette,
                little_endian=little)
