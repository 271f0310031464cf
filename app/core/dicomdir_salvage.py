"""Salvage of a damaged DICOMDIR: records found again by their item tags.

When the structured pass of :mod:`app.core.dicomdir_scan` meets damage (wrong item or sequence
lengths, inserted garbage or zeroed sectors, a damaged sequence header), records after it are
found by an Item tag followed by a (0004,14xx) element and read up to the next one. Positions
stay exact, so the offsets still link them (STANDARDS.md §2 "Offsets", §7 fallbacks).
"""

from __future__ import annotations

import struct

from app.core.dcmbytes import (
    EV_ELEM,
    EV_ITEM,
    EV_ITEM_END,
    EV_SQ,
    UNDEFINED,
    ElementReader,
)
from app.core.dicomdir_scan import (
    MAX_RECORDS,
    T_FILE_ID,
    T_ICON,
    T_TYPE,
    Elems,
    RawDicomdir,
    RawRecord,
)

__all__ = ["salvage", "record_body"]


def salvage(raw: RawDicomdir) -> None:
    """Find records the structured pass missed: an Item tag followed by a (0004,14xx) element
    that is not a record already read (wrong item or sequence lengths, inserted garbage, a
    damaged sequence header). Each is read up to the next one; positions stay exact, so
    offsets still work. Records end up in file order."""
    buf, layout = raw.buf, raw.layout
    records = raw.records
    start = records[0].pos if records else layout.body
    cands = _record_candidates(buf, layout.little, start)
    known = {r.pos for r in records if r.complete}
    extra = [c for c in cands if c not in known]
    if not extra:
        return
    last_cut = next((r.pos for r in reversed(records) if not r.complete), None)
    if raw.truncated and extra == [last_cut] and cands[-1] == last_cut:
        return  # plain truncation: only the record that was cut, nothing after it
    records[:] = [r for r in records if r.complete]
    n = len(buf)
    u32 = struct.Struct("<I" if layout.little else ">I").unpack_from
    index = {c: k for k, c in enumerate(cands)}
    added = 0
    for c in extra:
        k = index[c]
        bound = cands[k + 1] if k + 1 < len(cands) else n
        ilen = u32(buf, c + 4)[0]
        if ilen != UNDEFINED and c + 8 + ilen < bound:
            bound = c + 8 + ilen
        elems, icon, icon_complete = record_body(buf, layout.little, layout.explicit, c + 8,
                                                  bound)
        if T_TYPE not in elems and T_FILE_ID not in elems:
            continue
        records.append(RawRecord(c, elems, icon=icon, icon_complete=icon_complete, end=bound))
        added += 1
        if len(records) >= MAX_RECORDS:
            break
    if added:
        records.sort(key=lambda r: r.pos)
        raw.has_sequence = True
        raw.salvaged = added
        raw.salvage_from = extra[0]


def _record_candidates(buf: bytes, little: bool, start: int) -> list[int]:
    item = b"\xfe\xff\x00\xe0" if little else b"\xff\xfe\xe0\x00"
    group = b"\x04\x00" if little else b"\x00\x04"
    order = "little" if little else "big"
    found: list[int] = []
    i = buf.find(item, start)
    while i != -1 and len(found) < MAX_RECORDS:
        if buf[i + 8:i + 10] == group and int.from_bytes(buf[i + 10:i + 12], order) in (
                0x1400, 0x1410, 0x1420, 0x1430):
            found.append(i)
        i = buf.find(item, i + 4)
    return found


def record_body(buf: bytes, little: bool, explicit: bool, start: int, end: int
                 ) -> tuple[Elems, Elems | None, bool]:
    """Elements of one record item (and its icon item) between ``start`` and ``end``."""
    reader = ElementReader(buf, little, explicit, max_elements=100_000)
    elems: Elems = {}
    icon: Elems | None = None
    icon_complete = True
    icon_done = False
    in_icon = False
    depth = 0
    for kind, tag, vr, voff, length, _pos in reader.events(start, end):
        if kind == EV_ELEM:
            if depth == 0:
                elems[tag] = (vr, voff, length)
            elif depth == 2 and in_icon and icon is not None and not icon_done:
                icon[tag] = (vr, voff, length)
        elif kind == EV_SQ:
            if depth == 0:
                elems[tag] = ("SQ", voff, length)
                in_icon = tag == T_ICON and icon is None
            depth += 1
        elif kind == EV_ITEM:
            depth += 1
            if depth == 2 and in_icon and icon is None:
                icon = {}
                icon_complete = False
        elif kind == EV_ITEM_END:
            if depth == 2 and in_icon and icon is not None and not icon_done:
                icon_complete = True
                icon_done = True
            depth -= 1
        else:
            depth -= 1
            if depth == 0:
                in_icon = False
    return elems, icon, icon_complete
