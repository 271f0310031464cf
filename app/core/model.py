"""The medium model: patients → studies → series → instances, plus the problems found.

Values are decoded Unicode strings exactly as recorded (Person Names keep ``^`` and ``=``);
absent or empty values are ``None``. ``Medium.to_dict()`` is the ``ls --json`` schema of
DESIGN.md, and nothing else: keep the two in step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from app.core.files import MediumFS

Severity = Literal["error", "warning", "info"]

# Problem codes (DESIGN.md): extend as needed, never rename.
PROBLEM_CODES = (
    "dicomdir-unreadable",
    "dicomdir-recovered",
    "no-dicomdir",
    "missing-file",
    "empty-file",
    "truncated-file",
    "not-dicom",
    "outside-root",
    "unreferenced-file",
    "duplicate-instance",
    "bad-file-id",
    "record-file-mismatch",
    "missing-key",
    "bad-icon",
    "bad-charset",
    "read-error",
    "bad-pixel-data",
)


@dataclass(frozen=True)
class Problem:
    """Something wrong with the medium, in words a user can act on.

    ``path`` is relative to the medium root with ``/`` separators (a DICOMDIR, a file, or a
    File ID as recorded when it could not be resolved); None when the problem is medium-wide.
    """

    severity: Severity
    code: str
    path: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "code": self.code, "path": self.path,
                "message": self.message}

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.severity}: {where}{self.message} [{self.code}]"


@dataclass
class Icon:
    """An Icon Image Sequence item as recorded (undecoded): ``app.core.imaging.display`` decodes it."""

    rows: int
    columns: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    pixel_data: bytes
    samples_per_pixel: int = 1
    pixel_representation: int = 0
    # PALETTE COLOR: (descriptor (n, first, bits), red, green, blue) raw LUT data bytes.
    palette: tuple[tuple[int, int, int], bytes, bytes, bytes] | None = None
    little_endian: bool = True


@dataclass
class Instance:
    sop_instance_uid: str | None
    sop_class_uid: str | None = None
    record_type: str = "IMAGE"
    instance_number: str | None = None
    path: str | None = None  # relative to Medium root, '/' separators, real on-disc name
    referenced: bool = True  # False: found on the medium but no active record references it
    file_id: tuple[str, ...] | None = None  # Referenced File ID as recorded
    transfer_syntax_uid: str | None = None  # from the record (0004,1512) or the file's meta
    icon: Icon | None = None
    dicomdir: str | None = None  # the DICOMDIR (relative to root) whose record lists it
    size: int | None = None  # bytes on the medium, when known
    # Further record keys worth keeping (Rows, Columns, NumberOfFrames, ImageType, ...), by keyword.
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def has_icon(self) -> bool:
        return self.icon is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "sop_class_uid": self.sop_class_uid,
            "record_type": self.record_type,
            "instance_number": self.instance_number,
            "path": self.path,
            "has_icon": self.has_icon,
            "referenced": self.referenced,
        }


@dataclass
class Series:
    series_uid: str | None
    modality: str | None = None
    series_number: str | None = None
    description: str | None = None
    instances: list[Instance] = field(default_factory=list)
    icon: Icon | None = None  # the SERIES record's own icon, if any
    attrs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "series_uid": self.series_uid,
            "modality": self.modality,
            "series_number": self.series_number,
            "description": self.description,
            "instances": [i.to_dict() for i in self.instances],
        }


@dataclass
class Study:
    study_uid: str | None
    study_date: str | None = None
    study_time: str | None = None
    study_id: str | None = None
    accession: str | None = None
    description: str | None = None
    series: list[Series] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)

    def instances(self) -> Iterator[Instance]:
        for s in self.series:
            yield from s.instances

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_uid": self.study_uid,
            "study_date": self.study_date,
            "study_time": self.study_time,
            "study_id": self.study_id,
            "accession": self.accession,
            "description": self.description,
            "series": [s.to_dict() for s in self.series],
        }


@dataclass
class Patient:
    patient_id: str | None
    patient_name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    studies: list[Study] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)

    def instances(self) -> Iterator[Instance]:
        for st in self.studies:
            yield from st.instances()

    def to_dict(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "patient_name": self.patient_name,
            "birth_date": self.birth_date,
            "sex": self.sex,
            "studies": [s.to_dict() for s in self.studies],
        }


@dataclass
class Medium:
    """What is on one medium (or several file-sets found on it, merged).

    ``root`` is what the user opened (a folder; for a DICOMDIR file, its folder; for an .iso,
    the .iso file). ``fs`` gives read-only, root-confined access to the medium's files: every
    ``Instance.path`` can be opened with ``medium.fs.open(path)``.
    """

    root: str
    source: Literal["dicomdir", "scan"]
    dicomdirs: list[str] = field(default_factory=list)
    patients: list[Patient] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    fs: MediumFS | None = field(default=None, repr=False, compare=False)

    def instances(self) -> Iterator[Instance]:
        for p in self.patients:
            yield from p.instances()

    def walk(self) -> Iterator[tuple[Patient, Study, Series, Instance]]:
        for p in self.patients:
            for st in p.studies:
                for se in st.series:
                    for inst in se.instances:
                        yield p, st, se, inst

    def add_problem(self, severity: Severity, code: str, path: str | None, message: str) -> None:
        self.problems.append(Problem(severity, code, path, message))

    @property
    def worst_severity(self) -> Severity | None:
        order = {"error": 2, "warning": 1, "info": 0}
        if not self.problems:
            return None
        return max(self.problems, key=lambda p: order[p.severity]).severity

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "source": self.source,
            "dicomdirs": list(self.dicomdirs),
            "patients": [p.to_dict() for p in self.patients],
            "problems": [p.to_dict() for p in self.problems],
        }
