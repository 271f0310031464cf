"""Regenerate the README's window screenshots with ``discbridge … --screenshot`` (offscreen).

    .venv/bin/python docs/make_screenshots.py

main-window.png / main-window-2x.png: ``discbridge demo`` at 1× and 2× scale.
damaged-disc.png: a copy of the sample disc damaged the way real discs are (names lower-cased
as Linux shows plain ISO 9660 names, one image missing, one stray image no record lists, one
file cut short), opened with ``discbridge open``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"


def run(args: list[str], **env: str) -> None:
    e = dict(os.environ, QT_QPA_PLATFORM="offscreen", **env)
    subprocess.run([sys.executable, "-m", "app", *args], check=True, cwd=ROOT, env=e)


def damaged_copy(dest: Path) -> Path:
    from app.core.sample import sample_disc_path

    shutil.copytree(sample_disc_path(), dest)
    for path in sorted(dest.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.rename(path.with_name(path.name.lower()))
    images = sorted(p for p in dest.rglob("im*") if p.is_file())
    images[0].unlink()  # a referenced file that is not on the disc
    data = images[1].read_bytes()
    images[1].write_bytes(data[: len(data) // 2])  # a file cut short (a bad burn)
    shutil.copyfile(images[2], dest / "pa001" / "extra")  # an image no record lists
    return dest


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    run(["demo", "--screenshot", str(OUT / "main-window.png")])
    run(["demo", "--screenshot", str(OUT / "main-window-2x.png")], QT_SCALE_FACTOR="2")
    with tempfile.TemporaryDirectory() as tmp:
        disc = damaged_copy(Path(tmp) / "patient-cd")
        run(["open", str(disc), "--screenshot", str(OUT / "damaged-disc.png")])
    print(f"screenshots written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
