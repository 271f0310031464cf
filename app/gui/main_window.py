"""The main window: Sources | patient tree + problems | thumbnails + viewer, and a status bar.

Every long call goes through the TaskRunner (opening a medium, listing volumes, thumbnails);
the window only reacts to results. The viewer (viewer.py) and the export wizard
(app/gui/wizard/) are imported lazily, so the window still works in a build without them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QStyle,
    QWidget,
)

from app import APP_NAME, __version__
from app.core.model import Medium, Series
from app.gui.browser import (
    KindRole,
    MediumRole,
    NodeRole,
    PatientTree,
)
from app.gui.problems import ProblemsPanel, StatusArea
from app.gui.settings import DETECTION_POLICIES, Settings
from app.gui.sources import (
    DetectionPolicy,
    MediaMonitor,
    MediumLoader,
    SourcesPanel,
    is_under,
)
from app.gui.tasks import Task, TaskRunner
from app.gui.thumbnails import ThumbnailModel, ThumbnailView
from app.gui.welcome import WelcomePage

log = logging.getLogger(__name__)

Opener = Callable[..., Medium]


class MainWindow(QMainWindow):
    """DiscBridge's main window.

    Signals
    -------
    medium_opened(object)
        A medium was read and added to the tree.
    open_failed(str, str)
        Reading ``path`` failed with ``message`` (also shown to the user).
    """

    medium_opened = Signal(object)
    open_failed = Signal(str, str)

    def __init__(self, runner: TaskRunner | None = None, settings: Settings | None = None,
                 opener: Opener | None = None, monitor: MediaMonitor | None = None,
                 interactive: bool = True) -> None:
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)
        self.runner = runner or TaskRunner(self)
        self._own_runner = runner is None
        self.settings = settings or Settings()
        self.loader = MediumLoader(self.runner, opener, self)
        self.loader.opened.connect(self._opened)
        self.loader.failed.connect(self._open_failed)
        self.loader.cancelled.connect(self._open_cancelled)
        self.interactive = interactive  # False: no modal questions (screenshots, tests)
        self.messages: list[str] = []  # what was told to the user (tests, screenshot mode)
        self.thumbs = ThumbnailModel(self.runner, parent=self)
        self._build_ui()
        self.tree_model, self.proxy = self.browser.model, self.browser.proxy
        self._build_actions()
        self.monitor = monitor or MediaMonitor(self.runner, parent=self)
        self.monitor.volumes_changed.connect(self.sources.set_volumes)
        self.detection = DetectionPolicy(self.runner, lambda: self.settings.detection_policy,
                                         self, interactive)
        self.detection.open_requested.connect(self.open_path)
        self.monitor.inserted.connect(self.detection.volume_inserted)
        self.monitor.removed.connect(self._volume_removed)
        self.sources.set_recent(self.settings.recent_folders)
        self._update_status()
        self.resize(1280, 800)

    # ----- construction ----------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.sources = SourcesPanel(self)
        self.sources.open_requested.connect(self.open_path)
        self.welcome = WelcomePage(self)

        # left column: search + tree, problems underneath
        self.browser = PatientTree(self)
        self.search, self.tree = self.browser.search, self.browser.view
        self.tree.selectionModel().currentChanged.connect(self._current_changed)
        self.problems = ProblemsPanel(self)
        self.left_split = QSplitter(Qt.Orientation.Vertical, self)
        self.left_split.addWidget(self.browser)
        self.left_split.addWidget(self.problems)
        self.left_split.setStretchFactor(0, 3)
        self.left_split.setStretchFactor(1, 1)

        # right column: thumbnails, viewer underneath
        self.thumb_view = ThumbnailView(self)
        self.thumb_view.setModel(self.thumbs)
        self.thumb_view.setAccessibleName(self.tr("Series of the selected study"))
        self.thumb_view.selectionModel().currentChanged.connect(self._thumb_current)
        self.viewer = self._make_viewer()
        self.right_split = QSplitter(Qt.Orientation.Vertical, self)
        self.right_split.addWidget(self.thumb_view)
        self.right_split.addWidget(self.viewer)
        self.right_split.setStretchFactor(0, 1)
        self.right_split.setStretchFactor(1, 3)

        self.content_split = QSplitter(Qt.Orientation.Horizontal, self)
        self.content_split.addWidget(self.left_split)
        self.content_split.addWidget(self.right_split)
        self.content_split.setStretchFactor(0, 4)
        self.content_split.setStretchFactor(1, 5)

        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.content_split)

        self.main_split = QSplitter(Qt.Orientation.Horizontal, self)
        self.main_split.setObjectName("mainSplit")
        self.main_split.addWidget(self.sources)
        self.main_split.addWidget(self.stack)
        self.main_split.setStretchFactor(0, 0)
        self.main_split.setStretchFactor(1, 1)
        self.main_split.setCollapsible(1, False)
        self.setCentralWidget(self.main_split)
        self.main_split.setSizes([230, 1050])
        self.content_split.setSizes([540, 510])
        self.left_split.setSizes([500, 160])
        self.right_split.setSizes([220, 440])

        # status bar: counts · source · progress + cancel · problems
        self.status = StatusArea(self.statusBar())
        self.status.problems_clicked.connect(self.show_problems)
        self.status.cancel_clicked.connect(self.cancel_opening)
        self.counts_label, self.problems_button = self.status.counts_label, self.status.problems_button
        self.source_label, self.cancel_button = self.status.source_label, self.status.cancel_button
        self.loader.busy_changed.connect(self.status.set_busy)
        self.loader.progress.connect(self.status.set_progress)

        self.welcome.sample_requested.connect(self.open_sample)
        self.welcome.folder_requested.connect(self.choose_folder)
        self.welcome.dicomdir_requested.connect(self.choose_dicomdir)
        self.welcome.iso_requested.connect(self.choose_iso)
        self.sources.open_folder_button.clicked.connect(self.choose_folder)
        self.sources.open_dicomdir_button.clicked.connect(self.choose_dicomdir)
        self.sources.open_iso_button.clicked.connect(self.choose_iso)

        QWidget.setTabOrder(self.sources.tree, self.sources.open_folder_button)
        QWidget.setTabOrder(self.sources.open_folder_button, self.sources.open_dicomdir_button)
        QWidget.setTabOrder(self.sources.open_dicomdir_button, self.sources.open_iso_button)
        QWidget.setTabOrder(self.sources.open_iso_button, self.search)
        QWidget.setTabOrder(self.search, self.tree)
        QWidget.setTabOrder(self.tree, self.thumb_view)
        QWidget.setTabOrder(self.thumb_view, self.viewer)
        QWidget.setTabOrder(self.viewer, self.problems.view)

    def _make_viewer(self) -> QWidget:
        try:
            from app.gui.viewer import ViewerWidget
        except ImportError as exc:
            log.info("viewer not available: %s", exc)
            label = QLabel(self.tr("The image viewer is not available in this build."), self)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setObjectName("viewerPlaceholder")
            return label
        viewer = ViewerWidget(self, runner=self.runner)
        viewer.setObjectName("viewer")
        return viewer

    def _action(self, text: str, slot: Callable[[], Any], shortcut: QKeySequence | str | None = None,
                icon: QStyle.StandardPixmap | None = None) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        if icon is not None:
            act.setIcon(self.style().standardIcon(icon))
        act.triggered.connect(lambda _checked=False: slot())
        self.addAction(act)
        return act

    def _build_actions(self) -> None:
        sp = QStyle.StandardPixmap
        self.act_open_folder = self._action(self.tr("Open &folder…"), self.choose_folder,
                                            QKeySequence.StandardKey.Open, sp.SP_DirOpenIcon)
        self.act_open_dicomdir = self._action(self.tr("Open &DICOMDIR…"), self.choose_dicomdir,
                                              "Ctrl+Shift+D", sp.SP_FileIcon)
        self.act_open_iso = self._action(self.tr("Open &ISO image…"), self.choose_iso,
                                         "Ctrl+Shift+I", sp.SP_DriveCDIcon)
        self.act_sample = self._action(self.tr("Open &sample disc"), self.open_sample)
        self.act_reload = self._action(self.tr("&Reload"), self.reload,
                                       QKeySequence.StandardKey.Refresh, sp.SP_BrowserReload)
        self.act_close = self._action(self.tr("&Close medium"), self.close_current,
                                      QKeySequence.StandardKey.Close, sp.SP_DialogCloseButton)
        self.act_export = self._action(self.tr("&Export…"), self.export, "Ctrl+E",
                                       sp.SP_DialogSaveButton)
        self.act_quit = self._action(self.tr("&Quit"), self.close, QKeySequence.StandardKey.Quit)
        self.act_find = self._action(self.tr("&Find patient"), self.focus_search,
                                     QKeySequence.StandardKey.Find)
        self.act_problems = self._action(self.tr("Show &problems"), self.show_problems, "Ctrl+P")
        self.act_about = self._action(self.tr("&About DiscBridge"), self.about)
        self.act_reload.setShortcuts([QKeySequence("F5"), QKeySequence("Ctrl+R")])

        mb = self.menuBar()
        m_file = mb.addMenu(self.tr("&File"))
        for act in (self.act_open_folder, self.act_open_dicomdir, self.act_open_iso,
                    self.act_sample):
            m_file.addAction(act)
        m_file.addSeparator()
        m_file.addAction(self.act_export)
        m_file.addSeparator()
        m_file.addAction(self.act_reload)
        m_file.addAction(self.act_close)
        m_file.addSeparator()
        m_file.addAction(self.act_quit)
        m_view = mb.addMenu(self.tr("&View"))
        m_view.addAction(self.act_find)
        m_view.addAction(self.act_problems)
        m_settings = mb.addMenu(self.tr("&Settings"))
        m_detect = m_settings.addMenu(self.tr("When a disc is inserted"))
        self.policy_group = QActionGroup(self)
        labels = {"ask": self.tr("Ask whether to open it"), "open": self.tr("Open it"),
                  "ignore": self.tr("Only list it under Sources")}
        self.policy_actions: dict[str, QAction] = {}
        for policy in DETECTION_POLICIES:
            act = QAction(labels[policy], self, checkable=True)
            act.setChecked(self.settings.detection_policy == policy)
            act.triggered.connect(lambda _c=False, p=policy: self._set_policy(p))
            self.policy_group.addAction(act)
            m_detect.addAction(act)
            self.policy_actions[policy] = act
        m_help = mb.addMenu(self.tr("&Help"))
        m_help.addAction(self.act_about)

        tb = self.addToolBar(self.tr("Main"))
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for act in (self.act_open_folder, self.act_open_iso, self.act_reload, self.act_export):
            tb.addAction(act)
        self._enable_actions()

    # ----- opening -----------------------------------------------------------------------------
    def open_sample(self) -> Task | None:
        from app.core.sample import sample_disc_path

        try:
            path = sample_disc_path()
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.tell(self.tr("The sample disc is not available"), str(exc), error=True)
            return None
        return self.open_path(str(path), remember=False)

    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, self.tr("Open a folder, disc or USB stick"),
                                                self._start_dir())
        if path:
            self.open_path(path)

    def choose_dicomdir(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, self.tr("Open a DICOMDIR file"),
                                              self._start_dir(),
                                              self.tr("DICOMDIR (DICOMDIR* dicomdir*);;All files (*)"))
        if path:
            self.open_path(path)

    def choose_iso(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, self.tr("Open a disc image"),
                                              self._start_dir(),
                                              self.tr("Disc images (*.iso *.ISO);;All files (*)"))
        if path:
            self.open_path(path)

    def _start_dir(self) -> str:
        recent = self.settings.recent_folders
        return recent[0] if recent else str(Path.home())

    def open_path(self, path: str, remember: bool = True) -> Task:
        """Read a medium on the pool; it is added to the tree when done."""
        path = os.fspath(path)
        self.statusBar().showMessage(self.tr("Reading %1 …").replace("%1", path))
        return self.loader.open(path, remember)

    def cancel_opening(self) -> None:
        self.loader.cancel_all()

    def _opened(self, medium: Medium, path: str, remember: bool) -> None:
        self.add_medium(medium)
        if remember and path:
            self.settings.add_recent_folder(path)
            self.sources.set_recent(self.settings.recent_folders)
        self.medium_opened.emit(medium)

    def _open_failed(self, path: str, message: str) -> None:
        self.tell(self.tr("Could not open %1").replace("%1", path), message, error=True)
        self.open_failed.emit(path, message)

    def _open_cancelled(self, _path: str, reason: str) -> None:
        self.statusBar().showMessage(reason, 10000)
        self.messages.append(reason)

    def tell(self, title: str, text: str, error: bool = False) -> None:
        """Tell the user something: a message box when interactive, else the log and status."""
        self.messages.append(f"{title}: {text}")
        self.statusBar().showMessage(f"{title}: {text}", 15000)
        if not self.interactive:
            log.warning("%s: %s", title, text)
            return
        box = QMessageBox(QMessageBox.Icon.Warning if error else QMessageBox.Icon.Information,
                          title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # ----- content -----------------------------------------------------------------------------
    def add_medium(self, medium: Medium) -> None:
        """Show a medium that was read: tree, problems, status; select its first study."""
        self.tree_model.add_medium(medium)
        self.problems.set_media(self.tree_model.media)
        self._fit_problems()
        self.stack.setCurrentWidget(self.content_split)
        self._update_status()
        self._enable_actions()
        # Selecting starts thumbnails and the viewer: a separate event-loop turn, so the first
        # paint of the tree comes first and no single turn blocks the loop for long.
        QTimer.singleShot(0, lambda: self._select_if_open(medium))

    def _select_if_open(self, medium: Medium) -> None:
        if medium in self.tree_model.media:
            self.browser.select_first_of(medium)

    def remove_medium(self, medium: Medium) -> None:
        self.tree_model.remove_medium(medium)
        self.problems.set_media(self.tree_model.media)
        if not self.tree_model.media:
            self.thumbs.clear()
            self._clear_viewer()
            self.stack.setCurrentWidget(self.welcome)
        self._update_status()
        self._enable_actions()

    def current_medium(self) -> Medium | None:
        return self.browser.current_medium()

    def selected_uids(self) -> set[str] | None:
        """SOP Instance UIDs below the selected tree rows (None when nothing is selected)."""
        return self.browser.selected_uids()

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        kind = current.data(KindRole)
        obj = current.data(NodeRole)
        medium = current.data(MediumRole)
        if kind == "patient":
            series = [(medium, se) for st in obj.studies for se in st.series]
        elif kind == "study":
            series = [(medium, se) for se in obj.series]
        else:
            parent = current.parent()
            study = parent.data(NodeRole) if parent.isValid() else None
            series = [(medium, se) for se in (study.series if study else [obj])]
        self.thumbs.set_device_pixel_ratio(self.devicePixelRatioF())  # sharp at high DPI
        if [s for _, s in series] != [self.thumbs.series_at(r)[1] for r in
                                       range(self.thumbs.rowCount())]:
            self.thumbs.set_series(series)
        target = obj if kind == "series" else (series[0][1] if series else None)
        if target is not None:
            for r in range(self.thumbs.rowCount()):
                if self.thumbs.series_at(r)[1] is target:
                    self.thumb_view.selectionModel().setCurrentIndex(
                        self.thumbs.index(r, 0), QItemSelectionModel.SelectionFlag.ClearAndSelect)
                    break
            self._show_series(medium, target)

    def _thumb_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        found = self.thumbs.series_at(current.row()) if current.isValid() else None
        if found is not None:
            self._show_series(*found)

    def _show_series(self, medium: Medium, series: Series) -> None:
        if getattr(self.viewer, "_shown_series", None) is series:
            return
        set_series = getattr(self.viewer, "set_series", None)
        if set_series is not None:
            self.viewer._shown_series = series  # type: ignore[attr-defined]
            set_series(medium, series)

    def _clear_viewer(self) -> None:
        clear = getattr(self.viewer, "clear", None)
        if clear is not None:
            clear()
        self.viewer._shown_series = None  # type: ignore[attr-defined]

    def _fit_problems(self) -> None:
        total = sum(self.left_split.sizes()) or 660
        want = self.problems.preferred_height()
        self.left_split.setSizes([max(200, total - want), want])

    def _update_status(self) -> None:
        media = self.tree_model.media
        self.status.update(media, self.tree_model.totals(), self.problems.model.problem_count())
        last = (Path(media[-1].root).name or media[-1].root) if media else ""
        self.setWindowTitle(f"{last} — {APP_NAME}" if last else APP_NAME)

    def _enable_actions(self) -> None:
        has = bool(self.tree_model.media)
        for act in (self.act_reload, self.act_close, self.act_export):
            act.setEnabled(has)

    # ----- commands ----------------------------------------------------------------------------
    def focus_search(self) -> None:
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def show_problems(self) -> None:
        sizes = self.left_split.sizes()
        if len(sizes) == 2 and sizes[1] < 80:
            self.left_split.setSizes([max(200, sizes[0] - 200), 200])
        self.problems.view.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def reload(self) -> None:
        """Read every open medium again (F5)."""
        for medium in list(self.tree_model.media):
            self.open_path(medium.root, remember=False)

    def close_current(self) -> None:
        medium = self.current_medium()
        if medium is not None:
            self.remove_medium(medium)

    def export(self) -> None:
        """Open the export wizard on the open media, preset with the selection (Ctrl+E)."""
        if not self.tree_model.media:
            return
        try:
            from app.gui.wizard.wizard import ExportWizard
        except ImportError as exc:
            self.tell(self.tr("Export is not available"), str(exc), error=True)
            return
        wizard = ExportWizard(self.tree_model.media, self.selected_uids(), self.runner, self)
        wizard.open_medium_requested.connect(self.open_path)
        wizard.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.wizard = wizard
        wizard.open()

    def about(self) -> None:
        QMessageBox.about(self, self.tr("About DiscBridge"), self.tr(
            "<b>DiscBridge %1</b><p>Reads any DICOM CD, DVD, USB stick or disc image and writes "
            "media that every other system can read.</p>").replace("%1", __version__))

    def _set_policy(self, policy: str) -> None:
        self.settings.detection_policy = policy  # type: ignore[assignment]

    # ----- media detection ---------------------------------------------------------------------
    def _volume_removed(self, volume: Any) -> None:
        mount = str(volume.mount_point)
        label = getattr(volume, "display_name", "") or mount
        self.loader.cancel_under(mount, self.tr(
            "“%1” was removed while it was being read. Nothing was opened.").replace("%1", label))
        for medium in list(self.tree_model.media):
            if is_under(medium.root, mount):
                self.remove_medium(medium)
                msg = self.tr("“%1” was removed; its patients were closed.").replace("%1", label)
                self.messages.append(msg)
                self.statusBar().showMessage(msg, 15000)

    # ----- drag and drop -----------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        """Reimplemented from QWidget.dragEnterEvent: accept local folders and files."""
        if any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        """Reimplemented from QWidget.dropEvent: open each dropped folder or file."""
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        for p in paths:
            self.open_path(p)
        if paths:
            event.acceptProposedAction()

    # ----- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start watching for media (call once the window is shown)."""
        QTimer.singleShot(0, self.monitor.start)

    def shutdown(self) -> None:
        """Stop the watcher, the viewer and every task (no thread left running)."""
        self.monitor.stop()
        stop = getattr(self.viewer, "shutdown", None)
        if stop is not None:
            stop()
        self.runner.shutdown()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Reimplemented from QWidget.closeEvent: save the layout, stop all work."""
        self.settings.save_window_state(self.saveGeometry(), self.saveState())
        self.shutdown()
        super().closeEvent(event)
