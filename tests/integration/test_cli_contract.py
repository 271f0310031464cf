"""The command-line contract of DESIGN.md, checked from outside: exit codes, stderr lines that
name the file, the ``ls --json`` schema, ``ls`` opening no referenced file, ``check`` verdicts.

Media come from :mod:`tests.integration.hostile_media` (independent of the product's builders).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest

from tests.integration.hostile_media import (
    DESIGN_CODES,
    ImageInfo,
    assert_each_once,
    assert_sane,
    corpus,
    dicom_bytes,
    html_bytes,
    listed,
    pe_bytes,
    problems,
    records_for,
    run_cli,
    run_inproc,
    uid,
    write_file,
    write_images,
    write_iso,
    write_medium,
)

KEYS_TOP = {"root", "source", "dicomdirs", "patients", "problems"}
KEYS_PATIENT = {"patient_id", "patient_name", "birth_date", "sex", "studies"}
KEYS_STUDY = {"study_uid", "study_date", "study_time", "study_id", "accession", "description",
              "series"}
KEYS_SERIES = {"series_uid", "modality", "series_number", "description", "instances"}
KEYS_INSTANCE = {"sop_instance_uid", "sop_class_uid", "record_type", "instance_number", "path",
                 "has_icon", "referenced"}
KEYS_PROBLEM = {"severity", "code", "path", "message"}


def _problem_medium(root: Path) -> Any:
    """Two patients; one referenced file missing, one unreferenced DICOM file next to the rest."""
    imgs = corpus("cli", patients=2, series=1, images=2)
    built = write_medium(root, imgs)
    missing = imgs[1]
    (root / built.expected.pop(missing.sop_uid)).unlink()
    extra = ImageInfo(sop_uid=uid("cli", "extra"), patient_id="CLI1", patient_name="CLI^PATIENT1",
                      study_uid=imgs[0].study_uid, series_uid=uid("cli", "extra-series"),
                      fid=("PA001", "ST001", "SE009", "IM00001"), series_number="9")
    built.expected.update(write_images(root, [extra]))
    built.extra["missing"] = missing
    built.extra["unreferenced"] = extra
    return built


def _check_schema(d: dict[str, Any]) -> None:
    assert set(d) >= KEYS_TOP
    assert d["source"] in ("dicomdir", "scan")
    assert isinstance(d["dicomdirs"], list) and all(isinstance(x, str) for x in d["dicomdirs"])
    for p in d["patients"]:
        assert set(p) == KEYS_PATIENT, set(p) ^ KEYS_PATIENT
        for st in p["studies"]:
            assert set(st) == KEYS_STUDY, set(st) ^ KEYS_STUDY
            for se in st["series"]:
                assert set(se) == KEYS_SERIES, set(se) ^ KEYS_SERIES
                for inst in se["instances"]:
                    assert set(inst) == KEYS_INSTANCE, set(inst) ^ KEYS_INSTANCE
                    assert isinstance(inst["has_icon"], bool)
                    assert isinstance(inst["referenced"], bool)
                    for k in KEYS_INSTANCE - {"has_icon", "referenced"}:
                        assert inst[k] is None or (isinstance(inst[k], str) and inst[k] != ""), k
                    if inst["path"] is not None:
                        _check_rel(inst["path"])
                for k in KEYS_SERIES - {"instances"}:
                    assert se[k] is None or (isinstance(se[k], str) and se[k] != "")
            for k in KEYS_STUDY - {"series"}:
                assert st[k] is None or (isinstance(st[k], str) and st[k] != "")
        for k in KEYS_PATIENT - {"studies"}:
            assert p[k] is None or (isinstance(p[k], str) and p[k] != "")
    for pr in d["problems"]:
        assert set(pr) == KEYS_PROBLEM
        assert pr["severity"] in ("error", "warning", "info")
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", pr["code"]), pr["code"]
        assert isinstance(pr["message"], str) and pr["message"].strip()
        if pr["path"] is not None:
            assert "\\" not in pr["path"] or pr["code"] in ("bad-file-id", "outside-root")
            assert not pr["path"].startswith("/") or pr["code"] in ("bad-file-id",
                                                                     "outside-root")


def _check_rel(path: str) -> None:
    assert "\\" not in path and not path.startswith("/") and ".." not in path.split("/"), path
    assert not re.match(r"^[A-Za-z]:", path), path


# ---------------------------------------------------------------------------- exit codes


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_inproc(capsys, "--version")
    assert_sane(r, (0,))
    assert "DiscBridge" in r.out + r.err


@pytest.mark.parametrize("argv", [
    ["ls", "--bogus", "X"],
    ["ls"],
    ["check"],
    ["check", "X", "--profile"],
    ["export"],
    ["export", "SRC", "--to", "D", "--media", "floppy"],
    ["export", "SRC", "--to", "D", "--study-date", "2024-01-02"],
    ["export", "SRC", "--to", "D", "--study-date", "20241302"],
    ["export", "SRC", "--to", "D", "--on-id-clash", "merge"],
    ["frobnicate"],
])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    r = run_inproc(capsys, *argv)
    assert_sane(r, (2,))
    assert r.err.strip()


def test_export_without_destination_is_usage_error(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    built = write_medium(tmp_path / "m", corpus("nodest", patients=1, series=1, images=1))
    r = run_inproc(capsys, "export", built.root)
    assert_sane(r, (2,))
    assert list(tmp_path.iterdir()) == [tmp_path / "m"]


def test_check_unknown_profile_is_usage_error(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    built = write_medium(tmp_path / "m", corpus("prof", patients=1, series=1, images=1))
    r = run_inproc(capsys, "check", built.root, "--profile", "STD-NO-SUCH")
    assert_sane(r, (2,))
    assert "STD-NO-SUCH" in r.err


@pytest.mark.parametrize("cmd", ["ls", "check"])
def test_nonexistent_path_fails_naming_it(tmp_path: Path, cmd: str) -> None:
    target = tmp_path / "no such disc"
    r = run_cli(cmd, target)
    assert_sane(r, (1,))
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert lines and all(str(target) in ln or "no such disc" in ln for ln in lines), r.err
    assert r.out.strip() == ""


def _viewer_only(root: Path) -> None:
    write_file(root, "AUTORUN.INF", b"[autorun]\r\nopen=VIEWER\\VIEWER.EXE\r\n")
    write_file(root, "VIEWER/VIEWER.EXE", pe_bytes())
    write_file(root, "INDEX.HTM", html_bytes())
    write_file(root, "README.TXT", b"Patient CD\r\n")


@pytest.mark.parametrize("kind", ["empty", "viewer-only", "text-file", "empty-dicomdir",
                                  "garbage-dicomdir"])
def test_nothing_readable_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 kind: str) -> None:
    root = tmp_path / "m"
    root.mkdir()
    target: Path = root
    if kind == "viewer-only":
        _viewer_only(root)
    elif kind == "text-file":
        target = write_file(root, "notes.txt", b"hello\n")
    elif kind == "empty-dicomdir":
        write_file(root, "DICOMDIR", b"")
    elif kind == "garbage-dicomdir":
        write_file(root, "DICOMDIR", bytes(range(256)) * 40)
    for cmd in ("ls", "check"):
        r = run_inproc(capsys, cmd, target)
        assert_sane(r, (1,))
        lines = [ln for ln in r.err.splitlines() if ln.strip()]
        assert lines, f"{cmd} {kind}: no message on stderr"
        assert all(str(root) in ln for ln in lines), r.err


def test_ls_exit_0_even_with_errors_and_json_schema(tmp_path: Path) -> None:
    built = _problem_medium(tmp_path / "m")
    r = run_cli("ls", built.root, "--json")
    assert_sane(r, (0,))
    d = r.json()
    _check_schema(d)
    assert d["root"] == str(built.root)
    assert d["source"] == "dicomdir" and d["dicomdirs"] == ["DICOMDIR"]
    assert_each_once(d, built)
    miss = built.extra["missing"]
    rows = {x["sop_instance_uid"]: x for x in listed(d)}
    assert rows[miss.sop_uid]["path"] is None, "a missing file is listed with path null"
    assert rows[miss.sop_uid]["referenced"] is True
    assert [p["path"] for p in problems(d, "missing-file")] == ["/".join(miss.fid)]
    assert all(p["severity"] == "error" for p in problems(d, "missing-file"))
    extra = built.extra["unreferenced"]
    assert rows[extra.sop_uid]["referenced"] is False
    assert [p["path"] for p in problems(d, "unreferenced-file")] == ["/".join(extra.fid)]
    assert {p["code"] for p in d["problems"]} <= DESIGN_CODES | {"no-dicomdir"}


def test_ls_json_same_in_process_and_subprocess(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    built = _problem_medium(tmp_path / "m")
    a = run_inproc(capsys, "ls", built.root, "--json")
    b = run_cli("ls", built.root, "--json")
    assert_sane(a)
    assert_sane(b)
    assert json.loads(a.out) == b.json()


def test_ls_values_decoded_and_null_when_absent(tmp_path: Path) -> None:
    info = ImageInfo(sop_uid=uid("vals", 1), patient_id="V1",
                     patient_name="Yamada^Tarou=山田^太郎=やまだ^たろう",
                     study_uid=uid("vals", "st"), series_uid=uid("vals", "se"),
                     fid=("PA001", "ST001", "SE001", "IM00001"), birth_date=None, sex="",
                     accession="", study_desc=None, series_desc=None,
                     charset="\\ISO 2022 IR 87")
    built = write_medium(tmp_path / "m", [info])
    r = run_cli("ls", built.root, "--json")
    assert_sane(r)
    d = r.json()
    [p] = d["patients"]
    assert p["patient_name"] == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    assert p["birth_date"] is None and p["sex"] is None
    [st] = p["studies"]
    assert st["accession"] is None and st["description"] is None
    assert st["study_date"] == "20240102" and st["study_id"] == "1"
    [se] = st["series"]
    assert se["description"] is None and se["modality"] == "CT"
    [inst] = se["instances"]
    assert inst == {"sop_instance_uid": info.sop_uid, "sop_class_uid": info.sop_class,
                    "record_type": "IMAGE", "instance_number": "1",
                    "path": "PA001/ST001/SE001/IM00001", "has_icon": False, "referenced": True}


def test_ls_keeps_record_order(tmp_path: Path) -> None:
    """Lists keep the medium's order: records' order, not sorted by name or number."""
    imgs = corpus("ord", patients=3, series=3, images=3, names=["ZULU^Z", "ALPHA^A", "MIKE^M"])
    for i in imgs:  # series numbers descending in record order, instances 3,2,1
        i.series_number = str(10 - int(i.series_number or 0))
        i.instance_number = str(10 - int(i.instance_number or 0))
    built = write_medium(tmp_path / "m", imgs)
    d = run_cli("ls", built.root, "--json").json()
    assert [p["patient_name"] for p in d["patients"]] == ["ZULU^Z", "ALPHA^A", "MIKE^M"]
    rows = listed(d)
    assert [r["sop_instance_uid"] for r in rows] == [i.sop_uid for i in imgs]


def test_ls_scan_sorted_by_path(tmp_path: Path) -> None:
    imgs = corpus("scanord", patients=1, series=1, images=5)
    root = tmp_path / "m"
    names = ["b/IMG9", "a/z", "a/IMG10", "c", "a/IMG2"]
    for info, name in zip(imgs, names, strict=True):
        write_file(root, name, dicom_bytes(info))
    d = run_cli("ls", root, "--json").json()
    assert d["source"] == "scan" and d["dicomdirs"] == []
    assert [r["path"] for r in listed(d)] == sorted(names)


def test_ls_accepts_dicomdir_file_as_path(tmp_path: Path) -> None:
    built = write_medium(tmp_path / "m", corpus("ddfile", patients=1, series=1, images=2))
    r = run_cli("ls", built.root / "DICOMDIR", "--json")
    assert_sane(r)
    d = r.json()
    assert d["root"] == str(built.root)
    assert d["dicomdirs"] == ["DICOMDIR"]
    assert_each_once(d, built)


def test_ls_iso_root_is_the_image(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    built = write_medium(stage, corpus("isoroot", patients=1, series=1, images=2))
    files = {p.relative_to(stage).as_posix(): p.read_bytes()
             for p in stage.rglob("*") if p.is_file()}
    iso = tmp_path / "disc.iso"
    write_iso(iso, files, joliet=False)
    r = run_cli("ls", iso, "--json")
    assert_sane(r)
    d = r.json()
    assert d["root"] == str(iso)
    assert d["source"] == "dicomdir" and len(d["dicomdirs"]) == 1
    assert d["dicomdirs"][0].upper().startswith("DICOMDIR")
    uids = sorted(x["sop_instance_uid"] for x in listed(d))
    assert uids == sorted(built.expected)


def test_ls_opens_no_referenced_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``ls`` reads the DICOMDIR and listings only; unreferenced files may be read (header)."""
    built = _problem_medium(tmp_path / "m")
    opened: list[str] = []
    referenced = {str(built.root / rel) for u, rel in built.expected.items()
                  if u != built.extra["unreferenced"].sop_uid}

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and audit_on[0] and isinstance(args[0], (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(args[0]))

    audit_on = [True]
    sys.addaudithook(hook)
    try:
        r = run_inproc(capsys, "ls", built.root, "--json")
    finally:
        audit_on[0] = False
    assert_sane(r)
    touched = {os.path.realpath(p) for p in opened}
    assert not touched & {os.path.realpath(p) for p in referenced}, touched & referenced


# ---------------------------------------------------------------------------- check verdicts


def test_check_clean_medium_is_conformant(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    built = write_medium(tmp_path / "m", corpus("okcheck", names=["Müller^Hans", "Ôrsted^Ørn"],
                                                 charset="ISO_IR 100"))
    r = run_inproc(capsys, "check", built.root)
    assert_sane(r, (0,))
    r = run_inproc(capsys, "check", built.root, "--json")
    assert_sane(r, (0,))
    d = json.loads(r.out)
    assert [p for p in d["problems"] if p["severity"] != "info"] == []
    assert_each_once(d, built)
    r = run_inproc(capsys, "check", built.root, "--profile", "STD-GEN-CD")
    assert_sane(r, (0,))


def test_check_warning_only_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A SERIES record without Series Number (Type 1): a warning, and check exits 1."""
    imgs = corpus("warnonly", patients=1, series=1, images=2)
    roots = records_for(imgs, drop=[("SERIES", 0x00200011)])
    built = write_medium(tmp_path / "m", imgs, roots=roots)
    r = run_inproc(capsys, "check", built.root, "--json")
    assert_sane(r, (1,))
    d = json.loads(r.out)
    mk = problems(d, "missing-key")
    assert mk and all(p["severity"] == "warning" for p in mk)
    assert all(p["path"] == "DICOMDIR" for p in mk), mk
    assert any("SeriesNumber" in p["message"] or "0020,0011" in p["message"]
               or "Series Number" in p["message"] for p in mk), mk
    assert not [p for p in d["problems"] if p["severity"] == "error"]
    r = run_inproc(capsys, "ls", built.root)
    assert_sane(r, (0,))


def test_check_profile_changes_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """STD-GEN-DVD-JPEG wants Rows/Columns on IMAGE records (PS3.11 H.3-2): ours have none."""
    built = write_medium(tmp_path / "m", corpus("dvdkeys", patients=1, series=1, images=1))
    assert_sane(run_inproc(capsys, "check", built.root, "--profile", "STD-GEN-CD"), (0,))
    r = run_inproc(capsys, "check", built.root, "--profile", "STD-GEN-DVD-JPEG", "--json")
    assert_sane(r, (1,))
    d = json.loads(r.out)
    mk = problems(d, "missing-key")
    assert mk and any("Rows" in p["message"] or "0028,0010" in p["message"] for p in mk), mk


def test_check_error_exits_1_and_text_names_file(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    built = _problem_medium(tmp_path / "m")
    r = run_inproc(capsys, "check", built.root)
    assert_sane(r, (1,))
    assert "/".join(built.extra["missing"].fid) in r.out + r.err


# ---------------------------------------------------------------------------- output encoding


@pytest.mark.parametrize("encoding", ["cp1252", "ascii"])
@pytest.mark.parametrize("json_flag", [True, False])
def test_non_unicode_console_never_crashes(tmp_path: Path, encoding: str,
                                           json_flag: bool) -> None:
    """A Windows console (cp1252) or an ASCII pipe must not turn a Japanese name into a crash."""
    info = ImageInfo(sop_uid=uid("enc", 1), patient_id="E1",
                     patient_name="Yamada^Tarou=山田^太郎=やまだ^たろう",
                     study_uid=uid("enc", "st"), series_uid=uid("enc", "se"),
                     fid=("PA001", "ST001", "SE001", "IM00001"), charset="\\ISO 2022 IR 87")
    built = write_medium(tmp_path / "m", [info])
    args = ["ls", built.root] + (["--json"] if json_flag else [])
    r = run_cli(*args, env={"PYTHONIOENCODING": encoding, "PYTHONUTF8": "0"})
    assert_sane(r, (0,))
    if json_flag:
        assert r.json()["patients"][0]["patient_name"] == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    else:
        assert "Yamada^Tarou" in r.out



def test_medium_opened_through_a_symlink(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """/media/cdrom is often a symlink: opening through it is not 'outside the root'."""
    built = write_medium(tmp_path / "m", corpus("symroot", patients=1, series=1, images=2))
    os.symlink(built.root, tmp_path / "cdrom")
    for target in (tmp_path / "cdrom", tmp_path / "cdrom" / "DICOMDIR"):
        r = run_inproc(capsys, "ls", target, "--json")
        assert_sane(r)
        d = json.loads(r.out)
        assert d["problems"] == []
        assert sorted(x["sop_instance_uid"] for x in listed(d)) == sorted(built.expected)


@pytest.mark.parametrize("name", ["DISC.ISO", "disc.img", "cdrom", "disc.bin"])
@pytest.mark.parametrize("udf", [False, True], ids=["iso9660", "udf-bridge"])
def test_disc_images_recognised_by_content(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           name: str, udf: bool) -> None:
    import io as _io

    import pycdlib

    stage = tmp_path / "stage"
    built = write_medium(stage, corpus("imgname", patients=1, series=1, images=2))
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, udf="2.60" if udf else None, vol_ident="IMGNAME")
    for d in ("/PA001", "/PA001/ST001", "/PA001/ST001/SE001"):
        iso.add_directory(d, udf_path=d if udf else None)
    for p in sorted(stage.rglob("*")):
        if p.is_file():
            rel = "/" + p.relative_to(stage).as_posix()
            data = p.read_bytes()
            iso.add_fp(_io.BytesIO(data), len(data), rel + ".;1", udf_path=rel if udf else None)
    target = tmp_path / name
    iso.write(str(target))
    iso.close()
    r = run_inproc(capsys, "ls", target, "--json")
    assert_sane(r)
    d = json.loads(r.out)
    assert d["root"] == str(target) and d["source"] == "dicomdir"
    assert sorted(x["sop_instance_uid"] for x in listed(d)) == sorted(built.expected)


def test_udf_only_disc_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A UDF-only image (BD discs are UDF 2.5/2.6 only, PS3.12 X; DVDs may be too, PS3.12 P):
    a UDF bridge image by pycdlib with its ISO 9660 descriptors removed and the UDF Volume
    Recognition Sequence (BEA01/NSR02/TEA01) moved to sector 16, where ECMA-167 puts it."""
    import io as _io

    import pycdlib

    stage = tmp_path / "stage"
    built = write_medium(stage, corpus("udfonly", patients=1, series=1, images=2))
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, udf="2.60")
    for d in ("/PA001", "/PA001/ST001", "/PA001/ST001/SE001"):
        iso.add_directory(d, udf_path=d)
    for p in sorted(stage.rglob("*")):
        if p.is_file():
            rel = "/" + p.relative_to(stage).as_posix()
            data = p.read_bytes()
            iso.add_fp(_io.BytesIO(data), len(data), rel + ".;1", udf_path=rel)
    bridge = tmp_path / "bridge.iso"
    iso.write(str(bridge))
    iso.close()
    img = bytearray(bridge.read_bytes())
    sector = 2048
    assert img[16 * sector + 1:16 * sector + 6] == b"CD001"
    assert img[18 * sector + 1:18 * sector + 6] == b"BEA01"
    vrs = [bytes(img[k * sector:(k + 1) * sector]) for k in (18, 19, 20)]
    img[16 * sector:21 * sector] = bytes(5 * sector)
    for j, desc in enumerate(vrs):
        img[(16 + j) * sector:(17 + j) * sector] = desc
    target = tmp_path / "bluray.iso"
    target.write_bytes(bytes(img))
    r = run_inproc(capsys, "ls", target, "--json")
    assert_sane(r)
    d = json.loads(r.out)
    assert sorted(x["sop_instance_uid"] for x in listed(d)) == sorted(built.expected)


@pytest.mark.parametrize("kind", ["dev-zero", "dev-null", "fifo"])
def test_special_files_as_path_never_hang(tmp_path: Path, kind: str) -> None:
    target = {"dev-zero": Path("/dev/zero"), "dev-null": Path("/dev/null"),
              "fifo": tmp_path / "pipe"}[kind]
    if kind == "fifo":
        os.mkfifo(target)
    elif not target.exists():
        pytest.skip(f"{target} does not exist here")
    for cmd in ("ls", "check"):
        r = run_cli(cmd, target, "--json", timeout=10)
        assert_sane(r, (1,))
        assert str(target) in r.err


def test_single_image_file_as_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    imgs = corpus("single", patients=1, series=1, images=2)
    expected = write_images(tmp_path / "m", imgs)
    r = run_inproc(capsys, "ls", tmp_path / "m" / expected[imgs[0].sop_uid], "--json")
    assert_sane(r, (0, 1))
    if r.rc == 0:
        d = json.loads(r.out)
        assert imgs[0].sop_uid in {x["sop_instance_uid"] for x in listed(d)}


def test_undecodable_root_folder_name(tmp_path: Path) -> None:
    """The medium's own folder has a name that is not UTF-8 (a Latin-1 USB stick label)."""
    root = os.fsencode(tmp_path) + b"/M\xfcller CD"
    built = write_medium(Path(os.fsdecode(root)), corpus("rootname", patients=1, series=1,
                                                         images=1))
    r = run_cli("ls", built.root, "--json", env={"PYTHONIOENCODING": "utf-8"})
    assert_sane(r)
    d = r.json()  # strict UTF-8
    assert os.fsencode(d["root"]) == root
    assert sorted(x["sop_instance_uid"] for x in listed(d)) == sorted(built.expected)


def test_text_output_never_carries_terminal_control_sequences(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A hostile disc puts escape sequences in names and File IDs (ESC ]0;...BEL sets the window
    title, OSC 52 writes the clipboard, 8-bit CSI 0x9B in a Latin-1 name): the human output of
    ls/check shows them escaped, never raw (JSON escapes them by itself)."""
    imgs = corpus("ansi", patients=2, series=1, images=2)

    def recorded(i: ImageInfo) -> tuple[str, ...]:
        if i is imgs[1]:
            return i.fid[:3] + (i.fid[3] + "\x1b]52;c;cHduZWQ=\x07",)
        return i.fid

    roots = records_for(imgs, recorded)
    roots[0].elems = [e for e in roots[0].elems if e[0] != 0x00100010] + [
        (0x00100010, "PN", b"EVIL\x1b[2J\x1b]0;pwned\x07^NAME")]
    roots[1].charset = "ISO_IR 100"
    roots[1].elems = [e for e in roots[1].elems if e[0] != 0x00100010] + [
        (0x00100010, "PN", b"CSI\x9b31m^LATIN")]
    write_medium(tmp_path / "m", imgs, roots=roots)
    for cmd in ("ls", "check"):
        r = run_inproc(capsys, cmd, tmp_path / "m")
        assert_sane(r, (0, 1))
        bad = sorted({f"{ord(c):#04x}" for c in r.out + r.err
                      if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0})
        assert not bad, f"{cmd}: raw control characters {bad} in the text output"


def test_export_messages_never_carry_terminal_control_sequences(tmp_path: Path) -> None:
    """The QA-19 class on the export side: an ID clash message quotes a hostile Patient ID, the
    summary quotes hostile descriptions; stdout and stderr stay free of raw control characters."""
    from dataclasses import replace

    evil_id = "ID\x1b]52;c;cHduZWQ=\x07X"
    a = corpus("ansiexp", patients=2, series=1, images=1)
    imgs = [replace(a[0], patient_id=evil_id, study_desc="DESC\x1b[2J"),
            replace(a[1], patient_id=evil_id, patient_name="OTHER\x9b31m^NAME",
                    charset="ISO_IR 100")]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = write_medium(tmp_path / "src", imgs)
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home / "d"), "XDG_STATE_HOME": str(home / "s"),
           "XDG_CACHE_HOME": str(home / "c")}
    for extra in ([], ["--on-id-clash", "separate"]):
        r = run_cli("export", built.root, "--to", tmp_path / f"dest{len(extra)}", *extra,
                    env=env, timeout=60)
        assert_sane(r, (0, 1))
        bad = sorted({f"{ord(c):#04x}" for c in r.out + r.err
                      if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0})
        assert not bad, f"export {extra}: raw control characters {bad}"


def test_udf_only_disc_image_bytes_round_trip(tmp_path: Path) -> None:
    """The QA-17 class: a UDF-only image with nested folders and multi-block files (≈130 KB):
    every listed instance opens through the medium's file system to exactly its source bytes."""
    import io as _io

    import numpy as np
    import pycdlib

    from app.core.medium.reader import open_medium

    stage = tmp_path / "stage"
    imgs = corpus("udfbig", patients=3, series=2, images=2)
    built = write_medium(stage, imgs)
    for i in imgs:  # make each file span many 2 KB blocks
        ds = pydicom.dcmread(stage / built.expected[i.sop_uid])
        ds.Rows = ds.Columns = 256
        ds.PixelData = (np.arange(256 * 256, dtype=np.uint16) * (1 + len(i.sop_uid) % 7)).tobytes()
        ds.save_as(stage / built.expected[i.sop_uid], enforce_file_format=True)
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, udf="2.60")
    made: set[str] = set()
    for p in sorted(stage.rglob("*")):
        if p.is_file():
            rel = "/" + p.relative_to(stage).as_posix()
            parts = rel.strip("/").split("/")
            for k in range(1, len(parts)):
                d = "/" + "/".join(parts[:k])
                if d not in made:
                    made.add(d)
                    iso.add_directory(d, udf_path=d)
            data = p.read_bytes()
            iso.add_fp(_io.BytesIO(data), len(data), rel + ".;1", udf_path=rel)
    bridge = tmp_path / "bridge.iso"
    iso.write(str(bridge))
    iso.close()
    img = bytearray(bridge.read_bytes())
    sector = 2048
    vrs = [bytes(img[k * sector:(k + 1) * sector]) for k in (18, 19, 20)]
    assert vrs[0][1:6] == b"BEA01"
    img[16 * sector:21 * sector] = bytes(5 * sector)
    for j, desc in enumerate(vrs):
        img[(16 + j) * sector:(17 + j) * sector] = desc
    target = tmp_path / "udf-only.iso"
    target.write_bytes(bytes(img))
    m = open_medium(target)
    assert m.fs is not None
    got = {}
    for inst in m.instances():
        assert inst.path is not None
        with m.fs.open(inst.path) as fp:
            got[inst.sop_instance_uid] = fp.read()
    assert set(got) == set(built.expected)
    for u, rel in built.expected.items():
        assert got[u] == (stage / rel).read_bytes(), rel
