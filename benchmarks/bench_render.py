"""Imaging timings: load/render a 512×512 CT in several encodings, re-window, make an icon.

Run: ``.venv/bin/python benchmarks/bench_render.py`` (a few seconds; builds its files in a
temporary folder). Prints the median of repeated runs in milliseconds.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless, RLELossless

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.imaging.display import load_frame, make_icon_item, render, to_display  # noqa: E402
from tests.media import make_dataset, pydicom_test_file, write_instance  # noqa: E402


def median_ms(fn: Callable[[], object], repeat: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def ct_pixels() -> np.ndarray:
    y, x = np.mgrid[-256:256, -256:256]
    body = (x**2 + (y * 1.3) ** 2 < 230**2) * 1000 + 24
    noise = np.random.default_rng(0).normal(0, 20, (512, 512))
    return np.clip(body + noise + (x**2 + y**2 < 40**2) * 800, 0, 4095).astype(np.uint16)


def main() -> None:
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ds = make_dataset(512, 512, pixels=ct_pixels())
        files = {"Explicit VR LE": write_instance(root / "ct.dcm", ds)}
        for name, syntax in (("RLE Lossless", RLELossless), ("JPEG 2000 Lossless", JPEG2000Lossless)):
            enc = dcmread(files["Explicit VR LE"])
            enc.compress(syntax)
            files[name] = write_instance(root / f"{name.replace(' ', '_')}.dcm", enc)
        frames = np.stack([ct_pixels()] * 50)
        mf = make_dataset(512, 512, pixels=frames, NumberOfFrames=50)
        files["50-frame native"] = write_instance(root / "mf.dcm", mf)

        rows = []
        for name, path in files.items():
            rows.append((f"render() 512×512 CT, {name}", median_ms(lambda p=path: render(p))))
        real = pydicom_test_file("693_J2KI.dcm")
        rows.append(("render() 512×512 CT, JPEG 2000 lossy (693_J2KI.dcm)",
                     median_ms(lambda: render(real))))
        rows.append(("render(max_size=128) thumbnail, Explicit VR LE",
                     median_ms(lambda: render(files["Explicit VR LE"], max_size=128))))
        frame = load_frame(files["Explicit VR LE"])
        rows.append(("to_display() 512×512 float32, new window",
                     median_ms(lambda: to_display(frame, -600, 1500), 200)))
        rows.append(("to_display() default window",
                     median_ms(lambda: to_display(frame), 200)))
        rows.append(("make_icon_item(ds, 64) from a Dataset",
                     median_ms(lambda: make_icon_item(ds, 64))))
        rows.append(("load_frame() frame 40 of the 50-frame file",
                     median_ms(lambda: load_frame(files["50-frame native"], 40))))
        for label, ms in rows:
            print(f"{label:55s} {ms:8.2f} ms")  # noqa: T201


if __name__ == "__main__":
    main()
