"""The viewer's corner overlay: what it says (from the file's header) and how it is painted.

Values come from the displayed file (``ImageInfo``, read by the loader), falling back to the
medium's record only where the file has none: the file wins (issue 2, "never trust the DICOMDIR
over the file").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QCoreApplication, QPoint, QRect, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter

from app.core.imaging.sr_text import format_date, format_name


def tr(text: str) -> str:
    return QCoreApplication.translate("ViewerOverlay", text)


@dataclass
class ImageInfo:
    """Header values of one displayed object, for the overlay (decoded strings, '' if absent)."""

    patient_name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    study_date: str = ""
    study_description: str = ""
    series_number: str = ""
    series_description: str = ""
    modality: str = ""
    instance_number: str = ""
    sop_class: str = ""
    transfer_syntax: str = ""
    rows: int = 0
    columns: int = 0
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class ViewState:
    """What the user did to the view (changes with every interaction)."""

    index: int = 0  # image n (0-based) in the series
    count: int = 0  # N
    frame: int = 0  # 0-based frame within a multi-frame instance
    frames: int = 1
    center: float | None = None
    width: float | None = None
    zoom: float = 1.0
    invert: bool = False
    preset: str = ""
    playing: bool = False
    loading: bool = False


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 else f"{v:.2f}".rstrip("0").rstrip(".")


def corner_texts(info: ImageInfo, state: ViewState, color: bool = False) -> dict[str, list[str]]:
    """The four corners' lines: keys ``tl``, ``tr``, ``bl``, ``br``."""
    tl = [format_name(info.patient_name) or tr("(no name)")]
    if info.patient_id:
        tl.append(tr("ID %1").replace("%1", info.patient_id))
    if info.birth_date:
        tl.append(tr("Born %1").replace("%1", format_date(info.birth_date)))
    trc = []
    if info.study_date:
        trc.append(tr("Study %1").replace("%1", format_date(info.study_date)))
    if info.study_description:
        trc.append(info.study_description)
    series = " ".join(x for x in (info.modality, info.series_number and f"#{info.series_number}",
                                  info.series_description) if x)
    bl = [series] if series else []
    bl.append(tr("Image %1/%2").replace("%1", str(state.index + 1)).replace("%2", str(state.count)))
    if state.frames > 1:
        bl.append(tr("Frame %1/%2").replace("%1", str(state.frame + 1))
                  .replace("%2", str(state.frames)))
    br: list[str] = []
    if state.loading:
        br.append(tr("Loading…"))
    if state.playing:
        br.append(tr("Playing"))
    if not color and state.center is not None and state.width is not None:
        wl = tr("W %1 L %2").replace("%1", _num(state.width)).replace("%2", _num(state.center))
        if state.preset:
            wl += f" ({state.preset})"
        br.append(wl)
    br.append(tr("Zoom %1%").replace("%1", f"{state.zoom * 100:.0f}"))
    if state.invert:
        br.append(tr("Inverted"))
    if info.rows and info.columns:
        br.append(f"{info.columns}×{info.rows}")
    return {"tl": tl, "tr": trc, "bl": bl, "br": br}


def paint_overlay(painter: QPainter, rect: QRect, corners: dict[str, list[str]]) -> None:
    """Draw the corner texts inside ``rect``, light text with a dark shadow (readable on any
    image)."""
    font = QFont(painter.font())
    font.setPointSizeF(max(8.0, font.pointSizeF()))
    painter.setFont(font)
    fm = QFontMetrics(font)
    line_h = fm.height()
    margin = 8
    for key, lines in corners.items():
        if not lines:
            continue
        top = key[0] == "t"
        left = key[1] == "l"
        y0 = rect.top() + margin + fm.ascent() if top else (
            rect.bottom() - margin - fm.descent() - line_h * (len(lines) - 1))
        for i, text in enumerate(lines):
            text = fm.elidedText(text, Qt.TextElideMode.ElideRight, max(40, rect.width() // 2 - 16))
            w = fm.horizontalAdvance(text)
            x = rect.left() + margin if left else rect.right() - margin - w
            pos = QPoint(x, y0 + i * line_h)
            painter.setPen(QColor(0, 0, 0, 220))
            painter.drawText(pos + QPoint(1, 1), text)
            painter.setPen(QColor(235, 235, 200))
            painter.drawText(pos, text)
