"""The export plan's data: what will be written, where, and why (no logic beyond views).

Split from :mod:`app.core.export.plan` (which decides) so that the GUI, the writer and the
volume packer share one vocabulary.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.core.dicomdir.profiles import Profile
from app.core.errors import ExportError
from app.core.export.fixes import Change
from app.core.export.options import ExportOptions
from app.core.export.sources import SourceFile
from app.core.model import Medium, Problem

if TYPE_CHECKING:
    from app.core.export.splice import Splice


class RefusedInstances(ExportError):
    """Instances the profile cannot hold; ``refused``: (file, reason) each."""

    def __init__(self, message: str, refused: list[tuple[str, str]]):
        super().__init__(message)
        self.refused = refused


class TooBig(ExportError):
    """The export does not fit the medium (``needed``/``capacity`` in bytes)."""

    def __init__(self, message: str, needed: int, capacity: int):
        super().__init__(message)
        self.needed = needed
        self.capacity = capacity


@dataclass
class PlannedFile:
    """One instance to write."""

    src: SourceFile
    sop_uid: str
    sop_class: str
    record_type: str
    source_ts: str
    target_ts: str
    action: str  # "copy" | "meta" | "splice" | "rewrite" | "transcode"
    fixes: dict[str, str]
    reasons: dict[str, str]
    other_patient_id: str | None
    est_size: int
    exact: bool
    meta_bytes: bytes | None = None  # action "meta": the new header
    splice: Splice | None = None  # action "splice": new header bytes, then the source's body
    volume: int = 0
    file_id: tuple[str, ...] = ()

    @property
    def rel(self) -> str:
        return "/".join(self.file_id)

    def value(self, keyword: str) -> str | None:
        if keyword in self.fixes:
            return self.fixes[keyword] or None
        return self.src.get(keyword)


@dataclass
class PlanSeries:
    uid: str
    modality: str | None
    number: str | None
    description: str | None
    files: list[PlannedFile] = field(default_factory=list)


@dataclass
class PlanStudy:
    uid: str
    date: str | None
    time: str | None
    study_id: str | None
    accession: str | None
    description: str | None
    series: list[PlanSeries] = field(default_factory=list)

    @property
    def files(self) -> list[PlannedFile]:
        return [f for s in self.series for f in s.files]

    @property
    def bytes(self) -> int:
        return sum(f.est_size for f in self.files)


@dataclass
class PlanPatient:
    patient_id: str
    name: str | None
    birth_date: str | None
    sex: str | None
    studies: list[PlanStudy] = field(default_factory=list)


@dataclass
class Transcoding:
    file: str
    source: str
    from_ts: str
    to_ts: str
    note: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "source": self.source, "from": self.from_ts,
                "to": self.to_ts, "note": self.note}


@dataclass
class Volume:
    """One self-contained file-set (``name`` is "" for a single volume, else ``VOL01``…)."""

    index: int
    name: str
    fileset_id: str
    files: list[PlannedFile] = field(default_factory=list)
    est_bytes: int = 0

    def studies(self) -> list[str]:
        seen: dict[str, None] = {}
        for f in self.files:
            seen.setdefault(f.value("StudyInstanceUID") or "", None)
        return list(seen)


@dataclass
class ExportPlan:
    """What an export will do (the GUI wizard's summary page shows this)."""

    options: ExportOptions
    profile: Profile
    media_type: str
    capacity: int
    capacity_note: str
    patients: list[PlanPatient]
    files: list[PlannedFile]
    volumes: list[Volume]
    changes: list[Change]
    transcodings: list[Transcoding]
    problems: list[Problem]  # duplicates dropped, sources' problems worth telling
    warnings: list[str]
    fileset_id: str
    icon_size: int | None
    created: _dt.datetime
    media: list[Medium] = field(default_factory=list, repr=False)
    # (source file, why) of every instance left out (ExportOptions.skip_unexportable)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def disc_label(self) -> str:
        """Suggested label (File-set ID = ISO Volume ID): never patient data."""
        return self.fileset_id

    @property
    def total_bytes(self) -> int:
        return sum(v.est_bytes for v in self.volumes)

    def summary(self) -> dict[str, Any]:
        """A JSON-able view for the GUI summary page and the report."""
        return {
            "profile": self.profile.name, "media": self.media_type,
            "capacity_bytes": self.capacity, "capacity": self.capacity_note,
            "fileset_id": self.fileset_id, "total_bytes": self.total_bytes,
            "files": len(self.files),
            "patients": [{"patient_id": p.patient_id, "patient_name": p.name,
                          "birth_date": p.birth_date,
                          "studies": [{"study_uid": s.uid, "study_date": s.date,
                                       "description": s.description, "files": len(s.files),
                                       "bytes": s.bytes} for s in p.studies]}
                         for p in self.patients],
            "volumes": [{"name": v.name or ".", "fileset_id": v.fileset_id,
                         "files": len(v.files), "bytes": v.est_bytes,
                         "studies": v.studies()} for v in self.volumes],
            "changes": [c.to_dict() for c in self.changes],
            "transcodings": [t.to_dict() for t in self.transcodings],
            "warnings": list(self.warnings),
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
        }
