"""Header fixes as a byte-level splice (app/core/export/splice.py): the same file pydicom's
rewrite makes, value for value, with the body copied byte for byte and no worker process."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.sequence import Sequence

from app.core.export.engine import run_export
from app.core.export.options import ExportOptions
from app.core.export.plan import plan_export
from app.core.export.transcode import FileJob, process_file
from app.core.medium.reader import open_medium
from tests.conftest import require_tool
from tests.export_helpers import dciodvfy_errors
from tests.media import make_dataset, uid, write_instance


def quiet(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def sources(root: Path) -> list[Path]:
    """Files that need header fixes only: no Study ID, no Series Number, and more."""
    study = uid()
    out = []
    plain = [make_dataset(StudyInstanceUID=study, SeriesInstanceUID=uid(), InstanceNumber=i + 1,
                          rows=16, cols=16) for i in range(3)]
    for ds in plain:
        del ds.StudyID
        del ds.SeriesNumber
    # A Latin-1 name (the fix keeps it), an existing Original Attributes Sequence.
    old = Dataset()
    old.ModifiedAttributesSequence = Sequence([Dataset()])
    old.ModifiedAttributesSequence[0].PatientID = "OLD"
    old.AttributeModificationDateTime = "20200101120000"
    old.ModifyingSystem = "ELSEWHERE"
    old.SourceOfPreviousValues = ""
    old.ReasonForTheAttributeModification = "COERCE"
    latin = make_dataset(StudyInstanceUID=uid(), SeriesInstanceUID=uid(), rows=16, cols=16,
                         PatientName="Müller^Jürgen", SpecificCharacterSet="ISO_IR 100",
                         PatientID="L1")
    latin.OriginalAttributesSequence = Sequence([old])
    del latin.StudyID
    # An invalid SOP Instance UID: a new one in the File Meta and the dataset alike.
    bad_uid = make_dataset(StudyInstanceUID=uid(), SeriesInstanceUID=uid(), rows=16, cols=16,
                           PatientID="U1")
    bad_uid.SOPInstanceUID = "1.2.0003.4"
    del bad_uid.StudyID
    for n, ds in enumerate([*plain, latin, bad_uid]):
        if ds.SOPInstanceUID == "1.2.0003.4":
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(write_instance(root / f"f{n}.dcm", ds))
    # A real file in a compressed transfer syntax the DVD profile keeps (JPEG Baseline).
    jpeg = quiet(Path(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")))
    jpeg.SOPInstanceUID = jpeg.file_meta.MediaStorageSOPInstanceUID = uid()
    for keyword in ("StudyID", "SeriesNumber"):
        if keyword in jpeg:
            delattr(jpeg, keyword)
    jpeg.Modality = "OT"
    jpeg.save_as(root / "jpeg.dcm", enforce_file_format=True)
    out.append(root / "jpeg.dcm")
    return out


@pytest.mark.parametrize("profile", ["STD-GEN-CD", "STD-GEN-DVD-JPEG"])
def test_splice_equals_the_pydicom_rewrite(profile: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = sources(src)
    if profile == "STD-GEN-CD":
        files = files[:-1]
        (src / "jpeg.dcm").unlink()
    opts = ExportOptions(sources=[src], dest=tmp_path / "out", profile=profile,
                         report=tmp_path / "r.json")
    plan = plan_export(opts, [open_medium(src)])
    assert {f.action for f in plan.files} == {"splice"}, [(f.rel, f.action) for f in plan.files]
    report = run_export(opts)
    assert report.ok and report.verification.ok and report.worker_processes == 0
    out = tmp_path / "out"
    for f in plan.files:
        written = out.joinpath(*f.file_id)
        # pydicom's rewrite of the same plan entry (the path a splice replaces)
        ref = tmp_path / "ref" / f.rel
        ref.parent.mkdir(parents=True, exist_ok=True)
        process_file(FileJob(source=str(f.src.local), dest=str(ref), source_ts=f.source_ts,
                             target_ts=f.target_ts, fixes=dict(f.fixes), when=plan.created))
        got, want = quiet(written), quiet(ref)
        assert got.file_meta.MediaStorageSOPInstanceUID == want.file_meta.MediaStorageSOPInstanceUID
        assert got.file_meta.TransferSyntaxUID == want.file_meta.TransferSyntaxUID
        for elem in want:
            if elem.tag == 0x7FE00010:
                continue
            assert elem.tag in got, (f.rel, elem)
            assert got[elem.tag].value == elem.value, (f.rel, elem.keyword)
        assert {e.tag for e in got} == {e.tag for e in want}
        # the body after the header is the source's, byte for byte
        source = f.src.local.read_bytes()
        assert written.read_bytes().endswith(source[f.splice.offset:])
        assert got.PixelData == quiet(f.src.local).PixelData
        assert np.array_equal(got.pixel_array, quiet(f.src.local).pixel_array)
    tool = require_tool("dciodvfy")
    assert dciodvfy_errors(tool, out / "DICOMDIR") == set()


def test_what_a_splice_cannot_express_goes_to_pydicom(tmp_path: Path) -> None:
    """A clash resolution (Other Patient IDs Sequence) is not a splice: the worker rewrites."""
    src = tmp_path / "src"
    a = make_dataset(PatientID="X", PatientName="Anna^A", PatientBirthDate="19800101")
    b = make_dataset(PatientID="X", PatientName="Berta^B", PatientBirthDate="19700101")
    for n, ds in enumerate((a, b)):
        write_instance(src / f"f{n}.dcm", ds)
    opts = ExportOptions(sources=[src], dest=tmp_path / "out", on_id_clash="separate",
                         report=tmp_path / "r.json")
    plan = plan_export(opts, [open_medium(src)])
    actions = sorted(f.action for f in plan.files)
    assert "rewrite" in actions
    report = run_export(opts)
    assert report.ok and report.verification.ok
