"""The problems panel: what is wrong with the open media, in plain words, and what we did about it;
and the status bar that counts what is open and how many problems it has (StatusArea).

Problems come from the reader (``Medium.problems``). They are grouped by code, one row per code
and medium ("3 images listed on the disc are not on it"), the files underneath. Each code has a
plain-words explanation and a sentence on what DiscBridge did about it (PROBLEM_TEXTS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import (
    QT_TRANSLATE_NOOP,
    QAbstractItemModel,
    QCoreApplication,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHeaderView,
    QLabel,
    QProgressBar,
    QStatusBar,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from app.core.jobs import Progress
from app.core.model import Medium, Problem
from app.gui import ntr

Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()  # default 'parent' argument (never mutated)


def _t(text: str) -> str:
    return QCoreApplication.translate("problems", text)


def _N(text: str) -> str:  # noqa: N802 - the Qt macro's spelling
    return QT_TRANSLATE_NOOP("problems", text)


# code -> (what it means for the user, what DiscBridge did about it). Marked for pyside6-lupdate
# with QT_TRANSLATE_NOOP (context "problems"); translated when shown (explain()).
PROBLEM_TEXTS: dict[str, tuple[str, str]] = {
    "missing-file": (
        _N("An image listed on the disc is not on it. It may have been lost when the disc was "
           "written."),
        _N("Listed the other images; this one cannot be shown or copied.")),
    "empty-file": (
        _N("A file on the disc is empty (0 bytes). The disc was probably not finished properly."),
        _N("Listed the other images; this one cannot be shown or copied.")),
    "truncated-file": (
        _N("A file on the disc is cut short: its end is missing."),
        _N("Listed it with what could be read; it may not display.")),
    "not-dicom": (
        _N("The disc's index points at a file that is not a medical image."),
        _N("Skipped that file and listed the rest.")),
    "outside-root": (
        _N("The disc's index points at a file outside the disc. This is not allowed and could be "
           "an attempt to read your computer's files."),
        _N("Refused to follow it and listed the rest of the disc.")),
    "bad-file-id": (
        _N("The disc's index names a file in a way the standard does not allow."),
        _N("Found the file anyway where it could, and listed the rest.")),
    "dicomdir-unreadable": (
        _N("The disc's index (DICOMDIR) is broken and cannot be read."),
        _N("Scanned the disc because its index was broken, so every image is still listed.")),
    "dicomdir-recovered": (
        _N("The disc's index (DICOMDIR) is damaged."),
        _N("Read around the damage and recovered the entries that were still intact.")),
    "no-dicomdir": (
        _N("The disc has no index (DICOMDIR). Other systems may not be able to read it."),
        _N("Scanned the disc's files to find the images.")),
    "unreferenced-file": (
        _N("A medical image is on the disc but missing from its index. Other systems may not "
           "show it."),
        _N("Listed it too, so no image on the disc is lost.")),
    "duplicate-instance": (
        _N("The same image is on the disc more than once."),
        _N("Listed it once.")),
    "record-file-mismatch": (
        _N("The disc's index and the image file disagree (for example about the patient or the "
           "study)."),
        _N("Uses the values from the image file wherever the file has been read.")),
    "missing-key": (
        _N("The disc's index leaves out information the standard requires."),
        _N("Listed the images anyway; an export fills the missing information in.")),
    "bad-pixel-data": (
        _N("An image's pixel data has the wrong size for its stated dimensions."),
        _N("Listed it; the picture may be incomplete or wrong.")),
    "bad-icon": (
        _N("A small preview picture stored in the disc's index is damaged."),
        _N("Drew the preview from the image itself instead.")),
    "bad-charset": (
        _N("Some names use a character set that is unknown or wrongly declared, so letters may "
           "look wrong."),
        _N("Showed the names as well as it could.")),
    "read-error": (
        _N("Part of the disc could not be read. It may be scratched or dirty."),
        _N("Tried again, then listed everything else on the disc.")),
}

_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def explain(code: str) -> tuple[str, str]:
    """Plain-words (meaning, action) for a problem code, translated. Unknown codes get a generic
    text (the reader's own message is shown underneath)."""
    meaning, action = PROBLEM_TEXTS.get(code, (
        "Something on the disc does not follow the DICOM standard.",
        "Listed everything it could read."))
    return _t(meaning), _t(action)


@dataclass
class _Group:
    medium: Medium
    code: str
    severity: str
    problems: list[Problem] = field(default_factory=list)


class ProblemsModel(QAbstractItemModel):
    """Two levels: a group per (medium, code), then one row per problem. Columns: what is wrong,
    what DiscBridge did, file."""

    COLUMNS = (_N("What is wrong"), _N("What DiscBridge did"), _N("File"))

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._groups: list[_Group] = []
        self._media: list[Medium] = []

    # ----- content -------------------------------------------------------------------------
    def set_media(self, media: list[Medium]) -> None:
        self.beginResetModel()
        self._media = list(media)
        groups: dict[tuple[int, str], _Group] = {}
        for medium in self._media:
            for p in medium.problems:
                g = groups.get((id(medium), p.code))
                if g is None:
                    g = groups[(id(medium), p.code)] = _Group(medium, p.code, p.severity)
                g.problems.append(p)
                if _SEVERITY_ORDER.get(p.severity, 3) < _SEVERITY_ORDER.get(g.severity, 3):
                    g.severity = p.severity
        self._groups = sorted(groups.values(),
                              key=lambda g: (_SEVERITY_ORDER.get(g.severity, 3), g.code))
        self.endResetModel()

    def problem_count(self) -> int:
        return sum(len(g.problems) for g in self._groups)

    def codes(self) -> list[str]:
        return [g.code for g in self._groups]

    # ----- QAbstractItemModel --------------------------------------------------------------
    def index(self, row: int, column: int, parent: Index = _ROOT) -> QModelIndex:
        """Reimplemented from QAbstractItemModel.index. Child rows carry their group."""
        if not self.hasIndex(row, column, parent):
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, None)
        return self.createIndex(row, column, self._groups[parent.row()])

    def parent(self, index: Index = _ROOT) -> QModelIndex:  # type: ignore[override]
        """Reimplemented from QAbstractItemModel.parent."""
        if not index.isValid():
            return QModelIndex()
        group = index.internalPointer()
        if group is None:
            return QModelIndex()
        return self.createIndex(self._groups.index(group), 0, None)

    def rowCount(self, parent: Index = _ROOT) -> int:
        """Reimplemented from QAbstractItemModel.rowCount."""
        if not parent.isValid():
            return len(self._groups)
        if parent.column() != 0 or parent.internalPointer() is not None:
            return 0
        return len(self._groups[parent.row()].problems)

    def columnCount(self, parent: Index = _ROOT) -> int:
        """Reimplemented from QAbstractItemModel.columnCount."""
        return len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> object:
        """Reimplemented from QAbstractItemModel.headerData."""
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return _t(self.COLUMNS[section])
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        """Reimplemented from QAbstractItemModel.data."""
        if not index.isValid():
            return None
        group = index.internalPointer()
        col = index.column()
        if group is None:
            g = self._groups[index.row()]
            meaning, action = explain(g.code)
            if role == Qt.ItemDataRole.DisplayRole:
                if col == 0:
                    n = len(g.problems)
                    return (f"{meaning} ({n}×)" if n > 1 else meaning)
                if col == 1:
                    return action
                if col == 2:
                    return g.medium.root if len(self._media) > 1 else ""
            if role == Qt.ItemDataRole.ToolTipRole:
                return f"{meaning}\n{_t('DiscBridge')}: {action}\n[{g.code}]"
            if role == Qt.ItemDataRole.DecorationRole and col == 0:
                return severity_icon(g.severity)
            return None
        p = group.problems[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:  # let long File IDs wrap after their separators
                return p.message.replace("\\", "\\\u200b").replace("/", "/\u200b")
            if col == 2:
                return p.path or ""
        if role == Qt.ItemDataRole.ToolTipRole:
            return str(p)
        if role == Qt.ItemDataRole.UserRole:
            return p
        return None


def severity_icon(severity: str) -> QIcon:
    style = QApplication.style()
    pix = {"error": QStyle.StandardPixmap.SP_MessageBoxCritical,
           "warning": QStyle.StandardPixmap.SP_MessageBoxWarning}.get(
               severity, QStyle.StandardPixmap.SP_MessageBoxInformation)
    return style.standardIcon(pix)


class _WrapDelegate(QStyledItemDelegate):
    """Rows as tall as their wrapped text at the column's current width."""

    def __init__(self, view: QTreeView) -> None:
        super().__init__(view)
        self.view = view

    def initStyleOption(self, option: QStyleOptionViewItem, index: Index) -> None:  # noqa: N802
        """Reimplemented: the File column is one line, shortened in the middle."""
        super().initStyleOption(option, index)
        if index.column() == 2:
            option.features &= ~QStyleOptionViewItem.ViewItemFeature.WrapText
            option.textElideMode = Qt.TextElideMode.ElideMiddle

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:  # noqa: N802
        """Reimplemented from QStyledItemDelegate.sizeHint."""
        base = super().sizeHint(option, index)
        if index.column() == 2:
            return base
        # Measure with spaces where the text allows breaks (zero-width spaces after separators).
        text = str(index.data(Qt.ItemDataRole.DisplayRole) or "").replace("\u200b", " ")
        width = self.view.columnWidth(index.column()) - 8
        if index.column() == 0:
            depth = 1 if index.parent().isValid() else 0
            has_icon = index.data(Qt.ItemDataRole.DecorationRole) is not None
            icon = max(self.view.iconSize().width(), option.decorationSize.width(), 16)
            width -= self.view.indentation() * (depth + 1) + (icon + 8 if has_icon else 0) + 8
        if width < 40 or not text:
            return base
        rect = option.fontMetrics.boundingRect(QRect(0, 0, width, 100000),
                                               int(Qt.TextFlag.TextWordWrap), text)
        return QSize(base.width(), max(base.height(), rect.height() + 6))


class ProblemsPanel(QWidget):
    """The panel: a heading and the grouped problems of every open medium."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = ProblemsModel(self)
        self.heading = QLabel(self)
        self.heading.setWordWrap(True)
        self.view = QTreeView(self)
        self.view.setObjectName("problemsView")
        self.view.setModel(self.model)
        self.view.setWordWrap(True)
        self.view.setAlternatingRowColors(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setUniformRowHeights(False)
        header = self.view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Interactive)
        # Plain words must be read in full: wrap them, never cut them off with "…".
        self.view.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.view.setItemDelegate(_WrapDelegate(self.view))
        header.sectionResized.connect(lambda *_: self.view.scheduleDelayedItemsLayout())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.heading)
        layout.addWidget(self.view)
        self.set_media([])

    def set_media(self, media: list[Medium]) -> None:
        self.model.set_media(media)
        n = self.model.problem_count()
        if not media:
            self.heading.setText("")
        elif n == 0:
            self.heading.setText(self.tr("No problems found: the disc follows the standard."))
        else:
            self.heading.setText(ntr("ProblemsPanel", "%n problem(s) found. Everything that "
                                     "could be read is listed.", n))
        self.view.setVisible(n > 0)  # no empty table when there is nothing to explain
        if 0 < n <= 50:
            self.view.expandAll()  # few problems: show each file at once
        self.view.header().resizeSection(2, 170)

    def preferred_height(self) -> int:
        """Height that shows the heading and, when there are problems, a few rows."""
        head = self.heading.sizeHint().height() + 6
        return head if self.model.problem_count() == 0 else max(head + 220, 260)


class StatusArea(QObject):
    """The main window's status bar: counts · source · progress + Cancel · problems button.

    Signals
    -------
    problems_clicked(), cancel_clicked()
    """

    problems_clicked = Signal()
    cancel_clicked = Signal()

    def __init__(self, bar: QStatusBar) -> None:
        super().__init__(bar)
        self.bar = bar
        self.counts_label = QLabel(bar)
        self.source_label = QLabel(bar)
        self.source_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problems_button = QToolButton(bar)
        self.problems_button.setAutoRaise(True)
        self.problems_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.problems_button.clicked.connect(self.problems_clicked.emit)
        self.progress = QProgressBar(bar)
        self.progress.setMaximumWidth(220)
        self.cancel_button = QToolButton(bar)
        self.cancel_button.setText(_t("Cancel"))
        self.cancel_button.clicked.connect(self.cancel_clicked.emit)
        bar.addWidget(self.counts_label)
        bar.addWidget(self.source_label, 1)
        for w in (self.progress, self.cancel_button, self.problems_button):
            bar.addPermanentWidget(w)
        self.set_busy(False)

    def set_busy(self, busy: bool) -> None:
        """Show the progress bar and Cancel while something is being read."""
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)
            self.progress.setFormat(_t("Reading…"))
        else:
            self.bar.clearMessage()

    def set_progress(self, p: Progress) -> None:
        frac = p.fraction
        if frac is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(frac * 1000))
            self.progress.setFormat(f"{p.phase} %p%")
        if p.message:
            self.bar.showMessage(p.message)

    def update(self, media: list[Medium], totals: tuple[int, int, int, int],
               problem_count: int) -> None:
        """Counts over every open medium, where they came from, and the problem count."""
        if not media:
            self.counts_label.setText(_t("No medium open"))
            self.source_label.setText("")
            self.problems_button.hide()
            return
        pats, studies, series, images = totals
        self.counts_label.setText(" · ".join((
            ntr("problems", "%n patient(s)", pats), ntr("problems", "%n study(ies)", studies),
            ntr("problems", "%n series", series), ntr("problems", "%n image(s)", images))))
        self.source_label.setText("   ".join(
            f"{m.root} ({_t('DICOMDIR') if m.source == 'dicomdir' else _t('scanned, no usable DICOMDIR')})"
            for m in media))
        worst = next((s for s in ("error", "warning", "info")
                      if any(m.worst_severity == s for m in media)), None)
        icon = severity_icon(worst) if worst else QApplication.style().standardIcon(
            QStyle.StandardPixmap.SP_DialogApplyButton)
        self.problems_button.setIcon(icon)
        self.problems_button.setText(ntr("problems", "%n problem(s)", problem_count)
                                     if problem_count else _t("No problems"))
        self.problems_button.show()
