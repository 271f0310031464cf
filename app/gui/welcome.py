"""The welcome page, shown while no medium is open."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QStyle, QVBoxLayout, QWidget

from app import __version__


class WelcomePage(QWidget):
    """A short explanation and the ways to open something.

    Signals
    -------
    sample_requested()
        "Open sample disc" was pressed.
    folder_requested(), dicomdir_requested(), iso_requested()
        One of the "Open …" buttons was pressed.
    """

    sample_requested = Signal()
    folder_requested = Signal()
    dicomdir_requested = Signal()
    iso_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("welcomePage")
        outer = QVBoxLayout(self)
        outer.addStretch(2)
        box = QWidget(self)
        box.setFixedWidth(560)  # a fixed width lets the wrapped text get its full height
        layout = QVBoxLayout(box)
        layout.setSpacing(10)
        title = QLabel(self.tr("Welcome to DiscBridge"), box)
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.8)
        font.setBold(True)
        title.setFont(font)
        layout.addWidget(title)
        text = QLabel(self.tr(
            "Insert a patient CD, DVD or USB stick: it appears under Sources on the left. "
            "You can also open a folder, a DICOMDIR file or a disc image (.iso), or drop one "
            "onto this window. DiscBridge lists every image it can find, explains what is "
            "wrong with the disc, and never changes it."), box)
        text.setWordWrap(True)
        m = layout.contentsMargins()
        # Aligned widgets get their size hint, which ignores wrapping: reserve the real height.
        text.setMinimumHeight(text.heightForWidth(box.width() - m.left() - m.right()))
        layout.addWidget(text)
        style = self.style()
        self.sample_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DriveCDIcon),
            self.tr("Open sample disc"), box)
        self.sample_button.setDefault(True)
        self.folder_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DirOpenIcon),
            self.tr("Open folder…"), box)
        self.dicomdir_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_FileIcon),
            self.tr("Open DICOMDIR…"), box)
        self.iso_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DriveDVDIcon),
            self.tr("Open ISO image…"), box)
        for button, signal in ((self.sample_button, self.sample_requested),
                               (self.folder_button, self.folder_requested),
                               (self.dicomdir_button, self.dicomdir_requested),
                               (self.iso_button, self.iso_requested)):
            button.setMinimumHeight(button.sizeHint().height() + 8)
            button.setStyleSheet("text-align: left; padding: 4px 12px;")
            button.clicked.connect(signal.emit)
            layout.addWidget(button)
        version = QLabel(self.tr("Version %1").replace("%1", __version__), box)
        version.setEnabled(False)
        layout.addWidget(version)
        outer.addWidget(box, 0, Qt.AlignmentFlag.AlignHCenter)
        outer.addStretch(3)
