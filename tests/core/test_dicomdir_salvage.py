"""Damaged DICOMDIRs (QA-13, QA-14): unreadable sectors (zeros) or junk anywhere in the file.

The whole class: a window of zeros or junk slides over a multi-patient DICOMDIR in several
encodings, with correct and with zero offsets. Whatever survives must be listed truthfully:
a leaf is never filed under another patient, study or series than its own, and never carries
a value (UID) that is not the recorded one. Leaves whose records and links the damage did not
touch must still be found under their real parents (offsets walked around the hole).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import pytest

from app.core.dicomdir.parse import DicomdirParse, parse_dicomdir
from app.core.errors import DicomdirUnreadable
from app.core.model import Instance
from tests import dicomdir_bytes as db

# -- truth from the builder ---------------------------------------------------------------------


@dataclass
class Leaf:
    file_id: tuple[str, ...]
    keys: tuple[str, str, str, str]  # PatientID, Study UID, Series UID, SOP Instance UID
    path: list[db.Rec]  # PATIENT, STUDY, SERIES, IMAGE records
    siblings_before: list[db.Rec]  # earlier siblings on each level below PATIENT


def corpus(patients: int = 6) -> list[db.Rec]:
    """``patients`` × 1 study × 2 series × 3 images, every key distinct, the same bytes in
    every run (UIDs from the position, not from the builder's global counter)."""
    root = "1.2.826.0.1.3680043.8.498.78"
    roots = []
    for p in range(1, patients + 1):
        ses = [db.series(*[db.image((f"PA{p}", "ST1", f"SE{e}", f"IM{i}"), number=str(i),
                                    sop_uid=f"{root}.{p}.1.{e}.{i}") for i in range(1, 4)],
                         uid_=f"{root}.{p}.1.{e}", number=str(e)) for e in (1, 2)]
        roots.append(db.patient(f"PID{p:03d}", "Test^Patient",
                                db.study(*ses, uid_=f"{root}.{p}.1", StudyID="1")))
    return roots


def leaves(roots: list[db.Rec]) -> list[Leaf]:
    out = []
    for p in roots:
        for si, st in enumerate(p.children):
            for ei, se in enumerate(st.children):
                for ii, im in enumerate(se.children):
                    out.append(Leaf(
                        im.file_id,  # type: ignore[arg-type]
                        (p.keys["PatientID"], st.keys["StudyInstanceUID"],
                         se.keys["SeriesInstanceUID"], im.keys["ReferencedSOPInstanceUIDInFile"]),
                        [p, st, se, im],
                        p.children[:si] + st.children[:ei] + se.children[:ii]))
    return out


def record_spans(roots: list[db.Rec], data: bytes, little: bool = True
                 ) -> dict[int, tuple[int, int]]:
    """Byte span of every record (by ``id``), found by its unique key in the encoded bytes."""
    tag = b"\xfe\xff\x00\xe0" if little else b"\xff\xfe\xe0\x00"
    group = b"\x04\x00" if little else b"\x00\x04"
    starts = [m.start() for m in re.finditer(re.escape(tag), data)
              if data[m.start() + 8:m.start() + 10] == group]
    bounds = list(zip(starts, starts[1:] + [len(data)], strict=True))
    spans = {}
    for root in roots:
        for r in root.walk():
            key = r.keys.get("PatientID") or r.keys.get("StudyInstanceUID") if r.type in (
                "PATIENT", "STUDY") else r.keys.get("SeriesInstanceUID") or r.keys.get(
                "ReferencedSOPInstanceUIDInFile")
            pat = re.compile(re.escape(key.encode()) + rb"(?![0-9.])")
            [span] = [b for b in bounds if pat.search(data, b[0], b[1])]
            spans[id(r)] = span
    return spans


def hits(span: tuple[int, int], window: tuple[int, int]) -> bool:
    return span[0] < window[1] and window[0] < span[1]


def rows(res: DicomdirParse) -> list[tuple[tuple[Any, ...], Instance, bool]]:
    """(patient ID, study UID, series UID), the instance, under a placeholder?"""
    orphan_ids = {id(i) for i in res.orphans}
    return [((p.patient_id, st.study_uid, se.series_uid), i, id(i) in orphan_ids)
            for p in res.patients for st in p.studies for se in st.series
            for i in se.instances]


def damage(data: bytes, window: tuple[int, int], fill: str, rnd: random.Random) -> bytes:
    b = bytearray(data)
    n = min(window[1], len(b)) - window[0]
    b[window[0]:window[0] + n] = bytes(n) if fill == "zeros" else rnd.randbytes(n)
    return bytes(b)


def check_truthful(res: DicomdirParse, truth: dict[tuple[str, ...], Leaf], where: str) -> None:
    """No leaf under a wrong real parent, no wrong UID; placeholders flagged as orphans."""
    for parents, inst, orphan in rows(res):
        assert inst.file_id in truth, (where, inst.file_id)
        want = truth[inst.file_id].keys
        got = (*parents, inst.sop_instance_uid)
        wrong = [(g, w) for g, w in zip(got, want, strict=True) if g is not None and g != w]
        assert not wrong, (where, inst.file_id, wrong)
        if None in parents[1:]:
            assert orphan, (where, inst.file_id)
    if res.orphans:
        assert any("lost the PATIENT, STUDY or SERIES record" in p.message
                   and p.path == "DICOMDIR" for p in res.problems), where


# -- the sweep ----------------------------------------------------------------------------------

VARIANTS = {
    "explicit": {},
    "implicit": {"explicit": False},
    "undefined-lengths": {"undefined_items": True, "undefined_sequences": True},
    "zero-offsets": {"offsets": "zero"},
    "implicit-zero-offsets": {"explicit": False, "offsets": "zero"},
    "levels-order": {"order": "levels"},  # not depth-first: order alone says nothing
    "big-endian": {"little": False},
}


@pytest.mark.parametrize("fill", ["zeros", "junk"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("size", [2048, 300])
def test_every_damaged_window_lists_truthfully(variant: str, fill: str, size: int) -> None:
    knobs = VARIANTS[variant]
    roots = corpus()
    data = db.encode(roots, **knobs)
    truth = {leaf.file_id: leaf for leaf in leaves(roots)}
    spans = record_spans(roots, data, knobs.get("little", True))
    by_offsets = knobs.get("offsets", "correct") == "correct"
    rnd = random.Random(f"{variant}-{fill}-{size}")
    first = min(s[0] for s in spans.values())
    step = 2048 if size == 2048 else 700
    checked = placed = 0
    for base in ((0, 700, 1400) if size == 2048 else (0,)):
        for start in range(base, len(data), step):
            window = (start, start + size)
            where = f"{variant} {fill} {window}"
            try:
                res = parse_dicomdir(damage(data, window, fill, rnd), "DICOMDIR")
            except DicomdirUnreadable:
                assert start < first, where  # only when the header itself is gone
                continue
            check_truthful(res, truth, where)
            got = {inst.file_id: (parents, inst, orphan) for parents, inst, orphan in rows(res)}
            for leaf in truth.values():
                p, st, se, im = (spans[id(r)] for r in leaf.path)
                if by_offsets:
                    intact = not any(hits(spans[id(r)], window)
                                     for r in leaf.path[1:] + leaf.siblings_before)
                    intact = intact and not hits(p, window)
                else:  # sequence order: nothing damaged from the PATIENT record to the leaf
                    intact = not hits((p[0], im[1]), window)
                if not intact or start < first:
                    continue
                checked += 1
                assert leaf.file_id in got, (where, leaf.file_id)
                parents, inst, orphan = got[leaf.file_id]
                assert not orphan, (where, leaf.file_id)
                assert parents[1:] == leaf.keys[1:3], (where, leaf.file_id)
                assert inst.sop_instance_uid == leaf.keys[3], (where, leaf.file_id)
                # A PATIENT record just before a damaged stretch may lose its last value.
                assert parents[0] in (leaf.keys[0], None), where
                placed += parents[0] == leaf.keys[0]
    assert checked > 50 and placed > checked // 2, (checked, placed)


def test_lost_patient_record_orphans_go_under_placeholders_by_offsets() -> None:
    """PATIENT 2's record zeroed: its study, series and images keep their own UIDs, walked by
    offsets, under an unknown patient (never patient 1); patient 3 is intact."""
    roots = corpus(3)
    data = db.encode(roots)
    spans = record_spans(roots, data)
    res = parse_dicomdir(damage(data, spans[id(roots[1])], "zeros", random.Random(0)),
                         "DICOMDIR")
    assert [p.patient_id for p in res.patients] == ["PID001", None, "PID003"]  # file order
    unknown = res.patients[1]
    assert [st.study_uid for st in unknown.studies] == [
        roots[1].children[0].keys["StudyInstanceUID"]]
    assert [se.series_uid for se in unknown.studies[0].series] == [
        se.keys["SeriesInstanceUID"] for se in roots[1].children[0].children]
    assert len(res.orphans) == 6
    assert {i.file_id[0] for i in res.orphans} == {"PA2"}
    assert res.recovered
    assert res.patients[2].studies[0].series[1].instances[-1].instance_number == "3"


def test_lost_series_record_with_zero_offsets_is_not_merged_into_the_previous_series() -> None:
    """Sequence order would put SERIES 2's images under SERIES 1: a damaged stretch between
    them forbids it."""
    roots = corpus(2)
    data = db.encode(roots, offsets="zero")
    spans = record_spans(roots, data)
    se2 = roots[0].children[0].children[1]
    res = parse_dicomdir(damage(data, spans[id(se2)], "junk", random.Random(1)), "DICOMDIR")
    check_truthful(res, {leaf.file_id: leaf for leaf in leaves(roots)}, "se2")
    orphans = sorted(i.file_id for i in res.orphans)
    assert orphans == [("PA1", "ST1", "SE2", f"IM{i}") for i in (1, 2, 3)]
    assert sorted(p.patient_id or "" for p in res.patients) == ["", "PID001", "PID002"]


# -- QA-14: values ------------------------------------------------------------------------------

def test_uid_cut_by_zeros_or_junk_is_never_listed() -> None:
    roots = corpus(2)
    data = db.encode(roots)
    im = roots[0].children[0].children[0].children[1]
    uid = im.keys["ReferencedSOPInstanceUIDInFile"].encode()
    at = data.index(uid) + len(uid) - 3
    truth = {leaf.file_id: leaf for leaf in leaves(roots)}
    for fill in ("zeros", "junk"):
        res = parse_dicomdir(damage(data, (at, at + 2048), fill, random.Random(2)), "DICOMDIR")
        check_truthful(res, truth, fill)
        assert im.file_id not in {i.file_id for _p, i, _o in rows(res)}  # its record was cut


@pytest.mark.parametrize(("key", "bad"), [
    ("ReferencedSOPInstanceUIDInFile", "1.2.3.4a"),
    ("ReferencedSOPInstanceUIDInFile", "1.2..3"),
    ("ReferencedSOPInstanceUIDInFile", "1." + "2" * 70),
    ("ReferencedSOPInstanceUIDInFile", ".1.2"),
])
def test_invalid_uid_in_an_intact_record_is_treated_as_absent(key: str, bad: str) -> None:
    img = db.image(("A", "IM1"), **{key: bad})
    res = parse_dicomdir(db.encode([db.patient("P", "N", db.study(db.series(img)))]),
                         "DICOMDIR")
    [inst] = list(res.patients[0].instances())
    assert inst.sop_instance_uid is None
    msgs = [(p.code, p.path, p.message) for p in res.problems]
    assert any(c == "dicomdir-recovered" and path == "A/IM1" and "not a valid value" in m
               for c, path, m in msgs), msgs
    assert any(c == "missing-key" and key in m for c, _path, m in msgs), msgs


def test_implausible_dates_and_times_are_treated_as_absent() -> None:
    st = db.study(db.series(db.image(("A",))), StudyDate="20241399", StudyTime="256000")
    pat = db.patient("P", "N", st, PatientBirthDate="1970.01.02")
    res = parse_dicomdir(db.encode([pat]), "DICOMDIR")
    study = res.patients[0].studies[0]
    assert (study.study_date, study.study_time) == (None, None)
    assert res.patients[0].birth_date == "1970.01.02"  # ACR-NEMA form is plausible
    assert sum(p.code == "missing-key" for p in res.problems) == 1
