"""Stage 1 of :func:`app.core.dicomdir.parse.parse_dicomdir`: the raw Directory Record items.

One linear pass over the bytes collects every record item: its position (what offsets point
at), its elements as ``tag → (vr, offset, length)``, its Icon Image Sequence item, and, decoded
on the fly, the ASCII string values that read the same in every character set. A tight loop
handles intact sequences; anything unusual goes to the general event reader, and damaged
stretches to :mod:`app.core.dicomdir.salvage`. Linking the records is
:mod:`app.core.dicomdir.tree`.
"""

from __future__ import annotations

import struct

from app.core.dicom.elements import (
    _VR_INFO,
    EV_ELEM,
    EV_ITEM,
    EV_ITEM_END,
    EV_SQ,
    EV_SQ_END,
    UNDEFINED,
    ElementReader,
    _implicit_vr,
    valid_cs,
)
from app.core.dicom.layout import Layout
from app.core.dicomdir.raw import (
    MAX_RECORDS,
    T_CHARSET,
    T_FILE_ID,
    T_ICON,
    T_INUSE,
    T_LOWER,
    T_NEXT,
    T_RECORDS,
    T_TYPE,
    Elems,
    RawDicomdir,
    RawRecord,
)


def scan_records(buf: bytes, layout: Layout) -> RawDicomdir:
    """Collect the top-level elements and every Directory Record item in one pass: a tight
    loop for the usual shape; anything unusual (truncation, stray bytes, odd VRs) makes it
    start over with the general event reader, which tolerates everything."""
    raw = _scan_fast(buf, layout)
    if raw is None:  # the fast path read every item of an intact sequence: nothing to salvage
        from app.core.dicomdir.salvage import assess, salvage  # (they build on this module)

        raw = _scan_generic(buf, layout)
        salvage(raw)
        assess(raw)
    if not raw.filled:
        _fill_structure(raw)
    return raw


_NESTED = frozenset({"SQ", "UN"})
# String VRs padded at both ends: ASCII values are decoded during the scan.
_PLAIN_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH", "TM", "UI"})
_PLAIN_BY_BYTES = {v.encode(): v for v in _PLAIN_VRS}
_SHORT_VRS = {k: v[0] for k, v in _VR_INFO.items() if not v[1]}
_LONG_VRS = {k: v[0] for k, v in _VR_INFO.items() if v[1]}


# Checked elsewhere: File IDs (NUL padding per component is tolerated, STANDARDS.md §7; the
# resolver refuses bad ones) and the Specific Character Set (``bad-charset``).
_LENIENT = frozenset({T_FILE_ID, T_CHARSET})


def _zeroed(raw: bytes, uid: bool) -> bool:
    """Zeros from a damaged stretch inside a string value: a NUL followed by other bytes,
    or (a UID is padded with one NUL at most) a UID ending in several."""
    stripped = raw.rstrip(b"\0")
    return b"\0" in stripped or (uid and len(raw) - len(stripped) > 1)


class _Bail(Exception):
    """Internal: the fast path met something it leaves to the general reader."""


def _nested(buf: bytes, pos: int, end: int, little: bool, explicit: bool, want_icon: bool
            ) -> tuple[int, Elems | None]:
    """Read one sequence element at ``pos`` with the general reader; returns its end and,
    when ``want_icon``, the elements of its first item."""
    reader = ElementReader(buf, little, explicit)
    depth = 0
    icon: Elems | None = None
    done = False
    for kind, tag, vr, voff, length, _p in reader.events(pos, end):
        if kind == EV_SQ:
            depth += 1
        elif kind == EV_ITEM:
            depth += 1
            if depth == 2 and want_icon and icon is None:
                icon = {}
        elif kind == EV_ELEM:
            if depth == 2 and icon is not None and not done:
                icon[tag] = (vr, voff, length)
            elif depth == 0:
                raise _Bail
        elif kind == EV_ITEM_END:
            if depth == 2 and icon is not None:
                done = True
            depth -= 1
        else:  # EV_SQ_END
            depth -= 1
            if depth == 0:
                return voff, (icon if done else None) if want_icon else None
    raise _Bail


def _scan_fast(buf: bytes, layout: Layout) -> RawDicomdir | None:
    little, explicit = layout.little, layout.explicit
    reader = ElementReader(buf, little, explicit)
    top: Elems = {}
    for kind, tag, vr, voff, length, _pos in reader.events(layout.body, stop_tag=T_RECORDS):
        if kind != EV_ELEM:
            return None
        top[tag] = (vr, voff, length)
    pos = reader.end_position
    n = len(buf)
    if reader.stop_reason or pos + 12 > n:
        return None
    e = "<" if little else ">"
    hh2sh = struct.Struct(e + "HH2sH").unpack_from
    hhi = struct.Struct(e + "HHI").unpack_from
    u32 = struct.Struct(e + "I").unpack_from
    group, elem, vrb, _l16 = hh2sh(buf, pos)
    if (group << 16 | elem) != T_RECORDS:
        return None
    if explicit:
        if vrb != b"SQ":
            return None
        slen = u32(buf, pos + 8)[0]
        pos += 12
    else:
        slen = u32(buf, pos + 4)[0]
        pos += 8
    seq_end = n if slen == UNDEFINED else pos + slen
    if seq_end > n:
        return None
    plain_vr = _PLAIN_BY_BYTES.get
    short_vr = _SHORT_VRS.get
    long_vr = _LONG_VRS.get
    impl_vr = _implicit_vr
    plain = _PLAIN_VRS
    cache: dict[bytes, str] = {}
    cget = cache.get
    types: dict[str, str] = {}
    new_record = object.__new__
    records: list[RawRecord] = []
    append = records.append
    try:
        while True:
            if slen != UNDEFINED and pos >= seq_end:
                break
            if pos + 8 > n:
                return None
            group, elem, ilen = hhi(buf, pos)
            if group != 0xFFFE:
                return None
            if elem == 0xE0DD:
                if slen != UNDEFINED:
                    return None
                pos += 8
                break
            if elem != 0xE000 or len(records) >= MAX_RECORDS:
                return None
            start = pos
            p = pos + 8
            iend = n if ilen == UNDEFINED else p + ilen
            if iend > n:
                return None
            elems: Elems = {}
            vals: dict[int, str] = {}
            rec = new_record(RawRecord)  # the class defaults stand for the rest
            rec.pos, rec.elems, rec.vals = start, elems, vals
            while True:
                if p >= iend:
                    if p > iend or ilen == UNDEFINED:
                        return None
                    break
                # struct.error (data ends inside a header) makes the general reader take over.
                group, elem, vrb, l16 = hh2sh(buf, p)
                tag = group << 16 | elem
                if group == 0xFFFE:
                    if tag == 0xFFFEE00D and ilen == UNDEFINED:
                        p += 8
                        break
                    return None
                if explicit:
                    vr = plain_vr(vrb)
                    if vr is not None:
                        # ASCII strings decode alike in every charset: decode them now.
                        voff = p + 8
                        p = voff + l16
                        raw = buf[voff:p]
                        # Short values repeat (dates, types, numbers): cached; long ones
                        # (UIDs, File IDs) rarely do.
                        text = cget(raw) if l16 <= 32 else None
                        if text is None:
                            if raw.isascii() and b"\x1b" not in raw:
                                text = raw.decode("ascii").strip(" \0")
                                # Damage inside: a UID padded with more than one NUL (other
                                # junk fails the UID check later), or NULs or control bytes
                                # left inside another value.
                                if (raw[l16 - 2] == 0 if vr == "UI" and l16 > 1 else
                                        not text.isprintable() and tag not in _LENIENT):
                                    rec.suspect = (*rec.suspect, tag)
                                    continue
                                if l16 <= 32 and len(cache) < 200_000:  # repeats
                                    cache[raw] = text
                            else:
                                elems[tag] = (vr, voff, l16)
                                continue
                        vals[tag] = text
                        continue
                    vr = short_vr(vrb)
                    if vr is not None:
                        voff = p + 8
                        p = voff + l16
                        if group == 0x0004:
                            # Structure: decoded here, not kept as elements.
                            if l16 == 4 and (elem == 0x1400 or elem == 0x1420):
                                if elem == 0x1400:
                                    rec.next = u32(buf, voff)[0]
                                else:
                                    rec.lower = u32(buf, voff)[0]
                            elif elem == 0x1410 and l16 == 2:
                                rec.in_use = (buf[voff] | buf[voff + 1]) != 0
                            else:
                                elems[tag] = (vr, voff, l16)
                        elif vr == "US" and l16 == 2:
                            vals[tag] = str(buf[voff] | buf[voff + 1] << 8 if little
                                            else buf[voff] << 8 | buf[voff + 1])
                        else:
                            elems[tag] = (vr, voff, l16)
                        continue
                    vr = long_vr(vrb)
                    if vr is None:
                        return None
                    length = u32(buf, p + 8)[0]
                    voff = p + 12
                else:
                    if group == 0:
                        return None  # zero fill (no group 0000 in a record): damage
                    vr = impl_vr(tag)
                    length = hhi(buf, p)[2]
                    voff = p + 8
                    if vr in plain and length <= 1024:
                        raw = buf[voff:voff + length]
                        if b"\0" in raw and tag not in _LENIENT and _zeroed(raw, vr == "UI"):
                            return None  # zeros inside a value: damage, for the general path
                        text = cget(raw)
                        if text is None and raw.isascii() and b"\x1b" not in raw:
                            text = raw.decode("ascii").strip(" \0")
                            if not text.isprintable() and tag not in _LENIENT:
                                return None  # control bytes: junk, for the general path
                            if length <= 64 and len(cache) < 200_000:
                                cache[raw] = text
                        if text is not None and len(raw) == length:
                            vals[tag] = text
                            p = voff + length
                            continue
                if vr in _NESTED or length == UNDEFINED:
                    want = tag == T_ICON and rec.icon is None
                    p2, icon = _nested(buf, p, iend, little, explicit, want)
                    elems[tag] = ("SQ", voff, length)
                    if want:
                        rec.icon = icon
                        rec.icon_complete = icon is not None
                    p = p2
                    continue
                elems[tag] = (vr, voff, length)
                p = voff + length
            rec.end = p
            if explicit:  # structure was decoded on the way: type, File ID, completeness
                tv = vals.get(T_TYPE)
                if tv is not None:
                    rt = types.get(tv)
                    if rt is None:
                        rt = types[tv] = record_type(tv)
                    rec.rtype = rt
                elif T_TYPE in elems:
                    rec.rtype = record_type(_ascii(buf, elems[T_TYPE]))
                fv = vals.get(T_FILE_ID)
                if fv is not None:
                    rec.has_file_id = fv != ""
                else:
                    v = elems.get(T_FILE_ID)
                    rec.has_file_id = v is not None and 0 < v[2] != UNDEFINED
                if not rec.rtype and not rec.has_file_id and not rec.lower:
                    rec.complete = False  # no type, no file, no children: nothing to list
            append(rec)
            pos = p
    except (_Bail, struct.error, IndexError):
        return None
    if slen != UNDEFINED and pos != seq_end:
        return None
    # Elements after the sequence (e.g. a top-level Specific Character Set).
    tail = ElementReader(buf, little, explicit)
    for kind, tag, vr, voff, length, _p in tail.events(pos):
        if kind == EV_ELEM and not tail.stop_reason:
            top[tag] = (vr, voff, length)
        elif kind != EV_ELEM:
            return None
    if tail.stop_reason and not tail.zero_fill:
        return None
    raw = RawDicomdir(buf, layout, top, records, True)
    raw.filled = explicit
    if tail.zero_fill:  # zeros after the data (padding): nothing is lost
        raw.stop_reason, raw.stop_position = tail.stop_reason, tail.stop_position
    return raw


def _scan_generic(buf: bytes, layout: Layout) -> RawDicomdir:
    reader = ElementReader(buf, little=layout.little, explicit=layout.explicit)
    top: Elems = {}
    records: list[RawRecord] = []
    has_seq = False
    seq_start: int | None = None
    seq_end: int | None = None
    depth = 0
    in_records = False
    cur: Elems = {}
    rec: RawRecord | None = None
    icon_depth = 0  # depth of the icon SQ's item contents while inside it, else 0
    icon: Elems | None = None
    for kind, tag, vr, voff, length, pos in reader.events(layout.body):
        if kind == EV_ELEM:
            if depth == 2:
                cur[tag] = (vr, voff, length)
            elif depth == 0:
                top[tag] = (vr, voff, length)
            elif depth == icon_depth and icon is not None:
                icon[tag] = (vr, voff, length)
        elif kind == EV_ITEM:
            depth += 1
            if depth == 2 and in_records:
                if len(records) >= MAX_RECORDS:
                    reader.stop_reason = "too many records"
                    break
                cur = {}
                rec = RawRecord(pos, cur, complete=False)
                rec.end = pos + 8 + length if length != UNDEFINED else 0  # declared end
                records.append(rec)
            elif icon_depth and depth == icon_depth and icon is None and rec is not None:
                icon = {}
                rec.icon = icon
                rec.icon_complete = False
        elif kind == EV_ITEM_END:
            if depth == 2 and rec is not None:
                # An element that ran past its item's declared end: junk read as an element.
                rec.complete = not rec.end or pos <= rec.end
                rec.end = pos
            elif icon_depth and depth == icon_depth and rec is not None and icon is not None:
                rec.icon_complete = True
            depth -= 1
        elif kind == EV_SQ:
            if depth == 0 and tag == T_RECORDS:
                in_records = True
                if not has_seq:
                    seq_start = voff
                    seq_end = None if length == UNDEFINED else voff + length
                has_seq = True
            elif depth == 2:
                cur[tag] = ("SQ", voff, length)
                if tag == T_ICON and rec is not None and rec.icon is None:
                    icon_depth = 4
                    icon = None
            depth += 1
        elif kind == EV_SQ_END:
            depth -= 1
            if depth == 2 and icon_depth:
                icon_depth = 0
                icon = None
            elif depth == 0:
                in_records = False
    if reader.truncated and records and T_TYPE not in records[-1].elems:
        records[-1].complete = False  # cut before its type: not a record
    raw = RawDicomdir(buf, layout, top, records, has_seq, reader.stop_reason,
                      reader.truncated, reader.stop_position)
    raw.seq_start, raw.seq_end = seq_start, seq_end
    return raw


def record_type(value: str) -> str:
    """A Directory Record Type as compared: upper case; ``""`` when it is not a CS value
    (junk from a damaged stretch is no type, QA-14)."""
    t = value.upper()
    return t if valid_cs(t) else ""


def _ascii(buf: bytes, v: tuple[str, int, int]) -> str:
    if v[2] == UNDEFINED:
        return ""
    return buf[v[1]:v[1] + v[2]].decode("ascii", "replace").strip(" \0")


def _fill_structure(raw: RawDicomdir) -> None:
    """Decode the few structural keys of every record (type, offsets, in-use)."""
    buf = raw.buf
    u32 = struct.Struct("<I" if raw.layout.little else ">I").unpack_from
    u16 = struct.Struct("<H" if raw.layout.little else ">H").unpack_from
    for rec in raw.records:
        e = rec.elems
        if not e and not rec.vals:
            rec.complete = False  # an item cut right after its header: not a record
            continue
        tv = rec.vals.get(T_TYPE)
        if tv is not None:
            rec.rtype = record_type(tv)
        else:
            t = e.get(T_TYPE)
            if t is not None and t[2] != UNDEFINED:
                rec.rtype = record_type(_ascii(buf, t))
        v = e.get(T_NEXT)
        if v is not None and v[2] == 4:
            rec.next = u32(buf, v[1])[0]
        v = e.get(T_LOWER)
        if v is not None and v[2] == 4:
            rec.lower = u32(buf, v[1])[0]
        v = e.get(T_INUSE)
        if v is not None and v[2] >= 2:
            rec.in_use = u16(buf, v[1])[0] != 0
        fv = rec.vals.get(T_FILE_ID)
        if fv is not None:
            rec.has_file_id = bool(fv)
        else:
            v = e.get(T_FILE_ID)
            rec.has_file_id = v is not None and 0 < v[2] != UNDEFINED
        if not rec.rtype and not rec.has_file_id and not rec.lower:
            rec.complete = False  # no type, no file, no children: nothing to list
