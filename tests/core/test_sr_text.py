"""Structured reports rendered as text: every value type, nesting, hostile depth, bad input."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ComprehensiveSRStorage

from app.core.errors import RenderError
from app.core.imaging.sr_text import (
    format_datetime,
    format_name,
    is_structured_report,
    sr_lines,
    sr_to_text,
)
from tests.media import make_dataset, pydicom_test_file, write_instance


def code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def item(vt: str, concept: Dataset | None, rel: str = "CONTAINS", **values: object) -> Dataset:
    it = Dataset()
    it.RelationshipType = rel
    it.ValueType = vt
    if concept is not None:
        it.ConceptNameCodeSequence = [concept]
    for k, v in values.items():
        setattr(it, k, v)
    return it


def num(concept: Dataset, value: str, unit: Dataset) -> Dataset:
    mv = Dataset()
    mv.NumericValue = value
    mv.MeasurementUnitsCodeSequence = [unit]
    return item("NUM", concept, MeasuredValueSequence=[mv])


def make_sr_dataset() -> Dataset:
    """A small Comprehensive SR: findings with text, a code, a measurement, a date, a nested
    container and an image reference."""
    ds = make_dataset(Modality="SR", SeriesDescription="REPORT")
    for kw in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
               "SamplesPerPixel", "PhotometricInterpretation", "PixelData", "RescaleIntercept",
               "RescaleSlope", "RescaleType", "WindowCenter", "WindowWidth", "ImageType",
               "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient", "SliceThickness"):
        if kw in ds:
            delattr(ds, kw)
    ds.SOPClassUID = ComprehensiveSRStorage
    ds.file_meta.MediaStorageSOPClassUID = ComprehensiveSRStorage
    ds.PatientName = "Müller^Hans"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = [code("18748-4", "LN", "Diagnostic Imaging Report")]
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ContentDate, ds.ContentTime = "20240105", "143000"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ref.ReferencedSOPInstanceUID = "1.2.3.4.5"
    nested = item("CONTAINER", code("121071", "DCM", "Finding"), ContinuityOfContent="SEPARATE",
                  ContentSequence=[
                      item("TEXT", code("121071", "DCM", "Finding"),
                           TextValue="Small nodule\nright upper lobe"),
                      num(code("G-D7FE", "SRT", "Diameter"), "4.50",
                          code("mm", "UCUM", "millimeter")),
                      item("IMAGE", code("121080", "DCM", "Best illustration of finding"),
                           ReferencedSOPSequence=[ref]),
                  ])
    findings = item("CONTAINER", code("121070", "DCM", "Findings"), ContinuityOfContent="SEPARATE",
                    ContentSequence=[
                        item("CODE", code("121071", "DCM", "Finding"),
                             ConceptCodeSequence=[code("M-03010", "SRT", "Nodule")]),
                        item("DATE", code("111060", "DCM", "Study Date"), Date="20240102"),
                        nested,
                    ])
    ds.ContentSequence = [
        item("PNAME", code("121008", "DCM", "Person Observer Name"), rel="HAS OBS CONTEXT",
             PersonName="Smith^Anna^^Dr"),
        findings,
        item("CONTAINER", code("121072", "DCM", "Impressions"), ContinuityOfContent="SEPARATE",
             ContentSequence=[item("TEXT", code("121073", "DCM", "Impression"),
                                   TextValue="No acute findings.")]),
    ]
    return ds


def test_every_value_type_and_nesting_is_rendered(tmp_path: Path) -> None:
    src = write_instance(tmp_path / "SR1", make_sr_dataset())
    text = sr_to_text(src, "SR1")
    lines = text.splitlines()
    assert lines[0] == "Diagnostic Imaging Report"
    assert lines[1] == "=" * len(lines[0])
    assert "Patient: Hans Müller" in lines
    assert "Content date: 2024-01-05 14:30:00" in lines
    assert "Completion: COMPLETE" in lines
    assert "[context] Person Observer Name: Dr Anna Smith" in lines
    # Top-level sections are underlined headings; their content is indented one level.
    i = lines.index("Findings")
    assert lines[i + 1] == "--------"
    assert lines[i + 2] == "    Finding: Nodule"
    assert lines[i + 3] == "    Study Date: 2024-01-02"
    # Nested container: heading at level 1, its items at level 2; multi-line text continues.
    assert "    Finding" in lines
    j = lines.index("        Finding: Small nodule")
    assert lines[j + 1] == "            right upper lobe"
    assert lines[j + 2] == "        Diameter: 4.5 mm"
    assert lines[j + 3] == "        Best illustration of finding: CT Image Storage 1.2.3.4.5"
    k = lines.index("Impressions")
    assert lines[k + 2] == "    Impression: No acute findings."
    assert k > j


def test_lines_carry_depth_and_kind() -> None:
    lines = sr_lines(make_sr_dataset())
    kinds = [(ln.depth, ln.kind, ln.text) for ln in lines]
    assert kinds[0] == (0, "title", "Diagnostic Imaging Report")
    assert (0, "heading", "Findings") in kinds
    assert (1, "heading", "Finding") in kinds
    assert (2, "item", "Diameter: 4.5 mm") in kinds


def test_pydicom_sample_reports() -> None:
    text = sr_to_text(pydicom_test_file("test-SR.dcm"))
    assert text.startswith("Diagnosis\n=========\n")
    assert "Verified by: Jörg Riesmeier, OFFIS e.V., 2001-02-13 18:47:46" in text
    assert "Diameter: 3 Length Unit" in text
    assert "[acquisition context] Date: 2000-12-06" in text
    assert "(see item 1.3.2)" in text  # by-reference relationship
    basic = sr_to_text(pydicom_test_file("reportsi.dcm"))
    assert "Section Heading\n---------------\n    Report Text: Enter text" in basic


def test_hostile_depth_renders_without_recursion_error() -> None:
    ds = make_sr_dataset()
    leaf = item("TEXT", code("1", "99X", "Deep"), TextValue="bottom")
    for _ in range(5000):
        leaf = item("CONTAINER", code("2", "99X", "Level"), ContentSequence=[leaf])
    ds.ContentSequence = [leaf]
    t0 = time.monotonic()
    lines = sr_lines(ds)
    assert time.monotonic() - t0 < 5
    assert lines[-1].text == "Deep: bottom"
    assert max(ln.depth for ln in lines) == 32  # capped indentation


def test_not_a_report_is_refused_by_name() -> None:
    ds = make_dataset()
    assert not is_structured_report(ds)
    with pytest.raises(RenderError, match="IM000001: not a structured report"):
        sr_to_text(ds, "IM000001")


def test_malformed_items_do_not_crash() -> None:
    ds = make_sr_dataset()
    odd = Dataset()  # no value type, no concept, empty sequences
    bad_num = item("NUM", code("1", "99X", "Size"), MeasuredValueSequence=Sequence([]))
    ds.ContentSequence = [odd, bad_num, item("FOO", None)]
    text = sr_to_text(ds)
    assert "(empty item)" in text
    assert "Size: (no value)" in text
    assert "(foo)" in text


def test_formatters() -> None:
    assert format_name("Yamada^Tarou=山田^太郎") == "Tarou Yamada (山田 太郎)"
    assert format_datetime("20240102101500.123+0100") == "2024-01-02 10:15:00 +0100"
    assert format_datetime("2024") == "2024"
