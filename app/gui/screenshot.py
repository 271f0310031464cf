"""``discbridge open PATH --screenshot FILE`` / ``discbridge demo --screenshot FILE``.

Opens the medium in a 1280×800 main window, waits until the tree is filled, every thumbnail of
the selected study has arrived (or failed) and the viewer shows its first image, then saves
``QWidget.grab()`` as a PNG (physical pixels: 2560×1600 at a scale factor of 2) and exits 0.
Loading errors are printed and give exit code 1. Nothing interactive happens: no dialogs, no
media watcher.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

WINDOW_SIZE = (1280, 800)
TIMEOUT_S = 90.0
SETTLE_MS = 150  # let the last layout/paint happen before grabbing


class _Shot:
    def __init__(self, app: QApplication, window: object, out: Path) -> None:
        self.app = app
        self.window = window
        self.out = out
        self.code: int | None = None
        self.thumbs_done = False
        self.viewer_done = False
        self.opened = False

    def finish(self, code: int, message: str = "") -> None:
        if self.code is not None:
            return
        self.code = code
        if message:
            print(f"discbridge: {message}", file=sys.stderr)  # noqa: T201
        self.app.exit(code)

    def check(self) -> None:
        if self.opened and self.thumbs_done and self.viewer_done and self.code is None:
            QTimer.singleShot(SETTLE_MS, self.grab)

    def grab(self) -> None:
        if self.code is not None:
            return
        pix = self.window.grab()  # type: ignore[attr-defined]
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if not pix.save(str(self.out), "PNG"):
            self.finish(1, f"{self.out}: could not write the screenshot")
            return
        print(f"{self.out}: {pix.width()}×{pix.height()} pixels")  # noqa: T201
        self.finish(0)


def take_screenshot(app: QApplication, path: str | None, demo: bool, out: Path) -> int:
    """Load ``path`` (or the sample disc), save a PNG of the main window to ``out``."""
    from app.gui.main_window import MainWindow
    from app.gui.quiet_gc import QuietGC

    window = MainWindow(interactive=False)
    QuietGC.settle()
    shot = _Shot(app, window, Path(out))
    window.resize(*WINDOW_SIZE)
    window.show()

    def on_all_loaded() -> None:
        if shot.opened and window.thumbs.pending() == 0:
            shot.thumbs_done = True
            shot.check()

    def on_opened(_medium: object) -> None:
        shot.opened = True
        if window.thumbs.pending() == 0:
            shot.thumbs_done = True
        displayed = getattr(window.viewer, "displayed", None)
        if displayed is None or getattr(window.viewer, "_shown_series", None) is None:
            shot.viewer_done = True
        shot.check()

    def on_displayed(_what: str) -> None:
        shot.viewer_done = True
        shot.check()

    window.thumbs.all_loaded.connect(on_all_loaded)
    window.medium_opened.connect(on_opened)
    window.open_failed.connect(lambda p, msg: shot.finish(1, f"{msg}"))
    displayed_signal = getattr(window.viewer, "displayed", None)
    if displayed_signal is not None:
        displayed_signal.connect(on_displayed)
    QTimer.singleShot(int(TIMEOUT_S * 1000), lambda: shot.finish(
        1, f"loading did not finish within {TIMEOUT_S:.0f} s; no screenshot saved"))

    def begin() -> None:
        task = window.open_sample() if demo or not path else window.open_path(path, remember=False)
        if task is None:
            shot.finish(1, "; ".join(window.messages) or "nothing to open")

    QTimer.singleShot(0, begin)
    app.exec()
    window.shutdown()
    window.hide()
    window.deleteLater()
    return shot.code if shot.code is not None else 1
