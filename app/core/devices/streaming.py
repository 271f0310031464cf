"""Running a burner's command-line tool with its output streamed line by line, and cancel.

Shared by the xorriso and macOS burner backends and the xorriso ISO writer.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
from collections.abc import Callable

from app.core.errors import ExportError
from app.core.jobs import Cancelled, CancelToken


def run_streaming(cmd: list[str], on_line: Callable[[str], None],
                  cancel: CancelToken | None = None, poll: float = 0.1,
                  stop_allowed: Callable[[], bool] | None = None) -> tuple[int, list[str]]:
    """Run ``cmd``, calling ``on_line`` for every output line (stdout and stderr, ``\\r`` too).

    While ``cancel`` is cancelled and ``stop_allowed()`` (default: always) is true the process is
    terminated and :class:`Cancelled` raised; the cancel flag is polled every ``poll`` seconds even
    when the program prints nothing. Returns (exit code, last 20 lines).
    """
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except OSError as exc:
        raise ExportError(f"cannot run {cmd[0]}: {exc.strerror}") from exc
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        buf = b""
        while chunk := proc.stdout.read1(65536):
            buf += chunk
            *done, buf = re.split(rb"[\r\n]", buf)
            for d in done:
                if d.strip():
                    lines.put(d.decode("utf-8", "replace"))
        if buf.strip():
            lines.put(buf.decode("utf-8", "replace"))
        lines.put(None)

    reader = threading.Thread(target=pump, name="xorriso-output", daemon=True)
    reader.start()
    tail: list[str] = []
    finished = False
    try:
        while True:
            if cancel is not None and cancel.cancelled and (stop_allowed is None or stop_allowed()):
                _drain(lines, on_line, tail)  # a line saying "writing began" may be waiting
                if stop_allowed is None or stop_allowed():
                    raise Cancelled("cancelled by the user")
            try:
                line = lines.get(timeout=poll)
            except queue.Empty:
                continue
            if line is None:
                break
            tail = (tail + [line])[-20:]
            on_line(line)
        finished = True
    finally:
        if not finished and proc.poll() is None and (stop_allowed is None or stop_allowed()):
            proc.terminate()  # never once a drive is writing: that would ruin the disc
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        rc = proc.wait()
        reader.join(timeout=5)
        proc.stdout.close()
    return rc, tail


def _drain(lines: queue.Queue[str | None], on_line: Callable[[str], None], tail: list[str]) -> None:
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return
        if line is None:
            lines.put(None)
            return
        tail.append(line)
        on_line(line)
