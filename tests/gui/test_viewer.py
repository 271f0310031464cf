"""The viewer, offscreen: scrolling, window/level, presets, invert, zoom, multi-frame cine,
reports, documents, "cannot display", broken files, every decodable transfer syntax."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QImage, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from app.core.medium.reader import open_medium
from app.core.model import Medium, Series
from app.gui.viewer import ViewerWidget
from tests.core.test_encapsulated import assert_valid_pdf, make_pdf_dataset
from tests.core.test_sr_text import make_sr_dataset
from tests.media import make_dataset, pydicom_test_file, write_fileset

pytestmark = pytest.mark.gui
TIMEOUT = 10000


# ----------------------------------------------------------------------------- helpers


def ct_series(n: int, rows: int = 32, **overrides: object) -> list:
    """``n`` CT slices of one series, each with clearly different pixel values."""
    first = make_dataset(rows, rows, **overrides)
    out = []
    for i in range(n):
        ramp = np.add.outer(np.arange(rows), np.arange(rows)) * (20 + 15 * i)
        ds = make_dataset(rows, rows, pixels=(ramp % 4096).astype(np.uint16),
                          StudyInstanceUID=first.StudyInstanceUID,
                          SeriesInstanceUID=first.SeriesInstanceUID, InstanceNumber=str(i + 1),
                          **overrides)
        out.append(ds)
    return out


def multiframe(frames: int = 4, rows: int = 16) -> object:
    stack = np.stack([np.full((rows, rows), 900 + 80 * f, dtype=np.uint16) for f in range(frames)])
    stack[:, : rows // 2, :] += 50  # some structure in each frame
    ds = make_dataset(rows, rows, pixels=stack[0])
    ds.NumberOfFrames = frames
    ds.FrameTime = 50  # ms -> 20 fps
    ds.PixelData = stack.tobytes()
    return ds


def series_of(medium: Medium) -> Series:
    return medium.patients[0].studies[0].series[0]


def build(tmp_path: Path, datasets: list, name: str = "m") -> tuple[Medium, Series]:
    root = tmp_path / name
    write_fileset(root, datasets)
    medium = open_medium(root)
    return medium, series_of(medium)


@pytest.fixture
def viewer(qtbot: QtBot) -> Iterator[ViewerWidget]:
    w = ViewerWidget()
    qtbot.addWidget(w)
    w.resize(640, 520)
    w.show()
    yield w
    w.shutdown()
    assert w.runner.busy_threads() == 0  # no decoding thread left running


def show(qtbot: QtBot, viewer: ViewerWidget, medium: Medium, series: Series) -> str:
    with qtbot.waitSignal(viewer.displayed, timeout=TIMEOUT) as sig:
        viewer.set_series(medium, series)
    return str(sig.args[0])


def wait_shown(qtbot: QtBot, viewer: ViewerWidget, action: object) -> str:
    with qtbot.waitSignal(viewer.displayed, timeout=TIMEOUT) as sig:
        action()  # type: ignore[operator]
    return str(sig.args[0])


def canvas_image(viewer: ViewerWidget) -> QImage:
    return viewer.canvas.grab().toImage()


def canvas_centre(viewer: ViewerWidget) -> int:
    img = canvas_image(viewer)
    return img.pixelColor(img.width() // 2, img.height() // 2).red()


def send_mouse(widget: QWidget, kind: QEvent.Type, pos: QPoint, button: Qt.MouseButton,
               buttons: Qt.MouseButton) -> None:
    ev = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons,
                     Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, ev)


def drag(widget: QWidget, button: Qt.MouseButton, start: QPoint, end: QPoint) -> None:
    send_mouse(widget, QEvent.Type.MouseButtonPress, start, button, button)
    mid = (start + end) / 2
    send_mouse(widget, QEvent.Type.MouseMove, mid, Qt.MouseButton.NoButton, button)
    send_mouse(widget, QEvent.Type.MouseMove, end, Qt.MouseButton.NoButton, button)
    send_mouse(widget, QEvent.Type.MouseButtonRelease, end, button, Qt.MouseButton.NoButton)


def wheel(widget: QWidget, dy: int, modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier
          ) -> None:
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    ev = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos.toPoint())), QPoint(), QPoint(0, dy),
                     Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)


# ----------------------------------------------------------------------------- images


def test_scrolling_changes_the_displayed_pixels(qtbot: QtBot, viewer: ViewerWidget,
                                                tmp_path: Path) -> None:
    medium, series = build(tmp_path, ct_series(4))
    assert show(qtbot, viewer, medium, series) == "image"
    assert viewer.state.index == 0 and viewer.count == 4
    before_px = viewer.displayed_pixels.copy()
    before = canvas_image(viewer)
    assert wait_shown(qtbot, viewer, lambda: qtbot.keyClick(viewer.canvas, Qt.Key.Key_Down)) \
        == "image"
    assert viewer.state.index == 1
    assert not np.array_equal(viewer.displayed_pixels, before_px)
    assert canvas_image(viewer) != before  # the widget itself shows other pixels
    assert "Image 2/4" in viewer.canvas.corners["bl"]
    # The wheel scrolls forward (towards the user) and End/Home jump; Up goes back.
    wait_shown(qtbot, viewer, lambda: wheel(viewer.canvas, -120))
    assert viewer.state.index == 2
    wait_shown(qtbot, viewer, lambda: qtbot.keyClick(viewer.canvas, Qt.Key.Key_End))
    assert viewer.state.index == 3
    wait_shown(qtbot, viewer, lambda: qtbot.keyClick(viewer.canvas, Qt.Key.Key_Home))
    assert viewer.state.index == 0
    assert np.array_equal(viewer.displayed_pixels, before_px)  # back to the first image
    wait_shown(qtbot, viewer, lambda: qtbot.keyClick(viewer.canvas, Qt.Key.Key_PageDown))
    assert viewer.state.index == 1  # a page of a 4-image series is one image
    qtbot.keyClick(viewer.canvas, Qt.Key.Key_Up)
    qtbot.waitUntil(lambda: viewer.state.index == 0 and not viewer.state.loading, timeout=TIMEOUT)


def test_neighbours_are_prefetched(qtbot: QtBot, viewer: ViewerWidget, tmp_path: Path) -> None:
    medium, series = build(tmp_path, ct_series(5))
    show(qtbot, viewer, medium, series)
    uids = [i.sop_instance_uid for i in sorted(series.instances,
                                                 key=lambda i: int(i.instance_number or 0))]
    qtbot.waitUntil(lambda: (uids[1], 0) in viewer.feed.cache and (uids[2], 0) in viewer.feed.cache,
                    timeout=TIMEOUT)
    # A cached neighbour is shown synchronously, without a worker round trip.
    qtbot.keyClick(viewer.canvas, Qt.Key.Key_Down)
    assert viewer.state.index == 1 and not viewer.state.loading
    assert viewer.loaded is viewer.feed.cache[(uids[1], 0)]


def test_right_drag_changes_window_and_pixels(qtbot: QtBot, viewer: ViewerWidget,
                                              tmp_path: Path) -> None:
    medium, series = build(tmp_path, ct_series(1))
    show(qtbot, viewer, medium, series)
    c0, w0 = viewer.state.center, viewer.state.width
    assert (c0, w0) == (40.0, 400.0)  # the file's window
    before_px = viewer.displayed_pixels.copy()
    before = canvas_image(viewer)
    centre = QPoint(viewer.canvas.width() // 2, viewer.canvas.height() // 2)
    drag(viewer.canvas, Qt.MouseButton.RightButton, centre, centre + QPoint(120, 80))
    assert viewer.state.width > w0 and viewer.state.center > c0
    assert not np.array_equal(viewer.displayed_pixels, before_px)
    assert canvas_image(viewer) != before
    assert any(line.startswith("W ") for line in viewer.canvas.corners["br"])
    # The adjusted window stays while scrolling is not possible here; "Default" restores it.
    viewer.apply_preset("Default")
    assert (viewer.state.center, viewer.state.width) == (c0, w0)
    assert np.array_equal(viewer.displayed_pixels, before_px)


def test_ct_presets(qtbot: QtBot, viewer: ViewerWidget, tmp_path: Path) -> None:
    medium, series = build(tmp_path, ct_series(2))
    show(qtbot, viewer, medium, series)
    names = [viewer.preset_box.itemData(i) for i in range(viewer.preset_box.count())]
    for wanted in ("Default", "Brain", "Lung", "Bone", "Abdomen"):
        assert wanted in names
    default_px = viewer.displayed_pixels.copy()
    viewer.apply_preset("Lung")
    assert (viewer.state.center, viewer.state.width) == (-600.0, 1500.0)
    lung_px = viewer.displayed_pixels.copy()
    assert not np.array_equal(lung_px, default_px)
    assert "W 1500 L -600 (Lung)" in viewer.canvas.corners["br"]
    # The preset applies to the next image too.
    wait_shown(qtbot, viewer, lambda: qtbot.keyClick(viewer.canvas, Qt.Key.Key_Down))
    assert (viewer.state.center, viewer.state.width) == (-600.0, 1500.0)
    # Digit keys pick presets by position: 1 = the first preset (Brain).
    qtbot.keyClick(viewer.canvas, Qt.Key.Key_1)
    assert viewer.preset_box.currentData() == "Brain"
    assert (viewer.state.center, viewer.state.width) == (40.0, 80.0)


def test_presets_only_for_ct(qtbot: QtBot, viewer: ViewerWidget, tmp_path: Path) -> None:
    medium, series = build(tmp_path, ct_series(1, Modality="MR",
                                                SOPClassUID="1.2.840.10008.5.1.4.1.1.4"))
    show(qtbot, viewer, medium, series)
    names = [viewer.preset_box.itemData(i) for i in range(viewer.preset_box.count())]
    assert names == ["Default", "Full range"]


def test_invert(qtbot: QtBot, viewer: ViewerWidget, tmp_path: Path) -> None:
    medium, series = build(tmp_path, ct_series(1))
    show(qtbot, viewer, medium, series)
    before = viewer.displayed_pixels.copy()
    centre = canvas_centre(viewer)
    qtbot.keyClick(viewer.canvas, Qt.Key.Key_I)
    assert viewer.state.invert and viewer.act_invert.isChecked()
    assert np.array_equal(viewer.displayed_pixels, 255 - before)
    assert abs(canvas_centre(viewer) - (255 - centre)) <= 2
    assert "Inverted" in viewer.canvas.corners["br"]
    viewer.act_invert.trigger()
    assert not viewer.state.invert
    assert np.array_equal(viewer.displayed_pixels, before)


def test_zoom_pan_and_fit(qtbot: QtBot, viewer: ViewerWidget, tmp_path: Path) -> None:
    medium, series = build(tmp_path, ct_series(1))
    show(qtbot, viewer, medium, series)
    fit_zoom = viewer.canvas.zoom
    wheel(viewer.canvas, 120, Qt.KeyboardModifier.ControlModifier)
    assert viewer.canvas.zoom > fit_zoom and viewer.state.index == 0  # Ctrl+wheel zooms only
    qtbot.keyClick(viewer.canvas, Qt.Key.Key_Plus)
    zoomed = viewer.canvas.zoom
    assert zoomed > fit_zoom * 1.3
    assert f"Zoom {zoomed * 100:.0f}%" in viewer.canvas.corners["br"]
    before = viewer.canvas.image_rect()
    centre = QPoint(viewer.canvas.width() // 2, viewer.canvas.height() // 2)
    drag(viewer.canvas, Qt.MouseButton.LeftButton, centre, centre + QPoint(40, 30))
    moved = viewer.canvas.image_rect()
    assert (moved.x() - before.x(), moved.y() - before.y()) == (40, 30)
    drag(viewer.canvas, Qt.MouseButton.MiddleButton, centre, centre + QPoint(-10, 0))
    assert viewer.canvas.image_rect().x() == moved.x() - 10
    qtbot.keyClick(viewer.canvas, Qt.Key.Key_Minus)
    assert viewer.canvas.zoom < zoomed
    qtbot.keyClick(viewer.canvas, Qt.Key.Key_F)
    assert viewer.canvas.zoom == pytest.approx(fit_zoom)
    r = viewer.canvas.image_rect()
    assert r.center().x() == pytest.approx(viewer.canvas.width() / 2)


def test_multiframe_frames_and_cine(qtbot: QtBot, viewer: ViewerWidget, tmp_path: Path) -> None:
    medium, series = build(tmp_path, [multiframe(4)])
    show(qtbot, viewer, medium, series)
    assert viewer.state.frames == 4 and viewer.state.frame == 0
    assert viewer.fps_box.value() == 20  # from Frame Time
    first = viewer.displayed_pixels.copy()
    wait_shown(qtbot, viewer, lambda: qtbot.keyClick(viewer.canvas, Qt.Key.Key_Right))
    assert viewer.state.frame == 1
    assert not np.array_equal(viewer.displayed_pixels, first)
    assert "Frame 2/4" in viewer.canvas.corners["bl"]
    # Cine: frames advance by themselves, wrapping around, until paused.
    seen: set[int] = set()
    viewer.displayed.connect(lambda _k: seen.add(viewer.state.frame))
    qtbot.keyClick(viewer.canvas, Qt.Key.Key_Space)
    assert viewer.state.playing and viewer.act_play.isChecked()
    qtbot.waitUntil(lambda: seen >= {0, 1, 2, 3}, timeout=TIMEOUT)
    qtbot.keyClick(viewer.canvas, Qt.Key.Key_Space)
    assert not viewer.state.playing
    frame = viewer.state.frame
    qtbot.wait(200)
    assert viewer.state.frame == frame


# ----------------------------------------------------------------------------- other objects


def test_structured_report_shown_as_text(qtbot: QtBot, viewer: ViewerWidget,
                                         tmp_path: Path) -> None:
    medium, series = build(tmp_path, [make_sr_dataset()])
    assert show(qtbot, viewer, medium, series) == "report"
    assert viewer.stack.currentWidget() is viewer.report_view
    text = viewer.report_view.toPlainText()
    assert text.startswith("Diagnostic Imaging Report\n")
    assert "Findings\nFinding: Nodule\nStudy Date: 2024-01-02\nFinding\n" in text
    assert "Finding: Small nodule\nright upper lobe\nDiameter: 4.5 mm" in text
    assert "context: Person Observer Name: Dr Anna Smith" in text
    # Nesting shows as indentation: the nested finding's items sit deeper than the section's.
    doc = viewer.report_view.document()
    margins = {doc.findBlockByNumber(i).text(): doc.findBlockByNumber(i).blockFormat().leftMargin()
               for i in range(doc.blockCount())}
    assert margins["Diameter: 4.5 mm"] > margins["Finding: Nodule"] > margins["Findings"]
    blocks = {doc.findBlockByNumber(i).text(): doc.findBlockByNumber(i)
              for i in range(doc.blockCount())}
    assert blocks["Findings"].charFormat().fontWeight() >= 600  # headings are bold
    assert blocks["Completion: COMPLETE"].charFormat().fontWeight() < 600


def test_pdf_extracted_and_handed_to_the_system(qtbot: QtBot, viewer: ViewerWidget,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    answers = [True, False]  # the second time no application is registered for PDFs

    def fake_open(url: QUrl) -> bool:
        opened.append(url.toLocalFile())
        return answers[len(opened) - 1]

    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(fake_open))
    medium, series = build(tmp_path, [make_pdf_dataset()])
    with qtbot.waitSignal(viewer.document_opened, timeout=TIMEOUT) as sig:
        viewer.set_series(medium, series)
    path = Path(sig.args[0])
    assert opened == [str(path)]
    assert path.suffix == ".pdf"
    assert_valid_pdf(path.read_bytes())
    assert not path.is_relative_to(tmp_path)  # never written onto the medium
    assert viewer.stack.currentWidget() is viewer.doc_page
    assert "Discharge letter" in viewer.doc_label.text()
    viewer.doc_button.click()  # "open again"
    assert opened == [str(path), str(path)]
    assert f"No application to open it was found. The file is at:\n{path}" in \
        viewer.doc_label.text()
    viewer.shutdown()
    assert not path.exists()  # temporary copies are removed


def test_cannot_display_names_the_object_type(qtbot: QtBot, viewer: ViewerWidget,
                                              tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    shutil.copy(pydicom_test_file("rtplan.dcm"), root / "PLAN1")
    medium = open_medium(root)
    assert show(qtbot, viewer, medium, series_of(medium)) == "unsupported"
    assert viewer.stack.currentWidget() is viewer.message
    assert "Cannot display this object: RT Plan Storage" in viewer.message.text()


def test_broken_image_is_a_message_not_a_crash(qtbot: QtBot, viewer: ViewerWidget,
                                               tmp_path: Path) -> None:
    datasets = ct_series(2, rows=64)
    medium, series = build(tmp_path, datasets)
    # Truncate the second image's pixel data on the medium after it was listed.
    second = sorted(series.instances, key=lambda i: int(i.instance_number or 0))[1]
    f = Path(medium.root) / second.path
    f.write_bytes(f.read_bytes()[:-4000])
    show(qtbot, viewer, medium, series)
    assert wait_shown(qtbot, viewer, lambda: viewer.step(1)) == "error"
    assert viewer.stack.currentWidget() is viewer.message
    assert "Cannot display image 2 of 2" in viewer.message.text()
    assert second.path.split("/")[-1] in viewer.message.text()  # names the file
    assert wait_shown(qtbot, viewer, lambda: viewer.step(-1)) == "image"  # the viewer goes on
    assert viewer.stack.currentWidget() is viewer.canvas


def test_values_from_the_file_win_over_the_record(qtbot: QtBot, viewer: ViewerWidget,
                                                  tmp_path: Path) -> None:
    medium, series = build(tmp_path, ct_series(1, PatientName="File^Anna"))
    medium.patients[0].patient_name = "Record^Wrong"
    show(qtbot, viewer, medium, series)
    assert viewer.canvas.corners["tl"][0] == "Anna File"
    assert "Study 2024-01-02" in viewer.canvas.corners["tr"]


@pytest.mark.parametrize("name", [
    "CT_small.dcm",  # explicit VR LE
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",  # deflated
    "MR_small_RLE.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, colour
    "JPGExtended.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEGLSNearLossless_16.dcm",
    "MR_small_jp2klossless.dcm",
    "JPEG2000.dcm",
    "examples_palette.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
])
def test_every_transfer_syntax_displays(qtbot: QtBot, viewer: ViewerWidget, tmp_path: Path,
                                        name: str) -> None:
    root = tmp_path / "m"
    root.mkdir()
    shutil.copy(pydicom_test_file(name), root / "IM1")
    medium = open_medium(root)
    assert show(qtbot, viewer, medium, series_of(medium)) == "image", viewer.message.text()
    px = viewer.displayed_pixels
    assert px.dtype == np.uint8 and px.std() > 0  # a real picture, not a flat field
    img = canvas_image(viewer)
    assert not img.isNull()


def test_dicomdirtests_sample_scrolls(qtbot: QtBot, viewer: ViewerWidget) -> None:
    from tests.media import dicomdirtests_root

    medium = open_medium(dicomdirtests_root())
    everything = [se for p in medium.patients for st in p.studies for se in st.series]
    # TINY_ALPHA's files are headers without pixel data: say so in the view.
    tiny = next(se for se in everything if (se.instances[0].path or "").startswith("TINY_ALPHA"))
    assert show(qtbot, viewer, medium, tiny) == "error"
    assert "has no pixel data" in viewer.message.text()
    mr = max((se for se in everything if se.modality == "MR"), key=lambda se: len(se.instances))
    assert len(mr.instances) == 7
    assert show(qtbot, viewer, medium, mr) == "image"
    before = viewer.displayed_pixels.copy()
    assert wait_shown(qtbot, viewer, lambda: viewer.step(1)) == "image"
    assert not np.array_equal(before, viewer.displayed_pixels)
    assert "Image 2/7" in viewer.canvas.corners["bl"]


def test_empty_series_and_clear(qtbot: QtBot, viewer: ViewerWidget, tmp_path: Path) -> None:
    medium, series = build(tmp_path, ct_series(1))
    empty = Series("1.2.3", modality="CT")
    assert show(qtbot, viewer, medium, empty) == "empty"
    assert "no images" in viewer.message.text()
    viewer.clear()
    assert "Select a series" in viewer.message.text()


def test_multiframe_dataset_cache_is_bounded() -> None:
    from pydicom import Dataset

    from app.gui.viewer_loader import DatasetCache

    def ds(n: int) -> Dataset:
        d = Dataset()
        d.PixelData = b"\0" * n
        return d

    cache = DatasetCache(entries=3, max_bytes=1000)
    cache.put("huge", ds(2000))
    assert cache.get("huge") is None  # larger than the whole budget: never kept
    for uid in "abc":
        cache.put(uid, ds(400))
    assert cache.get("a") is None and len(cache) == 2  # 1200 bytes > 1000: oldest dropped
    cache.get("b")  # b is now the most recently used
    cache.put("d", ds(100))
    cache.put("e", ds(100))
    assert cache.get("c") is None and cache.get("b") is not None and len(cache) == 3
