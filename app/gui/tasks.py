"""Run core jobs off the GUI thread and get their results back as Qt signals.

A core job is a plain function ``fn(*args, progress=cb, cancel=token, **kw)`` (``app.core.jobs``).
:class:`TaskRunner` runs it on a thread pool and returns a :class:`Task` whose signals are always
emitted **on the GUI thread** (the worker talks to it only through queued connections)::

    task = runner.run(open_medium, path)            # reads, thumbnails: multi-thread pool
    task.progress.connect(bar.set_progress)          # Progress, throttled (latest value wins)
    task.finished.connect(self._show)                # the function's return value
    task.failed.connect(self._error)                 # a message fit for a user
    task.cancelled.connect(...)                      # the job raised Cancelled, or never started
    cancel_button.clicked.connect(task.cancel)       # -> CancelToken.cancel()

    runner.run_write(run_export, options)            # writes: one-thread pool (serialised)
    runner.run_plain(render, path, max_size=256)     # a function without progress/cancel

Rules kept here so callers don't have to: no exception ever escapes into a pool (a
:class:`~app.core.errors.DiscBridgeError` becomes its message, anything else is logged with its
traceback and reported as an unexpected error); workers never touch widgets; progress reaches the
GUI at most every ``PROGRESS_INTERVAL`` seconds and never queues up; :meth:`TaskRunner.shutdown`
cancels everything and waits, so no thread is left running at exit.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, QTimer, Signal, Slot

from app.core.errors import DiscBridgeError
from app.core.jobs import Cancelled, CancelToken, Progress

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.05  # seconds between two progress signals of one task

_RUNNERS: weakref.WeakSet[TaskRunner] = weakref.WeakSet()

PENDING, RUNNING, FINISHED, FAILED, CANCELLED = "pending", "running", "finished", "failed", "cancelled"


class _Bridge(QObject):
    """Carries a worker's events to its Task. Emitted from the worker, delivered queued."""

    progress_ready = Signal()
    done = Signal(str, object)  # state, payload (result, message, or None)


class _Runnable(QRunnable):
    def __init__(self, task: Task) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the Task keeps us alive until it has been delivered
        self._task = task

    def run(self) -> None:  # Reimplemented from QRunnable.run (worker thread)
        self._task._execute()


class Task(QObject):
    """One job on a pool. Create through :class:`TaskRunner`; all signals arrive on the GUI thread.

    Attributes
    ----------
    state : str
        ``pending``, ``running``, ``finished``, ``failed`` or ``cancelled``.
    result : object
        The function's return value once ``finished`` was emitted.
    error : BaseException | None
        The exception behind ``failed`` (for logs and tests; show ``failed``'s message to users).
    """

    progress = Signal(object)  # app.core.jobs.Progress
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 *, with_progress: bool, name: str = "") -> None:
        super().__init__()
        self.name = name or getattr(fn, "__name__", "task")
        self.token = CancelToken()
        self.state = PENDING
        self.result: Any = None
        self.error: BaseException | None = None
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._with_progress = with_progress
        self._lock = threading.Lock()
        self._latest: Progress | None = None
        self._last_emit = 0.0
        self._in_flight = False  # a progress_ready is queued and not yet delivered
        self._last_delivered: Progress | None = None
        self._bridge = _Bridge()
        self._bridge.progress_ready.connect(self._deliver_progress, Qt.ConnectionType.QueuedConnection)
        self._bridge.done.connect(self._deliver_done, Qt.ConnectionType.QueuedConnection)
        self.runnable = _Runnable(self)
        self._on_settled: Callable[[Task], None] | None = None

    # ----- public -------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True once one of finished / failed / cancelled has been emitted."""
        return self.state in (FINISHED, FAILED, CANCELLED)

    def cancel(self) -> bool:
        """Ask the job to stop (``CancelToken.cancel``).

        Returns False when the job is past its point of no return (a burn that started writing)
        or already done. A job that has not started yet is cancelled at once.
        """
        if self.done:
            return False
        return self.token.cancel()

    # ----- worker side (never touches widgets) --------------------------------------------
    def _report(self, p: Progress) -> None:
        now = time.monotonic()
        with self._lock:
            phase_changed = self._latest is None or self._latest.phase != p.phase
            self._latest = p
            if self._in_flight:
                return  # the GUI will pick up the latest value when it gets to it
            if not phase_changed and now - self._last_emit < PROGRESS_INTERVAL:
                return
            self._in_flight = True
            self._last_emit = now
        self._bridge.progress_ready.emit()

    def _execute(self) -> None:
        if self.token.cancelled:
            self._bridge.done.emit(CANCELLED, None)
            return
        self.state = RUNNING
        kwargs = dict(self._kwargs)
        if self._with_progress:
            kwargs["progress"] = self._report
            kwargs["cancel"] = self.token
        try:
            value = self._fn(*self._args, **kwargs)
        except Cancelled:
            self._bridge.done.emit(CANCELLED, None)
        except DiscBridgeError as exc:
            self.error = exc
            self._bridge.done.emit(FAILED, str(exc))
        except BaseException as exc:  # noqa: BLE001 - nothing may escape into the pool
            self.error = exc
            log.exception("task %s failed unexpectedly", self.name)
            self._bridge.done.emit(FAILED, f"Unexpected error: {type(exc).__name__}: {exc}")
        else:
            self._bridge.done.emit(FINISHED, value)

    # ----- GUI side -----------------------------------------------------------------------
    @Slot()
    def _deliver_progress(self) -> None:
        with self._lock:
            p = self._latest
            self._in_flight = False
        if p is not None and not self.done and p is not self._last_delivered:
            self._last_delivered = p
            self.progress.emit(p)

    @Slot(str, object)
    def _deliver_done(self, state: str, payload: object) -> None:
        if self.done:
            return
        with self._lock:
            last = self._latest
        if last is not None and last is not self._last_delivered and state == FINISHED:
            self._last_delivered = last
            self.progress.emit(last)  # the final value of a phase is never lost
        self.state = state
        try:
            if state == FINISHED:
                self.result = payload
                self.finished.emit(payload)
            elif state == FAILED:
                self.failed.emit(str(payload))
            else:
                self.cancelled.emit()
        finally:
            if self._on_settled is not None:
                self._on_settled(self)

    def _settle_unstarted(self) -> None:
        """Called by the runner when the job was taken off the queue before it ran."""
        self._bridge.done.emit(CANCELLED, None)


class TaskRunner(QObject):
    """Two pools: ``reads`` (several threads: opening media, thumbnails, decoding) and
    ``writes`` (one thread: exports, ISO images, burns — writes to media are serialised).

    Parameters
    ----------
    read_threads : int | None
        Threads of the read pool (default: ``QThread.idealThreadCount()``, at least 2).
    """

    task_started = Signal(object)
    task_settled = Signal(object)

    def __init__(self, parent: QObject | None = None, read_threads: int | None = None) -> None:
        super().__init__(parent)
        self.reads = QThreadPool(self)
        n = read_threads or max(2, QThreadPool.globalInstance().maxThreadCount())
        self.reads.setMaxThreadCount(n)
        self.reads.setObjectName("discbridge-reads")
        self.writes = QThreadPool(self)
        self.writes.setMaxThreadCount(1)
        self.writes.setObjectName("discbridge-writes")
        self._tasks: set[Task] = set()
        self._keyed: dict[str, Task] = {}
        self._closed = False
        _RUNNERS.add(self)

    # ----- starting -------------------------------------------------------------------------
    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Task:
        """Run ``fn(*args, progress=, cancel=, **kwargs)`` on the read pool."""
        return self.start(fn, args, kwargs)

    def run_write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Task:
        """Run ``fn(*args, progress=, cancel=, **kwargs)`` on the single-thread write pool."""
        return self.start(fn, args, kwargs, write=True)

    def run_plain(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Task:
        """Run ``fn(*args, **kwargs)`` (no progress/cancel arguments) on the read pool.

        Cancelling such a task only helps while it is still queued.
        """
        return self.start(fn, args, kwargs, with_progress=False)

    def start(self, fn: Callable[..., Any], args: tuple[Any, ...] = (),
              kwargs: dict[str, Any] | None = None, *, write: bool = False,
              with_progress: bool = True, key: str | None = None, priority: int = 0,
              name: str = "") -> Task:
        """The general form of :meth:`run`.

        Parameters
        ----------
        write : bool
            Use the single-thread write pool.
        with_progress : bool
            Pass ``progress=`` and ``cancel=`` to ``fn``.
        key : str | None
            One active task per key: starting a new one cancels the previous one.
        priority : int
            Higher runs first among queued tasks of the same pool.
        """
        task = Task(fn, args, kwargs or {}, with_progress=with_progress, name=name)
        if self._closed:
            QTimer.singleShot(0, task._settle_unstarted)
            task.token.cancel()
            return task
        if key is not None:
            old = self._keyed.get(key)
            if old is not None:
                self.cancel_task(old)
            self._keyed[key] = task
        task._on_settled = self._settled
        self._tasks.add(task)
        (self.writes if write else self.reads).start(task.runnable, priority)
        self.task_started.emit(task)
        return task

    # ----- stopping -------------------------------------------------------------------------
    def cancel_task(self, task: Task) -> bool:
        """Cancel one task; a queued one is taken off its pool at once."""
        ok = task.cancel()
        if ok and task.state == PENDING:
            for pool in (self.reads, self.writes):
                if pool.tryTake(task.runnable):
                    task._settle_unstarted()
                    break
        return ok

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            self.cancel_task(task)

    def active_count(self) -> int:
        """Tasks started and not yet delivered (finished, failed or cancelled)."""
        return len(self._tasks)

    def wait(self, msecs: int = -1) -> bool:
        """Wait for both pools to be idle (does not deliver signals). True when idle."""
        ok = self.reads.waitForDone(msecs)
        return self.writes.waitForDone(msecs) and ok

    def shutdown(self, msecs: int = 30000) -> bool:
        """Cancel every task, drop queued ones, and wait for running ones to stop.

        Call before the application quits. Returns True when no thread is left busy.
        """
        self._closed = True
        for pool in (self.reads, self.writes):
            pool.clear()
        for task in list(self._tasks):
            task.token.cancel()
        ok = self.wait(msecs)
        for pool in (self.reads, self.writes):
            pool.waitForDone(msecs)
        for task in list(self._tasks):
            if task.state == PENDING:
                task.state = CANCELLED
        self._tasks.clear()
        self._keyed.clear()
        return ok

    def busy_threads(self) -> int:
        """Threads of this runner's pools that are running a job right now (0 once deleted)."""
        if not shiboken6.isValid(self) or not shiboken6.isValid(self.reads):
            return 0
        return self.reads.activeThreadCount() + self.writes.activeThreadCount()

    def _settled(self, task: Task) -> None:
        self._tasks.discard(task)
        for key, t in list(self._keyed.items()):
            if t is task:
                del self._keyed[key]
        self.task_settled.emit(task)


def live_runners() -> list[TaskRunner]:
    """Every TaskRunner not yet garbage-collected (tests assert they are all idle)."""
    return list(_RUNNERS)
