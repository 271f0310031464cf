"""Removable-media detection: the volumes the OS has mounted, and a watcher for changes.

One backend per OS behind :class:`MediaBackend` (issue 4 item 2), each a thin layer over the OS
calls, injectable for tests:

- Linux: :class:`app.core.devices.media_linux.LinuxBackend` (``/proc/self/mountinfo`` + ``/sys/block``,
  labels from ``/dev/disk/by-label`` or the filesystem's own superblock);
- macOS: :class:`app.core.devices.media_macos.MacBackend` (``/Volumes`` + ``diskutil info -plist``);
- Windows: :class:`app.core.devices.media_windows.WindowsBackend` (``GetLogicalDrives``,
  ``GetDriveTypeW``, ``GetVolumeInformationW``, ``GetDiskFreeSpaceExW`` through ctypes).

:class:`MediaWatcher` polls a backend on a daemon thread and reports :class:`MediaEvent` s; the
GUI turns them into signals. Nothing here imports Qt.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.core.devices.volumes import MediaBackend, Volume

log = logging.getLogger(__name__)


def for_platform(platform: str | None = None) -> MediaBackend:
    """The backend for this (or the named) OS: ``linux``, ``darwin`` or ``win32``."""
    platform = platform or sys.platform
    if platform.startswith("linux"):
        from app.core.devices.media_linux import LinuxBackend

        return LinuxBackend()
    if platform == "darwin":
        from app.core.devices.media_macos import MacBackend

        return MacBackend()
    if platform in ("win32", "cygwin"):
        from app.core.devices.media_windows import WindowsBackend

        return WindowsBackend()
    raise ValueError(f"no media detection for platform {platform!r}")


def list_volumes(backend: MediaBackend | None = None) -> list[Volume]:
    """The mounted volumes (an empty list when the OS cannot be asked)."""
    try:
        return (backend or for_platform()).list_volumes()
    except Exception as exc:  # no media listing must ever take the application down
        log.warning("cannot list volumes: %s", exc)
        return []


@dataclass(frozen=True)
class MediaEvent:
    """A change: ``added``/``removed`` a volume, or ``changed`` (the new state)."""

    kind: Literal["added", "removed", "changed"]
    volume: Volume


def _significant_change(old: Volume, new: Volume) -> bool:
    if (old.label, old.device, old.kind, old.read_only, old.filesystem, old.total_bytes) != (
            new.label, new.device, new.kind, new.read_only, new.filesystem, new.total_bytes):
        return True
    # Free space changes all the time on a busy disk: report steps of 1 % (or 1 MiB when tiny).
    step = max(new.total_bytes // 100, 1024 * 1024)
    return abs(old.free_bytes - new.free_bytes) >= step


def diff_volumes(old: list[Volume], new: list[Volume]) -> list[MediaEvent]:
    """Events that turn ``old`` into ``new`` (keyed by mount point): removed, added, changed."""
    before = {v.mount_point: v for v in old}
    after = {v.mount_point: v for v in new}
    events = [MediaEvent("removed", v) for k, v in before.items() if k not in after]
    events += [MediaEvent("added", v) for k, v in after.items() if k not in before]
    events += [MediaEvent("changed", v) for k, v in after.items()
               if k in before and _significant_change(before[k], v)]
    return events


class MediaWatcher:
    """Polls ``backend.list_volumes()`` every ``interval`` seconds on a daemon thread.

    ``callback(event)`` runs on the watcher thread (the GUI forwards it through a signal).
    :meth:`start` takes the first snapshot synchronously (read it from :attr:`volumes`) and,
    with ``report_existing=True``, reports those volumes as ``added``. :meth:`stop` returns
    within about one backend call: the thread sleeps on an event, never busy-waits. Errors in the
    backend or the callback are logged and polling goes on.
    """

    def __init__(self, callback: Callable[[MediaEvent], None], interval: float = 2.0,
                 backend: MediaBackend | None = None, report_existing: bool = False) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.callback = callback
        self.interval = interval
        self.backend = backend
        self.report_existing = report_existing
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._volumes: list[Volume] = []

    @property
    def volumes(self) -> list[Volume]:
        """The last snapshot."""
        with self._lock:
            return list(self._volumes)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        if self.backend is None:
            self.backend = for_platform()
        self._stop.clear()
        first = self._poll_once()
        with self._lock:
            self._volumes = first
        if self.report_existing:
            self._emit([MediaEvent("added", v) for v in first])
        self._thread = threading.Thread(target=self._run, name="media-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    def __enter__(self) -> MediaWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def poll(self) -> list[MediaEvent]:
        """One poll now (also usable without the thread): emits and returns the events."""
        if self.backend is None:
            self.backend = for_platform()
        new = self._poll_once()
        with self._lock:
            events = diff_volumes(self._volumes, new)
            self._volumes = new
        self._emit(events)
        return events

    def _poll_once(self) -> list[Volume]:
        assert self.backend is not None
        try:
            return self.backend.list_volumes()
        except Exception:  # a watcher must survive anything the OS throws at it
            log.exception("media backend failed; keeping the last snapshot")
            with self._lock:
                return list(self._volumes)

    def _emit(self, events: list[MediaEvent]) -> None:
        for event in events:
            if self._stop.is_set():
                return
            try:
                self.callback(event)
            except Exception:
                log.exception("media event callback failed for %s", event)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()


_DICOMDIR_NAMES = ("dicomdir", "dicomdir.", "dicomdir;1", "dicomdir.;1")


def has_dicom_content(volume: Volume | str | os.PathLike[str], max_files: int = 48,
                      max_dirs: int = 64, time_budget: float = 1.0) -> bool:
    """Quick guess whether a volume holds DICOM data (to offer opening it).

    True for a DICOMDIR (any case, ``DICOMDIR.``/``;1`` forms) at the root or one or two levels
    down, or a file with ``DICM`` at offset 128 among the first ``max_files`` files met
    breadth-first (down to four levels). Looks at no more than ``max_dirs`` folders and stops after ``time_budget``
    seconds. Never follows symlinks; unreadable folders are skipped.
    """
    root = Path(volume.mount_point if isinstance(volume, Volume) else volume)
    deadline = time.monotonic() + time_budget
    queue: list[tuple[Path, int]] = [(root, 0)]
    files_seen = 0
    dirs_seen = 0
    while queue and dirs_seen < max_dirs and time.monotonic() < deadline:
        folder, depth = queue.pop(0)
        dirs_seen += 1
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)[:1000]
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_symlink():
                    continue
                if entry.is_dir():
                    if depth < 4:
                        queue.append((Path(entry.path), depth + 1))
                    continue
                if not entry.is_file():
                    continue
            except OSError:
                continue
            if depth <= 2 and entry.name.lower() in _DICOMDIR_NAMES:
                return True
            if files_seen < max_files and time.monotonic() < deadline:
                files_seen += 1
                if _has_dicm(entry.path):
                    return True
    return False


def _has_dicm(path: str) -> bool:
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"
