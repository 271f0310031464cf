"""Per-user folders for data (export reports), logs and caches, per OS conventions."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_APP = "DiscBridge"


def _base(kind: str) -> Path:
    home = Path.home()
    if sys.platform == "win32":
        root = os.environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(root) / _APP / kind
    if sys.platform == "darwin":
        if kind == "logs":
            return home / "Library" / "Logs" / _APP
        if kind == "cache":
            return home / "Library" / "Caches" / _APP
        return home / "Library" / "Application Support" / _APP
    env = {"data": "XDG_DATA_HOME", "logs": "XDG_STATE_HOME", "cache": "XDG_CACHE_HOME"}[kind]
    default = {"data": ".local/share", "logs": ".local/state", "cache": ".cache"}[kind]
    return Path(os.environ.get(env) or home / default) / "discbridge"


def user_data_dir() -> Path:
    return _base("data")


def user_log_dir() -> Path:
    return _base("logs")


def user_cache_dir() -> Path:
    return _base("cache")
