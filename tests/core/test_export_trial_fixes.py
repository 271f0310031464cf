"""Defects a new-user trial found: a body that lies about its encoding, reports of the same
second, ISO images only their owner could read."""

from __future__ import annotations

import os
import stat
import subprocess
import warnings
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian

from app.core.export.engine import run_export
from app.core.export.options import ExportOptions
from app.core.export.report import ExportReport
from app.core.medium.check import check_medium
from app.core.medium.reader import open_medium
from tests.conftest import require_tool


def implicit_body_under_explicit_meta(path: Path) -> None:
    """A real file whose File Meta says Explicit VR LE over an Implicit VR LE body."""
    ds = pydicom.dcmread(get_testdata_file("MR_small_implicit.dcm"))
    tmp = path.with_suffix(".tmp")
    ds.save_as(tmp, implicit_vr=True, enforce_file_format=True)
    raw = tmp.read_bytes()
    tmp.unlink()
    meta = pydicom.dcmread(get_testdata_file("MR_small_implicit.dcm")).file_meta
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    body = 132 + 12 + int.from_bytes(raw[140:144], "little")
    path.write_bytes(b"\0" * 128 + b"DICM" + fp.getvalue() + raw[body:])


def test_a_body_that_lies_about_its_encoding_is_re_encoded(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    implicit_body_under_explicit_meta(src / "a.dcm")
    report = run_export(ExportOptions(sources=[src], dest=out, report=tmp_path / "r.json"))
    assert report.ok and report.verification.ok
    assert [t["from"] for t in report.transcodings] == ["Implicit VR Little Endian"]
    problems = [p for p in check_medium(open_medium(out)) if p.severity != "info"]
    assert problems == []
    (written,) = [p for p in out.rglob("IM*")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, want = pydicom.dcmread(written), pydicom.dcmread(src / "a.dcm")
    assert (got.PixelData, got.PatientName) == (want.PixelData, want.PatientName)
    tool = require_tool("dcmdump")
    assert subprocess.run([tool, str(written)], capture_output=True).returncode == 0


def test_two_reports_of_one_second_do_not_overwrite_each_other(tmp_path: Path,
                                                              monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    paths = {ExportReport(ok=True, dest=None, profile="P", media="cd", fileset_id="F")
             .write(None) for _ in range(3)}
    assert len(paths) == 3 and all(p.is_file() for p in paths)


def test_an_iso_image_is_readable_as_any_new_file(tmp_path: Path) -> None:
    src = Path(get_testdata_file("CT_small.dcm")).parent
    media = tmp_path / "src"
    media.mkdir()
    (media / "ct.dcm").write_bytes((src / "CT_small.dcm").read_bytes())
    iso = tmp_path / "disc.iso"
    report = run_export(ExportOptions(sources=[media], iso=iso, report=tmp_path / "r.json"))
    assert report.ok
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(iso.stat().st_mode) == 0o666 & ~umask


def _copy_test_files(folder: Path, names: list[str]) -> None:
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(Path(get_testdata_file(name)).read_bytes())


def test_of_two_copies_of_an_instance_the_one_that_decodes_is_exported(tmp_path: Path) -> None:
    """pydicom's JPEG-lossy.dcm (does not decode) and JPGExtended.dcm (does) share a SOP
    Instance UID; whichever the reader lists, the export takes the good one and says so."""
    src = tmp_path / "src"
    _copy_test_files(src, ["JPEG-lossy.dcm", "JPGExtended.dcm"])
    report = run_export(ExportOptions(sources=[src], dest=tmp_path / "out", study_date="20200101",
                                      report=tmp_path / "r.json"))
    assert report.ok and report.skipped == []
    assert [t["source"].rsplit("/", 1)[1] for t in report.transcodings] == ["JPGExtended.dcm"]
    assert any("JPEG-lossy.dcm" in p and "duplicate-instance" in p for p in report.problems), \
        report.problems  # the other copy is named


def test_a_different_image_with_the_same_uid_is_named_as_such(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.save_as(src / "a.dcm")
    arr = ds.pixel_array.copy()
    arr[0, 0] += 1
    ds.PixelData = arr.tobytes()
    ds.save_as(src / "b.dcm")
    report = run_export(ExportOptions(sources=[src], dest=tmp_path / "out",
                                      report=tmp_path / "r.json"))
    assert report.ok
    (clash,) = [p for p in report.problems if "DIFFERENT image" in p]
    assert "b.dcm" in clash and "a.dcm" in clash and clash.startswith("warning")
