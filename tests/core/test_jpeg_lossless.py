"""JPEG Lossless SV1 encoding through python-gdcm (app/core/jpeg_lossless.py).

Every test that encodes needs python-gdcm: skipped with a reason when it is not installed,
a failure under CI=true. Pixel values are always read back with pylibjpeg (never pydicom's gdcm
plugin, which can abort the process) and, independently, with DCMTK's dcmdjpeg.
"""

from __future__ import annotations

import copy
import io
import struct
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    XRayAngiographicImageStorage,
)

import app.core.imaging.jpeg_lossless as jl
from app import IMPLEMENTATION_CLASS_UID
from app.core.imaging.jpeg_lossless import (
    JPEG_LOSSLESS_SV1,
    apply_jpeg_lossless_sv1,
    can_encode_jpeg_lossless_sv1,
    encode_jpeg_lossless_sv1,
    jpeg_lossless_sv1_refusal,
)
from tests.conftest import IN_CI, require_tool
from tests.media import make_dataset, pydicom_test_file

PIXEL_TAGS = {0x7FE00010, 0x7FE00001, 0x7FE00002, 0x7FE00008, 0x7FE00009}


@pytest.fixture
def needs_gdcm() -> None:
    if not can_encode_jpeg_lossless_sv1():
        if IN_CI:
            pytest.fail("python-gdcm is required under CI=true (pip install python-gdcm)")
        pytest.skip("python-gdcm not installed: no JPEG Lossless SV1 encoder "
                    "(pip install python-gdcm)")


gdcm = pytest.mark.usefixtures("needs_gdcm")


# --- building test images -------------------------------------------------------------------

def image(seed: int, shape: tuple[int, ...], bits_stored: int, signed: bool) -> np.ndarray:
    """Smooth structure + noise spanning the whole range of Bits Stored (extremes included)."""
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed \
        else (0, (1 << bits_stored) - 1)
    ramp = np.linspace(0.0, 1.0, int(np.prod(shape))).reshape(shape)
    values = lo + ramp * (hi - lo) + rng.normal(0, (hi - lo) / 20, shape)
    values = np.clip(np.rint(values), lo, hi).astype(np.int64)
    values.flat[0], values.flat[-1] = lo, hi
    return values


def xa_dataset(rows: int = 512, cols: int = 512, *, frames: int = 1, bits_allocated: int = 8,
               bits_stored: int = 8, signed: bool = False, samples: int = 1,
               photometric: str = "MONOCHROME2", planar: int = 0,
               seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """An XA-like instance in Explicit VR LE and its pixel values (frames, rows, cols[, 3])."""
    shape = (frames, rows, cols) + ((3,) if samples == 3 else ())
    values = image(seed, shape, bits_stored, signed)
    dtype = np.dtype(("<i" if signed else "<u") + str(bits_allocated // 8))
    pixels = values.astype(dtype)
    ds = make_dataset(
        rows, cols, SOPClassUID=XRayAngiographicImageStorage, Modality="XA",
        ImageType=["ORIGINAL", "PRIMARY", "SINGLE PLANE"], BitsAllocated=bits_allocated,
        BitsStored=bits_stored, HighBit=bits_stored - 1, PixelRepresentation=int(signed),
        SamplesPerPixel=samples, PhotometricInterpretation=photometric,
        RescaleIntercept=None, RescaleSlope=None, RescaleType=None, WindowCenter=None,
        WindowWidth=None, SliceThickness=None, ImagePositionPatient=None,
        ImageOrientationPatient=None, FrameOfReferenceUID=None,
        PositionReferenceIndicator=None, PixelIntensityRelationship="LIN",
        RadiationSetting="GR", PositionerPrimaryAngle=0, PositionerSecondaryAngle=0,
        ReferringPhysicianName="", PatientOrientation="", Laterality="")
    ds.file_meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
    if samples == 3:
        ds.PlanarConfiguration = planar
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameTime = 33.3
        ds.FrameIncrementPointer = 0x00181063
    if samples == 3 and planar == 1:  # colour-by-plane: R plane, G plane, B plane per frame
        raw = np.ascontiguousarray(np.moveaxis(pixels, -1, 1)).tobytes()
    else:
        raw = pixels.tobytes()
    ds.PixelData = raw + b"\x00" * (len(raw) % 2)
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"
    return ds, (values if frames > 1 else values[0])


def compressed(ds: Dataset, ts: str) -> Dataset:
    """``ds`` re-encoded by pydicom (without gdcm) in ``ts``."""
    out = copy.deepcopy(ds)
    if ts == ImplicitVRLittleEndian:
        out.file_meta.TransferSyntaxUID = ts
        return out
    plugin = {RLELossless: "pydicom", JPEG2000Lossless: "pylibjpeg"}[ts]
    out.compress(ts, encoding_plugin=plugin, generate_instance_uid=False)
    return out


def decode(ds: Dataset) -> np.ndarray:
    """Pixel values as pydicom decodes them, never through its gdcm plugin."""
    ts = ds.file_meta.TransferSyntaxUID
    decoder = get_decoder(ts)
    plugins = [""] if decoder.is_native else \
        ["pylibjpeg"] if "pylibjpeg" in decoder.available_plugins else ["pydicom"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr, _meta = decoder.as_array(ds, as_rgb=False, decoding_plugin=plugins[0])
    return arr


def written(ds: Dataset) -> Dataset:
    """``ds`` written as a file and read back."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


# --- independent parsers of the result --------------------------------------------------------

def items(value: bytes) -> list[bytes]:
    """The items of encapsulated Pixel Data (PS3.5 §A.4): Basic Offset Table, then fragments."""
    found, pos = [], 0
    while pos + 8 <= len(value):
        group, elem, length = struct.unpack("<HHI", value[pos:pos + 8])
        if (group, elem) == (0xFFFE, 0xE0DD):
            break
        assert (group, elem) == (0xFFFE, 0xE000), f"not an item at {pos}"
        found.append(value[pos + 8:pos + 8 + length])
        pos += 8 + length
    return found


def jpeg_header(stream: bytes) -> dict[str, int]:
    """SOF and SOS fields of a JPEG bit stream (ISO 10918-1 B.2.2, B.2.3)."""
    assert stream[:2] == b"\xff\xd8", "no SOI"
    pos, info = 2, {}
    while pos < len(stream):
        assert stream[pos] == 0xFF, f"no marker at {pos}"
        marker = stream[pos + 1]
        length = int.from_bytes(stream[pos + 2:pos + 4], "big")
        seg = stream[pos + 4:pos + 2 + length]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            info.update(sof=marker, precision=seg[0], rows=int.from_bytes(seg[1:3], "big"),
                        cols=int.from_bytes(seg[3:5], "big"), components=seg[5])
        elif marker == 0xDA:
            ns = seg[0]
            info.update(scan_components=ns, ss=seg[1 + 2 * ns], se=seg[2 + 2 * ns],
                        ah=seg[3 + 2 * ns] >> 4, al=seg[3 + 2 * ns] & 0x0F)
            return info
        pos += 2 + length
    raise AssertionError("no SOS")


def check_encapsulation(out: Dataset, frames: int, rows: int, cols: int, samples: int,
                        bits_allocated: int) -> None:
    assert out.file_meta.TransferSyntaxUID == JPEG_LOSSLESS_SV1
    assert out["PixelData"].VR == "OB"
    assert out["PixelData"].is_undefined_length
    parts = items(out.PixelData)
    bot, fragments = parts[0], parts[1:]
    assert len(fragments) == frames  # one fragment per frame
    offsets = list(struct.unpack(f"<{len(bot) // 4}I", bot))
    expected = [sum(8 + len(f) for f in fragments[:i]) for i in range(frames)]
    assert offsets == expected
    for fragment in fragments:
        assert len(fragment) % 2 == 0
        assert fragment.rstrip(b"\x00").endswith(b"\xff\xd9")
        head = jpeg_header(fragment)
        assert head["sof"] == 0xC3  # lossless, Huffman, non-hierarchical: Process 14
        assert head["ss"] == 1  # Selection Value 1: first-order prediction
        assert (head["se"], head["ah"], head["al"]) == (0, 0, 0)  # no point transform
        assert (head["rows"], head["cols"]) == (rows, cols)
        assert head["components"] == head["scan_components"] == samples
        assert head["precision"] == bits_allocated


# --- the XA cases of STD-XABC-CD ------------------------------------------------------------

@gdcm
def test_xa_8bit_512_single_frame() -> None:
    ds, values = xa_dataset()
    before = copy.deepcopy(ds)
    out = encode_jpeg_lossless_sv1(ds)
    assert out is not ds
    assert ds == before and ds.PixelData == before.PixelData  # the input is untouched
    assert ds.file_meta == before.file_meta
    check_encapsulation(out, 1, 512, 512, 1, 8)
    back = written(out)
    assert back.file_meta.TransferSyntaxUID == JPEG_LOSSLESS_SV1
    assert np.array_equal(decode(back), values)
    assert len(back.PixelData) < len(ds.PixelData)


@gdcm
def test_xa_8bit_512_multiframe() -> None:
    ds, values = xa_dataset(frames=4, seed=1)
    out = encode_jpeg_lossless_sv1(ds)
    check_encapsulation(out, 4, 512, 512, 1, 8)
    back = written(out)
    assert back.NumberOfFrames == 4
    assert np.array_equal(decode(back), values)


@gdcm
def test_header_kept_and_new_file_meta() -> None:
    ds, _ = xa_dataset(64, 64, frames=2)
    ds.file_meta.SourceApplicationEntityTitle = "MODALITY1"
    out = encode_jpeg_lossless_sv1(ds)
    for elem in ds:
        if elem.tag not in PIXEL_TAGS:
            assert out[elem.tag] == elem, elem.keyword
    assert out.SOPInstanceUID == ds.SOPInstanceUID
    meta = out.file_meta
    assert meta.TransferSyntaxUID == JPEG_LOSSLESS_SV1
    assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert meta.MediaStorageSOPClassUID == XRayAngiographicImageStorage
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.SourceApplicationEntityTitle == "MODALITY1"
    assert "LossyImageCompression" not in out  # a lossless source stays unmarked


# --- bit depths, photometric interpretations, source transfer syntaxes ------------------------

KINDS = {
    "xa8": dict(frames=2),
    "mono12": dict(bits_allocated=16, bits_stored=12),
    "mono16": dict(bits_allocated=16, bits_stored=16, frames=2),
    "mono1_10": dict(bits_allocated=16, bits_stored=10, photometric="MONOCHROME1"),
    "rgb8": dict(samples=3, photometric="RGB", frames=2),
    "rgb16": dict(bits_allocated=16, bits_stored=16, samples=3, photometric="RGB"),
}


@gdcm
@pytest.mark.parametrize("source_ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                       RLELossless, JPEG2000Lossless])
@pytest.mark.parametrize("kind", list(KINDS))
def test_round_trip_from_source_ts(kind: str, source_ts: str) -> None:
    params = KINDS[kind]
    ds, values = xa_dataset(96, 80, seed=len(kind), **params)  # type: ignore[arg-type]
    if source_ts != ExplicitVRLittleEndian:
        ds = compressed(ds, source_ts)
        assert np.array_equal(decode(ds), values)  # the source itself is what we think
    out = encode_jpeg_lossless_sv1(ds)
    frames = int(params.get("frames", 1))
    samples = int(params.get("samples", 1))
    check_encapsulation(out, frames, 96, 80, samples, int(params.get("bits_allocated", 8)))
    back = written(out)
    assert np.array_equal(decode(back), values)
    assert back.PhotometricInterpretation == params.get("photometric", "MONOCHROME2")
    assert back.BitsStored == params.get("bits_stored", 8)
    if samples == 3:
        assert back.PlanarConfiguration == 0


@gdcm
@pytest.mark.parametrize("bits_allocated,bits_stored", [(8, 8), (16, 12), (16, 16), (16, 10)])
def test_signed(bits_allocated: int, bits_stored: int) -> None:
    ds, values = xa_dataset(40, 48, frames=2, bits_allocated=bits_allocated,
                            bits_stored=bits_stored, signed=True)
    out = written(encode_jpeg_lossless_sv1(ds))
    assert out.PixelRepresentation == 1
    assert values.min() < 0
    assert np.array_equal(decode(out), values)


@gdcm
def test_rgb_colour_by_plane_source() -> None:
    ds, values = xa_dataset(33, 21, samples=3, photometric="RGB", planar=1, frames=2)
    out = written(encode_jpeg_lossless_sv1(ds))
    assert out.PlanarConfiguration == 0
    assert np.array_equal(decode(out), values)


@gdcm
@pytest.mark.parametrize("rows,cols,samples", [(1, 1, 1), (511, 511, 1), (3, 5, 3), (7, 1, 1)])
def test_odd_sizes(rows: int, cols: int, samples: int) -> None:
    # an odd byte count per frame, which gdcm cannot encode as a single frame
    ds, values = xa_dataset(rows, cols, samples=samples,
                            photometric="RGB" if samples == 3 else "MONOCHROME2", frames=3)
    out = encode_jpeg_lossless_sv1(ds)
    check_encapsulation(out, 3, rows, cols, samples, 8)
    assert np.array_equal(decode(written(out)), values)


@gdcm
@pytest.mark.parametrize("name", [
    "MR_small_bigendian.dcm",  # Explicit VR Big Endian, signed 16-bit
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_rle_16bit_2frame.dcm",
    "GDCMJ2K_TextGBR.dcm",  # JPEG 2000 YBR_RCT: decodes to RGB
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
    "SC_rgb_small_odd.dcm",
])
def test_pydicom_sample_files(name: str) -> None:
    source = pydicom.dcmread(pydicom_test_file(name))
    expected = decode(source)
    out = written(encode_jpeg_lossless_sv1(source))
    assert out.file_meta.TransferSyntaxUID == JPEG_LOSSLESS_SV1
    assert np.array_equal(decode(out), expected)
    assert out.PhotometricInterpretation in ("MONOCHROME2", "RGB")


@gdcm
def test_big_endian_source_same_as_little_endian() -> None:
    le = encode_jpeg_lossless_sv1(pydicom.dcmread(pydicom_test_file("MR_small.dcm")))
    be = encode_jpeg_lossless_sv1(pydicom.dcmread(pydicom_test_file("MR_small_bigendian.dcm")))
    assert be.PixelData == le.PixelData


@gdcm
def test_lossy_source_stays_marked_lossy() -> None:
    source = pydicom.dcmread(pydicom_test_file("JPGExtended.dcm"))  # JPEG Extended, lossy
    out = encode_jpeg_lossless_sv1(source)
    assert out.LossyImageCompression == "01"
    assert out.LossyImageCompressionMethod == "ISO_10918_1"
    assert np.array_equal(decode(written(out)), decode(source))


# --- determinism, threads, no files ---------------------------------------------------------

@gdcm
def test_deterministic() -> None:
    ds, _ = xa_dataset(128, 128, frames=3)
    first = encode_jpeg_lossless_sv1(ds)
    second = encode_jpeg_lossless_sv1(copy.deepcopy(ds))
    assert first.PixelData == second.PixelData
    assert written(first).PixelData == written(second).PixelData


@gdcm
def test_threads_give_the_sequential_results() -> None:
    sources = [xa_dataset(128, 96, frames=2, seed=i, bits_allocated=8 + 8 * (i % 2),
                          bits_stored=8 + 4 * (i % 2))[0] for i in range(8)]
    sequential = [encode_jpeg_lossless_sv1(ds).PixelData for ds in sources]
    with ThreadPoolExecutor(4) as pool:
        parallel = [out.PixelData for out in pool.map(encode_jpeg_lossless_sv1, sources)]
    assert parallel == sequential


@gdcm
def test_no_temporary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kw: object) -> None:
        raise AssertionError("a temporary file was requested")

    for name in ("mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryFile",
                 "SpooledTemporaryFile", "TemporaryDirectory"):
        monkeypatch.setattr(tempfile, name, refuse)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    ds, values = xa_dataset(64, 64, frames=2)
    out = encode_jpeg_lossless_sv1(ds)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert np.array_equal(decode(written(out)), values)


# --- refusals -------------------------------------------------------------------------------

def _refusal_cases() -> dict[str, tuple[Dataset, str]]:
    cases: dict[str, tuple[Dataset, str]] = {}
    ds, _ = xa_dataset(8, 8)
    del ds.PixelData
    ds.FloatPixelData = np.zeros(64, dtype="<f4").tobytes()
    cases["float"] = (ds, "float")
    ds, _ = xa_dataset(8, 8)
    del ds.PixelData
    cases["no pixel data"] = (ds, "no Pixel Data")
    ds, _ = xa_dataset(8, 8, bits_allocated=16, bits_stored=16)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.PixelData = np.zeros(64, dtype="<u4").tobytes()
    cases["32-bit"] = (ds, "Bits Allocated 32")
    ds, _ = xa_dataset(8, 8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    ds.PixelData = b"\x00" * 8
    cases["1-bit"] = (ds, "Bits Allocated 1")
    ds, _ = xa_dataset(8, 8, samples=3, photometric="RGB")
    ds.PhotometricInterpretation = "YBR_FULL"
    cases["YBR_FULL"] = (ds, "YBR_FULL")
    ds, _ = xa_dataset(8, 8)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    cases["palette"] = (ds, "PALETTE COLOR")
    ds, _ = xa_dataset(32, 32, bits_allocated=16, bits_stored=16)
    ds = compressed(ds, JPEG2000Lossless)  # 16-bit code stream ...
    ds.BitsStored, ds.HighBit = 12, 11  # ... that claims 12 bits
    cases["beyond Bits Stored"] = (ds, "exceed Bits Stored 12")
    ds, _ = xa_dataset(8, 8)
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 16])
    cases["corrupt RLE"] = (ds, "cannot be decoded")
    ds, _ = xa_dataset(8, 8)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 16])
    cases["video"] = (ds, "MPEG2")
    return cases


@gdcm
@pytest.mark.parametrize("case", list(_refusal_cases()))
def test_refused_with_reason(case: str) -> None:
    ds, reason = _refusal_cases()[case]
    before = copy.deepcopy(ds)
    with pytest.raises(ValueError, match=reason):
        encode_jpeg_lossless_sv1(ds)
    assert ds == before


@gdcm
def test_native_bits_above_high_bit_are_not_pixel_data() -> None:
    # PS3.5 §8.1.1: only Bits Stored bits are the value; pydicom and DCMTK mask the rest
    ds, values = xa_dataset(8, 8, bits_allocated=16, bits_stored=12)
    ds.PixelData = (values.astype("<u2") | 0xF000).tobytes()
    assert np.array_equal(decode(written(encode_jpeg_lossless_sv1(ds))), values)


@gdcm
def test_a_result_that_does_not_decode_exactly_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = jl._encode_frame

    def off_by_one(gdcm_mod: object, pattern: np.ndarray, *args: object) -> bytes:
        return real(gdcm_mod, pattern ^ 1, *args)  # a valid JPEG of other values

    monkeypatch.setattr(jl, "_encode_frame", off_by_one)
    ds, _ = xa_dataset(16, 16)
    with pytest.raises(ValueError, match="does not decode to the source pixel values"):
        encode_jpeg_lossless_sv1(ds)


@gdcm
@pytest.mark.parametrize("case", list(_refusal_cases()))
def test_planning_refusal_matches_the_encoder(case: str) -> None:
    ds, reason = _refusal_cases()[case]
    why = jpeg_lossless_sv1_refusal(ds)
    if case in ("beyond Bits Stored", "corrupt RLE", "video", "no pixel data"):
        assert why is None  # only the encoder, which decodes, can tell
    else:
        assert why is not None and reason in why
    ok, _ = xa_dataset(8, 8)
    del ok.PixelData  # a header is enough
    assert jpeg_lossless_sv1_refusal(ok) is None


def test_without_gdcm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jl, "_gdcm", lambda: None)
    assert can_encode_jpeg_lossless_sv1() is False
    ds, _ = xa_dataset(8, 8)
    with pytest.raises(ValueError, match="python-gdcm"):
        encode_jpeg_lossless_sv1(ds)


# --- in place, as transcode.py will call it ---------------------------------------------------

@gdcm
def test_apply_in_place() -> None:
    ds, values = xa_dataset(64, 64, frames=2)
    expected = encode_jpeg_lossless_sv1(ds)
    apply_jpeg_lossless_sv1(ds)
    assert ds == expected and ds.file_meta == expected.file_meta
    assert np.array_equal(decode(written(ds)), values)
    bad, _ = xa_dataset(8, 8)
    bad.PhotometricInterpretation = "PALETTE COLOR"
    before = copy.deepcopy(bad)
    with pytest.raises(ValueError):
        apply_jpeg_lossless_sv1(bad)
    assert bad == before


@gdcm
@pytest.mark.parametrize("name,lossy", [
    ("MR_small_bigendian.dcm", False), ("MR_small_RLE.dcm", False),
    ("GDCMJ2K_TextGBR.dcm", False), ("JPGExtended.dcm", True)])
def test_transcode_wiring_recipe(name: str, lossy: bool) -> None:
    """The wiring proposed for app/core/transcode.py: its own decode to native Explicit VR LE
    (lossy marks, big endian swap), then the encoder in place, then its File Meta."""
    from app.core.export import transcode

    source = pydicom.dcmread(pydicom_test_file(name))
    source_ts = str(source.file_meta.TransferSyntaxUID)
    expected = decode(source)
    ds = transcode.load_dataset(pydicom_test_file(name).read_bytes())
    notes: list[str] = []
    transcode._to_explicit_le(ds, source_ts, notes)
    ds.file_meta.TransferSyntaxUID = transcode.EXPLICIT_LE  # the body is native LE now
    apply_jpeg_lossless_sv1(ds)
    transcode.set_our_meta(ds, JPEG_LOSSLESS_SV1)
    back = pydicom.dcmread(io.BytesIO(transcode.encode_dataset(ds)))
    assert back.file_meta.TransferSyntaxUID == JPEG_LOSSLESS_SV1
    assert np.array_equal(decode(back), expected)
    if lossy:
        assert back.LossyImageCompression == "01"
        assert back.LossyImageCompressionMethod == "ISO_10918_1"
        assert float(back.LossyImageCompressionRatio) > 1  # transcode's ratio survives


# --- independent checks: dciodvfy and dcmdjpeg ----------------------------------------------

def _dciodvfy_errors(tool: str, path: Path) -> set[str]:
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    return {line.strip() for line in lines if line.startswith("Error")}


@gdcm
@pytest.mark.parametrize("kind", ["single", "multi"])
def test_dciodvfy_reports_no_new_errors(kind: str, tmp_path: Path) -> None:
    tool = require_tool("dciodvfy")
    ds, _ = xa_dataset(512, 512, frames=1 if kind == "single" else 3)
    src, dst = tmp_path / "src.dcm", tmp_path / "dst.dcm"
    ds.save_as(src, enforce_file_format=True)
    encode_jpeg_lossless_sv1(ds).save_as(dst, enforce_file_format=True)
    before, after = _dciodvfy_errors(tool, src), _dciodvfy_errors(tool, dst)
    assert after <= before, sorted(after - before)


@gdcm
@pytest.mark.parametrize("params", [
    dict(rows=512, cols=512, frames=3),
    dict(rows=64, cols=96, bits_allocated=16, bits_stored=12),
    dict(rows=64, cols=96, bits_allocated=16, bits_stored=16, signed=True, frames=2),
    dict(rows=64, cols=96, bits_allocated=16, bits_stored=10, signed=True),
    dict(rows=64, cols=96, samples=3, photometric="RGB", frames=2),
    dict(rows=5, cols=7, photometric="MONOCHROME1", bits_stored=6),
], ids=["xa8-512-3fr", "mono12", "signed16-2fr", "signed10", "rgb8-2fr", "mono1-6bit-odd"])
def test_dcmdjpeg_decodes_exactly(params: dict[str, object], tmp_path: Path) -> None:
    tool = require_tool("dcmdjpeg")
    ds, values = xa_dataset(**params)  # type: ignore[arg-type]
    enc, dec = tmp_path / "enc.dcm", tmp_path / "dec.dcm"
    encode_jpeg_lossless_sv1(ds).save_as(enc, enforce_file_format=True)
    run = subprocess.run([tool, str(enc), str(dec)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    plain = pydicom.dcmread(dec)
    assert plain.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert plain.BitsStored == ds.BitsStored
    assert plain.PhotometricInterpretation == ds.PhotometricInterpretation
    assert np.array_equal(decode(plain), values)


# --- pydicom's gdcm plugins -------------------------------------------------------------------

@gdcm
def test_keep_gdcm_out_of_pydicom(tmp_path: Path) -> None:
    # pydicom's gdcm decoder aborts the process (C++ exception) on JPEG Lossless with Bits
    # Stored 6 of 8; with the plugin removed, the default decoding works. In a subprocess,
    # because it changes pydicom's global plugin registry.
    ds, values = xa_dataset(16, 16, bits_stored=6)
    path = tmp_path / "six.dcm"
    encode_jpeg_lossless_sv1(ds).save_as(path, enforce_file_format=True)
    np.save(tmp_path / "values.npy", values)
    script = (
        "import sys, numpy as np, pydicom\n"
        "from pydicom.pixels import get_decoder, get_encoder\n"
        "from app.core.imaging.jpeg_lossless import keep_gdcm_out_of_pydicom\n"
        "changed = keep_gdcm_out_of_pydicom()\n"
        "assert '1.2.840.10008.1.2.4.70' in changed and '1.2.840.10008.1.2.5' in changed\n"
        "assert keep_gdcm_out_of_pydicom() == []\n"
        "assert 'gdcm' not in get_decoder('1.2.840.10008.1.2.4.90').available_plugins\n"
        "assert 'gdcm' not in get_encoder('1.2.840.10008.1.2.5').available_plugins\n"
        f"arr = pydicom.dcmread({str(path)!r}).pixel_array\n"
        f"assert np.array_equal(arr, np.load({str(tmp_path / 'values.npy')!r}))\n"
        "print('ok')\n")
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, cwd=root)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
