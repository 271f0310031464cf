"""The viewer's loading side: read one instance on a worker thread and say what it is.

:func:`load_object` runs on the TaskRunner's read pool and touches no widget. It reads the file
(values from the file win over the record's; the record only fills gaps), decodes the requested
frame with :mod:`app.core.imaging.display`, renders a structured report to text
(:mod:`app.core.imaging.sr_text`) or extracts an encapsulated document (:mod:`app.core.imaging.encapsulated`),
and never raises for bad input: failures come back as ``Loaded(kind="error")`` naming the file.
"""

from __future__ import annotations

import html
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID
from PySide6.QtCore import QCoreApplication

from app.core.errors import DiscBridgeError, RenderError
from app.core.imaging import display as imaging
from app.core.imaging.encapsulated import (
    ExtractedDocument,
    extract_document,
    is_encapsulated_document,
)
from app.core.imaging.sr_text import SrLine, is_structured_report, sr_lines
from app.core.model import Instance, Medium
from app.gui.viewer_overlay import ImageInfo

DATASET_CACHE_ENTRIES = 3  # whole multi-frame datasets kept for frame-by-frame decoding
DATASET_CACHE_BYTES = 512 * 2**20


def tr(text: str) -> str:
    return QCoreApplication.translate("ViewerWidget", text)


@dataclass
class Loaded:
    """What :func:`load_object` found: ``kind`` is image, report, document, unsupported or
    error. Built on a worker thread; holds no Qt object."""

    kind: str
    info: ImageInfo
    frame: Any = None  # imaging.Frame for images
    n_frames: int = 1
    text: str = ""  # the report text, or the error message
    type_name: str = ""  # the SOP class, for "cannot display"
    document: ExtractedDocument | None = None
    fps: float | None = None

    @property
    def nbytes(self) -> int:
        values = getattr(self.frame, "values", None)
        return int(getattr(values, "nbytes", 0)) + len(self.text)


class DatasetCache:
    """Thread-safe LRU of whole datasets of multi-frame instances (by SOP Instance UID), bounded
    by count and by the bytes of their pixel data (a cine loop can be hundreds of MB)."""

    def __init__(self, entries: int = DATASET_CACHE_ENTRIES,
                 max_bytes: int = DATASET_CACHE_BYTES) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[Dataset, int]] = OrderedDict()
        self._entries = entries
        self._max_bytes = max_bytes

    def get(self, uid: str) -> Dataset | None:
        with self._lock:
            item = self._items.get(uid)
            if item is None:
                return None
            self._items.move_to_end(uid)
            return item[0]

    def put(self, uid: str, ds: Dataset) -> None:
        size = 0
        for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            value = ds.get(kw)
            if isinstance(value, bytes | bytearray):
                size += len(value)
        if size > self._max_bytes:
            return  # too big to keep: each frame re-reads the file instead
        with self._lock:
            self._items[uid] = (ds, size)
            self._items.move_to_end(uid)
            while len(self._items) > self._entries or (
                    len(self._items) > 1 and sum(n for _, n in self._items.values())
                    > self._max_bytes):
                self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _v(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed element reads as absent
        return ""
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(x) for x in value)
    return str(value).strip()


def header_info(ds: Dataset, fallback: dict[str, str]) -> ImageInfo:
    """The overlay values of a dataset; ``fallback`` (from the record) fills what the file lacks."""

    def pick(keyword: str, key: str) -> str:
        return _v(ds, keyword) or fallback.get(key, "") or ""

    def as_int(keyword: str) -> int:
        try:
            return int(ds.get(keyword) or 0)
        except (TypeError, ValueError):
            return 0

    cls = _v(ds, "SOPClassUID")
    return ImageInfo(
        patient_name=pick("PatientName", "patient_name"),
        patient_id=pick("PatientID", "patient_id"),
        birth_date=pick("PatientBirthDate", "birth_date"),
        study_date=pick("StudyDate", "study_date"),
        study_description=pick("StudyDescription", "study_description"),
        series_number=pick("SeriesNumber", "series_number"),
        series_description=pick("SeriesDescription", "series_description"),
        modality=pick("Modality", "modality"),
        instance_number=pick("InstanceNumber", "instance_number"),
        sop_class=cls,
        transfer_syntax=_v(getattr(ds, "file_meta", Dataset()), "TransferSyntaxUID"),
        rows=as_int("Rows"),
        columns=as_int("Columns"),
    )


def sop_class_name(uid: str) -> str:
    """A SOP Class UID's name ("Raw Data Storage"), or the UID itself when unknown."""
    if not uid:
        return tr("unknown object type")
    try:
        name = UID(uid).name
    except Exception:  # noqa: BLE001
        return uid
    return name if name and name != uid else uid


def _read_dataset(medium: Medium, inst: Instance) -> Dataset:
    if medium.fs is None or inst.path is None:
        who = inst.path or "/".join(inst.file_id or ()) or inst.sop_instance_uid or "?"
        raise DiscBridgeError(tr("%1: the file is missing from the medium").replace("%1", who))
    # No warnings.catch_warnings() here: it is not thread-safe and this runs on a pool.
    with medium.fs.open(inst.path) as fp:
        return pydicom.dcmread(fp, force=True)


def _fps(ds: Dataset) -> float | None:
    for kw in ("RecommendedDisplayFrameRate", "CineRate"):
        try:
            v = float(ds.get(kw) or 0)
        except (TypeError, ValueError):
            continue
        if 0 < v <= 120:
            return v
    try:
        ft = float(ds.get("FrameTime") or 0)  # milliseconds
    except (TypeError, ValueError):
        ft = 0
    return 1000.0 / ft if 8 <= ft <= 10000 else None


def load_object(medium: Medium, inst: Instance, frame: int, fallback: dict[str, str],
                datasets: DatasetCache | None = None) -> Loaded:
    """Read one instance and decode ``frame`` (0-based) of it, or its report/document.

    Runs on a worker thread. Never raises for bad input: failures come back as
    ``Loaded(kind="error", text=message naming the file)``.
    """
    name = inst.path or inst.sop_instance_uid or "?"
    info = ImageInfo(**{k: v for k, v in fallback.items() if k in ImageInfo.__dataclass_fields__})
    try:
        uid = inst.sop_instance_uid or name
        ds = datasets.get(uid) if datasets is not None else None
        if ds is None:
            ds = _read_dataset(medium, inst)
        info = header_info(ds, fallback)
        if any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            n = imaging.n_frames_of(ds)
            if n > 1 and datasets is not None:
                datasets.put(uid, ds)
            try:
                fr = imaging.load_frame(ds, max(0, min(frame, n - 1)))
            except RenderError as exc:  # it names "dataset <UID>": name the file instead
                head, sep, rest = str(exc).partition(": ")
                text = f"{name}: {rest}" if sep and name not in head else str(exc)
                return Loaded("error", info, text=text)
            fr.name = name
            return Loaded("image", info, frame=fr, n_frames=max(1, fr.n_frames), fps=_fps(ds))
        if is_structured_report(ds):
            return Loaded("report", info, text=report_html(sr_lines(ds, name)))
        if is_encapsulated_document(ds):
            return Loaded("document", info, document=extract_document(ds, name))
        if "Rows" in ds or "Image Storage" in sop_class_name(info.sop_class):
            return Loaded("error", info, text=tr("%1: this image has no pixel data in its file "
                                                 "(header only)").replace("%1", name))
        return Loaded("unsupported", info, type_name=sop_class_name(info.sop_class))
    except DiscBridgeError as exc:
        return Loaded("error", info, text=str(exc))
    except OSError as exc:
        return Loaded("error", info, text=tr("%1: cannot read the file (%2)").replace("%1", name)
                      .replace("%2", str(exc.strerror or exc)))
    except Exception as exc:  # noqa: BLE001 - hostile bytes: pydicom raises many kinds
        return Loaded("error", info, text=tr("%1: cannot display (%2)").replace("%1", name)
                      .replace("%2", f"{type(exc).__name__}: {exc}"))


def window_presets(modality: str | None) -> list[tuple[str, float, float]]:
    """(name, center, width) of the presets offered for ``modality`` (imaging.presets_for)."""
    return [(name, float(c), float(w)) for name, (c, w) in imaging.presets_for(modality).items()]


def report_html(lines: list[SrLine]) -> str:
    """A structured report as HTML for a text browser: the title, the document facts in grey,
    section headings by depth, and items as "<b>concept</b>: value" indented by nesting."""
    out: list[str] = []
    for ln in lines:
        text = html.escape(ln.text).replace("\r\n", "\n").replace("\n", "<br>")
        pad = 22 * ln.depth
        if ln.kind == "title":
            out.append(f"<h2>{text}</h2>")
        elif ln.kind == "meta":
            out.append(f"<div style='color:#555'>{text}</div>")
        elif ln.kind == "heading":
            size = "h3" if ln.depth == 0 else "h4"
            out.append(f"<{size} style='margin-left:{pad}px; margin-bottom:2px'>{text}</{size}>")
        else:
            rel = ""
            if text.startswith("[") and "] " in text:  # relationship, e.g. "[property] "
                rel, text = text[1:].split("] ", 1)
                rel = f"<span style='color:#777'>{rel}:</span> "
            concept, sep, value = text.partition(": ")
            body = f"<b>{concept}</b>: {value}" if sep and "<br>" not in concept else text
            out.append(f"<div style='margin-left:{pad}px'>{rel}{body}</div>")
    return "\n".join(out)
