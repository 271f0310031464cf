"""Acceptance: media written from pydicom's samples, the generated corpus and compressed sources.

Each medium is checked by the reference tools (issue 3 "Acceptance"): ``dciodvfy`` reports no
error on the DICOMDIR; ``dcmdump`` reads it; ``dcmmkdir +A`` appends to it (on a copy); pydicom's
FileSet resolves every file; every exported file has no ``dciodvfy`` error its source didn't
have; lossless transcodes decode to the source's exact pixels; the sources are unchanged.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet

from app import IMPLEMENTATION_CLASS_UID
from app.core.export.engine import execute, plan_export
from app.core.export.options import ExportOptions
from app.core.jobs import CancelToken
from tests.conftest import require_tool
from tests.corpus import write_compressed, write_corpus
from tests.export_helpers import dciodvfy_errors, medium_of, tree_hashes
from tests.media import dicomdirtests_root, make_dataset, pydicom_test_file, write_instance

CAP = 700_000_000
SAMPLES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "waveform_ecg.dcm",
           "no_meta_group_length.dcm"]


def export(sources: list[Path], dest: Path, **kw):
    opts = ExportOptions(sources=sources, dest=dest, **kw)
    plan = plan_export(opts, [medium_of(s) for s in sources], capacity=CAP)
    report = execute(plan)
    assert report.ok, report.summary_lines()
    return plan, report


def _sources_by_uid(roots: list[Path]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.name != "DICOMDIR":
                try:
                    ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
                    out.setdefault(str(ds.SOPInstanceUID), p)
                except Exception:  # noqa: BLE001, S112 - not DICOM
                    continue
    return out


def check_medium(dest: Path, sources: list[Path], every: int = 1) -> None:
    """The acceptance checks for one written medium."""
    dciodvfy = require_tool("dciodvfy")
    dcmdump = require_tool("dcmdump")
    dcmmkdir = require_tool("dcmmkdir")
    dicomdir = dest / "DICOMDIR"
    assert dciodvfy_errors(dciodvfy, dicomdir) == set()
    subprocess.run([dcmdump, str(dicomdir)], check=True, capture_output=True)
    # pydicom's FileSet resolves and loads every file.
    fs = FileSet(dicomdir)
    files = sorted(p for p in dest.rglob("IM*") if p.is_file())
    assert len(fs) == len(files) > 0
    for inst in fs:
        ds = inst.load()
        assert ds.SOPInstanceUID == inst.SOPInstanceUID
    # dcmmkdir appends a new instance to our DICOMDIR (on a copy).
    copy = dest.parent / (dest.name + "_dcmmkdir")
    shutil.copytree(dest, copy)
    new = make_dataset(PatientID="APPENDED", PatientName="Appended^Patient")
    write_instance(copy / "NEW" / "IM000001", new)
    proc = subprocess.run([dcmmkdir, "+A", "NEW/IM000001"], cwd=copy, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert len(FileSet(copy / "DICOMDIR")) == len(files) + 1
    shutil.rmtree(copy)
    # No dciodvfy error that the source did not already have.
    by_uid = _sources_by_uid(sources)
    for path in files[::every]:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        new_errors = dciodvfy_errors(dciodvfy, path) - dciodvfy_errors(dciodvfy, by_uid[uid])
        assert not new_errors, (path, by_uid[uid], new_errors)
    readme = (dest / "README.TXT").read_bytes()
    readme.decode("ascii")
    assert b"DiscBridge" in readme


def test_pydicom_samples(tmp_path: Path) -> None:
    single = tmp_path / "single"
    single.mkdir()
    for name in SAMPLES:
        shutil.copyfile(pydicom_test_file(name), single / name)
    sources = [dicomdirtests_root(), single]
    before = [tree_hashes(s) for s in sources]
    plan, report = export(sources, tmp_path / "out", institution="Test Hospital",
                          contact="pacs@example.org", study_date="20000101")
    assert [tree_hashes(s) for s in sources] == before
    check_medium(tmp_path / "out", sources)
    # The file without group length got a new header + its unchanged body.
    meta_only = [f for f in plan.files if f.action == "meta"]
    for f in meta_only:
        out = (tmp_path / "out").joinpath(*f.file_id).read_bytes()
        body = f.src.local.read_bytes()[f.src.body_offset:]
        assert out.endswith(body) and IMPLEMENTATION_CLASS_UID.encode() in out[:400]
    # Unchanged conformant files are byte-for-byte copies.
    copies = [f for f in plan.files if f.action == "copy"]
    assert copies
    for f in copies[:10]:
        assert (tmp_path / "out").joinpath(*f.file_id).read_bytes() == f.src.local.read_bytes()
    assert report.verification.ok


def test_generated_corpus(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_corpus(src)
    before = tree_hashes(src)
    plan, report = export([src], tmp_path / "out", icons=True)
    assert tree_hashes(src) == before
    check_medium(tmp_path / "out", [src])
    assert report.changes and report.changes == plan.changes
    # A fixed file: file and record agree, the old value is in Original Attributes Sequence.
    change = next(c for c in plan.changes if c.attribute == "StudyID")
    ds = pydicom.dcmread(tmp_path / "out" / change.file)
    assert ds.StudyID == change.new
    item = ds.OriginalAttributesSequence[-1]
    assert item.ReasonForTheAttributeModification == "CORRECT"
    assert item.ModifyingSystem.startswith("DiscBridge")
    assert "StudyID" in item.ModifiedAttributesSequence[0]
    assert item.AttributeModificationDateTime
    fs = FileSet(tmp_path / "out" / "DICOMDIR")
    study_records = {str(i.StudyInstanceUID): i for i in fs}
    rec = study_records[str(ds.StudyInstanceUID)]
    assert rec.node.parent.parent.record_type == "STUDY"
    assert rec.node.parent.parent._record.StudyID == change.new
    # Non-ASCII names survive with their character sets (file and record).
    names = {str(pydicom.dcmread(p, stop_before_pixels=True).PatientName)
             for p in (tmp_path / "out").rglob("IM*")}
    assert "Иванов^Иван" in names and "Müller^Hans" in names
    assert any(n.startswith("Yamada^Tarou=山田") for n in names)
    # Icons: 64x64 MONOCHROME2 on IMAGE and SERIES records.
    leaf = next(iter(fs))
    icon = leaf.node._record.IconImageSequence[0]
    assert (icon.Rows, icon.Columns, icon.PhotometricInterpretation) == (64, 64, "MONOCHROME2")
    assert "IconImageSequence" in leaf.node.parent._record


LOSSLESS = ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
            "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "SC_rgb_small_odd_big_endian.dcm",
            "SC_rgb_rle.dcm"]


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_transcode_keeps_exact_pixels(tmp_path: Path, name: str) -> None:
    src = tmp_path / "src"
    write_compressed(src, [name])
    before = tree_hashes(src)
    plan, _ = export([src], tmp_path / "out")
    assert tree_hashes(src) == before
    (f,) = plan.files
    assert f.action == "transcode"
    out = pydicom.dcmread((tmp_path / "out").joinpath(*f.file_id))
    assert out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert out.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    orig = pydicom.dcmread(src / name)
    assert np.array_equal(out.pixel_array, orig.pixel_array)
    assert out.SOPInstanceUID == orig.SOPInstanceUID
    check_medium(tmp_path / "out", [src])


def test_lossy_source_keeps_lossy_flags(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_compressed(src, ["SC_rgb_jpeg_dcmtk.dcm", "JPGExtended.dcm"])
    plan, report = export([src], tmp_path / "out")
    assert len(report.transcodings) == 2
    for f in plan.files:
        out = pydicom.dcmread((tmp_path / "out").joinpath(*f.file_id), stop_before_pixels=True)
        assert out.LossyImageCompression == "01"
        assert out.LossyImageCompressionMethod == "ISO_10918_1"
        assert float(out.LossyImageCompressionRatio) > 1
    check_medium(tmp_path / "out", [src])


def test_jpeg_profile_keeps_jpeg_and_records_match(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_compressed(src, ["SC_rgb_jpeg_dcmtk.dcm", "MR_small_RLE.dcm"])
    plan, _ = export([src], tmp_path / "out", media="dvd")
    fs = FileSet(tmp_path / "out" / "DICOMDIR")
    for inst in fs:
        ds = inst.load()
        assert inst.ReferencedTransferSyntaxUIDInFile == ds.file_meta.TransferSyntaxUID
    kept = {f.target_ts for f in plan.files}
    assert kept == {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1"}


def test_transcoding_runs_in_worker_processes(tmp_path: Path) -> None:
    import os

    from app.core.export import worker as export_worker

    src = tmp_path / "src"
    src.mkdir()
    for n in range(export_worker.IN_PROCESS_MAX + 2):  # enough to start the pool
        ds = make_dataset(32, 32, InstanceNumber=str(n + 1))
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"  # Implicit VR: must be rewritten
        write_instance(src / f"i{n}.dcm", ds)
    opts = ExportOptions(sources=[src], dest=tmp_path / "out")
    plan = plan_export(opts, [medium_of(src)], capacity=CAP)
    assert {f.action for f in plan.files} == {"transcode"}
    results = export_worker.run_file_jobs(
        plan, plan.files, [], lambda f: str(tmp_path / f"w_{f.sop_uid}"), True, CancelToken(),
        lambda f, r: None)
    pids = {r.worker_pid for r in results.values()}
    assert os.getpid() not in pids and len(results) == len(plan.files)
    for f in plan.files:
        ds = pydicom.dcmread(tmp_path / f"w_{f.sop_uid}")
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"


def test_series_icon_is_the_middle_instance(tmp_path: Path) -> None:
    src = tmp_path / "src"
    series = make_dataset().SeriesInstanceUID
    study = make_dataset().StudyInstanceUID
    for n in range(3):  # distinct images: a gradient in different directions
        pixels = (np.indices((32, 32))[n % 2] * (40 + 50 * n)).astype(np.uint16)
        write_instance(src / f"i{n}.dcm", make_dataset(32, 32, pixels=pixels,
                                                        SeriesInstanceUID=series,
                                                        StudyInstanceUID=study,
                                                        InstanceNumber=str(3 - n)))
    export([src], tmp_path / "out", icons=True)
    fs = FileSet(tmp_path / "out" / "DICOMDIR")
    leaves = {int(i.InstanceNumber): i.node._record for i in fs}
    series_record = next(iter(fs)).node.parent._record
    series_icon = series_record.IconImageSequence[0].PixelData
    assert series_icon == leaves[2].IconImageSequence[0].PixelData
    assert series_icon != leaves[1].IconImageSequence[0].PixelData


def test_readme_has_no_patient_data(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_corpus(src)
    plan, _ = export([src], tmp_path / "out", institution="Test Hospital")
    readme = (tmp_path / "out" / "README.TXT").read_bytes().decode("ascii").upper()
    for p in plan.patients:
        assert p.patient_id.upper() not in readme
        family = (p.name or "").split("^")[0].upper()
        assert family not in readme


def test_xabc_keeps_jpeg_lossless_xa_with_128_icons(tmp_path: Path) -> None:
    """STD-XABC-CD: an XA image already JPEG Lossless SV1 is copied; icons are 128x128."""
    ds = pydicom.dcmread(pydicom_test_file("SC_rgb_jpeg_gdcm.dcm"))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.1"
    ds.Modality = "XA"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    ds.PatientID = ds.PatientID or "XA1"
    ds.StudyID = ds.StudyID or "1"
    src = tmp_path / "src"
    write_instance(src / "xa.dcm", ds)
    plan, report = export([src], tmp_path / "out", profile="STD-XABC-CD")
    (f,) = plan.files
    assert f.target_ts == "1.2.840.10008.1.2.4.70" and not report.transcodings
    rec = next(iter(FileSet(tmp_path / "out" / "DICOMDIR"))).node._record
    icon = rec.IconImageSequence[0]
    assert (icon.Rows, icon.Columns, icon.BitsAllocated) == (128, 128, 8)
    check_medium(tmp_path / "out", [src])


def test_corpus_on_a_usb_profile(tmp_path: Path) -> None:
    """STD-GEN-USB-JPEG: the H.3-2 keys (Rows, Columns, ...) go into the records."""
    src = tmp_path / "src"
    write_corpus(src)
    plan, report = export([src], tmp_path / "out", media="usb")
    assert plan.profile.name == "STD-GEN-USB-JPEG" and report.ok
    check_medium(tmp_path / "out", [src])
    rec = next(iter(FileSet(tmp_path / "out" / "DICOMDIR"))).node._record
    assert rec.Rows == 16 and rec.Columns == 16


def test_big_endian_lut_and_overlay_words_are_swapped(tmp_path: Path) -> None:
    """OW data other than Pixel Data (overlay data here) must be byte-swapped too."""
    ds = make_dataset(8, 8)
    ds.add_new(0x60000010, "US", 4)  # Overlay Rows
    ds.add_new(0x60000011, "US", 4)  # Overlay Columns
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", np.arange(16, dtype=np.uint16).tobytes())  # word data
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.2"
    src = tmp_path / "src"
    write_instance(src / "be.dcm", ds)  # pydicom writes it Big Endian
    raw_be = pydicom.dcmread(src / "be.dcm")
    plan, _ = export([src], tmp_path / "out")
    out = pydicom.dcmread((tmp_path / "out").joinpath(*plan.files[0].file_id))
    assert out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert np.array_equal(out.pixel_array, raw_be.pixel_array)
    words_be = np.frombuffer(raw_be[0x60003000].value, ">u2").tolist()  # as the source means
    assert np.frombuffer(out[0x60003000].value, "<u2").tolist() == words_be
    assert words_be != np.frombuffer(raw_be[0x60003000].value, "<u2").tolist()
