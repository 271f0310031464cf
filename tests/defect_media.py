"""Whole defect media for the reader tests: folders with files + DICOMDIR bytes.

Built on :mod:`tests.dicomdir_bytes` (byte-level DICOMDIR with defect knobs) and
:func:`tests.media.make_dataset`. Each builder writes under a given folder and returns what the
tests need to compute the expected tree from the *input* (no hard-coded UIDs):

- :func:`expected_tree` turns the builder's records into the ``ls --json`` patients list;
- :class:`FaultFS` wraps a MediumFS and raises ``OSError(EIO)`` for chosen paths (a scratched
  disc), counting attempts so tests can assert the one retry;
- :class:`OpenSpy` records every path the process opens or lists, to prove that nothing outside
  the medium root is ever touched.
"""

from __future__ import annotations

import builtins
import errno
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from app.core.medium.fs import Entry, MediumFS
from tests import dicomdir_bytes as db
from tests.media import make_dataset, write_instance

SENTINEL = b"SENTINEL: this file is outside the medium and must never be read"


# --------------------------------------------------------------------------------------------
# expectations


def _fid(rec: db.Rec) -> tuple[str, ...]:
    assert rec.file_id is not None
    if isinstance(rec.file_id, tuple):
        return rec.file_id
    return tuple(p for p in rec.file_id.replace("/", "\\").split("\\") if p)


def default_path(rec: db.Rec) -> str | None:
    return "/".join(_fid(rec)) if rec.file_id is not None else None


def expected_tree(roots: Iterable[db.Rec],
                  path_of: Callable[[db.Rec], str | None] = default_path,
                  *, drop: Callable[[db.Rec], bool] = lambda r: False) -> list[dict[str, Any]]:
    """The ``patients`` list of ``ls --json`` for these records (inactive ones hidden)."""
    out = []
    for p in roots:
        if not p.in_use:
            continue
        studies = []
        for st in p.children:
            if not st.in_use:
                continue
            series = []
            for se in st.children:
                if not se.in_use:
                    continue
                insts = [instance_dict(im, path_of(im)) for im in se.children
                         if im.in_use and not drop(im)]
                if insts:
                    series.append({"series_uid": se.keys.get("SeriesInstanceUID"),
                                   "modality": se.keys.get("Modality"),
                                   "series_number": se.keys.get("SeriesNumber"),
                                   "description": se.keys.get("SeriesDescription"),
                                   "instances": insts})
            if series:
                k = st.keys
                studies.append({"study_uid": k.get("StudyInstanceUID"),
                                "study_date": k.get("StudyDate"),
                                "study_time": k.get("StudyTime"), "study_id": k.get("StudyID"),
                                "accession": k.get("AccessionNumber"),
                                "description": k.get("StudyDescription"), "series": series})
        if studies:
            out.append({"patient_id": p.keys.get("PatientID"),
                        "patient_name": p.keys.get("PatientName"),
                        "birth_date": p.keys.get("PatientBirthDate"),
                        "sex": p.keys.get("PatientSex"), "studies": studies})
    return out


def instance_dict(im: db.Rec, path: str | None, referenced: bool = True) -> dict[str, Any]:
    return {"sop_instance_uid": im.keys.get("ReferencedSOPInstanceUIDInFile"),
            "sop_class_uid": im.keys.get("ReferencedSOPClassUIDInFile"),
            "record_type": im.type, "instance_number": im.keys.get("InstanceNumber"),
            "path": path, "has_icon": im.icon is not None, "referenced": referenced}


def leaves(roots: Iterable[db.Rec]) -> list[db.Rec]:
    return [r for root in roots for r in root.walk() if r.file_id is not None]


def header_tree(datasets: Iterable[tuple[str, Any]], referenced: bool = False
                ) -> list[dict[str, Any]]:
    """The ``patients`` list for files known only by their headers, in the given (path) order."""
    pats: dict[tuple[str, str], dict[str, Any]] = {}
    studies: dict[tuple[tuple[str, str], str], dict[str, Any]] = {}
    series: dict[tuple[str, str], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []

    def s(v: Any) -> str | None:
        return None if v is None or str(v) == "" else str(v)

    for path, ds in datasets:
        pk = (s(ds.get("PatientID")) or "", (s(ds.get("PatientName")) or "").upper())
        if pk not in pats:
            pats[pk] = {"patient_id": s(ds.get("PatientID")),
                        "patient_name": s(ds.get("PatientName")),
                        "birth_date": s(ds.get("PatientBirthDate")),
                        "sex": s(ds.get("PatientSex")), "studies": []}
            out.append(pats[pk])
        sk = (pk, str(ds.StudyInstanceUID))
        if sk not in studies:
            studies[sk] = {"study_uid": str(ds.StudyInstanceUID),
                           "study_date": s(ds.get("StudyDate")),
                           "study_time": s(ds.get("StudyTime")), "study_id": s(ds.get("StudyID")),
                           "accession": s(ds.get("AccessionNumber")),
                           "description": s(ds.get("StudyDescription")), "series": []}
            pats[pk]["studies"].append(studies[sk])
        ek = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
        if ek not in series:
            series[ek] = {"series_uid": str(ds.SeriesInstanceUID), "modality": s(ds.Modality),
                          "series_number": s(ds.get("SeriesNumber")),
                          "description": s(ds.get("SeriesDescription")), "instances": []}
            studies[sk]["series"].append(series[ek])
        series[ek]["instances"].append({
            "sop_instance_uid": str(ds.SOPInstanceUID), "sop_class_uid": str(ds.SOPClassUID),
            "record_type": "IMAGE", "instance_number": s(ds.get("InstanceNumber")),
            "path": path, "has_icon": False, "referenced": referenced})
    return out


# --------------------------------------------------------------------------------------------
# builders


@dataclass
class Built:
    """A defect medium on disc, and the records it was made from."""

    root: Path
    roots: list[db.Rec] = field(default_factory=list)
    datasets: list[tuple[str, Any]] = field(default_factory=list)  # extra files: (path, ds)
    notes: dict[str, Any] = field(default_factory=dict)


def conformant(root: Path, patients: int = 2, images: int = 2, **knobs: Any) -> Built:
    roots = db.simple_tree(patients=patients, series_=2, images=images)
    db.write_medium(root, roots, **knobs)
    return Built(root, roots)


def renamed_on_disc(root: Path, style: str) -> Built:
    """A conformant medium whose files carry the names mounts and mastering tools produce.

    ``lower``: every component lowercase (Linux ``map=normal``); ``iso``: files ``IM1.;1``;
    ``version``: ``IM1;1``; ``dot``: ``IM1.``; ``dcm``: ``IM1.dcm``.
    """
    b = conformant(root, patients=1)
    paths: dict[int, str] = {}
    for rec in leaves(b.roots):
        parts = list(_fid(rec))
        src = root.joinpath(*parts)
        if style == "lower":
            parts = [p.lower() for p in parts]
        else:
            parts[-1] += {"iso": ".;1", "version": ";1", "dot": ".", "dcm": ".dcm"}[style]
        dst = root.joinpath(*parts)
        if style == "lower":
            dst.parent.mkdir(parents=True, exist_ok=True)
        src.rename(dst)
        paths[id(rec)] = "/".join(parts)
    if style == "lower":
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            if not any(d.iterdir()):
                d.rmdir()
    b.notes["paths"] = paths
    return b


def hostile(root: Path) -> Built:
    """File IDs that try to leave the root, plus symlinks out of it, next to one good image.

    A sentinel file sits outside the root (``root.parent / "outside" / "SECRET"``) where every
    hostile reference points.
    """
    outside = root.parent / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "SECRET").write_bytes(SENTINEL)
    (outside / "IM1").write_bytes(SENTINEL)
    good = db.image(("PA1", "IM1"), number="1")
    bad = {
        "dotdot": db.image("..\\outside\\SECRET", number="2"),
        "deep_dotdot": db.image(("PA1", "..", "..", "outside", "SECRET"), number="3"),
        "absolute": db.image(str(outside / "SECRET").replace("/", "\\"), number="4"),
        "drive": db.image("C:\\outside\\SECRET", number="5"),
        "unc": db.image("\\\\server\\share\\SECRET", number="6"),
        "link_dir": db.image(("LINKDIR", "SECRET"), number="7"),
        "link_file": db.image(("LINKFILE",), number="8"),
    }
    roots = [db.patient("PID1", "Hostile^Test", db.study(db.series(good, *bad.values())))]
    db.write_medium(root, roots, files=False)
    _write_leaf(root, roots[0], good)
    os.symlink(outside, root / "LINKDIR")
    os.symlink(outside / "SECRET", root / "LINKFILE")
    return Built(root, roots, notes={"good": good, "bad": bad, "outside": outside})


def _write_leaf(root: Path, patient: db.Rec, leaf: db.Rec) -> Path:
    """Write the file of one leaf whose values agree with its records."""
    for st in patient.children:
        for se in st.children:
            if leaf in se.children:
                ds = make_dataset(
                    PatientID=patient.keys["PatientID"], PatientName=patient.keys["PatientName"],
                    StudyInstanceUID=st.keys["StudyInstanceUID"], StudyID=st.keys["StudyID"],
                    SeriesInstanceUID=se.keys["SeriesInstanceUID"], Modality=se.keys["Modality"],
                    SeriesNumber=se.keys["SeriesNumber"],
                    SOPInstanceUID=leaf.keys["ReferencedSOPInstanceUIDInFile"],
                    InstanceNumber=leaf.keys["InstanceNumber"])
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                return write_instance(root.joinpath(*_fid(leaf)), ds)
    raise AssertionError("leaf not in patient")


def payloads(root: Path) -> list[str]:
    """Non-DICOM files a patient CD carries (viewer, HTML, autorun, README): never listed."""
    files = {
        "README.TXT": b"Patient CD. Open the viewer.\r\n",
        "INDEX.HTM": b"<html><body>images</body></html>",
        "AUTORUN.INF": b"[autorun]\r\nopen=VIEWER\\VIEWER.EXE\r\n",
        "VIEWER/VIEWER.EXE": b"MZ" + bytes(300),
        "VIEWER/LIB/CORE.DLL": b"MZ\x90\x00" + bytes(4000),
        "IHE_PDI/IMG1.JPG": b"\xff\xd8\xff\xe0" + bytes(200),
        "VIEWER/TINY": b"\x08\x00",  # too small for anything
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return sorted(files)


def loose_files(root: Path, layout: dict[str, dict[str, Any]]) -> list[tuple[str, Any]]:
    """Write DICOM files (no DICOMDIR) at the given relative paths with dataset overrides."""
    out = []
    for rel, overrides in layout.items():
        ds = make_dataset(**overrides)
        write_instance(root / rel, ds)
        out.append((rel, ds))
    return sorted(out, key=lambda x: x[0])


# --------------------------------------------------------------------------------------------
# fault injection and spying


class FaultFS:
    """A MediumFS wrapper for a scratched disc: chosen paths raise ``OSError(EIO)``.

    ``bad_files`` fail on open/read, ``bad_dirs`` on listdir. ``heal_after`` lets a path work
    again after that many failures (a transient error cured by the retry). ``attempts`` counts
    every try per path.
    """

    def __init__(self, inner: MediumFS, bad_files: Iterable[str] = (),
                 bad_dirs: Iterable[str] = (), heal_after: int | None = None,
                 fail_on_read: bool = False) -> None:
        self.inner = inner
        self.label = inner.label
        self.bad_files = set(bad_files)
        self.bad_dirs = set(bad_dirs)
        self.heal_after = heal_after
        self.fail_on_read = fail_on_read
        self.attempts: dict[str, int] = {}

    def _fail(self, rel: str, bad: set[str]) -> bool:
        if rel not in bad:
            return False
        n = self.attempts.get(rel, 0) + 1
        self.attempts[rel] = n
        return self.heal_after is None or n <= self.heal_after

    def listdir(self, rel: str) -> list[Entry]:
        if self._fail(rel, self.bad_dirs):
            raise OSError(errno.EIO, "Input/output error", rel)
        return self.inner.listdir(rel)

    def open(self, rel: str) -> BinaryIO:
        if self.fail_on_read and rel in self.bad_files:
            fp = self.inner.open(rel)
            return _FailingReader(fp, lambda: self._fail(rel, self.bad_files), rel)  # type: ignore[return-value]
        if self._fail(rel, self.bad_files):
            raise OSError(errno.EIO, "Input/output error", rel)
        return self.inner.open(rel)

    def size(self, rel: str) -> int:
        return self.inner.size(rel)

    def local_path(self, rel: str) -> Path | None:
        return self.inner.local_path(rel)

    def realpath(self, rel: str) -> str:
        return self.inner.realpath(rel)  # type: ignore[attr-defined,no-any-return]


class _FailingReader:
    """Opens fine, then the first read raises EIO (a bad sector inside the file)."""

    def __init__(self, fp: BinaryIO, fail: Callable[[], bool], rel: str) -> None:
        self._fp, self._fail, self._rel = fp, fail, rel
        self._checked = False

    def read(self, n: int = -1) -> bytes:
        if not self._checked:
            self._checked = True
            if self._fail():
                raise OSError(errno.EIO, "Input/output error", self._rel)
        return self._fp.read(n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)

    def __enter__(self) -> _FailingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fp.close()


class OpenSpy:
    """Records every path opened (``open``, ``os.open``) or listed (``os.scandir``)."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def install(self, monkeypatch: Any) -> OpenSpy:
        real_open, real_os_open, real_scandir = builtins.open, os.open, os.scandir
        spy = self

        def _open(file: Any, *a: Any, **k: Any) -> Any:
            if isinstance(file, str | os.PathLike):
                spy.paths.append(os.path.realpath(os.fspath(file)))
            return real_open(file, *a, **k)

        def _os_open(path: Any, *a: Any, **k: Any) -> Any:
            spy.paths.append(os.path.realpath(os.fspath(path)))
            return real_os_open(path, *a, **k)

        def _scandir(path: Any = ".") -> Any:
            if isinstance(path, str | os.PathLike):
                spy.paths.append(os.path.realpath(os.fspath(path)))
            return real_scandir(path)

        monkeypatch.setattr(builtins, "open", _open)
        monkeypatch.setattr(os, "open", _os_open)
        monkeypatch.setattr(os, "scandir", _scandir)
        return self

    def touched_under(self, folder: Path) -> list[str]:
        base = os.path.realpath(folder)
        return [p for p in self.paths if p == base or p.startswith(base + os.sep)]


# --------------------------------------------------------------------------------------------
# .iso images


def make_iso(staging: Path, iso: Path, *, joliet: bool = False, rock_ridge: bool = False,
             udf: bool = False, volume_id: str = "TESTFS") -> Path:
    """An ISO 9660 image of ``staging`` with pycdlib (interchange level 1 unless UDF is asked).

    Primary names are the DICOM names with ``.;1`` added (``/PA1/IM1.;1``, ``/DICOMDIR.;1``),
    the form mastering tools write (STANDARDS.md §5).
    """
    import pycdlib

    img = pycdlib.PyCdlib()
    kw: dict[str, Any] = {"interchange_level": 3 if udf else 1, "vol_ident": volume_id}
    if joliet:
        kw["joliet"] = 3
    if rock_ridge:
        kw["rock_ridge"] = "1.09"
    if udf:
        kw["udf"] = "2.60"
    img.new(**kw)
    handles = []
    for dirpath, dirnames, filenames in os.walk(staging):
        dirnames.sort()
        rel = Path(dirpath).relative_to(staging)
        for d in dirnames:
            p = "/" + (rel / d).as_posix().lstrip("./")
            extra: dict[str, Any] = {}
            if joliet:
                extra["joliet_path"] = p
            if rock_ridge:
                extra["rr_name"] = d
            if udf:
                extra["udf_path"] = p
            img.add_directory(p.upper(), **extra)
        for f in sorted(filenames):
            p = "/" + (rel / f).as_posix().lstrip("./")
            extra = {}
            if joliet:
                extra["joliet_path"] = p
            if rock_ridge:
                extra["rr_name"] = f
            if udf:
                extra["udf_path"] = p
            fp = open(Path(dirpath) / f, "rb")  # noqa: SIM115 - closed after write
            handles.append(fp)
            size = os.fstat(fp.fileno()).st_size
            suffix = ";1" if "." in f else ".;1"
            img.add_fp(fp, size, p.upper() + suffix, **extra)
    img.write(str(iso))
    img.close()
    for fp in handles:
        fp.close()
    return iso


def make_multisession(sessions: list[Path], image: Path, *, gap: int = 0) -> Path:
    """The ``dd`` of a two-session disc: ``sessions[0]`` mastered alone, ``sessions[1]`` appended
    to it with ``xorriso -as mkisofs -C 0,N -M`` (absolute extents), ``gap`` blank sectors
    between them (a CD's lead-out/lead-in gap reads back as such). Needs xorriso."""
    import subprocess

    from tests.conftest import require_tool

    xorriso = require_tool("xorriso")
    first = image.with_suffix(".s1")
    subprocess.run([xorriso, "-as", "mkisofs", "-o", str(first), str(sessions[0])], check=True,
                   capture_output=True, timeout=60)
    start = (first.stat().st_size + 2047) // 2048 + gap
    second = image.with_suffix(".s2")
    subprocess.run([xorriso, "-as", "mkisofs", "-C", f"0,{start}", "-M", str(first), "-o",
                    str(second), str(sessions[1])], check=True, capture_output=True, timeout=60)
    image.write_bytes(first.read_bytes().ljust(start * 2048, b"\0") + second.read_bytes())
    first.unlink()
    second.unlink()
    return image
