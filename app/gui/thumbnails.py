"""Thumbnails of a study's series: loader, bounded LRU cache, list model and grid view.

Each series is shown by its representative image (DESIGN.md: the middle instance by Instance
Number; a multi-frame instance by its representative frame). The picture comes from that
record's Icon Image Sequence when the DICOMDIR has one (``imaging.decode_icon``), else from the
series record's icon, else it is rendered from the file (``imaging.render`` with ``max_size``).
All decoding runs on the TaskRunner's read pool; the worker returns a detached ``QImage`` and
the GUI thread turns it into a ``QPixmap`` and caches it by SOP Instance UID (LRU, bounded by
bytes). A placeholder is shown while loading, a "cannot display" picture when it failed.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionFocusRect,
    QStyleOptionViewItem,
    QWidget,
)

from app.core.errors import BadIcon, DiscBridgeError
from app.core.model import Instance, Medium, Series
from app.gui import ntr
from app.gui.tasks import Task, TaskRunner

log = logging.getLogger(__name__)

THUMB_SIZE = 128  # logical pixels (device pixels = THUMB_SIZE × devicePixelRatio)
SeriesRole = Qt.ItemDataRole.UserRole + 20
StateRole = Qt.ItemDataRole.UserRole + 21  # "loading", "ready", "failed", "document"
Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()  # default 'parent' argument (never mutated)

# Objects that are not pictures: never rendered, shown with a document symbol.
_DOCUMENT_RECORDS = {"SR DOCUMENT", "ENCAP DOC", "KEY OBJECT DOC", "PRESENTATION", "WAVEFORM",
                     "RT PLAN", "RT STRUCTURE SET", "RT TREAT RECORD", "SPECTROSCOPY",
                     "REGISTRATION", "FIDUCIAL", "MEASUREMENT", "PLAN", "STEREOMETRIC",
                     "RAW DATA", "VALUE MAP"}


def _instance_number(inst: Instance) -> float:
    try:
        return float(inst.instance_number) if inst.instance_number else float("inf")
    except ValueError:
        return float("inf")


def representative_instance(series: Series) -> Instance | None:
    """The instance that stands for a series (DESIGN.md: the middle one by Instance Number,
    ``imaging.series_representative``), preferring instances whose file is present."""
    present = [i for i in series.instances if i.path is not None] or series.instances
    if not present:
        return None
    try:
        from app.core.imaging.display import series_representative
    except ImportError:  # imaging not installed yet: the same rule, inline
        ordered = sorted(present, key=lambda i: (_instance_number(i), i.sop_instance_uid or ""))
        return ordered[len(ordered) // 2]
    return series_representative(present)


def is_document(inst: Instance) -> bool:
    return (inst.record_type or "IMAGE").upper() in _DOCUMENT_RECORDS


def cache_key(medium: Medium, inst: Instance | None, series: Series) -> str:
    if inst is not None and inst.sop_instance_uid:
        return inst.sop_instance_uid
    return f"{medium.root}|{series.series_uid}|{inst.path if inst else ''}"


def array_to_qimage(arr: np.ndarray) -> QImage:
    """A detached QImage of a uint8 (H, W) or (H, W, 3) array (safe to keep after ``arr`` dies)."""
    a = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w = a.shape[:2]
    if a.ndim == 2:
        img = QImage(a.data, w, h, w, QImage.Format.Format_Grayscale8)
    elif a.ndim == 3 and a.shape[2] == 3:
        img = QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    else:
        raise BadIcon(f"unexpected image shape {a.shape}")
    return img.copy()


def fit_image(img: QImage, size_px: int) -> QImage:
    """Scale to fill a ``size_px`` square (aspect kept); tiny images are enlarged pixel-exact."""
    if img.isNull() or (max(img.width(), img.height()) == size_px):
        return img
    small = max(img.width(), img.height()) * 4 <= size_px
    mode = (Qt.TransformationMode.FastTransformation if small
            else Qt.TransformationMode.SmoothTransformation)
    return img.scaled(size_px, size_px, Qt.AspectRatioMode.KeepAspectRatio, mode)


def _imaging() -> Any:
    try:
        from app.core.imaging import display as imaging
    except ImportError:  # the imaging module not landed yet: its implementation module
        from app.core.imaging import render as imaging  # type: ignore[no-redef]
    return imaging


def make_thumbnail(medium: Medium, series: Series, inst: Instance | None,
                   size_px: int) -> tuple[QImage, str]:
    """Worker function: the series' picture as a QImage of at most ``size_px`` square, and where
    it came from (``"icon"`` or ``"file"``).

    Icon of the representative record, else the series record's icon, else rendered from the
    file. Raises a DiscBridgeError when nothing can be shown.
    """
    imaging = _imaging()
    icons = [i for i in ((inst.icon if inst else None), series.icon) if i is not None]
    for icon in icons:
        try:
            img = array_to_qimage(imaging.decode_icon(icon))
        except (DiscBridgeError, ValueError) as exc:
            log.info("bad icon in %s: %s", medium.root, exc)
            continue
        return fit_image(img, size_px), "icon"
    if inst is None or inst.path is None:
        raise DiscBridgeError("no image file to show for this series")
    if medium.fs is None:
        raise DiscBridgeError(f"{inst.path}: the medium cannot be read any more")
    local = medium.fs.local_path(inst.path)
    time.sleep(0)  # give the GUI thread a chance at the GIL before a long decode
    try:
        if local is not None:
            arr = imaging.render(local, max_size=size_px)
        else:
            with medium.fs.open(inst.path) as fp:
                arr = imaging.render(fp, max_size=size_px)
    except OSError as exc:
        raise DiscBridgeError(f"{inst.path}: {exc.strerror or exc}") from exc
    time.sleep(0)
    return fit_image(array_to_qimage(arr), size_px), "file"


class PixmapCache:
    """Least-recently-used pixmaps by key, bounded by total bytes and by count."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024, max_items: int = 2000) -> None:
        self.max_bytes = max_bytes
        self.max_items = max_items
        self._items: OrderedDict[str, QPixmap] = OrderedDict()
        self._bytes = 0

    @staticmethod
    def _cost(pix: QPixmap) -> int:
        return max(1, pix.width() * pix.height() * 4)

    def get(self, key: str) -> QPixmap | None:
        pix = self._items.get(key)
        if pix is not None:
            self._items.move_to_end(key)
        return pix

    def put(self, key: str, pix: QPixmap) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= self._cost(old)
        self._items[key] = pix
        self._bytes += self._cost(pix)
        while self._items and (self._bytes > self.max_bytes or len(self._items) > self.max_items):
            _, dropped = self._items.popitem(last=False)
            self._bytes -= self._cost(dropped)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


@dataclass
class _Item:
    medium: Medium
    series: Series
    inst: Instance | None
    key: str
    state: str = "loading"
    error: str = ""


def _placeholder(size: int, dpr: float, text: str, symbol: QStyle.StandardPixmap | None) -> QPixmap:
    pix = QPixmap(int(size * dpr), int(size * dpr))
    pix.setDevicePixelRatio(dpr)
    pix.fill(QColor(0, 0, 0, 0))
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    pal = QApplication.palette()
    p.setBrush(pal.color(pal.ColorRole.AlternateBase))
    p.setPen(pal.color(pal.ColorRole.Mid))
    p.drawRoundedRect(QRect(1, 1, size - 2, size - 2), 6, 6)
    if symbol is not None:
        icon = QApplication.style().standardIcon(symbol)
        icon.paint(p, QRect(size // 2 - 16, size // 2 - 26, 32, 32))
    p.setPen(pal.color(pal.ColorRole.PlaceholderText))
    font = QFont(p.font())
    p.setFont(font)
    p.drawText(QRect(4, size // 2 + 10, size - 8, 40),
               int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop
                   | Qt.TextFlag.TextWordWrap), text)
    p.end()
    return pix


class ThumbnailModel(QAbstractListModel):
    """The series of one study (or of several media's selection) with their thumbnails.

    Signals
    -------
    all_loaded()
        Every thumbnail of the current content has arrived (or failed).
    """

    all_loaded = Signal()

    def __init__(self, runner: TaskRunner, cache: PixmapCache | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.cache = cache or PixmapCache()
        self._items: list[_Item] = []
        self._tasks: dict[Task, tuple[int, str]] = {}
        self._generation = 0
        self._dpr = 1.0
        self._placeholders: dict[str, QPixmap] = {}
        self.loaded_from: dict[str, str] = {}  # key -> "icon" | "file" (tests, diagnostics)

    # ----- content -------------------------------------------------------------------------
    def set_device_pixel_ratio(self, dpr: float) -> None:
        if dpr != self._dpr:
            self._dpr = dpr
            self._placeholders.clear()
            self.cache.clear()
            if self._items:
                self.set_series([(i.medium, i.series) for i in self._items])

    def set_series(self, series: list[tuple[Medium, Series]]) -> None:
        """Show these series; start loading every thumbnail that is not cached."""
        self._generation += 1
        for task in list(self._tasks):
            self.runner.cancel_task(task)
        self._tasks.clear()
        self.beginResetModel()
        self._items = []
        for medium, se in series:
            inst = representative_instance(se)
            item = _Item(medium, se, inst, cache_key(medium, inst, se))
            if inst is not None and is_document(inst) and se.icon is None and inst.icon is None:
                item.state = "document"
            elif item.key in self.cache:
                item.state = "ready"
            self._items.append(item)
        self.endResetModel()
        size_px = int(THUMB_SIZE * self._dpr)
        for row, item in enumerate(self._items):
            if item.state != "loading":
                continue
            task = self.runner.start(make_thumbnail, (item.medium, item.series, item.inst,
                                                      size_px),
                                     with_progress=False, priority=-row, name="thumbnail")
            self._tasks[task] = (self._generation, item.key)
            task.finished.connect(lambda img, t=task: self._arrived(t, img))
            task.failed.connect(lambda msg, t=task: self._failed(t, msg))
            task.cancelled.connect(lambda t=task: self._tasks.pop(t, None))
        if self.pending() == 0:
            self.all_loaded.emit()

    def clear(self) -> None:
        self.set_series([])

    def pending(self) -> int:
        return sum(1 for i in self._items if i.state == "loading")

    def series_at(self, row: int) -> tuple[Medium, Series] | None:
        if 0 <= row < len(self._items):
            return self._items[row].medium, self._items[row].series
        return None

    def _rows_for(self, key: str) -> list[int]:
        return [r for r, i in enumerate(self._items) if i.key == key]

    def _arrived(self, task: Task, result: tuple[QImage, str]) -> None:
        gen, key = self._tasks.pop(task, (None, ""))
        img, origin = result
        pix = QPixmap.fromImage(img)
        pix.setDevicePixelRatio(self._dpr)
        self.cache.put(key, pix)
        if gen != self._generation:
            return
        self.loaded_from[key] = origin
        self._set_state(key, "ready", "")

    def _failed(self, task: Task, message: str) -> None:
        gen, key = self._tasks.pop(task, (None, ""))
        if gen == self._generation:
            self._set_state(key, "failed", message)

    def _set_state(self, key: str, state: str, error: str) -> None:
        for row in self._rows_for(key):
            self._items[row].state = state
            self._items[row].error = error
            idx = self.index(row, 0)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole, StateRole,
                                             Qt.ItemDataRole.ToolTipRole])
        if self.pending() == 0:
            self.all_loaded.emit()

    def _placeholder(self, state: str) -> QPixmap:
        pix = self._placeholders.get(state)
        if pix is None:
            text, symbol = {
                "loading": (self.tr("Loading…"), None),
                "failed": (self.tr("Cannot display"), QStyle.StandardPixmap.SP_MessageBoxWarning),
                "document": (self.tr("Document"), QStyle.StandardPixmap.SP_FileDialogDetailedView),
            }[state]
            pix = self._placeholders[state] = _placeholder(THUMB_SIZE, self._dpr, text, symbol)
        return pix

    # ----- QAbstractListModel --------------------------------------------------------------
    def rowCount(self, parent: Index = _ROOT) -> int:
        """Reimplemented from QAbstractListModel.rowCount."""
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Reimplemented from QAbstractListModel.data."""
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        item = self._items[index.row()]
        se = item.series
        if role == Qt.ItemDataRole.DisplayRole:
            num = f"{se.series_number} · " if se.series_number else ""
            n = len(se.instances)
            return (f"{num}{se.description or self.tr('Series')}\n"
                    f"{se.modality or ''} · {ntr('thumbnails', '%n image(s)', n)}")
        if role == Qt.ItemDataRole.DecorationRole:
            pix = self.cache.get(item.key) if item.state == "ready" else None
            if pix is None:
                pix = self._placeholder("loading" if item.state == "ready" else item.state)
            icon = QIcon(pix)
            icon.addPixmap(pix, QIcon.Mode.Selected)  # no selection tint over a medical image
            return icon
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = f"{se.modality or ''} {se.description or ''}\n{se.series_uid or ''}"
            return f"{tip}\n{item.error}" if item.error else tip
        if role == SeriesRole:
            return se
        if role == StateRole:
            return item.state
        return None


class ThumbnailDelegate(QStyledItemDelegate):
    """Paints a thumbnail on a dark tile (medical images are read on black), two lines of text
    underneath, and the selection as a frame around the tile (no tint over the image)."""

    PAD = 6

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:  # noqa: N802
        """Reimplemented from QStyledItemDelegate.sizeHint."""
        fm = option.fontMetrics
        return QSize(THUMB_SIZE + 2 * self.PAD + 8, THUMB_SIZE + 2 * self.PAD
                     + 2 * fm.lineSpacing() + 8)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        """Reimplemented from QStyledItemDelegate.paint."""
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = option.rect
        pal = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        tile = QRect(r.left() + (r.width() - THUMB_SIZE - 2 * self.PAD) // 2, r.top() + 2,
                     THUMB_SIZE + 2 * self.PAD, THUMB_SIZE + 2 * self.PAD)
        painter.setPen(QPen(pal.color(pal.ColorRole.Highlight), 3) if selected
                       else QPen(pal.color(pal.ColorRole.Mid), 1))
        painter.setBrush(QColor(24, 24, 24))
        painter.drawRoundedRect(tile.adjusted(1, 1, -1, -1), 5, 5)
        icon = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(icon, QIcon):
            inner = tile.adjusted(self.PAD, self.PAD, -self.PAD, -self.PAD)
            icon.paint(painter, inner, Qt.AlignmentFlag.AlignCenter)
        text_rect = QRect(r.left() + 2, tile.bottom() + 4, r.width() - 4,
                          r.bottom() - tile.bottom() - 4)
        lines = str(index.data(Qt.ItemDataRole.DisplayRole) or "").split("\n")
        fm = option.fontMetrics
        if selected and option.state & QStyle.StateFlag.State_HasFocus:
            painter.setPen(pal.color(pal.ColorRole.Highlight))
        else:
            painter.setPen(pal.color(pal.ColorRole.Text))
        y = text_rect.top()
        for i, line in enumerate(lines[:2]):
            if i == 1:
                painter.setPen(pal.color(pal.ColorRole.PlaceholderText))
            elided = fm.elidedText(line, Qt.TextElideMode.ElideRight, text_rect.width())
            painter.drawText(QRect(text_rect.left(), y, text_rect.width(), fm.lineSpacing()),
                             int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter),
                             elided)
            y += fm.lineSpacing()
        if option.state & QStyle.StateFlag.State_HasFocus:
            focus = QStyleOptionFocusRect()
            focus.rect = r.adjusted(1, 1, -1, -1)
            focus.palette = pal
            QApplication.style().drawPrimitive(QStyle.PrimitiveElement.PE_FrameFocusRect, focus,
                                               painter)
        painter.restore()


class ThumbnailView(QListView):
    """A wrapping grid of series thumbnails (icon mode, keyboard navigable)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("thumbnailView")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setWrapping(True)
        self.setUniformItemSizes(True)
        self.setWordWrap(True)
        self.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.setItemDelegate(ThumbnailDelegate(self))
        self.setSpacing(6)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setSelectionMode(QListView.SelectionMode.SingleSelection)
