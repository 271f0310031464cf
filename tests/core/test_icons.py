"""Icon Image Sequence items: decoding recorded icons and making new ones (STANDARDS.md §3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset, dcmread
from pydicom.pixels import pack_bits
from pydicom.sequence import Sequence

from app.core.errors import BadIcon, RenderError
from app.core.imaging.display import decode_icon, icon_from_item, icon_pixels, make_icon_item
from app.core.model import Icon
from tests.media import make_dataset, pydicom_test_file, write_instance

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def grey_icon(pixels: np.ndarray, photometric: str = "MONOCHROME2", **kw: object) -> Icon:
    rows, cols = pixels.shape
    args: dict[str, object] = dict(rows=rows, columns=cols, photometric=photometric,
                                   bits_allocated=8, bits_stored=8,
                                   pixel_data=pixels.astype(np.uint8).tobytes())
    args.update(kw)
    return Icon(**args)  # type: ignore[arg-type]


def ramp(size: int) -> np.ndarray:
    return (np.arange(size * size, dtype=np.uint32) % 256).astype(np.uint8).reshape(size, size)


# ------------------------------------------------------------------------- decode_icon


@pytest.mark.parametrize("size", [64, 128, 5])
def test_monochrome2_8bit(size: int) -> None:
    pixels = ramp(size)
    out = decode_icon(grey_icon(pixels))
    assert out.dtype == np.uint8 and out.shape == (size, size)
    np.testing.assert_array_equal(out, pixels)


def test_monochrome1_is_inverted() -> None:
    pixels = ramp(64)
    np.testing.assert_array_equal(decode_icon(grey_icon(pixels, "MONOCHROME1")), 255 - pixels)


def test_odd_length_padded_to_even_is_accepted() -> None:
    pixels = ramp(5)  # 25 bytes, padded to 26 on the medium
    icon = grey_icon(pixels, pixel_data=pixels.tobytes() + b"\x00")
    np.testing.assert_array_equal(decode_icon(icon), pixels)


@pytest.mark.parametrize(("photometric", "one", "zero"), [("MONOCHROME2", 255, 0),
                                                          ("MONOCHROME1", 0, 255)])
@pytest.mark.parametrize("size", [64, 128, 7])
def test_one_bit_packed(photometric: str, one: int, zero: int, size: int) -> None:
    bits = np.random.default_rng(size).integers(0, 2, (size, size), dtype=np.uint8)
    data = pack_bits(bits)  # LSB first, padded to even length
    icon = Icon(rows=size, columns=size, photometric=photometric, bits_allocated=1,
                bits_stored=1, pixel_data=data)
    out = decode_icon(icon)
    assert out.shape == (size, size) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.where(bits == 1, one, zero))


def test_one_bit_pixel_order_is_lsb_first() -> None:
    icon = Icon(rows=1, columns=8, photometric="MONOCHROME2", bits_allocated=1, bits_stored=1,
                pixel_data=bytes([0b00000101, 0]))
    assert decode_icon(icon)[0].tolist() == [255, 0, 255, 0, 0, 0, 0, 0]


def test_fewer_bits_stored_scaled_to_full_range() -> None:
    pixels = np.array([[0, 1, 8, 15]], dtype=np.uint8)
    out = decode_icon(grey_icon(pixels, bits_stored=4))
    assert out[0].tolist() == [0, 17, 136, 255]


def _palette_icon(pixels: np.ndarray, descriptor: tuple[int, int, int], red: bytes, green: bytes,
                  blue: bytes, little_endian: bool = True) -> Icon:
    return grey_icon(pixels, "PALETTE COLOR", palette=(descriptor, red, green, blue),
                     little_endian=little_endian)


def test_palette_8bit_entries_with_first_mapped() -> None:
    pixels = np.array([[0, 10, 11, 12, 255]], dtype=np.uint8)
    icon = _palette_icon(pixels, (3, 10, 8), bytes([1, 2, 3]), bytes([4, 5, 6]),
                         bytes([7, 8, 9]))
    out = decode_icon(icon)
    assert out.shape == (1, 5, 3) and out.dtype == np.uint8
    # below first mapped → first entry, above the last → last entry (PS3.3 C.7.6.3.1.5)
    assert out[0].tolist() == [[1, 4, 7], [1, 4, 7], [2, 5, 8], [3, 6, 9], [3, 6, 9]]


@pytest.mark.parametrize("little_endian", [True, False])
def test_palette_16bit_entries(little_endian: bool) -> None:
    dtype = "<u2" if little_endian else ">u2"
    red = np.arange(256, dtype=np.uint32) * 257
    green = 65535 - red
    blue = np.full(256, 0x1234)
    icon = _palette_icon(ramp(16), (256, 0, 16), red.astype(dtype).tobytes(),
                         green.astype(dtype).tobytes(), blue.astype(dtype).tobytes(),
                         little_endian)
    out = decode_icon(icon)
    v = ramp(16)
    np.testing.assert_array_equal(out[..., 0], v)
    np.testing.assert_array_equal(out[..., 1], 255 - v)
    assert (out[..., 2] == 0x12).all()


def test_palette_16bit_words_holding_8bit_values() -> None:
    lut = np.arange(256, dtype="<u2")  # a common writer mistake: 8-bit values, 16-bit words
    icon = _palette_icon(ramp(16), (256, 0, 16), lut.tobytes(), lut.tobytes(), lut.tobytes())
    out = decode_icon(icon)
    np.testing.assert_array_equal(out[..., 1], ramp(16))


def test_palette_descriptor_zero_means_65536() -> None:
    lut = (np.arange(65536, dtype=np.uint32)).astype("<u2")
    icon = _palette_icon(np.array([[0, 255]], dtype=np.uint8), (0, 0, 16), lut.tobytes(),
                         lut.tobytes(), lut.tobytes())
    assert decode_icon(icon)[0, :, 0].tolist() == [0, 0]


BAD = [
    (dict(pixel_data=bytes(10)), "Pixel Data holds 10 bytes"),
    (dict(pixel_data=bytes(4096 + 2)), "needs 4096"),
    (dict(pixel_data=None), "no Pixel Data"),
    (dict(bits_allocated=16, bits_stored=16), "Bits Allocated 16"),
    (dict(bits_stored=9), "Bits Stored 9"),
    (dict(bits_stored=0), "Bits Stored 0"),
    (dict(photometric="RGB"), "'RGB'"),
    (dict(photometric="YBR_FULL"), "Photometric"),
    (dict(photometric=""), "Photometric"),
    (dict(photometric=None), "Photometric"),
    (dict(samples_per_pixel=3), "Samples per Pixel 3"),
    (dict(pixel_representation=1), "signed"),
    (dict(rows=0), "0×64"),
    (dict(columns=-3), "64×-3"),
    (dict(rows="sixty"), "Rows is not a number"),
    (dict(photometric="PALETTE COLOR"), "no palette"),
    (dict(photometric="PALETTE COLOR", bits_allocated=1, bits_stored=1), "8-bit"),
    (dict(photometric="PALETTE COLOR", palette=((256, 0, 12), b"", b"", b"")), "palette"),
    (dict(photometric="PALETTE COLOR", palette=((256, 0, 8), bytes(10), bytes(256),
                                                bytes(256))), "palette is malformed"),
    (dict(photometric="PALETTE COLOR", palette=((256, 0), b"", b"", b"")), "palette"),
    (dict(photometric="PALETTE COLOR", palette="nonsense"), "icon"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_malformed_icons_raise_bad_icon(change: dict[str, object], message: str) -> None:
    icon = grey_icon(ramp(64), **change)
    with pytest.raises(BadIcon, match=message.replace("(", r"\(")):
        decode_icon(icon)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(-2, 70), cols=st.integers(-2, 70),
       photometric=st.sampled_from(["MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "x"]),
       allocated=st.sampled_from([0, 1, 8, 16, 255]), stored=st.integers(0, 17),
       data=st.binary(max_size=5000), spp=st.integers(0, 4), rep=st.integers(0, 1),
       desc=st.tuples(st.integers(0, 300), st.integers(-5, 300), st.sampled_from([0, 8, 16])),
       lut=st.binary(max_size=700))
def test_hostile_icons_never_crash(rows: int, cols: int, photometric: str, allocated: int,
                                   stored: int, data: bytes, spp: int, rep: int,
                                   desc: tuple[int, int, int], lut: bytes) -> None:
    icon = Icon(rows=rows, columns=cols, photometric=photometric, bits_allocated=allocated,
                bits_stored=stored, pixel_data=data, samples_per_pixel=spp,
                pixel_representation=rep, palette=(desc, lut, lut, lut))
    try:
        out = decode_icon(icon)
    except BadIcon:
        return
    assert out.dtype == np.uint8 and out.shape[:2] == (rows, cols)


# ------------------------------------------------------------------------- make_icon_item


def check_item(item: Dataset, size: int) -> np.ndarray:
    assert item.SamplesPerPixel == 1
    assert item.PhotometricInterpretation == "MONOCHROME2"
    assert (item.Rows, item.Columns) == (size, size)
    assert (item.BitsAllocated, item.BitsStored, item.HighBit) == (8, 8, 7)
    assert item.PixelRepresentation == 0
    assert item["PixelData"].VR == "OB"
    assert "PlanarConfiguration" not in item
    assert len(item.PixelData) == size * size + (size * size) % 2
    return decode_icon(icon_from_item(item))


@pytest.mark.parametrize("size", [64, 128])
def test_make_icon_item_attributes_and_round_trip(size: int) -> None:
    ds = dcmread(pydicom_test_file("CT_small.dcm"))
    out = check_item(make_icon_item(ds, size), size)
    assert out.shape == (size, size) and out.max() > 200 and out.min() < 30


def test_letterbox_bars_are_black() -> None:
    ds = make_dataset(40, 10, pixels=np.full((40, 10), 3000, dtype=np.uint16), WindowCenter=None,
                      WindowWidth=None, RescaleIntercept=0)
    ds.PixelData = np.array([[3000] * 10] * 20 + [[3001] * 10] * 20, dtype=np.uint16).tobytes()
    out = check_item(make_icon_item(ds, 64), 64)
    # 40×10 → 64×16, centred: 24 black columns each side
    assert (out[:, :24] == 0).all() and (out[:, 40:] == 0).all()
    assert (out[:28, 26:38] == 0).all() and (out[36:, 26:38] == 255).all()


def test_icon_respects_pixel_aspect_ratio() -> None:
    ds = make_dataset(20, 40, pixels=np.full((20, 40), 100, dtype=np.uint16), PixelSpacing=[2, 1],
                      WindowCenter=0, WindowWidth=10, RescaleIntercept=0)  # 20 rows of 2 mm × 40 cols of 1 mm: square
    out = icon_pixels(ds, 32)
    assert (out == 255).all()


def test_icon_of_tall_real_image() -> None:
    out = check_item(make_icon_item(dcmread(pydicom_test_file("JPEG2000.dcm"))), 64)
    assert (out[:, :24] == 0).all() and (out[:, 40:] == 0).all()  # 1024×256 → 64×16
    assert out[:, 24:40].max() > 100


def test_icon_monochrome1_inverted_and_window_applied() -> None:
    pixels = np.array([[0] * 8] * 4 + [[4095] * 8] * 4, dtype=np.uint16)
    mono2 = icon_pixels(make_dataset(8, 8, pixels=pixels), 8)
    mono1 = icon_pixels(make_dataset(8, 8, pixels=pixels, PhotometricInterpretation="MONOCHROME1"), 8)
    assert mono2[0, 0] == 0 and mono2[-1, -1] == 255
    np.testing.assert_array_equal(mono1, 255 - mono2)
    # the window is applied: values between 1064 and 1264 (40..240 HU) map to grey levels
    mid = icon_pixels(make_dataset(8, 8, pixels=np.full((8, 8), 1064, dtype=np.uint16)), 8)
    assert (mid == 128).all()


def test_icon_colour_to_grey_bt601() -> None:
    ds = make_dataset(4, 4, PhotometricInterpretation="RGB", SamplesPerPixel=3, BitsAllocated=8,
                      BitsStored=8, HighBit=7, PlanarConfiguration=0, RescaleIntercept=None,
                      RescaleSlope=None, RescaleType=None, WindowCenter=None, WindowWidth=None)
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    rgb[..., 1] = 100
    rgb[..., 2] = 50
    ds.PixelData = rgb.tobytes()
    out = icon_pixels(ds, 4)
    assert (out == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)).all()


def test_icon_of_palette_and_ybr_files() -> None:
    for name in ("examples_palette.dcm", "examples_ybr_color.dcm", "SC_rgb_jpeg_dcmtk.dcm"):
        out = check_item(make_icon_item(dcmread(pydicom_test_file(name))), 64)
        assert out.std() > 5, name


def test_icon_uses_representative_frame(tmp_path: Path) -> None:
    frames = np.stack([np.full((4, 4), 1024 + 50 * i, dtype=np.uint16) for i in range(5)])
    ds = make_dataset(4, 4, pixels=frames, NumberOfFrames=5, WindowCenter=100, WindowWidth=101)
    # middle frame: 100 HU → ((100 - 99.5) / 100 + 0.5) * 255 = 128.8
    assert (icon_pixels(ds, 4) == 129).all()
    ds.RepresentativeFrameNumber = 1
    assert (icon_pixels(ds, 4) == 0).all()  # frame 1: 0 HU, below the window
    ds.RepresentativeFrameNumber = 5
    path = write_instance(tmp_path / "mf.dcm", ds)
    assert (icon_pixels(path, 4) == 255).all()  # frame 5: 200 HU, above the window


def test_icon_item_written_in_a_sequence_reads_back(tmp_path: Path) -> None:
    ds = make_dataset(16, 16)
    ds.IconImageSequence = Sequence([make_icon_item(ds, 64)])
    path = write_instance(tmp_path / "with_icon.dcm", ds)
    back = dcmread(path)
    item = back.IconImageSequence[0]
    assert item["PixelData"].VR == "OB"
    check_item(item, 64)


def test_make_icon_item_unrenderable_raises_render_error() -> None:
    with pytest.raises(RenderError, match="rtplan.dcm"):
        make_icon_item(dcmread(pydicom_test_file("rtplan.dcm")))
    with pytest.raises(ValueError, match="size"):
        make_icon_item(make_dataset(), 0)


def test_icon_from_item_incomplete() -> None:
    with pytest.raises(BadIcon, match="incomplete"):
        icon_from_item(Dataset())


def test_icon_from_item_with_palette() -> None:
    item = Dataset()
    item.SamplesPerPixel = 1
    item.PhotometricInterpretation = "PALETTE COLOR"
    item.Rows = item.Columns = 2
    item.BitsAllocated = item.BitsStored = 8
    item.HighBit = 7
    item.PixelRepresentation = 0
    for colour, lut in (("Red", [0, 65535]), ("Green", [65535, 0]), ("Blue", [0, 0])):
        setattr(item, f"{colour}PaletteColorLookupTableDescriptor", [2, 0, 16])
        setattr(item, f"{colour}PaletteColorLookupTableData",
                np.array(lut, dtype="<u2").tobytes())
    item.add_new(0x7FE00010, "OB", bytes([0, 1, 1, 0]))
    out = decode_icon(icon_from_item(item))
    assert out.tolist() == [[[0, 255, 0], [255, 0, 0]], [[255, 0, 0], [0, 255, 0]]]
