"""The Sources panel: detected discs and USB volumes, recent folders, and the open buttons.

:class:`MediaMonitor` turns ``app.core.media`` (list_volumes, MediaWatcher) into Qt signals on
the GUI thread: the watcher's callback runs on its own thread and only emits a queued signal;
the volume list is then fetched on the TaskRunner's read pool and compared with the last one
(``inserted`` / ``removed``). :class:`SourcesPanel` shows the optical and USB volumes (label,
free space, read-only state), the recent folders and the "Open …" buttons.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QPushButton,
    QStyle,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.tasks import Task, TaskRunner

log = logging.getLogger(__name__)

PathRole = Qt.ItemDataRole.UserRole + 30
VolumeRole = Qt.ItemDataRole.UserRole + 31
SHOWN_KINDS = ("optical", "usb")


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


def volume_key(vol: Any) -> tuple[str, str]:
    return (str(getattr(vol, "mount_point", "")), str(getattr(vol, "device", "") or ""))


def has_dicom_content(root: str | os.PathLike[str], max_files: int = 200) -> bool:
    """Does a mounted volume look like DICOM media? (a DICOMDIR in any case at the root or one
    level down, else a file with the DICM prefix among the first ``max_files``). Never raises."""
    root = Path(root)
    try:
        for level in (root, *[p for p in sorted(root.iterdir())[:50] if p.is_dir()]):
            for entry in level.iterdir():
                name = entry.name.upper().rstrip(".").split(";")[0].rstrip(".")
                if name == "DICOMDIR" and entry.is_file():
                    return True
    except OSError:
        return False
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        if depth >= 4:
            dirnames.clear()
        for name in sorted(filenames):
            seen += 1
            if seen > max_files:
                return False
            try:
                with open(os.path.join(dirpath, name), "rb") as fh:
                    head = fh.read(132)
            except OSError:
                continue
            if len(head) == 132 and head[128:132] == b"DICM":
                return True
    return False


def _default_list_volumes() -> list[Any]:
    from app.core.media import list_volumes

    return list(list_volumes())


class MediaMonitor(QObject):
    """Detected volumes as Qt signals, delivered on the GUI thread.

    Parameters
    ----------
    runner : TaskRunner
        ``list_volumes`` runs on its read pool (it may block on slow drives).
    list_volumes : callable, optional
        Returns the current volumes (``app.core.media.list_volumes`` by default; tests pass a
        fake backend's method).
    interval : float
        Seconds between polls.
    use_watcher : bool
        Use ``app.core.media.MediaWatcher`` (its own thread; its callback only pokes us) when
        available; else poll with a QTimer. Either way no widget is touched off the GUI thread.
    """

    volumes_changed = Signal(list)
    inserted = Signal(object)
    removed = Signal(object)
    _poke = Signal()  # emitted from the watcher's thread; delivered queued

    def __init__(self, runner: TaskRunner, list_volumes: Callable[[], list[Any]] | None = None,
                 interval: float = 2.0, use_watcher: bool = True,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self._list = list_volumes or _default_list_volumes
        self.interval = interval
        self.use_watcher = use_watcher
        self.volumes: list[Any] = []
        self._known: dict[tuple[str, str], Any] | None = None
        self._task: Task | None = None
        self._again = False
        self._watcher: Any = None
        self._timer = QTimer(self)
        self._timer.setInterval(int(interval * 1000))
        self._timer.timeout.connect(self.refresh)
        self._poke.connect(self.refresh, Qt.ConnectionType.QueuedConnection)

    def start(self) -> None:
        """Fetch the volumes now and watch for changes."""
        self.refresh()
        if self.use_watcher and self._watcher is None:
            try:
                from app.core.media import MediaWatcher

                self._watcher = MediaWatcher(self._from_watcher, self.interval)
                self._watcher.start()
                return
            except Exception as exc:  # noqa: BLE001 - no watcher for this OS: poll instead
                log.info("media watcher unavailable (%s); polling", exc)
                self._watcher = None
        self._timer.start()

    def stop(self) -> None:
        """Stop watching (joins the watcher thread)."""
        self._timer.stop()
        if self._watcher is not None:
            try:
                self._watcher.stop()
            except Exception:  # noqa: BLE001
                log.exception("stopping the media watcher failed")
            self._watcher = None
        if self._task is not None:
            self.runner.cancel_task(self._task)

    def _from_watcher(self, *args: Any, **kwargs: Any) -> None:
        """The watcher's callback (its thread): only poke the GUI thread."""
        self._poke.emit()

    @Slot()
    def refresh(self) -> None:
        """Fetch the volume list on the pool; compare with the last one when it arrives."""
        if self._task is not None and not self._task.done:
            self._again = True
            return
        task = self.runner.run_plain(self._list)
        self._task = task
        task.finished.connect(self._arrived)
        task.failed.connect(lambda msg: log.warning("listing volumes failed: %s", msg))
        task.failed.connect(self._maybe_again)
        task.cancelled.connect(self._maybe_again)

    def _maybe_again(self, *_: Any) -> None:
        if self._again:
            self._again = False
            self.refresh()

    def _arrived(self, volumes: list[Any]) -> None:
        now = {volume_key(v): v for v in volumes}
        before = self._known
        self._known = now
        self.volumes = list(volumes)
        if before is None:
            self.volumes_changed.emit(self.volumes)
        else:
            added = [v for k, v in now.items() if k not in before]
            gone = [v for k, v in before.items() if k not in now]
            changed = added or gone or any(now[k] != before[k] for k in now if k in before)
            if changed:
                self.volumes_changed.emit(self.volumes)
            for v in gone:
                self.removed.emit(v)
            for v in added:
                self.inserted.emit(v)
        self._maybe_again()


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
            label = getattr(vol, "label", "") or Path(str(vol.mount_point)).name or str(
                vol.mount_point)
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
            name = Path(folder).name or folder
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
