"""Invalid Study/Series/SOP Instance UIDs: replaced by 2.25 UIDs in copy and record alike."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest

from app.core.export.engine import run_export
from app.core.export.options import ExportOptions
from app.core.export.uids import conformant_uid, is_valid_uid, uid_fixes
from app.core.medium.reader import open_medium
from tests.conftest import require_tool
from tests.export_helpers import dciodvfy_errors
from tests.media import make_dataset, write_instance

BAD = {"hex": "05fa52f0e599f17b8186ff18fcdf2b5570a52206a75c4d03afebf5c475dc8758",
       "root": "999.999.2.19941105.112000", "zeros": "1.2.840.0010.5", "long": "1.2." + "3" * 70,
       "empty-component": "1.2..3", "letters": "1.2.abc"}


@pytest.mark.parametrize("value", ["1.2.840.10008.1.2", "2.25.12345", "0.0", "1"])
def test_valid_uids_are_kept(value: str) -> None:
    assert is_valid_uid(value)
    assert uid_fixes({"SOPInstanceUID": value}.get) == {}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_invalid_uids_get_a_derived_conformant_uid(kind: str) -> None:
    old = BAD[kind]
    assert not is_valid_uid(old)
    new = conformant_uid(old)
    assert is_valid_uid(new) and new.startswith("2.25.") and len(new) <= 64
    assert conformant_uid(old) == new  # deterministic: every file of a study agrees
    assert conformant_uid(old + "9") != new
    (got, why), = uid_fixes({"StudyInstanceUID": old}.get).values()
    assert got == new and old in why


def test_export_replaces_them_in_file_and_record(tmp_path: Path) -> None:
    src = tmp_path / "src"
    study, series = BAD["root"], BAD["hex"]
    sops = [BAD["zeros"], "1.2.826.0.1.3680043.8.498.777"]
    for i, sop in enumerate(sops):
        ds = make_dataset(StudyInstanceUID=study, SeriesInstanceUID=series, SOPInstanceUID=sop,
                          InstanceNumber=i + 1, StudyID="1", SeriesNumber=1)
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_instance(src / f"f{i}.dcm", ds)
    dest = tmp_path / "out"
    report = run_export(ExportOptions(sources=[src], dest=dest, report=tmp_path / "r.json"))
    assert report.ok and report.verification.ok
    medium = open_medium(dest)
    (pat,) = medium.patients
    (st,) = pat.studies
    (se,) = st.series
    assert st.study_uid == conformant_uid(study) and se.series_uid == conformant_uid(series)
    assert {i.sop_instance_uid for i in se.instances} == {conformant_uid(sops[0]), sops[1]}
    changed = {(c.attribute, c.old) for c in report.changes}
    assert ("StudyInstanceUID", study) in changed and ("SOPInstanceUID", sops[0]) in changed
    for inst in se.instances:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(dest / inst.path)
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == \
            inst.sop_instance_uid
        assert ds.StudyInstanceUID == conformant_uid(study)
        kept = {e.keyword: e.value for item in ds.OriginalAttributesSequence
                for e in item.ModifiedAttributesSequence[0]}
        assert kept["StudyInstanceUID"] == study and kept["SeriesInstanceUID"] == series
    tool = require_tool("dciodvfy")
    assert dciodvfy_errors(tool, dest / "DICOMDIR") == set()
