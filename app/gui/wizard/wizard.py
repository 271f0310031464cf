"""The export wizard: selection → options → destination → summary → progress → result.

Late commit (STYLE.md §17): the pages only fill a plain :class:`WizardState`; the summary page
runs :func:`app.core.export.engine.plan_export` (which reads headers and writes nothing) and the
progress page is the first and only place anything is written, through
:func:`app.core.export.engine.execute` on the TaskRunner's single-thread write pool. No widget is
touched from a worker: every result arrives through :class:`app.gui.tasks.Task` signals.

Cancel during the export cancels the job (the core leaves the destination as it was) and shows
the result page; once a burn has started writing (``Progress.cancellable`` false) Cancel is
disabled, because stopping would ruin the disc.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QSettings, QSize, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QWidget, QWizard

from app.core.export.options import ExportOptions
from app.core.jobs import CancelToken, ProgressCallback
from app.core.model import Medium
from app.gui.settings import Settings
from app.gui.tasks import TaskRunner

PAGE_SELECTION, PAGE_OPTIONS, PAGE_DESTINATION, PAGE_SUMMARY, PAGE_PROGRESS, PAGE_RESULT = range(6)


def tr(text: str) -> str:
    return QCoreApplication.translate("ExportWizard", text)


@dataclass
class WizardState:
    """Everything the user chose; turned into :class:`ExportOptions` by :meth:`options`."""

    media: list[Medium]
    select: set[str] | None = None  # SOP Instance UIDs to export (None: everything)
    media_type: str = "cd"  # "folder", "cd", "dvd", "dvd-dl", "bd", "usb"
    profile: str = ""  # "" = the media type's default profile
    icons: bool = False
    fileset_id: str = ""
    institution: str = ""
    contact: str = ""
    span: bool = False
    on_id_clash: str = "error"
    study_date: str | None = None
    dest_kind: str = "folder"  # "folder", "usb", "iso", "burn"
    folder: str = ""
    usb: str = ""  # a mount point
    iso: str = ""
    burner: str = ""
    force: bool = False
    report: str = ""  # where to save the JSON export report ("" = the application's data folder)

    def destination(self) -> str:
        """The chosen destination as text (a folder, a volume, a file or a device)."""
        return {"folder": self.folder, "usb": self.usb, "iso": self.iso,
                "burn": self.burner}.get(self.dest_kind, "")

    def options(self) -> ExportOptions:
        opts = ExportOptions(
            sources=[Path(m.root) for m in self.media],
            media=None if self.media_type == "folder" else self.media_type,  # type: ignore[arg-type]
            profile=self.profile or None,
            icons=self.icons,
            fileset_id=self.fileset_id or None,
            institution=self.institution or None,
            contact=self.contact or None,
            span=self.span,
            force=self.force,
            on_id_clash="separate" if self.on_id_clash == "separate" else "error",
            study_date=self.study_date,
            select=set(self.select) if self.select is not None else None,
            report=Path(self.report) if self.report else None,
        )
        if self.dest_kind == "folder":
            opts.dest = Path(self.folder)
        elif self.dest_kind == "usb":
            opts.dest = Path(self.usb)
        elif self.dest_kind == "iso":
            opts.iso = Path(self.iso)
        elif self.dest_kind == "burn":
            opts.burn = self.burner
        return opts


class WizardSettings:
    """The remembered export choices, through GUI1's :class:`app.gui.settings.Settings`
    (institution, contact, default media and profile, burner), by attribute name."""

    NAMES = ("institution", "contact", "default_media", "default_profile", "burner")

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self._impl = Settings(qsettings)

    def get(self, name: str, default: str = "") -> str:
        value = getattr(self._impl, name) if name in self.NAMES else default
        return value if isinstance(value, str) and value else default

    def set(self, name: str, value: str) -> None:
        if name not in self.NAMES:
            raise KeyError(name)
        setattr(self._impl, name, value)


def execute_and_report(plan: Any, progress: ProgressCallback | None = None,
                       cancel: CancelToken | None = None) -> Any:
    """Worker side of the progress page: write ``plan``, then save the JSON export report in
    the application's data folder (as ``discbridge export`` does)."""
    from app.core.export.engine import execute

    report = execute(plan, progress, cancel)
    try:
        report.write(plan.options.report)
    except OSError:
        pass  # the medium is written; a report that cannot be saved is not a failed export
    return report


class ExportWizard(QWizard):
    """Export the checked studies to a folder, a USB stick, an ISO image or a disc.

    Parameters
    ----------
    media : list[Medium]
        The open media the user may export from (several may contribute).
    selected_uids : set[str] | None
        The browser's selection (patient IDs, study, series or SOP Instance UIDs) to preset the
        selection tree; None checks everything.
    runner : TaskRunner
        Planning runs on its read pool, the export on its write pool.

    Signals
    -------
    open_medium_requested(str)
        "Open the new medium" on the result page: the folder or .iso written.
    """

    open_medium_requested = Signal(str)

    def __init__(self, media: list[Medium], selected_uids: set[str] | None, runner: TaskRunner,
                 parent: QWidget | None = None, settings: QSettings | None = None) -> None:
        super().__init__(parent)
        from app.gui.wizard.pages import DestinationPage, OptionsPage, SelectionPage
        from app.gui.wizard.run_pages import ProgressPage, ResultPage, SummaryPage

        self.state = WizardState(media=list(media))
        self.selected_uids = set(selected_uids) if selected_uids is not None else None
        self.runner = runner
        self.settings = WizardSettings(settings)
        self.plan: Any = None  # ExportPlan once the summary page has one
        self.report: Any = None  # ExportReport once written
        self.outcome = ""  # "", "ok", "failed", "cancelled"
        self.error = ""
        self.setWindowTitle(tr("Export studies"))
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, True)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.WizardOption.HaveHelpButton, False)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, True)
        self.setButtonText(QWizard.WizardButton.CommitButton, tr("&Write"))
        self.selection_page = SelectionPage(self)
        self.options_page = OptionsPage(self)
        self.destination_page = DestinationPage(self)
        self.summary_page = SummaryPage(self)
        self.progress_page = ProgressPage(self)
        self.result_page = ResultPage(self)
        for pid, page in enumerate((self.selection_page, self.options_page, self.destination_page,
                                    self.summary_page, self.progress_page, self.result_page)):
            self.setPage(pid, page)
        self.setStartId(PAGE_SELECTION)
        self.setMinimumSize(720, 560)

    def sizeHint(self) -> QSize:  # Reimplemented from QWidget.sizeHint
        return QSize(860, 640)

    # ----- closing ------------------------------------------------------------------------------
    def busy(self) -> bool:
        """True while a plan or the export is running."""
        return self.summary_page.busy() or self.progress_page.busy()

    def reject(self) -> None:  # Reimplemented from QDialog.reject
        """Cancel: during the export this cancels the job (the result page then says so)."""
        if self.progress_page.busy():
            self.progress_page.request_cancel()
            return
        self.summary_page.cancel_plan()
        super().reject()

    def closeEvent(self, event: QCloseEvent) -> None:  # Reimplemented from QWidget
        if self.progress_page.busy():
            self.progress_page.request_cancel()
            event.ignore()
            return
        self.summary_page.cancel_plan()
        super().closeEvent(event)
