"""Render the application icons from the one source image, resources/discbridge.svg.

Writes resources/icons/discbridge-<N>.png (16 … 1024), resources/icons/discbridge.ico (Windows,
16–256) and resources/icons/discbridge.icns (macOS, 16–1024). Run before PyInstaller:
``python packaging/make_icons.py``. Outputs are build products (not committed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "resources" / "discbridge.svg"
OUT = ROOT / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)


def render_png(size: int, dest: Path) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(SOURCE))
    if not renderer.isValid():
        raise SystemExit(f"{SOURCE}: not a valid SVG")
    img = QImage(size, size, QImage.Format.Format_ARGB32)
    img.fill(Qt.GlobalColor.transparent)
    painter = QPainter(img)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    if not img.save(str(dest)):
        raise SystemExit(f"{dest}: could not write")


def main() -> int:
    from PIL import Image
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    OUT.mkdir(parents=True, exist_ok=True)
    pngs = {}
    for size in SIZES:
        dest = OUT / f"discbridge-{size}.png"
        render_png(size, dest)
        pngs[size] = dest
    big = Image.open(pngs[1024]).convert("RGBA")
    big.save(OUT / "discbridge.ico", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    big.save(OUT / "discbridge.icns")
    print(f"icons written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
