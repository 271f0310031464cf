"""Salvage of a damaged DICOMDIR: records found again by their item tags, and the damage map.

When the structured pass of :mod:`app.core.dicomdir.scan` meets damage (wrong item or sequence
lengths, inserted garbage or zeroed sectors, a damaged sequence header), records after it are
found by an Item tag followed by a (0004,14xx) element and read up to the next one. Positions
stay exact, so the offsets still link them (STANDARDS.md §2 "Offsets", §7 fallbacks).

:func:`assess` then maps the damage: a record counts only when its item parses cleanly from its
Item tag to its end (a record cut by zeros or junk is dropped: its values cannot be trusted, and
its file is found again as an unreferenced file); the bytes between intact records that hold no
intact record are *damaged stretches*. The tree stage links across them only by offsets, never
by record order (QA-13), and the last value before a stretch is dropped as possibly cut (QA-14).
"""

from __future__ import annotations

import struct

from app.core.dicom.elements import (
    EV_ELEM,
    EV_ITEM,
    EV_ITEM_END,
    EV_SQ,
    UNDEFINED,
    ElementReader,
)
from app.core.dicomdir.raw import (
    MAX_RECORDS,
    T_FILE_ID,
    T_ICON,
    T_TYPE,
    Elems,
    RawDicomdir,
    RawRecord,
)

__all__ = ["salvage", "read_record", "assess", "FAR"]

FAR = 1 << 62  # end of a damaged stretch that runs to the end of the data


def salvage(raw: RawDicomdir) -> None:
    """Find records the structured pass missed: an Item tag followed by a (0004,14xx) element
    that is not a record already read (wrong item or sequence lengths, inserted garbage, a
    damaged sequence header). Each is read up to the next one; positions stay exact, so
    offsets still work. Records end up in file order; records cut by damage are dropped
    (counted in ``raw.cut``)."""
    buf, layout = raw.buf, raw.layout
    records = raw.records
    start = records[0].pos if records else layout.body
    cands = _record_candidates(buf, layout.little, start)
    # A record of the structured pass counts when it ends before the next candidate: one that
    # runs over it (a wrong item length swallowed the records after it) is read again.
    cand_set = set(cands)
    nxt_after: dict[int, int] = {c: (cands[k + 1] if k + 1 < len(cands) else FAR)
                                 for k, c in enumerate(cands)}
    known = {r.pos for r in records if r.complete
             and (r.pos not in cand_set or r.end <= nxt_after[r.pos])}
    extra = [c for c in cands if c not in known]
    if not extra:
        return
    last_cut = next((r.pos for r in reversed(records) if not r.complete), None)
    if raw.truncated and extra == [last_cut] and cands[-1] == last_cut:
        return  # plain truncation: only the record that was cut, nothing after it
    kept = [r for r in records if r.pos in known]
    raw.cut += sum(1 for r in records if not r.complete)
    records[:] = kept
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
        rec = read_record(buf, layout.little, layout.explicit, c, bound)
        if rec is None:
            raw.cut += 1
            continue
        if T_TYPE not in rec.elems and T_FILE_ID not in rec.elems:
            continue
        records.append(rec)
        if not added:
            raw.salvage_from = c
        added += 1
        if len(records) >= MAX_RECORDS:
            break
    if added:
        records.sort(key=lambda r: r.pos)
        raw.has_sequence = True
        raw.salvaged = added


def read_record(buf: bytes, little: bool, explicit: bool, pos: int, bound: int
                ) -> RawRecord | None:
    """The record item whose Item tag is at ``pos``, read no further than ``bound``; None
    when it does not parse cleanly up to its end (cut by zeros, junk or the data end).

    An item whose elements end exactly at ``bound`` (the next record) counts as intact even
    when its own length says more (an anonymiser shortened a value and left the lengths)."""
    reader = ElementReader(buf, little, explicit, max_elements=100_000)
    elems: Elems = {}
    icon: Elems | None = None
    icon_complete = True
    icon_done = False
    in_icon = False
    depth = 0
    end: int | None = None
    for kind, tag, vr, voff, length, p in reader.events(pos, bound):
        if kind == EV_ELEM:
            if depth == 1:
                elems[tag] = (vr, voff, length)
            elif depth == 3 and in_icon and icon is not None and not icon_done:
                icon[tag] = (vr, voff, length)
        elif kind == EV_ITEM:
            depth += 1
            if depth == 3 and in_icon and icon is None:
                icon = {}
                icon_complete = False
        elif kind == EV_SQ:
            if depth == 1:
                elems[tag] = ("SQ", voff, length)
                in_icon = tag == T_ICON and icon is None
            depth += 1
        elif kind == EV_ITEM_END:
            if depth == 3 and in_icon and icon is not None and not icon_done:
                icon_complete = True
                icon_done = True
            depth -= 1
            if depth == 0:
                end = p
                break
        else:
            depth -= 1
            if depth == 1:
                in_icon = False
    if end is None:
        # Undefined-length item without its delimiter, elements ending at the next record.
        if depth == 1 and reader.truncated and reader.stop_position == bound:
            end = bound
        else:
            return None
    elif reader.stop_position is not None and reader.stop_position < end:
        return None
    ilen = int.from_bytes(buf[pos + 4:pos + 8], "little" if little else "big")
    if ilen != UNDEFINED and end != pos + 8 + ilen and not (end == bound < pos + 8 + ilen):
        return None  # an element ran past the item's end: junk read as an element
    return RawRecord(pos, elems, icon=icon, icon_complete=icon_complete, end=end)


def assess(raw: RawDicomdir) -> None:
    """Map the damaged stretches of a DICOMDIR that needed the general reader.

    Intact records must follow each other without a byte between them; whatever lies between
    two of them (or before the first, or after the last where the sequence does not end
    cleanly) is a damaged stretch. The last element of a record just before a stretch may
    have been cut by it: it is dropped (``RawRecord.suspect``), unless zeros visibly start
    after it."""
    buf = raw.buf
    # (An item without elements, e.g. its length zeroed, is no record: _fill_structure.)
    recs = [r for r in raw.records if r.complete and r.end > r.pos and (r.elems or r.vals)]
    damage: list[tuple[int, int]] = []
    if not recs:
        if raw.records:
            damage.append((raw.records[0].pos, FAR))
        raw.damage = damage
        return
    lead = raw.seq_start
    if lead is None and (raw.salvaged or raw.stop_reason):
        lead = raw.layout.body  # the sequence header itself was lost: all before is suspect
    if lead is not None and recs[0].pos > lead:
        damage.append((lead, recs[0].pos))
    prev: RawRecord | None = None
    for r in recs:
        if prev is not None and prev.end != r.pos:
            if prev.end < r.pos:
                damage.append((prev.end, r.pos))
                _mark_suspect(buf, prev)
        prev = r
    last = recs[-1]
    end = last.end
    delim = b"\xfe\xff\xdd\xe0" if raw.layout.little else b"\xff\xfe\xe0\xdd"
    clean_tail = (end >= len(buf) or end == raw.seq_end or buf[end:end + 4] == delim
                  or (raw.seq_end is not None and end > raw.seq_end))
    if not clean_tail:
        damage.append((end, FAR))
        _mark_suspect(buf, last)
    raw.damage = damage


def _mark_suspect(buf: bytes, rec: RawRecord) -> None:
    """Drop the last element of ``rec`` (followed by a damaged stretch): its value may have
    been cut by the stretch. Kept when zeros visibly start right after an intact value."""
    if not rec.elems:
        return
    tag = next(reversed(rec.elems))
    vr, voff, length = rec.elems[tag]
    if vr == "SQ" or length == UNDEFINED:
        if tag == T_ICON and rec.icon is not None:
            rec.icon_complete = False  # reported as a truncated icon
        return
    gap0 = buf[rec.end:rec.end + 1]
    if length and gap0 == b"\0" and buf[voff + length - 1] != 0:
        return  # zeros start after the value: it is whole
    del rec.elems[tag]
    rec.suspect = (*rec.suspect, tag)


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
