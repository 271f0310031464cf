"""Imaging façade: icons, frame decoding and display, representative images, window presets.

Everything the rest of DiscBridge needs from imaging is importable from here. Frames are
decoded and windowed in :mod:`app.core.imaging.render`, recorded icons decoded in :mod:`app.core.imaging.icons`;
this module makes new Icon Image Sequence items (STANDARDS.md §3) and holds the DESIGN.md rule
"Images shown for a series or an instance" and the CT window presets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydicom import Dataset

from app.core.imaging.icons import decode_icon, icon_from_item, palette_lut
from app.core.imaging.render import (
    MAX_SAMPLES,
    Frame,
    Source,
    fit_size,
    load_frame,
    n_frames_of,
    render,
    representative_frame,
    resize_to,
    to_display,
)

if TYPE_CHECKING:
    from app.core.model import Instance

__all__ = [
    "MAX_SAMPLES",
    "WINDOW_PRESETS",
    "Frame",
    "decode_icon",
    "fit_size",
    "icon_from_item",
    "icon_pixels",
    "load_frame",
    "make_icon_item",
    "n_frames_of",
    "palette_lut",
    "presets_for",
    "render",
    "representative_frame",
    "resize_to",
    "series_representative",
    "sort_instances",
    "to_display",
]

#: CT window presets, name → (center, width) in HU, in menu order.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "Brain": (40.0, 80.0),
    "Subdural": (75.0, 215.0),
    "Lung": (-600.0, 1500.0),
    "Bone": (400.0, 1800.0),
    "Abdomen": (40.0, 400.0),
    "Mediastinum": (50.0, 350.0),
}

_IMAGE_RECORDS = ("IMAGE", "RT DOSE")


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


def presets_for(modality: str | None) -> dict[str, tuple[float, float]]:
    """The window presets offered for a modality (CT only; empty otherwise)."""
    return dict(WINDOW_PRESETS) if (modality or "").strip().upper() == "CT" else {}


def _number_key(instance: Instance) -> tuple[int, float, str]:
    raw = (instance.instance_number or "").strip()
    try:
        return 0, float(raw), instance.sop_instance_uid or ""
    except ValueError:
        return 1, 0.0, instance.sop_instance_uid or ""


def sort_instances(instances: Iterable[Instance]) -> list[Instance]:
    """Instances by Instance Number (numeric; missing or non-numeric last), ties by UID."""
    return sorted(instances, key=_number_key)


def series_representative(instances: Sequence[Instance] | Iterable[Instance]) -> Instance:
    """The instance shown for a series: the middle one by Instance Number (DESIGN.md).

    Image records are preferred when the series also holds non-image objects. The middle of n
    sorted instances is index ``n // 2``, the same rule as :func:`representative_frame`.
    Raises ValueError for an empty series.
    """
    items = list(instances)
    if not items:
        raise ValueError("a series without instances has no representative")
    images = [i for i in items if (i.record_type or "").upper() in _IMAGE_RECORDS]
    ordered = sort_instances(images or items)
    return ordered[len(ordered) // 2]
