"""Shared test setup. Qt must run offscreen: without a display QApplication aborts the process."""

from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """Path of a system tool; skip the test when absent, except under CI=true where it must exist."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required under CI=true (install it via .ci/run)")
        pytest.skip(f"{name} not installed (apt-get install dcmtk dicom3tools xorriso)")
    return path
