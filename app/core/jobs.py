"""The progress / cancel protocol shared by every long operation.

A long job is a plain function that takes a ``progress`` callback and a ``cancel`` token::

    def export(options, progress: ProgressCallback | None = None,
               cancel: CancelToken | None = None) -> Report: ...

It calls ``progress(Progress(...))`` whenever something visible changes and
``cancel.raise_if_cancelled()`` between units of work. The GUI's task runner turns the callbacks
into Qt signals and its Cancel button into ``token.cancel()``; the CLI prints them; tests record them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class Cancelled(Exception):  # noqa: N818 - reads better at call sites than "CancelledError"
    """Raised inside a job when its token was cancelled."""


class CancelToken:
    """Thread-safe cancel flag. ``allow_cancel(False)`` marks the point of no return (a burn)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._cancellable = True

    def cancel(self) -> bool:
        """Ask the job to stop. Returns False when the job has passed its point of no return."""
        if not self._cancellable:
            return False
        self._event.set()
        return True

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def cancellable(self) -> bool:
        return self._cancellable

    def allow_cancel(self, allowed: bool) -> None:
        self._cancellable = allowed

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


@dataclass(frozen=True)
class Progress:
    """One progress report. ``total_*`` of 0 means unknown (show a busy indicator)."""

    phase: str  # e.g. "plan", "stage", "write", "dicomdir", "verify", "iso", "burn", "scan"
    done_files: int = 0
    total_files: int = 0
    done_bytes: int = 0
    total_bytes: int = 0
    message: str = ""
    cancellable: bool = True

    @property
    def fraction(self) -> float | None:
        """Fraction done, by bytes when known, else by files; None when unknown."""
        if self.total_bytes > 0:
            return min(1.0, self.done_bytes / self.total_bytes)
        if self.total_files > 0:
            return min(1.0, self.done_files / self.total_files)
        return None


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """The default callback: ignore progress."""


@dataclass
class Throttle:
    """Forward at most one report per ``interval`` seconds (the last one of a phase always passes)."""

    callback: ProgressCallback
    interval: float = 0.05
    _last: float = field(default=0.0, init=False)
    _phase: str = field(default="", init=False)

    def __call__(self, p: Progress, force: bool = False) -> None:
        now = time.monotonic()
        if force or p.phase != self._phase or now - self._last >= self.interval:
            self._last = now
            self._phase = p.phase
            self.callback(p)
