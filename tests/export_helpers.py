"""Helpers for the export tests: sources as Medium objects, hashing, validators.

``medium_of(folder)`` uses the project's reader (``open_medium``) when it works here, else a
small test-only scan (every file read header-only with pydicom), so the export tests can run
while the reader is being built.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pydicom

from app.core.medium.fs import DirFS
from app.core.model import Instance, Medium, Patient, Series, Study


def _scan(root: Path) -> Medium:
    fs = DirFS(root)
    medium = Medium(root=str(fs.root), source="scan", fs=fs)
    patients: dict[str, Patient] = {}
    studies: dict[str, Study] = {}
    series: dict[str, Series] = {}
    for dirpath, _dirs, files in sorted(os.walk(fs.root)):
        for name in sorted(files):
            if name.upper() in ("DICOMDIR", "README.TXT"):
                continue
            full = Path(dirpath) / name
            try:
                ds = pydicom.dcmread(full, stop_before_pixels=True, force=True)
                sop = str(ds.SOPInstanceUID)
            except Exception:  # noqa: BLE001 - not DICOM: skip
                continue
            rel = full.relative_to(fs.root).as_posix()
            pid = str(ds.get("PatientID", "") or "")
            key = pid + "|" + str(ds.get("PatientName", ""))
            p = patients.get(key)
            if p is None:
                p = patients[key] = Patient(pid or None, str(ds.get("PatientName", "")) or None)
                medium.patients.append(p)
            st = studies.get(str(ds.StudyInstanceUID))
            if st is None:
                st = studies[str(ds.StudyInstanceUID)] = Study(str(ds.StudyInstanceUID))
                p.studies.append(st)
            se = series.get(str(ds.SeriesInstanceUID))
            if se is None:
                se = series[str(ds.SeriesInstanceUID)] = Series(str(ds.SeriesInstanceUID))
                st.series.append(se)
            se.instances.append(Instance(sop, str(ds.SOPClassUID), path=rel,
                                         size=full.stat().st_size))
    return medium


def medium_of(root: Path) -> Medium:
    """A source as the exporter gets it."""
    try:
        from app.core.medium.reader import open_medium

        return open_medium(root)
    except (ImportError, ModuleNotFoundError):
        return _scan(Path(root))


def tree_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` by relative path (to prove sources unchanged)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def listing(root: Path) -> list[str]:
    """Every path under ``root`` (files and folders), relative, sorted."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            out.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(out)


def dciodvfy_errors(tool: str, path: Path) -> set[str]:
    """The set of ``Error`` lines dciodvfy prints for a file (normalised, no file names)."""
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, errors="replace",
                          timeout=60)
    out = proc.stdout + proc.stderr
    return {line.strip() for line in out.splitlines() if line.strip().startswith("Error")}
