"""check_medium: every referenced header read; record vs file; keys per profile; icons."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.jobs import Cancelled, CancelToken, Progress
from app.core.medium.check import check_medium, icon_defect
from app.core.medium.fs import DirFS
from app.core.medium.reader import open_medium, read_medium
from app.core.model import Icon
from tests import dicomdir_bytes as db
from tests.defect_media import FaultFS, conformant, leaves
from tests.media import dicomdirtests_root, make_dataset, write_instance


def _codes(problems: list) -> list[tuple[str, str, str | None]]:  # type: ignore[type-arg]
    return [(p.severity, p.code, p.path) for p in problems]


def test_conformant_medium_has_no_problem(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m")
    m = open_medium(b.root)
    assert check_medium(m) == []
    assert check_medium(m, "STD-GEN-CD") == []


def test_pydicom_sample_is_conformant() -> None:
    m = open_medium(dicomdirtests_root())
    assert check_medium(m) == []


def test_unknown_profile_is_value_error(tmp_path: Path) -> None:
    m = open_medium(conformant(tmp_path / "m").root)
    with pytest.raises(ValueError, match="NOPE"):
        check_medium(m, "NOPE")


def test_profile_keys(tmp_path: Path) -> None:
    """STD-GEN-DVD-JPEG requires Rows and Columns on IMAGE records (STANDARDS.md §4, H.3-2)."""
    b = conformant(tmp_path / "m", patients=1)
    m = open_medium(b.root)
    probs = check_medium(m, "STD-GEN-DVD-JPEG")
    paths = ["/".join(r.file_id) for r in leaves(b.roots)]  # type: ignore[arg-type]
    assert _codes(probs) == [("warning", "missing-key", p) for p in paths]
    assert all("Rows, Columns" in p.message and "STD-GEN-DVD-JPEG" in p.message for p in probs)
    # with the keys present the profile is satisfied
    roots = [db.patient("PID1", "A^B", db.study(db.series(
        db.image(("IM1",), Rows=8, Columns=8))))]
    db.write_medium(tmp_path / "ok", roots)
    assert check_medium(open_medium(tmp_path / "ok"), "STD-GEN-DVD-JPEG") == []


def test_icon_required_by_xabc(tmp_path: Path) -> None:
    roots = [db.patient("PID1", "A^B", db.study(db.series(
        db.image(("IM1",), Rows=8, Columns=8, ImageType=["ORIGINAL", "PRIMARY"]),
        modality="XA")))]
    db.write_medium(tmp_path / "m", roots)
    probs = check_medium(open_medium(tmp_path / "m"), "STD-XABC-CD")
    assert any(p.code == "missing-key" and "Icon" in p.message for p in probs)


def test_record_file_mismatch_and_file_wins(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m", patients=1)
    rec = leaves(b.roots)[0]
    path = b.root.joinpath(*rec.file_id)  # type: ignore[misc]
    other_study = db.uid()
    ds = make_dataset(PatientID="PID001", PatientName="Test^Patient",
                      StudyInstanceUID=other_study, InstanceNumber="7")
    write_instance(path, ds)  # a different file behind the record
    m = open_medium(b.root)
    probs = check_medium(m)
    rel = "/".join(rec.file_id)  # type: ignore[arg-type]
    assert _codes(probs) == [("warning", "record-file-mismatch", rel)] * 3
    msgs = " ".join(p.message for p in probs)
    assert "SOP Instance UID" in msgs and "Study Instance UID" in msgs
    assert "Series Instance UID" in msgs
    # the file wins: the instance now carries the file's UIDs and sits in the file's study
    moved = next(i for i in m.instances() if i.path == rel)
    assert moved.sop_instance_uid == ds.SOPInstanceUID
    assert moved.instance_number == "7"
    study = next(st for p in m.patients for st in p.studies if moved in list(st.instances()))
    assert study.study_uid == other_study
    assert sum(1 for _ in m.instances()) == len(leaves(b.roots))


def test_transfer_syntax_mismatch(tmp_path: Path) -> None:
    roots = [db.patient("PID1", "A^B", db.study(db.series(
        db.image(("IM1",), ts="1.2.840.10008.1.2"))))]
    db.write_medium(tmp_path / "m", roots)
    m = open_medium(tmp_path / "m")
    probs = check_medium(m)
    assert _codes(probs) == [("warning", "record-file-mismatch", "IM1")]
    assert "Transfer Syntax" in probs[0].message
    assert next(m.instances()).transfer_syntax_uid == "1.2.840.10008.1.2.1"


def test_not_dicom_truncated_and_read_error(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m", patients=1)
    lv = leaves(b.roots)
    p0, p1, p2 = ("/".join(r.file_id) for r in lv[:3])  # type: ignore[arg-type]
    (b.root / p0).write_bytes(b"this is a text file, not an image" * 10)
    data = (b.root / p1).read_bytes()
    (b.root / p1).write_bytes(data[:300])  # cut inside the header
    fs = FaultFS(DirFS(b.root), bad_files={p2})
    m = read_medium(fs)
    assert m.problems == []  # ls opens none of them
    probs = check_medium(m)
    assert _codes(probs) == [("error", "not-dicom", p0), ("error", "truncated-file", p1),
                             ("error", "read-error", p2)]
    assert fs.attempts[p2] == 2


def test_problems_of_the_reader_come_first_and_once(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m", patients=1)
    lv = leaves(b.roots)
    (b.root.joinpath(*lv[0].file_id)).unlink()  # type: ignore[misc]
    (b.root.joinpath(*lv[1].file_id)).write_bytes(b"")  # type: ignore[misc]
    m = open_medium(b.root)
    probs = check_medium(m)
    assert _codes(probs) == _codes(m.problems)
    assert [p.code for p in probs] == ["missing-file", "empty-file"]


def test_bad_icons(tmp_path: Path) -> None:
    roots = [db.patient("PID1", "A^B", db.study(db.series(
        db.image(("IM1",), icon=db.icon(8, 8)),
        db.image(("IM2",), icon=db.icon(8, 8, pixels=b"\x00" * 10)),
        db.image(("IM3",), icon=db.icon(8, 8, bits=16)),
        icon=db.icon(8, 8, photometric="RGB"))))]
    db.write_medium(tmp_path / "m", roots)
    m = open_medium(tmp_path / "m")
    probs = [p for p in check_medium(m) if p.code == "bad-icon"]
    assert {p.path for p in probs} == {"IM2", "IM3", "DICOMDIR"}  # IM1's icon is fine
    assert all(p.severity == "warning" for p in probs)
    assert any("SERIES" in p.message or "RGB" in p.message for p in probs
               if p.path == "DICOMDIR")


def test_icon_defect_structural() -> None:
    ok = Icon(64, 64, "MONOCHROME2", 8, 8, bytes(64 * 64))
    assert icon_defect(ok) is None
    assert icon_defect(Icon(64, 64, "RGB", 8, 8, bytes(64 * 64 * 3), samples_per_pixel=3))
    assert icon_defect(Icon(64, 64, "MONOCHROME2", 16, 12, bytes(64 * 64 * 2)))
    assert icon_defect(Icon(64, 64, "MONOCHROME2", 8, 8, bytes(10)))
    assert icon_defect(Icon(8, 8, "MONOCHROME1", 1, 1, bytes(8))) is None


def test_progress_and_cancel(tmp_path: Path) -> None:
    m = open_medium(conformant(tmp_path / "m").root)
    seen: list[Progress] = []
    check_medium(m, progress=seen.append)
    assert seen and all(p.phase == "check" for p in seen)
    assert seen[-1].done_files == seen[-1].total_files == 8
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        check_medium(m, cancel=token)


def test_missing_base_keys_reported_once(tmp_path: Path) -> None:
    """The parser reports missing base keys; check adds the profile's, never a duplicate."""
    roots = [db.patient("PID1", "A^B", db.study(db.series(
        db.image(("IM1",), number=None), number=None), StudyID=None))]
    db.write_medium(tmp_path / "m", roots)
    m = open_medium(tmp_path / "m")
    base = [p for p in m.problems if p.code == "missing-key"]
    assert len(base) == 3  # STUDY StudyID, SERIES SeriesNumber, IMAGE InstanceNumber
    probs = check_medium(m, "STD-GEN-DVD-JPEG")
    keys = [p for p in probs if p.code == "missing-key"]
    assert keys[:3] == base
    assert len(keys) == 4 and "Rows, Columns" in keys[3].message


def test_pixel_data_cut_short(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m", patients=1)
    rec = leaves(b.roots)[0]
    path = b.root.joinpath(*rec.file_id)  # type: ignore[misc]
    data = path.read_bytes()
    path.write_bytes(data[:-40])  # the last pixels are missing
    m = open_medium(b.root)
    assert m.problems == []  # ls does not open it
    rel = "/".join(rec.file_id)  # type: ignore[arg-type]
    assert _codes(check_medium(m)) == [("error", "truncated-file", rel)]
    # an unreferenced copy is read by ls itself, and reported there
    (b.root / "EXTRA").mkdir()
    write_instance(b.root / "EXTRA" / "IM1", make_dataset())
    extra = (b.root / "EXTRA" / "IM1").read_bytes()
    (b.root / "EXTRA" / "IM1").write_bytes(extra[:-40])
    m = open_medium(b.root)
    assert _codes(m.problems) == [("warning", "unreferenced-file", "EXTRA/IM1"),
                                  ("error", "truncated-file", "EXTRA/IM1")]
