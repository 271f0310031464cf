"""Export wizard pages that do the work: summary (plan), progress (write), result (verify).

The summary page plans on the TaskRunner's read pool (:func:`app.core.export.engine.plan_export`
writes nothing) and is the wizard's commit page; the progress page runs the export on the write
pool; the result page shows the verification and offers to open what was written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QT_TRANSLATE_NOOP, QDate, QRegularExpression, Qt, QTimer
from PySide6.QtGui import QFont, QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from app.core.jobs import Progress
from app.gui.tasks import Task
from app.gui.wizard.pages import human_size
from app.gui.wizard.state import WizardBase, tr
from app.gui.wizard.summary import esc, failure_text, files_text, summary_html

PHASES = {  # marked for lupdate, translated at use
    "plan": QT_TRANSLATE_NOOP("ExportWizard", "Reading the selected files"),
    "stage": QT_TRANSLATE_NOOP("ExportWizard", "Preparing"),
    "write": QT_TRANSLATE_NOOP("ExportWizard", "Writing files"),
    "dicomdir": QT_TRANSLATE_NOOP("ExportWizard", "Writing the DICOMDIR"),
    "flush": QT_TRANSLATE_NOOP("ExportWizard", "Flushing to the device"),
    "verify": QT_TRANSLATE_NOOP("ExportWizard", "Verifying (reading back)"),
    "install": QT_TRANSLATE_NOOP("ExportWizard", "Moving into place"),
    "iso": QT_TRANSLATE_NOOP("ExportWizard", "Building the ISO image"),
    "burn": QT_TRANSLATE_NOOP("ExportWizard", "Burning the disc"),
}


def existing_medium(state: Any, plan: Any) -> list[str]:
    """What the export would replace at its destination: medium entries of a folder (the same
    rule as the export itself) or an existing ISO file; [] when nothing."""
    from app.core.export.write import medium_entries

    if state.dest_kind == "iso":
        return [Path(state.iso).name] if state.iso and Path(state.iso).exists() else []
    if state.dest_kind in ("folder", "usb"):
        spanning = len(plan.volumes) > 1
        ours = [v.name for v in plan.volumes] if spanning else ["DICOMDIR", "README.TXT"]
        try:
            return medium_entries(Path(state.destination()), ours)
        except OSError:
            return []
    return []


# ----------------------------------------------------------------------------- summary


class SummaryPage(QWizardPage):
    """Plans the export and shows what will happen; the commit page."""

    def __init__(self, wizard: WizardBase) -> None:
        super().__init__(wizard)
        self.wiz = wizard
        self.setTitle(tr("Check before writing"))
        self.setSubTitle(tr("Is this the right patient? Nothing has been written yet."))
        self.setCommitPage(True)
        self.busy_label = QLabel(self)
        self.busy_bar = QProgressBar(self)
        self.busy_bar.setRange(0, 0)
        self.view = QTextBrowser(self)
        self.view.setOpenLinks(False)
        self.view.setAccessibleName(tr("Export summary"))
        self.capacity = QProgressBar(self)
        self.capacity.setFormat(tr("%p% of the medium"))
        self.error = QLabel(self)
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020; font-weight: bold")
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Fixes offered for the failures a user can resolve here.
        self.fix = QWidget(self)
        # A plain field, empty until the user types a date: never a default from the clock.
        self.date_edit = QLineEdit(self.fix)
        self.date_edit.setPlaceholderText(tr("YYYY-MM-DD"))
        self.date_edit.setMaxLength(10)
        self.date_edit.setValidator(QRegularExpressionValidator(
            QRegularExpression(r"\d{0,4}-?\d{0,2}-?\d{0,2}"), self.date_edit))
        self.date_edit.textChanged.connect(self._fix_changed)
        self.date_edit.returnPressed.connect(lambda: self._retry() if self.retry.isEnabled()
                                             else None)
        self.date_edit.setAccessibleName(tr("Study date"))
        self.date_label = QLabel(tr("Study &date to record:"), self.fix)
        self.date_label.setBuddy(self.date_edit)
        self.span_box = QCheckBox(tr("&Split over several discs"), self.fix)
        self.separate_box = QCheckBox(tr("&Keep the patients apart (new ID for the second)"),
                                      self.fix)
        self.skip_box = QCheckBox(tr("&Leave these files out (each is named in the report)"),
                                  self.fix)
        self.span_box.toggled.connect(self._fix_changed)
        self.separate_box.toggled.connect(self._fix_changed)
        self.skip_box.toggled.connect(self._fix_changed)
        self.retry = QPushButton(tr("&Check again"), self.fix)
        self.retry.clicked.connect(self._retry)
        fl = QHBoxLayout(self.fix)
        fl.setContentsMargins(0, 0, 0, 0)
        for w in (self.date_label, self.date_edit, self.span_box, self.separate_box,
                  self.skip_box):
            fl.addWidget(w)
        fl.addStretch(1)
        fl.addWidget(self.retry)
        lay = QVBoxLayout(self)
        lay.addWidget(self.busy_label)
        lay.addWidget(self.busy_bar)
        lay.addWidget(self.error)
        lay.addWidget(self.fix)
        self.replace_box = QCheckBox(self)
        self.replace_box.setStyleSheet("font-weight: bold")
        self.replace_box.toggled.connect(self._replace_toggled)
        lay.addWidget(self.replace_box)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.capacity)
        self.task: Task | None = None
        self._exc: BaseException | None = None

    # ----- planning -----------------------------------------------------------------------------
    def initializePage(self) -> None:  # Reimplemented from QWizardPage
        label = {"folder": tr("&Write"), "usb": tr("&Write"), "iso": tr("&Create image"),
                 "burn": tr("&Burn")}[self.wiz.state.dest_kind]
        self.setButtonText(QWizard.WizardButton.CommitButton, label)
        self.start_plan()

    def cleanupPage(self) -> None:  # Reimplemented from QWizardPage (Back)
        self.cancel_plan()

    def start_plan(self) -> None:
        from app.core.export.engine import plan_export

        self.cancel_plan()
        self.wiz.plan = None
        self._exc = None
        self.view.clear()
        self.error.hide()
        self.fix.hide()
        self.capacity.hide()
        self.replace_box.hide()
        self.busy_label.setText(tr("Reading the selected files…"))
        self.busy_label.show()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.show()
        opts = self.wiz.state.options()
        kwargs: dict[str, Any] = {}
        if getattr(self.wiz, "capacity_override", None):
            kwargs["capacity"] = self.wiz.capacity_override
        task = self.wiz.runner.run(plan_export, opts, self.wiz.state.media, **kwargs)
        self.task = task
        task.progress.connect(self._progress)
        task.finished.connect(lambda plan, t=task: self._planned(t, plan))
        task.failed.connect(lambda msg, t=task: self._failed(t, msg))
        task.cancelled.connect(lambda t=task: self._settle(t))
        self.completeChanged.emit()

    def busy(self) -> bool:
        return self.task is not None and not self.task.done

    def cancel_plan(self) -> None:
        if self.busy() and self.task is not None:
            self.wiz.runner.cancel_task(self.task)
        self.task = None

    def _progress(self, p: Progress) -> None:
        if p.total_files:
            self.busy_bar.setRange(0, p.total_files)
            self.busy_bar.setValue(p.done_files)
            self.busy_label.setText(tr("Reading the selected files… %1 of %2")
                                    .replace("%1", str(p.done_files))
                                    .replace("%2", str(p.total_files)))

    def _settle(self, task: Task) -> bool:
        if task is not self.task:
            return False  # an older plan (Back, "Check again")
        self.task = None
        self.busy_label.hide()
        self.busy_bar.hide()
        self.completeChanged.emit()
        return True

    def _planned(self, task: Task, plan: Any) -> None:
        if not self._settle(task):
            return
        self.wiz.plan = plan
        self.view.setHtml(summary_html(plan, self.wiz.state.destination()))
        existing = existing_medium(self.wiz.state, plan)
        self.replace_box.setVisible(bool(existing))
        self.replace_box.blockSignals(True)
        self.replace_box.setChecked(self.wiz.state.force)
        self.replace_box.blockSignals(False)
        self.replace_box.setText(tr("%1 holds a medium already (%2). Replace it?")
                                 .replace("%1", self.wiz.state.destination())
                                 .replace("%2", ", ".join(existing[:4])))
        if plan.capacity > 0:
            self.capacity.setRange(0, 1000)
            per = plan.total_bytes / max(1, len(plan.volumes))
            self.capacity.setValue(min(1000, round(1000 * per / plan.capacity)))
            self.capacity.show()
        self.completeChanged.emit()

    def _failed(self, task: Task, message: str) -> None:
        if not self._settle(task):
            return
        exc = task.error
        self._exc = exc
        missing_date = hasattr(exc, "studies")
        too_big = hasattr(exc, "needed") and self.wiz.state.dest_kind != "burn" \
            and not self.wiz.state.span
        clash = hasattr(exc, "clashes")
        refused = bool(getattr(exc, "refused", None)) and not self.wiz.state.skip_unexportable
        self.error.setText(failure_text(exc, message))
        self.error.show()
        self.date_label.setVisible(missing_date)
        self.date_edit.setVisible(missing_date)
        self.date_edit.clear()  # no date from the clock
        self.span_box.setVisible(too_big)
        self.span_box.setChecked(False)
        self.separate_box.setVisible(clash)
        self.separate_box.setChecked(False)
        self.skip_box.setVisible(refused)
        self.skip_box.setChecked(False)
        self.fix.setVisible(missing_date or too_big or clash or refused)
        self._fix_changed()
        hint = tr("Go Back to change the selection, the options or the destination.")
        if missing_date:
            hint = tr("Enter the date the study was done (from the request or the report) and "
                      "check again. It is written into the exported copies only; the original "
                      "files are not changed.")
        elif too_big:
            hint = tr("Choose a larger medium (Back), or split the export over several discs.")
        elif clash:
            hint = tr("Check the selection (Back), or keep them apart: the second patient gets "
                      "a new ID on the medium, the original is kept in Other Patient IDs.")
        elif refused:
            hint = tr("Change the selection or the profile (Back), or leave these files out: "
                      "the medium then holds everything else, and the report names each file "
                      "left out with its reason.")
        self.view.setPlainText(hint)

    def _fix_changed(self, *_: Any) -> None:
        ok = ((self.date_edit.isVisible() and self.entered_date() is not None)
              or (self.span_box.isVisible() and self.span_box.isChecked())
              or (self.separate_box.isVisible() and self.separate_box.isChecked())
              or (self.skip_box.isVisible() and self.skip_box.isChecked()))
        self.retry.setEnabled(ok)

    def entered_date(self) -> str | None:
        """The typed study date as YYYYMMDD when it is a real date, not in the future."""
        digits = self.date_edit.text().replace("-", "")
        d = QDate.fromString(digits, "yyyyMMdd")
        if len(digits) != 8 or not d.isValid() or d > QDate.currentDate() or d.year() < 1900:
            return None
        return digits

    def _retry(self) -> None:
        st = self.wiz.state
        date = self.entered_date() if self.date_edit.isVisible() else None
        if date is not None:
            st.study_date = date
        if self.span_box.isVisible() and self.span_box.isChecked():
            st.span = True
        if self.separate_box.isVisible() and self.separate_box.isChecked():
            st.on_id_clash = "separate"
        if self.skip_box.isVisible() and self.skip_box.isChecked():
            st.skip_unexportable = True
        self.start_plan()

    def _replace_toggled(self, on: bool) -> None:
        self.wiz.state.force = on
        if self.wiz.plan is not None:
            self.wiz.plan.options.force = on
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # Reimplemented from QWizardPage
        if self.replace_box.isVisibleTo(self) and not self.replace_box.isChecked():
            return False  # never replace a medium without being asked
        return self.wiz.plan is not None and not self.busy()


# ----------------------------------------------------------------------------- progress


class ProgressPage(QWizardPage):
    """Runs the export on the write pool: phase, current file, files and bytes, ETA, Cancel."""

    def __init__(self, wizard: WizardBase) -> None:
        super().__init__(wizard)
        self.wiz = wizard
        self.setTitle(tr("Writing"))
        self.setSubTitle(tr("Cancel leaves the destination as it was, until a burn starts "
                            "writing the disc."))
        self.phase = QLabel(self)
        font = self.phase.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.2)
        self.phase.setFont(font)
        self.file = QLabel(self)
        self.file.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.file.setMinimumWidth(200)
        self.bar = QProgressBar(self)
        self.counts = QLabel(self)
        self.eta = QLabel(self)
        self.steps = QLabel(self)
        self.steps.setTextFormat(Qt.TextFormat.RichText)
        self._steps: list[str] = []
        self._step = -1
        lay = QVBoxLayout(self)
        lay.addWidget(self.phase)
        lay.addWidget(self.bar)
        lay.addWidget(self.file)
        row = QHBoxLayout()
        row.addWidget(self.counts, 1)
        row.addWidget(self.eta)
        lay.addLayout(row)
        lay.addSpacing(16)
        lay.addWidget(self.steps)
        lay.addStretch(1)
        self.task: Task | None = None
        self._t0 = 0.0
        self._phase = ""
        self._phase_t0 = 0.0
        self._phase_b0 = 0

    def initializePage(self) -> None:  # Reimplemented from QWizardPage
        from app.gui.wizard.state import execute_and_report

        self.wiz.outcome = ""
        self.wiz.report = None
        self.phase.setText(tr("Starting…"))
        self.file.setText("")
        self.counts.setText("")
        self.eta.setText("")
        self.bar.setRange(0, 0)
        self._t0 = time.monotonic()
        self._phase = ""
        kind = self.wiz.state.dest_kind
        self._steps = ["write", "dicomdir", "verify"] + (["iso"] if kind in ("iso", "burn") else []) \
            + (["burn"] if kind == "burn" else [])
        self._step = -1
        self._show_steps()
        # A child process: the export's Python work then cannot starve the GUI thread of the
        # GIL (benchmarks/results_gui.md: 227 ms stalls on a thread, ~50 ms this way).
        task = self.wiz.runner.run_process(execute_and_report, self.wiz.plan)
        self.task = task
        task.progress.connect(self._progress)
        task.finished.connect(self._finished)
        task.failed.connect(self._failed)
        task.cancelled.connect(self._cancelled)
        self._cancel_button(True)

    def busy(self) -> bool:
        return self.task is not None and not self.task.done

    def _cancel_button(self, on: bool) -> None:
        button = self.wiz.button(QWizard.WizardButton.CancelButton)
        if button is not None:
            button.setEnabled(on)

    def request_cancel(self) -> None:
        """Cancel the export, unless a burn is already writing."""
        if self.task is None or self.task.done:
            return
        if self.task.cancel():
            self.phase.setText(tr("Cancelling… the destination is being restored"))
            self._cancel_button(False)
        else:
            self.phase.setText(tr("The disc is being written and cannot be stopped now"))
            self._cancel_button(False)

    def _progress(self, p: Progress) -> None:
        now = time.monotonic()
        if p.phase != self._phase:
            self._phase, self._phase_t0, self._phase_b0 = p.phase, now, p.done_bytes
            if p.phase in self._steps and self._steps.index(p.phase) > self._step:
                self._step = self._steps.index(p.phase)
                self._show_steps()
        phase = tr(PHASES.get(p.phase, p.phase.capitalize()))
        self.phase.setText(phase)
        message = "" if p.message.strip().lower() == phase.lower() else p.message
        self.file.setText(self.file.fontMetrics().elidedText(
            message, Qt.TextElideMode.ElideMiddle, max(200, self.file.width())))
        frac = p.fraction
        if frac is None:
            self.bar.setRange(0, 0)
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(round(frac * 1000))
        parts = []
        if p.total_files:
            parts.append(tr("%1 of %2 files").replace("%1", str(p.done_files))
                         .replace("%2", str(p.total_files)))
        if p.total_bytes:
            parts.append(tr("%1 of %2").replace("%1", human_size(p.done_bytes))
                         .replace("%2", human_size(p.total_bytes)))
        self.counts.setText(" · ".join(parts))
        self.eta.setText(self._eta(p, now))
        if not p.cancellable:
            self._cancel_button(False)

    def _show_steps(self, done: bool = False) -> None:
        lines = []
        for i, step in enumerate(self._steps):
            label = esc(tr(PHASES[step]))
            if done or i < self._step:
                lines.append(f"✓ {label}")
            elif i == self._step:
                lines.append(f"▸ <b>{label}</b>")
            else:
                lines.append(f"<span style='color:gray'>○ {label}</span>")
        self.steps.setText("<br>".join(lines))

    def _eta(self, p: Progress, now: float) -> str:
        elapsed = now - self._phase_t0
        done = p.done_bytes - self._phase_b0
        if p.total_bytes <= 0 or done <= 0 or elapsed < 0.5:
            return ""
        left = (p.total_bytes - p.done_bytes) / (done / elapsed)
        if left < 1:
            return ""
        m, s = divmod(int(left + 0.5), 60)
        return tr("about %1 left").replace("%1", f"{m}:{s:02d}" if m else tr("%1 s")
                                            .replace("%1", str(s)))

    def _settle(self, outcome: str) -> None:
        self.task = None
        self.wiz.outcome = outcome
        self._cancel_button(True)
        self.completeChanged.emit()
        QTimer.singleShot(0, self.wiz.next)

    def _finished(self, report: Any) -> None:
        self.wiz.report = report
        self._show_steps(done=report.ok)
        self._settle("ok" if report.ok else "failed")

    def _failed(self, message: str) -> None:
        self.wiz.error = message
        self._settle("failed")

    def _cancelled(self) -> None:
        self._settle("cancelled")

    def isComplete(self) -> bool:  # Reimplemented from QWizardPage
        return bool(self.wiz.outcome)


# ----------------------------------------------------------------------------- result


class ResultPage(QWizardPage):
    """The verification result and "Open the new medium"."""

    def __init__(self, wizard: WizardBase) -> None:
        super().__init__(wizard)
        self.wiz = wizard
        self.setTitle(tr("Result"))
        self.setSubTitle(tr("What was written, changed and verified (also saved as a report)."))
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        font = self.status.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.3)
        self.status.setFont(font)
        self.details = QPlainTextEdit(self)
        self.details.setReadOnly(True)
        self.details.setAccessibleName(tr("Export report"))
        self.details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        mono = QFont("Monospace")
        mono.setStyleHint(QFont.StyleHint.TypeWriter)
        self.details.setFont(mono)
        self.open_button = QPushButton(tr("&Open the new medium"), self)
        self.open_button.clicked.connect(self._open)
        lay = QVBoxLayout(self)
        lay.addWidget(self.status)
        lay.addWidget(self.details, 1)
        lay.addWidget(self.open_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.medium_path = ""
        self.setFinalPage(True)

    def initializePage(self) -> None:  # Reimplemented from QWizardPage
        outcome, report = self.wiz.outcome, self.wiz.report
        self.medium_path = ""
        good = outcome == "ok"
        self.status.setStyleSheet("color: #1b6e20" if good else
                                  "color: #8a5a00" if outcome == "cancelled" else "color: #b00020")
        if outcome == "cancelled":
            self.status.setText(tr("Cancelled. Nothing was written: the destination is as it "
                                   "was before."))
            self.details.setPlainText("")
        elif report is None:
            self.status.setText(tr("The export failed. The destination is as it was before."))
            self.details.setPlainText(self.wiz.error)
        else:
            ver = report.verification
            if report.ok and ver.checked:
                self.status.setText(tr("Done and verified: %1 files read back from the medium, "
                                       "all identical.").replace("%1", str(ver.files)))
            elif report.ok:
                self.status.setText(tr("Done (not verified)."))
            else:
                self.status.setText(tr("The export did not verify. The destination is as it was "
                                       "before; see the details."))
            if report.ok and report.skipped:
                self.status.setText(self.status.text() + " " + tr(
                    "%1 were left out, as you chose: each is listed below with its reason.")
                    .replace("%1", files_text(len(report.skipped))))
            self.details.setPlainText("\n".join(report.summary_lines()))
            if report.ok and report.volumes:
                first = report.volumes[0]
                self.medium_path = first.iso or (
                    first.path if len(report.volumes) > 1 or self.wiz.state.dest_kind == "burn"
                    else self.wiz.state.destination())
                if self.wiz.state.dest_kind == "burn":
                    self.medium_path = ""  # the staging folder is gone; browse the disc instead
        self.open_button.setEnabled(bool(self.medium_path))
        self.open_button.setVisible(outcome != "cancelled")

    def _open(self) -> None:
        if self.medium_path:
            self.wiz.open_medium_requested.emit(self.medium_path)
            self.wiz.accept()
