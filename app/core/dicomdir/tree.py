"""Stage 2 of the DICOMDIR parser: link the raw records into a tree.

By the offsets (STANDARDS.md §2 "Offsets": bytes from the first byte of the file to the Item
tag), each checked against the set of real item positions, each record linked at most once
(a visited check: cycles end a chain), iteratively; a constant shift is detected and corrected;
when the offsets cannot be trusted (zero, garbage, cyclic, missing) the tree is rebuilt from
the records' order (STANDARDS.md §7 "Traversal and fallbacks").

A link is made only when it is trustworthy (QA-13): an offset that lands on an intact record,
or record order only between records that follow each other with no damaged stretch between
them (:func:`app.core.dicomdir.salvage.assess`). An offset into a damaged stretch ends its
chain; records whose parent was lost (orphans) are grouped by what is still known about them
(a sibling chain, or a run of records after one stretch) and go under placeholder parents,
never under a neighbour.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field

from app.core.dicom.elements import dicom_dictionary
from app.core.dicomdir.raw import (
    LEAF_TYPES,
    PATIENT,
    ROOT_ONLY,
    SERIES,
    STUDY,
    T_FIRST,
    RawDicomdir,
    RawRecord,
)

__all__ = ["Tree", "walk_offsets", "REQUIRED_KEYS", "FILE_KEYS", "keyword_maps", "split_file_id", "consistent", "detect_shift", "sequence_order",
           "record_level", "top_offset", "missing_keys", "in_damage", "orphan_allowance"]


# Type 1 keys by record type (STANDARDS.md §2, pydicom `_define_*`, dcmtk).
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PatientID",),
    "STUDY": ("StudyDate", "StudyTime", "StudyID", "StudyInstanceUID"),
    "SERIES": ("Modality", "SeriesInstanceUID", "SeriesNumber"),
    "IMAGE": ("InstanceNumber",),
    "SR DOCUMENT": ("InstanceNumber", "CompletionFlag", "VerificationFlag", "ContentDate",
                    "ContentTime", "ConceptNameCodeSequence"),
    "KEY OBJECT DOC": ("InstanceNumber", "ContentDate", "ContentTime",
                       "ConceptNameCodeSequence"),
    "PRESENTATION": ("PresentationCreationDate", "PresentationCreationTime", "InstanceNumber",
                     "ContentLabel"),
    "RT DOSE": ("InstanceNumber", "DoseSummationType"),
    "RT STRUCTURE SET": ("InstanceNumber", "StructureSetLabel"),
    "RT PLAN": ("InstanceNumber", "RTPlanLabel"),
    "WAVEFORM": ("InstanceNumber", "ContentDate", "ContentTime"),
    "RAW DATA": ("ContentDate", "ContentTime"),
    "ENCAP DOC": ("InstanceNumber", "MIMETypeOfEncapsulatedDocument"),
    "SPECTROSCOPY": ("ImageType", "ContentDate", "ContentTime", "InstanceNumber",
                     "NumberOfFrames", "Rows", "Columns", "DataPointRows", "DataPointColumns"),
}
for _t in ("REGISTRATION", "FIDUCIAL", "VALUE MAP", "SURFACE", "MEASUREMENT", "TRACT"):
    REQUIRED_KEYS[_t] = ("InstanceNumber", "ContentDate", "ContentTime", "ContentLabel")
# Keys every record that references a file must carry (Type 1C, PS3.3 F.5).
FILE_KEYS = ("ReferencedFileID", "ReferencedSOPClassUIDInFile",
             "ReferencedSOPInstanceUIDInFile", "ReferencedTransferSyntaxUIDInFile")

_MAPS: dict[str, dict] = {}


def keyword_maps() -> dict[str, dict]:
    """Keyword ↔ tag maps from the data dictionary, built on first use."""
    if not _MAPS:
        dictionary = dicom_dictionary()
        tags = {entry[4]: tag for tag, entry in dictionary.items() if entry[4]}
        # One update call: other threads see all three maps or none.
        _MAPS.update(
            keyword={tag: entry[4] for tag, entry in dictionary.items() if entry[4]},
            required={t: tuple((k, tags[k]) for k in keys) for t, keys in REQUIRED_KEYS.items()},
            file_keys={"": tuple((k, tags[k]) for k in FILE_KEYS)})
    return _MAPS


def split_file_id(value: str) -> tuple[str, ...]:
    """Referenced File ID components: split on ``\\`` and ``/``, space and NUL padding
    stripped, empty components dropped (STANDARDS.md §7 "Referenced File ID").

    Except leading ones: an ID recorded as absolute (``\\X``, ``/X``) or UNC
    (``\\\\server\\share``) keeps one or two leading ``""`` components, so that the
    resolver sees it for what it is and refuses it (STANDARDS.md §7 "Security").
    """
    if "/" in value:
        value = value.replace("/", "\\")
    parts = value.split("\\")
    if " " in value or "\0" in value:
        parts = [c.strip(" \0") for c in parts]
    if "" not in parts:
        return tuple(parts)
    lead = 0
    while lead < len(parts) and parts[lead] == "":
        lead += 1
    rest = [p for p in parts[lead:] if p]
    if not rest:
        return ()
    return ("",) * min(lead, 2) + tuple(rest)


def missing_keys(rec: RawRecord, required: tuple[tuple[str, int], ...], buf: bytes,
                 invalid: set[str]) -> list[str]:
    """Keywords of ``required`` keys that ``rec`` lacks: absent, empty (spaces or NULs) or
    left out as invalid (``invalid``, by keyword)."""
    e = rec.elems
    vals = rec.vals
    missing = []
    for kw, tag in required:
        text = vals.get(tag)
        if text is not None:
            if not text or kw in invalid:
                missing.append(kw)
            continue
        v = e.get(tag)
        if v is None or v[2] == 0 or kw in invalid or (v[0] != "SQ" and v[2] <= 16 and (
                not buf[v[1]:v[1] + v[2]].strip(b" \0"))):
            missing.append(kw)
    return missing


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
    # Orphans (records whose parent was lost to damage), by root index: records of one group
    # share their placeholder parents; ``orphan_heads`` counts the chains found by offsets.
    groups: dict[int, int] = field(default_factory=dict)
    # Parent of each record by offsets that landed on intact records (child → parent).
    parent: dict[int, int] = field(default_factory=dict)
    orphan_heads: int = 0
    broken: int = 0  # offsets that point into a damaged stretch


def in_damage(raw: RawDicomdir, pos: int) -> bool:
    """True when ``pos`` lies in a damaged stretch of ``raw``."""
    damage = raw.damage
    if not damage:
        return False
    k = bisect_right(damage, (pos, 1 << 63)) - 1
    return k >= 0 and damage[k][0] <= pos < damage[k][1]


def orphan_allowance(raw: RawDicomdir) -> int:
    """How many orphan chains the damaged stretches can explain: each lost record can leave
    two (its next sibling and its first child). More means the offsets are not in use."""
    if not raw.damage:
        return 0
    sizes = [r.end - r.pos for r in raw.records if r.complete and r.end > r.pos]
    avg = max(32, sum(sizes) // len(sizes)) if sizes else 32
    n = len(raw.buf)
    lost = sum(max(1, -(-(min(e, n) - s) // avg)) for s, e in raw.damage)
    return 2 * lost + 2


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
    starts = {rec.pos: i for i, rec in enumerate(raw.records) if rec.complete}
    records = raw.records
    tree = Tree()
    if not any(r.complete for r in records):
        return tree, [], []  # nothing to link (a truncation is reported on its own)
    hard: list[str] = []
    soft: list[str] = []
    parent = tree.parent

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
                if in_damage(raw, off + shift):
                    tree.broken += 1  # its target was lost to damage: the chain ends
                else:
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
            if in_damage(raw, off + shift):
                tree.broken += 1
            elif first and off == first:
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
    if heads and raw.damage:
        _group_orphans(raw, tree, heads, starts, shift, parent, seen)
    elif heads:
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


def _group_orphans(raw: RawDicomdir, tree: Tree, heads: list[int], starts: dict[int, int],
                   shift: int, parent: dict[int, int], seen: set[int]) -> None:
    """Unreached records of a damaged DICOMDIR: PATIENT-level ones join the top level; the
    others lost their parent to damage. Each is followed along its sibling chain; a chain is
    one orphan group (siblings share their parent, so their placeholder)."""
    records = raw.records
    grouped: set[int] = set()
    group = 0
    for h in heads:
        if h in grouped:
            continue
        rec = records[h]
        if record_level(rec) <= 0 or rec.rtype == "PRIVATE":
            tree.roots.append(h)
            continue
        group += 1
        tree.orphan_heads += rec.in_use
        j: int | None = h
        while j is not None and j not in grouped:
            grouped.add(j)
            tree.roots.append(j)
            tree.groups[j] = group
            nxt = records[j].next
            j = starts.get(nxt + shift) if nxt else None
            if j is not None and (j in parent or j in seen
                                  or record_level(records[j]) != record_level(rec)):
                j = None


def consistent(raw: RawDicomdir, tree: Tree) -> bool:
    """True when the tree's levels make sense: top level holds PATIENT-level or root-only
    records (or orphans grouped under placeholders), and each child sits below its parent
    (STUDY under PATIENT, ...)."""
    records = raw.records
    for i in tree.roots:
        if i in tree.groups:
            continue
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
    starts = {rec.pos for rec in records if rec.complete}
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
        # Offsets into damaged stretches point at records that were lost: they do not count.
        hits = [(o + d) in starts for o in sample]
        if any(hits) and all(h or in_damage(raw, o + d) for h, o in zip(hits, sample, strict=True)):
            return d
    return None


_UNKNOWN = -1  # an open level whose record was lost to damage


def sequence_order(raw: RawDicomdir, offset_parent: dict[int, int] | None = None) -> Tree:
    """Rebuild the tree from the records' order: PATIENT/STUDY/SERIES open levels, leaves
    attach to the last SERIES; inactive records and their subtrees are left out.

    Order is trusted only between records with no damaged stretch between them: after a
    stretch every level is unknown, and the records that would attach to a level opened
    before it become orphans (one group per stretch) under placeholder parents. In a damaged
    DICOMDIR, a record whose intact offsets name another parent than the order does is an
    orphan too (records not in depth-first order: the order says nothing)."""
    tree = Tree(by_offsets=False)
    open_: list[int | None] = [None, None, None]
    skip_level: int | None = None
    gap_ends = {e for _s, e in raw.damage}
    group = 0
    for idx, rec in enumerate(raw.records):
        if not rec.complete:
            continue
        if rec.pos in gap_ends:
            open_ = [_UNKNOWN, _UNKNOWN, _UNKNOWN]
            skip_level = None
            group += 1
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
        parent: int | None = None
        unknown = False
        for k in range(min(level, 3) - 1, -1, -1):
            o = open_[k]
            if o is None:
                continue
            if o == _UNKNOWN:
                unknown = True
            else:
                parent = o
            break
        if (parent is not None and offset_parent and raw.damage
                and offset_parent.get(idx, parent) != parent):
            parent, unknown = None, True  # order and offsets disagree: trust neither
            group += 1
        if parent is not None:
            tree.children.setdefault(parent, []).append(idx)
        else:
            tree.roots.append(idx)
            if unknown:
                tree.groups[idx] = group
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
