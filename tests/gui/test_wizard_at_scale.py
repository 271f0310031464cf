"""The export wizard at scale, end to end (acceptance of the "one export engine" issue).

1. A medium of 1,050 loose files, every one without Study ID and Series Number (header fixes),
   five in six in a transfer syntax STD-GEN-CD does not allow (Implicit VR LE, Explicit VR Big
   Endian, Deflated, RLE, JPEG 2000 lossless: transcoded), icons asked for; exported through the
   headless hook (``python -m app open SRC --wizard-export ...``, a subprocess with a HOME and
   XDG folders of its own) and through clicks in the real wizard, each to a folder and to an ISO
   image. Every result: verified, every source instance on the medium exactly once, pydicom's
   FileSet resolves every record, dciodvfy finds no error in the DICOMDIR and no new error in a
   sample of exported files compared with their sources, pixels unchanged.
2. pydicom's own test files (and pydicom-data's, when installed) through the hook to STD-GEN-CD
   with ``--study-date`` and ``--skip-unexportable``: exit 0, every source file on the medium or
   named with a reason, transcoded pixels equal on lossless paths, nothing on stderr.
3. Cancel while the process pool works on those 1,050 files: DEST exactly as it was, no child
   process and no export thread left.
4. A failed export from the window: its JSON report and a crash-log entry are written, and the
   result page names both.

Media are generated in code (nothing binary is committed); images are 32×32 so the whole file
runs in about a minute on two cores.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QAbstractButton, QWizard
from pytestqt.qtbot import QtBot

from app.core.export.uids import conformant_uid, is_valid_uid
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
from tests.export_helpers import dciodvfy_errors, listing, tree_hashes
from tests.media import make_dataset, uid

pytestmark = pytest.mark.gui

TIMEOUT_MS = 240_000  # one export of 1,050 files takes ~10 s here; a hang still ends
REPO = Path(__file__).resolve().parents[2]
WRITTEN_RE = re.compile(r"^written (\d+) files, ([\d.]+) MB, verified, ([\d.]+) s$", re.M)

# ----------------------------------------------------------------------------- the big medium

N_STUDIES, N_SERIES, N_IMAGES = 10, 5, 21  # 1,050 files
ROWS = 32
KINDS = [ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian,
         RLELossless, JPEG2000Lossless, ExplicitVRLittleEndian]


@dataclass
class Source:
    """A generated medium: its folder and every instance's file and transfer syntax."""

    root: Path
    files: dict[str, Path]  # SOP Instance UID → source file
    syntax: dict[str, str]  # SOP Instance UID → source transfer syntax


def write_scale_medium(root: Path) -> Source:
    """1,050 loose files (no DICOMDIR: pydicom's FileSet refuses files without Study ID), each
    lacking Study ID and Series Number, the transfer syntaxes of KINDS in turn, 3 patients."""
    files: dict[str, Path] = {}
    syntax: dict[str, str] = {}
    k = 0
    for s in range(N_STUDIES):
        study_uid = uid()
        patient = {"PatientName": f"Scale^Patient{s % 3}", "PatientID": f"PS-{s % 3}",
                   "PatientBirthDate": f"19{60 + s % 3}0101"}
        for se in range(N_SERIES):
            series_uid = uid()
            for i in range(N_IMAGES):
                px = ((np.arange(ROWS * ROWS, dtype=np.uint16).reshape(ROWS, ROWS) * (i + 3)
                       + 17 * k) % 4096).astype(np.uint16)
                ds = make_dataset(ROWS, ROWS, pixels=px, StudyInstanceUID=study_uid,
                                  SeriesInstanceUID=series_uid, InstanceNumber=str(i + 1),
                                  StudyDate=f"2024{1 + s % 12:02d}15", StudyID=None,
                                  SeriesNumber=None, **patient)
                ts = KINDS[k % len(KINDS)]
                if ts in (RLELossless, JPEG2000Lossless):
                    ds.compress(ts, px)
                else:
                    ds.file_meta.TransferSyntaxUID = ts
                    if ts == ExplicitVRBigEndian:
                        ds.PixelData = px.astype(">u2").tobytes()
                path = root / f"STUDY{s:02d}" / f"SER{se}" / f"IMG{i:03d}.dcm"
                path.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(path, enforce_file_format=True)
                files[ds.SOPInstanceUID] = path
                syntax[ds.SOPInstanceUID] = ts
                k += 1
    return Source(root, files, syntax)


@pytest.fixture(scope="module")
def scale_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    src = write_scale_medium(tmp_path_factory.mktemp("scale") / "src")
    assert len(src.files) == N_STUDIES * N_SERIES * N_IMAGES >= 1000
    before = tree_hashes(src.root)
    yield src
    assert tree_hashes(src.root) == before  # no export touched a source file


# ----------------------------------------------------------------------------- the hook


def isolated_env(home: Path) -> dict[str, str]:
    """The environment of a headless run: offscreen, a HOME and XDG folders of its own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "DISPLAY", "WAYLAND_")) and k != "HOME"}
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
    for var in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME",
                "XDG_RUNTIME_DIR"):
        path = home / var.lower()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        env[var] = str(path)
    return env


def run_hook(src: Path, dest: str, home: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "app", "open", str(src), "--wizard-export", dest, *flags]
    return subprocess.run(cmd, cwd=REPO, env=isolated_env(home), capture_output=True,
                          text=True, timeout=TIMEOUT_MS / 1000)


def reports_in(home: Path) -> list[Path]:
    return sorted((home / "xdg_data_home" / "discbridge" / "reports").glob("*.json"))


# ----------------------------------------------------------------------------- checking a medium


def extract_iso(iso: Path, out: Path) -> Path:
    """Copy every file of an .iso image into ``out`` through our own reader (IsoFS)."""
    from app.core.medium.isofs import IsoFS

    with IsoFS(iso) as fs:
        todo = [""]
        while todo:
            rel = todo.pop()
            for entry in fs.listdir(rel):
                child = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir:
                    todo.append(child)
                    continue
                dst = out.joinpath(*child.split("/"))
                dst.parent.mkdir(parents=True, exist_ok=True)
                with fs.open(child) as fin, open(dst, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
    return out


def quiet_read(path: Path, **kwargs: Any) -> pydicom.Dataset:
    """pydicom.dcmread without its warnings about odd values (real files have them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, **kwargs)


def sop_uid(path: Path) -> str:
    """The SOP Instance UID the file has on an exported medium ("" when none): its own, or, when
    that is not a valid UID, the 2.25 UID the export derives from it (app.core.export.uids).
    Without pydicom's warnings about its value (values are converted when first used: inside
    the catch)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uid = str(ds.get("SOPInstanceUID", "") or "").strip()
    return conformant_uid(uid) if uid and not is_valid_uid(uid) else uid


def exported_files(root: Path) -> dict[str, list[Path]]:
    """SOP Instance UID → the files of the medium at ``root`` holding it."""
    out: dict[str, list[Path]] = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            if name.upper() in ("DICOMDIR", "README.TXT"):
                continue
            path = Path(dirpath) / name
            out.setdefault(sop_uid(path), []).append(path)
    return out


def check_fileset(root: Path) -> FileSet:
    """pydicom's FileSet opens the DICOMDIR and every record resolves to an existing file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # record values copied from odd sources (real files)
        fs = FileSet(root / "DICOMDIR")
    for inst in fs:
        assert Path(inst.path).is_file(), inst.path
    return fs


def dciodvfy_baseline(tool: str, src: Path, scratch: Path) -> set[str]:
    """dciodvfy's errors for a source file; a file dciodvfy cannot parse (Deflated) is judged
    as pydicom decodes it, re-saved in Explicit VR Little Endian."""
    errors = dciodvfy_errors(tool, src)
    if not any("read failed" in e for e in errors):
        return errors
    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    plain = scratch / f"{src.stem}.plain.dcm"
    ds.save_as(plain, enforce_file_format=True)
    return dciodvfy_errors(tool, plain)


def check_scale_medium(root: Path, source: Source, scratch: Path) -> dict[str, Any]:
    """Everything point 1 asks of a written medium; returns a few numbers for the log."""
    t0 = time.monotonic()
    on_medium = exported_files(root)
    counts = Counter({u: len(p) for u, p in on_medium.items()})
    assert [u for u, n in counts.items() if n > 1] == []  # every instance exactly once
    assert set(on_medium) == set(source.files)  # ... and every source instance is there
    fs = check_fileset(root)
    records = {inst.SOPInstanceUID for inst in fs}
    assert records == set(source.files) and len(fs) == len(source.files)
    dicomdir = pydicom.dcmread(root / "DICOMDIR")
    images = [r for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    assert len(images) == len(source.files)
    assert all("IconImageSequence" in r for r in images)  # icons were asked for
    studies = [r for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "STUDY"]
    series = [r for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "SERIES"]
    assert len(studies) == N_STUDIES and all(r.StudyID for r in studies)
    assert len(series) == N_STUDIES * N_SERIES and all(r.SeriesNumber for r in series)
    # A sample spread over every source transfer syntax: fixed, Explicit VR LE, same pixels, and
    # dciodvfy finds no error that its source did not have.
    tool = require_tool("dciodvfy")
    assert dciodvfy_errors(tool, root / "DICOMDIR") == set()
    uids = sorted(source.files, key=lambda u: str(source.files[u]))
    sample = uids[:: max(1, len(uids) // 30)][:30]
    assert {source.syntax[u] for u in sample} == set(KINDS)
    new_errors: dict[str, set[str]] = {}
    for u in sample:
        (out,) = on_medium[u]
        ds = pydicom.dcmread(out)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.StudyID and ds.SeriesNumber is not None
        assert np.array_equal(ds.pixel_array, pydicom.dcmread(source.files[u]).pixel_array)
        extra = dciodvfy_errors(tool, out) - dciodvfy_baseline(tool, source.files[u], scratch)
        if extra:
            new_errors[f"{out.relative_to(root)} (from {source.files[u].name})"] = extra
    assert new_errors == {}
    return {"files": len(on_medium), "check_s": round(time.monotonic() - t0, 1)}


# ----------------------------------------------------------------------------- the wizard, clicked


@pytest.fixture
def runner() -> Iterator[TaskRunner]:
    r = TaskRunner()
    yield r
    assert r.shutdown(30000)
    assert r.busy_threads() == 0


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """XDG folders of this test only: the export child (spawned, it inherits the environment)
    writes its report and crash log there."""
    base = tmp_path / "xdg"
    for var in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        (base / var.lower()).mkdir(parents=True)
        monkeypatch.setenv(var, str(base / var.lower()))
    return base


def click(qtbot: QtBot, button: QAbstractButton) -> None:
    assert button.isVisible() and button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def click_next(qtbot: QtBot, wiz: ExportWizard, expected: int) -> None:
    click(qtbot, wiz.button(QWizard.WizardButton.NextButton))
    assert wiz.currentId() == expected


def type_into(qtbot: QtBot, field: Any, text: str) -> None:
    field.selectAll()
    qtbot.keyClick(field, Qt.Key.Key_Delete)
    qtbot.keyClicks(field, text)
    assert field.text() == text


def open_wizard(qtbot: QtBot, media: list[Medium], runner: TaskRunner,
                settings: QSettings, report: str = "") -> ExportWizard:
    wiz = ExportWizard(media, None, runner, settings=settings)
    wiz.state.report = report
    qtbot.addWidget(wiz)
    wiz.show()
    qtbot.waitExposed(wiz)
    return wiz


def click_to_summary(qtbot: QtBot, wiz: ExportWizard, kind: str, target: Path,
                     icons: bool = True) -> None:
    """Selection (everything) → Options (icons) → Destination (folder or ISO) → Summary."""
    assert wiz.currentId() == PAGE_SELECTION
    click(qtbot, wiz.selection_page.all_button)
    click_next(qtbot, wiz, PAGE_OPTIONS)
    options = wiz.options_page
    assert options.media_box.currentData() == "cd"
    if options.icons.isChecked() != icons:
        click(qtbot, options.icons)
    assert options.icons.isChecked() == icons
    click_next(qtbot, wiz, PAGE_DESTINATION)
    dest = wiz.destination_page
    qtbot.waitUntil(lambda: dest._pending == 0, timeout=TIMEOUT_MS)  # USB/burner lists
    click(qtbot, dest.radios[kind])
    assert dest.radios[kind].isChecked()
    type_into(qtbot, dest.folder if kind == "folder" else dest.iso, str(target))
    click_next(qtbot, wiz, PAGE_SUMMARY)
    qtbot.waitUntil(lambda: not wiz.summary_page.busy(), timeout=TIMEOUT_MS)
    assert wiz.summary_page.isComplete(), wiz.summary_page.error.text()


def click_write(qtbot: QtBot, wiz: ExportWizard) -> float:
    t0 = time.monotonic()
    click(qtbot, wiz.button(QWizard.WizardButton.CommitButton))
    assert wiz.currentId() in (PAGE_PROGRESS, PAGE_RESULT)
    qtbot.waitUntil(lambda: wiz.currentId() == PAGE_RESULT, timeout=TIMEOUT_MS)
    return time.monotonic() - t0


def result_text(wiz: ExportWizard) -> str:
    page = wiz.result_page
    return page.status.text() + "\n" + page.details.toPlainText()


# ============================================================================= 1. at scale


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["folder", "iso"])
def test_hook_exports_1000_files_needing_work(kind: str, scale_source: Source,
                                              tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    dest, iso = tmp_path / "out", tmp_path / "disc.iso"
    if kind == "folder":
        proc = run_hook(scale_source.root, str(dest), home, "--icons")
    else:
        proc = run_hook(scale_source.root, "-", home, "--iso", str(iso), "--icons")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = WRITTEN_RE.search(proc.stdout)
    assert m is not None, proc.stdout
    assert int(m.group(1)) == len(scale_source.files)
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    (report_path,) = reports_in(home)  # the report went to the temporary data folder
    assert f"report: {report_path}" in proc.stdout
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["verification"]["ok"] and report["profile"] == "STD-GEN-CD"
    assert report["skipped"] == [] and report["warnings"] == []
    assert len(report["transcodings"]) == sum(
        1 for t in scale_source.syntax.values() if t != ExplicitVRLittleEndian)
    fixed = Counter(c["attribute"] for c in report["changes"])
    assert fixed["StudyID"] == fixed["SeriesNumber"] == len(scale_source.files)
    if kind == "iso":
        assert iso.is_file() and not dest.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".discbridge")] == []
        root = extract_iso(iso, tmp_path / "extracted")
    else:
        root = dest
    stats = check_scale_medium(root, scale_source, tmp_path)
    print(f"hook → {kind}: {m.group(0)}; {stats}")  # noqa: T201 - measured, shown with -s


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["folder", "iso"])
def test_clicks_export_1000_files_needing_work(kind: str, qtbot: QtBot, scale_source: Source,
                                               runner: TaskRunner, settings: QSettings,
                                               tmp_path: Path) -> None:
    medium = open_medium(scale_source.root)
    assert len(list(medium.instances())) == len(scale_source.files)
    wiz = open_wizard(qtbot, [medium], runner, settings,
                      report=str(tmp_path / "export-report.json"))
    target = tmp_path / ("out" if kind == "folder" else "disc.iso")
    click_to_summary(qtbot, wiz, kind, target)
    text = wiz.summary_page.view.toPlainText()
    assert "STD-GEN-CD" in text and "Re-encoded for this profile" in text
    assert wiz.plan is not None and len(wiz.plan.files) == len(scale_source.files)
    assert not target.exists()  # nothing written before Write
    seconds = click_write(qtbot, wiz)
    assert wiz.outcome == "ok", result_text(wiz)
    status = wiz.result_page.status.text()
    assert "verified" in status and "all identical" in status, status
    report = wiz.report
    assert report.verification.checked and report.verification.ok
    assert sum(v.files for v in report.volumes) == len(scale_source.files)
    assert f"export done: {len(scale_source.files)} files" in wiz.result_page.details.toPlainText()
    assert report.warnings == [] and report.skipped == []
    assert len(report.transcodings) == sum(
        1 for t in scale_source.syntax.values() if t != ExplicitVRLittleEndian)
    if kind == "iso":
        assert target.is_file()
        root = extract_iso(target, tmp_path / "extracted")
    else:
        root = target
    stats = check_scale_medium(root, scale_source, tmp_path)
    print(f"clicks → {kind}: {len(scale_source.files)} files in {seconds:.1f} s; {stats}")  # noqa: T201


# ============================================================================= 2. real files


LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
         "1.2.840.10008.1.2.4.203"}
DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"


def pydicom_test_root() -> Path:
    import pydicom.data

    return Path(pydicom.data.__file__).parent / "test_files"


def pydicom_data_root() -> Path:
    """The files of the pydicom-data package (module ``data_store``), found as pydicom finds
    them: through its "pydicom.data.external_sources" entry point."""
    from pydicom.data.data_manager import external_data_sources

    store = external_data_sources().get("pydicom-data")
    if store is None:
        pytest.skip("the pydicom-data package is not installed (pip install pydicom-data); "
                    "only pydicom's own test files were exported")
    return Path(store.data_path)


def decodes(path: Path) -> bool:
    """pydicom reads the file (no force) and, when it holds pixels, decodes them; DICOMDIRs
    (a medium's index, not an instance) are not files to export."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            if ds.file_meta.get("MediaStorageSOPClassUID") == DIRECTORY_SOP_CLASS:
                return False
            if any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                ds.pixel_array  # noqa: B018 - decoding is the test
    except Exception:  # noqa: BLE001 - does not decode: not part of the medium
        return False
    return True


def copy_decodable(base: Path, dest: Path) -> list[Path]:
    """Copy every file under ``base`` that :func:`decodes` into ``dest`` (same layout)."""
    import logging

    out = []
    logging.disable(logging.CRITICAL)  # pydicom logs every decoder it tries on broken files
    try:
        candidates = [p for p in sorted(base.rglob("*")) if p.is_file()
                      and p.suffix not in (".py", ".pyc") and decodes(p)]
    finally:
        logging.disable(logging.NOTSET)
    for path in candidates:
        target = dest / path.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        out.append(target)
    return out


def pixels(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quiet_read(path).pixel_array


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["folder", "iso"])
@pytest.mark.parametrize("collection", ["pydicom", "pydicom-data"])
def test_real_files_through_the_hook(collection: str, kind: str, tmp_path: Path) -> None:
    base = pydicom_test_root() if collection == "pydicom" else pydicom_data_root()
    src = tmp_path / "src"
    files = copy_decodable(base, src)
    assert len(files) > 100 or collection != "pydicom"
    home = tmp_path / "home"
    home.mkdir()
    out, iso = tmp_path / "out", tmp_path / "real.iso"
    where = [str(out)] if kind == "folder" else ["-", "--iso", str(iso)]
    t0 = time.monotonic()
    proc = run_hook(src, where[0], home, *where[1:], "--profile", "STD-GEN-CD",
                    "--study-date", "20200101", "--skip-unexportable")
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert WRITTEN_RE.search(proc.stdout), proc.stdout
    assert "Traceback" not in proc.stderr and "UserWarning" not in proc.stderr, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    (report_path,) = reports_in(home)
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["verification"]["ok"]
    if collection == "pydicom":  # its odd values warn: in the report, not on stderr
        assert any("UserWarning" in w for w in report["warnings"]), report["warnings"]
    dest = out if kind == "folder" else extract_iso(iso, tmp_path / "extracted")
    # Every source file: on the medium (by SOP Instance UID), or named with a reason.
    on_medium = exported_files(dest)
    assert [u for u, p in on_medium.items() if len(p) > 1] == []
    named = proc.stdout + "\n" + "\n".join(report["problems"]) + "\n" + "\n".join(
        f"{s['file']}: {s['reason']}" for s in report["skipped"])
    unaccounted = []
    for path in files:
        if sop_uid(path) in on_medium:
            continue
        lines = [ln for ln in named.splitlines() if str(path) in ln]
        if not lines or not any(ln.split(str(path), 1)[1].strip(" :;") for ln in lines):
            unaccounted.append(str(path.relative_to(src)))
    assert unaccounted == []
    check_fileset(dest)
    # dciodvfy: no error in the DICOMDIR, none in a copy that its source did not have.
    tool = require_tool("dciodvfy")
    assert dciodvfy_errors(tool, dest / "DICOMDIR") == set()
    by_uid = {sop_uid(path): path for path in files}
    new_errors: dict[str, set[str]] = {}
    for sop, (copy,) in sorted(on_medium.items()):
        source = by_uid.get(sop)
        if source is None:
            continue
        extra = dciodvfy_errors(tool, copy) - dciodvfy_baseline(tool, source, tmp_path)
        if extra:
            new_errors[f"{copy.relative_to(dest)} (from {source.name})"] = extra
    assert new_errors == {}
    # Transcoded files decode; pixels equal the source's on lossless paths.
    assert report["transcodings"]
    lossy_checked = lossless_checked = 0
    for t in report["transcodings"]:
        out, source = dest / t["file"], Path(t["source"])
        ds = quiet_read(out)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        if "PixelData" not in ds:
            continue
        got = pixels(out)
        source_ts = str(quiet_read(source, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        want = pixels(source)
        lossy = source_ts in LOSSY or t["note"] == "lossy source"
        assert got.shape == want.shape, t
        if not lossy:
            assert np.array_equal(got, want), t
            lossless_checked += 1
        else:
            lossy_checked += 1
    print(f"{collection}: {len(files)} files copied, {len(on_medium)} on the medium, "  # noqa: T201
          f"{len(report['skipped'])} left out, {len(report['transcodings'])} transcoded "
          f"({lossless_checked} compared pixel by pixel, {lossy_checked} lossy: shape), "
          f"{seconds:.1f} s")


def test_what_the_reader_set_aside_is_named_and_implicit_pixels_are_not_damage(
        tmp_path: Path) -> None:
    """The two faults the real files showed, in small: (a) files the reader does not list (a
    second copy of an instance, a file without identifiers) were in no export report; (b) a file
    whose dataset is Implicit VR under an Explicit VR transfer syntax (pydicom reads it, with a
    warning) was refused as "cut short", its Pixel Data length read from the wrong bytes."""
    from app.core.export.options import ExportOptions
    from app.core.export.plan import plan_export
    from tests.media import pydicom_test_file, write_instance

    src = tmp_path / "src"
    ds = make_dataset(StudyDate="20240101")
    write_instance(src / "a.dcm", ds)
    write_instance(src / "b.dcm", ds)  # the same instance again
    shutil.copyfile(pydicom_test_file("empty_charset_LEI.dcm"), src / "no_ids.dcm")
    shutil.copyfile(pydicom_test_file("SC_rgb_jpeg.dcm"), src / "implicit_in_explicit.dcm")
    medium = open_medium(src)
    plan = plan_export(ExportOptions(sources=[src], dest=tmp_path / "out", media="cd",
                                     study_date="20200101"), [medium])
    named = [str(p) for p in plan.problems]
    kept = {f.src.rel for f in plan.files}
    second = "b.dcm" if "a.dcm" in kept else "a.dcm"
    # The second copy is read too and named: the same instance, exported once.
    assert any(f"{src}/{second}" in n and "same SOP Instance UID" in n and "exported once" in n
               for n in named), named
    assert any(f"{src}/no_ids.dcm" in n and "not exported" in n for n in named), named
    assert "implicit_in_explicit.dcm" in kept and plan.skipped == []
    (jpeg,) = [f for f in plan.files if f.src.rel == "implicit_in_explicit.dcm"]
    assert jpeg.src.damage is None and jpeg.action == "transcode"
    # A selection names only what was selected: the set-aside files are not part of it.
    plan = plan_export(ExportOptions(sources=[src], dest=tmp_path / "out", media="cd",
                                     study_date="20200101", select={ds.SOPInstanceUID}),
                       [medium])
    assert not [p for p in plan.problems if "not exported" in p.message]


# ============================================================================= 3. cancel

HOLD_AT = 60  # files done by the pool before the export is held for the user's Cancel


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def held_in_the_pool(plan: Any, progress: Any = None, cancel: Any = None) -> Any:
    """The real export (in the wizard's child process), held once the process pool has
    finished HOLD_AT files, until the test opens the gate; notes which processes then run."""
    reached = Path(os.environ["DISCBRIDGE_TEST_REACHED"])
    gate = Path(os.environ["DISCBRIDGE_TEST_GATE"])

    def report(p: Progress) -> None:
        progress(p)
        # (header-only fixes are spliced by the copy threads, which may finish first: hold
        # only once the pool's workers are at work too)
        if p.phase == "write" and p.done_files >= HOLD_AT and not reached.exists() \
                and multiprocessing.active_children():
            note = {"pid": os.getpid(), "done": p.done_files, "total": p.total_files,
                    "pool": [c.pid for c in multiprocessing.active_children()],
                    "descendants": _descendants(os.getpid()),
                    "threads": [t.name for t in threading.enumerate()]}
            tmp = reached.with_suffix(".tmp")
            tmp.write_text(json.dumps(note))
            tmp.rename(reached)
            deadline = time.monotonic() + 60
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.02)

    return export_wizard.execute_and_report(plan, report, cancel)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _direct_children() -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").glob("*"):
        try:
            out.update(int(x) for x in (task / "children").read_text().split())
        except OSError:
            pass
    return out


def _own_children() -> set[int]:
    """Running child processes of this process, leaving out multiprocessing's resource tracker
    (one per process, started by the first Queue/Event, alive until exit by design)."""
    out = set()
    for pid in _direct_children():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in cmd and _running(pid):
            out.add(pid)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc (Linux)")
def test_cancel_while_the_pool_works_leaves_dest_and_no_process(
        qtbot: QtBot, scale_source: Source, runner: TaskRunner, settings: QSettings,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    medium = open_medium(scale_source.root)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "notes.txt").write_text("the user's own file")
    before = listing(dest)
    children_before = _own_children()
    reached, gate = tmp_path / "reached", tmp_path / "gate"
    monkeypatch.setenv("DISCBRIDGE_TEST_REACHED", str(reached))
    monkeypatch.setenv("DISCBRIDGE_TEST_GATE", str(gate))
    monkeypatch.setattr(export_wizard, "execute_and_report", held_in_the_pool)
    wiz = open_wizard(qtbot, [medium], runner, settings, report=str(tmp_path / "report.json"))
    try:
        click_to_summary(qtbot, wiz, "folder", dest)
        click(qtbot, wiz.button(QWizard.WizardButton.CommitButton))
        assert wiz.currentId() == PAGE_PROGRESS
        qtbot.waitUntil(reached.exists, timeout=TIMEOUT_MS)
        note = json.loads(reached.read_text())
        # The pool is really at work: files done by it, its worker processes alive.
        assert HOLD_AT <= note["done"] < note["total"] == len(scale_source.files)
        assert len(note["pool"]) >= 1 and all(_running(p) for p in note["pool"])
        assert "export-pool" in note["threads"]
        assert note["pid"] in _direct_children()  # the wizard's export child
        assert any(p.name.startswith(".discbridge-") for p in dest.iterdir())  # staging
        cancel = wiz.button(QWizard.WizardButton.CancelButton)
        t_cancel = time.monotonic()
        click(qtbot, cancel)
        assert wiz.isVisible()  # Cancel stops the export; the wizard stays
        assert not cancel.isEnabled()
    finally:
        gate.touch()
    qtbot.waitUntil(lambda: wiz.currentId() == PAGE_RESULT, timeout=TIMEOUT_MS)
    cancel_s = time.monotonic() - t_cancel
    assert wiz.outcome == "cancelled"
    assert "Cancelled" in wiz.result_page.status.text()
    assert listing(dest) == before  # DEST exactly as it was
    assert (dest / "notes.txt").read_text() == "the user's own file"
    # No process left: not the export child, not its pool workers, not its forkserver.
    assert multiprocessing.active_children() == []
    gone = [note["pid"], *note["pool"], *note["descendants"]]
    deadline = time.monotonic() + 15
    while any(_running(p) for p in gone) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in gone if _running(p)] == []
    assert _own_children() - children_before == set()
    assert runner.shutdown(30000)
    names = [t.name for t in threading.enumerate()]
    assert [n for n in names if n.startswith(("export-", "discbridge-"))] == []
    print(f"cancel: held at {note['done']} of {note['total']} files with "  # noqa: T201
          f"{len(note['pool'])} pool workers; result page {cancel_s:.1f} s after Cancel")


# ============================================================================= 4. failure


def failing_medium(root: Path, n: int = 12) -> list[Path]:
    """``n`` files lacking a Study ID (so the pool rewrites them) in one series."""
    study_uid, series_uid = uid(), uid()
    out = []
    for i in range(n):
        ds = make_dataset(16, 16, StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid,
                          InstanceNumber=str(i + 1), StudyID=None,
                          PatientName="Fail^Frida", PatientID="P-FAIL")
        path = root / f"IM{i:02d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


@pytest.mark.parametrize("how", ["source-removed", "dest-blocked"])
def test_failed_export_writes_report_and_crash_log_and_names_both(
        how: str, qtbot: QtBot, runner: TaskRunner, settings: QSettings, tmp_path: Path,
        private_dirs: Path) -> None:
    from app.core.appdirs import user_data_dir
    from app.core.crashlog import crash_log_path

    files = failing_medium(tmp_path / "src")
    medium = open_medium(tmp_path / "src")
    wiz = open_wizard(qtbot, [medium], runner, settings)  # report: the data folder
    dest = tmp_path / "out"
    click_to_summary(qtbot, wiz, "folder", dest, icons=False)
    # After planning, the world changes: a source file goes away, or DEST can no longer be made.
    if how == "source-removed":
        victim = files[5]
        victim.unlink()
        culprit = victim.name
    else:
        dest.write_text("a file where the folder should go")
        culprit = str(dest)
    click_write(qtbot, wiz)
    assert wiz.outcome == "failed"
    assert wiz.report is None
    text = result_text(wiz)
    assert "The export failed" in wiz.result_page.status.text()
    assert culprit in text
    reports = sorted((user_data_dir() / "reports").glob("*.json"))
    assert str(user_data_dir()).startswith(str(private_dirs))
    assert len(reports) == 1, reports
    assert f"The report was saved to {reports[0]}." in text
    saved = json.loads(reports[0].read_text())
    assert saved["ok"] is False and culprit in saved["error"]
    log = crash_log_path()
    assert str(log).startswith(str(private_dirs)) and log.is_file()
    assert f"The details are in {log}." in text
    entry = log.read_text()
    assert entry.startswith("--- ") and "export failed" in entry.splitlines()[0]
    assert "Traceback" in entry and culprit in entry
    if how == "source-removed":
        assert not dest.exists()  # DEST as it was: it did not exist
    else:
        assert dest.read_text() == "a file where the folder should go"
    assert not wiz.result_page.open_button.isEnabled()
