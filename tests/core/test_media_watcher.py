"""MediaWatcher (polling thread, diffs, prompt stop) and has_dicom_content."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from app.core.devices import media
from app.core.devices.media import MediaEvent, MediaWatcher, Volume, diff_volumes, has_dicom_content
from tests.media import make_dataset

STICK = Volume("/media/u/STICK", "STICK", "/dev/sdb1", "usb", 10**9, 2 * 10**9, False, "vfat")
CD = Volume("/media/u/CD", "DICOM", "/dev/sr0", "optical", 0, 7 * 10**8, True, "iso9660")
ROOT = Volume("/", "", "/dev/vda", "fixed", 5 * 10**10, 10**11, False, "ext4")


class ScriptedBackend:
    """Answers list_volumes() from a script; the last answer repeats. Counts calls."""

    def __init__(self, *answers: list[Volume] | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.lock = threading.Lock()
        self.polled = threading.Event()

    def list_volumes(self) -> list[Volume]:
        with self.lock:
            self.calls += 1
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        self.polled.set()
        if isinstance(answer, Exception):
            raise answer
        return list(answer)


def test_diff_volumes() -> None:
    assert diff_volumes([ROOT], [ROOT, CD]) == [MediaEvent("added", CD)]
    assert diff_volumes([ROOT, CD], [ROOT]) == [MediaEvent("removed", CD)]
    relabelled = Volume(**{**STICK.__dict__, "label": "NEW"})
    assert diff_volumes([STICK], [relabelled]) == [MediaEvent("changed", relabelled)]
    # Free space: small drifts are not events, a 1 % step is.
    drift = Volume(**{**STICK.__dict__, "free_bytes": STICK.free_bytes - 4096})
    step = Volume(**{**STICK.__dict__, "free_bytes": STICK.free_bytes - 30 * 10**6})
    assert diff_volumes([STICK], [drift]) == []
    assert diff_volumes([STICK], [step]) == [MediaEvent("changed", step)]


def test_poll_reports_insertion_removal_and_survives_errors() -> None:
    backend = ScriptedBackend([ROOT], [ROOT, CD], OSError("EIO"), [ROOT, CD, STICK], [ROOT, STICK])
    events: list[MediaEvent] = []
    w = MediaWatcher(events.append, interval=60, backend=backend)
    w.start()  # first snapshot, no events (report_existing=False)
    try:
        assert w.volumes == [ROOT] and events == []
        assert w.poll() == [MediaEvent("added", CD)]
        assert w.poll() == []  # the backend failed: the last snapshot is kept
        assert w.poll() == [MediaEvent("added", STICK)]
        assert w.poll() == [MediaEvent("removed", CD)]
        assert events == [MediaEvent("added", CD), MediaEvent("added", STICK),
                          MediaEvent("removed", CD)]
        assert w.volumes == [ROOT, STICK]
    finally:
        w.stop()


def test_thread_delivers_events_and_stops_promptly() -> None:
    backend = ScriptedBackend([ROOT], [ROOT, CD])
    got = threading.Event()
    events: list[MediaEvent] = []

    def callback(e: MediaEvent) -> None:
        events.append(e)
        got.set()

    w = MediaWatcher(callback, interval=0.05, backend=backend, report_existing=True)
    w.start()
    assert events == [MediaEvent("added", ROOT)]
    assert got.wait(5)
    deadline = time.monotonic() + 5
    while len(events) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert events == [MediaEvent("added", ROOT), MediaEvent("added", CD)]
    assert w.running and w._thread is not None and w._thread.daemon
    w.stop()
    assert not w.running

    slow = MediaWatcher(lambda e: None, interval=30, backend=ScriptedBackend([ROOT]))
    slow.start()
    thread = slow._thread
    assert thread is not None and thread.is_alive()
    t0 = time.monotonic()
    slow.stop()
    assert time.monotonic() - t0 < 1.0  # no waiting out the 30 s interval
    assert not thread.is_alive()


def test_no_busy_loop_and_callback_errors_are_contained() -> None:
    backend = ScriptedBackend([ROOT], [ROOT, CD], [ROOT], [ROOT, CD])
    calls: list[MediaEvent] = []

    def bad_callback(e: MediaEvent) -> None:
        calls.append(e)
        raise RuntimeError("GUI bug")

    t0 = time.monotonic()
    with MediaWatcher(bad_callback, interval=0.1, backend=backend):
        deadline = t0 + 10
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
        n = backend.calls
    assert [e.kind for e in calls] == ["added", "removed", "added"]  # it lived on after raising
    assert n <= elapsed / 0.1 + 2  # about one call per interval, not a spin


def test_bad_interval_and_platforms() -> None:
    with pytest.raises(ValueError, match="interval"):
        MediaWatcher(lambda e: None, interval=0)
    assert type(media.for_platform("linux")).__name__ == "LinuxBackend"
    assert type(media.for_platform("darwin")).__name__ == "MacBackend"
    assert type(media.for_platform("win32")).__name__ == "WindowsBackend"
    with pytest.raises(ValueError):
        media.for_platform("plan9")
    assert media.list_volumes(ScriptedBackend(OSError("x"))) == []
    assert media.list_volumes(ScriptedBackend([CD])) == [CD]
    assert CD.removable and not ROOT.removable
    assert CD.display_name == "DICOM" and ROOT.display_name == "/"


def test_has_dicom_content(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not has_dicom_content(empty)
    assert not has_dicom_content(tmp_path / "absent")

    cd = tmp_path / "cd"
    (cd / "VIEWER").mkdir(parents=True)
    (cd / "VIEWER" / "viewer.exe").write_bytes(b"MZ" + b"\0" * 200)
    (cd / "dicomdir.;1").write_bytes(b"x")
    assert has_dicom_content(Volume(str(cd), "", "", "optical", 0, 0, True, "iso9660"))

    nested = tmp_path / "nested"
    (nested / "DATA" / "EXAM").mkdir(parents=True)
    (nested / "DATA" / "EXAM" / "DicomDir").write_bytes(b"x")
    assert has_dicom_content(nested)

    too_deep = tmp_path / "deep"
    (too_deep / "A" / "B" / "C").mkdir(parents=True)
    (too_deep / "A" / "B" / "C" / "DICOMDIR").write_bytes(b"not dicom")
    assert not has_dicom_content(too_deep)

    loose = tmp_path / "loose"
    (loose / "IMAGES" / "S1" / "X").mkdir(parents=True)
    make_dataset().save_as(loose / "IMAGES" / "S1" / "X" / "I1", enforce_file_format=True)
    assert has_dicom_content(str(loose))

    noise = tmp_path / "noise"
    noise.mkdir()
    for i in range(60):
        (noise / f"f{i:03d}.txt").write_bytes(b"hello" * 40)
    make_dataset().save_as(noise / "zz_last.dcm", enforce_file_format=True)
    assert not has_dicom_content(noise)  # beyond the first few dozen files: not looked at
    assert has_dicom_content(noise, max_files=100)

    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "DICOMDIR").symlink_to(cd / "dicomdir.;1")
    assert not has_dicom_content(linked)  # symlinks are never followed


def test_has_dicom_content_is_time_bounded(tmp_path: Path) -> None:
    root = tmp_path / "wide"
    for i in range(200):
        (root / f"D{i:03d}").mkdir(parents=True)
    t0 = time.monotonic()
    assert not has_dicom_content(root, time_budget=0.05)
    assert time.monotonic() - t0 < 1.0
