"""Frame decoding and display (app.core.imaging.display / app.core.imaging.render).

Every transfer syntax on pydicom's own test files, value correctness against independent
computations (pydicom's raw decode, hand-worked window formulas), multi-frame, MONOCHROME1,
colour models, palettes, LUT sequences, enhanced functional groups, and hostile input.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset, dcmread
from pydicom.pixels import apply_color_lut
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from app.core.errors import RenderError
from app.core.imaging.display import (
    WINDOW_PRESETS,
    Frame,
    load_frame,
    presets_for,
    render,
    representative_frame,
    series_representative,
    sort_instances,
    to_display,
)
from app.core.model import Instance
from tests.media import make_dataset, pydicom_test_file, write_instance

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def raw(name: str) -> np.ndarray:
    """pydicom's own decode of a test file (all frames)."""
    return dcmread(pydicom_test_file(name)).pixel_array


def ct(pixels: np.ndarray, **overrides: object) -> Dataset:
    rows, cols = pixels.shape[-2:]
    return make_dataset(rows, cols, pixels=pixels, **overrides)


# ------------------------------------------------------------------------- transfer syntaxes

MR_VARIANTS = [
    ("MR_small.dcm", ExplicitVRLittleEndian),
    ("MR_small_implicit.dcm", ImplicitVRLittleEndian),
    ("MR_small_bigendian.dcm", ExplicitVRBigEndian),
    ("MR_small_expb.dcm", ExplicitVRBigEndian),
    ("MR_small_RLE.dcm", RLELossless),
    ("MR_small_jpeg_ls_lossless.dcm", JPEGLSLossless),
    ("MR_small_jp2klossless.dcm", JPEG2000Lossless),
    ("MR_small_padded.dcm", ExplicitVRLittleEndian),
]


@pytest.mark.parametrize(("name", "syntax"), MR_VARIANTS)
def test_lossless_mr_variants_render_identically(name: str, syntax: str) -> None:
    path = pydicom_test_file(name)
    assert dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    ref = dcmread(pydicom_test_file("MR_small.dcm"))
    frame = load_frame(path)
    assert frame.values.dtype == np.float32 and frame.values.shape == (64, 64)
    assert not frame.is_color and frame.n_frames == 1 and frame.index == 0
    np.testing.assert_array_equal(frame.values, ref.pixel_array.astype(np.float32))
    assert frame.default_window == (600.0, 1600.0)
    np.testing.assert_array_equal(to_display(frame), to_display(load_frame(ref)))


RGB_LOSSLESS = [
    ("SC_rgb_rle.dcm", RLELossless),
    ("SC_rgb_jpeg_gdcm.dcm", JPEGLosslessSV1),
    ("SC_rgb_gdcm_KY.dcm", JPEG2000),
    ("SC_rgb_rle_16bit.dcm", RLELossless),
    ("SC_rgb_rle_32bit.dcm", RLELossless),
]


@pytest.mark.parametrize(("name", "syntax"), RGB_LOSSLESS)
def test_rgb_lossless_variants_match(name: str, syntax: str) -> None:
    path = pydicom_test_file(name)
    assert dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    frame = load_frame(path)
    assert frame.is_color and frame.values.dtype == np.uint8 and frame.values.shape == (100, 100, 3)
    np.testing.assert_array_equal(frame.values, raw("SC_rgb_rle.dcm"))
    np.testing.assert_array_equal(to_display(frame), frame.values)


LOSSY_RGB = [
    # name, syntax, photometric, max mean abs error against the lossless original
    ("SC_rgb_jpeg_dcmtk.dcm", JPEGBaseline8Bit, "YBR_FULL", 2.0),
    ("SC_rgb_dcmtk_+eb+cy+n1.dcm", JPEGBaseline8Bit, "YBR_FULL", 4.0),
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", JPEGBaseline8Bit, "YBR_FULL_422", 4.0),
    ("SC_rgb_dcmtk_+eb+cy+s2.dcm", JPEGBaseline8Bit, "YBR_FULL_422", 4.0),
    ("SC_rgb_dcmtk_+eb+cr.dcm", JPEGBaseline8Bit, "RGB", 1.0),
    ("SC_rgb_jls_lossy_line.dcm", JPEGLSNearLossless, "RGB", 1.5),
    ("SC_ybr_full_422_uncompressed.dcm", ExplicitVRLittleEndian, "YBR_FULL_422", 1.5),
]


@pytest.mark.parametrize(("name", "syntax", "photometric", "tolerance"), LOSSY_RGB)
def test_colour_models_convert_to_rgb(name: str, syntax: str, photometric: str,
                                      tolerance: float) -> None:
    path = pydicom_test_file(name)
    header = dcmread(path, stop_before_pixels=True)
    assert header.file_meta.TransferSyntaxUID == syntax
    assert header.PhotometricInterpretation == photometric
    frame = load_frame(path)
    assert frame.is_color and frame.photometric == photometric
    assert frame.values.shape == (100, 100, 3) and frame.values.dtype == np.uint8
    err = np.abs(frame.values.astype(int) - raw("SC_rgb_rle.dcm").astype(int)).mean()
    assert err < tolerance  # YBR left unconverted would be off by ~50 on average


@pytest.mark.parametrize(("photometric", "syntax", "kwargs", "tolerance"), [
    ("YBR_ICT", JPEG2000, {"j2k_cr": [4]}, 1.0),
    ("YBR_RCT", JPEG2000Lossless, {}, 0.0),
])
def test_jpeg2000_ict_and_rct(photometric: str, syntax: str, kwargs: dict[str, object],
                              tolerance: float) -> None:
    ds = dcmread(pydicom_test_file("SC_rgb_rle.dcm"))
    ds.decompress()
    ref = ds.pixel_array.copy()
    ds.PhotometricInterpretation = photometric
    ds.compress(syntax, ref, **kwargs)
    assert ds.PhotometricInterpretation == photometric
    frame = load_frame(ds)
    assert frame.is_color and frame.photometric == photometric
    assert np.abs(frame.values.astype(int) - ref).mean() <= tolerance


def test_jpeg2000_rct_example_file() -> None:
    frame = load_frame(pydicom_test_file("examples_jpeg2k.dcm"))
    assert frame.photometric == "YBR_RCT" and frame.values.shape == (480, 640, 3)
    np.testing.assert_array_equal(frame.values, raw("examples_jpeg2k.dcm"))


@pytest.mark.parametrize(("name", "syntax", "shape"), [
    ("JPGExtended.dcm", JPEGExtended12Bit, (1024, 256)),
    ("JPEG2000.dcm", JPEG2000, (1024, 256)),
    ("693_J2KI.dcm", JPEG2000, (512, 512)),
    ("J2K_pixelrep_mismatch.dcm", JPEG2000Lossless, (512, 512)),
    ("JPEGLSNearLossless_08.dcm", JPEGLSNearLossless, (45, 10)),
    ("JPEGLSNearLossless_16.dcm", JPEGLSNearLossless, (50, 10)),
    ("image_dfl.dcm", DeflatedExplicitVRLittleEndian, (512, 512)),
    ("CT_small.dcm", ExplicitVRLittleEndian, (128, 128)),
    ("liver_expb_1frame.dcm", ExplicitVRBigEndian, (512, 512)),
])
def test_greyscale_syntaxes_apply_rescale_exactly(name: str, syntax: str,
                                                  shape: tuple[int, int]) -> None:
    path = pydicom_test_file(name)
    ds = dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == syntax
    frame = load_frame(path)
    assert frame.values.shape == shape and frame.values.dtype == np.float32
    slope, icpt = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    expected = ds.pixel_array.astype(np.float64) * slope + icpt
    np.testing.assert_allclose(frame.values, expected, rtol=1e-6)
    img = to_display(frame)
    assert img.shape == shape and img.dtype == np.uint8 and img.max() > img.min()


def test_jpeg_extended_resembles_jpeg2000_original() -> None:
    a = load_frame(pydicom_test_file("JPGExtended.dcm")).values
    b = load_frame(pydicom_test_file("JPEG2000.dcm")).values
    assert np.abs(a - b).mean() < 10  # same picture; unrelated pictures differ by ~100


def test_big_endian_rgb_and_explicit_le_rgb() -> None:
    frame = load_frame(pydicom_test_file("ExplVR_BigEnd.dcm"))
    assert frame.is_color and frame.values.shape == (60, 80, 3)
    np.testing.assert_array_equal(frame.values, raw("ExplVR_BigEnd.dcm"))
    odd_be = load_frame(pydicom_test_file("SC_rgb_small_odd_big_endian.dcm")).values
    odd_le = load_frame(pydicom_test_file("SC_rgb_small_odd.dcm")).values
    np.testing.assert_array_equal(odd_be, odd_le)


def test_rtdose_32bit_multiframe_applies_dose_grid_scaling_free_values() -> None:
    arr = raw("rtdose.dcm")
    for name in ("rtdose.dcm", "rtdose_expb.dcm", "rtdose_rle.dcm"):
        frame = load_frame(pydicom_test_file(name), 3)
        assert frame.n_frames == 15 and frame.index == 3
        np.testing.assert_array_equal(frame.values, arr[3].astype(np.float32))


# ------------------------------------------------------------------------- multi-frame


def test_multiframe_every_frame_and_default_middle() -> None:
    path = pydicom_test_file("examples_ybr_color.dcm")
    allframes = raw("examples_ybr_color.dcm")
    assert allframes.shape[0] == 30
    default = load_frame(path)
    assert default.index == 15 and default.n_frames == 30
    for i in (0, 7, 29):
        np.testing.assert_array_equal(load_frame(path, i).values, allframes[i])
    np.testing.assert_array_equal(default.values, allframes[15])


def test_rle_two_frames_second_is_inverse() -> None:
    path = pydicom_test_file("SC_rgb_rle_2frame.dcm")
    first, second = load_frame(path, 0).values, load_frame(path, 1).values
    np.testing.assert_array_equal(first, raw("SC_rgb_rle.dcm"))
    np.testing.assert_array_equal(second, 255 - first)


def _multiframe(tmp_path: Path, n: int = 5, **overrides: object) -> tuple[Path, np.ndarray]:
    frames = np.stack([np.full((6, 4), 100 * (i + 1), dtype=np.uint16) for i in range(n)])
    frames[:, 0, 0] = np.arange(n)
    ds = make_dataset(6, 4, pixels=frames, NumberOfFrames=n, **overrides)
    return write_instance(tmp_path / "mf.dcm", ds), frames


def test_multiframe_file_streams_one_frame(tmp_path: Path) -> None:
    path, frames = _multiframe(tmp_path)
    for i in range(5):
        frame = load_frame(path, i)
        np.testing.assert_array_equal(frame.values, frames[i].astype(np.float32) - 1024)
    assert load_frame(path).index == 2
    with path.open("rb") as fp:
        fp.seek(7)  # any position: the reader rewinds
        assert load_frame(fp, 4).values[1, 1] == 500 - 1024


def test_multiframe_rle_compressed_in_code(tmp_path: Path) -> None:
    path, frames = _multiframe(tmp_path, 4)
    ds = dcmread(path)
    ds.compress(RLELossless)
    rle = write_instance(tmp_path / "rle.dcm", ds)
    for i in range(4):
        np.testing.assert_array_equal(load_frame(rle, i).values, frames[i] - 1024.0)


def test_representative_frame_number(tmp_path: Path) -> None:
    path, frames = _multiframe(tmp_path, RepresentativeFrameNumber=5)
    frame = load_frame(path)
    assert frame.index == 4
    np.testing.assert_array_equal(frame.values, frames[4] - 1024.0)
    ds = dcmread(path)
    assert representative_frame(ds) == 4
    ds.RepresentativeFrameNumber = 9  # out of range: middle frame
    assert representative_frame(ds) == 2
    assert load_frame(ds).index == 2


@pytest.mark.parametrize(("values", "expected"), [
    ({}, 0),
    ({"NumberOfFrames": "1"}, 0),
    ({"NumberOfFrames": "4"}, 2),
    ({"NumberOfFrames": "7"}, 3),
    ({"NumberOfFrames": "7", "RepresentativeFrameNumber": "1"}, 0),
    ({"NumberOfFrames": "7", "RepresentativeFrameNumber": "7"}, 6),
    ({"NumberOfFrames": "7", "RepresentativeFrameNumber": "0"}, 3),
    ({"NumberOfFrames": "7", "RepresentativeFrameNumber": "x"}, 3),
    ({"NumberOfFrames": "junk", "RepresentativeFrameNumber": "2"}, 0),
    ({"NumberOfFrames": None}, 0),
])
def test_representative_frame_from_header_like(values: dict[str, str | None],
                                               expected: int) -> None:
    class Header:
        def __init__(self, v: dict[str, str | None]) -> None:
            self.values = v

    assert representative_frame(values) == expected
    assert representative_frame(Header(values)) == expected


def test_frame_out_of_range_is_render_error(tmp_path: Path) -> None:
    path, _ = _multiframe(tmp_path, 3)
    for bad in (3, -1, 100):
        with pytest.raises(RenderError, match=r"mf\.dcm.*frame"):
            load_frame(path, bad)
    with pytest.raises(RenderError, match="frame 1 out of range"):
        load_frame(pydicom_test_file("CT_small.dcm"), 1)


# ------------------------------------------------------------------------- windowing


def test_linear_window_at_exact_pixels() -> None:
    # c=40, w=400: below c-0.5-(w-1)/2 = -160 → 0, above c-0.5+(w-1)/2 = 239 → 255
    stored = np.array([[0, 864, 1063, 1064, 1065, 1263, 1264, 2000]], dtype=np.uint16)
    frame = load_frame(ct(stored))  # intercept -1024 → -1024 -160 39 40 41 239 240 976
    np.testing.assert_array_equal(frame.values, stored.astype(np.float32) - 1024)
    assert frame.default_window == (40.0, 400.0)
    out = to_display(frame)
    # ((x - 39.5) / 399 + 0.5) * 255, rounded
    expected = [0, 0, 127, 128, 128, 255, 255, 255]
    exact = [round(min(max(((x - 39.5) / 399 + 0.5) * 255, 0), 255))
             for x in frame.values[0].tolist()]
    assert out[0].tolist() == expected == exact
    assert to_display(frame, 40, 400, invert=True)[0].tolist() == [255 - v for v in expected]
    # an explicit window overrides the file's: brain window
    brain = to_display(frame, *WINDOW_PRESETS["Brain"])[0].tolist()
    assert brain == [0, 0, 126, 129, 132, 255, 255, 255]  # ((x - 39.5) / 79 + 0.5) * 255


def test_window_width_one_and_zero_threshold() -> None:
    frame = load_frame(ct(np.array([[1000, 1064, 1065]], dtype=np.uint16)))  # -24, 40, 41
    assert to_display(frame, 40.5, 1)[0].tolist() == [0, 0, 255]
    assert to_display(frame, 40.5, 0)[0].tolist() == [0, 0, 255]
    assert to_display(frame, 40.5, 0, invert=True)[0].tolist() == [255, 255, 0]


def test_zero_width_in_file_falls_back_to_min_max() -> None:
    frame = load_frame(ct(np.array([[1024, 1124, 1224]], dtype=np.uint16),
                          WindowCenter=0, WindowWidth=0))
    assert frame.default_window is None and frame.value_range == (0.0, 200.0)
    assert to_display(frame)[0].tolist() == [0, 128, 255]
    assert frame.auto_window() == (100.0, 200.0)


def test_flat_frame_is_black_not_an_error() -> None:
    frame = load_frame(ct(np.full((4, 4), 7, dtype=np.uint16), WindowCenter=None,
                          WindowWidth=None))
    assert (to_display(frame) == 0).all()
    assert (to_display(frame, invert=True) == 255).all()


def test_linear_exact_and_sigmoid_functions() -> None:
    stored = np.array([[1024, 1064, 1074, 1264]], dtype=np.uint16)  # 0 40 50 240
    exact = load_frame(ct(stored, WindowCenter=40, WindowWidth=100, VOILUTFunction="LINEAR_EXACT"))
    # ((x - c) / w + 0.5) * 255
    assert to_display(exact)[0].tolist() == [26, 128, 153, 255]
    sig = load_frame(ct(stored, WindowCenter=40, WindowWidth=100, VOILUTFunction="SIGMOID"))
    expected = [round(255 / (1 + np.exp(-4 * (x - 40) / 100))) for x in (0, 40, 50, 240)]
    assert to_display(sig)[0].tolist() == expected


def test_multi_valued_window_uses_first() -> None:
    ds = ct(np.array([[1064, 1065]], dtype=np.uint16))
    ds.WindowCenter = [40, 500]
    ds.WindowWidth = [80, 2000]
    assert load_frame(ds).default_window == (40.0, 80.0)


def test_monochrome1_displays_inverted() -> None:
    stored = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 60)
    mono2 = load_frame(ct(stored))
    mono1 = load_frame(ct(stored, PhotometricInterpretation="MONOCHROME1"))
    assert mono1.display_inverted and not mono2.display_inverted
    np.testing.assert_array_equal(mono1.values, mono2.values)
    np.testing.assert_array_equal(to_display(mono1), 255 - to_display(mono2))
    np.testing.assert_array_equal(to_display(mono1, invert=True), to_display(mono2))
    # min/max: the lowest value is white
    m1 = load_frame(ct(stored, PhotometricInterpretation="MONOCHROME1", WindowCenter=None,
                       WindowWidth=None))
    img = to_display(m1)
    assert img[0, 0] == 255 and img[-1, -1] == 0


def test_presentation_lut_inverse_on_monochrome2() -> None:
    stored = np.array([[0, 4095]], dtype=np.uint16)
    frame = load_frame(ct(stored, PresentationLUTShape="INVERSE", WindowCenter=None,
                          WindowWidth=None))
    assert to_display(frame)[0].tolist() == [255, 0]


def test_modality_lut_sequence() -> None:
    item = Dataset()
    item.LUTDescriptor = [4, 0, 16]
    item.ModalityLUTType = "HU"
    item.LUTData = [10, 20, 30, 4000]
    ds = ct(np.array([[0, 1, 2, 3, 9]], dtype=np.uint16), RescaleSlope=None,
            RescaleIntercept=None, RescaleType=None, WindowCenter=None, WindowWidth=None)
    ds.ModalityLUTSequence = Sequence([item])
    frame = load_frame(ds)
    assert frame.values[0].tolist() == [10, 20, 30, 4000, 4000]


def test_voi_lut_sequence_when_no_window() -> None:
    item = Dataset()
    item.LUTDescriptor = [3, -1000, 8]  # first mapped value in modality units
    item.LUTData = [0, 100, 255]
    ds = ct(np.array([[0, 24, 25, 26, 2000]], dtype=np.uint16), WindowCenter=None,
            WindowWidth=None)  # -1024 -1000 -999 -998 976
    ds.VOILUTSequence = Sequence([item])
    frame = load_frame(ds)
    assert frame.default_window is None and frame.voi_lut is not None
    assert to_display(frame)[0].tolist() == [0, 0, 100, 255, 255]
    assert to_display(frame, invert=True)[0].tolist() == [255, 255, 155, 0, 0]
    # an explicit window still works on top of the same values
    assert to_display(frame, -999, 1)[0].tolist() == [0, 0, 255, 255, 255]


def test_rescale_slope_and_intercept_floats() -> None:
    ds = ct(np.array([[0, 10, 100]], dtype=np.uint16), RescaleSlope="0.5", RescaleIntercept="-2.5")
    assert load_frame(ds).values[0].tolist() == [-2.5, 2.5, 47.5]


def test_signed_pixels() -> None:
    stored = np.array([[-2000, -1, 0, 3000]], dtype=np.int16)
    ds = make_dataset(1, 4, pixels=stored.view(np.uint16), PixelRepresentation=1, BitsStored=16,
                      HighBit=15, RescaleIntercept=0)
    assert load_frame(ds).values[0].tolist() == [-2000, -1, 0, 3000]


def test_enhanced_functional_groups_per_frame_rescale_and_shared_window(tmp_path: Path) -> None:
    frames = np.stack([np.full((2, 2), 100, dtype=np.uint16)] * 3)
    ds = make_dataset(2, 2, pixels=frames, NumberOfFrames=3, RescaleSlope=None,
                      RescaleIntercept=None, WindowCenter=None, WindowWidth=None)
    per_frame = []
    for i in range(3):
        pvt = Dataset()
        pvt.RescaleSlope = i + 1
        pvt.RescaleIntercept = -10 * i
        fg = Dataset()
        fg.PixelValueTransformationSequence = Sequence([pvt])
        per_frame.append(fg)
    voi = Dataset()
    voi.WindowCenter = 150
    voi.WindowWidth = 300
    shared = Dataset()
    shared.FrameVOILUTSequence = Sequence([voi])
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    path = write_instance(tmp_path / "enh.dcm", ds)
    got = [load_frame(path, i) for i in range(3)]
    assert [float(f.values[0, 0]) for f in got] == [100.0, 190.0, 280.0]
    assert all(f.default_window == (150.0, 300.0) for f in got)


def test_to_display_is_fast_on_512() -> None:
    values = np.random.default_rng(0).normal(0, 500, (512, 512)).astype(np.float32)
    frame = Frame(values=values, is_color=False, default_window=(40.0, 400.0), n_frames=1,
                  photometric="MONOCHROME2", value_range=(float(values.min()),
                                                      float(values.max())))
    to_display(frame)
    times = []
    for _ in range(15):
        t = time.perf_counter()
        to_display(frame, -600, 1500)
        times.append(time.perf_counter() - t)
    assert sorted(times)[len(times) // 2] < 0.02  # a few ms here; generous for shared CI


# ------------------------------------------------------------------------- palette and colour


def test_palette_colour_maps_exactly() -> None:
    path = pydicom_test_file("examples_palette.dcm")
    ds = dcmread(path)
    frame = load_frame(path)
    assert frame.is_color and frame.photometric == "PALETTE COLOR"
    expected = apply_color_lut(ds.pixel_array, ds)  # 16-bit entries
    assert expected.dtype == np.uint16 and expected.max() > 255
    np.testing.assert_array_equal(frame.values, (expected >> 8).astype(np.uint8))


def test_palette_with_first_mapped_and_8bit_entries() -> None:
    ds = make_dataset(1, 4, pixels=np.array([[0, 5, 6, 200]], dtype=np.uint16), BitsAllocated=8,
                      BitsStored=8, HighBit=7, PhotometricInterpretation="PALETTE COLOR",
                      RescaleIntercept=None, RescaleSlope=None, RescaleType=None)
    ds.PixelData = bytes([0, 5, 6, 200])
    ds.RedPaletteColorLookupTableDescriptor = [2, 5, 8]
    ds.GreenPaletteColorLookupTableDescriptor = [2, 5, 8]
    ds.BluePaletteColorLookupTableDescriptor = [2, 5, 8]
    ds.RedPaletteColorLookupTableData = bytes([10, 20])
    ds.GreenPaletteColorLookupTableData = bytes([30, 40])
    ds.BluePaletteColorLookupTableData = bytes([50, 60])
    values = load_frame(ds).values
    assert values[0].tolist() == [[10, 30, 50], [10, 30, 50], [20, 40, 60], [20, 40, 60]]


def test_palette_without_lut_is_render_error() -> None:
    ds = make_dataset(2, 2, PhotometricInterpretation="PALETTE COLOR")
    with pytest.raises(RenderError, match="palette"):
        load_frame(ds)


def test_colour_window_and_invert() -> None:
    frame = load_frame(pydicom_test_file("SC_rgb_rle.dcm"))
    plain = to_display(frame)
    np.testing.assert_array_equal(to_display(frame, invert=True), 255 - plain)
    narrowed = to_display(frame, 128, 64).astype(int)
    assert set(np.unique(narrowed[plain < 96])) <= {0}
    assert set(np.unique(narrowed[plain > 160])) <= {255}


# ------------------------------------------------------------------------- sources and render


def test_sources_path_str_stream_dataset_agree() -> None:
    path = pydicom_test_file("CT_small.dcm")
    ds = dcmread(path)
    before = ds.file_meta.TransferSyntaxUID
    results = [load_frame(path).values, load_frame(str(path)).values,
               load_frame(io.BytesIO(path.read_bytes())).values, load_frame(ds).values]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)
    assert ds.file_meta.TransferSyntaxUID == before


def test_dataset_without_file_meta_is_not_modified() -> None:
    ds = ct(np.array([[1024, 1064]], dtype=np.uint16))
    del ds.file_meta
    frame = load_frame(ds)
    assert frame.values[0].tolist() == [0, 40]
    assert "TransferSyntaxUID" not in getattr(ds, "file_meta", {})


def test_file_without_meta_read_with_force(tmp_path: Path) -> None:
    ds = ct(np.array([[1024, 1064]], dtype=np.uint16))
    del ds.file_meta
    path = tmp_path / "nometa.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert not path.read_bytes()[128:132] == b"DICM"
    assert load_frame(path).values[0].tolist() == [0, 40]


def test_render_fits_max_size_and_never_enlarges() -> None:
    path = pydicom_test_file("JPEG2000.dcm")  # 1024 × 256
    small = render(path, max_size=64)
    assert small.shape == (64, 16) and small.dtype == np.uint8
    full = render(path)
    assert full.shape == (1024, 256)
    assert render(pydicom_test_file("CT_small.dcm"), max_size=512).shape == (128, 128)
    rgb = render(pydicom_test_file("examples_rgb_color.dcm"), max_size=100)
    assert rgb.shape == (75, 100, 3)


def test_render_corrects_non_square_pixels() -> None:
    ds = ct(np.zeros((10, 20), dtype=np.uint16), PixelSpacing=[2, 1])
    assert render(ds).shape == (20, 20)
    assert render(ds, max_size=10).shape == (10, 10)


def test_window_presets() -> None:
    assert list(WINDOW_PRESETS)[:1] == ["Brain"]
    assert WINDOW_PRESETS["Brain"] == (40.0, 80.0)
    assert WINDOW_PRESETS["Lung"] == (-600.0, 1500.0)
    assert WINDOW_PRESETS["Abdomen"] == (40.0, 400.0)
    assert WINDOW_PRESETS["Bone"][1] >= 1500
    assert presets_for("CT") == WINDOW_PRESETS and presets_for("MR") == {}


# ------------------------------------------------------------------------- failures


@pytest.mark.parametrize("name", ["rtplan.dcm", "test-SR.dcm", "waveform_ecg.dcm"])
def test_no_pixel_data(name: str) -> None:
    with pytest.raises(RenderError, match=rf"{name}.*no pixel data"):
        load_frame(pydicom_test_file(name))


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "JPEG2000-embedded-sequence-delimiter.dcm",
                                  "JPEG-lossy.dcm", "badVR.dcm"])
def test_corrupt_pixel_data_is_render_error(name: str) -> None:
    with pytest.raises(RenderError, match=name.replace(".", r"\.")):
        render(pydicom_test_file(name))


def test_hostile_inputs_raise_render_error(tmp_path: Path) -> None:
    cases: dict[str, bytes] = {
        "empty.dcm": b"",
        "text.dcm": b"hello, this is not DICOM at all\n" * 20,
        "random.dcm": np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
    }
    good = pydicom_test_file("CT_small.dcm").read_bytes()
    cases["cut.dcm"] = good[: len(good) - 5000]
    cases["garbled.dcm"] = good[:-4000] + bytes(range(256)) * 8 + good[-1952:]
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        try:
            frame = load_frame(path)
        except RenderError as exc:
            assert name in str(exc)
        else:  # garbled pixels may still decode: then they must display
            assert to_display(frame).dtype == np.uint8


def test_hostile_geometry_refused_before_allocation() -> None:
    ds = ct(np.zeros((2, 2), dtype=np.uint16), Rows=65535, Columns=65535)
    with pytest.raises(RenderError, match="too large"):
        load_frame(ds)
    ds = ct(np.zeros((2, 2), dtype=np.uint16), Rows=0)
    with pytest.raises(RenderError, match="Rows"):
        load_frame(ds)


def test_encapsulated_without_transfer_syntax(tmp_path: Path) -> None:
    ds = dcmread(pydicom_test_file("MR_small_RLE.dcm"))
    del ds.file_meta
    with pytest.raises(RenderError, match="Transfer Syntax"):
        load_frame(ds)


def test_missing_file() -> None:
    with pytest.raises(RenderError, match="nope.dcm"):
        load_frame(Path("/nonexistent/nope.dcm"))


# ------------------------------------------------------------------------- series representative


def _inst(number: str | None, uid: str, record_type: str = "IMAGE") -> Instance:
    return Instance(sop_instance_uid=uid, instance_number=number, record_type=record_type)


def test_series_representative_numeric_middle() -> None:
    series = [_inst(str(n), f"1.{n}") for n in (10, 9, 1, 2, 100, 11)]
    assert series_representative(series).instance_number == "10"  # 1 2 9 [10] 11 100: n // 2
    assert series_representative(series[:5]).instance_number == "9"  # text order: "100"
    assert series_representative(series[:1]).instance_number == "10"


def test_series_representative_ties_and_missing_numbers() -> None:
    series = [_inst("1", "1.3"), _inst("1", "1.1"), _inst("1", "1.2")]
    assert series_representative(series).sop_instance_uid == "1.2"
    series = [_inst(None, "1.9"), _inst("x", "1.8"), _inst(" 3 ", "1.3"), _inst("2", "1.2"),
              _inst("1", "1.1")]
    assert [i.sop_instance_uid for i in sort_instances(series)] == ["1.1", "1.2", "1.3", "1.8",
                                                                   "1.9"]
    assert series_representative(series).sop_instance_uid == "1.3"


def test_series_representative_prefers_images() -> None:
    series = [_inst("1", "1.1", "PRESENTATION"), _inst("2", "1.2", "SR DOCUMENT"),
              _inst("3", "1.3"), _inst("4", "1.4", "KEY OBJECT DOC")]
    assert series_representative(series).sop_instance_uid == "1.3"
    only_docs = series[:2]
    assert series_representative(only_docs).sop_instance_uid == "1.2"
    with pytest.raises(ValueError, match="without instances"):
        series_representative([])


# ------------------------------------------------------------------------- fuzzing

_FUZZ_SOURCES = {name: pydicom_test_file(name).read_bytes()
                 for name in ("CT_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                              "SC_rgb_rle_2frame.dcm", "examples_palette.dcm")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(_FUZZ_SOURCES)),
       edits=st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=8)),
                      min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.floats(0, 1)),
       frame=st.one_of(st.none(), st.integers(0, 2)))
def test_mutated_files_raise_only_render_error(name: str, edits: list[tuple[float, bytes]],
                                               cut: float | None, frame: int | None) -> None:
    data = bytearray(_FUZZ_SOURCES[name])
    for where, patch in edits:
        at = int(where * (len(data) - 1))
        data[at:at + len(patch)] = patch
    if cut is not None:
        data = data[: int(cut * len(data))]
    try:
        result = render(io.BytesIO(bytes(data)), frame, max_size=64)
    except RenderError:
        return
    assert result.dtype == np.uint8 and max(result.shape[:2]) <= 64


# ------------------------------------------------------------------------- less common encodings


def test_segmented_palette() -> None:
    ds = make_dataset(1, 3, pixels=np.array([[0, 1, 2]], dtype=np.uint16), BitsAllocated=8,
                      BitsStored=8, HighBit=7, PhotometricInterpretation="PALETTE COLOR",
                      RescaleIntercept=None, RescaleSlope=None, RescaleType=None)
    ds.PixelData = bytes([0, 1, 2, 0])
    for colour, values in (("Red", [0, 32768, 65535]), ("Green", [65535, 0, 0]),
                           ("Blue", [0, 0, 65535])):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [3, 0, 16])
        segment = np.array([0, 3, *values], dtype="<u2").tobytes()  # one discrete segment
        setattr(ds, f"Segmented{colour}PaletteColorLookupTableData", segment)
    assert load_frame(ds).values[0].tolist() == [[0, 255, 0], [128, 0, 0], [255, 0, 255]]


def test_float_pixel_data_with_non_finite_values() -> None:
    ds = make_dataset(1, 4, RescaleIntercept=None, RescaleSlope=None, RescaleType=None,
                      WindowCenter=None, WindowWidth=None, PixelData=None, BitsStored=None,
                      HighBit=None, PixelRepresentation=None, BitsAllocated=32)
    ds.FloatPixelData = np.array([[0.0, np.nan, 2.5, np.inf]], dtype="<f4").tobytes()
    frame = load_frame(ds)
    assert frame.values[0].tolist() == [0.0, 0.0, 2.5, 0.0]
    assert to_display(frame)[0].tolist() == [0, 0, 255, 0]


def test_unknown_voi_function_is_linear_and_sigmoid_inverts() -> None:
    stored = np.array([[1024, 1064, 1264]], dtype=np.uint16)  # 0 40 240
    odd = load_frame(ct(stored, VOILUTFunction="BOGUS"))
    assert odd.window_function == "LINEAR"
    sig = load_frame(ct(stored, WindowCenter=40, WindowWidth=100, VOILUTFunction="SIGMOID"))
    # 255 / (1 + exp(-4 (x - c) / w)) and its mirror: 0 HU → 42.8 / 212.2; the centre is 127.5
    assert to_display(sig)[0].tolist() == [43, 128, 255]
    assert to_display(sig, invert=True)[0].tolist() == [212, 128, 0]
    with pytest.raises(ValueError, match="finite"):
        to_display(odd, float("nan"), 10)


def test_non_seekable_stream_and_position_restored() -> None:
    data = pydicom_test_file("MR_small.dcm").read_bytes()

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self._buf = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            chunk = self._buf.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    assert not Pipe().seekable()
    expected = load_frame(io.BytesIO(data)).values
    np.testing.assert_array_equal(load_frame(io.BufferedReader(Pipe())).values, expected)
    stream = io.BytesIO(data)
    stream.seek(100)
    load_frame(stream)
    assert stream.tell() == 100
