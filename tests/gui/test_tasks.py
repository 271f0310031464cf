"""TaskRunner: results, failures, cancel, throttled progress, GUI-thread delivery, shutdown."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QThread

from app.core.errors import UnreadableMedium
from app.core.jobs import CancelToken, Progress
from app.gui.tasks import CANCELLED, FAILED, FINISHED, TaskRunner


def _add(a: int, b: int, progress=None, cancel=None) -> int:  # noqa: ANN001
    progress(Progress("add", 1, 1))
    return a + b


def test_result_arrives_on_gui_thread(qtbot, runner: TaskRunner) -> None:
    seen: list[object] = []
    worker_thread: list[threading.Thread] = []

    def job(progress=None, cancel=None) -> str:  # noqa: ANN001
        worker_thread.append(threading.current_thread())
        return "ok"

    task = runner.run(job)
    task.finished.connect(lambda v: seen.append((v, QThread.currentThread())))
    with qtbot.wait_signal(task.finished, timeout=3000):
        pass
    assert seen[0][0] == "ok"
    assert seen[0][1] is qtbot_main_thread()
    assert worker_thread[0] is not threading.main_thread()
    assert task.state == FINISHED and task.result == "ok"
    qtbot.wait_until(lambda: runner.active_count() == 0, timeout=1000)


def qtbot_main_thread() -> QThread:
    from PySide6.QtCore import QCoreApplication

    return QCoreApplication.instance().thread()


def test_args_progress_and_cancel_are_passed(qtbot, runner: TaskRunner) -> None:
    task = runner.run(_add, 2, b=3)
    progress: list[Progress] = []
    task.progress.connect(progress.append)
    with qtbot.wait_signal(task.finished, timeout=3000) as blocker:
        pass
    assert blocker.args == [5]
    assert [p.phase for p in progress] == ["add"]  # the last progress is never lost


def test_project_error_becomes_message(qtbot, runner: TaskRunner) -> None:
    def job(progress=None, cancel=None) -> None:  # noqa: ANN001
        raise UnreadableMedium("/media/cdrom: nothing readable")

    task = runner.run(job)
    with qtbot.wait_signal(task.failed, timeout=3000) as blocker:
        pass
    assert blocker.args == ["/media/cdrom: nothing readable"]
    assert task.state == FAILED and isinstance(task.error, UnreadableMedium)


def test_unexpected_exception_never_escapes(qtbot, runner: TaskRunner, caplog) -> None:
    def job(progress=None, cancel=None) -> None:  # noqa: ANN001
        raise ZeroDivisionError("boom")

    task = runner.run(job)
    with qtbot.wait_signal(task.failed, timeout=3000) as blocker:
        pass
    assert "ZeroDivisionError" in blocker.args[0] and "boom" in blocker.args[0]
    assert "failed unexpectedly" in caplog.text


def test_cancel_running_job(qtbot, runner: TaskRunner) -> None:
    started = threading.Event()

    def job(progress=None, cancel: CancelToken | None = None) -> str:  # noqa: ANN001
        started.set()
        for _ in range(500):
            cancel.raise_if_cancelled()
            time.sleep(0.01)
        return "not cancelled"

    task = runner.run(job)
    assert started.wait(3)
    with qtbot.wait_signal(task.cancelled, timeout=3000):
        assert task.cancel()
    assert task.state == CANCELLED


def test_cancel_queued_job_never_runs(qtbot, runner: TaskRunner) -> None:
    gate = threading.Event()
    ran: list[str] = []

    def blocker_job(progress=None, cancel=None) -> None:  # noqa: ANN001
        gate.wait(5)

    def queued(progress=None, cancel=None) -> None:  # noqa: ANN001
        ran.append("queued")

    first = runner.run_write(blocker_job)  # one write thread: the next one waits in the queue
    second = runner.run_write(queued)
    with qtbot.wait_signal(second.cancelled, timeout=3000):
        assert runner.cancel_task(second)
    gate.set()
    with qtbot.wait_signal(first.finished, timeout=3000):
        pass
    assert ran == []


def test_writes_are_serialised(qtbot, runner: TaskRunner) -> None:
    active = [0]
    peak = [0]
    lock = threading.Lock()

    def write(progress=None, cancel=None) -> None:  # noqa: ANN001
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1

    tasks = [runner.run_write(write) for _ in range(4)]
    qtbot.wait_until(lambda: all(t.done for t in tasks), timeout=3000)
    assert peak[0] == 1
    assert runner.writes.maxThreadCount() == 1 and runner.reads.maxThreadCount() >= 2


def test_progress_is_throttled_and_latest_wins(qtbot, runner: TaskRunner) -> None:
    def job(progress=None, cancel=None) -> int:  # noqa: ANN001
        for i in range(20000):
            progress(Progress("copy", i + 1, 20000))
        return 1

    task = runner.run(job)
    got: list[Progress] = []
    task.progress.connect(got.append)
    with qtbot.wait_signal(task.finished, timeout=5000):
        pass
    assert 1 <= len(got) < 200, len(got)
    assert got[-1].done_files == 20000
    assert [p.done_files for p in got] == sorted(p.done_files for p in got)


def test_keyed_task_cancels_previous(qtbot, runner: TaskRunner) -> None:
    def slow(progress=None, cancel=None) -> str:  # noqa: ANN001
        for _ in range(300):
            cancel.raise_if_cancelled()
            time.sleep(0.01)
        return "slow"

    first = runner.start(slow, key="open")
    second = runner.start(_add, (1, 1), key="open")
    qtbot.wait_until(lambda: first.done and second.done, timeout=5000)
    assert first.state == CANCELLED and second.result == 2


def test_run_plain_gets_no_extra_kwargs(qtbot, runner: TaskRunner) -> None:
    task = runner.run_plain(lambda x, y=0: x * 10 + y, 4, y=2)
    with qtbot.wait_signal(task.finished, timeout=3000) as blocker:
        pass
    assert blocker.args == [42]


def test_shutdown_cancels_and_waits(qapp) -> None:
    runner = TaskRunner()
    started = threading.Event()
    stopped = threading.Event()

    def job(progress=None, cancel=None) -> None:  # noqa: ANN001
        started.set()
        try:
            while True:
                cancel.raise_if_cancelled()
                time.sleep(0.005)
        finally:
            stopped.set()

    runner.run(job)
    queued = [runner.run_write(job) for _ in range(3)]
    assert started.wait(3)
    assert runner.shutdown(5000)
    assert stopped.is_set() and runner.busy_threads() == 0
    # A runner that was shut down refuses new work (and says so with `cancelled`).
    late = runner.run(_add, 1, 2)
    assert late.token.cancelled
    assert all(t.token.cancelled for t in queued)


@pytest.mark.parametrize("n", [40])
def test_many_tasks_all_delivered(qtbot, runner: TaskRunner, n: int) -> None:
    tasks = [runner.run_plain(pow, i, 2) for i in range(n)]
    qtbot.wait_until(lambda: all(t.done for t in tasks), timeout=5000)
    assert [t.result for t in tasks] == [i * i for i in range(n)]
    qtbot.wait_until(lambda: runner.active_count() == 0, timeout=1000)


# ----- jobs in a child process (module-level functions: they are pickled by reference) -------

def proc_job(n: int, progress=None, cancel=None) -> dict:  # noqa: ANN001
    import os

    for i in range(n):
        progress(Progress("write", i + 1, n))
    cancel.allow_cancel(False)  # e.g. a burn that started writing
    return {"pid": os.getpid(), "n": n}


def proc_wait_for_cancel(progress=None, cancel=None) -> None:  # noqa: ANN001
    progress(Progress("wait", 0, 1))
    while True:
        cancel.raise_if_cancelled()
        time.sleep(0.01)


def proc_fail(kind: str, progress=None, cancel=None) -> None:  # noqa: ANN001
    import os

    if kind == "project":
        raise UnreadableMedium("/dest: the stick was pulled")
    if kind == "bug":
        raise KeyError("oops")
    os._exit(3)  # the process dies without a word


def test_process_job_result_progress_and_point_of_no_return(qtbot, runner: TaskRunner) -> None:
    import os

    task = runner.run_process(proc_job, 5)
    got: list[Progress] = []
    task.progress.connect(got.append)
    with qtbot.wait_signal(task.finished, timeout=30000) as blocker:
        pass
    assert blocker.args[0]["n"] == 5 and blocker.args[0]["pid"] != os.getpid()
    assert got and got[-1].done_files == 5
    assert not task.token.cancellable  # allow_cancel(False) crossed the process boundary


def test_process_job_cancel(qtbot, runner: TaskRunner) -> None:
    task = runner.run_process(proc_wait_for_cancel)
    with qtbot.wait_signal(task.progress, timeout=30000):
        pass  # the child is running
    with qtbot.wait_signal(task.cancelled, timeout=10000):
        task.cancel()


def test_process_job_failures(qtbot, runner: TaskRunner, caplog) -> None:
    tasks = [runner.run_process(proc_fail, k) for k in ("project", "bug", "die")]
    qtbot.wait_until(lambda: all(t.done for t in tasks), timeout=60000)
    msgs = [t.error and str(t.error) for t in tasks]
    assert [t.state for t in tasks] == [FAILED] * 3
    assert msgs[0] == "/dest: the stick was pulled"
    assert msgs[1].startswith("Unexpected error: KeyError") and "oops" in caplog.text
    assert "ended unexpectedly (exit code 3)" in msgs[2]


def test_quiet_gc_holds_full_collections_while_reading() -> None:
    import gc

    from app.gui.quiet_gc import QuietGC

    before = gc.get_threshold()
    QuietGC.hold()
    QuietGC.hold()  # two reads at once
    assert gc.get_threshold()[2] >= 1_000_000 and gc.get_threshold()[:2] == before[:2]
    QuietGC.release()
    assert gc.get_threshold()[2] >= 1_000_000  # one read still running
    frozen = gc.get_freeze_count()
    junk = [{"i": i} for i in range(1000)]
    QuietGC.release()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() >= frozen + 1000  # the new objects are out of full collections
    QuietGC.release()  # unbalanced release is harmless
    assert gc.get_threshold() == before
    del junk
