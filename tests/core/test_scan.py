"""Scanning helpers: loop-safe walk, DICOM pre-filter, header reads, patient/study/series merge."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.core.medium.fs import DirFS
from app.core.medium.paths import Listings
from app.core.medium.scan import (
    MAX_DEPTH,
    TreeBuilder,
    is_dicomdir_name,
    plausible_head,
    read_headers,
    walk_files,
)
from app.core.model import Instance, Patient, Series, Study
from tests.defect_media import FaultFS, OpenSpy, loose_files, payloads
from tests.media import make_dataset, write_instance


def test_walk_sorted_loop_safe_and_confined(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "SECRET").write_bytes(b"x" * 200)
    root = tmp_path / "m"
    for rel in ("b/2", "a/1", "a/sub/3", "c d/ü"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"data")
    os.symlink(root, root / "a" / "LOOP")  # back to the root
    os.symlink(root / "a", root / "a" / "sub" / "UP")  # back to a parent
    os.symlink(root / "b", root / "B2")  # a second way into b: listed once
    os.symlink(outside, root / "OUT")
    os.symlink(outside / "SECRET", root / "b" / "SECRETLINK")
    spy = OpenSpy().install(monkeypatch)
    problems: list = []  # type: ignore[type-arg]
    files = walk_files(Listings(DirFS(root)), "", problems=problems)
    assert [f.path for f in files] == ["a/1", "a/sub/3", "b/2", "c d/ü"]  # each file once
    assert [(p.code, p.path) for p in problems] == [("outside-root", "OUT"),
                                                    ("outside-root", "b/SECRETLINK")]
    assert spy.touched_under(outside) == []


def test_walk_depth_cap(tmp_path: Path) -> None:
    root = tmp_path / "m"
    deep = root.joinpath(*["d"] * (MAX_DEPTH + 3))
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"x")
    (root / "top").write_bytes(b"x")
    problems: list = []  # type: ignore[type-arg]
    files = walk_files(Listings(DirFS(root)), "", problems=problems)
    assert [f.path for f in files] == ["top"]
    assert [p.code for p in problems] == ["read-error"]


def test_walk_unreadable_folder(tmp_path: Path) -> None:
    root = tmp_path / "m"
    for rel in ("ok/1", "bad/2"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    errors: list[str] = []
    fs = FaultFS(DirFS(root), bad_dirs={"bad"})
    files = walk_files(Listings(fs, on_error=lambda rel, exc: errors.append(rel)), "",
                       problems=[])
    assert [f.path for f in files] == ["ok/1"]
    assert errors == ["bad"] and fs.attempts["bad"] == 2


def test_plausible_head() -> None:
    assert plausible_head(bytes(128) + b"DICM" + b"\x02\x00")
    assert plausible_head(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100")  # no preamble, explicit LE
    assert plausible_head(b"\x08\x00\x16\x00\x1a\x00\x00\x001.2.840")  # implicit LE
    assert not plausible_head(b"MZ\x90\x00" + bytes(200))
    assert not plausible_head(b"<html>" + bytes(200))
    assert not plausible_head(b"\x08\x00")


def test_is_dicomdir_name() -> None:
    for n in ("DICOMDIR", "dicomdir", "DICOMDIR.", "DICOMDIR;1", "DicomDir.;1"):
        assert is_dicomdir_name(n)
    for n in ("DICOMDIR.BAK", "DICOMDIR-old", "DICOMDI", "XDICOMDIR"):
        assert not is_dicomdir_name(n)


def test_read_headers(tmp_path: Path) -> None:
    root = tmp_path / "m"
    loose_files(root, {"IM1": {"PatientID": "P1"}})
    payloads(root)
    (root / "EMPTY").write_bytes(b"")
    files = walk_files(Listings(DirFS(root)), "", problems=[])
    results = read_headers(DirFS(root), files)
    got = {r.ref.path: r for r in results}
    assert got["IM1"].info is not None and got["IM1"].info.values["PatientID"] == "P1"
    assert got["IM1"].info.transfer_syntax == "1.2.840.10008.1.2.1"
    for other in ("README.TXT", "INDEX.HTM", "VIEWER/VIEWER.EXE", "EMPTY", "VIEWER/TINY"):
        assert got[other].info is None and got[other].problem is None


def test_read_headers_dicomdir_recognised(tmp_path: Path) -> None:
    from tests import dicomdir_bytes as db

    db.write_medium(tmp_path, db.simple_tree(), name="RENAMED", files=False)
    files = walk_files(Listings(DirFS(tmp_path)), "", problems=[])
    (r,) = read_headers(DirFS(tmp_path), files)
    assert r.info is not None and r.info.is_dicomdir


def test_tree_builder_merges_by_keys() -> None:
    b = TreeBuilder()
    p1 = b.patient(Patient("ID1", "Doe^John"))
    assert b.patient(Patient("ID1", "DOE^JOHN", birth_date="19600101")) is p1  # name case
    assert p1.birth_date == "19600101"  # empty fields filled from later sources
    assert b.patient(Patient("ID1", "Roe^Jane")) is not p1  # same ID, other name: distinct
    st = b.study(p1, Study("1.2.3", study_date="20240101"))
    assert b.study(p1, Study("1.2.3", study_date="19990101")) is st
    assert st.study_date == "20240101"  # the first source wins where both have a value
    se = b.series(st, Series("1.2.3.4", modality="CT"))
    assert b.series(st, Series("1.2.3.4")) is se
    # records without UIDs are never guessed together ...
    assert b.study(p1, Study(None)) is not b.study(p1, Study(None))
    # ... but loose (scanned) files without one share an entry
    assert b.study(p1, Study(None), loose=True) is b.study(p1, Study(None), loose=True)
    se.instances.append(Instance("9"))
    b.prune()
    assert [len(p.studies) for p in b.patients] == [1]


def test_tree_builder_from_existing_tree_reuses_objects() -> None:
    pat = Patient("ID1", "A^B", studies=[Study("S1", series=[Series("E1",
                                                                    instances=[Instance("1")])])])
    b = TreeBuilder.from_patients([pat])
    se = b.place({"PatientID": "ID1", "PatientName": "A^B", "StudyInstanceUID": "S1",
                  "SeriesInstanceUID": "E1"})
    assert se is pat.studies[0].series[0]
    other = b.place({"PatientID": "ID1", "PatientName": "A^B", "StudyInstanceUID": "S2",
                     "SeriesInstanceUID": "E2", "Modality": "MR"})
    assert other.modality == "MR" and len(pat.studies) == 2


def test_scan_uses_headers_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan reads headers, not pixel data: big files cost no more than small ones (through
    DirFS's bare descriptors, and through any other MediumFS's file objects)."""
    from app.core.medium.reader import read_medium

    root = tmp_path / "m"
    write_instance(root / "BIG", make_dataset(rows=512, cols=512))
    big = (root / "BIG").stat().st_size
    reads: list[int] = []
    real_read, real_pread = os.read, os.pread

    def counting_read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        reads.append(len(data))
        return data

    def counting_pread(fd: int, n: int, off: int) -> bytes:
        data = real_pread(fd, n, off)
        reads.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counting_read)
    monkeypatch.setattr(os, "pread", counting_pread)
    m = read_medium(DirFS(root))
    assert [i.path for i in m.instances()] == ["BIG"]
    assert 0 < sum(reads) < 64 * 1024 < big
    monkeypatch.undo()

    reads.clear()

    inner = DirFS(root)

    class Counting:  # a MediumFS with file objects only
        label = inner.label
        listdir, size, local_path = inner.listdir, inner.size, inner.local_path

        def open(self, rel: str):  # type: ignore[no-untyped-def]
            fp = inner.open(rel)
            real = fp.read

            class Wrapped:
                def read(self, n: int = -1) -> bytes:
                    data = real(n)
                    reads.append(len(data))
                    return data

                def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
                    return getattr(fp, name)

                def __enter__(self):  # type: ignore[no-untyped-def]
                    return self

                def __exit__(self, *exc: object) -> None:
                    fp.close()

            return Wrapped()

    m = read_medium(Counting())  # type: ignore[arg-type]
    assert [i.path for i in m.instances()] == ["BIG"]
    assert 0 < sum(reads) < 64 * 1024 < big


def test_head_file_reads_like_a_file(tmp_path: Path) -> None:
    """The scan's pre-read file view: reads across the pre-read head, seeks, EOF."""
    from app.core.medium.scan import _HeadFile

    data = bytes(range(256)) * 100
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        hf = _HeadFile(fd, os.read(fd, 1000))
        assert hf.read(10) == data[:10] and hf.tell() == 10
        assert hf.read(2000) == data[10:2010]
        assert hf.read(100000) == data[2010:] and hf.read(5) == b""
        assert hf.seek(0, 2) == len(data) and hf.seek(5) == 5
        assert hf.read() == data[5:]
        assert hf.seek(-3, 1) == len(data) - 3 and hf.read(10) == data[-3:]
    finally:
        os.close(fd)


def test_renamed_dicomdirs_depth_and_one_per_folder() -> None:
    from app.core.medium.fs import Entry
    from app.core.medium.scan import FileRef, HeaderInfo, HeaderResult, renamed_dicomdirs

    def r(path: str, dd: bool) -> HeaderResult:
        return HeaderResult(FileRef(path, Entry(path.rsplit("/", 1)[-1], False, 999)),
                            HeaderInfo({}, None, dd))

    results = [r("A/B/DIR2", True), r("A/B/C/DIR3", True), r("A/DIRX", True), r("A/DIRA", True),
               r("ROOTDIR", True), r("IM1", False)]
    assert renamed_dicomdirs(results) == ["ROOTDIR", "A/DIRA", "A/B/DIR2"]


def test_scan_finds_an_image_below_a_path_longer_than_path_max(tmp_path: Path) -> None:
    """QA-12: nothing below a very long path is dropped silently."""
    from app.core.medium.reader import open_medium
    from tests.media import make_dataset, write_instance

    ds = make_dataset(PatientID="DEEP")
    write_instance(tmp_path / "x.dcm", ds)
    data = (tmp_path / "x.dcm").read_bytes()
    (tmp_path / "x.dcm").unlink()
    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(22):
        os.mkdir("E" * 220, dir_fd=fd)
        nfd = os.open("E" * 220, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    w = os.open("IMG", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(w, data)
    os.close(w)
    os.close(fd)
    m = open_medium(tmp_path)
    [inst] = list(m.instances())
    assert inst.sop_instance_uid == str(ds.SOPInstanceUID)
    assert inst.path == "/".join(["E" * 220] * 22 + ["IMG"])
    with m.fs.open(inst.path) as fp:  # type: ignore[union-attr]
        assert fp.read() == data
