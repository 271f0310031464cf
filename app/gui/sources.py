"""The Sources panel: detected discs and USB volumes, recent folders, and the open buttons.

:class:`MediaMonitor` turns ``app.core.devices.media.MediaWatcher`` events into Qt signals on the GUI
thread (``inserted`` / ``removed`` / ``volumes_changed``). :class:`SourcesPanel` shows the
optical, USB and disc-image volumes (label, free space, read-only state), the recent folders
and the "Open …" buttons. :class:`MediumLoader` reads media on the TaskRunner and
:class:`DetectionPolicy` decides what happens when a disc is inserted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QMessageBox,
    QPushButton,
    QStyle,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.quiet_gc import QuietGC
from app.gui.tasks import Task, TaskRunner

log = logging.getLogger(__name__)

PathRole = Qt.ItemDataRole.UserRole + 30
VolumeRole = Qt.ItemDataRole.UserRole + 31
SHOWN_KINDS = ("optical", "usb", "image")


def _t(text: str) -> str:
    return QCoreApplication.translate("sources", text)


def format_bytes(n: int | None) -> str:
    """1234567 → '1.2 MB' (decimal units, as disc and stick makers count)."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def volume_key(vol: Any) -> str:
    return str(getattr(vol, "mount_point", ""))


class MediaMonitor(QObject):
    """Detected volumes as Qt signals, delivered on the GUI thread.

    Wraps ``app.core.devices.media.MediaWatcher``: the watcher polls the OS backend on its own thread
    and its callback only emits a queued signal; the first snapshot (``MediaWatcher.start``, a
    blocking OS call) is taken on the TaskRunner's read pool. Nothing here touches a widget.

    Parameters
    ----------
    runner : TaskRunner
        Runs the watcher's first snapshot and :meth:`poll_now`.
    backend : MediaBackend, optional
        The OS backend (``app.core.devices.media.for_platform()`` by default; tests pass a fake one or a
        ``LinuxBackend`` over fake mountinfo/sysfs trees).
    interval : float
        Seconds between polls.
    """

    volumes_changed = Signal(list)
    inserted = Signal(object)
    removed = Signal(object)
    _event = Signal(object)  # emitted on the watcher's thread; delivered queued

    def __init__(self, runner: TaskRunner, backend: Any = None, interval: float = 2.0,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.backend = backend
        self.interval = interval
        self._volumes: dict[str, Any] = {}
        self._watcher: Any = None
        self._start_task: Task | None = None
        self._started = threading.Event()
        self._event.connect(self._on_event, Qt.ConnectionType.QueuedConnection)

    @property
    def volumes(self) -> list[Any]:
        return list(self._volumes.values())

    def start(self) -> None:
        """Take the first snapshot on the pool, then watch on the watcher's thread."""
        if self._watcher is not None:
            return
        try:
            from app.core.devices.media import MediaWatcher
        except ImportError as exc:  # a build without media detection
            log.warning("media detection unavailable: %s", exc)
            return
        watcher = MediaWatcher(self._from_watcher, self.interval, backend=self.backend)
        self._watcher = watcher
        self._started.clear()

        def first_snapshot() -> list[Any]:
            try:
                watcher.start()
                return watcher.volumes
            finally:
                self._started.set()

        self._start_task = self.runner.run_plain(first_snapshot)
        self._start_task.finished.connect(self._snapshot)
        self._start_task.failed.connect(lambda msg: log.warning("media detection: %s", msg))

    def stop(self) -> None:
        """Stop watching; returns once the watcher's thread has ended."""
        watcher, self._watcher = self._watcher, None
        if watcher is None:
            return
        task = self._start_task
        if task is not None and not task.done:
            if not self.runner.cancel_task(task) or task.state != "pending":
                self._started.wait(10)  # it is running: let it finish, then stop the thread
        watcher.stop()

    def poll_now(self) -> Task | None:
        """Ask the backend now (on the pool) instead of waiting for the next poll."""
        watcher = self._watcher
        if watcher is None:
            return None
        return self.runner.run_plain(watcher.poll)

    def _from_watcher(self, event: Any) -> None:
        """MediaWatcher's callback (its thread): only hand the event to the GUI thread."""
        self._event.emit(event)

    def _snapshot(self, volumes: list[Any]) -> None:
        if self._watcher is None:
            return
        self._volumes = {volume_key(v): v for v in volumes}
        self.volumes_changed.emit(self.volumes)

    @Slot(object)
    def _on_event(self, event: Any) -> None:
        if self._watcher is None:
            return
        vol = event.volume
        key = volume_key(vol)
        if event.kind == "removed":
            self._volumes.pop(key, None)
        else:
            self._volumes[key] = vol
        self.volumes_changed.emit(self.volumes)
        if event.kind == "added":
            self.inserted.emit(vol)
        elif event.kind == "removed":
            self.removed.emit(vol)


def _volume_icon(kind: str) -> Any:
    style = QApplication.style()
    return style.standardIcon({"optical": QStyle.StandardPixmap.SP_DriveCDIcon,
                               "usb": QStyle.StandardPixmap.SP_DriveFDIcon}.get(
                                   kind, QStyle.StandardPixmap.SP_DriveHDIcon))


class SourcesPanel(QWidget):
    """Discs and USB sticks, recent folders, and the open buttons.

    Signals
    -------
    open_requested(str)
        The user chose a volume or recent folder (activated it: double-click or Enter).
    """

    open_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sourcesPanel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        title = QLabel(self.tr("Sources"), self)
        font = title.font()
        font.setBold(True)
        title.setFont(font)
        layout.addWidget(title)
        self.tree = QTreeWidget(self)
        self.tree.setObjectName("sourcesTree")
        self.tree.setHeaderHidden(True)
        self.tree.setRootIsDecorated(False)
        self.tree.setIndentation(10)
        self.tree.setUniformRowHeights(False)
        self.tree.setAccessibleName(self.tr("Sources"))
        self.tree.itemActivated.connect(self._activated)
        layout.addWidget(self.tree, 1)
        self.drives = QTreeWidgetItem(self.tree, [self.tr("Discs and USB sticks")])
        self.recent = QTreeWidgetItem(self.tree, [self.tr("Recent folders")])
        for top in (self.drives, self.recent):
            top.setFlags(Qt.ItemFlag.ItemIsEnabled)
            f = top.font(0)
            f.setBold(True)
            top.setFont(0, f)
            top.setExpanded(True)
        style = self.style()
        self.open_folder_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DirOpenIcon), self.tr("Open folder…"), self)
        self.open_dicomdir_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_FileIcon), self.tr("Open DICOMDIR…"), self)
        self.open_iso_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DriveCDIcon), self.tr("Open ISO image…"),
            self)
        for b in (self.open_folder_button, self.open_dicomdir_button, self.open_iso_button):
            b.setStyleSheet("text-align: left; padding: 4px 8px;")
            layout.addWidget(b)
        self.set_volumes([])
        self.set_recent([])

    # ----- content -------------------------------------------------------------------------
    def set_volumes(self, volumes: list[Any]) -> None:
        """Show the optical and USB volumes (fixed disks are left out)."""
        self.drives.takeChildren()
        shown = [v for v in volumes if getattr(v, "kind", "") in SHOWN_KINDS]
        for vol in shown:
            label = getattr(vol, "display_name", "") or str(vol.mount_point)
            details = [self.tr("%1 free").replace("%1", format_bytes(getattr(vol, "free_bytes",
                                                                             None)))]
            if getattr(vol, "read_only", False):
                details.append(self.tr("read-only"))
            item = QTreeWidgetItem(self.drives, [f"{label}\n{' · '.join(details)}"])
            item.setIcon(0, _volume_icon(getattr(vol, "kind", "")))
            item.setData(0, PathRole, str(vol.mount_point))
            item.setData(0, VolumeRole, vol)
            item.setToolTip(0, f"{vol.mount_point}\n{getattr(vol, 'device', '') or ''} "
                               f"{getattr(vol, 'filesystem', '') or ''}".strip())
        if not shown:
            item = QTreeWidgetItem(self.drives, [self.tr("No disc or USB stick found")])
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)
            item.setForeground(0, self.palette().placeholderText())
        self.drives.setExpanded(True)

    def volume_paths(self) -> list[str]:
        return [self.drives.child(i).data(0, PathRole) for i in range(self.drives.childCount())
                if self.drives.child(i).data(0, PathRole)]

    def set_recent(self, folders: list[str]) -> None:
        self.recent.takeChildren()
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_DirIcon)
        for folder in folders:
            p = Path(folder)
            # A DICOMDIR file is shown by its folder's name ("PATIENT_CD/DICOMDIR" → PATIENT_CD).
            name = (p.parent.name if p.name.upper().startswith("DICOMDIR") else p.name) or folder
            item = QTreeWidgetItem(self.recent, [name])
            item.setIcon(0, icon)
            item.setData(0, PathRole, folder)
            item.setToolTip(0, folder)
        if not folders:
            item = QTreeWidgetItem(self.recent, [self.tr("None yet")])
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)
            item.setForeground(0, self.palette().placeholderText())
        self.recent.setExpanded(True)

    def recent_paths(self) -> list[str]:
        return [self.recent.child(i).data(0, PathRole) for i in range(self.recent.childCount())
                if self.recent.child(i).data(0, PathRole)]

    def _activated(self, item: QTreeWidgetItem, _column: int) -> None:
        path = item.data(0, PathRole)
        if path:
            self.open_requested.emit(str(path))


class DetectionPolicy(QObject):
    """What happens when a volume with DICOM content appears: ask, open, or ignore (Settings).

    Signals
    -------
    open_requested(str)
        Open this mount point (the policy is "open", or the user said yes).
    offered(str)
        The user was (or, when not interactive, would have been) asked about this mount point.
    """

    open_requested = Signal(str)
    offered = Signal(str)

    def __init__(self, runner: TaskRunner, policy: Callable[[], str], parent: QWidget,
                 interactive: bool = True) -> None:
        super().__init__(parent)
        self.runner = runner
        self.policy = policy
        self.window = parent
        self.interactive = interactive

    def volume_inserted(self, volume: Any) -> None:
        """Look for DICOM content on the pool, then act per the policy."""
        if getattr(volume, "kind", "") not in SHOWN_KINDS:
            return
        policy = self.policy()
        if policy == "ignore":
            return
        from app.core.devices.media import has_dicom_content

        task = self.runner.run_plain(has_dicom_content, str(volume.mount_point))
        task.finished.connect(lambda yes: self._act(volume, policy) if yes else None)

    def _act(self, volume: Any, policy: str) -> None:
        mount = str(volume.mount_point)
        if policy == "open":
            self.open_requested.emit(mount)
            return
        self.offered.emit(mount)
        if not self.interactive:
            return
        label = getattr(volume, "display_name", "") or mount
        box = QMessageBox(QMessageBox.Icon.Question, self.tr("Medical images found"),
                          self.tr("“%1” holds medical images. Open it now?").replace("%1", label),
                          QMessageBox.StandardButton.Open | QMessageBox.StandardButton.Ignore,
                          self.window)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.buttonClicked.connect(lambda b: self.open_requested.emit(mount) if box.standardButton(b)
                                  == QMessageBox.StandardButton.Open else None)
        box.open()


def is_under(path: str, root: str) -> bool:
    """Is ``path`` the folder ``root`` or inside it (after resolving)?"""
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except (OSError, ValueError):
        return False


def _default_opener(path: str, progress: Any = None, cancel: Any = None) -> Any:
    from app.core.medium.reader import open_medium

    return open_medium(path, progress=progress, cancel=cancel)


class MediumLoader(QObject):
    """Reads media (``app.core.medium.reader.open_medium``) on the TaskRunner, one task per path.

    Signals
    -------
    opened(object, str, bool)
        The Medium, the path it was opened from, and whether to remember the path.
    failed(str, str)
        The path and a message fit for the user.
    cancelled(str, str)
        The path and why (the user cancelled, or the disc was removed while being read).
    progress(object)
        ``app.core.jobs.Progress`` of any running read.
    busy_changed(bool)
        Reading started (True) or every read has ended (False).
    """

    opened = Signal(object, str, bool)
    failed = Signal(str, str)
    cancelled = Signal(str, str)
    progress = Signal(object)
    busy_changed = Signal(bool)

    def __init__(self, runner: TaskRunner, opener: Callable[..., Any] | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.opener = opener or _default_opener
        self._tasks: dict[Task, str] = {}
        self._reasons: dict[Task, str] = {}

    def open(self, path: str, remember: bool = True) -> Task:
        """Start reading ``path``; a read of the same path already running is cancelled."""
        task = self.runner.start(self.opener, (path,), key=f"open:{path}", name="open_medium")
        self._tasks[task] = path
        task.progress.connect(self.progress.emit)
        task.finished.connect(lambda medium, t=task: self.opened.emit(
            medium, self._done(t), remember))
        task.failed.connect(lambda msg, t=task: self.failed.emit(self._done(t), msg))
        task.cancelled.connect(lambda t=task: self._cancelled(t))
        if len(self._tasks) == 1:
            QuietGC.hold()
            self.busy_changed.emit(True)
        return task

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            self.runner.cancel_task(task)

    def cancel_under(self, mount: str, reason: str) -> int:
        """Cancel every read of a path on the volume ``mount`` (it was removed). Returns how many."""
        n = 0
        for task, path in list(self._tasks.items()):
            if is_under(path, mount):
                self._reasons[task] = reason
                self.runner.cancel_task(task)
                n += 1
        return n

    def _done(self, task: Task) -> str:
        path = self._tasks.pop(task, "")
        if not self._tasks and path:
            QuietGC.release()
            self.busy_changed.emit(False)
        return path

    def _cancelled(self, task: Task) -> None:
        reason = self._reasons.pop(task, "")
        path = self._done(task)
        self.cancelled.emit(path, reason or _t("Opening %1 was cancelled.").replace("%1", path))
