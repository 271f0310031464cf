"""``discbridge export`` end to end (the lead's CLI → run_export): exit codes, output, report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom

from tests.corpus import write_corpus
from tests.export_helpers import listing, tree_hashes
from tests.media import make_dataset, write_fileset, write_instance

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", "export", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_export_mixed_sources_prints_changes_and_writes_report(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    write_corpus(loose)
    fileset = tmp_path / "fileset"
    write_fileset(fileset, [make_dataset(PatientID="FS1", PatientName="Fileset^One")
                            for _ in range(3)])
    before = tree_hashes(tmp_path)
    report = tmp_path / "r.json"
    proc = run(loose, fileset / "DICOMDIR", "--to", tmp_path / "out", "--report", report,
               "--institution", "Test Hospital", "--fileset-id", "CLI_TEST")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "export done: 43 files" in proc.stdout
    assert "StudyID (empty) -> 'DB1'" in proc.stdout
    assert "verified: 45 files" in proc.stdout
    assert f"report: {report}" in proc.stdout
    data = json.loads(report.read_text())
    assert data["ok"] and data["fileset_id"] == "CLI_TEST"
    assert data["changes"] and data["volumes"][0]["files"] == 43
    assert pydicom.dcmread(tmp_path / "out" / "DICOMDIR").FileSetID == "CLI_TEST"
    assert {k: v for k, v in tree_hashes(tmp_path).items()
            if k.startswith(("loose/", "fileset/"))} == before


def test_export_errors_exit_1_and_leave_dest_alone(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_instance(src / "a.dcm", make_dataset(PatientName="Smith^Ann", PatientID="X1"))
    write_instance(src / "b.dcm", make_dataset(PatientName="Jones^Bob", PatientID="X1"))
    dest = tmp_path / "dest"
    proc = run(src, "--to", dest)
    assert proc.returncode == 1
    assert "X1" in proc.stderr and "--on-id-clash separate" in proc.stderr
    assert not dest.exists()
    proc = run(src, "--to", dest, "--fileset-id", "bad id")
    assert proc.returncode == 2 and "--fileset-id" in proc.stderr  # a bad value: usage error
    proc = run(src, "--to", dest, "--on-id-clash", "separate", "--report", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert "PatientID 'X1' -> 'X1_2'" in proc.stdout
    assert sum(1 for p in listing(dest) if "/IM" in p) == 2


def test_default_report_location_is_printed(tmp_path: Path) -> None:
    import os

    src = tmp_path / "src"
    write_instance(src / "a.dcm", make_dataset())
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg"))
    proc = subprocess.run([sys.executable, "-m", "app", "export", str(src), "--to",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    reports = list((tmp_path / "xdg" / "discbridge" / "reports").glob("export-*.json"))
    assert len(reports) == 1 and f"report: {reports[0]}" in proc.stdout
    assert json.loads(reports[0].read_text())["ok"] is True


def test_unknown_export_profile_is_a_usage_error(tmp_path: Path) -> None:
    """As for check: exit 2, one line naming the known profiles, nothing written."""
    import subprocess
    import sys

    src = tmp_path / "src"
    src.mkdir()
    out = subprocess.run([sys.executable, "-m", "app", "export", str(src), "--to",
                          str(tmp_path / "out"), "--profile", "NOPE"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "unknown application profile 'NOPE'" in out.stderr and "STD-GEN-CD" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
