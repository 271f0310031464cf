"""Planning an export: everything decided and sized before a single byte is written.

:func:`plan_export` opens the sources (folders, DICOMDIRs, .iso images, mixed), merges them
(duplicates by SOP Instance UID dropped, the first source wins), reads every header once, and
decides per instance: refusal by the profile, Type 1 fixes (:mod:`app.core.export_identity`),
the transfer syntax written (:meth:`Profile.target_transfer_syntax`), the action (fast copy,
new File Meta + unchanged body, full rewrite, transcode) and the size. Then capacity: too big is
an :class:`TooBig` error unless spanning, which splits studies over volumes (a series is split
only when it alone exceeds a volume). The GUI wizard shows an :class:`ExportPlan` on its summary
page; :func:`app.core.export.execute` carries it out.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.errors import DiscBridgeError, ExportError
from app.core.export_identity import Item, assign_patient_ids, fix_numbers, fix_studies
from app.core.export_options import ExportOptions
from app.core.export_sources import SourceFile, read_sources
from app.core.fixes import Change
from app.core.jobs import CancelToken, ProgressCallback
from app.core.model import Medium, Problem
from app.core.profiles import Profile, get_profile
from app.core.transcode import (
    can_decode,
    can_encode,
    decoded_size,
    encode_file_meta,
    is_compressed,
    ts_name,
)

FILESET_ID_RE = re.compile(r"^[A-Z0-9_]{1,16}$")
DEFAULT_FILESET_ID = "DISCBRIDGE"
MB = 1000 * 1000
# Estimated DICOMDIR bytes per directory record, README.TXT and per-folder overhead.
RECORD_BYTES = 600
README_BYTES = 4096
DIR_BYTES = 2048


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
    action: str  # "copy" | "meta" | "rewrite" | "transcode"
    fixes: dict[str, str]
    reasons: dict[str, str]
    other_patient_id: str | None
    est_size: int
    exact: bool
    meta_bytes: bytes | None = None  # action "meta": the new header
    volume: int = 0
    file_id: tuple[str, ...] = ()

    @property
    def rel(self) -> str:
        return "/".join(self.file_id)

    def value(self, keyword: str) -> str | None:
        return self.fixes.get(keyword) or self.src.get(keyword)


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
        }


def validate_fileset_id(value: str | None, created: _dt.datetime) -> str:
    """The File-set ID: ``value`` checked (≤ 16 of A–Z 0–9 _), else ``DBYYYYMMDD``."""
    if value is None:
        return f"DB{created:%Y%m%d}"
    if not FILESET_ID_RE.match(value):
        raise ExportError(f"--fileset-id {value!r}: use 1 to 16 characters A-Z, 0-9 and _ "
                          "(upper case, no spaces; it becomes the disc's volume label)")
    return value


def _round(size: int, block: int) -> int:
    return -(-size // block) * block


def _capacity(options: ExportOptions, override: int | None) -> tuple[int, str, list[str]]:
    """Bytes per volume, how that was found, and warnings (a USB stick that is not FAT)."""
    from app.core import capacity as cap  # E2's module

    media = options.effective_media
    warnings: list[str] = []
    where = options.dest if options.dest is not None else (
        options.iso.parent if options.iso is not None else Path.cwd())
    probe = Path(where)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if media == "usb" and options.dest is not None:
        warning = cap.usb_filesystem_warning(probe)
        if warning:
            warnings.append(warning)
    if override is not None:
        return override, f"{override / MB:,.3f} MB (set by the caller)", warnings
    if media in ("cd", "dvd", "dvd-dl", "bd"):
        size = int(cap.CAPACITY[media])
        return size, f"{media.upper()} {size / MB:,.0f} MB", warnings
    free = int(cap.free_space(probe))
    return free, f"free space {free / MB:,.0f} MB at {probe}", warnings


def plan_export(options: ExportOptions, media: list[Medium] | None = None, *,
                capacity: int | None = None, progress: ProgressCallback | None = None,
                cancel: CancelToken | None = None) -> ExportPlan:
    """Decide and size everything an export will do; write nothing.

    Parameters
    ----------
    options : ExportOptions
        The request (CLI flags or the GUI wizard).
    media : list[Medium], optional
        Already opened sources (the GUI's); None: open ``options.sources`` with the reader.
    capacity : int, optional
        Bytes per volume, overriding the media type's (tests, and a GUI "custom size").
    progress, cancel
        Phase ``"plan"`` while headers are read.

    Raises
    ------
    ExportError
        Bad options, unreadable sources, instances the profile cannot hold
        (:class:`RefusedInstances`), a Patient ID clash (``PatientIdClash``), a study with no
        date (``MissingStudyDate``), or too big without spanning (:class:`TooBig`).
    """
    created = _dt.datetime.now()
    fileset_id = validate_fileset_id(options.fileset_id, created)
    try:
        profile = get_profile(options.effective_profile)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
    if options.media is not None and options.profile is None:
        pass  # default profile per media type (DEFAULT_PROFILE)
    if options.burn and options.span:
        raise ExportError("--burn writes one disc: it cannot be combined with --span")
    if media is None:
        media = _open_sources(options, progress, cancel)
    _check_dest_apart(options, media)
    sources, problems = read_sources(media, options.select, progress=progress, cancel=cancel)
    if not sources:
        raise ExportError("nothing to export: the sources hold no readable DICOM instance"
                          + (" matching the selection" if options.select else ""))
    icon_size = (profile.icon_size or 64) if (options.icons or profile.icon_required) else None
    files = _decide(sources, profile, options, created)
    patients = _tree(files)
    cap_bytes, cap_note, warnings = _capacity(options, capacity)
    volumes = _volumes(patients, cap_bytes, options, fileset_id, icon_size)
    _name(volumes)
    changes = [Change(f.rel if len(volumes) == 1 else f"{volumes[f.volume].name}/{f.rel}",
                      kw, f.src.get(kw), new, f.reasons.get(kw, ""))
               for v in volumes for f in v.files for kw, new in f.fixes.items()]
    transcodings = [Transcoding(_dest_label(f, volumes), f.src.label, ts_name(f.source_ts),
                                ts_name(f.target_ts),
                                "lossy source" if f.source_ts in _LOSSY else "")
                    for f in files if f.action == "transcode"]
    return ExportPlan(options=options, profile=profile, media_type=options.effective_media,
                      capacity=cap_bytes, capacity_note=cap_note, patients=patients,
                      files=[f for p in patients for s in p.studies for f in s.files],
                      volumes=volumes, changes=changes, transcodings=transcodings,
                      problems=problems, warnings=warnings, fileset_id=fileset_id,
                      icon_size=icon_size, created=created, media=media)


_LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
          "1.2.840.10008.1.2.4.203"}


def _check_dest_apart(options: ExportOptions, media: list[Medium]) -> None:
    """DEST must be neither a source nor inside one, nor hold one (``--force`` would replace
    it): the sources are never modified."""
    targets = [p for p in (options.dest, options.iso) if p is not None]
    for target in targets:
        dest = Path(target).resolve()
        for m in media:
            root = Path(m.root).resolve()
            if dest == root or dest.is_relative_to(root) or root.is_relative_to(dest):
                raise ExportError(f"{target}: the destination overlaps the source {m.root}; "
                                  "export to a folder outside every source (sources are "
                                  "never modified)")


def _dest_label(f: PlannedFile, volumes: list[Volume]) -> str:
    return f.rel if len(volumes) == 1 else f"{volumes[f.volume].name}/{f.rel}"


def _open_sources(options: ExportOptions, progress: ProgressCallback | None,
                  cancel: CancelToken | None) -> list[Medium]:
    from app.core.reader import open_medium  # R2's module

    media = []
    for src in options.sources:
        try:
            media.append(open_medium(src, progress=progress, cancel=cancel))
        except DiscBridgeError as exc:
            raise ExportError(f"{src}: cannot read this source ({exc})") from exc
    return media


def _decide(sources: list[SourceFile], profile: Profile, options: ExportOptions,
            created: _dt.datetime) -> list[PlannedFile]:
    from app.core.records import record_type_for  # E1a's module

    refused: list[tuple[str, str]] = []
    encodable = [ts for ts in profile.transfer_syntaxes if can_encode(ts)]
    restricted = any(x is not None for x in (
        profile.sop_classes, profile.modalities, profile.max_rows, profile.max_columns,
        profile.bits_allocated, profile.bits_stored))  # else refusal() has nothing to refuse
    targets: dict[int, str] = {}
    for n, s in enumerate(sources):
        hdr = s.header
        missing = [kw for kw in ("SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")
                   if not s.get(kw)]
        if missing:
            refused.append((s.label, f"no {', '.join(missing)}: it cannot be filed"))
            continue
        why = profile.refusal(hdr) if restricted else None
        if why:
            refused.append((s.label, why))
            continue
        try:
            target = profile.target_transfer_syntax(s.transfer_syntax, encodable)
        except ValueError as exc:
            msg = str(exc)
            if "cannot be encoded" in msg:
                msg = (f"{profile.name} needs {ts_name(profile.fallback_transfer_syntax)}, which "
                       "cannot be encoded here (pydicom needs python-gdcm for it)")
            refused.append((s.label, msg))
            continue
        if target != s.transfer_syntax and is_compressed(s.transfer_syntax) \
                and not can_decode(s.transfer_syntax):
            refused.append((s.label, f"{ts_name(s.transfer_syntax)} cannot be decoded here, "
                            f"and {profile.name} does not allow it"))
            continue
        targets[n] = target
    if refused:
        shown = "; ".join(f"{f}: {r}" for f, r in refused[:20])
        more = f" (and {len(refused) - 20} more)" if len(refused) > 20 else ""
        raise RefusedInstances(f"{len(refused)} instance(s) cannot go on a {profile.name} "
                               f"medium: {shown}{more}. Nothing was written; choose another "
                               "profile (--profile) or leave them out.", refused)
    items = [Item(sources[n].label, sources[n].header, getter=sources[n].get) for n in targets]
    assign_patient_ids(items, options.on_id_clash)
    studies: dict[str, list[Item]] = {}
    for it in items:
        studies.setdefault(it.get("StudyInstanceUID") or "", []).append(it)
    _check_hierarchy(studies)
    fix_studies(studies, options.study_date)
    for members in studies.values():
        series: dict[str, list[Item]] = {}
        for it in members:
            series.setdefault(it.get("SeriesInstanceUID") or "", []).append(it)
        fix_numbers(series, "SeriesNumber", "Series Number")
        for key, sm in series.items():
            fix_numbers({key: sm}, "InstanceNumber", "Instance Number")
    out: list[PlannedFile] = []
    unfit: list[tuple[str, str]] = []
    for it, n in zip(items, targets, strict=True):
        s = sources[n]
        record_type = record_type_for(s.get("SOPClassUID"))
        missing = _missing_leaf_keys(s, it.fixes, record_type, profile)
        if missing:
            unfit.append((s.label, f"{record_type} record needs {', '.join(missing)} (Type 1), "
                          "which the instance lacks and which cannot be made up"))
            continue
        out.append(_planned(s, it, targets[n], record_type))
    if unfit:
        shown = "; ".join(f"{f}: {r}" for f, r in unfit[:20])
        more = f" (and {len(unfit) - 20} more)" if len(unfit) > 20 else ""
        raise RefusedInstances(f"{len(unfit)} instance(s) cannot be listed in a DICOMDIR: "
                               f"{shown}{more}. Nothing was written.", unfit)
    del created
    return out


# Keys the record writer finds elsewhere when absent at the top level (records.py).
_FOUND_ELSEWHERE = frozenset({"ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                              "VerificationDateTime"})


def _missing_leaf_keys(s: SourceFile, fixes: dict[str, str], record_type: str,
                       profile: Profile) -> list[str]:
    """Type 1 keys of the leaf record that neither the instance nor our fixes provide."""
    from pydicom.datadict import tag_for_keyword

    from app.core.records import required_keys

    try:
        keys = required_keys(record_type, profile)
    except ValueError:
        return []
    missing = []
    for keyword, typ in keys:
        if typ != "1" or keyword in fixes or keyword in _FOUND_ELSEWHERE:
            continue
        tag = tag_for_keyword(keyword)
        elem = s.header.get_item(tag) if tag is not None else None
        if elem is None or elem.value in (None, b"", "") or (
                isinstance(elem.value, bytes) and not elem.value.strip(b" \0")):
            missing.append(keyword)
    return missing


def _check_hierarchy(studies: dict[str, list[Item]]) -> None:
    """A study under two Patient IDs, or a series under two studies, cannot be filed (one
    STUDY record per Study Instance UID under one PATIENT): stop before writing."""
    bad: list[str] = []
    series_owner: dict[str, tuple[str, str]] = {}
    for uid, members in studies.items():
        pids = {it.get("PatientID") for it in members}
        if len(pids) > 1:
            bad.append(f"study {uid} is filed under Patient IDs {', '.join(sorted(map(str, pids)))}"
                       f" (e.g. {members[0].label})")
        for it in members:
            se = it.get("SeriesInstanceUID") or ""
            owner = series_owner.setdefault(se, (uid, it.label))
            if owner[0] != uid:
                bad.append(f"series {se} belongs to two studies ({owner[1]}, {it.label})")
                series_owner[se] = (uid, it.label)
    if bad:
        raise ExportError("the sources contradict themselves: " + "; ".join(bad[:10])
                          + ". Nothing was written; correct the sources or export them apart.")


def _planned(s: SourceFile, it: Item, target: str, record_type: str) -> PlannedFile:
    hdr = s.header
    sop_uid = s.get("SOPInstanceUID") or ""
    sop_class = s.get("SOPClassUID") or ""
    fixes = dict(it.fixes)
    meta_bytes = None
    if target != s.transfer_syntax:
        action, exact = "transcode", False
        if is_compressed(s.transfer_syntax):
            est = s.header_bytes + 512 + decoded_size(hdr)
        else:
            est = s.size + 4 * max(1, len(hdr)) + 512
        est += 256 * len(fixes)
    elif fixes or it.other_patient_id:
        action, exact = "rewrite", False
        est = s.size + 512 + 128 * len(fixes)
    elif s.meta_ok:
        action, exact, est = "copy", True, s.size
    else:
        action, exact = "meta", True
        source_ae = None
        meta_bytes = encode_file_meta(sop_class, sop_uid, target, source_ae)
        est = len(meta_bytes) + s.size - s.body_offset
    return PlannedFile(src=s, sop_uid=sop_uid, sop_class=sop_class, record_type=record_type,
                       source_ts=s.transfer_syntax, target_ts=target, action=action,
                       fixes=fixes, reasons=dict(it.reasons),
                       other_patient_id=it.other_patient_id, est_size=est, exact=exact,
                       meta_bytes=meta_bytes)


def _int_or(text: str | None, default: int = 1 << 30) -> int:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return default


def _tree(files: list[PlannedFile]) -> list[PlanPatient]:
    """Group into patients/studies/series in DESIGN.md "Export naming and ordering" order."""
    patients: dict[str, PlanPatient] = {}
    studies: dict[str, PlanStudy] = {}
    series: dict[str, PlanSeries] = {}
    for f in files:
        pid = f.value("PatientID") or ""
        p = patients.get(pid)
        if p is None:
            p = patients[pid] = PlanPatient(pid, f.value("PatientName"),
                                            f.value("PatientBirthDate"), f.value("PatientSex"))
        suid = f.value("StudyInstanceUID") or ""
        st = studies.get(suid)
        if st is None:
            st = studies[suid] = PlanStudy(suid, f.value("StudyDate"), f.value("StudyTime"),
                                           f.value("StudyID"), f.value("AccessionNumber"),
                                           f.value("StudyDescription"))
            p.studies.append(st)
        seuid = f.value("SeriesInstanceUID") or ""
        se = series.get(seuid)
        if se is None:
            se = series[seuid] = PlanSeries(seuid, f.value("Modality"), f.value("SeriesNumber"),
                                            f.value("SeriesDescription"))
            st.series.append(se)
        se.files.append(f)
    out = sorted(patients.values(), key=lambda p: ((p.name or "").upper(), p.patient_id))
    for p in out:
        p.studies.sort(key=lambda s: (s.date or "", s.time or "", s.uid))
        for st in p.studies:
            st.series.sort(key=lambda s: (_int_or(s.number), s.uid))
            for se in st.series:
                se.files.sort(key=lambda f: (_int_or(f.value("InstanceNumber")), f.sop_uid))
    return out


def _block(options: ExportOptions) -> int:
    return 2048 if options.effective_media in ("cd", "dvd", "dvd-dl", "bd") or options.iso \
        else 4096


def _volume_overhead(n_files: int, n_series: int, icon_size: int | None) -> int:
    icon = (icon_size * icon_size + 256) if icon_size else 0
    records = n_files * (RECORD_BYTES + icon) + n_series * (3 * RECORD_BYTES + icon)
    return records + README_BYTES + 4 * DIR_BYTES + n_series * 3 * DIR_BYTES


def _volumes(patients: list[PlanPatient], cap: int, options: ExportOptions, fileset_id: str,
             icon_size: int | None) -> list[Volume]:
    block = _block(options)
    units: list[list[PlannedFile]] = [st.files for p in patients for st in p.studies]

    def cost(files: list[PlannedFile]) -> int:
        n_series = len({f.value("SeriesInstanceUID") for f in files})
        return sum(_round(f.est_size, block) for f in files) + _volume_overhead(
            len(files), n_series, icon_size)

    everything = [f for u in units for f in u]
    total = cost(everything)
    if total <= cap:
        vol = Volume(0, "", fileset_id, everything, total)
        return [vol]
    if not options.span:
        raise TooBig(f"the export needs about {total / MB:,.1f} MB but the medium holds "
                     f"{cap / MB:,.1f} MB. Nothing was written; use --span to split it over "
                     "several volumes, a bigger medium, or fewer studies.", total, cap)
    # Spanning: whole studies first; a study too big alone is split by series, a series too
    # big alone by instances.
    groups: list[list[PlannedFile]] = []
    for study_files in units:
        if cost(study_files) <= cap:
            groups.append(study_files)
            continue
        by_series: dict[str, list[PlannedFile]] = {}
        for f in study_files:
            by_series.setdefault(f.value("SeriesInstanceUID") or "", []).append(f)
        for se_files in by_series.values():
            if cost(se_files) <= cap:
                groups.append(se_files)
            else:
                for f in se_files:
                    if cost([f]) > cap:
                        raise TooBig(f"{f.src.label}: this one file (about "
                                     f"{f.est_size / MB:,.1f} MB) is larger than a volume "
                                     f"({cap / MB:,.1f} MB)", f.est_size, cap)
                    groups.append([f])
    bins: list[list[PlannedFile]] = [[]]
    for g in groups:
        if bins[-1] and cost(bins[-1] + g) > cap:
            bins.append([])
        bins[-1].extend(g)
    if len(bins) > 99:
        raise TooBig(f"spanning would need {len(bins)} volumes (at most 99)", total, cap)
    vols = []
    for n, files in enumerate(bins):
        vid = f"{fileset_id[:12]}_V{n + 1:02d}" if len(bins) > 1 else fileset_id
        v = Volume(n, f"VOL{n + 1:02d}" if len(bins) > 1 else "", vid, files, cost(files))
        for f in files:
            f.volume = n
        vols.append(v)
    return vols


def _name(volumes: list[Volume]) -> None:
    """File IDs per volume (DESIGN.md naming, via :mod:`app.core.layout`); files in that order."""
    from app.core.layout import LayoutItem, plan_layout

    for v in volumes:
        items = [LayoutItem(f.value("PatientID") or "", f.value("PatientName") or "",
                            f.value("StudyInstanceUID") or "", f.value("StudyDate") or "",
                            f.value("StudyTime") or "", f.value("SeriesInstanceUID") or "",
                            f.value("SeriesNumber") or "", f.sop_uid,
                            f.value("InstanceNumber") or "", key=n)
                 for n, f in enumerate(v.files)]
        try:
            layout = plan_layout(items)
        except ValueError as exc:
            raise ExportError(f"cannot name the files: {exc}") from exc
        ordered = []
        for fid, item in layout.items:
            f = v.files[int(item.key)]  # type: ignore[call-overload]
            f.file_id = tuple(fid)
            ordered.append(f)
        v.files = ordered
