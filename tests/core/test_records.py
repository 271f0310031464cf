"""Directory record keys (STANDARDS.md §2): record types, key tables, values, charsets."""

from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.fileset import _FOUR_LEVEL_SOP_CLASSES
from pydicom.sequence import Sequence
from pydicom.uid import (
    BasicTextSRStorage,
    ComprehensiveSRStorage,
    CTImageStorage,
    EncapsulatedPDFStorage,
    EnhancedCTImageStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    KeyObjectSelectionDocumentStorage,
    RTIonPlanStorage,
    RTPlanStorage,
    TwelveLeadECGWaveformStorage,
)

from app.core.dicomdir import records
from app.core.dicomdir.profiles import get_profile
from app.core.dicomdir.records import (
    leaf_keys,
    patient_keys,
    record_type_for,
    required_keys,
    series_keys,
    study_keys,
)
from tests.media import make_dataset


def test_record_type_table_agrees_with_pydicom() -> None:
    # pydicom's table is a cross-check: every class it knows maps to the same record type here.
    for sop, rtype in _FOUR_LEVEL_SOP_CLASSES.items():
        assert record_type_for(sop) == rtype, sop


@pytest.mark.parametrize(("sop", "rtype"), [
    (CTImageStorage, "IMAGE"), (EnhancedCTImageStorage, "IMAGE"), (None, "IMAGE"),
    ("1.2.3.4.5", "IMAGE"), (BasicTextSRStorage, "SR DOCUMENT"),
    (ComprehensiveSRStorage, "SR DOCUMENT"), (KeyObjectSelectionDocumentStorage, "KEY OBJECT DOC"),
    (GrayscaleSoftcopyPresentationStateStorage, "PRESENTATION"),
    (TwelveLeadECGWaveformStorage, "WAVEFORM"), (RTPlanStorage, "RT PLAN"),
    (RTIonPlanStorage, "RT PLAN"),  # DCMTK maps Ion plans too (pydicom only via RTPlanLabel)
    (EncapsulatedPDFStorage, "ENCAP DOC"), ("1.2.840.10008.5.1.4.1.1.104.4", "ENCAP DOC"),
    ("1.2.840.10008.5.1.4.1.1.481.10", "RADIOTHERAPY"), ("1.2.840.10008.5.1.4.1.1.481.23", "IMAGE"),
    ("1.2.840.10008.5.1.4.1.1.4.2", "SPECTROSCOPY"), ("1.2.840.10008.5.1.4.1.1.66", "RAW DATA"),
    ("1.2.840.10008.5.1.4.1.1.66.1", "REGISTRATION"), ("1.2.840.10008.5.1.4.1.1.67", "VALUE MAP"),
    ("1.2.840.10008.5.1.4.1.1.78.8", "MEASUREMENT"), ("1.2.840.10008.5.1.4.38.1", "HANGING PROTOCOL"),
])
def test_record_type_for(sop: str | None, rtype: str) -> None:
    assert record_type_for(sop) == rtype


def test_required_keys_basic_levels() -> None:
    assert ("PatientID", "1") in required_keys("PATIENT")
    assert ("PatientName", "2") in required_keys("PATIENT")
    study = dict(required_keys("STUDY"))
    assert study["StudyDate"] == study["StudyTime"] == study["StudyID"] == "1"
    assert study["StudyDescription"] == study["AccessionNumber"] == "2"
    assert study["StudyInstanceUID"] == "1"
    series = dict(required_keys("series"))
    assert series["Modality"] == series["SeriesInstanceUID"] == series["SeriesNumber"] == "1"
    assert dict(required_keys("IMAGE"))["InstanceNumber"] == "1"
    sr = dict(required_keys("SR DOCUMENT"))
    for kw in ("InstanceNumber", "CompletionFlag", "VerificationFlag", "ContentDate",
               "ContentTime", "ConceptNameCodeSequence"):
        assert sr[kw] == "1"
    assert dict(required_keys("RAW DATA"))["InstanceNumber"] == "2"
    assert dict(required_keys("ENCAP DOC"))["MIMETypeOfEncapsulatedDocument"] == "1"
    assert dict(required_keys("PRESENTATION"))["ContentLabel"] == "1"
    with pytest.raises(ValueError, match="unknown directory record type"):
        required_keys("NONSENSE")


def test_required_keys_with_profiles() -> None:
    dvd = get_profile("STD-GEN-DVD-JPEG")
    image = dict(required_keys("IMAGE", dvd))
    assert image["Rows"] == image["Columns"] == image["InstanceNumber"] == "1"
    assert image["FrameOfReferenceUID"] == "1C"
    assert dict(required_keys("PATIENT", dvd))["PatientBirthDate"] == "1C"
    xa = get_profile("STD-XABC-CD")
    assert dict(required_keys("PATIENT", xa))["PatientBirthDate"] == "2"  # overrides Type 3
    assert dict(required_keys("IMAGE", xa))["ImageType"] == "1"
    # Profile keys are for IMAGE records: an SR leaf keeps its own keys.
    assert "Rows" not in dict(required_keys("SR DOCUMENT", dvd))
    assert required_keys("IMAGE") == required_keys("IMAGE", get_profile("STD-GEN-CD"))


def test_patient_study_series_values_and_type2() -> None:
    ds = make_dataset(StudyDescription=None, AccessionNumber=None, SeriesDescription="AX")
    p = patient_keys(ds)
    assert p.PatientID == "PID001" and str(p.PatientName) == "Test^Patient"
    assert "SpecificCharacterSet" not in p
    st = study_keys(ds)
    # Type 2 keys absent in the instance are present, empty.
    assert "StudyDescription" in st and st.StudyDescription in (None, "")
    assert "AccessionNumber" in st
    assert st.StudyInstanceUID == ds.StudyInstanceUID and st.StudyID == "1"
    se = series_keys(ds)
    assert se.Modality == "CT" and se.SeriesDescription == "AX" and se.SeriesNumber == 1
    tags = [e.tag for e in st]
    assert tags == sorted(tags)


def test_type1_missing_names_file_and_key() -> None:
    ds = make_dataset(StudyID=None)
    with pytest.raises(ValueError) as err:
        study_keys(ds, source="PA001/ST001/SE001/IM000001")
    msg = str(err.value)
    assert "PA001/ST001/SE001/IM000001" in msg and "StudyID" in msg and "(0020,0010)" in msg
    with pytest.raises(ValueError, match="PatientID"):
        patient_keys(make_dataset(PatientID=""))
    with pytest.raises(ValueError, match="InstanceNumber"):
        leaf_keys(make_dataset(InstanceNumber=None))


def test_type3_dropped_when_absent_and_1c_copied_when_present() -> None:
    ds = make_dataset(PatientSex=None, NumberOfFrames=None)
    p = patient_keys(ds)
    assert "PatientSex" not in p and p.PatientBirthDate == "19700101"
    img = leaf_keys(ds, "IMAGE", get_profile("STD-GEN-USB-J2K"))
    assert img.Rows == 8 and img.Columns == 8
    assert list(img.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert img.FrameOfReferenceUID == ds.FrameOfReferenceUID
    assert "NumberOfFrames" not in img and "CalibrationImage" not in img
    with pytest.raises(ValueError, match="Rows"):
        leaf_keys(make_dataset(Rows=None), "IMAGE", get_profile("STD-GEN-DVD-JPEG"))
    # XABC: Calibration Image is Type 2 -> present though absent in the instance.
    xa = leaf_keys(ds, "IMAGE", get_profile("STD-XABC-CD"))
    assert "CalibrationImage" in xa and not xa.CalibrationImage


def test_enhanced_object_geometry_from_shared_groups() -> None:
    pos, ori, pix = Dataset(), Dataset(), Dataset()
    pos.ImagePositionPatient = [1, 2, 3]
    ori.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    pix.PixelSpacing = [0.5, 0.5]
    pix.SliceThickness = 1
    shared = Dataset()
    shared.PlanePositionSequence = Sequence([pos])
    shared.PlaneOrientationSequence = Sequence([ori])
    shared.PixelMeasuresSequence = Sequence([pix])
    ds = make_dataset(SOPClassUID=EnhancedCTImageStorage, ImagePositionPatient=None,
                      ImageOrientationPatient=None, PixelSpacing=None, NumberOfFrames=2)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    img = leaf_keys(ds, None, get_profile("STD-GEN-DVD-JPEG"))
    assert [float(v) for v in img.ImagePositionPatient] == [1, 2, 3]
    assert [float(v) for v in img.PixelSpacing] == [0.5, 0.5]
    assert img.NumberOfFrames == 2


def test_charset_only_when_the_record_needs_it() -> None:
    ds = make_dataset(SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Hans",
                      StudyDescription="CT KOPF")
    assert patient_keys(ds).SpecificCharacterSet == "ISO_IR 100"
    assert "SpecificCharacterSet" not in study_keys(ds)  # ASCII only
    assert "SpecificCharacterSet" not in leaf_keys(ds)
    ds2 = make_dataset(SpecificCharacterSet="ISO_IR 100", StudyDescription="Schädel")
    assert study_keys(ds2).SpecificCharacterSet == "ISO_IR 100"
    forced = patient_keys(ds, charset="ISO_IR 192")
    assert forced.SpecificCharacterSet == "ISO_IR 192"
    # Non-ASCII text without a declared charset: declared as UTF-8 in the record.
    undeclared = make_dataset(PatientName="Zoë^Anne")
    assert patient_keys(undeclared).SpecificCharacterSet == records.UTF8


def _code(value: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, "DCM", meaning
    return c


def test_sr_keeps_only_concept_modifiers() -> None:
    mod, other = Dataset(), Dataset()
    mod.RelationshipType, mod.ValueType = "HAS CONCEPT MOD", "CODE"
    mod.ConceptNameCodeSequence = Sequence([_code("121049", "Language of Content")])
    other.RelationshipType, other.ValueType, other.TextValue = "CONTAINS", "TEXT", "big finding"
    ds = make_dataset(SOPClassUID=BasicTextSRStorage, Modality="SR", CompletionFlag="COMPLETE",
                      VerificationFlag="UNVERIFIED", ContentDate="20240102",
                      ContentTime="101600")
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "Diagnostic Imaging Report")])
    ds.ContentSequence = Sequence([other, mod])
    rec = leaf_keys(ds)
    assert rec.CompletionFlag == "COMPLETE" and rec.ContentDate == "20240102"
    assert len(rec.ContentSequence) == 1
    assert rec.ContentSequence[0].RelationshipType == "HAS CONCEPT MOD"
    ds.ContentSequence = Sequence([other])
    assert "ContentSequence" not in leaf_keys(ds)
    del ds.VerificationFlag
    with pytest.raises(ValueError, match="VerificationFlag"):
        leaf_keys(ds)


def test_sr_verification_datetime_from_verifying_observers() -> None:
    first, last = Dataset(), Dataset()
    first.VerificationDateTime, first.VerifyingObserverName = "20240102120000", "Doe^J"
    last.VerificationDateTime, last.VerifyingObserverName = "20240103090000", "Roe^R"
    ds = make_dataset(SOPClassUID=BasicTextSRStorage, Modality="SR", CompletionFlag="COMPLETE",
                      VerificationFlag="VERIFIED", ContentDate="20240102", ContentTime="1016")
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "Diagnostic Imaging Report")])
    ds.VerifyingObserverSequence = Sequence([first, last])
    assert leaf_keys(ds).VerificationDateTime == "20240103090000"
    del ds.VerifyingObserverSequence
    assert "VerificationDateTime" not in leaf_keys(ds)
