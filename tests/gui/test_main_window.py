"""The main window: welcome page, opening through the runner (sample and defect media via the
reader), problems in plain words, status bar, selection → thumbnails and viewer, search,
shortcuts, drag and drop, export wizard, settings and the crash hook."""

from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent, QKeySequence

from app.core import crashlog
from app.core.model import Problem
from app.gui import crash
from app.gui.browser import COL_NAME, KindRole, NodeRole
from app.gui.main_window import MainWindow
from app.gui.problems import PROBLEM_TEXTS, explain
from app.gui.settings import Settings
from app.gui.sources import MediaMonitor
from app.gui.tasks import TaskRunner
from tests.media import make_dataset, write_fileset


class NoVolumes:
    def list_volumes(self) -> list:
        return []


@pytest.fixture
def make_window(qtbot, runner: TaskRunner):
    """Factory: a main window on the test runner, no real media watcher; shut down after."""
    windows: list[MainWindow] = []

    def make(opener=None) -> MainWindow:  # noqa: ANN001
        monitor = MediaMonitor(runner, backend=NoVolumes(), interval=60)
        win = MainWindow(runner=runner, opener=opener, monitor=monitor, interactive=False)
        qtbot.addWidget(win)
        windows.append(win)
        return win

    yield make
    for win in windows:
        win.shutdown()


def _open(qtbot, win: MainWindow, path: str | Path):  # noqa: ANN202
    with qtbot.wait_signal(win.medium_opened, timeout=15000) as blocker:
        win.open_path(str(path))
    return blocker.args[0]


def test_welcome_page_until_something_is_open(qtbot, make_window, build_medium) -> None:
    win = make_window(lambda p, progress=None, cancel=None: build_medium(p))
    assert win.stack.currentWidget() is win.welcome
    assert not win.act_export.isEnabled() and not win.act_reload.isEnabled()
    assert win.counts_label.text() == "No medium open"
    medium = _open(qtbot, win, "/media/cd")
    assert win.stack.currentWidget() is win.content_split
    assert win.act_export.isEnabled() and win.act_reload.isEnabled()
    assert win.counts_label.text() == "3 patients · 4 studies · 4 series · 11 images"
    assert "/media/cd (DICOMDIR)" in win.source_label.text()
    assert win.windowTitle() == "cd — DiscBridge"
    win.close_current()
    assert win.stack.currentWidget() is win.welcome and medium not in win.tree_model.media


def test_sample_disc_from_the_welcome_page(qtbot, make_window, qtmodeltester) -> None:
    win = make_window()  # the real reader
    with qtbot.wait_signal(win.medium_opened, timeout=15000) as blocker:
        qtbot.mouseClick(win.welcome.sample_button, Qt.MouseButton.LeftButton)
    medium = blocker.args[0]
    qtmodeltester.check(win.tree_model, force_py=True)
    assert win.tree_model.rowCount() == len(medium.patients) >= 1
    n = sum(1 for _ in medium.instances())
    assert win.tree_model.totals()[3] == n
    # The first patient is current and expanded; all its series fill the thumbnail grid.
    qtbot.wait_until(lambda: win.tree.currentIndex().isValid(), timeout=10000)
    current = win.tree.currentIndex()
    assert current.data(KindRole) == "patient" and win.tree.isExpanded(current)
    patient = current.data(NodeRole)
    qtbot.wait_until(lambda: win.thumbs.pending() == 0, timeout=15000)
    assert win.thumbs.rowCount() == sum(len(st.series) for st in patient.studies)
    assert win.problems.model.problem_count() == len(medium.problems)
    assert win.settings.recent_folders == []  # the sample is not a "recent folder"


def test_defect_medium_problems_in_plain_words(qtbot, make_window, tmp_path: Path) -> None:
    root = tmp_path / "disc"
    write_fileset(root, [make_dataset(PatientName="Defekt^Dora", PatientID="D1")
                         for _ in range(3)])
    victim = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "DICOMDIR")[0]
    victim.unlink()
    win = make_window()
    medium = _open(qtbot, win, root)
    assert any(p.code == "missing-file" for p in medium.problems)
    model = win.problems.model
    assert "missing-file" in model.codes()
    row = model.codes().index("missing-file")
    group = model.index(row, 0)
    assert group.data().startswith("An image listed on the disc is not on it.")
    assert model.index(row, 1).data() == "Listed the other images; this one cannot be shown or copied."
    paths = [model.index(r, 2, group).data() for r in range(model.rowCount(group))]
    assert any(victim.name in (p or "") for p in paths)
    assert "problem" in win.problems_button.text()
    assert root.as_posix() in win.settings.recent_folders[0]


def test_scanned_medium_says_what_was_done(qtbot, make_window, tmp_path: Path) -> None:
    root = tmp_path / "nodir"
    write_fileset(root, [make_dataset(PatientID="S1") for _ in range(2)])
    (root / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)  # broken index
    win = make_window()
    medium = _open(qtbot, win, root)
    assert win.tree_model.totals()[3] == 2  # every image is still listed
    texts = [model_text for model_text in (win.problems.model.index(r, 1).data()
                                           for r in range(win.problems.model.rowCount()))]
    assert medium.source == "scan" or medium.problems
    assert any("Scanned the disc" in t or "Read around the damage" in t for t in texts), texts


def test_welcome_text_is_not_clipped(qtbot, make_window) -> None:
    win = make_window()
    win.show()
    qtbot.wait_exposed(win)
    from PySide6.QtWidgets import QLabel

    for label in win.welcome.findChildren(QLabel):
        if label.wordWrap():
            assert label.height() >= label.heightForWidth(label.width())


def test_every_problem_code_has_plain_words() -> None:
    from app.core.model import PROBLEM_CODES

    assert set(PROBLEM_CODES) <= set(PROBLEM_TEXTS)
    meaning, action = explain("dicomdir-unreadable")
    assert action == "Scanned the disc because its index was broken, so every image is still listed."
    assert explain("some-new-code")[0].startswith("Something on the disc")


def test_problems_grouped_by_code_and_severity(qtbot, make_window, build_medium) -> None:
    probs = [Problem("warning", "unreferenced-file", "X/1", "no record references it"),
             Problem("error", "missing-file", "A/1", "referenced file does not exist"),
             Problem("error", "missing-file", "A/2", "referenced file does not exist")]
    win = make_window(lambda p, progress=None, cancel=None: build_medium(p, problems=probs))
    _open(qtbot, win, "/media/cd")
    model = win.problems.model
    assert model.codes() == ["missing-file", "unreferenced-file"]  # errors first
    assert model.rowCount(model.index(0, 0)) == 2 and model.index(0, 0).data().endswith("(2×)")
    assert win.problems_button.text() == "3 problems"
    assert "3 problems found" in win.problems.heading.text()


def test_selection_drives_thumbnails_and_viewer(qtbot, make_window, build_medium) -> None:
    win = make_window(lambda p, progress=None, cancel=None: build_medium(p))
    medium = _open(qtbot, win, "/media/cd")
    pat = win.proxy.index(0, 0)  # sorted by name: Alpha, Bert
    assert pat.data() == "Alpha, Bert"
    win.tree.setCurrentIndex(pat)
    assert win.thumbs.rowCount() == 1  # all series of the patient
    zeta = win.proxy.index(2, 0)
    study = win.proxy.index(0, 0, zeta)
    win.tree.setCurrentIndex(study)
    series = study.data(NodeRole).series
    assert [win.thumbs.series_at(r)[1] for r in range(win.thumbs.rowCount())] == series
    se_idx = win.proxy.index(1, 0, study)
    win.tree.setCurrentIndex(se_idx)
    assert getattr(win.viewer, "_shown_series", None) is series[1]
    assert win.thumb_view.currentIndex().row() == 1
    win.thumb_view.setCurrentIndex(win.thumbs.index(0, 0))  # a thumbnail click shows it
    assert getattr(win.viewer, "_shown_series", None) is series[0]
    uids = win.selected_uids()
    assert uids == {i.sop_instance_uid for i in series[1].instances}
    assert medium is win.current_medium()
    qtbot.wait_until(lambda: win.runner.active_count() == 0, timeout=10000)


def test_search_box_and_shortcuts(qtbot, make_window, build_medium) -> None:
    win = make_window(lambda p, progress=None, cancel=None: build_medium(p))
    _open(qtbot, win, "/media/cd")
    win.show()
    win.activateWindow()
    qtbot.wait_active(win)
    keys = {a.shortcut().toString() for a in win.actions()}
    assert {"Ctrl+O", "Ctrl+E", "F5", "Ctrl+F"} <= keys
    qtbot.wait_until(lambda: win.runner.active_count() == 0, timeout=5000)
    win.act_find.trigger()
    qtbot.wait_until(win.search.hasFocus, timeout=2000)
    qtbot.keyClicks(win.search, "zeta")
    assert win.proxy.rowCount() == 1 and win.proxy.index(0, COL_NAME).data() == "Zeta, Anna"
    win.search.clear()
    assert win.proxy.rowCount() == 3
    # Tab moves from the search box to the tree: the window is usable without a mouse.
    qtbot.keyClick(win.search, Qt.Key.Key_Tab)
    assert win.tree.hasFocus()
    assert QKeySequence(QKeySequence.StandardKey.Open).toString() == "Ctrl+O"


def test_reload_reads_again(qtbot, make_window, build_medium) -> None:
    calls: list[str] = []

    def opener(p: str, progress=None, cancel=None):  # noqa: ANN001, ANN202
        calls.append(p)
        return build_medium(p)

    win = make_window(opener)
    _open(qtbot, win, "/media/cd")
    with qtbot.wait_signal(win.medium_opened, timeout=5000):
        win.act_reload.trigger()
    assert calls == ["/media/cd", "/media/cd"] and len(win.tree_model.media) == 1


def test_drop_folders_opens_them(qtbot, make_window, build_medium, tmp_path: Path) -> None:
    opened: list[str] = []

    def opener(p: str, progress=None, cancel=None):  # noqa: ANN001, ANN202
        opened.append(p)
        return build_medium(p)

    win = make_window(opener)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "a")), QUrl.fromLocalFile(str(tmp_path / "b"))])
    event = QDropEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    win.dropEvent(event)
    qtbot.wait_until(lambda: len(win.tree_model.media) == 2, timeout=5000)
    assert sorted(opened) == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert win.tree.isColumnHidden(5) is False  # two media: the Medium column shows


def test_open_failure_is_a_message_not_a_crash(qtbot, make_window, tmp_path: Path) -> None:
    win = make_window()  # the real reader
    missing = tmp_path / "does-not-exist"
    with qtbot.wait_signal(win.open_failed, timeout=10000) as blocker:
        win.open_path(str(missing))
    assert blocker.args[0] == str(missing) and "does-not-exist" in blocker.args[1]
    assert win.stack.currentWidget() is win.welcome


def test_cancel_button_cancels_reading(qtbot, make_window) -> None:
    started = threading.Event()

    def slow(p: str, progress=None, cancel=None):  # noqa: ANN001, ANN202
        started.set()
        while True:
            cancel.raise_if_cancelled()
            threading.Event().wait(0.01)

    win = make_window(slow)
    win.open_path("/media/slow")
    assert started.wait(5)
    with qtbot.wait_signal(win.loader.cancelled, timeout=5000):
        win.cancel_button.click()
    assert "cancelled" in win.messages[-1]


def test_export_opens_the_wizard_with_the_selection(qtbot, make_window, build_medium) -> None:
    pytest.importorskip("app.gui.wizard.wizard")
    win = make_window(lambda p, progress=None, cancel=None: build_medium(p))
    _open(qtbot, win, "/media/cd")
    win.act_export.trigger()
    wizard = win.wizard
    assert wizard.isVisible()
    wizard.reject()


def test_settings_round_trip(qapp) -> None:
    s = Settings()
    s.institution = "St. Mary's Radiology"
    s.contact = "+44 20 7946 0000"
    s.default_media = "dvd"
    s.burner = "/dev/sr0"
    for p in [f"/data/{i}" for i in range(12)]:
        s.add_recent_folder(p)
    s.add_recent_folder("/data/3")
    t = Settings()
    assert (t.institution, t.contact, t.default_media, t.burner) == (
        "St. Mary's Radiology", "+44 20 7946 0000", "dvd", "/dev/sr0")
    assert t.recent_folders[0] == "/data/3" and len(t.recent_folders) == 10
    assert t.detection_policy == "ask"
    t.detection_policy = "ignore"
    assert Settings().detection_policy == "ignore"
    with pytest.raises(ValueError, match="detection policy"):
        t.detection_policy = "sometimes"  # type: ignore[assignment]
    assert t.q.organizationName() == "DiscBridge"


def test_crash_hook_logs_and_never_vanishes(qapp, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    uninstall = crash.install(dialogs=False)
    try:
        assert sys.excepthook is crash.excepthook
        try:
            raise RuntimeError("a bug in a slot")
        except RuntimeError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
        t = threading.Thread(target=lambda: 1 / 0, name="worker-x")
        t.start()
        t.join()
    finally:
        uninstall()
    assert sys.excepthook is not crash.excepthook
    text = crashlog.crash_log_path().read_text(encoding="utf-8")
    assert crashlog.crash_log_path().is_relative_to(tmp_path)
    assert "RuntimeError: a bug in a slot" in text
    assert "thread worker-x" in text and "ZeroDivisionError" in text


def test_shutdown_leaves_no_thread(qtbot, make_window, build_medium) -> None:
    win = make_window(lambda p, progress=None, cancel=None: build_medium(p))
    _open(qtbot, win, "/media/cd")
    win.close()  # closeEvent: saves the layout, stops watcher, viewer and runner
    assert win.runner.busy_threads() == 0
    assert Settings().window_state()[0] is not None


def test_copy_of_sample_is_listed_as_recent(qtbot, make_window, sample_root, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(sample_root, copy)
    win = make_window()
    _open(qtbot, win, copy)
    assert win.settings.recent_folders == [str(copy)]
    assert win.sources.recent_paths() == [str(copy)]


def test_exception_in_a_slot_reaches_the_crash_hook(qtbot, tmp_path: Path, monkeypatch) -> None:
    """A bug in a slot is logged (and would be shown); the application keeps running."""
    from PySide6.QtCore import QObject, Signal

    class Emitter(QObject):
        poke = Signal()

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    uninstall = crash.install(dialogs=False)
    try:
        e = Emitter()

        def bad_slot() -> None:
            raise ValueError("bug in a slot")

        e.poke.connect(bad_slot)
        e.poke.emit()
    finally:
        uninstall()
    assert "ValueError: bug in a slot" in crashlog.crash_log_path().read_text(encoding="utf-8")


def test_crash_dialog_names_the_log(qapp, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    shown: list[str] = []
    monkeypatch.setattr(crash.QMessageBox, "exec", lambda box: shown.append(box.text()) or 0)
    uninstall = crash.install(dialogs=True)
    try:
        try:
            raise OSError("disk on fire")
        except OSError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        uninstall()
    assert len(shown) == 1
    assert "OSError: disk on fire" in shown[0] and str(crashlog.crash_log_path()) in shown[0]


def test_progress_of_a_read_reaches_the_status_bar(qtbot, make_window, build_medium) -> None:
    from app.core.jobs import Progress

    gate = threading.Event()

    def reader(p: str, progress=None, cancel=None):  # noqa: ANN001, ANN202
        progress(Progress("scan", 25, 100, message="Reading headers: 25 of 100"))
        gate.wait(5)
        return build_medium(p)

    win = make_window(reader)
    win.open_path("/media/slow")
    bar = win.status.progress
    qtbot.wait_until(lambda: bar.maximum() == 1000 and bar.value() == 250, timeout=5000)
    assert bar.isVisibleTo(win) and "Reading headers" in win.statusBar().currentMessage()
    with qtbot.wait_signal(win.medium_opened, timeout=5000):
        gate.set()
    assert not bar.isVisibleTo(win)


def test_tab_order_walks_the_whole_window(qtbot, make_window, build_medium) -> None:
    from PySide6.QtWidgets import QApplication

    win = make_window(lambda p, progress=None, cancel=None: build_medium(p))
    _open(qtbot, win, "/media/cd")
    win.show()
    win.activateWindow()
    qtbot.wait_active(win)
    qtbot.wait_until(lambda: win.runner.active_count() == 0, timeout=5000)
    win.activateWindow()
    win.sources.tree.setFocus()
    qtbot.wait_until(win.sources.tree.hasFocus, timeout=3000)
    seen = [QApplication.focusWidget()]
    for _ in range(12):
        focus = QApplication.focusWidget()
        assert focus is not None, [type(w).__name__ for w in seen]
        qtbot.keyClick(focus, Qt.Key.Key_Tab)
        seen.append(QApplication.focusWidget())
    want = [win.sources.tree, win.sources.open_folder_button, win.sources.open_dicomdir_button,
            win.sources.open_iso_button, win.search, win.tree, win.thumb_view]
    positions = [seen.index(w) for w in want]  # every stop is reached, in this order
    assert positions == sorted(positions)
    assert win.problems.view in seen or not win.problems.view.isVisible()
