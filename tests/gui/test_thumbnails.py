"""Thumbnails: from record icons, rendered from files on the pool, placeholders, failures,
the representative-image rule and the bounded LRU cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap

from app.core.medium.fs import DirFS
from app.core.model import Icon, Instance, Medium, Series
from app.gui.tasks import TaskRunner
from app.gui.thumbnails import (
    THUMB_SIZE,
    PixmapCache,
    StateRole,
    ThumbnailModel,
    ThumbnailView,
    array_to_qimage,
    representative_instance,
)
from tests.media import make_dataset, write_instance


def _icon(value_rows: bool = True) -> Icon:
    """A 64×64 8-bit MONOCHROME2 icon: a left→right ramp."""
    ramp = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    return Icon(rows=64, columns=64, photometric="MONOCHROME2", bits_allocated=8, bits_stored=8,
                pixel_data=ramp.tobytes())


def _series(uid: str, instances: list[Instance], icon: Icon | None = None) -> Series:
    return Series(uid, "CT", "1", "AXIAL", instances=instances, icon=icon)


def _pixmap_of(model: ThumbnailModel, row: int) -> QImage:
    icon = model.data(model.index(row, 0), 1)  # DecorationRole
    assert isinstance(icon, QIcon)
    pix: QPixmap = icon.pixmap(icon.availableSizes()[0])
    return pix.toImage()


@pytest.fixture
def thumbs(qapp, runner: TaskRunner) -> ThumbnailModel:
    return ThumbnailModel(runner)


def test_thumbnail_from_record_icon(qtbot, thumbs: ThumbnailModel, tmp_path: Path) -> None:
    inst = Instance("1.2.3.1", instance_number="1", path=None, icon=_icon())  # file not needed
    medium = Medium(str(tmp_path), "dicomdir", fs=DirFS(tmp_path))
    with qtbot.wait_signal(thumbs.all_loaded, timeout=5000):
        thumbs.set_series([(medium, _series("1.2.3", [inst]))])
    assert thumbs.data(thumbs.index(0, 0), StateRole) == "ready"
    assert thumbs.loaded_from["1.2.3.1"] == "icon"
    img = _pixmap_of(thumbs, 0)
    assert img.width() == THUMB_SIZE  # 64×64 scaled to fill the tile
    left, right = QColor(img.pixel(2, 64)).red(), QColor(img.pixel(125, 64)).red()
    assert left < 30 and right > 220  # the ramp survived decoding and scaling


def test_thumbnail_rendered_from_file(qtbot, thumbs: ThumbnailModel, tmp_path: Path) -> None:
    pixels = np.zeros((32, 32), dtype=np.uint16)
    pixels[:, 16:] = 2000  # right half bright after rescale (-1024) in a 40/400 window
    insts = []
    for k in range(3):
        ds = make_dataset(32, 32, pixels=pixels, InstanceNumber=str(k + 1))
        write_instance(tmp_path / f"IM{k}", ds)
        insts.append(Instance(ds.SOPInstanceUID, instance_number=str(k + 1), path=f"IM{k}"))
    medium = Medium(str(tmp_path), "dicomdir", fs=DirFS(tmp_path))
    with qtbot.wait_signal(thumbs.all_loaded, timeout=10000):
        thumbs.set_series([(medium, _series("9.9", insts))])
        assert thumbs.data(thumbs.index(0, 0), StateRole) == "loading"  # placeholder first
    assert thumbs.pending() == 0
    assert thumbs.loaded_from[insts[1].sop_instance_uid] == "file"  # the middle instance
    img = _pixmap_of(thumbs, 0)
    assert QColor(img.pixel(10, 64)).red() < 30 and QColor(img.pixel(118, 64)).red() > 220
    # Cached by SOP Instance UID: showing the series again starts no task and is ready at once.
    n_tasks = thumbs.runner.active_count()
    thumbs.set_series([(medium, _series("9.9", insts))])
    assert thumbs.data(thumbs.index(0, 0), StateRole) == "ready"
    assert thumbs.runner.active_count() == n_tasks


def test_unreadable_file_shows_cannot_display(qtbot, thumbs: ThumbnailModel,
                                              tmp_path: Path) -> None:
    (tmp_path / "BROKEN").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    inst = Instance("5.5.5", instance_number="1", path="BROKEN")
    missing = Instance("5.5.6", instance_number="1", path=None)  # listed, file missing
    medium = Medium(str(tmp_path), "dicomdir", fs=DirFS(tmp_path))
    with qtbot.wait_signal(thumbs.all_loaded, timeout=5000):
        thumbs.set_series([(medium, _series("5.5", [inst])),
                           (medium, _series("5.6", [missing]))])
    states = [thumbs.data(thumbs.index(r, 0), StateRole) for r in range(2)]
    assert states == ["failed", "failed"]
    assert "BROKEN" in thumbs.data(thumbs.index(0, 0), 3)  # the tooltip names the file


def test_documents_are_not_rendered(qtbot, thumbs: ThumbnailModel, tmp_path: Path) -> None:
    sr = Instance("7.7.1", record_type="SR DOCUMENT", instance_number="1", path="SR1")
    medium = Medium(str(tmp_path), "dicomdir", fs=DirFS(tmp_path))
    with qtbot.wait_signal(thumbs.all_loaded, timeout=2000):
        thumbs.set_series([(medium, _series("7.7", [sr]))])
    assert thumbs.data(thumbs.index(0, 0), StateRole) == "document"


def test_stale_results_are_dropped(qtbot, thumbs: ThumbnailModel, tmp_path: Path) -> None:
    medium = Medium(str(tmp_path), "dicomdir", fs=DirFS(tmp_path))
    a = _series("1.1", [Instance("1.1.1", instance_number="1", icon=_icon())])
    b = _series("2.2", [Instance("2.2.1", instance_number="1", icon=_icon())])
    thumbs.set_series([(medium, a)])
    with qtbot.wait_signal(thumbs.all_loaded, timeout=5000):
        thumbs.set_series([(medium, b)])  # the study changed before a's thumbnail came
    qtbot.wait_until(lambda: thumbs.runner.active_count() == 0, timeout=5000)
    assert thumbs.rowCount() == 1 and thumbs.series_at(0)[1] is b
    assert thumbs.data(thumbs.index(0, 0), StateRole) == "ready"


def test_representative_is_middle_by_instance_number() -> None:
    insts = [Instance(f"u{n}", instance_number=str(n), path=f"f{n}") for n in (5, 1, 3, 2, 4)]
    assert representative_instance(_series("s", insts)).instance_number == "3"
    missing = [Instance("m", instance_number="3", path=None)]
    chosen = representative_instance(_series("s", insts[:2] + missing))
    assert chosen.path is not None  # an instance whose file is on the medium is preferred
    assert representative_instance(_series("s", [])) is None


def test_pixmap_cache_is_bounded_lru(qapp) -> None:
    def pix() -> QPixmap:
        p = QPixmap(32, 32)
        p.fill(QColor(1, 2, 3))
        return p

    cache = PixmapCache(max_bytes=3 * 32 * 32 * 4, max_items=100)
    for key in "abc":
        cache.put(key, pix())
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("d", pix())
    assert "b" not in cache and all(k in cache for k in "acd")
    assert len(cache) == 3 and cache.total_bytes == 3 * 32 * 32 * 4
    small = PixmapCache(max_items=2)
    for key in "xyz":
        small.put(key, pix())
    assert len(small) == 2 and "x" not in small


def test_array_to_qimage_owns_its_buffer(qapp) -> None:
    arr = np.full((4, 6, 3), (10, 20, 30), dtype=np.uint8)
    img = array_to_qimage(arr)
    del arr
    assert (img.width(), img.height()) == (6, 4)
    assert QColor(img.pixel(5, 3)).getRgb()[:3] == (10, 20, 30)


def test_view_shows_tiles_with_text(qtbot, thumbs: ThumbnailModel, tmp_path: Path) -> None:
    medium = Medium(str(tmp_path), "dicomdir", fs=DirFS(tmp_path))
    view = ThumbnailView()
    qtbot.addWidget(view)
    view.setModel(thumbs)
    view.resize(600, 300)
    series = [_series(f"3.{i}", [Instance(f"3.{i}.1", instance_number="1", icon=_icon())])
              for i in range(4)]
    with qtbot.wait_signal(thumbs.all_loaded, timeout=5000):
        thumbs.set_series([(medium, s) for s in series])
    view.show()
    qtbot.wait_exposed(view)
    rects = [view.visualRect(thumbs.index(r, 0)) for r in range(4)]
    assert all(r.width() >= THUMB_SIZE and r.height() >= THUMB_SIZE for r in rects)
    assert rects[1].left() > rects[0].left()  # a grid, not a list
    assert thumbs.data(thumbs.index(0, 0)).startswith("1 · AXIAL\nCT · 1 image")


def test_high_dpi_thumbnails_are_rendered_at_device_pixels(qtbot, thumbs: ThumbnailModel,
                                                          tmp_path: Path) -> None:
    medium = Medium(str(tmp_path), "dicomdir", fs=DirFS(tmp_path))
    thumbs.set_device_pixel_ratio(2.0)
    with qtbot.wait_signal(thumbs.all_loaded, timeout=5000):
        thumbs.set_series([(medium, _series("4.4", [Instance("4.4.1", instance_number="1",
                                                             icon=_icon())]))])
    pix = thumbs.cache.get("4.4.1")
    assert pix is not None and pix.width() == 2 * THUMB_SIZE
    assert pix.devicePixelRatio() == 2.0  # drawn at 128 logical pixels, 256 device pixels
