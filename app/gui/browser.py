"""The patient → study → series tree: a QAbstractItemModel adapting the core ``Medium`` objects.

Design (STYLE.md 10): the model owns no domain state. It keeps one small ``_Node`` per patient,
study and series — never per instance — and builds a node's children only when a view first asks
for them, so a 20,000-record medium costs a few hundred nodes at most until it is expanded.
Instance counts are computed once per series, study and patient when a medium is added. Several
media can be open: their patients are listed side by side (the *Medium* column tells them apart).

``BrowserProxy`` sorts (by a numeric/ISO sort key, not the display text) and filters top-level
rows by patient name or ID; the studies and series of a matching patient are always shown.
``PatientTree`` is the widget: the search box over the tree view.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QT_TRANSLATE_NOOP,
    QAbstractItemModel,
    QCoreApplication,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHeaderView,
    QLineEdit,
    QStyle,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from app.core.model import Medium, Patient, Series, Study

Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()  # default 'parent' argument (never mutated)

NodeRole = Qt.ItemDataRole.UserRole + 1  # the core object (Patient, Study or Series)
KindRole = Qt.ItemDataRole.UserRole + 2  # "patient", "study" or "series"
MediumRole = Qt.ItemDataRole.UserRole + 3  # the Medium the row belongs to
SortRole = Qt.ItemDataRole.UserRole + 4  # a value that sorts correctly
CountRole = Qt.ItemDataRole.UserRole + 5  # number of instances below the row (int)
SearchRole = Qt.ItemDataRole.UserRole + 6  # lower-case text the search box matches

COL_NAME, COL_ID, COL_DATE, COL_MODALITY, COL_COUNT, COL_MEDIUM = range(6)
COLUMNS = (  # translated in headerData
    QT_TRANSLATE_NOOP("browser", "Name / description"), QT_TRANSLATE_NOOP("browser", "ID"),
    QT_TRANSLATE_NOOP("browser", "Date"), QT_TRANSLATE_NOOP("browser", "Modality"),
    QT_TRANSLATE_NOOP("browser", "Images"), QT_TRANSLATE_NOOP("browser", "Medium"))


def _t(text: str) -> str:
    return QCoreApplication.translate("browser", text)


def format_person_name(pn: str | None) -> str:
    """``Müller^Hans^^Dr`` → ``Müller, Hans``; ideographic/phonetic groups after ``=`` kept apart."""
    if not pn:
        return ""
    groups = pn.split("=")
    parts = [p.strip() for p in groups[0].split("^")]
    family, given = (parts + ["", ""])[:2]
    text = f"{family}, {given}" if family and given else (family or given)
    extra = [g.replace("^", " ").strip() for g in groups[1:] if g.strip("^ ")]
    return " ".join([text, *(f"({g})" for g in extra)]).strip() or pn


def format_date(da: str | None) -> str:
    """``20240102`` → ``2024-01-02``; anything else is shown as recorded."""
    if da and len(da) == 8 and da.isdigit():
        return f"{da[:4]}-{da[4:6]}-{da[6:]}"
    return da or ""


def format_time(tm: str | None) -> str:
    if tm and len(tm) >= 4 and tm[:4].isdigit():
        return f"{tm[:2]}:{tm[2:4]}"
    return ""


def _num(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else float("inf")
    except ValueError:
        return float("inf")


class _Node:
    """One row: a patient, study or series, with its parent and (lazily) its children."""

    __slots__ = ("kind", "obj", "medium", "parent", "row", "_children", "count", "modalities")

    def __init__(self, kind: str, obj: Patient | Study | Series, medium: Medium,
                 parent: _Node | None, row: int, count: int, modalities: str) -> None:
        self.kind = kind
        self.obj = obj
        self.medium = medium
        self.parent = parent
        self.row = row
        self._children: list[_Node] | None = None
        self.count = count
        self.modalities = modalities

    def child_objects(self) -> list[Any]:
        if self.kind == "patient":
            return self.obj.studies  # type: ignore[union-attr]
        if self.kind == "study":
            return self.obj.series  # type: ignore[union-attr]
        return []

    def children(self, counts: dict[int, int], mods: dict[int, str]) -> list[_Node]:
        if self._children is None:
            kind = {"patient": "study", "study": "series"}.get(self.kind, "")
            self._children = [
                _Node(kind, o, self.medium, self, r, counts.get(id(o), 0), mods.get(id(o), ""))
                for r, o in enumerate(self.child_objects())]
        return self._children

    def release(self) -> None:
        """Drop the links to children and parent (recursively)."""
        for child in self._children or ():
            child.release()
        self._children = None
        self.parent = None

    def child_count(self) -> int:
        return len(self.child_objects()) if self._children is None else len(self._children)


class MediumTreeModel(QAbstractItemModel):
    """Patients of every open medium, their studies and series (no instance rows)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._media: list[Medium] = []
        self._top: list[_Node] = []
        self._counts: dict[int, int] = {}  # id(core object) -> instances below it
        self._mods: dict[int, str] = {}  # id(patient/study/series) -> "CT, MR"
        self._keep: list[Any] = []  # the core objects whose id() is used as a key
        style = QApplication.style()
        self._icons = {
            "patient": style.standardIcon(QStyle.StandardPixmap.SP_DirHomeIcon),
            "study": style.standardIcon(QStyle.StandardPixmap.SP_DirIcon),
            "series": style.standardIcon(QStyle.StandardPixmap.SP_FileIcon),
        }

    # ----- content -------------------------------------------------------------------------
    @property
    def media(self) -> list[Medium]:
        return list(self._media)

    def _precompute(self, medium: Medium) -> None:
        counts, mods = self._counts, self._mods
        for pat in medium.patients:
            pat_total = 0
            pat_mods: dict[str, None] = {}
            for st in pat.studies:
                st_total = 0
                st_mods: dict[str, None] = {}
                for se in st.series:
                    n = len(se.instances)
                    counts[id(se)] = n
                    mods[id(se)] = se.modality or ""
                    st_total += n
                    if se.modality:
                        st_mods[se.modality] = None
                counts[id(st)] = st_total
                mods[id(st)] = ", ".join(st_mods)
                pat_total += st_total
                pat_mods.update(st_mods)
            counts[id(pat)] = pat_total
            mods[id(pat)] = ", ".join(pat_mods)
        self._keep.append(medium)

    def add_medium(self, medium: Medium) -> None:
        """Add a medium's patients (a medium already open with the same root is replaced)."""
        for old in list(self._media):
            if old.root == medium.root:
                self.remove_medium(old)
        self._precompute(medium)
        first = len(self._top)
        if medium.patients:
            self.beginInsertRows(QModelIndex(), first, first + len(medium.patients) - 1)
        self._media.append(medium)
        for i, pat in enumerate(medium.patients):
            self._top.append(_Node("patient", pat, medium, None, first + i,
                                   self._counts.get(id(pat), 0), self._mods.get(id(pat), "")))
        if medium.patients:
            self.endInsertRows()

    def remove_medium(self, medium: Medium) -> None:
        if medium not in self._media:
            return
        rows = [n.row for n in self._top if n.medium is medium]
        if rows:
            self.beginRemoveRows(QModelIndex(), rows[0], rows[-1])
        self._media.remove(medium)
        for n in self._top:
            if n.medium is medium:
                n.release()  # break parent ↔ children cycles: freed by reference counting
        self._top = [n for n in self._top if n.medium is not medium]
        for r, n in enumerate(self._top):
            n.row = r
        self._keep = [m for m in self._keep if m is not medium]
        for pat in medium.patients:  # drop its precomputed values
            for st in pat.studies:
                for se in st.series:
                    self._counts.pop(id(se), None)
                    self._mods.pop(id(se), None)
                self._counts.pop(id(st), None)
                self._mods.pop(id(st), None)
            self._counts.pop(id(pat), None)
            self._mods.pop(id(pat), None)
        if rows:
            self.endRemoveRows()

    def clear(self) -> None:
        self.beginResetModel()
        for n in self._top:
            n.release()
        self._media, self._top, self._keep = [], [], []
        self._counts.clear()
        self._mods.clear()
        self.endResetModel()

    def node(self, index: Index) -> _Node | None:
        return index.internalPointer() if index.isValid() else None  # type: ignore[no-any-return]

    def count_of(self, obj: Patient | Study | Series) -> int:
        """Instances below a patient, study or series (precomputed)."""
        return self._counts.get(id(obj), 0)

    def totals(self) -> tuple[int, int, int, int]:
        """(patients, studies, series, instances) over every open medium."""
        pats = len(self._top)
        studies = sum(len(n.obj.studies) for n in self._top)  # type: ignore[union-attr]
        series = sum(len(st.series) for n in self._top for st in n.obj.studies)  # type: ignore[union-attr]
        return pats, studies, series, sum(n.count for n in self._top)

    def index_of(self, obj: Patient | Study | Series) -> QModelIndex:
        """The index of a core object (builds the nodes on the way). Invalid when not listed."""
        for top in self._top:
            if top.obj is obj:
                return self.createIndex(top.row, 0, top)
            pat = top.obj
            for st_row, st in enumerate(pat.studies):  # type: ignore[union-attr]
                if st is obj or any(se is obj for se in st.series):
                    st_node = top.children(self._counts, self._mods)[st_row]
                    if st is obj:
                        return self.createIndex(st_row, 0, st_node)
                    for se_node in st_node.children(self._counts, self._mods):
                        if se_node.obj is obj:
                            return self.createIndex(se_node.row, 0, se_node)
        return QModelIndex()

    # ----- QAbstractItemModel --------------------------------------------------------------
    def index(self, row: int, column: int, parent: Index = _ROOT) -> QModelIndex:
        """Reimplemented from QAbstractItemModel.index."""
        if row < 0 or column < 0 or column >= len(COLUMNS):
            return QModelIndex()
        if not parent.isValid():
            if row >= len(self._top):
                return QModelIndex()
            return self.createIndex(row, column, self._top[row])
        pnode: _Node = parent.internalPointer()
        kids = pnode.children(self._counts, self._mods)
        if row >= len(kids):
            return QModelIndex()
        return self.createIndex(row, column, kids[row])

    def parent(self, index: Index = _ROOT) -> QModelIndex:  # type: ignore[override]
        """Reimplemented from QAbstractItemModel.parent."""
        if not index.isValid():
            return QModelIndex()
        node: _Node = index.internalPointer()
        if node.parent is None:
            return QModelIndex()
        return self.createIndex(node.parent.row, 0, node.parent)

    def rowCount(self, parent: Index = _ROOT) -> int:
        """Reimplemented from QAbstractItemModel.rowCount."""
        if not parent.isValid():
            return len(self._top)
        if parent.column() != 0:
            return 0
        node: _Node = parent.internalPointer()
        return node.child_count()

    def hasChildren(self, parent: Index = _ROOT) -> bool:
        """Reimplemented from QAbstractItemModel.hasChildren (no child nodes are built)."""
        return self.rowCount(parent) > 0

    def columnCount(self, parent: Index = _ROOT) -> int:
        """Reimplemented from QAbstractItemModel.columnCount."""
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Reimplemented from QAbstractItemModel.headerData."""
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return _t(COLUMNS[section])
        if role == Qt.ItemDataRole.TextAlignmentRole and section == COL_COUNT:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        """Reimplemented from QAbstractItemModel.flags."""
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Reimplemented from QAbstractItemModel.data."""
        if not index.isValid():
            return None
        node: _Node = index.internalPointer()
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(node, col)
        if role == SortRole:
            return self._sort_key(node, col)
        if role == NodeRole:
            return node.obj
        if role == KindRole:
            return node.kind
        if role == MediumRole:
            return node.medium
        if role == CountRole:
            return node.count
        if role == SearchRole:
            if node.kind != "patient":
                return ""
            pat: Patient = node.obj  # type: ignore[assignment]
            return f"{pat.patient_name or ''} {format_person_name(pat.patient_name)} " \
                   f"{pat.patient_id or ''}".lower()
        if role == Qt.ItemDataRole.DecorationRole and col == COL_NAME:
            return self._icons.get(node.kind, QIcon())
        if role == Qt.ItemDataRole.TextAlignmentRole and col == COL_COUNT:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(node)
        return None

    def _display(self, node: _Node, col: int) -> str:
        obj = node.obj
        if col == COL_COUNT:
            return str(node.count)
        if col == COL_MODALITY:
            return node.modalities
        if col == COL_MEDIUM:
            return node.medium.root
        if isinstance(obj, Patient):
            if col == COL_NAME:
                return format_person_name(obj.patient_name) or _t("(no name)")
            if col == COL_ID:
                return obj.patient_id or ""
            if col == COL_DATE:
                return format_date(obj.birth_date)
        elif isinstance(obj, Study):
            if col == COL_NAME:
                return obj.description or _t("Study")
            if col == COL_ID:
                return obj.accession or obj.study_id or ""
            if col == COL_DATE:
                return " ".join(x for x in (format_date(obj.study_date),
                                            format_time(obj.study_time)) if x)
        elif isinstance(obj, Series):
            if col == COL_NAME:
                num = f"{obj.series_number} · " if obj.series_number else ""
                return f"{num}{obj.description or _t('Series')}"
            if col == COL_ID:
                return obj.series_number or ""
            if col == COL_DATE:
                return format_date(obj.attrs.get("SeriesDate"))
        return ""

    def _sort_key(self, node: _Node, col: int) -> Any:
        obj = node.obj
        if col == COL_COUNT:
            return node.count
        if isinstance(obj, Series) and col in (COL_NAME, COL_ID):
            return _num(obj.series_number)
        if isinstance(obj, Study) and col == COL_DATE:
            return f"{obj.study_date or ''}{obj.study_time or ''}"
        if isinstance(obj, Patient) and col == COL_DATE:
            return obj.birth_date or ""
        return self._display(node, col).casefold()

    def _tooltip(self, node: _Node) -> str:
        obj = node.obj
        if isinstance(obj, Patient):
            return (f"{obj.patient_name or ''}\n{_t('Patient ID')}: {obj.patient_id or '-'}\n"
                    f"{_t('Born')}: {format_date(obj.birth_date) or '-'}  "
                    f"{_t('Sex')}: {obj.sex or '-'}\n{node.medium.root}")
        if isinstance(obj, Study):
            return (f"{obj.description or ''}\n{_t('Study date')}: "
                    f"{format_date(obj.study_date) or '-'}\n{_t('Accession')}: "
                    f"{obj.accession or '-'}  {_t('Study ID')}: {obj.study_id or '-'}")
        if isinstance(obj, Series):
            return (f"{obj.modality or ''} {obj.description or ''}\n"
                    f"{_t('Series number')}: {obj.series_number or '-'}  "
                    f"{_t('Images')}: {node.count}")
        return ""


class BrowserProxy(QSortFilterProxyModel):
    """Sorts by SortRole; the search text matches patient name (any spelling order) or ID."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setSortRole(SortRole)
        self.setDynamicSortFilter(True)
        self._terms: list[str] = []

    def set_search(self, text: str) -> None:
        """Show only patients whose name or ID contains every word of ``text``."""
        terms = [t for t in text.replace("^", " ").replace(",", " ").lower().split() if t]
        if terms != self._terms:
            if hasattr(self, "beginFilterChange"):  # Qt ≥ 6.9
                self.beginFilterChange()
                self._terms = terms
                self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
            else:
                self._terms = terms
                self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        """Reimplemented from QSortFilterProxyModel.filterAcceptsRow (top level only)."""
        if source_parent.isValid() or not self._terms:
            return True
        idx = self.sourceModel().index(source_row, 0, source_parent)
        hay = idx.data(SearchRole) or ""
        return all(t in hay for t in self._terms)

    def lessThan(self, left: Index, right: Index) -> bool:
        """Reimplemented from QSortFilterProxyModel.lessThan (mixed key types never raise)."""
        a, b = left.data(SortRole), right.data(SortRole)
        try:
            return bool(a < b)
        except TypeError:
            return str(a) < str(b)


class PatientTree(QWidget):
    """The search box over the patient → study → series tree view.

    Owns the model and the proxy; several media may be listed (the Medium column then shows).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = MediumTreeModel(self)
        self.proxy = BrowserProxy(self)
        self.proxy.setSourceModel(self.model)
        self.search = QLineEdit(self)
        self.search.setObjectName("search")
        self.search.setPlaceholderText(self.tr("Search patient name or ID  (Ctrl+F)"))
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName(self.tr("Search patient name or ID"))
        self.search.textChanged.connect(self.proxy.set_search)
        self.view = QTreeView(self)
        self.view.setObjectName("patientTree")
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(COL_NAME, Qt.SortOrder.AscendingOrder)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setAccessibleName(self.tr("Patients, studies and series"))
        header = self.view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
        fm = self.view.fontMetrics()
        for col, sample in ((COL_ID, "0000000000"), (COL_DATE, "0000-00-00 00:00"),
                            (COL_MODALITY, "CT, MR, US"), (COL_COUNT, "Images"),
                            (COL_MEDIUM, "/media/cdrom0/xx")):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(col, fm.horizontalAdvance(sample) + 18)
        self.view.setColumnHidden(COL_MEDIUM, True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.search)
        layout.addWidget(self.view)
        self.model.rowsInserted.connect(self._media_changed)
        self.model.rowsRemoved.connect(self._media_changed)
        self.model.modelReset.connect(self._media_changed)

    def _media_changed(self, *_: Any) -> None:
        self.view.setColumnHidden(COL_MEDIUM, len(self.model.media) < 2)

    def select_first_of(self, medium: Medium) -> None:
        """Make the medium's first patient (in sort order) current and expand it: the thumbnail
        grid then shows the series of all of its studies."""
        for row in range(self.proxy.rowCount()):
            idx = self.proxy.index(row, 0)
            if idx.data(MediumRole) is medium:
                self.view.expand(idx)
                self.view.selectionModel().setCurrentIndex(
                    idx, QItemSelectionModel.SelectionFlag.ClearAndSelect
                    | QItemSelectionModel.SelectionFlag.Rows)
                self.view.scrollTo(idx)
                return

    def current_medium(self) -> Medium | None:
        """The medium of the current row (else the last opened one)."""
        idx = self.view.currentIndex()
        medium = idx.data(MediumRole) if idx.isValid() else None
        if medium is None and self.model.media:
            return self.model.media[-1]
        return medium  # type: ignore[no-any-return]

    def selected_objects(self) -> list[Patient | Study | Series]:
        rows = self.view.selectionModel().selectedRows(0)
        return [r.data(NodeRole) for r in rows if r.data(NodeRole) is not None]

    def selected_uids(self) -> set[str] | None:
        """SOP Instance UIDs below the selected rows (None when nothing is selected)."""
        objs = self.selected_objects()
        if not objs:
            return None
        uids: set[str] = set()
        for obj in objs:
            insts = obj.instances if isinstance(obj, Series) else obj.instances()
            uids.update(i.sop_instance_uid for i in insts if i.sop_instance_uid)
        return uids
