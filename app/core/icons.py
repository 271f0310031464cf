"""Icon Image Sequence (0088,0200) items: decode recorded icons, make conformant new ones.

Rules from STANDARDS.md §3 (PS3.3 F.7, PS3.11 A.3.3): one item holding the Image Pixel Macro;
Samples per Pixel 1; MONOCHROME1, MONOCHROME2 or PALETTE COLOR; Bits Allocated = Bits Stored =
1 or 8 (palette icons 8); Pixel Representation 0; native Pixel Data, VR OB.
"""

from __future__ import annotations

import numpy as np
from pydicom import Dataset
from pydicom.pixels import unpack_bits

from app.core.errors import BadIcon
from app.core.model import Icon
from app.core.render import (
    Source,
    describe,
    fit_size,
    load_frame,
    palette_lut,
    resize_to,
    to_display,
)

_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")


def _int(value: object, what: str) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise BadIcon(f"icon {what} is not a number: {value!r}") from exc


def decode_icon(icon: Icon) -> np.ndarray:
    """Decode a recorded icon to uint8: (H, W) grey, or (H, W, 3) RGB for PALETTE COLOR.

    MONOCHROME1 is inverted so that the result always reads as MONOCHROME2 (0 = black); 1-bit
    icons become 0/255; 8-bit icons with fewer Bits Stored are scaled to 0–255. Raises BadIcon
    with the reason for anything malformed (size, length, bits, photometric, palette).
    """
    try:
        return _decode(icon)
    except BadIcon:
        raise
    except Exception as exc:  # hostile values: never let anything else escape
        raise BadIcon(f"icon cannot be decoded: {describe(exc)}") from exc


def _decode(icon: Icon) -> np.ndarray:
    rows, cols = _int(icon.rows, "Rows"), _int(icon.columns, "Columns")
    if rows < 1 or cols < 1:
        raise BadIcon(f"icon has {rows}×{cols} pixels")
    spp = _int(icon.samples_per_pixel, "Samples per Pixel")
    if spp != 1:
        raise BadIcon(f"icon has Samples per Pixel {spp}; icons must have 1 (STANDARDS §3)")
    photometric = str(icon.photometric or "").strip().upper()
    if photometric not in _PHOTOMETRICS:
        raise BadIcon(f"icon Photometric Interpretation {icon.photometric!r} is not "
                      "MONOCHROME1, MONOCHROME2 or PALETTE COLOR")
    allocated = _int(icon.bits_allocated, "Bits Allocated")
    stored = _int(icon.bits_stored, "Bits Stored")
    if allocated not in (1, 8) or not 1 <= stored <= allocated:
        raise BadIcon(f"icon Bits Allocated {allocated} / Bits Stored {stored}: "
                      "icons are 1- or 8-bit")
    if _int(icon.pixel_representation, "Pixel Representation") != 0:
        raise BadIcon("icon Pixel Representation is signed; icons are unsigned")
    if photometric == "PALETTE COLOR" and allocated != 8:
        raise BadIcon("PALETTE COLOR icon must be 8-bit")
    data = icon.pixel_data
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BadIcon("icon has no Pixel Data")
    data = bytes(data)
    count = rows * cols
    expected = (count + 7) // 8 if allocated == 1 else count
    if not expected <= len(data) <= expected + (expected % 2):
        raise BadIcon(f"icon Pixel Data holds {len(data)} bytes; {rows}×{cols} at "
                      f"{allocated} bit{'s' if allocated > 1 else ''} needs {expected}")
    if allocated == 1:
        bits = np.asarray(unpack_bits(data[:expected]))[:count]
        pixels = (bits.astype(np.uint8) * np.uint8(255)).reshape(rows, cols)
    else:
        pixels = np.frombuffer(data, dtype=np.uint8, count=count).reshape(rows, cols)
        if photometric != "PALETTE COLOR" and stored < 8:
            top = (1 << stored) - 1
            scaled = (pixels & top).astype(np.uint16) * 255 + top // 2
            pixels = (scaled // top).astype(np.uint8)
    if photometric == "MONOCHROME1":
        return np.subtract(255, pixels, dtype=np.uint8)
    if photometric == "MONOCHROME2":
        return pixels.copy()
    if icon.palette is None:
        raise BadIcon("PALETTE COLOR icon has no palette")
    descriptor, red, green, blue = icon.palette
    try:
        first, table = palette_lut(descriptor, red, green, blue, bool(icon.little_endian))
    except (TypeError, ValueError) as exc:
        raise BadIcon(f"icon palette is malformed: {describe(exc)}") from exc
    idx = np.clip(pixels.astype(np.int64) - first, 0, len(table) - 1)
    return table[idx]


def icon_from_item(item: Dataset, little_endian: bool = True) -> Icon:
    """The undecoded :class:`Icon` of an Icon Image Sequence item (for files and tests)."""
    try:
        palette = None
        if "RedPaletteColorLookupTableDescriptor" in item:
            palette = (tuple(int(v) for v in item.RedPaletteColorLookupTableDescriptor),
                       bytes(item.get("RedPaletteColorLookupTableData") or b""),
                       bytes(item.get("GreenPaletteColorLookupTableData") or b""),
                       bytes(item.get("BluePaletteColorLookupTableData") or b""))
        return Icon(rows=int(item.Rows), columns=int(item.Columns),
                    photometric=str(item.PhotometricInterpretation),
                    bits_allocated=int(item.BitsAllocated),
                    bits_stored=int(item.get("BitsStored", item.BitsAllocated)),
                    pixel_data=bytes(item.PixelData),
                    samples_per_pixel=int(item.get("SamplesPerPixel", 1)),
                    pixel_representation=int(item.get("PixelRepresentation", 0)),
                    palette=palette,  # type: ignore[arg-type]
                    little_endian=little_endian)
    except Exception as exc:
        raise BadIcon(f"icon item is incomplete: {describe(exc)}") from exc


def icon_pixels(source: Source, size: int = 64) -> np.ndarray:
    """The icon picture of an instance: uint8 (size, size) grey, letterboxed on black.

    Representative frame (DESIGN.md rule), Rescale then VOI (the file's window, VOI LUT or
    min..max), MONOCHROME1 inverted, colour to grey (ITU-R BT.601 luma), aspect ratio (incl.
    non-square pixels) kept. Raises RenderError.
    """
    if not 1 <= int(size) <= 1024:
        raise ValueError(f"icon size must be 1..1024, got {size}")
    frame = load_frame(source)
    img = to_display(frame)
    if img.ndim == 3:
        luma = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
        img = np.clip(luma + 0.5, 0, 255).astype(np.uint8)
    h, w = fit_size(img.shape[0], img.shape[1], size, frame.pixel_aspect, grow=True)
    small = resize_to(img, h, w)
    canvas = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    canvas[top:top + h, left:left + w] = small
    return canvas


def make_icon_item(ds: Source, size: int = 64) -> Dataset:
    """An Icon Image Sequence item for ``ds`` per STANDARDS.md §3.

    Samples per Pixel 1, MONOCHROME2, Bits Allocated = Bits Stored = 8, High Bit 7, Pixel
    Representation 0, Rows = Columns = ``size``, Pixel Data native OB (see :func:`icon_pixels`).
    Raises RenderError when the instance cannot be rendered.
    """
    pixels = icon_pixels(ds, size)
    item = Dataset()
    item.SamplesPerPixel = 1
    item.PhotometricInterpretation = "MONOCHROME2"
    item.Rows = size
    item.Columns = size
    item.BitsAllocated = 8
    item.BitsStored = 8
    item.HighBit = 7
    item.PixelRepresentation = 0
    data = pixels.tobytes()
    if len(data) % 2:
        data += b"\x00"
    item.add_new(0x7FE00010, "OB", data)
    return item
