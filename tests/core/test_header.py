"""read_header: header-only, tolerant reads; values checked against pydicom's full parse."""

from __future__ import annotations

import io
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from app.core.dicom.header import HEADER_KEYWORDS, Header, read_header
from app.core.errors import NotDicom, TruncatedFile
from tests import dicomdir_bytes as db
from tests.media import dicomdirtests_root, make_dataset, pydicom_test_file


class CountingReader(io.BytesIO):
    """A stream that counts the bytes read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, n: int | None = -1) -> bytes:  # type: ignore[override]
        out = super().read(n)
        self.bytes_read += len(out)
        return out


def header_of(data: bytes, name: str = "F") -> Header:
    return read_header(io.BytesIO(data), name)


def to_bytes(ds: Any, **kw: Any) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, **kw)
    return buf.getvalue()


def pydicom_value(ds: Any, kw: str) -> str | None:
    elem = ds.get(kw)
    if elem is None or elem == "":
        return None
    if isinstance(elem, MultiValue | list):
        return "\\".join(str(v) for v in elem) or None
    return str(elem).strip() or None


# -- agreement with pydicom ------------------------------------------------------------------

PYDICOM_FILES = [
    "CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
    "MR_small_expb.dcm", "ExplVR_BigEnd.dcm", "ExplVR_BigEndNoMeta.dcm",
    "ExplVR_LitEndNoMeta.dcm", "no_meta_group_length.dcm",
    "meta_missing_tsyntax.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm",
    "rtdose.dcm", "rtdose_rle.dcm", "rtplan.dcm", "rtstruct.dcm", "test-SR.dcm",
    "waveform_ecg.dcm", "UN_sequence.dcm", "nested_priv_SQ.dcm", "priv_SQ.dcm",
    "image_dfl.dcm", "emri_small.dcm", "liver_1frame.dcm", "reportsi.dcm", "badVR.dcm",
    "empty_charset_LEI.dcm",
]
CHARSET_FILES = ["chrArab.dcm", "chrFren.dcm", "chrFrenMulti.dcm", "chrGerm.dcm",
                 "chrGreek.dcm", "chrH31.dcm", "chrH32.dcm", "chrHbrw.dcm", "chrI2.dcm",
                 "chrJapMulti.dcm", "chrJapMultiExplicitIR6.dcm", "chrKoreanMulti.dcm",
                 "chrRuss.dcm", "chrX1.dcm", "chrX2.dcm"]
COMPARED = ["SOPClassUID", "SOPInstanceUID", "PatientName", "PatientID", "PatientBirthDate",
            "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
            "AccessionNumber", "StudyDescription", "SeriesInstanceUID", "Modality",
            "SeriesNumber", "SeriesDescription", "InstanceNumber", "Rows", "Columns",
            "NumberOfFrames", "BitsAllocated", "PhotometricInterpretation", "ImageType",
            "ContentDate", "ContentTime", "MIMETypeOfEncapsulatedDocument",
            "SpecificCharacterSet", "InstitutionName", "ReferringPhysicianName"]


def _path(name: str) -> Path | None:
    from pydicom.data import get_charset_files, get_testdata_file

    if name.startswith("chr"):
        found = get_charset_files(name)
        return Path(found[0]) if found else None
    p = get_testdata_file(name, download=False)
    return Path(str(p)) if p else None


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", PYDICOM_FILES + CHARSET_FILES)
def test_values_agree_with_pydicom(name: str) -> None:
    path = _path(name)
    if path is None:
        pytest.skip(f"{name} not shipped with this pydicom")
    ds = dcmread(path, force=True)
    with path.open("rb") as fp:
        h = read_header(fp, name)
    for kw in COMPARED:
        want = pydicom_value(ds, kw)
        got = h.values.get(kw)
        if kw in ("PatientName", "ReferringPhysicianName") and want is not None:
            want = str(ds[kw].value)  # decoded Person Name, groups joined with '='
        assert got == want, (kw, got, want)
    has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    assert h.has_pixels == has_pixels
    assert h.charset_problem is None


def test_meta_and_get() -> None:
    path = pydicom_test_file("CT_small.dcm")
    ds = dcmread(path)
    h = read_header(path.open("rb"), "CT_small.dcm")
    assert h.meta["MediaStorageSOPInstanceUID"] == ds.file_meta.MediaStorageSOPInstanceUID
    assert h.meta["TransferSyntaxUID"] == ds.file_meta.TransferSyntaxUID
    assert h.meta["ImplementationClassUID"] == ds.file_meta.ImplementationClassUID
    assert h.get("TransferSyntaxUID") == ds.file_meta.TransferSyntaxUID
    assert h.get("PatientID") == ds.PatientID
    assert h.get("NoSuchKeyword", "x") == "x"
    assert h.transfer_syntax == ds.file_meta.TransferSyntaxUID
    assert h.has_preamble and h.has_meta and not h.ts_mismatch and not h.is_dicomdir


# -- tolerated layouts -----------------------------------------------------------------------

def _body(data: bytes) -> int:
    """Offset of the dataset after the File Meta (group length + 12 bytes after DICM)."""
    return 144 + struct.unpack_from("<I", data, 140)[0]


def _variants() -> list[Any]:
    ds = make_dataset(16, 16, PatientName="Müller^Hans", SpecificCharacterSet="ISO_IR 100")
    full = to_bytes(ds, enforce_file_format=True)
    no_meta = to_bytes(ds, implicit_vr=False, little_endian=True)  # no preamble, no meta
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    implicit = to_bytes(ds, enforce_file_format=True)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    big = to_bytes(ds, enforce_file_format=True)
    # The meta lies: it says Explicit VR LE, the body is Implicit VR LE (and vice versa).
    lying = full[:_body(full)] + implicit[_body(implicit):]
    lying2 = implicit[:_body(implicit)] + big[_body(big):]
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"  # Deflated, but written plain
    deflate_meta = to_bytes(ds, enforce_file_format=True)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    lying3 = deflate_meta[:_body(deflate_meta)] + full[_body(full):]
    meta_no_preamble = full[128:]        # DICM + meta, no preamble
    meta_no_prefix = full[132:]          # meta without DICM
    return [
        pytest.param(full, ds, None, id="standard"),
        pytest.param(no_meta, ds, None, id="no-preamble-no-meta"),
        pytest.param(implicit, ds, None, id="implicit"),
        pytest.param(big, ds, None, id="big-endian"),
        pytest.param(lying, ds, ImplicitVRLittleEndian, id="ts-lies-implicit-body"),
        pytest.param(lying2, ds, ExplicitVRBigEndian, id="ts-lies-big-endian-body"),
        pytest.param(lying3, ds, "1.2.840.10008.1.2.1", id="ts-says-deflated-body-plain"),
        pytest.param(meta_no_preamble, ds, None, id="dicm-at-0"),
        pytest.param(meta_no_prefix, ds, None, id="meta-no-dicm"),
        pytest.param(full[:128] + full[132:], ds, None, id="preamble-without-dicm"),
    ]


@pytest.mark.parametrize(("data", "ds", "real_ts"), _variants())
def test_layouts(data: bytes, ds: Any, real_ts: str | None) -> None:
    h = header_of(data)
    assert h.values["PatientName"] == "Müller^Hans"
    assert h.values["SOPInstanceUID"] == ds.SOPInstanceUID
    assert h.values["Rows"] == "16" and h.values["BitsAllocated"] == "16"
    assert h.values["ImageType"] == "ORIGINAL\\PRIMARY\\AXIAL"
    assert h.has_pixels
    assert h.pixel_length == 16 * 16 * 2
    assert h.pixel_offset is not None and h.pixel_offset + h.pixel_length == len(data)
    assert h.ts_mismatch == (real_ts is not None)
    if real_ts is not None:
        assert h.transfer_syntax == real_ts
        assert h.declared_transfer_syntax != real_ts


def test_reads_only_the_start_of_a_big_file() -> None:
    ds = make_dataset(512, 512)
    data = to_bytes(ds, enforce_file_format=True)
    fp = CountingReader(data)
    h = read_header(fp, "CT")
    assert h.has_pixels and h.values["Rows"] == "512"
    assert fp.bytes_read <= 16 * 1024
    assert len(data) > 500_000
    assert not h.truncated


def test_large_element_before_pixels_reads_more() -> None:
    ds = make_dataset(8, 8)
    ds.add_new(0x00091010, "LO", "PRIVATE")  # creator-less private, tolerated
    ds.add_new(0x00091011, "OB", b"\1" * 300_000)
    data = to_bytes(ds, enforce_file_format=True)
    fp = CountingReader(data)
    h = read_header(fp, "F")
    assert h.has_pixels and h.values["Rows"] == "8"
    assert fp.bytes_read >= 300_000


def test_no_pixels() -> None:
    ds = make_dataset(8, 8, PixelData=None)
    h = header_of(to_bytes(ds, enforce_file_format=True))
    assert not h.has_pixels and h.pixel_offset is None
    assert h.values["SOPInstanceUID"] == ds.SOPInstanceUID


def test_pixel_data_cut_short_is_flagged_not_raised() -> None:
    data = to_bytes(make_dataset(64, 64), enforce_file_format=True)
    h = header_of(data[:-100])
    assert h.has_pixels and h.truncated


def test_dicomdir_is_recognised() -> None:
    for data in (db.encode(db.simple_tree()), db.encode(db.simple_tree(), meta=False),
                 (dicomdirtests_root() / "DICOMDIR").read_bytes()):
        h = header_of(data)
        assert h.is_dicomdir and not h.has_pixels


def test_charset_problem_reported() -> None:
    ds = make_dataset(8, 8, SpecificCharacterSet="ISO_IR 192")
    data = to_bytes(ds, enforce_file_format=True)
    data = data.replace(b"Test^Patient", b"Test^\xff\xfetient")
    h = header_of(data)
    assert h.values["PatientName"] == "Test^\ufffd\ufffdtient"
    assert h.charset_problem is not None and "PatientName" in h.charset_problem


def test_extra_keywords() -> None:
    ds = make_dataset(8, 8)
    h = read_header(io.BytesIO(to_bytes(ds, enforce_file_format=True)), "F",
                    extra_keywords=("WindowCenter", "RescaleIntercept", "PixelSpacing"))
    assert float(h.values["WindowCenter"] or "nan") == 40
    assert float(h.values["RescaleIntercept"] or "nan") == -1024
    assert [float(v) for v in (h.values["PixelSpacing"] or "").split("\\")] == [1, 1]
    assert "WindowCenter" not in HEADER_KEYWORDS


# -- refused ---------------------------------------------------------------------------------

NOT_DICOM = [
    pytest.param(b"", id="empty"),
    pytest.param(b"<!DOCTYPE html><html><head><title>Viewer</title></head></html>\n" * 50,
                 id="html"),
    pytest.param(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(4000),
                 id="exe"),
    pytest.param(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00" + bytes(range(256)) * 10,
                 id="jpeg"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(3000), id="png"),
    pytest.param(b"[autorun]\r\nopen=viewer.exe\r\n", id="autorun"),
    pytest.param(bytes(128) + b"NOPE" + bytes(500), id="preamble-no-dicm"),
    pytest.param(b"PK\x03\x04" + bytes(range(256)) * 4, id="zip"),
]


@pytest.mark.parametrize("data", NOT_DICOM)
def test_not_dicom(data: bytes) -> None:
    with pytest.raises(NotDicom, match="^NAME: "):
        header_of(data, "NAME")


def test_truncated_header() -> None:
    data = to_bytes(make_dataset(8, 8), enforce_file_format=True)
    pixel_tag = data.index(struct.pack("<HH", 0x7FE0, 0x0010))
    raised = 0
    for cut in range(140, pixel_tag - 1, 5):
        try:
            header_of(data[:cut], "CUT")
        except TruncatedFile as exc:
            assert str(exc).startswith("CUT: ")
            raised += 1
    # Every cut inside the dataset (not on an element boundary) is a TruncatedFile.
    assert raised >= (pixel_tag - 140) // 5 * 0.8


def test_pydicom_truncated_sample() -> None:
    path = pydicom_test_file("rtplan_truncated.dcm")
    with pytest.raises(TruncatedFile):
        read_header(path.open("rb"), "rtplan_truncated.dcm")


def test_deflated() -> None:
    path = pydicom_test_file("image_dfl.dcm")
    ds = dcmread(path)
    h = read_header(path.open("rb"), "image_dfl.dcm")
    assert h.transfer_syntax == "1.2.840.10008.1.2.1.99"
    assert h.values["SOPInstanceUID"] == ds.SOPInstanceUID
    assert h.has_pixels


# -- the low-level element reader (app.core.dicom.elements) ----------------------------------------

def _el(tag: int, vr: str, value: bytes, *, little: bool = True, explicit: bool = True,
        length: int | None = None) -> bytes:
    e = "<" if little else ">"
    n = len(value) if length is None else length
    if not explicit:
        return struct.pack(e + "HHI", tag >> 16, tag & 0xFFFF, n) + value
    if vr in ("OB", "OW", "SQ", "UN", "UT", "UC", "UR", "OF", "OD", "OL", "OV", "SV", "UV"):
        return struct.pack(e + "HH2s2xI", tag >> 16, tag & 0xFFFF, vr.encode(), n) + value
    return struct.pack(e + "HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), n) + value


def _item(body: bytes, *, little: bool = True, undefined: bool = False) -> bytes:
    e = "<" if little else ">"
    if undefined:
        return (struct.pack(e + "HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + body
                + struct.pack(e + "HHI", 0xFFFE, 0xE00D, 0))
    return struct.pack(e + "HHI", 0xFFFE, 0xE000, len(body)) + body


@pytest.mark.parametrize("little", [True, False])
def test_element_reader_event_stream(little: bool) -> None:
    from app.core.dicom.elements import (
        EV_ELEM,
        EV_ITEM,
        EV_ITEM_END,
        EV_SQ,
        EV_SQ_END,
        UNDEFINED,
        ElementReader,
    )

    e = "<" if little else ">"
    seq_delim = struct.pack(e + "HHI", 0xFFFE, 0xE0DD, 0)
    inner = _el(0x00081150, "UI", b"1.2\0", little=little)
    sq = (_el(0x00081140, "SQ", b"", little=little, length=UNDEFINED)
          + _item(inner, little=little, undefined=True) + _item(inner, little=little)
          + seq_delim)
    # A UN-encoded sequence: Implicit VR Little Endian inside, whatever the file's encoding.
    un_inner = _el(0x00091002, "", b"ab", explicit=False)
    un = (_el(0x00091001, "UN", b"", little=little, length=UNDEFINED)
          + _item(un_inner, undefined=True) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    frags = (struct.pack(e + "HHI", 0xFFFE, 0xE000, 0) + struct.pack(e + "HHI", 0xFFFE, 0xE000, 4)
             + b"\1\2\3\4" + seq_delim)
    pixels = _el(0x7FE00010, "OB", b"", little=little, length=UNDEFINED) + frags
    data = (_el(0x00080016, "UI", b"1.2.3\0", little=little) + sq + un
            + _el(0x00090010, "LO", b"ACME", little=little) + pixels
            + _el(0xFFFCFFFC, "OB", b"\0\0", little=little))
    reader = ElementReader(data, little, True)
    events = [(k, t) for k, t, _vr, _o, _n, _p in reader.events()]
    assert events == [
        (EV_ELEM, 0x00080016), (EV_SQ, 0x00081140),
        (EV_ITEM, 0xFFFEE000), (EV_ELEM, 0x00081150), (EV_ITEM_END, 0),
        (EV_ITEM, 0xFFFEE000), (EV_ELEM, 0x00081150), (EV_ITEM_END, 0), (EV_SQ_END, 0),
        (EV_SQ, 0x00091001), (EV_ITEM, 0xFFFEE000), (EV_ELEM, 0x00091002), (EV_ITEM_END, 0),
        (EV_SQ_END, 0), (EV_ELEM, 0x00090010), (EV_ELEM, 0x7FE00010), (EV_ELEM, 0xFFFCFFFC),
    ]
    assert reader.stop_reason is None and not reader.truncated
    pix = [ev for ev in reader.events() if ev[1] == 0x7FE00010][0]
    assert pix[4] == UNDEFINED and data[pix[3]:pix[3] + 4] == struct.pack(e + "HH", 0xFFFE, 0xE000)
    # Stopping before Pixel Data, and reading only the top level.
    tags = [t for k, t, *_ in ElementReader(data, little, True).events(stop_tag=0x7FE00000)
            if k == EV_ELEM]
    assert tags[-1] == 0x00090010


def test_element_reader_limits_and_tolerance() -> None:
    from app.core.dicom.elements import EV_ELEM, ElementReader

    flat = b"".join(_el(0x00100010 + i, "LO", b"AB") for i in range(50))
    r = ElementReader(flat, max_elements=10)
    assert len(list(r.events())) == 10 and r.stop_reason == "too many elements"
    deep = (_el(0x00091010, "SQ", b"", length=0xFFFFFFFF)
            + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)) * 200
    r = ElementReader(deep, max_depth=16)
    list(r.events())
    assert r.stop_reason == "nesting too deep"
    # An implicit element inside an explicit dataset, and stray delimiters, are tolerated.
    mixed = (_el(0x00080016, "UI", b"1.2\0") + _el(0x00100010, "", b"Doe^J ", explicit=False)
             + struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + _el(0x00100020, "LO", b"ID"))
    got = [(t, vr) for k, t, vr, *_ in ElementReader(mixed).events() if k == EV_ELEM]
    assert got == [(0x00080016, "UI"), (0x00100010, "PN"), (0x00100020, "LO")]
    # Truncated inside a value: says so, yields nothing broken.
    r = ElementReader(flat[:25])
    assert len(list(r.events())) == 2 and r.truncated


def test_numeric_values() -> None:
    from app.core.dicom.elements import numeric_value

    assert numeric_value(struct.pack("<3H", 1, 2, 3), "US", 0, 6, True) == "1\\2\\3"
    assert numeric_value(struct.pack(">h", -5), "SS", 0, 2, False) == "-5"
    assert numeric_value(struct.pack("<f", 1.5), "FL", 0, 4, True) == "1.5"
    assert numeric_value(struct.pack("<d", -2.25), "FD", 0, 8, True) == "-2.25"
    assert numeric_value(struct.pack("<HH", 0x0010, 0x0020), "AT", 0, 4, True) == "(0010,0020)"
    assert numeric_value(b"\1", "US", 0, 1, True) is None
    assert numeric_value(b"", "US", 0, 0, True) is None


def test_undefined_length_sequence_before_pixels_in_header() -> None:
    ds = make_dataset(8, 8)
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    ds.ReferencedImageSequence = Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True
    data = to_bytes(ds, enforce_file_format=True)
    assert struct.pack("<HH2s2xI", 0x0008, 0x1140, b"SQ", 0xFFFFFFFF) in data
    h = header_of(data)
    assert h.has_pixels and h.values["SOPInstanceUID"] == ds.SOPInstanceUID
    assert h.values["InstanceNumber"] == ds.InstanceNumber


def test_threads_share_the_parsers_safely() -> None:
    """The GUI reads headers and DICOMDIRs on worker threads: same results as one thread."""
    from concurrent.futures import ThreadPoolExecutor

    from app.core.dicomdir.parse import parse_dicomdir

    blobs = [to_bytes(make_dataset(8, 8, PatientName=f"P{i}^Ü", SpecificCharacterSet="ISO_IR 100"),
                      enforce_file_format=True) for i in range(24)]
    ddir = db.encode(db.simple_tree(2, 1, 2, 5, charset="ISO_IR 100", name="Zoë"))

    def work(i: int) -> tuple[str | None, int]:
        h = header_of(blobs[i % len(blobs)])
        res = parse_dicomdir(ddir, "DICOMDIR")
        return h.values["PatientName"], sum(1 for p in res.patients for _ in p.instances())

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(work, range(96)))
    assert got == [(f"P{i % 24}^Ü", 20) for i in range(96)]


def test_zero_filled_files_are_cheap() -> None:
    """QA-7: zeros after DICM (unreadable sectors read back as zeros) cost nothing."""
    fp = CountingReader(bytes(128) + b"DICM" + bytes(64_000_000))
    t = time.perf_counter()
    with pytest.raises(NotDicom, match="zeros"):
        read_header(fp, "ZERO")
    assert time.perf_counter() - t < 0.5 and fp.bytes_read <= 16 * 1024
    data = to_bytes(make_dataset(8, 8), enforce_file_format=True)
    meta_end = 144 + struct.unpack_from("<I", data, 140)[0]
    with pytest.raises(TruncatedFile, match="zero-filled"):
        header_of(data[:meta_end] + bytes(1_000_000), "Z2")
    # Zeros after part of the dataset: what was read is kept, the file is flagged damaged.
    h = header_of(data[:meta_end + 300] + bytes(1_000_000), "Z3")
    assert h.truncated and not h.has_pixels
    assert h.values["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.2"


# -- the fast path gives what the general reader gives ---------------------------------------

def _general(data: bytes, name: str = "F") -> object:
    """The general reader's answer (Header fields, or the error it raises)."""
    from dataclasses import asdict

    from app.core.dicom.header import _read_general, _read_more
    from app.core.dicom.header_model import FIRST_CHUNK, _default_tags
    from app.core.errors import DiscBridgeError

    fp = io.BytesIO(data)
    buf, eof = _read_more(fp, b"", FIRST_CHUNK)
    try:
        return asdict(_read_general(fp, buf, eof, name, _default_tags())[0])
    except DiscBridgeError as exc:
        return f"{type(exc).__name__}: {exc}"


def _fast(data: bytes, name: str = "F") -> dict[str, Any] | None:
    from dataclasses import asdict

    from app.core.dicom.header_fast import fast_header
    from app.core.dicom.header_model import FIRST_CHUNK, _default_tags

    h = fast_header(data[:FIRST_CHUNK], name, _default_tags(), len(data) <= FIRST_CHUNK)
    return None if h is None else asdict(h)


def _mutants(data: bytes, rng: Any, count: int) -> list[bytes]:
    """Byte flips, insertions, deletions in the header part, and cuts (deterministic)."""
    out = []
    top = min(len(data), 1500)
    for k in range(count):
        d = bytearray(data)
        i = rng.randrange(128, top)
        if k % 4 == 0:
            d[i] = rng.randrange(256)
        elif k % 4 == 1:
            d[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        elif k % 4 == 2:
            del d[i:i + rng.randint(1, 6)]
        else:
            del d[rng.randrange(130, len(d)):]
        out.append(bytes(d))
    return out


def test_fast_path_agrees_with_the_general_reader() -> None:
    """Every file the fast path accepts (pydicom's samples, files built here with non-ASCII
    names, UN and sequence elements, and 1,500+ damaged variants of them) reads exactly as the
    general reader reads it; the standard layout takes the fast path."""
    import random

    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    rng = random.Random(20261126)
    built = []
    for cs, name in (("ISO_IR 100", "Müller^Hans"), ("ISO_IR 192", "Zoë^Ünal"),
                     (None, "Plain^Name"), ("\\ISO 2022 IR 87", "Yamada^Tarou")):
        kw = {"SpecificCharacterSet": cs} if cs else {}
        ds = make_dataset(16, 16, PatientName=name, **kw)
        ds.add_new(0x00091010, "LO", "PRIVATE")
        ds.add_new(0x00091011, "UN", b"\1\2\3\4")
        item = Dataset()
        item.ReferencedSOPInstanceUID = "1.2.3"
        ds.ReferencedImageSequence = Sequence([item])  # defined length once written
        built.append(to_bytes(ds, enforce_file_format=True))
        ds["ReferencedImageSequence"].is_undefined_length = True
        item.is_undefined_length_sequence_item = True
        built.append(to_bytes(ds, enforce_file_format=True))
    plain = to_bytes(make_dataset(16, 16), enforce_file_format=True)
    at = plain.index(b"\x08\x00\x16\x00UI", 132)  # a wanted key as UN: decoded per dictionary
    n = struct.unpack_from("<H", plain, at + 6)[0]
    built.append(plain[:at] + struct.pack("<HH2s2xI", 8, 0x16, b"UN", n) + plain[at + 8:])
    samples = [p.read_bytes() for p in (_path(n) for n in PYDICOM_FILES + CHARSET_FILES)
               if p is not None]
    accepted = compared = 0
    for data in built + samples:
        for variant in [data] + _mutants(data, rng, 40):
            fast = _fast(variant)
            compared += 1
            if fast is not None:
                accepted += 1
                assert fast == _general(variant), len(variant)
    assert compared > 1500 and accepted > 300
    for data in built:
        assert _fast(data) is not None


def test_fast_path_leaves_the_unusual_to_the_general_reader() -> None:
    ds = make_dataset(8, 8)
    standard = to_bytes(ds, enforce_file_format=True)
    assert _fast(standard) is not None
    body = _body(standard)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    implicit = to_bytes(ds, enforce_file_format=True)
    lying = standard[:body] + implicit[_body(implicit):]  # meta says explicit, body implicit
    swapped = bytearray(standard)  # two elements out of order
    a = body
    la = 8 + struct.unpack_from("<H", standard, a + 6)[0]
    b = a + la
    lb = 8 + struct.unpack_from("<H", standard, b + 6)[0]
    swapped[a:a + la + lb] = standard[b:b + lb] + standard[a:a + la]
    for data in (implicit, lying, bytes(swapped), standard[128:]):
        assert _fast(data) is None
        assert header_of(data).values  # the general reader still reads them
    assert _fast(standard[:body + 40]) is None
    with pytest.raises(TruncatedFile):
        header_of(standard[:body + 40])
