"""``discbridge --self-test``: an end-to-end check of an installed or frozen build.

Runs offscreen, prints one line per step (``PASS``/``FAIL``) and returns 0 only when every step
passed. The frozen-build smoke test (packaging/smoke.sh) and the Windows/macOS CI run it.
Steps: open the bundled sample disc; decode one image in each transfer syntax the product
promises (pydicom's own test files, collected into the build); show the main window offscreen
and grab it; export a small medium to a temporary folder and to an ISO image; reopen and verify
both; export a medium of 25 files that need transcoding, header fixes and icons through the real
export wizard, driven headless (its export runs in a child process with a pool of workers: the
window's own path).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

# One sample per transfer syntax: (label, pydicom test file).
TRANSFER_SYNTAX_SAMPLES: tuple[tuple[str, str], ...] = (
    ("Explicit VR Little Endian", "CT_small.dcm"),
    ("Implicit VR Little Endian", "MR_small_implicit.dcm"),
    ("Explicit VR Big Endian", "MR_small_bigendian.dcm"),
    ("Deflated Explicit VR Little Endian", "image_dfl.dcm"),
    ("RLE Lossless", "MR_small_RLE.dcm"),
    ("JPEG Baseline", "SC_rgb_jpeg_dcmtk.dcm"),
    ("JPEG Extended", "JPGExtended.dcm"),
    ("JPEG Lossless SV1", "SC_rgb_jpeg_gdcm.dcm"),
    ("JPEG-LS Lossless", "MR_small_jpeg_ls_lossless.dcm"),
    ("JPEG-LS Near-Lossless", "JPEGLSNearLossless_08.dcm"),
    ("JPEG 2000 Lossless", "MR_small_jp2klossless.dcm"),
    ("JPEG 2000", "693_J2KI.dcm"),
)


def _sample_file(name: str) -> Path:
    import pydicom

    path = Path(pydicom.__file__).resolve().parent / "data" / "test_files" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sample missing from this build")
    return path


def _step_open_sample() -> str:
    from app.core.medium.reader import open_medium
    from app.core.sample import sample_disc_path

    medium = open_medium(sample_disc_path())
    n = sum(1 for _ in medium.instances())
    errors = [p for p in medium.problems if p.severity == "error"]
    if not medium.patients or n == 0 or errors:
        raise RuntimeError(f"sample disc: {len(medium.patients)} patients, {n} instances, "
                           f"errors: {errors[:3]}")
    return f"{len(medium.patients)} patients, {n} instances"


def _step_decode(label: str, name: str) -> Callable[[], str]:
    def run() -> str:
        import numpy as np

        from app.core.imaging.display import render

        img = render(_sample_file(name))
        if img.dtype != np.uint8 or img.size == 0 or int(img.max()) == int(img.min()):
            raise RuntimeError(f"{name}: decoded to an empty or flat image {img.shape}")
        return f"{name} {img.shape[1]}x{img.shape[0]}"

    return run


def _step_window(workdir: Path) -> str:
    from app.gui.application import run_gui

    png = workdir / "window.png"
    rc = run_gui(paths=None, demo=True, screenshot=png)
    if rc != 0 or not png.is_file() or png.stat().st_size < 1000:
        raise RuntimeError(f"main window screenshot failed (exit {rc})")
    from PIL import Image

    with Image.open(png) as im:
        w, h = im.size
        colours = len(im.convert("RGB").getcolors(maxcolors=1 << 20) or [])
    if w < 640 or h < 400 or colours < 16:
        raise RuntimeError(f"main window screenshot looks empty ({w}x{h}, {colours} colours)")
    return f"{w}x{h}, {colours} colours"


def _step_export(workdir: Path, iso: bool) -> str:
    from app.core.export.engine import run_export
    from app.core.export.options import ExportOptions
    from app.core.medium.check import check_medium
    from app.core.medium.reader import open_medium
    from app.core.sample import sample_disc_path

    dest = workdir / ("iso-staging" if iso else "folder")
    iso_path = workdir / "selftest.iso" if iso else None
    opts = ExportOptions(sources=[sample_disc_path()], dest=None if iso else dest,
                         iso=iso_path, fileset_id="SELFTEST", verify=True,
                         report=workdir / f"report-{'iso' if iso else 'folder'}.json")
    report = run_export(opts)
    if not report.ok:
        raise RuntimeError("export did not verify: " + "; ".join(report.summary_lines()[-3:]))
    target = iso_path if iso else dest
    assert target is not None
    medium = open_medium(target)
    problems = [p for p in check_medium(medium) if p.severity in ("error", "warning")]
    if problems:
        raise RuntimeError(f"{target}: reopened medium has problems: {problems[:3]}")
    n = sum(1 for _ in medium.instances())
    return f"{n} instances written and verified ({target.name})"


# Sources for the wizard step: each needs transcoding to STD-GEN-CD's Explicit VR Little Endian.
WIZARD_SOURCES = ("MR_small_implicit.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm",
                  "MR_small_jp2klossless.dcm", "CT_small.dcm")
WIZARD_COPIES = 5


def _wizard_medium(root: Path) -> int:
    """25 files: 5 copies of each source with new UIDs, Study ID and Series Number removed."""
    import pydicom
    from pydicom.uid import generate_uid

    root.mkdir(parents=True)
    n = 0
    for name in WIZARD_SOURCES:  # one study of its own each (their patients differ)
        study, series = generate_uid(), generate_uid()
        for i in range(WIZARD_COPIES):
            ds = pydicom.dcmread(_sample_file(name))
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.InstanceNumber = i + 1
            for keyword in ("StudyID", "SeriesNumber"):
                if keyword in ds:
                    delattr(ds, keyword)
            ds.save_as(root / f"IMG{n:04d}.dcm", enforce_file_format=True)
            n += 1
    return n


def _step_wizard(workdir: Path) -> str:
    import contextlib
    import io

    from app.core.medium.reader import open_medium
    from app.gui.application import run_gui
    from app.gui.wizard.headless import WizardRequest

    src, dest = workdir / "wizard-source", workdir / "wizard-export"
    count = _wizard_medium(src)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = run_gui(paths=[str(src)], wizard=WizardRequest(
            dest=dest, icons=True, report=workdir / "report-wizard.json"))
    said = out.getvalue().strip().splitlines()
    if rc != 0 or not said or not said[0].startswith(f"written {count} files"):
        raise RuntimeError(f"the wizard's export failed (exit {rc}): {' | '.join(said[:3])}")
    medium = open_medium(dest)
    n = sum(1 for _ in medium.instances())
    icons = sum(1 for i in medium.instances() if i.has_icon)
    if n != count or icons != count:
        raise RuntimeError(f"{dest}: {n} instances ({icons} with icons) where {count} belong")
    report = json.loads(Path(said[-1].removeprefix("report: ")).read_text(encoding="utf-8"))
    workers = int(report.get("worker_processes", 0))
    if (os.cpu_count() or 1) > 1 and workers < 1:
        raise RuntimeError("the per-file work did not run on worker processes")
    return f"{said[0]}; {workers} worker processes"


def run_self_test() -> int:
    """Run every step; print one line per step; 0 only when all pass."""
    from app import __version__

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    frozen = bool(getattr(sys, "frozen", False))
    print(f"DiscBridge {__version__} self-test ({'frozen' if frozen else 'installed'}, "
          f"Python {sys.version.split()[0]}, {sys.platform})")
    failures = 0
    with tempfile.TemporaryDirectory(prefix="discbridge-selftest-") as tmp:
        workdir = Path(tmp)
        steps: list[tuple[str, Callable[[], str]]] = [("open sample disc", _step_open_sample)]
        steps += [(f"decode {label}", _step_decode(label, name))
                  for label, name in TRANSFER_SYNTAX_SAMPLES]
        steps += [
            ("main window (offscreen)", lambda: _step_window(workdir)),
            ("export to folder + verify", lambda: _step_export(workdir, iso=False)),
            ("export to ISO + verify", lambda: _step_export(workdir, iso=True)),
            ("export through the wizard (25 files to transcode, fix, iconise)",
             lambda: _step_wizard(workdir)),
        ]
        for name, fn in steps:
            t0 = time.perf_counter()
            try:
                detail = fn()
                print(f"PASS  {name}: {detail} ({time.perf_counter() - t0:.2f} s)", flush=True)
            except Exception as exc:  # a self-test reports every failure and goes on
                failures += 1
                print(f"FAIL  {name}: {exc}", flush=True)
                if os.environ.get("DISCBRIDGE_SELFTEST_TRACE"):
                    traceback.print_exc(file=sys.stdout)
    print(f"self-test: {len(steps) - failures} passed, {failures} failed")
    return 0 if failures == 0 else 1
