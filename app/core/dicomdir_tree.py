"""Stage 2 of the DICOMDIR parser: link the raw records into a tree.

By the offsets (STANDARDS.md §2 "Offsets": bytes from the first byte of the file to the Item
tag), each checked against the set of real item positions, each record linked at most once
(a visited check: cycles end a chain), iteratively; a constant shift is detected and corrected;
when the offsets cannot be trusted (zero, garbage, cyclic, missing) the tree is rebuilt from
the records' order (STANDARDS.md §7 "Traversal and fallbacks").
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

from app.core.dicomdir_scan import (
    LEAF_TYPES,
    PATIENT,
    ROOT_ONLY,
    SERIES,
    STUDY,
    T_FIRST,
    RawDicomdir,
    RawRecord,
)

__all__ = ["Tree", "walk_offsets", "consistent", "detect_shift", "sequence_order",
           "record_level", "top_offset"]


def top_offset(raw: RawDicomdir, tag: int) -> int:
    """A top-level UL offset ((0004,1200) or (0004,1202)); 0 when absent or malformed."""
    v = raw.top.get(tag)
    if v is None or v[2] != 4:
        return 0
    return struct.unpack_from("<I" if raw.layout.little else ">I", raw.buf, v[1])[0]


@dataclass
class Tree:
    """Records linked into a forest: ``roots`` and ``children`` hold record indices."""

    roots: list[int] = field(default_factory=list)
    children: dict[int, list[int]] = field(default_factory=dict)
    # For a tree rebuilt from sequence order, inactive records are already left out.
    by_offsets: bool = True


def walk_offsets(raw: RawDicomdir, shift: int = 0) -> tuple[Tree, list[str], list[str]]:
    """Link records by their offsets; returns ``(tree, hard faults, soft faults)``.

    Every record's lower-level offset and the sibling chain from it give each child its
    parent; the root chain gives the order of the top level. Iterative, each record linked at
    most once (a visited check), so garbage or cyclic offsets end a chain and cannot loop.

    Hard faults (an offset that is not the position of a record, a cycle, a record claimed
    twice) mean the offsets cannot be trusted. Soft faults (a wrong or zero root offset, top
    level records missing from the root chain) are repaired: records without a parent join
    the top level in sequence order.
    """
    starts = {rec.pos: i for i, rec in enumerate(raw.records)}
    records = raw.records
    tree = Tree()
    if not any(r.complete for r in records):
        return tree, [], []  # nothing to link (a truncation is reported on its own)
    hard: list[str] = []
    soft: list[str] = []
    parent: dict[int, int] = {}

    def fault(msg: str) -> None:
        if len(hard) < 5:
            hard.append(msg)

    for i, rec in enumerate(records):
        off = rec.lower
        if not off:
            continue
        chain: list[int] = []
        while off:
            j = starts.get(off + shift)
            if j is None:
                fault(f"offset {off} does not point at a directory record")
                break
            if j == i or j in parent:
                fault(f"offset {off} points at a record already linked (cycle)")
                break
            parent[j] = i
            chain.append(j)
            off = records[j].next
        if chain:
            tree.children[i] = chain
    first = top_offset(raw, T_FIRST)
    off = first
    seen: set[int] = set()
    while off:
        j = starts.get(off + shift)
        if j is None:
            if first and off == first:
                soft.append(f"the root offset {off} does not point at a directory record")
            else:
                fault(f"offset {off} does not point at a directory record")
            break
        if j in seen or j in parent:
            soft.append(f"the root chain reaches a lower-level record at offset {off}")
            break
        seen.add(j)
        tree.roots.append(j)
        off = records[j].next
    if records and not first:
        soft.append("the offset of the first root record is missing or zero")
    # Records nobody links to: heads of unlinked chains join the top level.
    heads = [i for i in range(len(records))
             if i not in parent and i not in seen and records[i].complete]
    if heads:
        active = [i for i in heads if records[i].in_use]
        if active and first:
            soft.append(f"{len(active)} record(s) are not linked from the root")
        tree.roots.extend(heads)
    # Records in a parent cycle are reachable from no root.
    reached = 0
    stack = list(tree.roots)
    visited: set[int] = set()
    while stack:
        i = stack.pop()
        if i in visited:
            continue
        visited.add(i)
        reached += 1
        stack.extend(tree.children.get(i, ()))
    if reached < sum(1 for r in records if r.complete):
        fault("some records are linked only in a cycle")
    return tree, hard, soft


def consistent(raw: RawDicomdir, tree: Tree) -> bool:
    """True when the tree's levels make sense: top level holds PATIENT-level or root-only
    records, and each child sits below its parent (STUDY under PATIENT, ...)."""
    records = raw.records
    for i in tree.roots:
        if records[i].in_use and record_level(records[i]) > 0 and records[i].rtype != "PRIVATE":
            return False
    for p, kids in tree.children.items():
        lp = record_level(records[p])
        if lp < 0 or lp >= 3:
            return False
        for k in kids:
            if records[k].rtype != "PRIVATE" and record_level(records[k]) <= lp:
                return False
    return True


def detect_shift(raw: RawDicomdir) -> int | None:
    """A constant shift that makes every non-zero offset hit a record; None if there is none.

    Typical causes: a DICOMDIR stored without its preamble whose offsets still count it (-132
    or -128), or offsets counted from the end of the File Meta.
    """
    records = raw.records
    if not records:
        return None
    starts = {rec.pos for rec in records}
    offsets = [o for rec in records for o in (rec.next, rec.lower) if o]
    first = top_offset(raw, T_FIRST)
    if first:
        offsets.append(first)
    if not offsets:
        return None
    candidates: Counter[int] = Counter()
    p0 = records[0].pos
    if first:
        candidates[p0 - first] += 3
    candidates[p0 - min(offsets)] += 2
    for d in (132, -132, 128, -128, 4, -4):
        candidates[d] += 1
    if raw.layout.body:
        candidates[raw.layout.body] += 1
        candidates[-raw.layout.body] += 1
    sample = offsets if len(offsets) <= 2000 else offsets[:: len(offsets) // 2000]
    for d, _ in candidates.most_common():
        if d == 0:
            continue
        if all((o + d) in starts for o in sample):
            return d
    return None


def sequence_order(raw: RawDicomdir) -> Tree:
    """Rebuild the tree from the records' order: PATIENT/STUDY/SERIES open levels, leaves
    attach to the last SERIES; inactive records and their subtrees are left out."""
    tree = Tree(by_offsets=False)
    open_: list[int | None] = [None, None, None]
    skip_level: int | None = None
    for idx, rec in enumerate(raw.records):
        if not rec.complete:
            continue
        level = record_level(rec)
        if skip_level is not None:
            if level > skip_level:
                continue
            skip_level = None
        if level < 0:  # root-level single records
            if rec.in_use:
                tree.roots.append(idx)
            continue
        if not rec.in_use:
            skip_level = level
            if level < 3:
                for k in range(level, 3):
                    open_[k] = None
            continue
        parent = next((open_[k] for k in range(min(level, 3) - 1, -1, -1)
                       if open_[k] is not None), None)
        if parent is None:
            tree.roots.append(idx)
        else:
            tree.children.setdefault(parent, []).append(idx)
        if level < 3:
            open_[level] = idx
            for k in range(level + 1, 3):
                open_[k] = None
    return tree


def record_level(rec: RawRecord) -> int:
    """0 PATIENT (or an unknown container), 1 STUDY, 2 SERIES, 3 leaf, -1 root-only record."""
    t = rec.rtype
    if t == PATIENT:
        return 0
    if t == STUDY:
        return 1
    if t == SERIES:
        return 2
    if t in ROOT_ONLY:
        return -1
    if t in LEAF_TYPES or rec.has_file_id or t == "PRIVATE":
        return 3
    return 0  # unknown type without a file: a container, like a PATIENT
