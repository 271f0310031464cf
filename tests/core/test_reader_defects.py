"""open_medium on broken and hostile media: exact trees and problems for every defect."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.core.medium.fs import DirFS
from app.core.medium.reader import open_medium, read_medium
from tests import dicomdir_bytes as db
from tests.defect_media import (
    SENTINEL,
    FaultFS,
    OpenSpy,
    conformant,
    expected_tree,
    header_tree,
    hostile,
    leaves,
    loose_files,
    payloads,
)
from tests.media import make_dataset, write_instance


def _codes(m: object) -> list[tuple[str, str, str | None]]:
    return [(p.severity, p.code, p.path) for p in m.problems]  # type: ignore[attr-defined]


def test_missing_and_empty_files(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m")
    lv = leaves(b.roots)
    gone, empty = lv[0], lv[3]
    (b.root.joinpath(*gone.file_id)).unlink()  # type: ignore[misc]
    (b.root.joinpath(*empty.file_id)).write_bytes(b"")  # type: ignore[misc]
    m = open_medium(b.root)
    assert m.source == "dicomdir"
    assert m.to_dict()["patients"] == expected_tree(
        b.roots, lambda r: None if r is gone else "/".join(r.file_id))  # type: ignore[arg-type]
    assert _codes(m) == [("error", "missing-file", "/".join(gone.file_id)),  # type: ignore[arg-type]
                         ("error", "empty-file", "/".join(empty.file_id))]  # type: ignore[arg-type]
    inst = {i.sop_instance_uid: i for i in m.instances()}
    assert inst[empty.keys["ReferencedSOPInstanceUIDInFile"]].size == 0


def test_ls_opens_no_referenced_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = conformant(tmp_path / "m")
    spy = OpenSpy().install(monkeypatch)
    m = open_medium(b.root)
    opened = set(spy.touched_under(b.root))
    for inst in m.instances():
        assert os.path.realpath(b.root / inst.path) not in opened  # type: ignore[operator]
    assert os.path.realpath(b.root / "DICOMDIR") in opened


def test_hostile_file_ids_never_leave_the_root(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    b = hostile(tmp_path / "m")
    spy = OpenSpy().install(monkeypatch)
    m = open_medium(b.root)
    outside = b.notes["outside"]
    assert spy.touched_under(outside) == []  # the sentinel was never opened or listed
    good, bad = b.notes["good"], b.notes["bad"]
    tree = m.to_dict()["patients"]
    assert tree == expected_tree(b.roots, lambda r: "PA1/IM1" if r is good else None)
    refusals = [p for p in m.problems if p.severity == "error"]
    assert len(refusals) == len(bad)
    codes = {}
    for p in refusals:
        texts = {k: (r.file_id if isinstance(r.file_id, str) else "\\".join(r.file_id))
                 .strip("\\") for k, r in bad.items()}
        name = max((k for k, t in texts.items() if t in p.message), key=lambda k: len(texts[k]))
        codes[name] = p.code
    assert codes["dotdot"] == codes["deep_dotdot"] == codes["drive"] == "outside-root"
    assert codes["link_dir"] == codes["link_file"] == "outside-root"
    # The parser drops the leading separator of absolute and UNC File IDs, so these arrive
    # as relative IDs that resolve to nothing inside the root: refused or missing, never read.
    assert codes["absolute"] in ("outside-root", "missing-file")
    assert codes["unc"] in ("outside-root", "missing-file")
    # walking the medium for unreferenced files meets the two symlinks and does not follow them
    assert [(p.severity, p.code, p.path) for p in m.problems if p.severity != "error"] == [
        ("warning", "outside-root", "LINKDIR"), ("warning", "outside-root", "LINKFILE")]


def test_hostile_check_reads_nothing_outside(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.medium.check import check_medium

    b = hostile(tmp_path / "m")
    m = open_medium(b.root)
    spy = OpenSpy().install(monkeypatch)
    check_medium(m)
    assert spy.touched_under(b.notes["outside"]) == []
    for inst in m.instances():
        if inst.path is not None:
            with m.fs.open(inst.path) as fp:  # type: ignore[union-attr]
                assert fp.read() != SENTINEL


def test_unreferenced_files_listed(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m", patients=1)
    extra = loose_files(b.root, {
        "EXTRA/IM1": {"PatientID": "PID009", "PatientName": "Other^Person"},
        "PA1/ST1/SE1/IMX": {"PatientID": "PID001", "PatientName": "Test^Patient"},
    })
    payloads(b.root)
    m = open_medium(b.root)
    d = m.to_dict()
    want = expected_tree(b.roots)
    unref = header_tree(extra)
    # PID001 merges with the DICOMDIR's patient (same ID and name), in a study of its own
    want[0]["studies"].extend(unref[1]["studies"] if unref[0]["patient_id"] == "PID009"
                              else unref[0]["studies"])
    want.append(next(p for p in unref if p["patient_id"] == "PID009"))
    # what the records leave empty is filled from the unreferenced file's header
    want[0]["birth_date"], want[0]["sex"] = "19700101", "O"
    assert d["patients"] == want
    assert _codes(m) == [("warning", "unreferenced-file", "EXTRA/IM1"),
                         ("warning", "unreferenced-file", "PA1/ST1/SE1/IMX")]


def test_copy_of_referenced_file_is_a_duplicate_not_a_new_instance(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m", patients=1)
    first = leaves(b.roots)[0]
    (b.root / "BACKUP").mkdir()
    (b.root / "BACKUP" / "COPY").write_bytes(b.root.joinpath(*first.file_id).read_bytes())  # type: ignore[misc]
    m = open_medium(b.root)
    assert m.to_dict()["patients"] == expected_tree(b.roots)
    assert _codes(m) == [("warning", "duplicate-instance", "BACKUP/COPY")]


def test_record_with_unusable_file_id_gets_the_found_file(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m", patients=1)
    first = leaves(b.roots)[0]
    src = b.root.joinpath(*first.file_id)  # type: ignore[misc]
    (b.root / "MOVED").mkdir()
    src.rename(b.root / "MOVED" / "IM1")
    m = open_medium(b.root)
    assert m.to_dict()["patients"] == expected_tree(
        b.roots, lambda r: "MOVED/IM1" if r is first else "/".join(r.file_id))  # type: ignore[arg-type]
    assert _codes(m) == [("error", "missing-file", "/".join(first.file_id)),  # type: ignore[arg-type]
                         ("warning", "unreferenced-file", "MOVED/IM1")]


@pytest.mark.parametrize("garbage", [b"", b"not a dicomdir at all" * 10, bytes(range(256)) * 8])
def test_unparseable_dicomdir_falls_back_to_scan(tmp_path: Path, garbage: bytes) -> None:
    b = conformant(tmp_path / "m", patients=1)
    (b.root / "DICOMDIR").write_bytes(garbage)
    payloads(b.root)
    m = open_medium(b.root)
    assert m.source == "scan" and m.dicomdirs == []
    paths = sorted("/".join(r.file_id) for r in leaves(b.roots))  # type: ignore[arg-type]
    assert [i.path for i in m.instances()] == paths
    assert all(not i.referenced for i in m.instances())
    assert _codes(m) == [("warning", "dicomdir-unreadable", "DICOMDIR"),
                         ("info", "no-dicomdir", None)]


def test_truncated_dicomdir_keeps_what_it_can(tmp_path: Path) -> None:
    roots = db.simple_tree(patients=2, images=3)
    full = db.encode(roots)
    root = tmp_path / "m"
    db.write_medium(root, roots, truncate=len(full) * 2 // 3)
    m = open_medium(root)
    assert m.source == "dicomdir"
    listed = {i.sop_instance_uid for i in m.instances() if i.referenced}
    assert 0 < len(listed) < len(leaves(roots))
    # the files the truncated DICOMDIR lost are still listed, as unreferenced
    assert sum(1 for _ in m.instances()) == len(leaves(roots))
    assert {p.code for p in m.problems} >= {"unreferenced-file"}


def test_dicomdir_referencing_nothing_that_exists(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m", patients=1)
    for rec in leaves(b.roots):
        src = b.root.joinpath(*rec.file_id)  # type: ignore[misc]
        src.rename(src.with_name(src.name + "_RENAMED"))
    m = open_medium(b.root)
    assert m.source == "scan"
    assert len(list(m.instances())) == len(leaves(b.roots))
    assert _codes(m) == [("warning", "no-dicomdir", "DICOMDIR"), ("info", "no-dicomdir", None)]


def test_dicomdir_alone_lists_its_records_as_missing(tmp_path: Path) -> None:
    roots = db.simple_tree(patients=1, images=2)
    db.write_medium(tmp_path / "m", roots, files=False)
    m = open_medium(tmp_path / "m")
    assert m.source == "dicomdir"
    assert m.to_dict()["patients"] == expected_tree(roots, lambda r: None)
    assert [p.code for p in m.problems] == ["missing-file"] * 2


def test_inactive_records_hidden_and_their_files_unreferenced(tmp_path: Path) -> None:
    keep = db.image(("PA1", "IM1"), number="1")
    dead = db.image(("PA1", "IM2"), number="2", in_use=False)
    roots = [db.patient("PID1", "A^B", db.study(db.series(keep, dead)))]
    db.write_medium(tmp_path / "m", roots)
    m = open_medium(tmp_path / "m")
    assert [i.path for i in m.instances() if i.referenced] == ["PA1/IM1"]
    assert [(i.path, i.referenced) for i in m.instances() if not i.referenced] == [
        ("PA1/IM2", False)]
    assert _codes(m) == [("warning", "unreferenced-file", "PA1/IM2")]


def test_non_conformant_file_ids_resolved_with_warning(tmp_path: Path) -> None:
    roots = [db.patient("PID1", "A^B", db.study(db.series(
        db.image(("pa1", "im1"), number="1"),
        db.image(("IMAGES", "IMAGE0002.DCM"), number="2"),
        db.image("PA1/IM3", number="3"))))]
    db.write_medium(tmp_path / "m", roots)
    m = open_medium(tmp_path / "m")
    assert [i.path for i in m.instances()] == ["pa1/im1", "IMAGES/IMAGE0002.DCM", "PA1/IM3"]
    assert _codes(m) == [("warning", "bad-file-id", "pa1/im1"),
                         ("warning", "bad-file-id", "IMAGES/IMAGE0002.DCM")]
    assert "lowercase" in m.problems[0].message
    assert "longer than 8" in m.problems[1].message


# -- scratched disc -----------------------------------------------------------------------------


def test_read_error_retried_then_reported(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m", patients=1)
    extra = loose_files(b.root, {"EXTRA/IM1": {}, "EXTRA/IM2": {}})
    fs = FaultFS(DirFS(b.root), bad_files={"EXTRA/IM1"})
    m = read_medium(fs)
    assert fs.attempts["EXTRA/IM1"] == 2  # tried, retried once, then reported
    assert [(p.severity, p.code, p.path) for p in m.problems] == [
        ("error", "read-error", "EXTRA/IM1"), ("warning", "unreferenced-file", "EXTRA/IM2")]
    assert "EIO" in m.problems[0].message
    assert [i.path for i in m.instances() if not i.referenced] == ["EXTRA/IM2"]
    assert extra


def test_transient_read_error_cured_by_retry(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m", patients=1)
    loose_files(b.root, {"EXTRA/IM1": {}})
    fs = FaultFS(DirFS(b.root), bad_files={"EXTRA/IM1"}, heal_after=1, fail_on_read=True)
    m = read_medium(fs)
    assert fs.attempts["EXTRA/IM1"] == 2
    assert _codes(m) == [("warning", "unreferenced-file", "EXTRA/IM1")]


def test_unreadable_folder_and_dicomdir(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m", patients=2)
    fs = FaultFS(DirFS(b.root), bad_dirs={"PA2"})
    m = read_medium(fs)
    assert fs.attempts["PA2"] == 2
    pa2 = [r for r in leaves(b.roots) if r.file_id[0] == "PA2"]  # type: ignore[index]
    assert m.to_dict()["patients"] == expected_tree(
        b.roots, lambda r: None if r in pa2 else "/".join(r.file_id))  # type: ignore[arg-type]
    assert _codes(m)[0] == ("error", "read-error", "PA2")
    assert [c for _s, c, _p in _codes(m)[1:]] == ["missing-file"] * len(pa2)
    # a DICOMDIR that cannot be read: scanned instead
    fs = FaultFS(DirFS(b.root), bad_files={"DICOMDIR"})
    m = read_medium(fs)
    assert m.source == "scan"
    assert _codes(m) == [("error", "read-error", "DICOMDIR"), ("info", "no-dicomdir", None)]
    assert len(list(m.instances())) == len(leaves(b.roots))


# -- scan fallback --------------------------------------------------------------------------------


def test_scan_exact_tree_sorted_by_path(tmp_path: Path) -> None:
    root = tmp_path / "m"
    files = loose_files(root, {
        "z/last": {"PatientID": "P2", "PatientName": "Zed^Z"},
        "a b/odd name.dcm": {"PatientID": "P1", "PatientName": "Ann^A"},
        "a b/ünïcode": {"PatientID": "P1", "PatientName": "Ann^A"},
        "deep/1/2/3/4/5/6/7/8/9/10/IM": {"PatientID": "P1", "PatientName": "Ann^A"},
        "IM0": {"PatientID": "P3", "PatientName": None},
    })
    payloads(root)
    os.symlink(root, root / "z" / "LOOP")  # a symlink loop back to the root
    os.symlink(root / "z", root / "ALIAS")  # a second way into a folder
    m = open_medium(root)
    assert m.source == "scan"
    assert m.to_dict()["patients"] == header_tree(files)
    assert _codes(m) == [("warning", "no-dicomdir", None)]


def test_scan_without_preamble_and_damaged_files(tmp_path: Path) -> None:
    root = tmp_path / "m"
    files = loose_files(root, {"A/IM1": {}})
    ds = make_dataset()
    write_instance(root / "A" / "RAW", ds)
    raw = (root / "A" / "RAW").read_bytes()
    (root / "A" / "RAW").write_bytes(raw[132:][raw[132:].index(b"\x08\x00"):])  # no preamble/meta
    good = (root / "A" / "IM1").read_bytes()
    (root / "A" / "TRUNC").write_bytes(good[:200])  # DICM, then cut inside the meta group
    (root / "A" / "FAKE").write_bytes(bytes(128) + b"DICM" + b"\xff" * 64)
    m = open_medium(root)
    assert [i.path for i in m.instances()] == ["A/IM1", "A/RAW"]
    raw_inst = next(i for i in m.instances() if i.path == "A/RAW")
    assert raw_inst.sop_instance_uid == ds.SOPInstanceUID
    assert _codes(m) == [("warning", "not-dicom", "A/FAKE"), ("error", "truncated-file", "A/TRUNC"),
                         ("warning", "no-dicomdir", None)]
    assert files


def test_names_in_other_charsets_and_a_bad_charset(tmp_path: Path) -> None:
    root = tmp_path / "m"
    loose_files(root, {
        "A/LATIN1": {"SpecificCharacterSet": "ISO_IR 100", "PatientName": "Müller^Hans",
                     "PatientID": "P1"},
        "A/UTF8": {"SpecificCharacterSet": "ISO_IR 192", "PatientName": "Ωμέγα^Ἄλφα",
                   "PatientID": "P2"},
        "A/BAD": {"SpecificCharacterSet": "ISO_IR 999", "PatientID": "P3"},
    })
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = open_medium(root)
    names = {p.patient_id: p.patient_name for p in m.patients}
    assert names["P1"] == "Müller^Hans" and names["P2"] == "Ωμέγα^Ἄλφα"
    assert ("warning", "bad-charset", "A/BAD") in _codes(m)


# -- fuzz -----------------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hst  # noqa: E402


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=hst.lists(hst.tuples(hst.integers(0, 10**6), hst.integers(0, 255)), max_size=12),
       cut=hst.one_of(hst.none(), hst.integers(0, 10**6)))
def test_mutated_dicomdir_never_crashes(tmp_path_factory: pytest.TempPathFactory,
                                        flips: list[tuple[int, int]], cut: int | None) -> None:
    """Any corruption of the DICOMDIR gives a Medium (or UnreadableMedium), nothing else,
    and nothing outside the root is touched (the hostile sentinel stays unread)."""
    from app.core.errors import UnreadableMedium

    base = tmp_path_factory.mktemp("fuzz")
    b = hostile(base / "m")
    data = bytearray((b.root / "DICOMDIR").read_bytes())
    for pos, value in flips:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    (b.root / "DICOMDIR").write_bytes(bytes(data))
    spy = OpenSpy()
    with pytest.MonkeyPatch.context() as mp:
        spy.install(mp)
        try:
            m = open_medium(b.root)
        except UnreadableMedium:
            m = None
    assert spy.touched_under(b.notes["outside"]) == []
    if m is None:
        return
    for inst in m.instances():
        assert inst.path is None or not inst.path.startswith("..")
    assert all(p.severity in ("error", "warning", "info") for p in m.problems)


def test_every_file_id_refused_is_reported_even_when_the_dicomdir_is_unused(
        tmp_path: Path) -> None:
    """QA-9: DICOM/DICOMDIR references ``..\\PA1\\...`` only. The files are listed by scan, and
    each refused File ID is an ``outside-root`` error naming it; the summary says "refused"."""
    roots = db.simple_tree(patients=1, images=2)
    for rec in leaves(roots):
        rec.file_id = ("..",) + rec.file_id  # type: ignore[operator]
    (tmp_path / "m" / "DICOM").mkdir(parents=True)
    db.write_medium(tmp_path / "m", roots, name="DICOM/DICOMDIR")
    m = open_medium(tmp_path / "m")
    assert m.source == "scan"
    assert len(list(m.instances())) == 2
    refused = [p for p in m.problems if p.code == "outside-root"]
    assert sorted(p.path for p in refused) == sorted(
        "../" + "/".join(r.file_id[1:]) for r in leaves(roots))  # type: ignore[index]
    assert all(p.severity == "error" and "'..'" in p.message for p in refused)
    summary = next(p for p in m.problems if p.code == "no-dicomdir" and p.path)
    assert summary.path == "DICOM/DICOMDIR"
    assert "refused" in summary.message and "none of which exists" not in summary.message


def test_refused_and_missing_file_ids_of_an_unused_dicomdir_both_counted(tmp_path: Path) -> None:
    roots = db.simple_tree(patients=1, images=2)
    lv = leaves(roots)
    lv[0].file_id = "C:\\PA1\\IM1"
    db.write_medium(tmp_path / "m", roots, files=False)
    loose_files(tmp_path / "m", {"OTHER/IM9": {}})
    m = open_medium(tmp_path / "m")
    assert m.source == "scan"
    assert [(p.severity, p.code, p.path) for p in m.problems][:1] == [
        ("error", "outside-root", "C:/PA1/IM1")]
    summary = next(p for p in m.problems if p.code == "no-dicomdir" and p.path)
    assert "1 File ID(s) refused, 1 not found" in summary.message


def _file_for(root: Path, fid: tuple[str, ...], **values: str) -> object:
    ds = make_dataset(**values)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    write_instance(root.joinpath(*fid), ds)
    return ds


def test_leaves_without_parent_records_are_placed_from_their_headers(tmp_path: Path) -> None:
    """IMAGE records at the root (their PATIENT/STUDY/SERIES records lost, as a damaged
    DICOMDIR leaves them: unnamed placeholder parents) are placed where their files' headers
    say, each under its own patient; the files of intact records are still not opened."""
    root = tmp_path / "m"
    good = db.simple_tree(patients=1, images=2)
    db.write_files(root, good)
    a = _file_for(root, ("LOST", "IMA"), PatientID="PIDA", PatientName="Alpha^A")
    b = _file_for(root, ("LOST", "IMB"), PatientID="PIDB", PatientName="Beta^B")
    orphans = [db.image(("LOST", "IMA"), sop_uid=str(a.SOPInstanceUID), number="7"),  # type: ignore[attr-defined]
               db.image(("LOST", "IMB"), sop_uid=str(b.SOPInstanceUID), number="8")]  # type: ignore[attr-defined]
    db.write_medium(root, orphans + good, files=False)  # before any PATIENT: no parent at all
    m = open_medium(root)
    assert m.source == "dicomdir"
    by_uid = {i.sop_instance_uid: (p, st, se, i) for p, st, se, i in m.walk()}
    for ds, path in ((a, "LOST/IMA"), (b, "LOST/IMB")):
        p, st, se, inst = by_uid[ds.SOPInstanceUID]  # type: ignore[attr-defined]
        assert (p.patient_id, p.patient_name) == (ds.PatientID, ds.PatientName)  # type: ignore[attr-defined]
        assert st.study_uid == ds.StudyInstanceUID and se.series_uid == ds.SeriesInstanceUID  # type: ignore[attr-defined]
        assert inst.path == path and inst.referenced and inst.dicomdir == "DICOMDIR"
    assert [p for p in m.to_dict()["patients"] if p["patient_id"] is None] == []
    assert [p for p in m.to_dict()["patients"] if p["patient_id"] == "PID001"] == expected_tree(good)
    recovered = [p.path for p in m.problems if p.code == "dicomdir-recovered" and
                 "placed from the file's header" in p.message]
    assert recovered == ["LOST/IMA", "LOST/IMB"]


@pytest.mark.parametrize("damage", ["truncated", "junk"])
def test_invalid_record_uid_never_listed(tmp_path: Path, damage: str) -> None:
    """QA-14: a SOP Instance UID cut short or carrying junk is replaced by the file's; when
    the file is missing too, the instance is listed without a UID (never a wrong one)."""
    root = tmp_path / "m"
    roots = db.simple_tree(patients=1, images=3)
    db.write_files(root, roots)
    lv = leaves(roots)
    real = [r.keys["ReferencedSOPInstanceUIDInFile"] for r in lv]
    # cut inside a component separator, or junk bytes after a cut (a damaged sector)
    bad = {"truncated": lambda u: u[:u.index(".", 12) + 1],
           "junk": lambda u: u[:17] + "g\x01n*M"}[damage]
    lv[0].keys["ReferencedSOPInstanceUIDInFile"] = bad(real[0])
    lv[1].keys["ReferencedSOPInstanceUIDInFile"] = bad(real[1])
    root.joinpath(*lv[1].file_id).unlink()  # type: ignore[misc]
    db.write_medium(root, roots, files=False)
    m = open_medium(root)
    uids = {i.path: i.sop_instance_uid for i in m.instances()}
    p0, p2 = "/".join(lv[0].file_id), "/".join(lv[2].file_id)  # type: ignore[arg-type]
    assert uids == {p0: real[0], None: None, p2: real[2]}
    assert all(i.referenced for i in m.instances())
    codes = [(p.code, p.path) for p in m.problems]
    assert ("missing-file", "/".join(lv[1].file_id)) in codes  # type: ignore[arg-type]
    assert ("dicomdir-recovered", p0) in codes
