"""Imaging façade: icons, frame decoding and display, representative images, window presets.

Everything the rest of DiscBridge needs from imaging is importable from here; the work is done
in :mod:`app.core.render` (frames) and :mod:`app.core.icons` (Icon Image Sequence items).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from app.core.icons import decode_icon, icon_from_item, icon_pixels, make_icon_item
from app.core.render import (
    MAX_SAMPLES,
    Frame,
    fit_size,
    load_frame,
    n_frames_of,
    palette_lut,
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
