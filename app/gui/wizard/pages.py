"""Export wizard pages that only collect choices: selection, options, destination.

Each page validates in ``validatePage()`` and writes into the wizard's ``WizardState``; nothing
here reads a file or writes anything (the USB and burner lists come from the core backends on
the TaskRunner).
"""

from __future__ import annotations

import re
from typing import Any

from PySide6.QtCore import QT_TRANSLATE_NOOP, QRegularExpression, Qt
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QTreeWidget,
    QTreeWidgetItem,
    QTreeWidgetItemIterator,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from app.core.export.options import DEFAULT_PROFILE
from app.core.imaging.sr_text import format_date, format_name
from app.core.model import Medium, Series
from app.gui.wizard.state import WizardBase, tr

MEDIA_CHOICES: list[tuple[str, str]] = [  # labels marked for lupdate, translated at use
    ("cd", QT_TRANSLATE_NOOP("ExportWizard", "CD (700 MB)")),
    ("dvd", QT_TRANSLATE_NOOP("ExportWizard", "DVD (4.7 GB)")),
    ("dvd-dl", QT_TRANSLATE_NOOP("ExportWizard", "DVD dual layer (8.5 GB)")),
    ("bd", QT_TRANSLATE_NOOP("ExportWizard", "Blu-ray disc (25 GB)")),
    ("usb", QT_TRANSLATE_NOOP("ExportWizard", "USB stick (its free space)")),
    ("folder", QT_TRANSLATE_NOOP("ExportWizard", "Folder on this computer (no size limit)")),
]
SERIES_UIDS_ROLE = Qt.ItemDataRole.UserRole + 1
FILESET_ID_RE = r"[A-Z0-9_]{0,16}"


def human_size(n: int) -> str:
    """Bytes as text with a decimal unit (discs are sold in decimal units)."""
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} bytes"


# ----------------------------------------------------------------------------- selection


class SelectionPage(QWizardPage):
    """A checkable patient → study → series tree over every open medium."""

    def __init__(self, wizard: WizardBase) -> None:
        super().__init__(wizard)
        self.wiz = wizard
        self.setTitle(tr("What to export"))
        self.setSubTitle(tr("Check the patients, studies or series to put on the new medium."))
        self.tree = QTreeWidget(self)
        self.tree.setHeaderLabels([tr("Patient / study / series"), tr("Date"), tr("Images")])
        self.tree.setAccessibleName(tr("Studies to export"))
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.header().setStretchLastSection(False)
        self.tree.setUniformRowHeights(True)
        self.tree.itemChanged.connect(self._changed)
        self.count_label = QLabel(self)
        self.all_button = QPushButton(tr("Check &all"), self)
        self.none_button = QPushButton(tr("Check &none"), self)
        self.all_button.clicked.connect(lambda: self._check_all(Qt.CheckState.Checked))
        self.none_button.clicked.connect(lambda: self._check_all(Qt.CheckState.Unchecked))
        buttons = QHBoxLayout()
        buttons.addWidget(self.count_label, 1)
        buttons.addWidget(self.all_button)
        buttons.addWidget(self.none_button)
        lay = QVBoxLayout(self)
        lay.addWidget(self.tree, 1)
        lay.addLayout(buttons)
        self._filling = False
        self._fill()

    def _fill(self) -> None:
        self._filling = True
        wanted = self.wiz.selected_uids
        several = len(self.wiz.state.media) > 1
        flags = (Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                 | Qt.ItemFlag.ItemIsUserCheckable)
        for medium in self.wiz.state.media:
            parent: Any = self.tree
            if several:
                parent = QTreeWidgetItem(self.tree, [medium.root])
                parent.setFlags(flags | Qt.ItemFlag.ItemIsAutoTristate)
                parent.setExpanded(True)
            self._fill_medium(parent, medium, wanted, flags)
        self.tree.resizeColumnToContents(1)
        self.tree.resizeColumnToContents(2)
        self._filling = False
        self._changed()

    def _fill_medium(self, parent: Any, medium: Medium, wanted: set[str] | None,
                     flags: Qt.ItemFlag) -> None:
        for p in medium.patients:
            name = format_name(p.patient_name) or tr("(no name)")
            label = f"{name} — {p.patient_id}" if p.patient_id else name
            pit = QTreeWidgetItem(parent, [label, format_date(p.birth_date), ""])
            pit.setFlags(flags | Qt.ItemFlag.ItemIsAutoTristate)
            pit.setExpanded(True)
            patient_hit = wanted is not None and p.patient_id in wanted
            for st in p.studies:
                desc = st.description or tr("(no description)")
                sit = QTreeWidgetItem(pit, [desc, format_date(st.study_date), ""])
                sit.setFlags(flags | Qt.ItemFlag.ItemIsAutoTristate)
                study_hit = patient_hit or (wanted is not None and st.study_uid in wanted)
                for se in st.series:
                    uids = [i.sop_instance_uid for i in se.instances if i.sop_instance_uid]
                    text = " ".join(x for x in (se.modality, se.series_number and
                                                f"#{se.series_number}", se.description) if x)
                    it = QTreeWidgetItem(sit, [text or tr("(series)"), "", str(len(uids))])
                    it.setFlags(flags)
                    it.setData(0, SERIES_UIDS_ROLE, uids)
                    it.setTextAlignment(2, Qt.AlignmentFlag.AlignRight)
                    hit = wanted is None or study_hit or self._series_hit(se, wanted)
                    it.setCheckState(0, Qt.CheckState.Checked if hit else Qt.CheckState.Unchecked)
                sit.setExpanded(sit.checkState(0) != Qt.CheckState.Unchecked)

    @staticmethod
    def _series_hit(se: Series, wanted: set[str]) -> bool:
        return se.series_uid in wanted or any(i.sop_instance_uid in wanted for i in se.instances)

    def _series_items(self) -> list[QTreeWidgetItem]:
        out = []
        it = QTreeWidgetItemIterator(self.tree)
        while it.value() is not None:
            item = it.value()
            if item.data(0, SERIES_UIDS_ROLE) is not None:
                out.append(item)
            it += 1
        return out

    def selected_uids(self) -> set[str]:
        """SOP Instance UIDs of the checked series."""
        out: set[str] = set()
        for item in self._series_items():
            if item.checkState(0) == Qt.CheckState.Checked:
                out.update(item.data(0, SERIES_UIDS_ROLE))
        return out

    def _check_all(self, state: Qt.CheckState) -> None:
        for i in range(self.tree.topLevelItemCount()):
            self.tree.topLevelItem(i).setCheckState(0, state)

    def _changed(self, *_: Any) -> None:
        if self._filling:
            return
        n = len(self.selected_uids())
        self.count_label.setText(tr("%1 objects checked").replace("%1", str(n)))
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # Reimplemented from QWizardPage
        return bool(self.selected_uids())

    def validatePage(self) -> bool:  # Reimplemented from QWizardPage
        uids = self.selected_uids()
        everything = {i.sop_instance_uid for m in self.wiz.state.media for i in m.instances()}
        self.wiz.state.select = None if uids >= everything else uids
        return bool(uids)


# ----------------------------------------------------------------------------- options


class OptionsPage(QWizardPage):
    """Media type and profile, icons, File-set ID, README.TXT institution and contact."""

    def __init__(self, wizard: WizardBase) -> None:
        super().__init__(wizard)
        self.wiz = wizard
        s = wizard.settings
        self.setTitle(tr("Options"))
        self.setSubTitle(tr("The kind of medium decides the size limit and the standard profile "
                            "(which image encodings the medium may hold)."))
        self.media_box = QComboBox(self)
        for key, label in MEDIA_CHOICES:
            self.media_box.addItem(tr(label), key)
        i = self.media_box.findData(s.get("default_media", "cd"))
        self.media_box.setCurrentIndex(max(0, i))
        self.profile_box = QComboBox(self)
        self.media_box.currentIndexChanged.connect(self._media_changed)
        self.icons = QCheckBox(tr("Add &icons (small previews) to the DICOMDIR"), self)
        self.span = QCheckBox(tr("&Split over several discs when it does not fit on one"), self)
        self.fileset_id = QLineEdit(self)
        self.fileset_id.setValidator(QRegularExpressionValidator(QRegularExpression(
            FILESET_ID_RE, QRegularExpression.PatternOption.CaseInsensitiveOption), self))
        self.fileset_id.textEdited.connect(self._upper)
        self.fileset_id.setPlaceholderText(tr("automatic (DB + today's date)"))
        self.fileset_id.setToolTip(tr("Up to 16 of A–Z, 0–9 and _; it is also the disc label"))
        self.institution = QLineEdit(s.get("institution"), self)
        self.institution.setPlaceholderText(tr("e.g. St. Mary's Hospital, Radiology"))
        self.contact = QLineEdit(s.get("contact"), self)
        self.contact.setPlaceholderText(tr("e.g. +44 20 7946 0000, radiology@example.org"))
        self.clash = QComboBox(self)
        self.clash.addItem(tr("Stop and tell me"), "error")
        self.clash.addItem(tr("Keep them apart (the second gets a new ID)"), "separate")
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow(tr("&Medium:"), self.media_box)
        form.addRow(tr("&Profile:"), self.profile_box)
        form.addRow("", self.icons)
        form.addRow("", self.span)
        form.addRow(tr("File-set &ID:"), self.fileset_id)
        form.addRow(QLabel(tr("<b>README.TXT on the medium</b> (remembered)"), self))
        form.addRow(tr("I&nstitution:"), self.institution)
        form.addRow(tr("&Contact:"), self.contact)
        form.addRow(tr("Two patients with one &ID:"), self.clash)
        self._fill_profiles(s.get("default_profile"))
        self.span.setEnabled(self.media_box.currentData() != "folder")

    def _upper(self, text: str) -> None:
        if text != text.upper():
            pos = self.fileset_id.cursorPosition()
            self.fileset_id.setText(text.upper())
            self.fileset_id.setCursorPosition(pos)

    def _fill_profiles(self, keep: str = "") -> None:
        from app.core.dicomdir.profiles import PROFILES

        media = self.media_box.currentData() or "folder"
        current = keep or self.profile_box.currentData() or ""
        self.profile_box.blockSignals(True)
        self.profile_box.clear()
        self.profile_box.addItem(tr("Standard for this medium (%1)")
                                 .replace("%1", DEFAULT_PROFILE[media]), "")
        for name, prof in PROFILES.items():
            self.profile_box.addItem(name, name)
            self.profile_box.setItemData(self.profile_box.count() - 1, prof.description,
                                         Qt.ItemDataRole.ToolTipRole)
        i = self.profile_box.findData(current)
        self.profile_box.setCurrentIndex(max(0, i))
        self.profile_box.blockSignals(False)

    def _media_changed(self, _i: int) -> None:
        self._fill_profiles()
        media = self.media_box.currentData()
        self.span.setEnabled(media in ("cd", "dvd", "dvd-dl", "bd", "usb"))

    def validatePage(self) -> bool:  # Reimplemented from QWizardPage
        st = self.wiz.state
        st.media_type = self.media_box.currentData() or "cd"
        st.profile = self.profile_box.currentData() or ""
        st.icons = self.icons.isChecked()
        st.span = self.span.isChecked() and self.span.isEnabled()
        st.fileset_id = self.fileset_id.text().strip().upper()
        st.institution = self.institution.text().strip()
        st.contact = self.contact.text().strip()
        st.on_id_clash = self.clash.currentData() or "error"
        if st.fileset_id and not re.fullmatch(r"[A-Z0-9_]{1,16}", st.fileset_id):
            return False
        s = self.wiz.settings
        s.set("institution", st.institution)
        s.set("contact", st.contact)
        s.set("default_media", st.media_type)
        s.set("default_profile", st.profile)
        return True


# ----------------------------------------------------------------------------- destination


class DestinationPage(QWizardPage):
    """A folder, a detected USB volume, an ISO image file or a disc burner."""

    KINDS = ("folder", "usb", "iso", "burn")

    def __init__(self, wizard: WizardBase) -> None:
        super().__init__(wizard)
        self.wiz = wizard
        self.setTitle(tr("Where to write"))
        self.setSubTitle(tr("Nothing is written until you confirm the summary."))
        self.group = QButtonGroup(self)
        self.radios: dict[str, QRadioButton] = {}
        labels = {"folder": tr("&Folder:"), "usb": tr("&USB stick:"),
                  "iso": tr("ISO &image file:"), "burn": tr("&Disc burner:")}
        for kind in self.KINDS:
            rb = QRadioButton(labels[kind], self)
            self.radios[kind] = rb
            self.group.addButton(rb)
            rb.toggled.connect(self._kind_changed)
        self.folder = QLineEdit(self)
        self.folder.setPlaceholderText(tr("an empty folder, or one holding an earlier export"))
        self.folder_button = QPushButton(tr("Bro&wse…"), self)
        self.folder_button.clicked.connect(self._browse_folder)
        self.usb_box = QComboBox(self)
        self.usb_refresh = QPushButton(tr("&Refresh"), self)
        self.usb_refresh.clicked.connect(self.refresh)
        self.iso = QLineEdit(self)
        self.iso.setPlaceholderText(tr("e.g. patient-disc.iso"))
        self.iso_button = QPushButton(tr("&Save as…"), self)
        self.iso_button.clicked.connect(self._browse_iso)
        self.burn_box = QComboBox(self)
        self.burn_refresh = QPushButton(tr("R&efresh"), self)
        self.burn_refresh.clicked.connect(self.refresh)
        self.force = QCheckBox(tr("Re&place a medium that is already there"), self)
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        grid = QGridLayout(self)
        rows = [("folder", self.folder, self.folder_button), ("usb", self.usb_box, self.usb_refresh),
                ("iso", self.iso, self.iso_button), ("burn", self.burn_box, self.burn_refresh)]
        for r, (kind, field, button) in enumerate(rows):
            grid.addWidget(self.radios[kind], r, 0)
            grid.addWidget(field, r, 1)
            grid.addWidget(button, r, 2)
        order = [w for kind, field, button in rows for w in (self.radios[kind], field, button)]
        for a, b in zip(order, order[1:] + [self.force], strict=True):
            QWidget.setTabOrder(a, b)  # row by row: choice, its field, its button
        grid.addWidget(self.force, len(rows), 1, 1, 2)
        grid.addWidget(self.note, len(rows) + 1, 0, 1, 3)
        grid.setColumnStretch(1, 1)
        grid.setRowStretch(len(rows) + 2, 1)
        for w in (self.folder, self.iso):
            w.textChanged.connect(lambda _t: self.completeChanged.emit())
        self.folder.textEdited.connect(lambda _t: self._choose("folder"))
        self.iso.textEdited.connect(lambda _t: self._choose("iso"))
        self.usb_box.activated.connect(lambda _i: self._choose("usb"))
        self.burn_box.activated.connect(lambda _i: self._choose("burn"))
        self.usb_box.currentIndexChanged.connect(lambda _i: self.completeChanged.emit())
        self.burn_box.currentIndexChanged.connect(lambda _i: self.completeChanged.emit())
        self._pending = 0
        self.radios["folder"].setChecked(True)

    def initializePage(self) -> None:  # Reimplemented from QWizardPage
        media = self.wiz.state.media_type
        if media == "usb" and self.radios["folder"].isChecked():
            self.radios["usb"].setChecked(True)
        elif media in ("cd", "dvd", "dvd-dl", "bd") and self.radios["folder"].isChecked() \
                and not self.folder.text():
            self.radios["iso"].setChecked(True)
        self.refresh()

    def refresh(self) -> None:
        """List USB volumes and burners through the core backends, off the GUI thread."""
        from app.core.devices import burn, media

        self._pending = 2
        self.note.setText(tr("Looking for USB sticks and disc burners…"))
        t1 = self.wiz.runner.run_plain(media.list_volumes)
        t1.finished.connect(self._volumes)
        t1.failed.connect(lambda _m: self._volumes([]))
        t2 = self.wiz.runner.run_plain(burn.list_burners)
        t2.finished.connect(self._burners)
        t2.failed.connect(lambda _m: self._burners([]))

    def _settled(self) -> None:
        self._pending = max(0, self._pending - 1)
        if not self._pending:
            self.note.setText("")
        self._kind_changed()
        self.completeChanged.emit()

    def _volumes(self, volumes: list[Any]) -> None:
        keep = self.usb_box.currentData()
        self.usb_box.clear()
        for v in volumes:
            if v.kind != "usb" or v.read_only:
                continue
            label = v.label or v.mount_point
            self.usb_box.addItem(tr("%1 — %2 free (%3)").replace("%1", label)
                                 .replace("%2", human_size(v.free_bytes))
                                 .replace("%3", v.mount_point), v.mount_point)
        if not self.usb_box.count():
            self.usb_box.addItem(tr("(no USB stick found)"), "")
        i = self.usb_box.findData(keep)
        self.usb_box.setCurrentIndex(max(0, i))
        self._settled()

    def _burners(self, burners: list[Any]) -> None:
        keep = self.burn_box.currentData() or self.wiz.settings.get("burner")
        self.burn_box.clear()
        for b in burners:
            state = str(getattr(b, "media_state", "") or "")
            text = tr("%1 (%2)").replace("%1", b.name or b.device).replace(
                "%2", f"{b.media_type} {state}".strip() or b.device)
            self.burn_box.addItem(text, b.device if b.can_write else "")
        if not self.burn_box.count():
            self.burn_box.addItem(tr("(no disc burner found)"), "")
        i = self.burn_box.findData(keep)
        self.burn_box.setCurrentIndex(max(0, i))
        self._settled()

    def kind(self) -> str:
        return next((k for k, rb in self.radios.items() if rb.isChecked()), "folder")

    def _kind_changed(self, *_: Any) -> None:
        self.completeChanged.emit()

    def _choose(self, kind: str) -> None:
        """Using a destination's field selects that destination."""
        self.radios[kind].setChecked(True)

    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, tr("Export to folder"), self.folder.text())
        if path:
            self.folder.setText(path)
            self._choose("folder")

    def _browse_iso(self) -> None:
        path, _f = QFileDialog.getSaveFileName(self, tr("Save ISO image"), self.iso.text(),
                                               tr("ISO images (*.iso)"))
        if path:
            self.iso.setText(path if path.lower().endswith(".iso") else path + ".iso")
            self._choose("iso")

    def value(self) -> str:
        kind = self.kind()
        if kind == "folder":
            return self.folder.text().strip()
        if kind == "iso":
            return self.iso.text().strip()
        box = self.usb_box if kind == "usb" else self.burn_box
        return str(box.currentData() or "")

    def isComplete(self) -> bool:  # Reimplemented from QWizardPage
        return bool(self.value())

    def validatePage(self) -> bool:  # Reimplemented from QWizardPage
        st = self.wiz.state
        st.dest_kind = self.kind()
        value = self.value()
        if not value:
            return False
        st.folder = value if st.dest_kind == "folder" else st.folder
        st.usb = value if st.dest_kind == "usb" else ""
        st.iso = value if st.dest_kind == "iso" else ""
        st.burner = value if st.dest_kind == "burn" else ""
        st.force = self.force.isChecked()
        if st.dest_kind == "burn":
            self.wiz.settings.set("burner", value)
        return True
