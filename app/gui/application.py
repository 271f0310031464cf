"""Start the desktop application: QApplication, high DPI, translations, crash hook, main window,
and the process-wide policies that keep the GUI thread responsive (GIL switch interval, QuietGC).

``run_gui(paths, demo, screenshot, wizard)`` is what ``discbridge``, ``discbridge open PATH...`` and
``discbridge demo`` call (app/cli.py). With ``screenshot`` it loads, saves a PNG of the main
window and exits (screenshot.py). On Linux without a display it explains instead of letting Qt
abort the process (and ``demo`` prints the sample disc's tree through the core).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import (
    QLibraryInfo,
    QLocale,
    QMessageLogContext,
    Qt,
    QtMsgType,
    QTranslator,
    qInstallMessageHandler,
)
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication

from app import APP_NAME, __version__
from app.gui.quiet_gc import QuietGC

if TYPE_CHECKING:
    from app.gui.wizard.headless import WizardRequest

log = logging.getLogger(__name__)



def resources_dir() -> Path:
    """The ``resources/`` folder (next to the package, or inside a frozen bundle)."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def has_display() -> bool:
    """False on Linux/BSD when Qt would find no display (and would abort the process)."""
    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return True
    return any(os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


# Qt messages that are platform noise, not problems (offscreen has no window manager).
_QT_NOISE = ("propagateSizeHints", "QFont::setPointSizeF: Point size <= 0")


def _qt_message(kind: QtMsgType, _context: QMessageLogContext, message: str) -> None:
    if any(n in message for n in _QT_NOISE):
        return
    level = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
             QtMsgType.QtWarningMsg: logging.WARNING}.get(kind, logging.ERROR)
    logging.getLogger("qt").log(level, "%s", message)


def install_translations(app: QApplication) -> list[QTranslator]:
    """Load Qt's own and DiscBridge's translations for the system locale, when present.

    DiscBridge's catalogues are ``resources/translations/discbridge_<locale>.qm`` (made with
    ``pyside6-lupdate``/``lrelease`` from the ``tr()`` strings of app/gui).
    """
    locale = QLocale.system()
    installed: list[QTranslator] = []
    for name, folder in (("qtbase", QLibraryInfo.path(QLibraryInfo.LibraryPath.TranslationsPath)),
                         ("discbridge", str(resources_dir() / "translations"))):
        tr = QTranslator(app)
        if tr.load(locale, name, "_", folder):
            app.installTranslator(tr)
            installed.append(tr)
    return installed


def make_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (created once; the existing one is returned in tests)."""
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    qInstallMessageHandler(_qt_message)
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication(argv if argv is not None else [sys.argv[0]])
    # The GUI thread must get the GIL promptly while workers parse, decode and write: a 1 ms
    # switch interval (default 5 ms) cut the longest event-loop stall by half in
    # benchmarks/bench_gui.py, at no measurable cost to the workers.
    sys.setswitchinterval(0.001)
    app.setOrganizationName("DiscBridge")
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("discbridge")
    icon = QIcon()
    for png in sorted((resources_dir() / "icons").glob("discbridge-*.png")):
        icon.addFile(str(png))
    if not icon.isNull():
        app.setWindowIcon(icon)
    install_translations(app)
    return app


def _print_demo_tree() -> int:
    from app.core.errors import DiscBridgeError
    from app.core.medium.reader import open_medium
    from app.core.medium.tree_text import format_tree
    from app.core.sample import sample_disc_path

    try:
        print(format_tree(open_medium(sample_disc_path())))  # noqa: T201
    except DiscBridgeError as exc:
        print(f"discbridge: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


def run_gui(paths: list[str] | None = None, demo: bool = False, screenshot: Path | None = None,
            wizard: WizardRequest | None = None) -> int:
    """Run the desktop application. Returns the process exit code.

    Parameters
    ----------
    paths : list[str] | None
        Media to open at once (folders, DICOMDIR files or .iso images).
    demo : bool
        Open the built-in sample disc.
    screenshot : Path | None
        Load, wait for the tree and the visible thumbnails, save a PNG of the main window there,
        and exit (0 when saved, 1 with a message when loading failed).
    wizard : WizardRequest | None
        Export ``paths`` through the real export wizard, headless, and exit
        (:mod:`app.gui.wizard.headless`).
    """
    paths = list(paths or [])
    if not has_display():
        if screenshot is not None or wizard is not None:
            os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a screenshot needs no screen
        else:
            print("discbridge: no display found (DISPLAY and WAYLAND_DISPLAY are not set), so "  # noqa: T201
                  "the window cannot open. Run it on a desktop, under xvfb-run, or use "
                  "`discbridge ls PATH` / `--screenshot FILE`.", file=sys.stderr)
            if demo:
                print("discbridge: the sample disc holds:", file=sys.stderr)  # noqa: T201
                return _print_demo_tree()
            return 1
    from app.gui import crash
    from app.gui.main_window import MainWindow

    app = make_application()
    uninstall = crash.install(dialogs=screenshot is None and wizard is None)  # headless: no dialog
    try:
        if wizard is not None:
            from app.gui.wizard.headless import run_wizard_export

            return run_wizard_export(app, paths, wizard)
        if screenshot is not None:
            from app.gui.screenshot import take_screenshot

            return take_screenshot(app, path=paths[0] if paths else None, demo=demo,
                                   out=screenshot)
        window = MainWindow()
        QuietGC.settle()  # start-up objects never need a full collection again
        geometry, _state = window.settings.window_state()
        if geometry is not None:
            window.restoreGeometry(geometry)
        window.show()
        window.start()
        if demo:
            window.open_sample()
        for path in paths:
            window.open_path(path)
        code = app.exec()
        window.shutdown()
        return int(code)
    finally:
        uninstall()
