"""Export round trips from hostile (but readable) media: ``discbridge export SRC --to DEST`` and
``--iso``, then the result re-read by our reader and by independent validators (dciodvfy,
dcmdump, pydicom's FileSet). The source tree must stay byte-identical and nothing may be written
outside DEST (plus the application's own report folder, redirected here into a sandbox HOME).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.fileset import FileSet

from tests.conftest import require_tool
from tests.integration.hostile_media import (
    ILE,
    SENTINEL_UID,
    Built,
    DDOpts,
    ImageInfo,
    Run,
    assert_sane,
    corpus,
    dicom_bytes,
    disk_suffix,
    encode_dicomdir,
    html_bytes,
    jpeg_bytes,
    listed,
    make_dataset,
    make_outside,
    pe_bytes,
    records_for,
    run_cli,
    tree_state,
    uid,
    write_file,
    write_images,
    write_iso,
    write_medium,
)

EXPORT_TIMEOUT = 60.0
COMPONENT = re.compile(r"[A-Z0-9_]{1,8}")


@dataclass
class Sandbox:
    tmp: Path
    src: Path
    dest: Path
    home: Path
    tmpdir: Path

    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "XDG_DATA_HOME": str(self.home / "data"),
                "XDG_STATE_HOME": str(self.home / "state"),
                "XDG_CACHE_HOME": str(self.home / "cache"),
                "XDG_CONFIG_HOME": str(self.home / "config"), "TMPDIR": str(self.tmpdir)}

    def outside_state(self) -> dict[str, str]:
        """Everything in the sandbox except DEST, HOME and TMPDIR (which are checked apart)."""
        skip = ("dest", "home", "tmp", "out.iso", "dest2", "report.json", "src")
        out: dict[str, str] = {}
        for entry in sorted(self.tmp.iterdir()):
            if entry.name in skip:
                continue
            out[entry.name] = ("dir" if entry.is_dir() else
                               hashlib.sha256(entry.read_bytes()).hexdigest())
            if entry.is_dir() and not entry.is_symlink():
                out.update({f"{entry.name}/{k}": v for k, v in tree_state(entry).items()})
        return out

    def export(self, *args: str | os.PathLike[str]) -> Run:
        return run_cli("export", *args, timeout=EXPORT_TIMEOUT, env=self.env())


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    make_outside(tmp_path)
    b = Sandbox(tmp_path, tmp_path / "src", tmp_path / "dest", tmp_path / "home",
                tmp_path / "tmp")
    b.home.mkdir()
    b.tmpdir.mkdir()
    return b


def assert_home_only_app_folders(box: Sandbox) -> None:
    for rel in tree_state(box.home):
        parts = rel.split("/")
        assert len(parts) < 2 or parts[1].lower() == "discbridge", f"wrote {rel} in HOME"


def validate_medium(dest: Path, want: dict[str, ImageInfo], *, names: bool = True,
                    pixels: bool = True) -> dict[str, pydicom.Dataset]:
    """dciodvfy, dcmdump, pydicom FileSet and our reader all accept ``dest``; it holds ``want``."""
    dd = dest / "DICOMDIR"
    assert dd.is_file(), sorted(p.name for p in dest.iterdir())
    p = subprocess.run([require_tool("dciodvfy"), str(dd)], capture_output=True, text=True, errors="replace",
                       timeout=60)
    errors = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.startswith("Error")]
    assert not errors, errors
    p = subprocess.run([require_tool("dcmdump"), str(dd)], capture_output=True, text=True, errors="replace",
                       timeout=60)
    assert p.returncode == 0 and "E: " not in p.stderr, p.stderr
    fs = FileSet(pydicom.dcmread(dd))
    got: dict[str, pydicom.Dataset] = {}
    for inst in fs:
        fid = inst.ReferencedFileID
        comps = [fid] if isinstance(fid, str) else list(fid)
        assert 1 <= len(comps) <= 8 and all(COMPONENT.fullmatch(c) for c in comps), comps
        ds = inst.load()
        assert ds.SOPInstanceUID == inst.ReferencedSOPInstanceUIDInFile
        assert ds.SOPClassUID == inst.ReferencedSOPClassUIDInFile
        assert ds.file_meta.TransferSyntaxUID == inst.ReferencedTransferSyntaxUIDInFile
        assert ds.SOPInstanceUID not in got, "an instance written twice"
        got[ds.SOPInstanceUID] = ds
    assert set(got) == set(want), (sorted(set(got) - set(want)), sorted(set(want) - set(got)))
    for u, info in want.items():
        ds = got[u]
        if names and info.patient_name:
            assert str(ds.PatientName) == info.patient_name
        if pixels:
            assert ds.PixelData == make_dataset(info).PixelData, u
        for kw in ("PatientID", "StudyDate", "StudyTime", "StudyID", "SeriesNumber",
                   "InstanceNumber"):
            assert str(ds.get(kw, "") or "").strip(), f"{u}: Type 1 key {kw} empty in export"
    readme = dest / "README.TXT"
    assert readme.is_file()
    text = readme.read_bytes()
    assert text.isascii()
    for info in want.values():
        for part in re.split(r"[\^=]", info.patient_name or ""):
            if len(part) > 3:
                assert part.encode("utf-8", "replace") not in text, f"PHI {part!r} in README"
        if info.patient_id and len(info.patient_id) > 3:
            assert info.patient_id.encode() not in text, "a Patient ID in README.TXT"
    # our reader: conformant, every file once, every instance referenced
    d = _check_in_process(dest)
    assert [x for x in d["problems"] if x["severity"] != "info"] == []
    rows = listed(d)
    assert sorted(x["sop_instance_uid"] for x in rows) == sorted(want)
    assert all(x["referenced"] and x["path"] for x in rows)
    if names:
        by_uid = {x["sop_instance_uid"]: x for x in rows}
        for u, info in want.items():
            assert by_uid[u]["patient.patient_name"] == info.patient_name
    assert SENTINEL_UID.encode() not in b"".join(
        q.read_bytes() for q in dest.rglob("*") if q.is_file())
    return got


def _check_in_process(target: Path) -> dict[str, Any]:
    """``check --json --profile STD-GEN-CD`` as the CLI builds it, without a subprocess."""
    from app.core.medium.check import check_medium
    from app.core.medium.reader import open_medium

    medium = open_medium(target)
    out = medium.to_dict()
    out["problems"] = [p.to_dict() for p in check_medium(medium, profile="STD-GEN-CD")]
    return out


def roundtrip(box: Sandbox, want: dict[str, ImageInfo], *extra: str,
              sources: list[Path] | None = None, **kw: Any) -> dict[str, pydicom.Dataset]:
    srcs = sources or [box.src]
    before_src = {str(s): tree_state(s) if s.is_dir() else s.read_bytes() for s in srcs}
    before_out = box.outside_state()
    r = box.export(*srcs, "--to", box.dest, *extra)
    assert_sane(r, (0,), EXPORT_TIMEOUT)
    got = validate_medium(box.dest, want, **kw)
    assert {str(s): tree_state(s) if s.is_dir() else s.read_bytes() for s in srcs} == before_src
    assert box.outside_state() == before_out
    assert_home_only_app_folders(box)
    assert not list(box.tmpdir.iterdir()), "temporary files left behind"
    assert not [p for p in box.dest.rglob("*") if ".tmp" in p.name.lower()
                or p.name.startswith(".")], "staging left in DEST"
    return got


# ------------------------------------------------------------------------ hostile sources


def _fuseiso(box: Sandbox) -> dict[str, ImageInfo]:
    imgs = corpus("rtfuse", names=["Müller^Hans", "Ørsted^Åse"], charset="ISO_IR 100")
    write_medium(box.src, imgs, disk=disk_suffix(";1", lower=True), dicomdir_name="dicomdir")
    return {i.sop_uid: i for i in imgs}


def _implicit_zero(box: Sandbox) -> dict[str, ImageInfo]:
    imgs = corpus("rtimpl", patients=2, series=2, images=2)
    write_medium(box.src, imgs, opts=DDOpts(syntax=ILE, offsets="zero", undefined_items=True,
                                            undefined_seq=True, preamble=False, meta=False))
    return {i.sop_uid: i for i in imgs}


RT_CHARSETS = [("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
               ("GB18030", "Wang^XiaoDong=王^小东"), ("ISO_IR 100", "Lærke^Sørensen"),
               ("ISO_IR 126", "Διονυσιος"), ("ISO_IR 192", "Ünal^Çağrı=李^华")]


def _charsets(box: Sandbox) -> dict[str, ImageInfo]:
    imgs: list[ImageInfo] = []
    for k, (cs, name) in enumerate(RT_CHARSETS):
        imgs += [replace(i, charset=cs, patient_name=name, fid=(f"PA{k + 1:03d}",) + i.fid[1:])
                 for i in corpus(f"rtcs{k}", patients=1, series=1, images=2)]
    write_medium(box.src, imgs)
    return {i.sop_uid: i for i in imgs}


def _subfolder_renamed(box: Sandbox) -> dict[str, ImageInfo]:
    imgs = corpus("rtsub", patients=2, series=1, images=2)
    write_medium(box.src, imgs, base="DICOM", dicomdir_name="DIRFILE",
                 disk=disk_suffix(".dcm"))
    write_file(box.src, "AUTORUN.INF", b"[autorun]\r\nopen=viewer.exe\r\n")
    write_file(box.src, "VIEWER/VIEWER.EXE", pe_bytes())
    return {i.sop_uid: i for i in imgs}


def _scan_odd(box: Sandbox) -> dict[str, ImageInfo]:
    imgs = corpus("rtscan", patients=2, series=2, images=1)
    for k, (info, rel) in enumerate(zip(imgs, ["IMAGES/1.dcm", "x y/IMG 2", "deep/a/b/c/d/e",
                                               "raw"], strict=True)):
        write_file(box.src, rel, dicom_bytes(info, preamble=k != 3, meta=k != 3))
    write_file(box.src, "INDEX.HTM", html_bytes())
    write_file(box.src, "IHE_PDI/IMG.JPG", jpeg_bytes())
    write_file(box.src, "viewer/run.exe", pe_bytes())
    return {i.sop_uid: i for i in imgs}


def _unreferenced_inactive(box: Sandbox) -> dict[str, ImageInfo]:
    imgs = corpus("rtunref", patients=3, series=1, images=2)
    roots = records_for(imgs[:4])
    roots[1].in_use = 0
    write_medium(box.src, imgs, roots=roots)  # patient 3: files only; patient 2: inactive
    return {i.sop_uid: i for i in imgs}


def _iso_source(box: Sandbox) -> dict[str, ImageInfo]:
    stage = box.tmp / "stage"
    imgs = corpus("rtiso", patients=2, series=1, images=2)
    write_medium(stage, imgs)
    files = {p.relative_to(stage).as_posix(): p.read_bytes()
             for p in sorted(stage.rglob("*")) if p.is_file()}
    box.src = box.tmp / "src.iso"
    write_iso(box.src, files, joliet=True)
    return {i.sop_uid: i for i in imgs}


HOSTILE_SOURCES: dict[str, Callable[[Sandbox], dict[str, ImageInfo]]] = {
    "fuseiso-lowercase-semicolon": _fuseiso,
    "implicit-zero-offsets-no-meta": _implicit_zero,
    "per-record-charsets": _charsets,
    "renamed-dicomdir-in-subfolder": _subfolder_renamed,
    "scan-odd-folders-no-preamble": _scan_odd,
    "unreferenced-and-inactive": _unreferenced_inactive,
    "iso-image": _iso_source,
}


@pytest.mark.parametrize("case", sorted(HOSTILE_SOURCES))
def test_export_hostile_source_to_folder(box: Sandbox, case: str) -> None:
    want = HOSTILE_SOURCES[case](box)
    roundtrip(box, want)


@pytest.mark.parametrize("case", ["fuseiso-lowercase-semicolon", "per-record-charsets"])
def test_export_hostile_source_to_iso(box: Sandbox, case: str) -> None:
    import pycdlib

    want = HOSTILE_SOURCES[case](box)
    iso = box.tmp / "out.iso"
    before = tree_state(box.src)
    r = box.export(box.src, "--iso", iso, "--fileset-id", "QA_ISO_1")
    assert_sane(r, (0,), EXPORT_TIMEOUT)
    assert tree_state(box.src) == before
    assert not list(box.tmpdir.iterdir()), "staging folder left behind"
    assert not box.dest.exists()
    # our reader, straight from the image
    d = _check_in_process(iso)
    assert [x for x in d["problems"] if x["severity"] != "info"] == []
    assert d["source"] == "dicomdir"
    assert sorted(x["sop_instance_uid"] for x in listed(d)) == sorted(want)
    assert {p["patient_name"] for p in d["patients"]} == {i.patient_name for i in want.values()}
    # ISO 9660 primary names are the DICOM names; Volume ID = File-set ID
    img = pycdlib.PyCdlib()
    img.open(str(iso))
    try:
        assert img.pvd.volume_identifier.decode().strip() == "QA_ISO_1"
        names = []
        for dirname, dirlist, filelist in img.walk(iso_path="/"):
            names += [f"{dirname.rstrip('/')}/{f}" for f in filelist]
            for dn in dirlist:
                assert COMPONENT.fullmatch(dn), dn
        for n in names:
            base = n.rsplit("/", 1)[1]
            assert re.fullmatch(r"[A-Z0-9_]{1,8}(\.TXT)?;1|[A-Z0-9_]{1,8}\.;1", base) or \
                re.fullmatch(r"[A-Z0-9_]{1,8}\.?;1", base), n
        out = box.tmp / "extracted"
        out.mkdir()
        for n in names:
            target = out / n.split(";")[0].rstrip(".").lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as fp:
                img.get_file_from_iso_fp(fp, iso_path=n)
    finally:
        img.close()
    validate_medium(out, want)


# ------------------------------------------------------------------------ Type 1 fixes


def test_export_fills_missing_type1_keys_in_file_and_record(box: Sandbox) -> None:
    imgs = corpus("rtfix", patients=2, series=2, images=2)
    imgs = [replace(i, study_id="" if i.patient_id == "RTFIX1" else i.study_id,
                    series_number=None if i.series_number == "2" else i.series_number,
                    instance_number=None if i.fid[-1] == "IM00002" else i.instance_number,
                    patient_id="" if i.patient_id == "RTFIX2" else i.patient_id)
            for i in imgs]
    write_medium(box.src, imgs)
    report = box.tmp / "report.json"
    got = roundtrip(box, {i.sop_uid: i for i in imgs}, "--report", report)
    changed = [ds for ds in got.values() if "OriginalAttributesSequence" in ds]
    assert len(changed) == len(got), "every fixed file keeps the replaced values"
    pids = {str(ds.PatientName): ds.PatientID for ds in got.values()}
    assert len(set(pids.values())) == 2, pids
    # every change is listed in the report (whatever its layout: count dicts naming the keyword)
    seen: dict[str, int] = {}
    stack: list[Any] = [json.loads(report.read_text())]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for kw in ("StudyID", "SeriesNumber", "InstanceNumber", "PatientID"):
                if kw in node.values():
                    seen[kw] = seen.get(kw, 0) + 1
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    assert seen == {"StudyID": 4, "SeriesNumber": 4, "InstanceNumber": 4, "PatientID": 4}, seen


def test_export_missing_study_date_stops_and_asks(box: Sandbox) -> None:
    imgs = [replace(i, study_date=None) for i in corpus("rtnodate", patients=1, series=1,
                                                         images=2)]
    write_medium(box.src, imgs)
    r = box.export(box.src, "--to", box.dest)
    assert_sane(r, (1,), EXPORT_TIMEOUT)
    assert "--study-date" in r.err + r.out
    assert not box.dest.exists() or not any(box.dest.iterdir())
    r = box.export(box.src, "--to", box.dest, "--study-date", "20200202")
    assert_sane(r, (0,), EXPORT_TIMEOUT)
    got = validate_medium(box.dest, {i.sop_uid: i for i in imgs})
    assert {ds.StudyDate for ds in got.values()} == {"20200202"}


def test_export_study_date_from_series_date(box: Sandbox) -> None:
    imgs = [replace(i, study_date=None, extra={"SeriesDate": "20230303", "SeriesTime": "090000"})
            for i in corpus("rtserdate", patients=1, series=1, images=2)]
    write_medium(box.src, imgs)
    got = roundtrip(box, {i.sop_uid: i for i in imgs})
    assert {ds.StudyDate for ds in got.values()} == {"20230303"}


# ------------------------------------------------------------------------ export contract


def test_export_duplicate_patient_id_different_names(box: Sandbox) -> None:
    a = corpus("rtclash", patients=1, series=1, images=1)
    b = [replace(i, patient_name="OTHER^PERSON", sop_uid=uid("clash-b", k),
                 study_uid=uid("clash-b-st"), series_uid=uid("clash-b-se"),
                 fid=("PA002",) + i.fid[1:])
         for k, i in enumerate(corpus("rtclash", patients=1, series=1, images=1))]
    write_medium(box.src, a + b)
    r = box.export(box.src, "--to", box.dest)
    assert_sane(r, (1,), EXPORT_TIMEOUT)
    assert "RTCLASH1" in r.err
    assert not box.dest.exists() or not any(box.dest.iterdir())
    got = roundtrip(box, {i.sop_uid: i for i in a + b}, "--on-id-clash", "separate")
    ids = {str(ds.PatientName): ds.PatientID for ds in got.values()}
    assert len(set(ids.values())) == 2, ids
    moved = [ds for ds in got.values() if ds.PatientID != "RTCLASH1"]
    assert moved and all("OtherPatientIDsSequence" in ds for ds in moved)


def test_export_refuses_to_replace_medium_without_force(box: Sandbox) -> None:
    want = _fuseiso(box)
    roundtrip(box, want)
    state = tree_state(box.dest)
    r = box.export(box.src, "--to", box.dest)
    assert_sane(r, (1,), EXPORT_TIMEOUT)
    assert str(box.dest) in r.err or "--force" in r.err
    assert tree_state(box.dest) == state
    r = box.export(box.src, "--to", box.dest, "--force")
    assert_sane(r, (0,), EXPORT_TIMEOUT)
    validate_medium(box.dest, want)


def test_export_merges_sources_dropping_duplicates(box: Sandbox) -> None:
    imgs = corpus("rtmerge", patients=2, series=1, images=2)
    write_medium(box.src, imgs)
    other = box.tmp / "src2"
    write_medium(other, imgs[2:], disk=disk_suffix(";1", lower=True), dicomdir_name="dicomdir")
    roundtrip(box, {i.sop_uid: i for i in imgs}, sources=[box.src, other])


def test_export_of_export_is_stable(box: Sandbox) -> None:
    want = _charsets(box)
    roundtrip(box, want)
    dest2 = box.tmp / "dest2"
    r = box.export(box.dest, "--to", dest2)
    assert_sane(r, (0,), EXPORT_TIMEOUT)
    validate_medium(dest2, want)
    assert sorted(p.relative_to(dest2).as_posix() for p in dest2.rglob("*")) == sorted(
        p.relative_to(box.dest).as_posix() for p in box.dest.rglob("*"))


# ------------------------------------------------------------------------ partly broken sources


@pytest.mark.parametrize("case", ["escapes-and-sentinel", "broken-referenced-files"])
def test_export_partly_broken_source(box: Sandbox, case: str) -> None:
    """Either a valid medium of what is readable (exit 0) or nothing written (exit 1)."""
    imgs = corpus("rtbroken", patients=2, series=1, images=3)
    good = list(imgs)
    if case == "escapes-and-sentinel":
        evil = [replace(imgs[0], sop_uid=uid("rtbroken", "evil", k), instance_number=str(90 + k))
                for k in range(3)]
        fids = {evil[0].sop_uid: ("..", "outside", "SENTINEL"),
                evil[1].sop_uid: ("LINKS", "EVIL"),
                evil[2].sop_uid: ("C:", "outside", "SENTINEL")}
        roots = records_for(imgs + evil, lambda i: fids.get(i.sop_uid, i.fid))
        box.src.mkdir()
        (box.src / "LINKS").mkdir()
        os.symlink(box.tmp / "outside" / "SENTINEL", box.src / "LINKS" / "EVIL")
        os.symlink(box.tmp / "outside", box.src / "OUTDIR")
        write_medium(box.src, imgs, roots=roots)
    else:
        built: Built = write_medium(box.src, imgs)
        (box.src / built.expected[imgs[0].sop_uid]).unlink()
        (box.src / built.expected[imgs[1].sop_uid]).write_bytes(b"")
        (box.src / built.expected[imgs[2].sop_uid]).write_bytes(html_bytes())
        (box.src / built.expected[imgs[3].sop_uid]).write_bytes(dicom_bytes(imgs[3])[:300])
        good = imgs[4:]
    before_src = tree_state(box.src)
    before_out = box.outside_state()
    r = box.export(box.src, "--to", box.dest)
    assert_sane(r, (0, 1), EXPORT_TIMEOUT)
    assert tree_state(box.src) == before_src
    assert box.outside_state() == before_out
    assert_home_only_app_folders(box)
    if r.rc == 0:
        validate_medium(box.dest, {i.sop_uid: i for i in good})
    else:
        assert r.err.strip()
        assert not box.dest.exists() or not any(box.dest.iterdir())


def test_encode_dicomdir_used_by_sources_is_valid(tmp_path: Path) -> None:
    """The sources above are hostile on purpose; the clean builder output itself is valid."""
    imgs = corpus("rtvalid", patients=2, series=1, images=1)
    write_images(tmp_path, imgs)
    write_file(tmp_path, "DICOMDIR", encode_dicomdir(records_for(imgs)))
    p = subprocess.run([require_tool("dciodvfy"), str(tmp_path / "DICOMDIR")],
                       capture_output=True, text=True, errors="replace", timeout=60)
    assert not [ln for ln in (p.stdout + p.stderr).splitlines() if ln.startswith("Error")]
    assert len(FileSet(pydicom.dcmread(tmp_path / "DICOMDIR"))) == 2


# ------------------------------------------------------------------------ destinations that overlap


@pytest.mark.parametrize("case", ["dest-is-src", "dest-is-src-force", "dest-inside-src",
                                  "src-inside-dest-force", "dest-symlink-into-src",
                                  "iso-is-source-iso", "iso-inside-src"])
def test_export_never_writes_into_its_source(box: Sandbox, case: str) -> None:
    want = _fuseiso(box)
    src: Path = box.src
    args: list[str | os.PathLike[str]]
    if case == "dest-is-src":
        args = [src, "--to", src]
    elif case == "dest-is-src-force":
        args = [src, "--to", src, "--force"]
    elif case == "dest-inside-src":
        args = [src, "--to", src / "OUT"]
    elif case == "src-inside-dest-force":
        inner = box.dest / "incoming"
        box.dest.mkdir()
        src.rename(inner)
        src = inner
        write_file(box.dest, "DICOMDIR", (src / "dicomdir").read_bytes())  # "a medium in DEST"
        args = [src, "--to", box.dest, "--force"]
    elif case == "dest-symlink-into-src":
        os.symlink(src / "pa001", box.tmp / "link")
        args = [src, "--to", box.tmp / "link", "--force"]
    elif case == "iso-is-source-iso":
        _iso_source(box)
        src = box.src
        args = [src, "--iso", src, "--force"]
    else:
        args = [src, "--iso", src / "OUT.ISO"]
    before = tree_state(src) if src.is_dir() else {"iso": src.read_bytes().hex()}
    r = box.export(*args)
    assert_sane(r, (1, 2), EXPORT_TIMEOUT)
    assert r.err.strip()
    after = tree_state(src) if src.is_dir() else {"iso": src.read_bytes().hex()}
    assert after == before, "the source was modified"
    assert want


# ------------------------------------------------------------------------ other objects and encodings


def test_export_sr_and_encapsulated_pdf(box: Sandbox) -> None:
    from tests.integration.hostile_media import pdf_info, sr_info

    base = corpus("rtdocs", patients=1, series=3, images=1)
    imgs = [base[0], sr_info(base[1]), pdf_info(base[2])]
    write_medium(box.src, imgs)
    got = roundtrip(box, {i.sop_uid: i for i in imgs}, pixels=False)
    dd = pydicom.dcmread(box.dest / "DICOMDIR")
    types = {r.ReferencedSOPInstanceUIDInFile: r.DirectoryRecordType
             for r in dd.DirectoryRecordSequence if "ReferencedSOPInstanceUIDInFile" in r}
    assert types == {imgs[0].sop_uid: "IMAGE", imgs[1].sop_uid: "SR DOCUMENT",
                     imgs[2].sop_uid: "ENCAP DOC"}
    assert got[imgs[2].sop_uid].EncapsulatedDocument.rstrip(b"\0") == \
        make_dataset(imgs[2]).EncapsulatedDocument.rstrip(b"\0")


@pytest.mark.parametrize("encoding", ["big-endian", "implicit", "rle", "no-meta", "j2k"])
def test_export_transcodes_to_explicit_le_losslessly(box: Sandbox, encoding: str) -> None:
    from tests.integration.hostile_media import EXPLICIT_BE, IMPLICIT_LE, pydicom_read, rle_bytes

    imgs = corpus("rtts", patients=1, series=1, images=2)
    box.src.mkdir()
    source_pixels = {}
    for i in imgs:
        if encoding == "big-endian":
            data = dicom_bytes(replace(i, transfer_syntax=EXPLICIT_BE))
        elif encoding == "implicit":
            data = dicom_bytes(replace(i, transfer_syntax=IMPLICIT_LE))
        elif encoding == "rle":
            data = rle_bytes(i)
        elif encoding == "j2k":
            from tests.integration.hostile_media import j2k_lossless_bytes

            data = j2k_lossless_bytes(i)
        else:
            data = dicom_bytes(i, preamble=False, meta=False)
        write_file(box.src, "/".join(i.fid), data)
        ds = pydicom_read(data)
        if encoding == "no-meta":
            ds.file_meta = pydicom.dataset.FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = IMPLICIT_LE
        source_pixels[i.sop_uid] = ds.pixel_array.copy()
    write_file(box.src, "DICOMDIR", encode_dicomdir(records_for(
        [replace(i, transfer_syntax={"big-endian": EXPLICIT_BE, "rle": "1.2.840.10008.1.2.5",
                                     "j2k": "1.2.840.10008.1.2.4.90"}
                 .get(encoding, IMPLICIT_LE)) for i in imgs])))
    got = roundtrip(box, {i.sop_uid: i for i in imgs}, pixels=False)
    for u, ds in got.items():
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert (ds.pixel_array == source_pixels[u]).all(), u
        assert ds.file_meta.ImplementationClassUID != "1.2.826.0.1.3680043.8.498.424242"


# ------------------------------------------------------------------------ options with hostile values


@pytest.mark.parametrize("fsid", ["bad id/../x", "WAYTOOLONGFILESETIDENTIFIER", "ÄÖÜ"])
def test_export_fileset_id_values(box: Sandbox, fsid: str) -> None:
    want = _implicit_zero(box)
    r = box.export(box.src, "--to", box.dest, "--fileset-id", fsid)
    assert_sane(r, (0, 1, 2), EXPORT_TIMEOUT)
    if r.rc == 0:
        validate_medium(box.dest, want)
        got = pydicom.dcmread(box.dest / "DICOMDIR").get("FileSetID", "")
        assert re.fullmatch(r"[A-Z0-9_ ]{0,16}", got), got
    else:
        assert r.err.strip()
        assert not box.dest.exists() or not any(box.dest.iterdir())


def test_export_readme_stays_ascii_with_non_ascii_institution(box: Sandbox) -> None:
    want = _fuseiso(box)
    roundtrip(box, want, "--institution", "Hôpital Saint-Éloi 病院", "--contact",
              "Dr. Müller ☎ +33 1 23 45 67 89")
    text = (box.dest / "README.TXT").read_bytes()
    assert b"Saint" in text and b"+33 1 23 45 67 89" in text


def test_export_trusts_the_file_over_the_record(box: Sandbox) -> None:
    """The DICOMDIR says one thing, the file another: the exported copy and record follow the file."""
    imgs = corpus("rttrust", patients=1, series=1, images=2)
    write_images(box.src, imgs)
    lies = [replace(i, patient_name="RECORD^LIE", study_desc="RECORD DESC", modality="MR",
                    series_number="42") for i in imgs]
    write_file(box.src, "DICOMDIR", encode_dicomdir(records_for(lies)))
    got = roundtrip(box, {i.sop_uid: i for i in imgs})
    assert {str(ds.PatientName) for ds in got.values()} == {"RTTRUST^PATIENT1"}
    dd = pydicom.dcmread(box.dest / "DICOMDIR")
    text = str(dd)
    assert "RECORD^LIE" not in text and "RECORD DESC" not in text
    series = [r for r in dd.DirectoryRecordSequence if r.DirectoryRecordType == "SERIES"]
    assert [(r.Modality, str(r.SeriesNumber)) for r in series] == [("CT", "1")]


def _sparse_big_image(path: Path, info: ImageInfo, frames: int) -> int:
    """A valid image whose (zero) pixel data is ``frames`` × 50 MB, written sparse."""
    ds = make_dataset(info)
    del ds.PixelData
    ds.Rows = ds.Columns = 5000
    ds.NumberOfFrames = frames
    n = 5000 * 5000 * 2 * frames
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = info.sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = info.sop_uid
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    head = buf.getvalue() + b"\xe0\x7f\x10\x00OW\0\0" + n.to_bytes(4, "little")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fp:
        fp.write(head)
        fp.truncate(len(head) + n)
    return len(head) + n


def test_export_too_big_for_a_cd_is_refused_before_writing(box: Sandbox) -> None:
    imgs = corpus("rtbig", patients=1, series=1, images=8)
    total = sum(_sparse_big_image(box.src / "/".join(i.fid), i, 2) for i in imgs)
    assert total > 750_000_000
    before = box.outside_state()
    r = box.export(box.src, "--to", box.dest, "--media", "cd")
    assert_sane(r, (1,), 30)
    assert re.search(r"(?i)\d MB|capacity|too (big|large)|does not fit|exceed", r.err), r.err
    assert not box.dest.exists() or not any(box.dest.iterdir())
    assert box.outside_state() == before


# ------------------------------------------------------------------------ profiles, icons, sources


def test_export_icons_on_every_image_record(box: Sandbox) -> None:
    want = _charsets(box)
    roundtrip(box, want, "--icons")
    dd = pydicom.dcmread(box.dest / "DICOMDIR")
    images = [r for r in dd.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    assert len(images) == len(want)
    for r in images:
        icon = r.IconImageSequence[0]
        assert (icon.Rows, icon.Columns, icon.BitsAllocated) == (64, 64, 8)
        assert icon.PhotometricInterpretation in ("MONOCHROME2", "PALETTE COLOR")
        assert len(icon.PixelData) == 64 * 64
    d = run_cli("ls", box.dest, "--json", timeout=30).json()
    assert all(x["has_icon"] for x in listed(d))


@pytest.mark.parametrize("media,profile", [("dvd", "STD-GEN-DVD-JPEG"),
                                           ("usb", "STD-GEN-USB-JPEG")])
def test_export_media_profiles_are_conformant(box: Sandbox, media: str, profile: str) -> None:
    from app.core.medium.check import check_medium
    from app.core.medium.reader import open_medium

    want = _fuseiso(box)
    roundtrip(box, want, "--media", media)
    problems_ = check_medium(open_medium(box.dest), profile=profile)
    assert [p for p in problems_ if p.severity != "info"] == []
    dd = pydicom.dcmread(box.dest / "DICOMDIR")
    for r in dd.DirectoryRecordSequence:
        if r.DirectoryRecordType == "IMAGE":
            assert r.Rows == 8 and r.Columns == 8  # PS3.11 H.3-2 keys


def test_export_mixed_source_kinds(box: Sandbox) -> None:
    """A folder, a DICOMDIR file in a subfolder, and an .iso image, overlapping: merged once."""
    a = corpus("rtmixa", patients=1, series=1, images=2)
    b = corpus("rtmixb", patients=1, series=1, images=2)
    write_medium(box.src, a + b[:1])
    sub = box.tmp / "other" / "DICOM"
    write_medium(sub, b, disk=disk_suffix(";1", lower=True), dicomdir_name="DICOMDIR")
    stage = box.tmp / "stage"
    write_medium(stage, a[:1] + b[1:])
    iso = box.tmp / "third.iso"
    write_iso(iso, {p.relative_to(stage).as_posix(): p.read_bytes()
                    for p in sorted(stage.rglob("*")) if p.is_file()}, joliet=False)
    roundtrip(box, {i.sop_uid: i for i in a + b}, sources=[box.src, sub / "DICOMDIR", iso])


@pytest.mark.parametrize("when,twice", [(b"[stage]", False), (b"[verify]", False),
                                        (b"[stage]", True)],
                         ids=["at-stage", "at-verify", "twice-at-stage"])
def test_export_interrupted_leaves_dest_as_it_was(box: Sandbox, when: bytes,
                                                  twice: bool) -> None:
    """Ctrl-C (once, or twice by an impatient user) at a given phase: exit 1 and DEST exactly as
    it was, or, when it came too late to cancel, a complete valid medium and exit 0. Never a
    traceback, never a half-written medium or a staging folder left behind."""
    import signal
    import subprocess as sp
    import sys
    import time

    imgs = corpus("rtint", patients=1, series=4, images=25)
    box.src.mkdir()
    for i in imgs:
        ds = make_dataset(i)
        ds.Rows = ds.Columns = 256
        ds.PixelData = bytes(256 * 256 * 2)
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = i.sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = i.sop_uid
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"  # implicit: must be transcoded
        path = box.src / "/".join(i.fid)
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    box.dest.mkdir()
    write_file(box.dest, "KEEP.TXT", b"the user's own file")
    before_dest = tree_state(box.dest)
    before_src = tree_state(box.src)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), **box.env())
    p = sp.Popen([sys.executable, "-m", "app", "export", str(box.src), "--to", str(box.dest)],
                 stdout=sp.PIPE, stderr=sp.PIPE, env=env)
    assert p.stderr is not None
    t0 = time.monotonic()
    err = b""
    while time.monotonic() - t0 < EXPORT_TIMEOUT:
        line = p.stderr.readline()
        err += line
        if not line or line.startswith(when):
            break
    p.send_signal(signal.SIGINT)
    if twice:
        time.sleep(0.05)
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    out, rest = p.communicate(timeout=EXPORT_TIMEOUT)
    err += rest
    assert b"Traceback" not in err, err.decode(errors="replace")
    assert tree_state(box.src) == before_src
    if p.returncode == 0:
        validate_medium(box.dest, {i.sop_uid: i for i in imgs}, pixels=False)
    else:
        assert p.returncode == 1, (p.returncode, err[-2000:])
        assert tree_state(box.dest) == before_dest, "DEST changed by a cancelled export"
    assert not list(box.tmpdir.iterdir())

def test_export_after_a_killed_export(box: Sandbox) -> None:
    """The power goes mid-write (SIGKILL): the next export to the same DEST still gives a valid
    medium, and readers never mistake the leftovers for part of it."""
    import signal
    import subprocess as sp
    import sys
    import time

    want = _charsets(box)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), **box.env())
    p = sp.Popen([sys.executable, "-m", "app", "export", str(box.src), "--to", str(box.dest)],
                 stdout=sp.PIPE, stderr=sp.PIPE, env=env)
    assert p.stderr is not None
    t0 = time.monotonic()
    while time.monotonic() - t0 < EXPORT_TIMEOUT:
        line = p.stderr.readline()
        if not line or line.startswith((b"[write]", b"[stage]")):
            break
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=EXPORT_TIMEOUT)
    r = box.export(box.src, "--to", box.dest)
    assert_sane(r, (0,), EXPORT_TIMEOUT)
    dd = pydicom.dcmread(box.dest / "DICOMDIR")
    fs = FileSet(dd)
    assert sorted(str(i.SOPInstanceUID) for i in (x.load() for x in fs)) == sorted(want)
    d = _check_in_process(box.dest)
    assert sorted(x["sop_instance_uid"] for x in listed(d)) == sorted(want)
    assert all(x["referenced"] for x in listed(d))


def test_check_every_known_profile(box: Sandbox) -> None:
    from app.core.dicomdir.profiles import PROFILES
    from app.core.medium.check import check_medium
    from app.core.medium.reader import open_medium

    _fuseiso(box)
    m = open_medium(box.src)
    for name in PROFILES:
        out = check_medium(m, profile=name)
        assert all(p.severity in ("error", "warning", "info") for p in out), name
    with pytest.raises(ValueError):
        check_medium(m, profile="STD-NOPE")


def test_export_lossy_source_to_cd_keeps_lossy_flags(box: Sandbox) -> None:
    from tests.integration.hostile_media import jpeg_baseline_bytes, pydicom_read

    imgs = corpus("rtlossy", patients=1, series=1, images=2)
    box.src.mkdir()
    src_pixels = {}
    for k, i in enumerate(imgs):
        data = jpeg_baseline_bytes(i, lossy_attrs=k == 0)  # the second one lacks the flags
        write_file(box.src, "/".join(i.fid), data)
        src_pixels[i.sop_uid] = pydicom_read(data).pixel_array.copy()
    write_file(box.src, "DICOMDIR", encode_dicomdir(records_for(
        [replace(i, transfer_syntax="1.2.840.10008.1.2.4.50") for i in imgs])))
    got = roundtrip(box, {i.sop_uid: i for i in imgs}, "--media", "cd", pixels=False)
    for u, ds in got.items():
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.LossyImageCompression == "01", u
        assert "ISO_10918_1" in list(ds.get("LossyImageCompressionMethod", [])) + \
            [str(ds.get("LossyImageCompressionMethod", ""))], u
        assert (ds.pixel_array == src_pixels[u]).all()


def test_export_refuses_video_on_a_cd_by_name(box: Sandbox) -> None:
    from tests.integration.hostile_media import mpeg2_video_bytes

    imgs = corpus("rtvideo", patients=1, series=2, images=1)
    box.src.mkdir()
    write_file(box.src, "/".join(imgs[0].fid), dicom_bytes(imgs[0]))
    write_file(box.src, "VIDEO/CLIP1", mpeg2_video_bytes(imgs[1]))
    before = box.outside_state()
    r = box.export(box.src, "--to", box.dest, "--media", "cd")
    assert_sane(r, (1,), EXPORT_TIMEOUT)
    assert "VIDEO/CLIP1" in r.err or imgs[1].sop_uid in r.err, r.err
    assert not box.dest.exists() or not any(box.dest.iterdir())
    assert box.outside_state() == before


def test_export_from_a_scratched_disc(box: Sandbox) -> None:
    """A source file that cannot be read (EIO): the export says which, and never leaves a
    half-written medium; if it goes on without that file, the result is a valid medium."""
    import sys

    from tests.integration.hostile_media import mount_fuse

    if sys.platform != "linux" or os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("EIO media need Linux, root and /dev/fuse")
    imgs = corpus("rteio", patients=1, series=2, images=2)
    files = {"/".join(i.fid): dicom_bytes(i) for i in imgs}
    files["DICOMDIR"] = encode_dicomdir(records_for(imgs))
    bad = "/".join(imgs[2].fid)
    try:
        m = mount_fuse(box.tmp, files, eio=[bad])
    except OSError as exc:
        pytest.skip(f"cannot mount FUSE here: {exc}")
    try:
        r = box.export(m.mount, "--to", box.dest)
    finally:
        m.close()
    assert_sane(r, (0, 1), EXPORT_TIMEOUT)
    assert bad in r.out + r.err or imgs[2].sop_uid in r.out + r.err, (r.out, r.err)
    if r.rc == 1:
        assert not box.dest.exists() or not any(box.dest.iterdir())
    else:
        validate_medium(box.dest, {i.sop_uid: i for i in imgs if i is not imgs[2]})
    assert not list(box.tmpdir.iterdir())



BAD_VALUES: dict[str, dict[str, Any]] = {
    "too-long": {"study_id": "ABCDEFGHIJKLMNOPQRSTUV", "accession": "X" * 20,
                 "study_desc": "D" * 80, "series_desc": "S" * 70},
    "patient-id-too-long": {"patient_id": "P" * 70},
    "lowercase-cs": {"modality": "ct"},
    "decimal-is": {"series_number": "1.0", "instance_number": " 7"},
    "pn-too-many-components": {"patient_name": "A^B^C^D^E^F^G"},
    "acr-nema-date-time": {"study_date": "2024.01.02", "study_time": "10:15:00"},
    "vm-too-many": {"study_desc": "CT\\HEAD", "accession": "A1\\A2"},
    "control-characters": {"study_desc": "CT\x07HEAD\x1b", "series_desc": "AX\tIAL"},
    "pn-too-many-groups": {"patient_name": "A^B=C^D=E^F=G^H"},
    "demographics-invalid": {"birth_date": "19600230", "sex": "MALE"},
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom reading the deliberate bad values
@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_export_source_values_invalid_for_their_vr(box: Sandbox, case: str) -> None:
    """Real modalities write 80-character descriptions, lowercase modalities, "1.0" series
    numbers: the source file may keep them, but the DICOMDIR we write must pass dciodvfy."""
    import warnings

    imgs = [replace(i, **BAD_VALUES[case]) for i in corpus("rtvr", patients=1, series=1,
                                                           images=2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_medium(box.src, imgs)
    want = {i.sop_uid: i for i in imgs}
    roundtrip(box, want, names=case not in ("pn-too-many-components", "pn-too-many-groups"))


@pytest.mark.parametrize("damaged_first", [True, False], ids=["damaged-first", "damaged-second"])
def test_export_duplicate_uid_keeps_the_intact_copy(box: Sandbox, damaged_first: bool) -> None:
    """Two sources hold the same instance; one copy is cut short in its pixel data. The merge
    drops a duplicate by SOP Instance UID: it must keep the intact one (or refuse), never export
    the damaged bytes as if they were good."""
    imgs = corpus("rtdupe", patients=1, series=1, images=2)
    good_src = box.tmp / "good"
    bad_src = box.tmp / "bad"
    write_medium(good_src, imgs)
    built = write_medium(bad_src, imgs)
    victim = bad_src / built.expected[imgs[0].sop_uid]
    victim.write_bytes(victim.read_bytes()[:-40])
    sources = [bad_src, good_src] if damaged_first else [good_src, bad_src]
    r = box.export(*sources, "--to", box.dest)
    assert_sane(r, (0, 1), EXPORT_TIMEOUT)
    if r.rc == 0:
        validate_medium(box.dest, {i.sop_uid: i for i in imgs})
    else:
        assert not box.dest.exists() or not any(box.dest.iterdir())


def test_export_of_a_truncated_source_is_never_silent(box: Sandbox) -> None:
    """A source image cut short in its pixel data (`check` calls it truncated-file): the export
    refuses it or says so by name; it never reports a clean, verified medium without a word."""
    imgs = corpus("rttrunc", patients=1, series=1, images=3)
    built = write_medium(box.src, imgs)
    rel = built.expected[imgs[1].sop_uid]
    victim = box.src / rel
    victim.write_bytes(victim.read_bytes()[:-40])
    r = box.export(box.src, "--to", box.dest)
    assert_sane(r, (0, 1), EXPORT_TIMEOUT)
    assert rel in r.out + r.err or imgs[1].sop_uid in r.out + r.err, (r.out, r.err)
    if r.rc == 1:
        assert not box.dest.exists() or not any(box.dest.iterdir())


@pytest.mark.parametrize("case", ["dest-is-a-file", "dest-under-a-file", "report-in-missing-dir",
                                  "report-is-a-dir", "iso-in-missing-dir", "iso-is-a-dir"])
def test_export_bad_destinations(box: Sandbox, case: str) -> None:
    want = _fuseiso(box)
    blocker = box.tmp / "blocker"
    blocker.write_bytes(b"not a folder")
    args: list[str | os.PathLike[str]] = [box.src]
    if case == "dest-is-a-file":
        args += ["--to", blocker]
    elif case == "dest-under-a-file":
        args += ["--to", blocker / "DEST"]
    elif case == "report-in-missing-dir":
        args += ["--to", box.dest, "--report", box.tmp / "nowhere" / "deeper" / "r.json"]
    elif case == "report-is-a-dir":
        (box.tmp / "rdir").mkdir()
        args += ["--to", box.dest, "--report", box.tmp / "rdir"]
    elif case == "iso-in-missing-dir":
        args += ["--iso", blocker / "x" / "out.iso"]
    else:
        (box.tmp / "isodir").mkdir()
        args += ["--iso", box.tmp / "isodir"]
    before = tree_state(box.src)
    r = box.export(*args)
    assert_sane(r, (0, 1, 2), EXPORT_TIMEOUT)
    assert blocker.read_bytes() == b"not a folder"
    assert tree_state(box.src) == before
    if r.rc != 0:
        assert r.err.strip()
    if case.startswith("report") and r.rc == 0:
        validate_medium(box.dest, want)
    if case in ("dest-is-a-file", "dest-under-a-file", "iso-in-missing-dir", "iso-is-a-dir"):
        assert r.rc != 0


def test_dcmmkdir_appends_to_an_exported_medium(box: Sandbox) -> None:
    """DCMTK appends to our DICOMDIR (issue 3 acceptance), and our reader then lists everything."""
    want = _charsets(box)
    roundtrip(box, want)
    extra = replace(corpus("rtappend", patients=1, series=1, images=1)[0],
                    fid=("EXTRA", "IM000001"))
    write_file(box.dest, "EXTRA/IM000001", dicom_bytes(extra))
    p = subprocess.run([require_tool("dcmmkdir"), "+A", "+D", str(box.dest / "DICOMDIR"),
                        "+id", str(box.dest), "EXTRA/IM000001"],
                       capture_output=True, text=True, errors="replace", timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    d = _check_in_process(box.dest)
    rows = listed(d)
    assert sorted(r["sop_instance_uid"] for r in rows) == sorted([*want, extra.sop_uid])
    assert all(r["referenced"] for r in rows)
