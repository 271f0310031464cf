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
# A worker reporting progress yields the GIL at most this often: CPU-bound Python workers
# otherwise starve the GUI thread (measured: 3 busy workers → 250 ms event-loop gaps; with a
# yield per progress call → 15 ms). See benchmarks/results_gui.md.
YIELD_INTERVAL = 0.002

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
                 *, with_progress: bool, name: str = "", in_process: bool = False) -> None:
        super().__init__()
        self.name = name or getattr(fn, "__name__", "task")
        self.token = CancelToken()
        self.state = PENDING
        self.result: Any = None
        self.error: BaseException | None = None
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._with_progress = with_progress
        self._in_process = in_process
        self._lock = threading.Lock()
        self._latest: Progress | None = None
        self._last_emit = 0.0
        self._last_yield = 0.0
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
        if now - self._last_yield >= YIELD_INTERVAL:
            self._last_yield = now
            time.sleep(0)  # let the GUI thread take the GIL
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
        if self._with_progress and not self._in_process:
            kwargs["progress"] = self._report
            kwargs["cancel"] = self.token
        try:
            if self._in_process:
                value = run_in_process(self._fn, self._args, kwargs, self._report, self.token,
                                       self._with_progress)
            else:
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

    def run_process(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Task:
        """Run ``fn(*args, progress=, cancel=, **kwargs)`` in a child process, from the write pool.

        For long CPU-bound jobs (exports): their Python threads then cannot starve the GUI
        thread of the GIL. ``fn``, its arguments and its result must be picklable (module-level
        function, plain data); progress, cancel and the point of no return
        (``cancel.allow_cancel(False)``) cross the process boundary.
        """
        return self.start(fn, args, kwargs, write=True, in_process=True)

    def run_plain(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Task:
        """Run ``fn(*args, **kwargs)`` (no progress/cancel arguments) on the read pool.

        Cancelling such a task only helps while it is still queued.
        """
        return self.start(fn, args, kwargs, with_progress=False)

    def start(self, fn: Callable[..., Any], args: tuple[Any, ...] = (),
              kwargs: dict[str, Any] | None = None, *, write: bool = False,
              with_progress: bool = True, key: str | None = None, priority: int = 0,
              name: str = "", in_process: bool = False) -> Task:
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
        in_process : bool
            Run ``fn`` in a child process (see :meth:`run_process`).
        """
        task = Task(fn, args, kwargs or {}, with_progress=with_progress, name=name,
                    in_process=in_process)
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


# ----- jobs in a child process ------------------------------------------------------------------

class _ChildToken(CancelToken):
    """The child's cancel token: cancelled through a multiprocessing Event; the point of no return
    is reported back to the parent."""

    def __init__(self, event: Any, channel: Any) -> None:
        super().__init__()
        self._event = event
        self._channel = channel

    def allow_cancel(self, allowed: bool) -> None:
        super().allow_cancel(allowed)
        self._channel.put(("cancellable", allowed))


def _child_main(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                channel: Any, event: Any, with_progress: bool) -> None:
    """Entry point of the child process: run the job, send every event through ``channel``."""
    from app.core.jobs import Throttle

    sent: list[Progress | None] = [None, None]  # last seen, last sent

    def send(p: Progress) -> None:
        sent[1] = p
        channel.put(("progress", p))

    throttle = Throttle(send, PROGRESS_INTERVAL)

    def progress(p: Progress) -> None:
        sent[0] = p
        throttle(p)

    _watch_parent(event)
    try:
        if with_progress:
            kwargs = dict(kwargs, progress=progress, cancel=_ChildToken(event, channel))
        result = fn(*args, **kwargs)
        if sent[0] is not None and sent[0] is not sent[1]:
            send(sent[0])  # the final value is never lost
        channel.put(("result", result))
    except Cancelled:
        channel.put(("cancelled", None))
    except DiscBridgeError as exc:
        channel.put(("failed", exc))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, never lost
        import traceback

        channel.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def _watch_parent(event: Any, grace: float = 60.0) -> None:
    """The child outlives no parent: when the window's process ends (killed, crashed), the job
    is cancelled (it cleans up after itself: DEST as it was) and the child exits at the latest
    ``grace`` seconds later. The child is not daemonic, so that its own workers may start."""
    import multiprocessing
    import os

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        event.set()
        time.sleep(grace)
        os._exit(1)

    threading.Thread(target=watch, name="discbridge-parent-watch", daemon=True).start()


def run_in_process(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                   report: Callable[[Progress], None], token: CancelToken,
                   with_progress: bool = True) -> Any:
    """Run ``fn`` in a fresh ("spawn") child process and wait for it on the calling thread.

    Returns its result or raises what it raised (Cancelled, a DiscBridgeError, else a
    DiscBridgeError naming the unexpected error). Cancel sets the child's event; a child that
    dies is reported with its exit code.
    """
    import multiprocessing
    import queue as _queue

    ctx = multiprocessing.get_context("spawn")  # never fork a process that runs Qt threads
    channel = ctx.Queue()
    event = ctx.Event()
    proc = ctx.Process(target=_child_main, args=(fn, args, kwargs, channel, event,
                                                 with_progress),
                       name=f"discbridge-{getattr(fn, '__name__', 'job')}", daemon=False)
    proc.start()
    try:
        while True:
            if token.cancelled and not event.is_set():
                event.set()
            try:
                kind, payload = channel.get(timeout=0.1)
            except _queue.Empty:
                if not proc.is_alive():
                    try:  # the last message may still be in the pipe
                        kind, payload = channel.get(timeout=0.5)
                    except _queue.Empty:
                        raise DiscBridgeError(
                            f"the {getattr(fn, '__name__', 'job')} process ended unexpectedly "
                            f"(exit code {proc.exitcode})") from None
                else:
                    continue
            if kind == "progress":
                report(payload)
            elif kind == "cancellable":
                token.allow_cancel(bool(payload))
            elif kind == "result":
                return payload
            elif kind == "cancelled":
                raise Cancelled("cancelled by the user")
            elif kind == "failed":
                raise payload
            else:
                log.error("job %s failed unexpectedly in its process:\n%s",
                          getattr(fn, "__name__", "?"), payload)
                raise DiscBridgeError(f"Unexpected error: {str(payload).splitlines()[0]}")
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        channel.close()
        channel.join_thread()
