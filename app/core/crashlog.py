"""The crash log: where an unexpected error's traceback goes, so that nothing fails unseen.

``user_log_dir()/crash.log`` (``~/.local/state/discbridge`` on Linux, ``~/Library/Logs/DiscBridge``
on macOS, ``%LOCALAPPDATA%\\DiscBridge\\logs`` on Windows). The window's crash hook and a failed
export from the window append to it; each entry starts with a ``---`` line giving the time, the
version and what failed.
"""

from __future__ import annotations

import datetime as _dt
import logging
import traceback
from pathlib import Path
from types import TracebackType

from app import __version__
from app.core.appdirs import user_log_dir

log = logging.getLogger(__name__)


def crash_log_path() -> Path:
    return user_log_dir() / "crash.log"


def write_crash_log(kind: str, exc_type: type[BaseException], exc: BaseException,
                    tb: TracebackType | None) -> Path | None:
    """Append one report to the crash log. Returns its path, or None when it cannot be written."""
    path = crash_log_path()
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"--- {stamp} DiscBridge {__version__} {kind}\n{text}\n")
    except OSError:
        log.error("could not write the crash log %s", path)
        return None
    return path
