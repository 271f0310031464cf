"""The built-in sample disc that ``discbridge demo`` and the welcome page open.

It is made once per version from DICOM files that ship inside pydicom (and inside the frozen
build, which collects them): a CT, an MR, an ultrasound still and cine loop, an NM image, an RT
dose grid and a structured report of several patients, exported by DiscBridge itself as a
conformant STD-GEN-DVD-JPEG medium into the user's cache folder. So the demo shows what a
medium written by DiscBridge looks like, and exercises the exporter on every first start.
``legacy_sample_path()`` is pydicom's own ``dicomdirtests`` medium (read-only, in place).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

from app import __version__
from app.core.appdirs import user_cache_dir
from app.core.errors import DiscBridgeError, UnreadableMedium

SAMPLE_FILES: tuple[str, ...] = (
    "CT_small.dcm",
    "MR_small.dcm",
    "examples_rgb_color.dcm",
    "examples_ybr_color.dcm",
    "JPGExtended.dcm",
    "rtdose.dcm",
    "test-SR.dcm",
)
SAMPLE_FILESET_ID = "DISCBRIDGE_DEMO"
_lock = threading.Lock()


def _pydicom_test_files() -> Path:
    import pydicom

    return Path(pydicom.__file__).resolve().parent / "data" / "test_files"


def legacy_sample_path() -> Path:
    """pydicom's ``dicomdirtests`` medium (two file-sets, CT/MR/CR; some files lack pixels)."""
    root = _pydicom_test_files() / "dicomdirtests"
    if not (root / "DICOMDIR").is_file():
        raise UnreadableMedium(f"{root}: the sample medium is missing from this install")
    return root


def _install(built: Path, target: Path) -> None:
    """Move a finished sample disc into place; another process may have done so meanwhile.

    A directory rename is atomic, so ``target`` is either absent or complete (its DICOMDIR was
    written before the rename). A complete disc of another process is kept and never removed
    while someone may be reading it; only a leftover without DICOMDIR is cleared away first.
    """
    if target.exists() and not (target / "DICOMDIR").is_file():
        stale = target.with_name(f"{target.name}.stale-{os.getpid()}")
        target.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        built.rename(target)
    except OSError:
        if not (target / "DICOMDIR").is_file():
            raise


def sample_disc_dir() -> Path:
    """Where the sample disc lives (it may not be built yet)."""
    return user_cache_dir() / f"sample-disc-{__version__}"


def sample_disc_ready() -> bool:
    return (sample_disc_dir() / "DICOMDIR").is_file()


def sample_disc_path() -> Path:
    """Folder of the sample medium, built on first use (about a second). Thread-safe.

    Raises UnreadableMedium when the install lacks the source files or the build fails.
    """
    target = sample_disc_dir()
    with _lock:
        if (target / "DICOMDIR").is_file():
            return target
        src_dir = _pydicom_test_files()
        sources = [src_dir / name for name in SAMPLE_FILES]
        missing = [s.name for s in sources if not s.is_file()]
        if missing:
            raise UnreadableMedium(f"{src_dir}: sample files missing from this install: "
                                   + ", ".join(missing))
        from app.core.export.engine import run_export
        from app.core.export.options import ExportOptions

        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="sample-", dir=target.parent) as tmp:
            staging = Path(tmp)
            # Sources are single files: give the exporter a folder of copies (read-only use).
            src = staging / "src"
            src.mkdir()
            for s in sources:
                shutil.copyfile(s, src / s.name)
            out = staging / "disc"
            opts = ExportOptions(
                sources=[src], dest=out, media="dvd", icons=True,
                fileset_id=SAMPLE_FILESET_ID, institution="DiscBridge sample disc",
                contact="none (built-in demonstration data from pydicom)",
                study_date="20000101", verify=True, report=staging / "report.json",
            )
            try:
                report = run_export(opts)
            except DiscBridgeError as exc:
                raise UnreadableMedium(f"could not build the sample disc: {exc}") from exc
            if not report.ok:
                raise UnreadableMedium("could not build the sample disc: "
                                       + "; ".join(report.summary_lines()[-3:]))
            _install(out, target)
        return target
