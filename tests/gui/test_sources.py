"""Media detection in the GUI: insertion and removal reach the Sources panel (through the real
MediaWatcher thread over E2's LinuxBackend on fake mountinfo/sysfs trees, and a fake backend
object), the detection policy (ask / open / ignore), removal while reading, recent folders."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from app.core.devices.media import Volume
from app.core.devices.media_linux import LinuxBackend
from app.core.errors import UnreadableMedium
from app.gui.main_window import MainWindow
from app.gui.settings import Settings
from app.gui.sources import MediaMonitor, SourcesPanel, format_bytes
from app.gui.tasks import TaskRunner

SYSTEM = "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"


def _esc(path: Path) -> str:
    return str(path).replace(" ", r"\040")


class FakeLinux:
    """A fake /proc, /sys and /dev for LinuxBackend: a system disk and an optical drive sr0."""

    def __init__(self, root: Path) -> None:
        self.proc, self.sys, self.dev = root / "proc", root / "sys", root / "dev"
        (self.proc / "self").mkdir(parents=True)
        disk = "devices/pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0/block/sr0"
        d = self.sys / disk
        (d / "device").mkdir(parents=True)
        (d / "removable").write_text("1\n")
        (d / "ro").write_text("1\n")
        (d / "device" / "type").write_text("5\n")  # SCSI type 5: CD/DVD/BD
        (self.sys / "block").mkdir()
        (self.sys / "class" / "block").mkdir(parents=True)
        os.symlink(Path("..") / disk, self.sys / "block" / "sr0")
        os.symlink(Path("../..") / disk, self.sys / "class" / "block" / "sr0")
        (self.dev / "disk" / "by-label").mkdir(parents=True)
        os.symlink("../../sr0", self.dev / "disk" / "by-label" / r"PATIENT\x20CD")
        self.eject()

    def insert(self, mount: Path) -> None:
        line = f"42 27 11:0 / {_esc(mount)} ro,nosuid,relatime - iso9660 /dev/sr0 ro\n"
        (self.proc / "self" / "mountinfo").write_text(SYSTEM + line)

    def eject(self) -> None:
        (self.proc / "self" / "mountinfo").write_text(SYSTEM)

    def backend(self) -> LinuxBackend:
        def statvfs(path: str) -> os.statvfs_result:
            return os.statvfs_result((2048, 2048, 300000, 0, 0, 0, 0, 0, 0, 255))

        return LinuxBackend(proc_root=self.proc, sys_root=self.sys, dev_root=self.dev,
                            statvfs=statvfs, read_head=lambda p: b"")


class FakeBackend:
    """Any object with list_volumes() will do (the MediaBackend protocol)."""

    def __init__(self) -> None:
        self.volumes: list[Volume] = []
        self.lock = threading.Lock()

    def list_volumes(self) -> list[Volume]:
        with self.lock:
            return list(self.volumes)


def usb(mount: Path, label: str = "STICK") -> Volume:
    return Volume(str(mount), label, "/dev/sdb1", "usb", 3_400_000_000, 8_000_000_000, False,
                  "vfat")


@pytest.fixture
def disc(tmp_path: Path) -> Path:
    """A mounted disc: a folder with a DICOMDIR (content need not be valid for detection)."""
    root = tmp_path / "PATIENT CD"
    root.mkdir()
    (root / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    return root


def test_linux_backend_events_reach_the_panel(qtbot, runner: TaskRunner, tmp_path: Path,
                                              disc: Path) -> None:
    fake = FakeLinux(tmp_path / "fake")
    monitor = MediaMonitor(runner, backend=fake.backend(), interval=0.05)
    panel = SourcesPanel()
    qtbot.addWidget(panel)
    monitor.volumes_changed.connect(panel.set_volumes)
    try:
        with qtbot.wait_signal(monitor.volumes_changed, timeout=5000):
            monitor.start()
        assert panel.volume_paths() == []  # the system disk is not a medium
        assert "No disc" in panel.drives.child(0).text(0)
        with qtbot.wait_signal(monitor.inserted, timeout=5000) as inserted:
            fake.insert(disc)  # the watcher thread notices it by itself
        vol = inserted.args[0]
        assert (vol.kind, vol.label, vol.read_only) == ("optical", "PATIENT CD", True)
        assert panel.volume_paths() == [str(disc)]
        text = panel.drives.child(0).text(0)
        assert "PATIENT CD" in text and "read-only" in text and "free" in text
        with qtbot.wait_signal(monitor.removed, timeout=5000):
            fake.eject()
        assert panel.volume_paths() == []
    finally:
        monitor.stop()
    assert not any(t.name == "media-watcher" for t in threading.enumerate())


def test_fake_backend_object_and_poll_now(qtbot, runner: TaskRunner, tmp_path: Path) -> None:
    backend = FakeBackend()
    monitor = MediaMonitor(runner, backend=backend, interval=60)  # only explicit polls
    seen: list[tuple[str, str]] = []
    monitor.inserted.connect(lambda v: seen.append(("in", v.label)))
    monitor.removed.connect(lambda v: seen.append(("out", v.label)))
    try:
        with qtbot.wait_signal(monitor.volumes_changed, timeout=5000):
            monitor.start()
        backend.volumes = [usb(tmp_path / "a", "ALPHA"), usb(tmp_path / "b", "BETA")]
        with qtbot.wait_signals([monitor.inserted, monitor.inserted], timeout=5000):
            monitor.poll_now()
        backend.volumes = backend.volumes[1:]
        with qtbot.wait_signal(monitor.removed, timeout=5000):
            monitor.poll_now()
        assert seen == [("in", "ALPHA"), ("in", "BETA"), ("out", "ALPHA")]
        assert [v.label for v in monitor.volumes] == ["BETA"]
    finally:
        monitor.stop()


def _window(qtbot, runner: TaskRunner, backend: FakeBackend, opener) -> MainWindow:  # noqa: ANN001
    monitor = MediaMonitor(runner, backend=backend, interval=60)
    win = MainWindow(runner=runner, opener=opener, monitor=monitor, interactive=False)
    qtbot.addWidget(win)
    return win


@pytest.mark.parametrize("policy", ["open", "ask", "ignore"])
def test_detection_policy(qtbot, runner: TaskRunner, disc: Path, build_medium,
                          policy: str) -> None:
    Settings().detection_policy = policy  # type: ignore[assignment]
    backend = FakeBackend()
    opened: list[str] = []

    def opener(path: str, progress=None, cancel=None):  # noqa: ANN001, ANN202
        opened.append(path)
        return build_medium(path)

    win = _window(qtbot, runner, backend, opener)
    offered: list[str] = []
    win.detection.offered.connect(offered.append)
    try:
        with qtbot.wait_signal(win.monitor.volumes_changed, timeout=5000):
            win.start()
        backend.volumes = [usb(disc, "PATIENT CD")]
        with qtbot.wait_signal(win.monitor.inserted, timeout=5000):
            win.monitor.poll_now()
        assert win.sources.volume_paths() == [str(disc)]
        if policy == "open":
            qtbot.wait_until(lambda: len(win.tree_model.media) == 1, timeout=5000)
            assert opened == [str(disc)]
        elif policy == "ask":
            qtbot.wait_until(lambda: offered == [str(disc)], timeout=5000)
            assert opened == []
        else:
            qtbot.wait(200)
            assert offered == [] and opened == []
    finally:
        win.shutdown()


def test_volume_without_dicom_is_not_offered(qtbot, runner: TaskRunner, tmp_path: Path) -> None:
    Settings().detection_policy = "open"
    plain = tmp_path / "HOLIDAY"
    plain.mkdir()
    (plain / "photo.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 300)
    backend = FakeBackend()
    win = _window(qtbot, runner, backend, lambda *a, **k: pytest.fail("must not open"))
    try:
        with qtbot.wait_signal(win.monitor.volumes_changed, timeout=5000):
            win.start()
        backend.volumes = [usb(plain, "HOLIDAY")]
        with qtbot.wait_signal(win.monitor.inserted, timeout=5000):
            win.monitor.poll_now()
        qtbot.wait_until(lambda: runner.active_count() == 0, timeout=5000)
        assert win.tree_model.media == []
    finally:
        win.shutdown()


def test_medium_removed_while_being_read(qtbot, runner: TaskRunner, disc: Path) -> None:
    """The disc is pulled mid-read: the read is cancelled and the user told, no crash."""
    Settings().detection_policy = "ignore"
    started = threading.Event()

    def slow_reader(path: str, progress=None, cancel=None):  # noqa: ANN001, ANN202
        started.set()
        while True:
            cancel.raise_if_cancelled()
            threading.Event().wait(0.01)

    backend = FakeBackend()
    backend.volumes = [usb(disc, "PATIENT CD")]
    win = _window(qtbot, runner, backend, slow_reader)
    try:
        with qtbot.wait_signal(win.monitor.volumes_changed, timeout=5000):
            win.start()
        win.open_path(str(disc / "DICOMDIR"))
        assert started.wait(5)
        assert win.cancel_button.isVisibleTo(win)
        backend.volumes = []
        with qtbot.wait_signal(win.loader.cancelled, timeout=5000) as blocker:
            win.monitor.poll_now()
        assert "was removed while it was being read" in blocker.args[1]
        assert any("PATIENT CD" in m for m in win.messages)
        assert not win.cancel_button.isVisibleTo(win) and win.tree_model.media == []
    finally:
        win.shutdown()


def test_reader_error_after_removal_is_a_message(qtbot, runner: TaskRunner, disc: Path) -> None:
    def vanished(path: str, progress=None, cancel=None):  # noqa: ANN001, ANN202
        raise UnreadableMedium(f"{path}: the medium was removed (No such device)")

    win = _window(qtbot, runner, FakeBackend(), vanished)
    try:
        with qtbot.wait_signal(win.open_failed, timeout=5000) as blocker:
            win.open_path(str(disc))
        assert blocker.args == [str(disc), f"{disc}: the medium was removed (No such device)"]
        assert "No such device" in win.statusBar().currentMessage()
    finally:
        win.shutdown()


def test_open_medium_closed_when_its_volume_goes(qtbot, runner: TaskRunner, disc: Path,
                                                 build_medium) -> None:
    Settings().detection_policy = "ignore"
    backend = FakeBackend()
    backend.volumes = [usb(disc, "PATIENT CD")]
    win = _window(qtbot, runner, backend, lambda p, progress=None, cancel=None: build_medium(p))
    try:
        with qtbot.wait_signal(win.monitor.volumes_changed, timeout=5000):
            win.start()
        with qtbot.wait_signal(win.medium_opened, timeout=5000):
            win.open_path(str(disc))
        assert win.stack.currentWidget() is win.content_split
        backend.volumes = []
        with qtbot.wait_signal(win.monitor.removed, timeout=5000):
            win.monitor.poll_now()
        assert win.tree_model.media == []
        assert win.stack.currentWidget() is win.welcome
        assert any("was removed" in m for m in win.messages)
    finally:
        win.shutdown()


def test_recent_folders_listed_and_activated(qtbot) -> None:
    panel = SourcesPanel()
    qtbot.addWidget(panel)
    panel.set_recent(["/data/discs/anna", "/data/discs/bert"])
    assert panel.recent_paths() == ["/data/discs/anna", "/data/discs/bert"]
    with qtbot.wait_signal(panel.open_requested) as blocker:
        panel.tree.itemActivated.emit(panel.recent.child(1), 0)
    assert blocker.args == ["/data/discs/bert"]
    panel.set_recent([])
    assert panel.recent_paths() == []


def test_format_bytes() -> None:
    assert format_bytes(999) == "999 B"
    assert format_bytes(3_400_000_000) == "3.4 GB"
    assert format_bytes(None) == "?"


def test_ask_policy_shows_a_question_and_opens_on_yes(qtbot, runner: TaskRunner, disc: Path) -> None:
    from PySide6.QtWidgets import QMessageBox, QWidget

    from app.gui.sources import DetectionPolicy

    parent = QWidget()
    qtbot.addWidget(parent)
    policy = DetectionPolicy(runner, lambda: "ask", parent, interactive=True)
    with qtbot.wait_signal(policy.offered, timeout=5000):
        policy.volume_inserted(usb(disc, "PATIENT CD"))
    box = next(w for w in parent.findChildren(QMessageBox))
    assert "PATIENT CD" in box.text() and box.isVisible()  # open(): no nested event loop
    with qtbot.wait_signal(policy.open_requested, timeout=2000) as blocker:
        box.button(QMessageBox.StandardButton.Open).click()
    assert blocker.args == [str(disc)]
