"""Decode one frame of any instance and turn it into an 8-bit display image.

The pipeline follows PS3.3 C.11 (and STANDARDS.md §3 for icons): decode the stored frame with
pydicom (every transfer syntax pydicom and the pylibjpeg plugins decode), apply the Modality LUT
(Rescale Slope/Intercept or a Modality LUT Sequence; per-frame functional groups win), keep the
result as float32 in a :class:`Frame` so a viewer can re-window it cheaply, then apply the VOI
(window or VOI LUT Sequence, else the frame's min/max) in :func:`to_display`. MONOCHROME1 is
displayed inverted (low values bright); colour (RGB, YBR_* as converted by pydicom, PALETTE
COLOR through its palette) becomes uint8 RGB.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from app.core.errors import RenderError
from app.core.imaging.icons import describe, lut_array, palette_lut
from app.core.imaging.jpeg_lossless import keep_gdcm_out_of_pydicom

# With python-gdcm installed pydicom would decode through gdcm first, which aborts the process
# on some valid files (app/core/jpeg_lossless.py): decoders stay pylibjpeg/pillow/pydicom.
keep_gdcm_out_of_pydicom()

Source = BinaryIO | Path | str | Dataset

#: Refuse frames larger than this many samples (a hostile Rows × Columns would exhaust memory).
MAX_SAMPLES = 2**27
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(eq=False)
class Frame:
    """One decoded frame, ready for (re-)windowing by :func:`to_display`.

    ``values`` is float32 (H, W) after the Modality LUT for greyscale, uint8 (H, W, 3) RGB for
    colour. ``default_window`` is the file's first (center, width), or None. ``voi_lut`` is the
    file's VOI LUT as (first mapped value, uint8 table) when it has one and no window.
    ``display_inverted`` is True for MONOCHROME1 (and Presentation LUT Shape INVERSE).
    ``pixel_aspect`` is the vertical / horizontal pixel size ratio. ``index`` is 0-based.
    """

    values: np.ndarray
    is_color: bool
    default_window: tuple[float, float] | None
    n_frames: int
    photometric: str
    index: int = 0
    voi_lut: tuple[int, np.ndarray] | None = None
    window_function: str = "LINEAR"
    display_inverted: bool = False
    value_range: tuple[float, float] = (0.0, 0.0)
    pixel_aspect: float = 1.0
    name: str = ""

    def auto_window(self) -> tuple[float, float]:
        """The window shown by default: the file's window, else one spanning min..max."""
        if self.default_window is not None:
            return self.default_window
        lo, hi = self.value_range
        return (lo + hi) / 2.0, max(hi - lo, 1.0)


# ----------------------------------------------------------------------------- attribute helpers


def _get(obj: Any, keyword: str) -> Any:
    """A keyword's value from a Dataset, a Header (``.values``), an Instance (``.attrs``) or a dict."""
    if isinstance(obj, Dataset):
        try:
            return obj.get(keyword)
        except Exception:  # a hostile value pydicom cannot convert
            return None
    for attr in ("values", "attrs"):
        mapping = getattr(obj, attr, None)
        if isinstance(mapping, Mapping):
            return mapping.get(keyword)
    if isinstance(obj, Mapping):
        return obj.get(keyword)
    return None


def _first(value: Any) -> Any:
    """First value of a multi-valued attribute (also of ``"40\\400"`` strings)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.split("\\")[0]
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return value[0] if len(value) else None
    return value


def _number(value: Any) -> float | None:
    try:
        f = float(_first(value))
    except (TypeError, ValueError, IndexError):
        return None
    return f if math.isfinite(f) else None


def n_frames_of(ds_or_header: Any) -> int:
    """Number of Frames (at least 1) of a Dataset, Header, Instance or mapping."""
    n = _number(_get(ds_or_header, "NumberOfFrames"))
    return int(n) if n is not None and n >= 1 else 1


def representative_frame(ds_or_header: Any) -> int:
    """0-based frame shown for an instance (DESIGN.md "Images shown for a series or an instance").

    Representative Frame Number (0028,6010) when present and in range, else the middle frame
    (``n_frames // 2``). Accepts a Dataset, a Header (``.values``), an Instance (``.attrs``) or a
    mapping by keyword.
    """
    n = n_frames_of(ds_or_header)
    rep = _number(_get(ds_or_header, "RepresentativeFrameNumber"))
    if rep is not None and rep == int(rep) and 1 <= rep <= n:
        return int(rep) - 1
    return n // 2


def _frame_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """First item of a functional group macro for a frame (per-frame wins over shared)."""
    for group in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        try:
            items = ds.get(group)
            if not items:
                continue
            item = items[index] if group.startswith("PerFrame") and index < len(items) else items[0]
            sub = item.get(sequence)
            if sub:
                return sub[0]
        except Exception:
            continue
    return None


def _frame_attr(ds: Dataset, index: int, sequence: str, keyword: str) -> Any:
    item = _frame_item(ds, index, sequence)
    if item is not None and keyword in item:
        return item.get(keyword)
    return ds.get(keyword)


# ----------------------------------------------------------------------------- reading


def _name_of(source: Source) -> str:
    if isinstance(source, Dataset):
        name = getattr(source, "filename", None)
        if isinstance(name, str) and name:
            return name
        return f"dataset {source.get('SOPInstanceUID', '(no SOP Instance UID)')}"
    if isinstance(source, str | Path):
        return str(source)
    return str(getattr(source, "name", "<stream>"))


def _ensure_transfer_syntax(ds: Dataset) -> Dataset:
    """A shallow copy with a Transfer Syntax UID when the dataset has none (no File Meta)."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return ds
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if little is False:
        ts = ExplicitVRBigEndian
    elif implicit:
        ts = ImplicitVRLittleEndian
    else:
        ts = ExplicitVRLittleEndian
    if "PixelData" in ds and ds["PixelData"].is_undefined_length:
        raise ValueError("encapsulated pixel data but no Transfer Syntax UID")
    new_meta = FileMetaDataset()
    for elem in meta or []:
        new_meta.add(elem)
    new_meta.TransferSyntaxUID = ts
    out = copy.copy(ds)  # shallow: the caller's dataset is never modified
    out.file_meta = new_meta
    return out


def _check_geometry(ds: Dataset) -> None:
    rows, cols = _number(ds.get("Rows")), _number(ds.get("Columns"))
    spp = _number(ds.get("SamplesPerPixel")) or 1
    if not rows or not cols or rows < 1 or cols < 1:
        raise ValueError("Rows/Columns missing or zero")
    if rows * cols * spp > MAX_SAMPLES:
        raise ValueError(f"frame too large ({int(rows)}×{int(cols)}×{int(spp)} samples)")


def _decode(source: Source, index: int | None) -> tuple[Dataset, np.ndarray, int]:
    """Read ``source`` and decode one frame: (dataset or header, frame array, 0-based index)."""
    if isinstance(source, Dataset):
        ds = _ensure_transfer_syntax(source)
        return ds, *_decode_dataset(ds, index)
    if isinstance(source, str | Path):
        with open(source, "rb") as fp:
            return _decode_stream(fp, index)
    if not (hasattr(source, "seekable") and source.seekable()):
        return _decode_stream(io.BytesIO(source.read()), index)
    position = source.tell()
    try:
        return _decode_stream(source, index)
    finally:
        source.seek(position)  # the caller's stream is left where it was


def _decode_dataset(ds: Dataset, index: int | None) -> tuple[np.ndarray, int]:
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise ValueError("no pixel data")
    _check_geometry(ds)
    n = n_frames_of(ds)
    i = representative_frame(ds) if index is None else index
    if not 0 <= i < n:
        raise ValueError(f"frame {i} out of range ({n} frame{'s' if n != 1 else ''})")
    return pixel_array(ds, index=i if n > 1 else None), i


def _decode_stream(fp: BinaryIO, index: int | None) -> tuple[Dataset, np.ndarray, int]:
    start = 0  # like pydicom.pixels.pixel_array: a stream is read from its beginning
    fp.seek(start)
    header = dcmread(fp, force=True, stop_before_pixels=True)
    ts = header.file_meta.get("TransferSyntaxUID") if getattr(header, "file_meta", None) else None
    n = n_frames_of(header)
    if n > 1 and ts and UID(ts) != DeflatedExplicitVRLittleEndian:
        # Multi-frame in the file format: decode only the requested frame, straight from the file.
        _check_geometry(header)
        i = representative_frame(header) if index is None else index
        if not 0 <= i < n:
            raise ValueError(f"frame {i} out of range ({n} frames)")
        fp.seek(start)
        try:
            return header, pixel_array(fp, index=i), i
        except Exception:  # e.g. a body that contradicts its File Meta: read it all instead
            pass
    fp.seek(start)
    ds = _ensure_transfer_syntax(dcmread(fp, force=True))
    return ds, *_decode_dataset(ds, index)


# ----------------------------------------------------------------------------- LUTs


def _apply_palette(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    if "SegmentedRedPaletteColorLookupTableData" in ds and "RedPaletteColorLookupTableData" not in ds:
        out = apply_color_lut(arr, ds)[..., :3]
        return (out >> 8).astype(np.uint8) if out.dtype.itemsize > 1 and out.max() > 255 else out.astype(np.uint8)
    little = getattr(ds, "original_encoding", (None, True))[1] is not False
    if "RedPaletteColorLookupTableData" not in ds:
        raise ValueError("PALETTE COLOR without a palette")
    first, table = palette_lut(ds.RedPaletteColorLookupTableDescriptor,
                               ds.RedPaletteColorLookupTableData,
                               ds.GreenPaletteColorLookupTableData,
                               ds.BluePaletteColorLookupTableData, little)
    idx = np.clip(arr.astype(np.int64) - first, 0, len(table) - 1)
    return table[idx]


def _voi_lut(ds: Dataset) -> tuple[int, np.ndarray] | None:
    seq = ds.get("VOILUTSequence")
    if not seq:
        return None
    try:
        item = seq[0]
        desc = [int(v) for v in item.LUTDescriptor]
        n = desc[0] or 65536
        little = getattr(ds, "original_encoding", (None, True))[1] is not False
        lut = lut_array(item.LUTData, n, little).astype(np.float64)
        bits = desc[2] if 8 <= desc[2] <= 16 else 16
        scale = max(float(2**bits - 1), float(lut.max()) if lut.size else 1.0)
        return desc[1], np.clip(lut * (255.0 / scale) + 0.5, 0, 255).astype(np.uint8)
    except Exception:
        return None


def _window(ds: Dataset, index: int) -> tuple[tuple[float, float] | None, str]:
    center = _number(_frame_attr(ds, index, "FrameVOILUTSequence", "WindowCenter"))
    width = _number(_frame_attr(ds, index, "FrameVOILUTSequence", "WindowWidth"))
    func = str(_frame_attr(ds, index, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR")
    func = func.strip().upper()
    if func not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        func = "LINEAR"
    if center is None or width is None or width <= 0:
        return None, func
    return (center, width), func


def _modality(arr: np.ndarray, ds: Dataset, index: int) -> np.ndarray:
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    values = arr.astype(np.float32)
    slope = _number(_frame_attr(ds, index, "PixelValueTransformationSequence", "RescaleSlope"))
    icpt = _number(_frame_attr(ds, index, "PixelValueTransformationSequence", "RescaleIntercept"))
    if slope is not None and slope != 1.0:
        values *= np.float32(slope)
    if icpt:
        values += np.float32(icpt)
    return values


def _pixel_aspect(ds: Dataset, index: int) -> float:
    ratio = ds.get("PixelAspectRatio")
    spacing = _frame_attr(ds, index, "PixelMeasuresSequence", "PixelSpacing") or ratio
    try:
        v, h = float(spacing[0]), float(spacing[1])
        if v > 0 and h > 0 and math.isfinite(v / h) and 0.1 <= v / h <= 10:
            return v / h
    except Exception:
        pass
    return 1.0


def _to_uint8_color(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    bits = int(_number(ds.get("BitsStored")) or arr.dtype.itemsize * 8)
    shift = max(bits - 8, 0)
    return (arr.astype(np.uint64) >> shift).clip(0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- public API


def load_frame(source: Source, frame: int | None = None) -> Frame:
    """Decode one frame of an instance (a path, a binary file object or a Dataset).

    ``frame`` is 0-based; None takes the representative frame (:func:`representative_frame`).
    Multi-frame files decode only the requested frame. Raises RenderError naming the file for
    anything unrenderable (no pixel data, unsupported transfer syntax, corrupt stream, bad frame
    number).
    """
    name = _name_of(source)
    try:
        ds, arr, index = _decode(source, frame)
        photometric = str(ds.get("PhotometricInterpretation") or "MONOCHROME2").strip().upper()
        n = n_frames_of(ds)
        aspect = _pixel_aspect(ds, index)
        if photometric == "PALETTE COLOR" and arr.ndim == 2:
            values = _apply_palette(arr, ds)
        elif arr.ndim == 3 and arr.shape[2] >= 3:
            values = _to_uint8_color(arr[..., :3], ds)
        elif arr.ndim == 2:
            values = _modality(arr, ds, index)
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
            window, func = _window(ds, index)
            shape = str(ds.get("PresentationLUTShape") or "").strip().upper()
            return Frame(
                values=values, is_color=False, default_window=window, n_frames=n,
                photometric=photometric, index=index,
                voi_lut=None if window else _voi_lut(ds), window_function=func,
                display_inverted=photometric == "MONOCHROME1" or shape == "INVERSE",
                value_range=(float(values.min()), float(values.max())),
                pixel_aspect=aspect, name=name)
        else:
            raise ValueError(f"unexpected decoded shape {arr.shape}")
        return Frame(values=np.ascontiguousarray(values), is_color=True, default_window=None,
                     n_frames=n, photometric=photometric, index=index,
                     value_range=(0.0, 255.0), pixel_aspect=aspect, name=name)
    except RenderError:
        raise
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # pydicom, numpy and the plugins raise many kinds on bad input;
        # pylibjpeg-rle even panics (pyo3 PanicException derives from BaseException)
        raise RenderError(f"{name}: cannot render: {describe(exc)}") from exc


def to_display(frame: Frame, center: float | None = None, width: float | None = None,
               invert: bool = False) -> np.ndarray:
    """Window a frame to uint8 (H, W), or (H, W, 3) for colour (PS3.3 C.11.2.1.2).

    Without ``center``/``width`` the file's window is used, else its VOI LUT, else min..max.
    The frame's VOI LUT Function (LINEAR, LINEAR_EXACT, SIGMOID) applies. MONOCHROME1 frames
    come out inverted (low values bright); ``invert`` flips that. Width ≤ 1 thresholds at the
    center. Colour frames are windowed per channel only when a window is given.
    """
    flip = frame.display_inverted != bool(invert)
    x = frame.values
    if frame.is_color:
        if center is None and width is None:
            out = x.copy()
            return np.subtract(255, out, out=out) if invert else out
        func = "LINEAR"
        default = (127.5, 256.0)
    else:
        func = frame.window_function
        default = frame.default_window
        if center is None and width is None and default is None and frame.voi_lut is not None:
            first, lut = frame.voi_lut
            idx = np.clip(x - first, 0, len(lut) - 1).astype(np.intp)
            out = lut[idx]
            return np.subtract(255, out, out=out) if flip else out
        if default is None:
            lo, hi = frame.value_range
            if hi <= lo:  # a flat frame: black (white when inverted)
                return np.full(x.shape, 255 if flip else 0, dtype=np.uint8)
            default, func = ((lo + hi) / 2.0, hi - lo), "LINEAR_EXACT"
            if center is not None or width is not None:
                default = ((lo + hi) / 2.0, hi - lo + 1.0)
                func = frame.window_function
    c = float(default[0] if center is None else center)
    w = float(default[1] if width is None else width)
    if not (math.isfinite(c) and math.isfinite(w)):
        raise ValueError(f"window must be finite, got center={c} width={w}")
    flip = flip if not frame.is_color else bool(invert)
    if func == "SIGMOID" and w > 0:
        y = np.exp(np.float32(-4.0 / w) * (x.astype(np.float32) - np.float32(c)))
        y = 255.0 / (1.0 + y)
        if flip:
            y = 255.0 - y
        return np.clip(y + 0.5, 0, 255.5).astype(np.uint8)
    if func == "LINEAR_EXACT" and w > 0:
        a, b = 255.0 / w, (0.5 - c / w) * 255.0
    elif w > 1:
        a = 255.0 / (w - 1.0)
        b = (0.5 - (c - 0.5) / (w - 1.0)) * 255.0
    else:  # degenerate width: a threshold at c - 0.5
        return ((x > (c - 0.5)) != flip).astype(np.uint8) * np.uint8(255)
    if flip:
        a, b = -a, 255.0 - b
    y = x.astype(np.float32) if x.dtype != np.float32 else x
    z = y * np.float32(a)
    z += np.float32(b + 0.5)
    np.clip(z, 0, 255.5, out=z)
    return z.astype(np.uint8)


def resize_to(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resample a uint8 image to (height, width): Lanczos when shrinking, bicubic when growing."""
    height, width = max(1, int(height)), max(1, int(width))
    if img.shape[0] == height and img.shape[1] == width:
        return img
    shrinking = height * width < img.shape[0] * img.shape[1]
    pil = Image.fromarray(np.ascontiguousarray(img))
    if shrinking:
        pil = pil.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    else:
        pil = pil.resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(pil)


def fit_size(rows: int, cols: int, box: int, pixel_aspect: float = 1.0,
             grow: bool = False) -> tuple[int, int]:
    """(height, width) that fits a ``box`` square keeping the displayed aspect ratio."""
    h, w = rows * pixel_aspect, float(cols)
    scale = box / max(h, w)
    if not grow:
        scale = min(scale, 1.0)
    return max(1, round(h * scale)), max(1, round(w * scale))


def render(source: Source, frame: int | None = None, max_size: int | None = None) -> np.ndarray:
    """Load a frame, apply its default window and fit it into ``max_size`` pixels (uint8).

    Non-square pixels (Pixel Spacing / Pixel Aspect Ratio) are corrected; images are never
    enlarged. Raises RenderError.
    """
    fr = load_frame(source, frame)
    img = to_display(fr)
    rows, cols = img.shape[:2]
    if max_size is None and abs(fr.pixel_aspect - 1.0) < 0.01:
        return img
    box = max_size if max_size else round(max(rows * fr.pixel_aspect, cols))
    h, w = fit_size(rows, cols, box, fr.pixel_aspect, grow=max_size is None)
    return resize_to(img, h, w)
