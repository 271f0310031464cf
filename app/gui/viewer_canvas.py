"""The viewer's image surface: paints one 8-bit image with zoom and pan, and the corner overlay.

It owns no DICOM logic: :class:`app.gui.viewer.ViewerWidget` gives it a ready ``uint8`` array
(from ``imaging.to_display``) and the overlay lines. Mouse gestures are turned into signals
(slice scroll, window/level drag) or handled here (zoom about the cursor, pan).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.gui.viewer_overlay import paint_overlay

MIN_ZOOM, MAX_ZOOM = 0.05, 32.0


def array_to_qimage(pixels: np.ndarray) -> QImage:
    """A deep-copied QImage of an HxW (grey) or HxWx3 (RGB) uint8 array."""
    a = np.ascontiguousarray(pixels, dtype=np.uint8)
    h, w = a.shape[:2]
    if a.ndim == 3:
        img = QImage(a.data, w, h, a.strides[0], QImage.Format.Format_RGB888)
    else:
        img = QImage(a.data, w, h, a.strides[0], QImage.Format.Format_Grayscale8)
    return img.copy()  # QImage does not own the numpy buffer: copy before it goes away


class ImageCanvas(QWidget):
    """Paints :attr:`image` scaled by :attr:`zoom` and shifted by :attr:`pan` (widget pixels).

    Signals
    -------
    scroll_requested(int)
        Mouse wheel without Ctrl: +1 next image, -1 previous.
    window_dragged(float, float)
        Right-drag in widget pixels (dx → width, dy → level).
    view_changed()
        Zoom or pan changed (the overlay shows the zoom).
    """

    scroll_requested = Signal(int)
    window_dragged = Signal(float, float)
    view_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 160)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.image: QImage | None = None
        self.zoom = 1.0
        self.pan = QPointF(0, 0)
        self.aspect = 1.0  # displayed height / width of one pixel (Pixel Spacing)
        self.fit_mode = True  # re-fit on resize and on a new image size until the user zooms
        self.corners: dict[str, list[str]] = {}
        self._drag_button: Qt.MouseButton | None = None
        self._drag_last = QPointF()
        self._wheel_accum = 0

    # ----- content --------------------------------------------------------------------------
    def set_pixels(self, pixels: np.ndarray | None, aspect: float = 1.0) -> None:
        """Show a new uint8 image (None: blank). Keeps zoom and pan unless in fit mode or the
        image size changed."""
        old = self.image.size() if self.image is not None else None
        self.image = array_to_qimage(pixels) if pixels is not None else None
        self.aspect = aspect if 0.01 < aspect < 100 else 1.0
        if self.image is not None and (self.fit_mode or old != self.image.size()):
            self.fit()
        self.update()

    def set_corners(self, corners: dict[str, list[str]]) -> None:
        self.corners = corners
        self.update()

    # ----- geometry -------------------------------------------------------------------------
    def fit(self) -> None:
        """Fit the whole image into the widget, centred."""
        self.fit_mode = True
        if self.image is not None and not self.image.isNull():
            w, h = self.image.width(), self.image.height() * self.aspect
            self.zoom = max(MIN_ZOOM, min(self.width() / w, self.height() / h))
        self.pan = QPointF(0, 0)
        self.view_changed.emit()
        self.update()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        """Multiply the zoom by ``factor``, keeping ``anchor`` (widget coordinates) fixed."""
        new = max(MIN_ZOOM, min(MAX_ZOOM, self.zoom * factor))
        if anchor is None:
            anchor = QPointF(self.width() / 2, self.height() / 2)
        centre = QPointF(self.width() / 2, self.height() / 2) + self.pan
        # The image point under the anchor stays under it.
        self.pan = anchor - (anchor - centre) * (new / self.zoom) - QPointF(self.width() / 2,
                                                                               self.height() / 2)
        self.zoom = new
        self.fit_mode = False
        self.view_changed.emit()
        self.update()

    def image_rect(self) -> QRectF:
        """Where the image is drawn, in widget coordinates."""
        if self.image is None:
            return QRectF()
        w, h = self.image.width() * self.zoom, self.image.height() * self.zoom * self.aspect
        cx, cy = self.width() / 2 + self.pan.x(), self.height() / 2 + self.pan.y()
        return QRectF(cx - w / 2, cy - h / 2, w, h)

    def sizeHint(self) -> QSize:  # Reimplemented from QWidget.sizeHint
        return QSize(640, 560)

    # ----- painting ---------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # Reimplemented from QWidget.paintEvent
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        if self.image is not None:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom < 8.0)
            p.drawImage(self.image_rect(), self.image)
        paint_overlay(p, self.rect(), self.corners)
        p.end()

    def resizeEvent(self, event: QResizeEvent) -> None:  # Reimplemented from QWidget
        super().resizeEvent(event)
        if self.fit_mode:
            self.fit()

    # ----- input ------------------------------------------------------------------------------
    def wheelEvent(self, event: QWheelEvent) -> None:  # Reimplemented from QWidget.wheelEvent
        delta = event.angleDelta().y()
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            if delta:
                self.zoom_by(1.15 ** (delta / 120), event.position())
        else:
            self._wheel_accum += delta
            steps = int(self._wheel_accum / 120)
            if steps:
                self._wheel_accum -= steps * 120
                self.scroll_requested.emit(-steps)  # wheel towards the user = next image
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # Reimplemented from QWidget
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        if event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton,
                              Qt.MouseButton.RightButton):
            self._drag_button = event.button()
            self._drag_last = event.position()
            cursor = (Qt.CursorShape.SizeAllCursor if event.button() == Qt.MouseButton.RightButton
                      else Qt.CursorShape.ClosedHandCursor)
            self.setCursor(cursor)
            event.accept()
        else:
            super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # Reimplemented from QWidget
        if self._drag_button is None:
            return
        d = event.position() - self._drag_last
        self._drag_last = event.position()
        if self._drag_button == Qt.MouseButton.RightButton:
            self.window_dragged.emit(d.x(), d.y())
        else:
            self.pan += d
            self.fit_mode = False
            self.view_changed.emit()
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # Reimplemented from QWidget
        if event.button() == self._drag_button:
            self._drag_button = None
            self.unsetCursor()

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # Reimplemented from QWidget
        event.accept()  # the right button is window/level here, not a menu
