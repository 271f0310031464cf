"""``discbridge open PATH... --wizard-export DEST``: the real export wizard, driven headless.

For scripts and checks: the media are opened in the main window, the export wizard is opened
as Ctrl+E opens it, and its pages are filled and clicked as a clerk would: every patient checked
("Check all"), the options and the destination set from the flags (defaults otherwise), Next,
and on the summary page the fixes the page itself offers (type the study date, leave out what
cannot go on the medium) when the flags allow them, then Write. It waits for the result page,
saves it as a PNG when asked, prints ``written N files, M MB, verified, T s`` (T from Write to
verified) and returns 0 only when the medium was written and verified; otherwise 1, after one
line saying why (what the page says).

The wizard remembers nothing of the user's here: it runs with settings of its own, so a script
gets the same defaults on every machine.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from app.gui.wizard.state import (
    PAGE_DESTINATION,
    PAGE_OPTIONS,
    PAGE_PROGRESS,
    PAGE_RESULT,
    PAGE_SELECTION,
    PAGE_SUMMARY,
)

TIMEOUT_S = 6 * 3600.0  # an export of a whole archive may take hours; a hang still ends
TICK_MS = 50


@dataclass
class WizardRequest:
    """What ``--wizard-export`` asks for (the command line's flags)."""

    dest: Path | None  # a folder (dest_kind "folder"); None with ``iso``
    iso: Path | None = None
    media: str | None = None  # the Options page's "Medium" (default: the wizard's)
    profile: str | None = None
    icons: bool = False
    study_date: str | None = None
    skip_unexportable: bool = False
    screenshot: Path | None = None
    report: Path | None = None  # where the JSON report goes (default: the data folder's reports/)


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201


def _err(text: str) -> None:
    print(f"discbridge: {text}", file=sys.stderr, flush=True)  # noqa: T201


class _Driver:
    """A small state machine, advanced by a timer: each tick looks at the wizard's page."""

    def __init__(self, app: QApplication, window: object, paths: list[str],
                 request: WizardRequest, settings: QSettings) -> None:
        self.app = app
        self.window = window
        self.paths = paths
        self.request = request
        self.settings = settings
        self.code: int | None = None
        self.opened = 0
        self.wizard: object | None = None
        self.done_pages: set[int] = set()
        self.t_write = 0.0
        self.retried: set[str] = set()
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self.tick)

    # ----- the end ------------------------------------------------------------------------------
    def finish(self, code: int, message: str = "") -> None:
        if self.code is not None:
            return
        self.code = code
        if message:
            _err(message)
        self.timer.stop()
        wiz = self.wizard
        if wiz is not None and code != 0 and wiz.busy():  # type: ignore[attr-defined]
            wiz.reject()  # type: ignore[attr-defined]  # cancels a running export
            QTimer.singleShot(200, lambda: self._quit_when_idle(time.monotonic() + 60))
            return
        self.app.exit(code)

    def _quit_when_idle(self, deadline: float) -> None:
        wiz = self.wizard
        if wiz is not None and wiz.busy() and time.monotonic() < deadline:  # type: ignore[attr-defined]
            QTimer.singleShot(200, lambda: self._quit_when_idle(deadline))
            return
        self.app.exit(self.code or 0)

    # ----- opening the media -------------------------------------------------------------------
    def begin(self) -> None:
        w = self.window
        w.medium_opened.connect(self._opened)  # type: ignore[attr-defined]
        w.open_failed.connect(lambda path, msg: self.finish(1, f"{path}: {msg}"))  # type: ignore[attr-defined]
        QTimer.singleShot(int(TIMEOUT_S * 1000), lambda: self.finish(
            1, f"the export did not finish within {TIMEOUT_S:.0f} s"))
        for path in self.paths:
            task = w.open_path(path, remember=False)  # type: ignore[attr-defined]
            if task is None:
                self.finish(1, "; ".join(w.messages) or f"{path}: cannot be opened")  # type: ignore[attr-defined]
                return

    def _opened(self, _medium: object) -> None:
        self.opened += 1
        if self.opened == len(self.paths) and self.wizard is None:
            QTimer.singleShot(0, self._open_wizard)

    def _open_wizard(self) -> None:
        from app.gui.wizard.wizard import ExportWizard

        w = self.window
        wiz = ExportWizard(w.tree_model.media, None, w.runner, w,  # type: ignore[attr-defined]
                           settings=self.settings)
        self.wizard = wiz
        if self.request.report is not None:
            wiz.state.report = str(self.request.report)
        wiz.show()
        self.timer.start()

    # ----- the pages ----------------------------------------------------------------------------
    def tick(self) -> None:
        wiz = self.wizard
        if wiz is None or self.code is not None:
            return
        page_id = wiz.currentId()  # type: ignore[attr-defined]
        if page_id == PAGE_SUMMARY:
            self._summary()
            return
        if page_id == PAGE_RESULT:
            self._result()
            return
        if page_id in self.done_pages or page_id == PAGE_PROGRESS:
            return
        self.done_pages.add(page_id)
        if page_id == PAGE_SELECTION:
            page = wiz.selection_page  # type: ignore[attr-defined]
            page.all_button.click()
        elif page_id == PAGE_OPTIONS:
            if not self._options(wiz.options_page):  # type: ignore[attr-defined]
                return
        elif page_id == PAGE_DESTINATION:
            self._destination(wiz.destination_page)  # type: ignore[attr-defined]
        self._next(page_id)

    def _next(self, page_id: int) -> None:
        wiz = self.wizard
        wiz.next()  # type: ignore[attr-defined]
        if wiz.currentId() == page_id:  # type: ignore[attr-defined]
            page = wiz.currentPage()  # type: ignore[attr-defined]
            self.finish(1, f"the wizard's page {page.title()!r} does not accept its input")

    def _options(self, page: object) -> bool:
        r = self.request
        if r.media is not None:
            i = page.media_box.findData(r.media)  # type: ignore[attr-defined]
            if i < 0:
                self.finish(1, f"{r.media}: not a medium the wizard offers")
                return False
            page.media_box.setCurrentIndex(i)  # type: ignore[attr-defined]
        if r.profile:
            i = page.profile_box.findData(r.profile.upper())  # type: ignore[attr-defined]
            if i < 0:
                self.finish(1, f"{r.profile}: not a profile the wizard offers")
                return False
            page.profile_box.setCurrentIndex(i)  # type: ignore[attr-defined]
        page.icons.setChecked(r.icons)  # type: ignore[attr-defined]
        return True

    def _destination(self, page: object) -> None:
        r = self.request
        if r.iso is not None:
            page.radios["iso"].setChecked(True)  # type: ignore[attr-defined]
            page.iso.setText(str(r.iso))  # type: ignore[attr-defined]
        else:
            page.radios["folder"].setChecked(True)  # type: ignore[attr-defined]
            page.folder.setText(str(r.dest))  # type: ignore[attr-defined]

    def _summary(self) -> None:
        wiz = self.wizard
        page = wiz.summary_page  # type: ignore[attr-defined]
        if page.busy():
            return
        if wiz.plan is not None:  # type: ignore[attr-defined]
            if page.replace_box.isVisibleTo(page) and not page.replace_box.isChecked():
                self.finish(1, page.replace_box.text().replace("&", "")
                            + " (not replaced: choose an empty folder)")
                return
            if PAGE_SUMMARY not in self.done_pages:
                self.done_pages.add(PAGE_SUMMARY)
                self.t_write = time.monotonic()
                wiz.next()  # type: ignore[attr-defined]  # "Write"
            return
        if not page.error.isVisible():
            return
        r = self.request
        if page.date_edit.isVisible() and r.study_date and "date" not in self.retried:
            self.retried.add("date")
            page.date_edit.setText(r.study_date)
            page.retry.click()
            return
        if page.skip_box.isVisible() and r.skip_unexportable and "skip" not in self.retried:
            self.retried.add("skip")
            page.skip_box.setChecked(True)
            page.retry.click()
            return
        hint = page.view.toPlainText().strip()
        self.finish(1, " ".join(page.error.text().split()) + (f" ({hint})" if hint else ""))

    def _result(self) -> None:
        wiz = self.wizard
        if self.request.screenshot is not None:
            out = self.request.screenshot
            out.parent.mkdir(parents=True, exist_ok=True)
            if not wiz.grab().save(str(out), "PNG"):  # type: ignore[attr-defined]
                self.finish(1, f"{out}: could not write the screenshot")
                return
        seconds = time.monotonic() - self.t_write
        outcome, report = wiz.outcome, wiz.report  # type: ignore[attr-defined]
        if outcome != "ok" or report is None:
            why = "cancelled" if outcome == "cancelled" else (
                " ".join(str(wiz.error).split()) if report is None  # type: ignore[attr-defined]
                else report.error or "the export failed")
            self.finish(1, f"the export failed: {why}")
            return
        files = sum(v.files for v in report.volumes)
        size = sum(v.bytes for v in report.volumes)
        if not report.verification.checked or not report.verification.ok:
            self.finish(1, "written but not verified: "
                        + "; ".join(report.verification.failures
                                    + report.verification.iso_failures)[:2000])
            return
        _say(f"written {files} files, {size / 1e6:.1f} MB, verified, {seconds:.1f} s")
        for f, why in report.skipped:
            _say(f"left out: {f}: {why}")
        if report.report_path is not None:
            _say(f"report: {report.report_path}")
        self.finish(0)


def run_wizard_export(app: QApplication, paths: list[str], request: WizardRequest) -> int:
    """Open ``paths`` in the main window and export them through the wizard (module doc)."""
    from app.gui.main_window import MainWindow
    from app.gui.quiet_gc import QuietGC

    window = MainWindow(interactive=False)
    QuietGC.settle()
    window.resize(1280, 800)
    window.show()
    with tempfile.TemporaryDirectory(prefix="discbridge-wizard-") as tmp:
        settings = QSettings(str(Path(tmp) / "wizard.ini"), QSettings.Format.IniFormat)
        driver = _Driver(app, window, paths, request, settings)
        QTimer.singleShot(0, driver.begin)
        app.exec()
        driver.timer.stop()
        if driver.wizard is not None:
            driver.wizard.close()  # type: ignore[attr-defined]
        window.shutdown()
        window.hide()
        window.deleteLater()
        del settings
    return driver.code if driver.code is not None else 1
