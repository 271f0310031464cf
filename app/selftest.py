"""``discbridge --self-test``: an end-to-end check of an installed or frozen build.

Runs offscreen, prints one line per step (``PASS``/``FAIL``) and returns 0 only when every step
passed. The frozen-build smoke test (packaging/smoke.sh) and the Windows/macOS CI run it.
Steps: open the bundled sample disc; decode one image in each transfer syntax the product
promises (pydicom's own test files, collected into the build); show the main window offscreen
and grab it; export a small medium to a temporary folder and to an ISO image; reopen and verify
both.
"""

from __future__ import annotations

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
