"""Encapsulated documents: extraction to a temporary file, validity of the PDF, hostile input."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image
from pydicom import Dataset
from pydicom.uid import EncapsulatedPDFStorage

from app.core.errors import RenderError
from app.core.imaging.encapsulated import document_kind, extract_document, is_encapsulated_document
from tests.media import make_dataset, write_instance


def make_pdf_bytes(text_colour: int = 90) -> bytes:
    """A real one-page PDF written by Pillow's PDF writer (not hand-made bytes)."""
    buf = io.BytesIO()
    Image.new("L", (32, 24), text_colour).save(buf, format="PDF")
    return buf.getvalue()


def make_pdf_dataset(pdf: bytes | None = None, **overrides: object) -> Dataset:
    """An Encapsulated PDF instance (PS3.3 A.45.1) carrying ``pdf`` (odd lengths padded)."""
    pdf = make_pdf_bytes() if pdf is None else pdf
    ds = make_dataset(Modality="DOC", SeriesDescription="REPORT PDF")
    for kw in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
               "SamplesPerPixel", "PhotometricInterpretation", "PixelData", "RescaleIntercept",
               "RescaleSlope", "RescaleType", "WindowCenter", "WindowWidth", "ImageType",
               "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient", "SliceThickness"):
        if kw in ds:
            delattr(ds, kw)
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.file_meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    ds.DocumentTitle = "Discharge letter"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.BurnedInAnnotation = "YES"
    ds.ConceptNameCodeSequence = []
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    for key, value in overrides.items():
        setattr(ds, key, value)
    return ds


def assert_valid_pdf(data: bytes) -> None:
    """Header, EOF marker, and a startxref offset that lands on the cross-reference table."""
    assert data.startswith(b"%PDF-1."), data[:16]
    assert data.rstrip(b"\r\n").endswith(b"%%EOF")
    m = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data)
    assert m is not None, "no startxref"
    offset = int(m.group(1))
    assert data[offset:offset + 4] == b"xref", data[offset:offset + 20]
    assert b"/Type /Catalog" in data or b"/Type/Catalog" in data


def test_pdf_extracted_from_file_is_the_same_valid_pdf(tmp_path: Path) -> None:
    pdf = make_pdf_bytes()
    src = write_instance(tmp_path / "src" / "PDF1", make_pdf_dataset(pdf))
    out = tmp_path / "out"
    out.mkdir()
    doc = extract_document(src, "PDF1", folder=out)
    assert doc.kind == "PDF" and doc.path.suffix == ".pdf"
    assert doc.path.parent == out
    data = doc.path.read_bytes()
    assert data == pdf  # padding removed, nothing else changed
    assert_valid_pdf(data)
    assert doc.title == "Discharge letter"
    assert doc.size == len(pdf)


def test_odd_length_pdf_without_length_attribute_loses_its_pad_byte(tmp_path: Path) -> None:
    pdf = make_pdf_bytes()
    if len(pdf) % 2 == 0:
        pdf += b"\n"  # make it odd: the stored value then carries a NUL pad
    ds = make_pdf_dataset(pdf)
    del ds.EncapsulatedDocumentLength
    assert len(ds.EncapsulatedDocument) % 2 == 0
    doc = extract_document(ds, "x", folder=tmp_path)
    assert doc.path.read_bytes() == pdf
    assert_valid_pdf(doc.path.read_bytes())


def test_each_extraction_gets_a_new_file_in_the_private_temp_folder() -> None:
    ds = make_pdf_dataset()
    a = extract_document(ds, "a")
    b = extract_document(ds, "b")
    try:
        assert a.path != b.path
        assert a.path.parent == b.path.parent
        assert a.path.parent.name.startswith("discbridge-docs-")
    finally:
        a.path.unlink()
        b.path.unlink()


def test_cda_kind_by_mime_type(tmp_path: Path) -> None:
    ds = make_pdf_dataset(b"<ClinicalDocument/>\n", MIMETypeOfEncapsulatedDocument="text/xml",
                          SOPClassUID="1.2.840.10008.5.1.4.1.1.104.2")
    assert document_kind(ds) == ("CDA", ".xml")
    doc = extract_document(ds, "cda", folder=tmp_path)
    assert doc.path.suffix == ".xml"
    assert doc.path.read_bytes() == b"<ClinicalDocument/>\n"


@pytest.mark.parametrize("payload", [b"", b"not a pdf at all", b"\x00" * 64])
def test_broken_pdf_payload_is_refused_by_name(tmp_path: Path, payload: bytes) -> None:
    ds = make_pdf_dataset(payload)
    if not payload:
        ds.EncapsulatedDocument = b""
    with pytest.raises(RenderError, match="LETTER1"):
        extract_document(ds, "LETTER1", folder=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_image_is_not_an_encapsulated_document(tmp_path: Path) -> None:
    ds = make_dataset()
    assert not is_encapsulated_document(ds)
    with pytest.raises(RenderError, match="no encapsulated document"):
        extract_document(ds, "IM1", folder=tmp_path)


def test_garbage_file_raises_render_error(tmp_path: Path) -> None:
    bad = tmp_path / "junk"
    bad.write_bytes(b"\xff" * 300)
    with pytest.raises(RenderError, match="junk"):
        extract_document(bad, "junk", folder=tmp_path)
