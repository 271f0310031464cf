"""open_medium on conformant media, name variants, DICOMDIR discovery and several file-sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.core.errors import UnreadableMedium
from app.core.jobs import Cancelled, CancelToken, Progress
from app.core.medium.reader import open_medium
from tests import dicomdir_bytes as db
from tests.defect_media import (
    conformant,
    expected_tree,
    leaves,
    payloads,
    renamed_on_disc,
)
from tests.media import dicomdirtests_root


def test_conformant_tree_exact(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m")
    m = open_medium(b.root)
    d = m.to_dict()
    assert d["root"] == str(b.root.resolve())
    assert d["source"] == "dicomdir"
    assert d["dicomdirs"] == ["DICOMDIR"]
    assert d["patients"] == expected_tree(b.roots)
    assert d["problems"] == []
    # every listed instance opens through medium.fs
    for inst in m.instances():
        assert inst.path is not None and inst.size and inst.size > 0
        with m.fs.open(inst.path) as fp:  # type: ignore[union-attr]
            assert fp.read(132)[128:] == b"DICM"


def test_dicomdir_file_and_folder_agree(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m")
    a = open_medium(b.root).to_dict()
    f = open_medium(b.root / "DICOMDIR").to_dict()
    assert a == f


@pytest.mark.parametrize("style", ["lower", "iso", "version", "dot", "dcm"])
def test_names_resolved_case_and_suffix_insensitively(tmp_path: Path, style: str) -> None:
    b = renamed_on_disc(tmp_path / "m", style)
    paths = b.notes["paths"]
    m = open_medium(b.root)
    assert m.to_dict()["patients"] == expected_tree(b.roots, lambda r: paths[id(r)])
    assert m.problems == []


@pytest.mark.parametrize("name", ["dicomdir", "DICOMDIR.", "DICOMDIR;1", "DicomDir.;1"])
def test_dicomdir_name_variants(tmp_path: Path, name: str) -> None:
    b = conformant(tmp_path / "m", name=name)
    m = open_medium(b.root)
    assert m.dicomdirs == [name]
    assert m.to_dict()["patients"] == expected_tree(b.roots)


def test_renamed_dicomdir_found_by_sop_class(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m", name="DIRFILE")
    payloads(b.root)
    m = open_medium(b.root)
    assert m.source == "dicomdir" and m.dicomdirs == ["DIRFILE"]
    assert m.to_dict()["patients"] == expected_tree(b.roots)
    assert m.problems == []


@pytest.mark.parametrize("where", ["DICOM", "DISC/DICOM"])
def test_dicomdir_one_or_two_levels_down(tmp_path: Path, where: str) -> None:
    root = tmp_path / "m"
    b = conformant(root / where)
    payloads(root)
    m = open_medium(root)
    assert m.dicomdirs == [f"{where}/DICOMDIR"]
    assert m.to_dict()["patients"] == expected_tree(b.roots, lambda r: f"{where}/"
                                                    + "/".join(r.file_id))  # type: ignore[arg-type]
    assert m.problems == []


def test_three_levels_down_is_not_searched(tmp_path: Path) -> None:
    root = tmp_path / "m"
    b = conformant(root / "A" / "B" / "C")
    m = open_medium(root)
    assert m.source == "scan"  # the files are still found, by scanning
    assert sum(1 for _ in m.instances()) == len(leaves(b.roots))


def test_several_filesets_merged_without_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "m"
    # Two file-sets of the same patient and study, one series each; the second DICOMDIR also
    # lists one instance of the first (same SOP Instance UID, its own copy of the file).
    st_uid = db.uid()
    shared = db.image(("SE1", "IM1"), number="1")
    tree_a = [db.patient("PID1", "Same^Patient", db.study(
        db.series(shared, db.image(("SE1", "IM2"), number="2"), number="1"), uid_=st_uid))]
    dup = db.image(("SE9", "IM1"), number="1",
                   sop_uid=shared.keys["ReferencedSOPInstanceUIDInFile"])
    tree_b = [db.patient("PID1", "Same^Patient", db.study(
        db.series(db.image(("SE2", "IM1"), number="1"), number="2"),
        db.series(dup, number="9"), uid_=st_uid))]
    db.write_medium(root / "A", tree_a)
    db.write_medium(root / "B", tree_b)
    m = open_medium(root)
    assert m.dicomdirs == ["A/DICOMDIR", "B/DICOMDIR"]
    d = m.to_dict()
    assert len(d["patients"]) == 1 and len(d["patients"][0]["studies"]) == 1
    series = d["patients"][0]["studies"][0]["series"]
    assert [s["series_number"] for s in series] == ["1", "2"]  # series 9 held only the duplicate
    uids = [i["sop_instance_uid"] for s in series for i in s["instances"]]
    assert len(uids) == len(set(uids)) == 3
    assert [(p.severity, p.code, p.path) for p in m.problems] == [
        ("warning", "duplicate-instance", "B/SE9/IM1")]


def test_same_file_listed_by_two_dicomdirs_is_info(tmp_path: Path) -> None:
    root = tmp_path / "m"
    b = conformant(root, patients=1)
    inner = [db.patient("PID001", "Test^Patient", db.study(db.series(*(
        db.image(tuple(r.file_id[1:]), number=r.keys["InstanceNumber"],  # type: ignore[index]
                 sop_uid=r.keys["ReferencedSOPInstanceUIDInFile"])
        for r in leaves(b.roots) if r.file_id[0] == "PA1"))))]  # type: ignore[index]
    (root / "PA1" / "DICOMDIR").write_bytes(db.encode(inner))
    m = open_medium(root)
    assert m.dicomdirs == ["DICOMDIR", "PA1/DICOMDIR"]
    assert m.to_dict()["patients"] == expected_tree(b.roots)
    assert {p.code for p in m.problems} == {"duplicate-instance"}
    assert {p.severity for p in m.problems} == {"info"}


def test_payloads_skipped_silently(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m")
    payloads(b.root)
    m = open_medium(b.root)
    assert m.to_dict()["patients"] == expected_tree(b.roots)
    assert m.problems == []


def test_unreadable_medium(tmp_path: Path) -> None:
    with pytest.raises(UnreadableMedium, match="no such"):
        open_medium(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnreadableMedium, match="no DICOM"):
        open_medium(tmp_path / "empty")
    payloads(tmp_path / "web")
    with pytest.raises(UnreadableMedium):
        open_medium(tmp_path / "web")
    with pytest.raises(UnreadableMedium):
        open_medium(tmp_path / "web" / "README.TXT")


def test_progress_and_cancel(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m")
    seen: list[Progress] = []
    open_medium(b.root, progress=seen.append)
    phases = [p.phase for p in seen]
    assert phases[0] == "dicomdir" and phases[-1] == "done"
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        open_medium(b.root, cancel=token)


def test_pydicom_sample_medium() -> None:
    root = dicomdirtests_root()
    m = open_medium(root)
    assert m.source == "dicomdir"
    assert m.dicomdirs == ["DICOMDIR", "TINY_ALPHA/DICOMDIR"]
    assert m.problems == []
    ids = [(p.patient_id, p.patient_name) for p in m.patients]
    assert ids == [("77654033", "Doe^Archibald"), ("98890234", "Doe^Peter"),
                   ("12345678", "Citizen^Jan")]
    assert sum(1 for _ in m.instances()) == 81
    assert all(i.path is not None and i.referenced for i in m.instances())


@pytest.mark.parametrize("variant", ["DICOMDIR-bigEnd", "DICOMDIR-implicit", "DICOMDIR-nooffset",
                                     "DICOMDIR-reordered", "DICOMDIR-nopatient"])
def test_pydicom_dicomdir_variants(tmp_path: Path, variant: str) -> None:
    """Each variant, opened as the medium's DICOMDIR, lists the same 31 instances."""
    src = dicomdirtests_root()
    root = tmp_path / "m"
    shutil.copytree(src, root, ignore=shutil.ignore_patterns("DICOMDIR*", "TINY_ALPHA"))
    shutil.copy(src / variant, root / "DICOMDIR")
    m = open_medium(root)
    ref = open_medium(src / "DICOMDIR")
    assert m.dicomdirs == ["DICOMDIR"]
    assert {i.sop_instance_uid: i.path for i in m.instances()} == {
        i.sop_instance_uid: i.path for i in ref.instances() if not i.path.startswith("TINY")}  # type: ignore[union-attr]
    assert all(i.referenced for i in m.instances())
    assert not [p for p in m.problems if p.code in ("missing-file", "unreferenced-file")]


def test_empty_dicomdir_falls_back_to_scan(tmp_path: Path) -> None:
    src = dicomdirtests_root()
    root = tmp_path / "m"
    shutil.copytree(src, root, ignore=shutil.ignore_patterns("DICOMDIR*", "TINY_ALPHA"))
    shutil.copy(src / "DICOMDIR-empty.dcm", root / "DICOMDIR")
    m = open_medium(root)
    assert m.source == "scan" and m.dicomdirs == []
    assert sum(1 for _ in m.instances()) == 31
    assert [(p.code, p.severity) for p in m.problems] == [("no-dicomdir", "warning"),
                                                          ("no-dicomdir", "info")]


def test_garbage_collector_restored(tmp_path: Path) -> None:
    import gc

    b = conformant(tmp_path / "m")
    assert gc.isenabled()
    open_medium(b.root)
    assert gc.isenabled()
    with pytest.raises(UnreadableMedium):
        open_medium(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnreadableMedium):
        open_medium(tmp_path / "empty")
    assert gc.isenabled()
    gc.disable()
    try:
        open_medium(b.root)
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


def test_cancel_mid_scan_leaves_no_thread(tmp_path: Path) -> None:
    import threading

    from tests.defect_media import loose_files

    loose_files(tmp_path / "m", {f"S{i % 3}/IM{i}": {} for i in range(40)})
    token = CancelToken()
    seen: list[Progress] = []

    def progress(p: Progress) -> None:
        seen.append(p)
        if p.phase == "scan":
            token.cancel()

    before = set(threading.enumerate())
    with pytest.raises(Cancelled):
        open_medium(tmp_path / "m", progress=progress, cancel=token)
    assert [p.phase for p in seen] == ["dicomdir", "scan"]
    assert not [t for t in threading.enumerate() if t not in before and t.is_alive()]
