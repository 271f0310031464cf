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

from PySide6.QtCore import QSettings, QSize
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QWidget, QWizard

from app.core.model import Medium
from app.gui.tasks import TaskRunner
from app.gui.wizard.pages import DestinationPage, OptionsPage, SelectionPage
from app.gui.wizard.run_pages import ProgressPage, ResultPage, SummaryPage
from app.gui.wizard.state import PAGE_SELECTION, WizardBase, tr


class ExportWizard(WizardBase):
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

    def __init__(self, media: list[Medium], selected_uids: set[str] | None, runner: TaskRunner,
                 parent: QWidget | None = None, settings: QSettings | None = None) -> None:
        super().__init__(media, selected_uids, runner, parent, settings)
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
