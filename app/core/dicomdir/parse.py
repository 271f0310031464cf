"""Tolerant, fast DICOMDIR parser: bytes → Patient/Study/Series/Instance records + problems.

``parse_dicomdir(data, name)`` reads a DICOMDIR in any encoding the bytes really use (Explicit
or Implicit VR, Little or Big Endian; with or without preamble and File Meta; whatever the
meta's Transfer Syntax claims), with defined or undefined lengths, and keeps what it can of a
truncated one; records behind damage (wrong lengths, inserted garbage) are found again by their
item tags. Records are linked by their offsets, checked against the real item positions
(STANDARDS.md §2 "Offsets"); shifted offsets are corrected, and zero, garbage, cyclic or
missing ones make it rebuild the tree from sequence order (STANDARDS.md §7), reported as
``dicomdir-recovered``. Inactive records (In-use 0000H) and their subtrees are hidden. Each
record is decoded with its own Specific Character Set, falling back to its parent's and then
the dataset's. Missing Type 1 record keys are ``missing-key`` warnings (STANDARDS.md §2).

Damage (zeroed or junk sectors, cut records) never files a record under a neighbour (QA-13):
records cut by damage are dropped (their files are unreferenced files for the reader), links
are made only by offsets that land on intact records, or by record order where no damaged
stretch lies between parent and child; records whose ancestry is lost go under placeholder
parents (IDs None) and are listed in ``DicomdirParse.orphans``. Values are checked by VR
(QA-14): a UID, date or time that is not one, or a value cut by damage, counts as absent and
is reported, so the reader takes the file's own value instead of a wrong key.

Stages: :mod:`app.core.dicomdir.scan` (records from bytes), :mod:`app.core.dicomdir.tree`
(linking), :mod:`app.core.dicomdir.build` (model and problems). Speed: one tight pass over the
buffer, no pydicom Dataset and no pydicom import on the hot path.
"""

from __future__ import annotations

from app.core.dicom.charsets import decoder_for
from app.core.dicom.elements import UNDEFINED, ParseError
from app.core.dicom.layout import find_layout, inflate
from app.core.dicomdir.build import FILE_KEYS, REQUIRED_KEYS, RecordBuilder, split_file_id
from app.core.dicomdir.raw import T_FILESET_ID, T_RECORDS, DicomdirParse, RawDicomdir
from app.core.dicomdir.scan import scan_records
from app.core.dicomdir.tree import (
    consistent,
    detect_shift,
    orphan_allowance,
    sequence_order,
    walk_offsets,
)
from app.core.errors import DicomdirUnreadable
from app.core.model import Problem

__all__ = ["DicomdirParse", "parse_dicomdir", "is_dicomdir", "dicomdir_extent", "split_file_id",
           "REQUIRED_KEYS", "FILE_KEYS", "DICOMDIR_SOP_CLASS"]

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"



def is_dicomdir(head: bytes) -> bool:
    """True when the first KBs of a file look like a DICOMDIR (SOP Class or group 0004).

    Never raises.
    """
    try:
        layout = find_layout(head)
    except ParseError:
        return False
    v = layout.meta.get(0x00020002)
    if v is not None and v[2] != UNDEFINED:
        sop = head[v[1]:v[1] + v[2]].decode("ascii", "replace").strip(" \0")
        if sop == DICOMDIR_SOP_CLASS:
            return True
    # No meta, or a meta that names another SOP Class: the body decides (group 0004 keys).
    from app.core.dicom.elements import EV_ELEM, EV_SQ, ElementReader

    reader = ElementReader(head, layout.little, layout.explicit, max_elements=64)
    for kind, tag, _vr, _voff, _length, _pos in reader.events(layout.body):
        if kind in (EV_ELEM, EV_SQ):
            if tag in (T_FILESET_ID, 0x00041200, 0x00041202, 0x00041212, T_RECORDS):
                return True
            if tag > T_RECORDS:
                return False
        else:
            return False
    return False


def dicomdir_extent(head: bytes, slack: int = 64 * 1024) -> int | None:
    """How many bytes of a DICOMDIR the parse needs, judged from its first KBs.

    The end of a defined-length Directory Record Sequence plus ``slack`` (for top-level
    elements after it, such as a Specific Character Set); None when that cannot be known (an
    undefined length, or the sequence is not in ``head``): read the whole file then. Lets a
    caller skip megabytes of padding after the records (QA-8). Never raises.
    """
    try:
        layout = find_layout(head)
    except ParseError:
        return None
    from app.core.dicom.elements import EV_ELEM, EV_SQ, ElementReader

    reader = ElementReader(head, layout.little, layout.explicit, max_elements=256)
    for kind, tag, _vr, voff, length, _pos in reader.events(layout.body):
        if kind == EV_SQ and tag == T_RECORDS:
            return None if length == UNDEFINED else voff + length + slack
        if kind != EV_ELEM or tag > T_RECORDS:
            return None
    return None


def _meta_value(raw: RawDicomdir, tag: int) -> str | None:
    v = raw.layout.meta.get(tag)
    if v is None or v[2] in (0, UNDEFINED):
        return None
    return raw.buf[v[1]:v[1] + v[2]].decode("ascii", "replace").strip(" \0") or None


def parse_dicomdir(data: bytes, name: str) -> DicomdirParse:
    """Parse a DICOMDIR's bytes into the record tree (see the module docstring).

    Parameters
    ----------
    data : bytes
        The whole DICOMDIR file.
    name : str
        Its path relative to the medium root (``/`` separators): used in problems and as
        ``Instance.dicomdir``; File IDs are relative to its folder.

    Raises
    ------
    DicomdirUnreadable
        When nothing usable is there (not DICOM, or no Directory Record Sequence).
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    inflated = False
    try:
        try:
            layout = find_layout(buf)
        except ParseError as exc:
            if not str(exc).startswith("deflated"):
                raise
            buf = inflate(buf)  # a really deflated DICOMDIR (not allowed, but readable)
            layout = find_layout(buf)
            inflated = True
    except ParseError as exc:
        raise DicomdirUnreadable(f"{name}: not a readable DICOMDIR ({exc})") from None
    raw = scan_records(buf, layout)
    if not raw.has_sequence:
        why = f" ({raw.stop_reason} at byte {raw.stop_position})" if raw.stop_reason else ""
        raise DicomdirUnreadable(f"{name}: no Directory Record Sequence found{why}")
    result = DicomdirParse()
    problems = result.problems
    b = RecordBuilder(raw, name, result)
    fsid = raw.top.get(T_FILESET_ID)
    result.fileset_id = b.value(fsid, decoder_for(None)) if fsid else None
    result.fileset_uid = _meta_value(raw, 0x00020003)
    if inflated:
        problems.append(Problem(
            "warning", "dicomdir-recovered", name,
            "DICOMDIR is deflated (PS3.10 requires Explicit VR Little Endian); inflated and "
            "read (offsets count the inflated bytes)"))
    elif layout.ts_mismatch:
        problems.append(Problem(
            "warning", "dicomdir-recovered", name,
            f"the Transfer Syntax in the File Meta ({layout.declared_ts}) does not match the "
            f"encoding of the records; read as {_encoding_name(layout.little, layout.explicit)}"))
    elif layout.prefix_at is None:
        problems.append(Problem("warning", "dicomdir-recovered", name,
                                "DICOMDIR has no preamble or DICM prefix; read anyway"))
    elif (layout.little, layout.explicit) != (True, True):
        problems.append(Problem(
            "warning", "dicomdir-recovered", name,
            f"DICOMDIR is encoded in {_encoding_name(layout.little, layout.explicit)} "
            "(PS3.10 requires Explicit VR Little Endian); read anyway"))
    if raw.salvaged:
        result.recovered = True
        why = f"{raw.stop_reason} at byte {raw.stop_position}" if raw.stop_reason else (
            "records found outside the Directory Record Sequence")
        cut = (f"; {raw.cut} record(s) cut by the damage were dropped (their files are read "
               "as unreferenced files)") if raw.cut else ""
        problems.append(Problem(
            "warning", "dicomdir-recovered", name,
            f"DICOMDIR is damaged ({why}): {raw.salvaged} records from byte "
            f"{raw.salvage_from} on were found by scanning for record items{cut}"))
    elif raw.stop_reason:
        n_read = sum(r.complete for r in raw.records)
        if raw.stop_reason == "zero-filled data" and not any(not r.complete
                                                           for r in raw.records):
            problems.append(Problem(
                "info", "dicomdir-recovered", name,
                f"DICOMDIR is followed by {len(buf) - (raw.stop_position or 0)} bytes of zeros "
                f"from byte {raw.stop_position} on: ignored ({n_read} records read)"))
        elif raw.truncated and raw.stop_position == len(buf) and n_read:
            result.recovered = True
            problems.append(Problem(
                "warning", "dicomdir-recovered", name,
                f"DICOMDIR ends before its declared lengths ({raw.stop_reason} at byte "
                f"{raw.stop_position}): {n_read} records read; any after that point are lost"))
        else:
            result.recovered = True
            problems.append(Problem(
                "warning", "dicomdir-recovered", name,
                f"DICOMDIR {raw.stop_reason} at byte {raw.stop_position}: "
                f"{n_read} records read, the rest is lost"))
    tree, hard, soft = walk_offsets(raw)
    if hard:
        shift = detect_shift(raw)
        if shift is not None:
            tree2, hard2, soft2 = walk_offsets(raw, shift)
            if not hard2 and consistent(raw, tree2):
                result.recovered = True
                problems.append(Problem(
                    "warning", "dicomdir-recovered", name,
                    f"record offsets are all off by {shift} bytes (e.g. counted without the "
                    "128-byte preamble); corrected"))
                tree, hard, soft = tree2, [], soft2
    # With damage, offsets are still in use when the orphan chains they leave are few enough
    # to be explained by the records lost (zero offsets leave every record an orphan).
    unused = bool(raw.damage) and tree.orphan_heads > 0 and (
        not tree.children or tree.orphan_heads > orphan_allowance(raw))
    if hard or unused or not consistent(raw, tree):
        why = "; ".join(hard[:3]) if hard else "offsets are missing or zero"
        tree = sequence_order(raw, tree.parent)
        result.recovered = True
        trust = (" (trusted only between records with no damaged stretch between them)"
                 if raw.damage else "")
        problems.append(Problem(
            "warning", "dicomdir-recovered", name,
            f"record offsets are unusable ({why}); the tree was rebuilt from the order of "
            f"the records{trust}"))
    elif tree.broken or tree.orphan_heads:
        result.recovered = True
        problems.append(Problem(
            "warning", "dicomdir-recovered", name,
            f"{tree.broken} record offset(s) lead into damaged stretches; the records around "
            "them were linked by their own offsets"))
    elif soft:
        result.recovered = True
        problems.append(Problem(
            "warning", "dicomdir-recovered", name,
            f"record offsets are partly wrong ({'; '.join(soft[:3])}); linked the records "
            "that the offsets leave out"))
    b.build(tree)
    _collect_orphans(b)
    return result


def _collect_orphans(b: RecordBuilder) -> None:
    """Leaves below a placeholder: their ancestry is unknown (``DicomdirParse.orphans``);
    one summary problem names them, so the reader can place them by their headers."""
    ph = b.placeholders
    orphans = b.result.orphans
    keyless = False  # a real STUDY or SERIES record without its UID (cut or invalid)
    for p in b.result.patients:
        for st in p.studies:
            for se in st.series:
                if id(p) in ph or id(st) in ph or id(se) in ph:
                    orphans.extend(se.instances)
                elif (st.study_uid is None or se.series_uid is None) and se.instances:
                    orphans.extend(se.instances)
                    keyless = True
    if not orphans or not (b.raw.damage or keyless or b.bad_values):
        return
    named = ", ".join("/".join(i.file_id) if i.file_id else "(no File ID)"
                      for i in orphans[:8])
    more = f" and {len(orphans) - 8} more" if len(orphans) > 8 else ""
    b.problems.append(Problem(
        "warning", "dicomdir-recovered", b.name,
        f"{len(orphans)} record(s) lost the PATIENT, STUDY or SERIES record above them to "
        f"damage, or its UID ({named}{more}): listed under an unknown patient, study or "
        "series, never under a neighbour's; their files' headers say where they belong"))


def _encoding_name(little: bool, explicit: bool) -> str:
    return (f"{'Explicit' if explicit else 'Implicit'} VR "
            f"{'Little' if little else 'Big'} Endian")

