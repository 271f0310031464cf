"""The export wizard, offscreen, end to end: selection preset, options remembered, summary from
the real plan, writing to a folder and to an ISO image that our reader and dciodvfy accept,
missing study date asked for, spanning offered, Cancel leaving the destination clean, no thread
left running."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QWizard
from pytestqt.qtbot import QtBot

from app.core.jobs import Progress
from app.core.medium.reader import open_medium
from app.core.model import Medium
from app.gui.tasks import TaskRunner
from app.gui.wizard import state as export_wizard
from app.gui.wizard.state import (
    PAGE_DESTINATION,
    PAGE_OPTIONS,
    PAGE_PROGRESS,
    PAGE_RESULT,
    PAGE_SELECTION,
    PAGE_SUMMARY,
)
from app.gui.wizard.wizard import ExportWizard
from tests.conftest import require_tool
from tests.media import make_dataset, uid, write_fileset, write_instance

pytestmark = pytest.mark.gui
TIMEOUT = 60000


# ----------------------------------------------------------------------------- media


def study(patient: dict[str, str], n: int, rows: int = 16, **overrides: object) -> list:
    st, se = uid(), uid()
    out = []
    for i in range(n):
        px = (np.arange(rows * rows, dtype=np.uint16).reshape(rows, rows) * (i + 3)) % 4096
        out.append(make_dataset(rows, rows, pixels=px, StudyInstanceUID=st,
                                SeriesInstanceUID=se, InstanceNumber=str(i + 1),
                                **patient, **overrides))
    return out


ANNA = {"PatientName": "Berg^Anna", "PatientID": "P-100", "PatientBirthDate": "19800314"}
OTTO = {"PatientName": "Kraus^Otto", "PatientID": "P-200", "PatientBirthDate": "19551102"}


@pytest.fixture
def source(tmp_path: Path) -> Medium:
    datasets = study(ANNA, 3, StudyDate="20240105") + study(OTTO, 2, StudyDate="20231120")
    write_fileset(tmp_path / "src", datasets)
    return open_medium(tmp_path / "src")


@pytest.fixture
def runner() -> Iterator[TaskRunner]:
    r = TaskRunner()
    yield r
    assert r.shutdown(10000)
    assert r.busy_threads() == 0  # no thread left running


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def make_wizard(qtbot: QtBot, media: list[Medium], selected: set[str] | None,
                runner: TaskRunner, settings: QSettings) -> ExportWizard:
    wiz = ExportWizard(media, selected, runner, settings=settings)
    wiz.state.report = str(Path(settings.fileName()).with_name("export-report.json"))
    qtbot.addWidget(wiz)
    wiz.show()
    return wiz


def next_page(qtbot: QtBot, wiz: ExportWizard, expected: int) -> None:
    wiz.next()
    assert wiz.currentId() == expected


def fill_options(wiz: ExportWizard, media: str = "cd", fileset_id: str = "TESTDISC") -> None:
    page = wiz.options_page
    page.media_box.setCurrentIndex(page.media_box.findData(media))
    page.fileset_id.setText(fileset_id)
    page.institution.setText("St. Test Radiology")
    page.contact.setText("+1 555 0100")


def to_summary(qtbot: QtBot, wiz: ExportWizard, kind: str, value: str,
               media: str = "cd") -> None:
    assert wiz.currentId() == PAGE_SELECTION
    next_page(qtbot, wiz, PAGE_OPTIONS)
    fill_options(wiz, media)
    next_page(qtbot, wiz, PAGE_DESTINATION)
    page = wiz.destination_page
    page.radios[kind].setChecked(True)
    (page.folder if kind == "folder" else page.iso).setText(value)
    qtbot.waitUntil(lambda: page._pending == 0, timeout=TIMEOUT)  # USB/burner lists arrived
    next_page(qtbot, wiz, PAGE_SUMMARY)
    qtbot.waitUntil(lambda: not wiz.summary_page.busy(), timeout=TIMEOUT)


def write_and_wait(qtbot: QtBot, wiz: ExportWizard) -> None:
    assert wiz.summary_page.isComplete(), wiz.summary_page.error.text()
    wiz.next()
    assert wiz.currentId() in (PAGE_PROGRESS, PAGE_RESULT)
    qtbot.waitUntil(lambda: wiz.currentId() == PAGE_RESULT, timeout=TIMEOUT)


def dciodvfy_errors(path: Path) -> list[str]:
    tool = require_tool("dciodvfy")
    res = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    return [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]


# ----------------------------------------------------------------------------- tests


def test_selection_preset_from_the_current_selection(qtbot: QtBot, source: Medium,
                                                     runner: TaskRunner,
                                                     settings: QSettings) -> None:
    otto = next(p for p in source.patients if p.patient_id == "P-200")
    series_uid = otto.studies[0].series[0].series_uid
    wiz = make_wizard(qtbot, [source], {series_uid}, runner, settings)
    page = wiz.selection_page
    expected = {i.sop_instance_uid for i in otto.instances()}
    assert page.selected_uids() == expected
    assert page.count_label.text() == "2 objects checked"
    page.none_button.click()
    assert not page.isComplete()
    assert not wiz.button(QWizard.WizardButton.NextButton).isEnabled()
    page.all_button.click()
    assert len(page.selected_uids()) == 5
    next_page(qtbot, wiz, PAGE_OPTIONS)
    assert wiz.state.select is None  # everything checked = no restriction


def test_several_media_contribute(qtbot: QtBot, source: Medium, runner: TaskRunner,
                                  settings: QSettings, tmp_path: Path) -> None:
    write_fileset(tmp_path / "src2", study({"PatientName": "Lund^Eva", "PatientID": "P-300",
                                            "PatientBirthDate": "19900101"}, 1))
    other = open_medium(tmp_path / "src2")
    wiz = make_wizard(qtbot, [source, other], None, runner, settings)
    assert wiz.selection_page.tree.topLevelItemCount() == 2  # one branch per medium
    assert len(wiz.selection_page.selected_uids()) == 6


def test_end_to_end_to_a_folder(qtbot: QtBot, source: Medium, runner: TaskRunner,
                                settings: QSettings, tmp_path: Path) -> None:
    anna = next(p for p in source.patients if p.patient_id == "P-100")
    wiz = make_wizard(qtbot, [source], {anna.studies[0].study_uid}, runner, settings)
    wiz.options_page.icons.setChecked(True)
    dest = tmp_path / "out"
    to_summary(qtbot, wiz, "folder", str(dest))
    # Nothing written before the last page.
    assert not dest.exists() or not any(dest.iterdir())
    html = wiz.summary_page.view.toHtml()
    text = wiz.summary_page.view.toPlainText()
    assert "Anna Berg" in text and "P-100" in text and "1980-03-14" in text
    assert "2024-01-05" in text
    assert "Kraus" not in text  # only the selected patient
    assert "TESTDISC" in text and "STD-GEN-CD" in text
    assert "font-size:x-large" in html.replace(" ", "")  or "x-large" in html
    assert wiz.summary_page.capacity.isVisible()
    assert wiz.button(QWizard.WizardButton.CommitButton).text().replace("&", "") == "Write"
    opened: list[str] = []
    wiz.open_medium_requested.connect(opened.append)
    write_and_wait(qtbot, wiz)
    assert wiz.outcome == "ok", wiz.result_page.details.toPlainText()
    assert "verified" in wiz.result_page.status.text()
    assert wiz.report.verification.checked and wiz.report.verification.ok
    wiz.result_page.open_button.click()
    assert opened == [str(dest)]
    medium = open_medium(opened[0])
    assert [p.patient_id for p in medium.patients] == ["P-100"]
    assert len(list(medium.instances())) == 3
    assert not [p for p in medium.problems if p.severity == "error"]
    assert dciodvfy_errors(dest / "DICOMDIR") == []
    dicomdir = pydicom.dcmread(dest / "DICOMDIR")
    assert dicomdir.FileSetID == "TESTDISC"
    images = [r for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    assert len(images) == 3 and all("IconImageSequence" in r for r in images)  # icons asked for
    readme = (dest / "README.TXT").read_text(encoding="latin-1")
    assert "St. Test Radiology" in readme and "Anna" not in readme
    # Institution and contact are remembered.
    assert settings.value("export/institution") == "St. Test Radiology"
    assert settings.value("export/contact") == "+1 555 0100"


def test_end_to_end_to_an_iso_image(qtbot: QtBot, source: Medium, runner: TaskRunner,
                                    settings: QSettings, tmp_path: Path) -> None:
    wiz = make_wizard(qtbot, [source], None, runner, settings)
    iso = tmp_path / "disc.iso"
    to_summary(qtbot, wiz, "iso", str(iso))
    assert not iso.exists()
    assert "This export holds 2 different patients." in wiz.summary_page.view.toPlainText()
    assert wiz.button(QWizard.WizardButton.CommitButton).text().replace("&", "") == \
        "Create image"
    opened: list[str] = []
    wiz.open_medium_requested.connect(opened.append)
    write_and_wait(qtbot, wiz)
    assert wiz.outcome == "ok", wiz.result_page.details.toPlainText()
    assert iso.is_file()
    wiz.result_page.open_button.click()
    assert opened == [str(iso)]
    medium = open_medium(iso)
    assert sorted(p.patient_id for p in medium.patients) == ["P-100", "P-200"]
    assert wiz.plan is not None and len(wiz.plan.patients) == 2
    assert len(list(medium.instances())) == 5
    assert medium.fs is not None
    dicomdir = tmp_path / "DICOMDIR.from-iso"
    with medium.fs.open(medium.dicomdirs[0]) as fp:
        dicomdir.write_bytes(fp.read())
    assert dciodvfy_errors(dicomdir) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".discbridge")] == []


def test_missing_study_date_is_asked_for(qtbot: QtBot, runner: TaskRunner, settings: QSettings,
                                         tmp_path: Path) -> None:
    from PySide6.QtCore import Qt

    datasets = study(ANNA, 2, StudyDate=None, StudyTime=None, SeriesDate=None,
                     AcquisitionDate=None, ContentDate=None)
    for n, ds in enumerate(datasets):  # no DICOMDIR: pydicom's FileSet refuses such files
        write_instance(tmp_path / "src" / f"IM{n}", ds)
    medium = open_medium(tmp_path / "src")
    wiz = make_wizard(qtbot, [medium], None, runner, settings)
    to_summary(qtbot, wiz, "folder", str(tmp_path / "out"))
    page = wiz.summary_page
    assert not page.isComplete()
    assert page.error.text().startswith("1 study has no date in any of its files")
    assert "Anna Berg" in page.error.text()
    assert page.date_edit.isVisible() and not page.span_box.isVisible()
    assert page.date_edit.text() == ""  # never a date from the clock
    assert not page.retry.isEnabled()
    qtbot.keyClicks(page.date_edit, "2099-01-01")  # the future is refused
    assert not page.retry.isEnabled()
    page.date_edit.clear()
    qtbot.keyClicks(page.date_edit, "2023-02-30")  # not a date
    assert not page.retry.isEnabled()
    page.date_edit.clear()
    qtbot.keyClicks(page.date_edit, "2023-06-30")
    assert page.retry.isEnabled()
    qtbot.keyClick(page.date_edit, Qt.Key.Key_Return)  # Enter checks again
    qtbot.waitUntil(lambda: not page.busy(), timeout=TIMEOUT)
    assert page.isComplete(), page.error.text()
    assert wiz.state.study_date == "20230630"
    assert "2023-06-30" in page.view.toPlainText()
    assert "StudyDate" in page.view.toPlainText()  # listed as a fix in the exported copies


def test_too_big_offers_spanning(qtbot: QtBot, source: Medium, runner: TaskRunner,
                                 settings: QSettings, tmp_path: Path) -> None:
    wiz = make_wizard(qtbot, [source], None, runner, settings)
    to_summary(qtbot, wiz, "folder", str(tmp_path / "out"))
    page = wiz.summary_page
    assert page.isComplete() and len(wiz.plan.volumes) == 1
    # A "disc" one byte too small for everything: back to the destination and on again.
    wiz.capacity_override = wiz.plan.total_bytes - 1
    wiz.back()
    next_page(qtbot, wiz, PAGE_SUMMARY)
    qtbot.waitUntil(lambda: not page.busy(), timeout=TIMEOUT)
    assert not page.isComplete()
    assert page.error.text().startswith("Too big: the export needs about")
    assert not page.retry.isEnabled()
    assert page.span_box.isVisible()
    page.span_box.setChecked(True)
    page.retry.click()
    qtbot.waitUntil(lambda: not page.busy(), timeout=TIMEOUT)
    assert page.isComplete(), page.error.text()
    assert len(wiz.plan.volumes) == 2
    assert "2 discs" in page.view.toPlainText()


def held_export(plan: Any, progress: Any = None, cancel: Any = None) -> Any:
    """The real export, held at its first written bytes until the test opens the gate."""
    reached = Path(os.environ["DISCBRIDGE_TEST_REACHED"])
    gate = Path(os.environ["DISCBRIDGE_TEST_GATE"])

    def report(p: Progress) -> None:
        progress(p)
        if p.phase == "write" and p.done_bytes > 0 and not reached.exists():
            reached.touch()
            deadline = time.monotonic() + 30
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.02)

    return export_wizard.execute_and_report(plan, report, cancel)


def test_cancel_mid_export_leaves_the_destination_clean(qtbot: QtBot, runner: TaskRunner,
                                                         settings: QSettings, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    write_fileset(tmp_path / "src", study(ANNA, 40, rows=64))
    medium = open_medium(tmp_path / "src")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("the user's own file")
    # Hold the real export at its first written bytes until the user has pressed Cancel, so the
    # cancel lands mid-write however fast the machine is. The export runs in a child process:
    # the hold is a module-level function and the two events are files.
    reached, gate = tmp_path / "reached", tmp_path / "gate"
    monkeypatch.setenv("DISCBRIDGE_TEST_REACHED", str(reached))
    monkeypatch.setenv("DISCBRIDGE_TEST_GATE", str(gate))
    monkeypatch.setattr(export_wizard, "execute_and_report", held_export)
    wiz = make_wizard(qtbot, [medium], None, runner, settings)
    try:
        to_summary(qtbot, wiz, "folder", str(dest))
        assert wiz.summary_page.isComplete(), wiz.summary_page.error.text()
        wiz.next()
        assert wiz.currentId() == PAGE_PROGRESS
        qtbot.waitUntil(reached.exists, timeout=TIMEOUT)
        assert any(p.name.startswith(".") for p in dest.iterdir())  # staging exists mid-write
        wiz.reject()  # the wizard's Cancel button
        assert wiz.isVisible()  # Cancel stops the export, it does not close the wizard
        assert not wiz.button(QWizard.WizardButton.CancelButton).isEnabled()
    finally:
        gate.touch()
    qtbot.waitUntil(lambda: wiz.currentId() == PAGE_RESULT, timeout=TIMEOUT)
    assert wiz.outcome == "cancelled"
    assert "Cancelled" in wiz.result_page.status.text()
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]  # as it was
    assert (dest / "keep.txt").read_text() == "the user's own file"


def test_cancel_is_disabled_once_a_burn_writes(qtbot: QtBot, source: Medium, runner: TaskRunner,
                                               settings: QSettings) -> None:
    wiz = make_wizard(qtbot, [source], None, runner, settings)
    cancel = wiz.button(QWizard.WizardButton.CancelButton)
    page = wiz.progress_page
    page._progress(Progress("burn", 0, 1, 10, 100, "writing the disc", cancellable=True))
    assert cancel.isEnabled()
    page._progress(Progress("burn", 0, 1, 50, 100, "writing the disc", cancellable=False))
    assert not cancel.isEnabled()
    assert page.phase.text() == "Burning the disc"
    assert page.counts.text() == "0 of 1 files · 50 bytes of 100 bytes"


def test_options_are_remembered(qtbot: QtBot, source: Medium, runner: TaskRunner,
                                settings: QSettings) -> None:
    settings.setValue("export/institution", "Remembered Hospital")
    settings.setValue("export/media", "dvd")
    wiz = make_wizard(qtbot, [source], None, runner, settings)
    page = wiz.options_page
    assert page.institution.text() == "Remembered Hospital"
    assert page.media_box.currentData() == "dvd"
    assert page.profile_box.itemText(0) == "Standard for this medium (STD-GEN-DVD-JPEG)"
    page.fileset_id.setText("")
    from PySide6.QtCore import Qt

    qtbot.keyClicks(page.fileset_id, "disc_1")
    assert page.fileset_id.text() == "DISC_1"  # upper-cased as typed
    qtbot.keyClicks(page.fileset_id, " -x")
    assert page.fileset_id.text().startswith("DISC_1")  # invalid characters refused
    # Keyboard navigation: every field is reachable by Tab.
    for w in (page.media_box, page.profile_box, page.icons, page.fileset_id,
              page.institution, page.contact):
        assert w.focusPolicy() & Qt.FocusPolicy.TabFocus


def test_keyboard_only_reaches_the_summary(qtbot: QtBot, source: Medium, runner: TaskRunner,
                                           settings: QSettings, tmp_path: Path) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    wiz = make_wizard(qtbot, [source], None, runner, settings)
    wiz.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is wiz, timeout=5000)

    def key(k: Qt.Key, mod: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
        target = QApplication.focusWidget() or wiz
        qtbot.keyClick(target, k, mod)

    key(Qt.Key.Key_Return)  # Next is the default button
    assert wiz.currentId() == PAGE_OPTIONS
    key(Qt.Key.Key_Return)
    assert wiz.currentId() == PAGE_DESTINATION
    key(Qt.Key.Key_F, Qt.KeyboardModifier.AltModifier)  # "&Folder:" (an animated click)
    qtbot.waitUntil(wiz.destination_page.radios["folder"].isChecked, timeout=2000)
    key(Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is wiz.destination_page.folder
    qtbot.keyClicks(wiz.destination_page.folder, str(tmp_path / "kbd"))
    key(Qt.Key.Key_Return)
    assert wiz.currentId() == PAGE_SUMMARY
    qtbot.waitUntil(lambda: not wiz.summary_page.busy(), timeout=TIMEOUT)
    assert wiz.summary_page.isComplete(), wiz.summary_page.error.text()
    key(Qt.Key.Key_Escape)  # Cancel before writing closes the wizard; nothing was written
    assert not wiz.isVisible()
    assert not (tmp_path / "kbd").exists()


def test_patient_id_clash_can_be_kept_apart(qtbot: QtBot, runner: TaskRunner,
                                            settings: QSettings, tmp_path: Path) -> None:
    twin = {"PatientName": "Other^Person", "PatientID": "P-100", "PatientBirthDate": "19991231"}
    for n, ds in enumerate(study(ANNA, 1) + study(twin, 1)):
        write_instance(tmp_path / "src" / f"IM{n}", ds)
    medium = open_medium(tmp_path / "src")
    wiz = make_wizard(qtbot, [medium], None, runner, settings)
    to_summary(qtbot, wiz, "folder", str(tmp_path / "out"))
    page = wiz.summary_page
    assert not page.isComplete()
    text = page.error.text()
    assert text.startswith("Patient ID P-100 is used by different patients:")
    assert "Anna Berg (born 1980-03-14)" in text and "Person Other (born 1999-12-31)" in text
    assert page.separate_box.isVisible() and not page.date_edit.isVisible()
    page.separate_box.setChecked(True)
    page.retry.click()
    qtbot.waitUntil(lambda: not page.busy(), timeout=TIMEOUT)
    assert page.isComplete(), page.error.text()
    assert wiz.state.on_id_clash == "separate"
    ids = sorted(p.patient_id for p in wiz.plan.patients)
    assert len(ids) == 2 and "P-100" in ids
    assert "PatientID" in page.view.toPlainText()  # the new ID is listed as a change


def test_usb_volume_and_burners_are_offered(qtbot: QtBot, source: Medium, runner: TaskRunner,
                                            settings: QSettings, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.devices import burn, media

    stick = tmp_path / "stick"
    stick.mkdir()
    volumes = [
        media.Volume(str(stick), "PATIENTS", "/dev/sdz1", "usb", 8 * 10**9, 16 * 10**9, False,
                     "vfat"),
        media.Volume("/", "", "/dev/sda1", "fixed", 10**9, 10**10, False, "ext4"),
        media.Volume("/media/ro", "RO", "/dev/sdy1", "usb", 0, 10**9, True, "vfat"),
    ]
    burners = [burn.Burner("/dev/sr9", "Test Writer", "ACME", "blank", "DVD+R", 4_700_000_000,
                           True),
               burn.Burner("/dev/sr8", "Old Reader", "ACME", "closed", "CD-ROM", 0, False)]
    # The core backends are asked on the runner; here they answer as a machine with a stick
    # and a burner would (the backends themselves are tested on fake trees and recordings).
    monkeypatch.setattr(media, "list_volumes", lambda *a, **k: volumes)
    monkeypatch.setattr(burn, "list_burners", lambda *a, **k: burners)
    wiz = make_wizard(qtbot, [source], None, runner, settings)
    next_page(qtbot, wiz, PAGE_OPTIONS)
    fill_options(wiz, media="usb")
    next_page(qtbot, wiz, PAGE_DESTINATION)
    page = wiz.destination_page
    qtbot.waitUntil(lambda: page._pending == 0, timeout=TIMEOUT)
    assert page.kind() == "usb"  # the media type chose the USB row
    assert page.usb_box.count() == 1  # only writable USB volumes
    assert "PATIENTS" in page.usb_box.itemText(0) and "8.0 GB free" in page.usb_box.itemText(0)
    assert [page.burn_box.itemData(i) for i in range(page.burn_box.count())] == ["/dev/sr9", ""]
    assert "Test Writer" in page.burn_box.itemText(0)
    next_page(qtbot, wiz, PAGE_SUMMARY)
    qtbot.waitUntil(lambda: not wiz.summary_page.busy(), timeout=TIMEOUT)
    assert wiz.state.usb == str(stick)
    assert "STD-GEN-USB-JPEG" in wiz.summary_page.view.toPlainText()
    write_and_wait(qtbot, wiz)
    assert wiz.outcome == "ok", wiz.result_page.details.toPlainText()
    assert (stick / "DICOMDIR").is_file()  # DICOMDIR at the root of the stick (PS3.12)
    assert len(list(open_medium(stick).instances())) == 5


def test_an_existing_medium_is_replaced_only_when_asked(qtbot: QtBot, source: Medium,
                                                        runner: TaskRunner, settings: QSettings,
                                                        tmp_path: Path) -> None:
    dest = tmp_path / "out"
    first = make_wizard(qtbot, [source], None, runner, settings)
    to_summary(qtbot, first, "folder", str(dest))
    assert not first.summary_page.replace_box.isVisibleTo(first.summary_page)
    write_and_wait(qtbot, first)
    assert first.outcome == "ok"
    before = (dest / "DICOMDIR").read_bytes()
    otto = next(p for p in source.patients if p.patient_id == "P-200")
    again = make_wizard(qtbot, [source], {otto.studies[0].study_uid}, runner, settings)
    to_summary(qtbot, again, "folder", str(dest))
    page = again.summary_page
    assert page.replace_box.isVisibleTo(page)
    assert "holds a medium already" in page.replace_box.text()
    assert "DICOMDIR" in page.replace_box.text()
    assert not page.isComplete()  # no silent replacement
    assert not again.button(QWizard.WizardButton.CommitButton).isEnabled()
    page.replace_box.setChecked(True)
    assert page.isComplete() and again.state.force
    write_and_wait(qtbot, again)
    assert again.outcome == "ok", again.result_page.details.toPlainText()
    assert (dest / "DICOMDIR").read_bytes() != before
    assert [p.patient_id for p in open_medium(dest).patients] == ["P-200"]


def test_summary_lists_transcodings(qtbot: QtBot, runner: TaskRunner, settings: QSettings,
                                    tmp_path: Path) -> None:
    import shutil

    from tests.media import pydicom_test_file

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(pydicom_test_file("MR_small_RLE.dcm"), src / "IM1")  # RLE: not allowed on CD
    medium = open_medium(src)
    wiz = make_wizard(qtbot, [medium], None, runner, settings)
    to_summary(qtbot, wiz, "folder", str(tmp_path / "out"))
    assert wiz.summary_page.isComplete(), wiz.summary_page.error.text()
    text = wiz.summary_page.view.toPlainText()
    assert "Re-encoded for this profile" in text
    assert "RLE Lossless → Explicit VR Little Endian: 1 file" in text
