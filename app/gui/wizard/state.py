"""What the export wizard's pages share: the user's choices (:class:`WizardState`), the
remembered settings, the page numbers, the worker side of the export, and :class:`WizardBase`,
the wizard as its pages see it (:class:`app.gui.wizard.wizard.ExportWizard` adds the pages)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QSettings, Signal
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
    skip_unexportable: bool = False  # leave out what cannot go on the medium (each named)

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
            skip_unexportable=self.skip_unexportable,
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
    """Worker side of the progress page: the command line's own engine
    (:func:`app.core.export.engine.execute_and_report`), with the crash log. A failure's message
    says where its report and the crash log went, for the result page."""
    from app.core.errors import DiscBridgeError, ExportError
    from app.core.export.engine import execute_and_report as run
    from app.core.jobs import Cancelled

    try:
        return run(plan, progress, cancel, crash_log=True)
    except Cancelled:
        raise
    except BaseException as exc:
        where = [f"The report was saved to {path}." for path in [getattr(exc, "report_path", None)]
                 if path] + [f"The details are in {path}." for path in
                             [getattr(exc, "log_path", None)] if path]
        text = str(exc) if isinstance(exc, DiscBridgeError) else f"{type(exc).__name__}: {exc}"
        raise ExportError("\n".join([text, *where])) from exc


class WizardBase(QWizard):
    """The wizard as its pages see it: the user's choices, the task runner, the remembered
    settings, the plan, the report and the outcome.

    Signals
    -------
    open_medium_requested(str)
        "Open the new medium" on the result page: the folder or .iso written.
    """

    open_medium_requested = Signal(str)

    def __init__(self, media: list[Medium], selected_uids: set[str] | None, runner: TaskRunner,
                 parent: QWidget | None = None, settings: QSettings | None = None) -> None:
        super().__init__(parent)
        self.state = WizardState(media=list(media))
        self.selected_uids = set(selected_uids) if selected_uids is not None else None
        self.runner = runner
        self.settings = WizardSettings(settings)
        self.plan: Any = None  # ExportPlan once the summary page has one
        self.report: Any = None  # ExportReport once written
        self.outcome = ""  # "", "ok", "failed", "cancelled"
        self.error = ""
