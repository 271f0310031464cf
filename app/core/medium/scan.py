"""Header-only scanning of a medium, and the patient/study/series merge used by every source.

- :func:`walk_files` lists every file below a folder through the cached listings, iteratively
  (no recursion), never following symlinks (those inside the root lead to what the walk reaches
  anyway; those outside are reported), with a depth cap for absurd trees.
- :func:`read_headers` reads each candidate's header with :func:`app.core.dicom.header.read_header`,
  after a cheap pre-filter (size, then the first 132 bytes: ``DICM`` at 128 or a plausible
  dataset start), retrying an I/O error once and reporting ``read-error`` after that.
- :class:`TreeBuilder` merges patients by Patient ID (+ name), studies by Study Instance UID and
  series by Series Instance UID (STANDARDS.md §2 "Hierarchy", §7 "Finding DICOMDIRs").

Pixel data is never read (DESIGN.md "Data flow").
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

from app.core.dicom.header import FIRST_CHUNK, read_header
from app.core.errors import NotDicom, TruncatedFile, UnsafePath
from app.core.files import Entry, MediumFS
from app.core.jobs import CancelToken
from app.core.medium.paths import Listings, describe_os_error, name_key
from app.core.model import Instance, Patient, Problem, Series, Study

MAX_DEPTH = 32  # PS3.10 allows 8 levels; anything this deep is a loop or garbage
MIN_DICOM_SIZE = 16  # smaller than any dataset holding a single UID
HEAD_SIZE = 132
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

# First two bytes of a dataset without preamble: group 0002, 0004 (a DICOMDIR) or 0008,
# little or big endian.
_RAW_STARTS = (b"\x02\x00", b"\x04\x00", b"\x08\x00", b"\x00\x02", b"\x00\x04", b"\x00\x08")


class FileRef(NamedTuple):
    """A file found on the medium: its root-relative path and its listing entry (a tuple:
    thousands are made per scan)."""

    path: str
    entry: Entry


def is_dicomdir_name(name: str) -> bool:
    """``DICOMDIR`` in any case, also ``DICOMDIR.``, ``DICOMDIR;1``, ``dicomdir.;1``."""
    return len(name) >= 8 and name[:8].lower() == "dicomdir" and name_key(name) == "dicomdir"


def walk_files(listings: Listings, start: str, *, problems: list[Problem],
               cancel: CancelToken | None = None,
               skip: set[str] | frozenset[str] = frozenset()) -> list[FileRef]:
    """Every regular file below ``start`` (root-relative) whose path is not in ``skip``,
    sorted by path.

    Symlinks are never followed here: one that leads outside the root is reported
    (``outside-root`` warning) and skipped; one that stays inside points at a file or folder
    the walk reaches anyway by its real path, so skipping it also ends symlink loops.
    Folders deeper than :data:`MAX_DEPTH` are reported and not read.
    """
    realpath: Callable[[str], str] | None = getattr(listings.fs, "realpath", None)
    out: list[FileRef] = []
    stack: list[tuple[str, int]] = [(start, 0)]
    while stack:
        if cancel is not None:
            cancel.raise_if_cancelled()
        rel, depth = stack.pop()
        listing = listings.get(rel)
        if listing is None:
            continue
        subdirs: list[tuple[str, int]] = []
        entries = listing.entries
        prefix = f"{rel}/" if rel else ""
        for name in sorted(entries):
            e = entries[name]
            path = prefix + name
            if e.is_link:
                if realpath is not None and _outside(realpath, path):
                    problems.append(Problem("warning", "outside-root", path,
                                            "symlink leads outside the medium; not followed"))
                continue
            if not e.is_dir:
                if path not in skip:
                    out.append(FileRef(path, e))
            elif depth + 1 > MAX_DEPTH:
                problems.append(Problem("warning", "read-error", path,
                                        f"folder nested deeper than {MAX_DEPTH} levels; not read"))
            else:
                subdirs.append((path, depth + 1))
        stack.extend(reversed(subdirs))
    out.sort(key=lambda f: f.path)
    return out


def _outside(realpath: Callable[[str], str], path: str) -> bool:
    try:
        realpath(path)
    except UnsafePath:
        return True
    except OSError:
        return False
    return False


# --------------------------------------------------------------------------------------------
# Header reads


@dataclass
class HeaderInfo:
    """What the reader keeps of a file's header."""

    values: dict[str, str | None]
    transfer_syntax: str | None
    is_dicomdir: bool
    has_pixels: bool = False
    charset_problem: str | None = None  # text that could not be decoded cleanly
    truncated: bool = False  # the file ends inside its Pixel Data
    pixel_length: int | None = None  # the Pixel Data value's length (None: encapsulated/absent)


def plausible_head(head: bytes) -> bool:
    """Cheap DICOM pre-filter on the first 132 bytes (PS3.10 §7.1; preamble-less datasets too)."""
    if len(head) >= HEAD_SIZE and head[128:132] == b"DICM":
        return True
    return len(head) >= 8 and head[:2] in _RAW_STARTS


def header_info(header: Any) -> HeaderInfo:
    """Normalise an ``app.core.dicom.header.Header`` into :class:`HeaderInfo` (its ``values`` dict is
    taken over, not copied: a Header is made per read)."""
    values: dict[str, str | None] = header.values
    meta: dict[str, Any] = header.meta
    meta_class = _str(meta.get("MediaStorageSOPClassUID")) if meta else None
    if meta and not values.get("SOPInstanceUID"):
        values["SOPInstanceUID"] = _str(meta.get("MediaStorageSOPInstanceUID"))
    if not values.get("SOPClassUID"):
        values["SOPClassUID"] = meta_class
    is_dd = header.is_dicomdir or meta_class == DICOMDIR_SOP_CLASS \
        or values.get("SOPClassUID") == DICOMDIR_SOP_CLASS
    return HeaderInfo(values, _str(header.transfer_syntax), bool(is_dd), bool(header.has_pixels),
                      header.charset_problem, bool(header.truncated), header.pixel_length)


def _str(v: object) -> str | None:
    if v is None:
        return None
    s = str(v).strip(" \x00")
    return s or None


class HeaderResult(NamedTuple):
    """One file's header read: ``info`` when it is DICOM, ``problem`` when it looked like DICOM
    but could not be read."""

    ref: FileRef
    info: HeaderInfo | None = None
    problem: Problem | None = None  # set when the file looked like DICOM but failed


def read_one(fs: MediumFS, ref: FileRef, *, prefilter: bool = True) -> HeaderResult:
    """Read one file's header (retrying an I/O error once). Non-DICOM → no info, no problem."""
    if prefilter and ref.entry.size < MIN_DICOM_SIZE:
        return HeaderResult(ref)
    for attempt in (1, 2):
        try:
            return _attempt(fs, ref, prefilter)
        except UnsafePath as exc:
            return HeaderResult(ref, None, Problem("error", "outside-root", ref.path, str(exc)))
        except FileNotFoundError:
            return HeaderResult(ref, None, Problem("error", "missing-file", ref.path,
                                                   "file vanished while the medium was read"))
        except OSError as exc:
            if attempt == 2 or isinstance(exc, NotADirectoryError | IsADirectoryError):
                return HeaderResult(ref, None, Problem(
                    "error", "read-error", ref.path,
                    f"cannot read the file (tried twice): {describe_os_error(exc)}"))
    raise AssertionError("unreachable")  # pragma: no cover


class _HeadFile:
    """A descriptor whose first bytes were already read, as ``read_header`` reads files
    (``read``/``seek``/``tell``/``fileno``). The header-only scan reads each file's first
    :data:`app.core.dicom.header.FIRST_CHUNK` bytes in one call (the pre-filter looks at them) and
    hands them over, so no buffered file object is made per file."""

    __slots__ = ("_fd", "_head", "_pos")

    def __init__(self, fd: int, head: bytes) -> None:
        self._fd, self._head, self._pos = fd, head, 0

    def read(self, n: int = -1) -> bytes:
        pos, head = self._pos, self._head
        if n is None or n < 0:
            n = max(0, os.fstat(self._fd).st_size - pos)
        if pos + n <= len(head):
            data = head[pos:pos + n]
        elif pos < len(head):
            data = head[pos:] + os.pread(self._fd, pos + n - len(head), len(head))
        else:
            data = os.pread(self._fd, n, pos)
        self._pos = pos + len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, os.fstat(self._fd).st_size)[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def fileno(self) -> int:
        return self._fd


def _attempt(fs: MediumFS, ref: FileRef, prefilter: bool) -> HeaderResult:
    open_fd = getattr(fs, "open_fd", None)
    if open_fd is None:
        with fs.open(ref.path) as fp:
            peek = getattr(fp, "peek", None)
            if peek is not None:  # look without moving: read_header starts at byte 0
                head = peek(HEAD_SIZE)[:HEAD_SIZE]
            else:
                head = fp.read(HEAD_SIZE)
                fp.seek(0)
            return _judge(fp, head, ref, prefilter)
    fd = open_fd(ref.path)  # DirFS: one read of the first bytes serves pre-filter and parser
    try:
        first = os.read(fd, FIRST_CHUNK)
        return _judge(_HeadFile(fd, first), first[:HEAD_SIZE], ref, prefilter)
    finally:
        os.close(fd)


def _judge(fp: Any, head: bytes, ref: FileRef, prefilter: bool) -> HeaderResult:
    """Pre-filter on the first bytes, then the header (see :func:`read_one`)."""
    has_dicm = len(head) >= HEAD_SIZE and head[128:132] == b"DICM"
    if prefilter and not plausible_head(head):
        return HeaderResult(ref)
    try:
        info = header_info(read_header(fp, ref.path))
        v = info.values
        if not info.is_dicomdir and not (
                v.get("SOPInstanceUID") or v.get("SOPClassUID") or v.get("StudyInstanceUID")
                or v.get("SeriesInstanceUID") or v.get("PatientID")):
            raise NotDicom("no SOP, study, series or patient identifier in its header")
        return HeaderResult(ref, info)
    except NotDicom as exc:
        if has_dicm or not prefilter:
            return HeaderResult(ref, None, Problem(
                "error" if not prefilter else "warning", "not-dicom", ref.path,
                f"not a readable DICOM file: {_unprefixed(exc, ref.path)}"))
        return HeaderResult(ref)
    except TruncatedFile as exc:
        return HeaderResult(ref, None, Problem("error", "truncated-file", ref.path,
                                               _unprefixed(exc, ref.path)))


def _unprefixed(exc: BaseException, path: str) -> str:
    """The exception's message without a leading ``path: `` (the problem names the path)."""
    msg = str(exc)
    return msg[len(path) + 2:] if msg.startswith(f"{path}: ") else msg


def renamed_dicomdirs(results: list[HeaderResult], max_depth: int = 2) -> list[str]:
    """DICOMDIRs recognised by their header (not their name), at most ``max_depth`` levels
    down, one per folder (the first by name), root first."""
    chosen: dict[str, str] = {}
    for r in sorted(results, key=lambda r: r.ref.path):
        path = r.ref.path
        if r.info is not None and r.info.is_dicomdir and path.count("/") <= max_depth:
            chosen.setdefault(path.rsplit("/", 1)[0] if "/" in path else "", path)
    return sorted(chosen.values(), key=lambda p: (p.count("/"), p))


def read_headers(fs: MediumFS, refs: list[FileRef], *, prefilter: bool = True,
                 on_file: Callable[[int, FileRef], None] | None = None,
                 cancel: CancelToken | None = None) -> list[HeaderResult]:
    """Read the headers of ``refs`` in order (see :func:`read_one`)."""
    out: list[HeaderResult] = []
    for i, ref in enumerate(refs):
        if cancel is not None and i % 16 == 0:
            cancel.raise_if_cancelled()
        out.append(read_one(fs, ref, prefilter=prefilter))
        if on_file is not None:
            on_file(i + 1, ref)
    return out


# --------------------------------------------------------------------------------------------
# The tree


def instance_from_header(info: HeaderInfo, ref: FileRef, *, referenced: bool) -> Instance:
    """An Instance for a file known only by its header."""
    v = info.values
    attrs = {k: x for k in _INSTANCE_ATTR_SET.intersection(v) if (x := v[k])}  # str values
    sop_class = v.get("SOPClassUID")
    rtype = _RECORD_TYPES.get(sop_class)
    if rtype is None:
        from app.core.dicomdir.records import record_type_for

        rtype = _RECORD_TYPES[sop_class] = record_type_for(sop_class)
    return Instance(
        sop_instance_uid=v.get("SOPInstanceUID"), sop_class_uid=sop_class,
        record_type=rtype,
        instance_number=v.get("InstanceNumber"), path=ref.path, referenced=referenced,
        transfer_syntax_uid=info.transfer_syntax, size=ref.entry.size, attrs=attrs)


_RECORD_TYPES: dict[str | None, str] = {}  # SOP Class UID → record type (a handful per medium)
_INSTANCE_ATTRS = ("Rows", "Columns", "NumberOfFrames", "ImageType", "ContentDate",
                   "ContentTime", "AcquisitionDate", "AcquisitionTime", "SeriesDate",
                   "SeriesTime", "SpecificCharacterSet", "PhotometricInterpretation",
                   "BitsAllocated", "BitsStored", "MIMETypeOfEncapsulatedDocument",
                   "RepresentativeFrameNumber", "LossyImageCompression")
_INSTANCE_ATTR_SET = frozenset(_INSTANCE_ATTRS)


_UID_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_GARBLED_RE = re.compile(r"[\x00-\x1f\x7f\ufffd]")


def valid_uid(value: str | None) -> bool:
    """A UID as PS3.5 §9.1 allows: digits and dots, at most 64 characters (a value cut short by
    a damaged sector or carrying junk bytes fails; leading zeros are tolerated)."""
    return value is not None and len(value) <= 64 and _UID_RE.fullmatch(value) is not None


def untrusted_leaves(patients: Iterable[Patient]) -> dict[int, str]:
    """Leaves of a parsed DICOMDIR whose place or identity the records cannot vouch for, by
    ``id()``, with the reason: a lost PATIENT record (a placeholder parent with no ID and no
    name), a STUDY or SERIES without a valid UID (lost or damaged), a garbled Patient ID, or a
    missing or invalid SOP Instance UID. The reader places these from their files' headers, as
    it does unreferenced files, so no image is filed under another patient (QA-13, QA-14)."""
    out: dict[int, str] = {}
    for p in patients:
        p_why = None
        if p.patient_id is None and p.patient_name is None:
            p_why = "its PATIENT record is missing or damaged"
        elif p.patient_id is not None and _GARBLED_RE.search(p.patient_id):
            p_why = "its PATIENT record's Patient ID is garbled"
        for st in p.studies:
            st_why = p_why or (None if valid_uid(st.study_uid) else
                               "its STUDY record is missing or has no valid Study Instance UID")
            for se in st.series:
                se_why = st_why or (None if valid_uid(se.series_uid) else
                                    "its SERIES record is missing or has no valid Series "
                                    "Instance UID")
                for inst in se.instances:
                    why = se_why
                    if why is None and not valid_uid(inst.sop_instance_uid):
                        why = ("the record has no valid SOP Instance UID"
                               + (f" ({inst.sop_instance_uid!r})"
                                  if inst.sop_instance_uid is not None else ""))
                    if why is not None:
                        out[id(inst)] = why
    return out


def patient_from_values(v: dict[str, str | None]) -> Patient:
    return Patient(v.get("PatientID"), v.get("PatientName"), v.get("PatientBirthDate"),
                   v.get("PatientSex"))


def study_from_values(v: dict[str, str | None]) -> Study:
    return Study(v.get("StudyInstanceUID"), v.get("StudyDate"), v.get("StudyTime"),
                 v.get("StudyID"), v.get("AccessionNumber"), v.get("StudyDescription"))


def series_from_values(v: dict[str, str | None]) -> Series:
    return Series(v.get("SeriesInstanceUID"), v.get("Modality"), v.get("SeriesNumber"),
                  v.get("SeriesDescription"))


def patient_key(p: Patient) -> tuple[str, str]:
    """Patients merge by Patient ID plus name (distinct names stay distinct patients)."""
    return (p.patient_id or "", (p.patient_name or "").strip().upper())


@dataclass
class TreeBuilder:
    """Merges patients, studies and series from several sources, keeping first-seen order.

    A level without a UID merges only with the very same object (records without a Study or
    Series Instance UID are not guessed together), except for ``loose=True`` sources (scanned
    files), where the missing UID groups them under one entry per parent.
    """

    patients: list[Patient] = field(default_factory=list)
    _pat: dict[tuple[str, str], Patient] = field(default_factory=dict)
    _study: dict[tuple[int, object], Study] = field(default_factory=dict)
    _series: dict[tuple[int, object], Series] = field(default_factory=dict)
    _last: tuple[tuple[str | None, ...], Series] | None = None

    @classmethod
    def from_patients(cls, patients: list[Patient]) -> TreeBuilder:
        """A builder that merges into an existing tree (its objects are reused, not copied)."""
        b = cls()
        for p in patients:
            b._pat.setdefault(patient_key(p), p)
            b.patients.append(p)
            for st in p.studies:
                b._study.setdefault((id(p), st.study_uid or ("obj", id(st))), st)
                for se in st.series:
                    b._series.setdefault((id(st), se.series_uid or ("obj", id(se))), se)
        return b

    def patient(self, p: Patient) -> Patient:
        key = patient_key(p)
        got = self._pat.get(key)
        if got is None:
            got = replace(p, studies=[], attrs=dict(p.attrs))
            self._pat[key] = got
            self.patients.append(got)
        else:
            _fill(got, p, skip=("studies",))
        return got

    def study(self, pat: Patient, st: Study, *, loose: bool = False) -> Study:
        key = (id(pat), st.study_uid if st.study_uid or loose else ("obj", id(st)))
        got = self._study.get(key)
        if got is None:
            got = replace(st, series=[], attrs=dict(st.attrs))
            self._study[key] = got
            pat.studies.append(got)
        else:
            _fill(got, st, skip=("series",))
        return got

    def series(self, st: Study, se: Series, *, loose: bool = False) -> Series:
        key = (id(st), se.series_uid if se.series_uid or loose else ("obj", id(se)))
        got = self._series.get(key)
        if got is None:
            got = replace(se, instances=[], attrs=dict(se.attrs))
            self._series[key] = got
            st.series.append(got)
        else:
            _fill(got, se, skip=("instances",))
        return got

    def place(self, values: dict[str, str | None]) -> Series:
        """The series (created when new) a file with these header values belongs to.

        Consecutive files of one series (the usual order on a medium) skip the lookups.
        """
        key = (values.get("PatientID"), values.get("PatientName"),
               values.get("StudyInstanceUID"), values.get("SeriesInstanceUID"))
        if key[2] and key[3] and self._last is not None and self._last[0] == key:
            return self._last[1]
        pat = self.patient(patient_from_values(values))
        st = self.study(pat, study_from_values(values), loose=True)
        se = self.series(st, series_from_values(values), loose=True)
        self._last = (key, se)
        return se

    def add_tree(self, patients: Iterable[Patient]) -> Iterable[tuple[Series, Instance]]:
        """Merge a parsed tree; yields (target series, instance) for the caller to place."""
        for p in patients:
            tp = self.patient(p)
            for st in p.studies:
                tst = self.study(tp, st)
                for se in st.series:
                    tse = self.series(tst, se)
                    for inst in se.instances:
                        yield tse, inst

    def prune(self) -> None:
        """Drop series, studies and patients left without instances."""
        for p in self.patients:
            for st in p.studies:
                st.series = [se for se in st.series if se.instances]
            p.studies = [st for st in p.studies if st.series]
        self.patients = [p for p in self.patients if p.studies]


def _fill(target: Any, source: Any, skip: tuple[str, ...]) -> None:
    """Fill the target's empty fields from the source (first source wins where both have one)."""
    for f in fields(target):
        if f.name in skip:
            continue
        if f.name == "attrs":
            for k, v in source.attrs.items():
                target.attrs.setdefault(k, v)
        elif getattr(target, f.name) is None and getattr(source, f.name) is not None:
            setattr(target, f.name, getattr(source, f.name))
