"""The viewer: one object of the selected series at a time.

Images: slice scrolling (wheel, Up/Down, PgUp/PgDn, Home/End), window/level (right-drag,
modality presets, the file's default), zoom (Ctrl+wheel, +/-) and pan (left or middle drag), fit
(F), invert (I), multi-frame cine (Space, frames per second), corner overlay. Structured reports
are shown as formatted text (``app.core.imaging.sr_text``); encapsulated PDF/CDA documents are extracted
(``app.core.imaging.encapsulated``) and handed to the system's viewer; anything else gets a clear "cannot
display" naming the object type. Failures are messages in the view, never exceptions.

Decoding runs on the TaskRunner's read pool (:func:`load_object`, which touches no widget), with
neighbours prefetched into a small cache of decoded frames keyed by (SOP Instance UID, frame).
Values shown come from the file's header; the medium's record fills only what the file lacks.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QCoreApplication, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollBar,
    QSpinBox,
    QStackedWidget,
    QStyle,
    QTextBrowser,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app.core.imaging import display as imaging
from app.core.model import Medium, Series
from app.gui.tasks import TaskRunner
from app.gui.viewer_canvas import ImageCanvas
from app.gui.viewer_feed import FrameFeed, SeriesRef, record_values
from app.gui.viewer_loader import Loaded, window_presets
from app.gui.viewer_overlay import ImageInfo, ViewState, corner_texts

DEFAULT_FPS = 10


def tr(text: str) -> str:
    return QCoreApplication.translate("ViewerWidget", text)


# ----------------------------------------------------------------------------- widget (GUI)


class ViewerWidget(QWidget):
    """Shows the selected series (see the module docstring for the controls).

    Parameters
    ----------
    parent : QWidget | None
    runner : TaskRunner | None
        Where decoding runs (its read pool). Without one the viewer makes and owns its own.

    Signals
    -------
    displayed(str)
        The requested object is on screen: "image", "report", "document", "unsupported",
        "error" or "empty".
    document_opened(str)
        An extracted document was handed to the system viewer (its temporary path).
    """

    displayed = Signal(str)
    document_opened = Signal(str)

    def __init__(self, parent: QWidget | None = None, runner: TaskRunner | None = None) -> None:
        super().__init__(parent)
        self._own_runner = runner is None
        self.runner = runner or TaskRunner(self)
        self._cur: SeriesRef | None = None
        self.feed = FrameFeed(self.runner, self)
        self.feed.ready.connect(self._ready)
        self.state = ViewState()
        self.loaded: Loaded | None = None  # what is on screen
        self.displayed_pixels: Any = None  # the last uint8 array given to the canvas
        self._user_window: tuple[float, float] | None = None
        self._opened_docs: set[str] = set()
        self._doc_text = ""
        self._cine = QTimer(self)
        self._cine.timeout.connect(self._cine_tick)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._build()
        self.clear()

    # ----- construction -----------------------------------------------------------------------
    def _build(self) -> None:
        self.toolbar = QToolBar(tr("Viewer"), self)
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toolbar.setIconSize(QSize(16, 16))
        self.preset_box = QComboBox(self)
        self.preset_box.setToolTip(tr("Window/level preset (0 = from the file, 1–4 = presets); "
                                      "right-drag to adjust"))
        self.preset_box.setAccessibleName(tr("Window preset"))
        self.preset_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.preset_box.setMinimumContentsLength(14)
        self.preset_box.activated.connect(self._preset_chosen)
        self.toolbar.addWidget(self.preset_box)
        self.toolbar.addSeparator()
        self.act_invert = self._action(tr("Invert"), "I", self.toggle_invert, checkable=True)
        self.act_fit = self._action(tr("Fit"), "F", self.fit, tip=tr("Fit to window"))
        self.act_zoom_in = self._action("+", "+", lambda: self.zoom_by(1.25), tip=tr("Zoom in"))
        self.act_zoom_out = self._action("−", "-", lambda: self.zoom_by(0.8), tip=tr("Zoom out"))
        self.toolbar.addSeparator()
        self.act_play = self._action(tr("Play"), "Space", self.toggle_play, checkable=True,
                                     tip=tr("Play / pause (cine)"))
        self.act_play.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.fps_box = QSpinBox(self)
        self.fps_box.setRange(1, 60)
        self.fps_box.setValue(DEFAULT_FPS)
        self.fps_box.setSuffix(tr(" fps"))
        self.fps_box.setToolTip(tr("Cine speed in frames per second"))
        self.fps_box.setAccessibleName(tr("Frames per second"))
        self.fps_box.valueChanged.connect(self._fps_changed)
        self.toolbar.addWidget(self.fps_box)

        self.canvas = ImageCanvas(self)
        self.canvas.scroll_requested.connect(self.step)
        self.canvas.window_dragged.connect(self._window_drag)
        self.canvas.view_changed.connect(self._view_changed)
        self.report_view = QTextBrowser(self)
        self.report_view.setOpenLinks(False)
        self.report_view.setAccessibleName(tr("Structured report"))
        self.doc_page = QWidget(self)
        self.doc_label = QLabel(self.doc_page)
        self.doc_label.setWordWrap(True)
        self.doc_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.doc_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.doc_button = QPushButton(tr("Open in the system viewer"), self.doc_page)
        self.doc_button.clicked.connect(self._open_current_document)
        dl = QVBoxLayout(self.doc_page)
        dl.addStretch(1)
        dl.addWidget(self.doc_label)
        dl.addWidget(self.doc_button, 0, Qt.AlignmentFlag.AlignHCenter)
        dl.addStretch(1)
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setMargin(24)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stack = QStackedWidget(self)
        for w in (self.canvas, self.report_view, self.doc_page, self.message):
            self.stack.addWidget(w)
        self.scrollbar = QScrollBar(Qt.Orientation.Vertical, self)
        self.scrollbar.setToolTip(tr("Image in the series (wheel, Up/Down, PgUp/PgDn, Home/End)"))
        self.scrollbar.setAccessibleName(tr("Image in the series"))
        self.scrollbar.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.scrollbar.valueChanged.connect(lambda v: self.go_to(v))
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.stack, 1)
        row.addWidget(self.scrollbar)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.toolbar)
        lay.addLayout(row, 1)
        self.setFocusProxy(self.canvas)

    def _action(self, text: str, key: str, slot: Any, checkable: bool = False,
                tip: str = "") -> QAction:
        act = QAction(text, self)
        act.setCheckable(checkable)
        shortcut = QKeySequence(key).toString(QKeySequence.SequenceFormat.NativeText)
        act.setToolTip(f"{tip or text} ({shortcut})")
        act.triggered.connect(lambda *_: slot())
        self.toolbar.addAction(act)
        return act

    # ----- public API -----------------------------------------------------------------------------
    def set_series(self, medium: Medium, series: Series) -> None:
        """Show ``series`` of ``medium``, starting at its first image."""
        self._stop_cine()
        instances = imaging.sort_instances(series.instances)
        self._cur = SeriesRef(medium, series, instances, record_values(medium, series))
        self.feed.reset(self._cur)
        self._user_window = None
        self.state = ViewState(count=len(instances), zoom=self.canvas.zoom,
                               invert=self.act_invert.isChecked())
        self.loaded = None
        self.canvas.fit_mode = True
        self._fill_presets(series.modality or "")
        self.scrollbar.blockSignals(True)
        self.scrollbar.setRange(0, max(0, len(instances) - 1))
        self.scrollbar.setPageStep(max(1, len(instances) // 10))
        self.scrollbar.setValue(0)
        self.scrollbar.blockSignals(False)
        self.scrollbar.setVisible(len(instances) > 1)
        if not instances:
            self._show_message(tr("This series has no images."))
            self.displayed.emit("empty")
            return
        self._request(0, 0)

    def clear(self) -> None:
        """Show nothing (no series selected)."""
        self._stop_cine()
        self.feed.reset(None)
        self._cur = None
        self.loaded = None
        self.state = ViewState()
        self.scrollbar.setVisible(False)
        self._fill_presets("")
        self._enable_image_controls(False)
        self._show_message(tr("Select a series to view it."))

    def shutdown(self) -> None:
        """Stop cine, drop caches, delete extracted documents; stop the runner if we own it."""
        self.clear()
        self.feed.drop_all()
        if self._own_runner:
            self.runner.shutdown()

    @property
    def count(self) -> int:
        return len(self._cur.instances) if self._cur else 0

    def go_to(self, index: int, frame: int = 0) -> None:
        """Show image ``index`` (clamped) of the series, frame ``frame`` of it."""
        if not self._cur or not self._cur.instances:
            return
        index = max(0, min(index, self.count - 1))
        if index == self.state.index and frame == self.state.frame and self.loaded is not None:
            return
        self._request(index, frame)

    def step(self, n: int) -> None:
        """Move ``n`` images forward (negative: back)."""
        self.go_to(self.state.index + n)

    def step_frame(self, n: int, wrap: bool = False) -> None:
        """Move ``n`` frames within a multi-frame instance."""
        frames = self.state.frames
        if frames <= 1:
            return
        f = self.state.frame + n
        f = f % frames if wrap else max(0, min(frames - 1, f))
        if self._cur:
            self._request(self.state.index, f)

    def set_window(self, center: float, width: float, preset: str = "") -> None:
        """Set window center/width for every image of the series until reset."""
        self._user_window = (float(center), max(1.0, float(width)))
        self.state.preset = preset
        self._render()

    def reset_window(self) -> None:
        """Back to each image's own window (from the file, else its value range)."""
        self._user_window = None
        self.state.preset = ""
        self.preset_box.setCurrentIndex(0)
        self._render()

    def apply_preset(self, name: str) -> None:
        """Apply a preset by name ("Default" = the file's window)."""
        for i in range(self.preset_box.count()):
            if self.preset_box.itemData(i) == name:
                self.preset_box.setCurrentIndex(i)
                self._preset_chosen(i)
                return
        raise ValueError(f"no window preset {name!r} for this series")

    def toggle_invert(self) -> None:
        self.state.invert = not self.state.invert
        self.act_invert.setChecked(self.state.invert)
        self._render()

    def fit(self) -> None:
        self.canvas.fit()

    def zoom_by(self, factor: float) -> None:
        self.canvas.zoom_by(factor)

    def toggle_play(self) -> None:
        if self._cine.isActive():
            self._stop_cine()
        elif self.state.frames > 1 or self.count > 1:
            self._cine.start(max(1, int(1000 / self.fps_box.value())))
            self.state.playing = True
            self.act_play.setChecked(True)
            self.act_play.setText(tr("Pause"))
            self.act_play.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPause))
            self._update_overlay()
        else:
            self.act_play.setChecked(False)

    # ----- keyboard -----------------------------------------------------------------------------
    def keyPressEvent(self, event: QKeyEvent) -> None:  # Reimplemented from QWidget
        key = event.key()
        page = max(1, self.count // 10)
        actions = {
            Qt.Key.Key_Up: lambda: self.step(-1),
            Qt.Key.Key_Down: lambda: self.step(1),
            Qt.Key.Key_PageUp: lambda: self.step(-page),
            Qt.Key.Key_PageDown: lambda: self.step(page),
            Qt.Key.Key_Home: lambda: self.go_to(0),
            Qt.Key.Key_End: lambda: self.go_to(self.count - 1),
            Qt.Key.Key_Left: lambda: self.step_frame(-1),
            Qt.Key.Key_Right: lambda: self.step_frame(1),
            Qt.Key.Key_I: self.toggle_invert,
            Qt.Key.Key_F: self.fit,
            Qt.Key.Key_Plus: lambda: self.zoom_by(1.25),
            Qt.Key.Key_Equal: lambda: self.zoom_by(1.25),
            Qt.Key.Key_Minus: lambda: self.zoom_by(0.8),
            Qt.Key.Key_Space: self.toggle_play,
        }
        if Qt.Key.Key_0 <= key <= Qt.Key.Key_9 and key - Qt.Key.Key_0 < self.preset_box.count():
            i = key - Qt.Key.Key_0
            self.preset_box.setCurrentIndex(i)
            self._preset_chosen(i)
            event.accept()
            return
        fn = actions.get(Qt.Key(key))
        if fn is None or event.modifiers() & (Qt.KeyboardModifier.ControlModifier
                                              | Qt.KeyboardModifier.AltModifier):
            super().keyPressEvent(event)
            return
        fn()
        event.accept()

    # ----- loading ------------------------------------------------------------------------------
    def _request(self, index: int, frame: int) -> None:
        self.state.index, self.state.frame = index, frame
        if self.scrollbar.value() != index:
            self.scrollbar.blockSignals(True)
            self.scrollbar.setValue(index)
            self.scrollbar.blockSignals(False)
        hit = self.feed.request(index, frame)
        if hit is not None:
            self._ready(hit)
            return
        self.state.loading = True
        self._update_overlay()

    def _ready(self, res: Loaded) -> None:
        self._show(res)
        self.feed.prefetch(self.state.index, self.state.frame, self.state.frames)

    # ----- showing ------------------------------------------------------------------------------
    def _show(self, res: Loaded) -> None:
        self.loaded = res
        self.state.loading = False
        self.state.frames = res.n_frames
        self._enable_image_controls(res.kind == "image")
        if res.kind == "image":
            if res.fps and not self._cine.isActive():
                self.fps_box.blockSignals(True)
                self.fps_box.setValue(max(1, min(60, round(res.fps))))
                self.fps_box.blockSignals(False)
            self.stack.setCurrentWidget(self.canvas)
            self._render()
        elif res.kind == "report":
            self._stop_cine()
            self.report_view.setHtml(res.text)
            self.stack.setCurrentWidget(self.report_view)
        elif res.kind == "document" and res.document is not None:
            self._stop_cine()
            doc = res.document
            title = doc.title or tr("Untitled document")
            self._doc_text = (tr("%1 document “%2” (%3 KB), object %4 of %5 in this series.")
                              .replace("%1", doc.kind).replace("%2", title)
                              .replace("%3", f"{max(1, doc.size // 1024)}")
                              .replace("%4", str(self.state.index + 1))
                              .replace("%5", str(self.count)))
            self.doc_label.setText(self._doc_text + "\n" + tr("It opens in your system’s viewer."))
            self.stack.setCurrentWidget(self.doc_page)
            key = self.feed.wanted[0] if self.feed.wanted else ""
            if key not in self._opened_docs:
                self._opened_docs.add(key)
                self._open_current_document()
        elif res.kind == "unsupported":
            self._stop_cine()
            self._show_message(tr("Cannot display this object: %1.\nDiscBridge has no viewer for "
                                  "this type; it is kept on the medium and included in exports.")
                               .replace("%1", res.type_name))
        else:
            self._stop_cine()
            self._show_message(tr("Cannot display image %1 of %2:\n%3")
                               .replace("%1", str(self.state.index + 1))
                               .replace("%2", str(self.count)).replace("%3", res.text))
        self.displayed.emit(res.kind)

    def _enable_image_controls(self, on: bool) -> None:
        for w in (self.act_invert, self.act_fit, self.act_zoom_in, self.act_zoom_out):
            w.setEnabled(on)
        self.preset_box.setEnabled(on)
        playable = on and (self.state.frames > 1 or self.count > 1)
        self.act_play.setEnabled(playable)
        self.fps_box.setEnabled(playable)

    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.stack.setCurrentWidget(self.message)

    def _current_window(self) -> tuple[float, float] | None:
        res = self.loaded
        if res is None or res.frame is None or res.frame.is_color:
            return None
        if self._user_window is not None:
            return self._user_window
        return res.frame.auto_window()

    def _render(self) -> None:
        res = self.loaded
        if res is None or res.kind != "image" or res.frame is None:
            self._update_overlay()
            return
        fr = res.frame
        try:
            if fr.is_color:
                pixels = imaging.to_display(fr, invert=self.state.invert)
            elif self._user_window is not None:
                c, w = self._user_window
                pixels = imaging.to_display(fr, c, w, invert=self.state.invert)
            else:
                pixels = imaging.to_display(fr, invert=self.state.invert)
        except Exception as exc:  # noqa: BLE001 - a rendering failure is a message, not a crash
            self._show_message(tr("Cannot display image %1 of %2:\n%3")
                               .replace("%1", str(self.state.index + 1))
                               .replace("%2", str(self.count)).replace("%3", str(exc)))
            return
        self.displayed_pixels = pixels
        self.canvas.set_pixels(pixels, getattr(fr, "pixel_aspect", 1.0))
        self._update_overlay()

    def _update_overlay(self) -> None:
        win = self._current_window()
        self.state.center, self.state.width = win if win else (None, None)
        self.state.zoom = self.canvas.zoom
        self.state.count = self.count
        info = self.loaded.info if self.loaded else ImageInfo()
        color = bool(self.loaded and self.loaded.frame is not None and self.loaded.frame.is_color)
        self.canvas.set_corners(corner_texts(info, self.state, color) if self._cur else {})
        if self.loaded is not None and self.loaded.kind == "image":
            self.preset_box.setEnabled(not color)

    # ----- interaction ------------------------------------------------------------------------
    def _fill_presets(self, modality: str) -> None:
        self.preset_box.clear()
        self.preset_box.addItem(tr("Default window"), "Default")
        for name, c, w in window_presets(modality):
            self.preset_box.addItem(tr("%1 (W %2 L %3)").replace("%1", tr(name))
                                    .replace("%2", f"{w:g}").replace("%3", f"{c:g}"), name)
        self.preset_box.addItem(tr("Full range"), "Full range")

    def _preset_chosen(self, i: int) -> None:
        name = self.preset_box.itemData(i)
        if name == "Default":
            self.reset_window()
            return
        if name == "Full range":
            fr = self.loaded.frame if self.loaded else None
            if fr is not None and not fr.is_color:
                lo, hi = fr.value_range
                self.set_window((lo + hi) / 2, max(1.0, hi - lo + 1), tr("full range"))
            return
        for pname, c, w in window_presets(self._cur.series.modality if self._cur else ""):
            if pname == name:
                self.set_window(c, w, tr(pname))
                return

    def _window_drag(self, dx: float, dy: float) -> None:
        win = self._current_window()
        fr = self.loaded.frame if self.loaded else None
        if win is None or fr is None:
            return
        lo, hi = fr.value_range
        scale = max(0.05, (hi - lo) / 600.0)
        c, w = win
        self._user_window = (c + dy * scale, max(1.0, w + dx * scale))
        self.state.preset = ""
        self._render()

    def _view_changed(self) -> None:
        self._update_overlay()

    def _open_current_document(self) -> None:
        res = self.loaded
        if res is None or res.document is None:
            return
        path = str(res.document.path)
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(path)):
            self.doc_label.setText(self._doc_text + "\n\n" + tr(
                "No application to open it was found. The file is at:\n%1").replace("%1", path))
        self.document_opened.emit(path)

    # ----- cine ---------------------------------------------------------------------------------
    def _fps_changed(self, fps: int) -> None:
        if self._cine.isActive():
            self._cine.setInterval(max(1, int(1000 / fps)))

    def _stop_cine(self) -> None:
        self._cine.stop()
        self.state.playing = False
        if hasattr(self, "act_play"):
            self.act_play.setChecked(False)
            self.act_play.setText(tr("Play"))
            self.act_play.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))

    def _cine_tick(self) -> None:
        if self.state.loading:
            return  # wait for the frame being decoded rather than skipping ahead
        if self.state.frames > 1:
            self.step_frame(1, wrap=True)
        elif self.count > 1:
            self.go_to((self.state.index + 1) % self.count)
        else:
            self._stop_cine()
