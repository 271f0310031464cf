"""Icon Image Sequence (0088,0200) items as recorded: decode them, check them, and LUT tables.

New icons are made by :func:`app.core.imaging.display.make_icon_item` (it needs the renderer).

Rules from STANDARDS.md §3 (PS3.3 F.7, PS3.11 A.3.3): one item holding the Image Pixel Macro;
Samples per Pixel 1; MONOCHROME1, MONOCHROME2 or PALETTE COLOR; Bits Allocated = Bits Stored =
1 or 8 (palette icons 8); Pixel Representation 0; native Pixel Data, VR OB.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.pixels import unpack_bits

from app.core.errors import BadIcon
from app.core.model import Icon

_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")


def describe(exc: BaseException, limit: int = 400) -> str:
    """A one-line reason from any exception (pydicom's plugin errors span several lines)."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    if not text:
        text = type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lut_array(data: Any, n: int, little_endian: bool = True) -> np.ndarray:
    """LUT Data (bytes of 8- or 16-bit entries, or a list of ints) as an int array of ``n``."""
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if len(raw) in (n, n + 1) and len(raw) != 2 * n:
            arr = np.frombuffer(raw[:n], dtype=np.uint8)
        elif len(raw) >= 2 * n:
            arr = np.frombuffer(raw[: 2 * n], dtype="<u2" if little_endian else ">u2")
        else:
            raise ValueError(f"LUT data holds {len(raw)} bytes for {n} entries")
    else:
        values = list(data) if isinstance(data, list | tuple) or hasattr(data, "__len__") else [data]
        if len(values) < n:
            raise ValueError(f"LUT data holds {len(values)} entries, {n} expected")
        arr = np.asarray(values[:n], dtype=np.int64)
    return arr.astype(np.int64)


def palette_lut(descriptor: Any, red: Any, green: Any, blue: Any,
                little_endian: bool = True) -> tuple[int, np.ndarray]:
    """A Palette Color LUT (PS3.3 C.7.6.3.1.5–6) as (first mapped value, uint8 (n, 3) table).

    Entries may be 8-bit (one byte each) or 16-bit (one word each; a 16-bit LUT whose values all
    fit in 8 bits is taken as 8-bit values, a common writer mistake). Raises ValueError.
    """
    desc = [int(v) for v in descriptor]
    if len(desc) != 3:
        raise ValueError("palette descriptor must have 3 values")
    n = desc[0] or 65536
    first, bits = desc[1], desc[2]
    if not 0 < n <= 65536 or bits not in (8, 16):
        raise ValueError(f"bad palette descriptor {desc}")
    channels = [lut_array(data, n, little_endian) for data in (red, green, blue)]
    table = np.stack(channels, axis=1)
    top = int(table.max()) if table.size else 0
    if top > 255:
        table = table >> 8
    return first, table.astype(np.uint8)


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
