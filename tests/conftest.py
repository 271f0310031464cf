"""Shared test setup. Qt must run offscreen: without a display QApplication aborts the process."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# Tests never write into the user's own folders (sample disc cache, export reports, crash log,
# QSettings): every run gets fresh XDG folders of its own.
_XDG = tempfile.mkdtemp(prefix="discbridge-tests-xdg-")
atexit.register(shutil.rmtree, _XDG, True)
for _var in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
    os.environ[_var] = os.path.join(_XDG, _var.lower())

IN_CI = os.environ.get("CI", "").lower() == "true"

# The app keeps python-gdcm out of pydicom's decoders (it can abort the process on valid
# files); tests that decode through pydicom directly get the same decoders.
from app.core.imaging.jpeg_lossless import keep_gdcm_out_of_pydicom  # noqa: E402

keep_gdcm_out_of_pydicom()


def require_tool(name: str) -> str:
    """Path of a system tool; skip the test when absent, except under CI=true where it must exist."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required under CI=true (install it via .ci/run)")
        pytest.skip(f"{name} not installed (apt-get install dcmtk dicom3tools xorriso)")
    return path
