"""The crash hook: an unexpected error is logged and shown, the application never just vanishes.

Windowed builds have no console, so ``sys.excepthook`` writes the traceback to
``app.core.appdirs.user_log_dir()/crash.log`` and shows a dialog naming that file. Exceptions in
other threads (``threading.excepthook``) are logged only: a dialog may only be opened on the GUI
thread. (Jobs run through app.gui.tasks never get here: the runner reports their errors.)
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QCoreApplication, QThread
from PySide6.QtWidgets import QApplication, QMessageBox

from app.core.crashlog import write_crash_log

log = logging.getLogger(__name__)

_installed: dict[str, object] = {}
_showing = [False]


def _dialog(exc: BaseException, path: Path | None, tb_text: str) -> None:
    app = QApplication.instance()
    if not isinstance(app, QApplication) or QThread.currentThread() is not app.thread():
        return
    if _showing[0] or QCoreApplication.closingDown():
        return
    _showing[0] = True
    try:
        box = QMessageBox(QMessageBox.Icon.Critical,
                          QCoreApplication.translate("crash", "DiscBridge: unexpected error"),
                          QCoreApplication.translate(
                              "crash", "Something went wrong inside DiscBridge:\n{error}\n\n"
                              "The details were saved to {path}. Please send that file to "
                              "your support contact. You can keep working, but save nothing "
                              "important before restarting.").format(
                                  error=f"{type(exc).__name__}: {exc}",
                                  path=path or QCoreApplication.translate("crash", "(no log)")))
        box.setDetailedText(tb_text)
        box.exec()
    finally:
        _showing[0] = False


def excepthook(exc_type: type[BaseException], exc: BaseException,
               tb: TracebackType | None) -> None:
    """Reimplemented sys.excepthook: log, print, and show a dialog on the GUI thread."""
    if issubclass(exc_type, KeyboardInterrupt):
        QCoreApplication.quit()
        return
    path = write_crash_log("exception", exc_type, exc, tb)
    tb_text = "".join(traceback.format_exception(exc_type, exc, tb))
    sys.stderr.write(tb_text)
    if show_dialogs[0]:
        _dialog(exc, path, tb_text)


def thread_excepthook(args: threading.ExceptHookArgs) -> None:
    """Reimplemented threading.excepthook: log only (no dialogs from other threads)."""
    if args.exc_value is None:
        return
    write_crash_log(f"thread {args.thread.name if args.thread else '?'}", args.exc_type,
                    args.exc_value, args.exc_traceback)
    log.error("exception in thread %s", args.thread.name if args.thread else "?",
              exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


show_dialogs = [True]


def install(dialogs: bool = True) -> Callable[[], None]:
    """Install both hooks. Returns a function that puts the previous hooks back."""
    show_dialogs[0] = dialogs
    _installed["sys"] = sys.excepthook
    _installed["threading"] = threading.excepthook
    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook

    def uninstall() -> None:
        sys.excepthook = _installed.get("sys", sys.__excepthook__)  # type: ignore[assignment]
        threading.excepthook = _installed.get(  # type: ignore[assignment]
            "threading", threading.__excepthook__)

    return uninstall
