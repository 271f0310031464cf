"""Planning an export: everything decided and sized before a single byte is written.

:func:`plan_export` opens the sources (folders, DICOMDIRs, .iso images, mixed), merges them
(duplicates by SOP Instance UID dropped, the first source wins), reads every header once, and
decides per instance: refusal by the profile, Type 1 fixes (:mod:`app.core.export.identity`),
the transfer syntax written (:meth:`Profile.target_transfer_syntax`), the action (fast copy,
new File Meta + unchanged body, full rewrite, transcode) and the size. Then capacity: too big is
an :class:`TooBig` error unless spanning, which splits studies over volumes (a series is split
only when it alone exceeds a volume). The GUI wizard shows an :class:`ExportPlan` on its summary
page; :func:`app.core.export.engine.execute` carries it out.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import gc
import re
from collections.abc import Iterator
from pathlib import Path

from app.core.dicomdir.profiles import Profile, get_profile
from app.core.errors import DiscBridgeError, ExportError
from app.core.export.fixes import Change
from app.core.export.identity import Item, assign_patient_ids, fix_numbers, fix_studies
from app.core.export.options import ExportOptions
from app.core.export.plan_model import (
    ExportPlan,
    PlannedFile,
    PlanPatient,
    PlanSeries,
    PlanStudy,
    RefusedInstances,
    TooBig,
    Transcoding,
    Volume,
)
from app.core.export.sources import SourceFile, read_sources
from app.core.export.splice import splice_fixes
from app.core.export.transcode import (
    can_decode,
    can_encode,
    decoded_size,
    encode_file_meta,
    is_compressed,
    ts_name,
)
from app.core.export.uids import uid_fixes
from app.core.export.values import vr_fixes
from app.core.export.volumes import capacity_for, name_volumes, pack_volumes
from app.core.jobs import CancelToken, ProgressCallback
from app.core.model import Medium

FILESET_ID_RE = re.compile(r"^[A-Z0-9_]{1,16}$")
DEFAULT_FILESET_ID = "DISCBRIDGE"

__all__ = ["ExportPlan", "PlanPatient", "PlanSeries", "PlanStudy", "PlannedFile",
           "RefusedInstances", "TooBig", "Transcoding", "Volume", "dest_label", "plan_export",
           "validate_fileset_id"]


def validate_fileset_id(value: str | None, created: _dt.datetime) -> str:
    """The File-set ID: ``value`` checked (≤ 16 of A–Z 0–9 _), else ``DBYYYYMMDD``."""
    if value is None:
        return f"DB{created:%Y%m%d}"
    if not FILESET_ID_RE.match(value):
        raise ExportError(f"--fileset-id {value!r}: use 1 to 16 characters A-Z, 0-9 and _ "
                          "(upper case, no spaces; it becomes the disc's volume label)")
    return value

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
    with gc_paused():
        return _plan(options, media, capacity, progress, cancel)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: planning creates some 100 objects per file and none
    of them is garbage; Python's collector would walk them all again and again (about 0.1 s of
    the 0.5 s plan of 4,000 files). Restored afterwards (also when nested)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _plan(options: ExportOptions, media: list[Medium] | None, capacity: int | None,
          progress: ProgressCallback | None, cancel: CancelToken | None) -> ExportPlan:
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
    skipped: list[tuple[str, str]] = []
    files = _decide(sources, profile, options, created, skipped)
    if not files:
        shown = "; ".join(f"{f}: {r}" for f, r in skipped[:20])
        raise RefusedInstances(f"nothing to export: all {len(skipped)} instance(s) cannot be "
                               f"exported ({profile.name}): {shown}", skipped)
    patients = _tree(files)
    cap_bytes, cap_note, warnings = capacity_for(options, capacity)
    volumes = pack_volumes(patients, cap_bytes, options, fileset_id, icon_size)
    name_volumes(volumes)
    changes = [Change(dest_label(f, volumes), kw, f.src.get(kw), new, f.reasons.get(kw, ""))
               for v in volumes for f in v.files for kw, new in f.fixes.items()]
    transcodings = [Transcoding(dest_label(f, volumes), f.src.label, ts_name(f.source_ts),
                                ts_name(f.target_ts),
                                "lossy source" if f.source_ts in _LOSSY else "")
                    for f in files if f.action == "transcode"]
    transcodings += [Transcoding(dest_label(f, volumes), f.src.label, ts_name(f.source_ts),
                                 ts_name(f.target_ts), "its dataset was not encoded as its "
                                 "transfer syntax says: re-encoded")
                     for f in files if f.action == "rewrite" and f.src.encoding_mismatch
                     and f.source_ts == f.target_ts]
    return ExportPlan(options=options, profile=profile, media_type=options.effective_media,
                      capacity=cap_bytes, capacity_note=cap_note, patients=patients,
                      files=[f for p in patients for s in p.studies for f in s.files],
                      volumes=volumes, changes=changes, transcodings=transcodings,
                      problems=problems, warnings=warnings, fileset_id=fileset_id,
                      icon_size=icon_size, created=created, media=media, skipped=skipped)


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


def dest_label(f: PlannedFile, volumes: list[Volume]) -> str:
    """A file's name in messages and the report: its File ID path, under its volume when spanning."""
    return f.rel if len(volumes) == 1 else f"{volumes[f.volume].name}/{f.rel}"


def _open_sources(options: ExportOptions, progress: ProgressCallback | None,
                  cancel: CancelToken | None) -> list[Medium]:
    from app.core.medium.reader import open_medium

    media = []
    for src in options.sources:
        try:
            media.append(open_medium(src, progress=progress, cancel=cancel))
        except DiscBridgeError as exc:
            raise ExportError(f"{src}: cannot read this source ({exc})") from exc
    return media


def _decide(sources: list[SourceFile], profile: Profile, options: ExportOptions,
            created: _dt.datetime, skipped: list[tuple[str, str]]) -> list[PlannedFile]:
    """The planned files; with ``options.skip_unexportable`` the instances that cannot be
    exported are appended to ``skipped`` (file, why) instead of stopping the export."""
    from app.core.dicomdir.records import record_type_for

    refused: list[tuple[str, str]] = []
    encodable = [ts for ts in profile.transfer_syntaxes if can_encode(ts)]
    restricted = any(x is not None for x in (
        profile.sop_classes, profile.modalities, profile.max_rows, profile.max_columns,
        profile.bits_allocated, profile.bits_stored))  # else refusal() has nothing to refuse
    targets: dict[int, str] = {}
    for n, s in enumerate(sources):
        missing = [kw for kw in ("SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")
                   if not s.get(kw)]
        if missing:
            refused.append((s.label, f"no {', '.join(missing)}: it cannot be filed"))
            continue
        if s.damage:
            refused.append((s.label, f"damaged source, {s.damage}"))
            continue
        why = profile.refusal(s.header) if restricted else None
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
    if refused and options.skip_unexportable:
        skipped.extend(refused)
    elif refused:
        shown = "; ".join(f"{f}: {r}" for f, r in refused[:20])
        more = f" (and {len(refused) - 20} more)" if len(refused) > 20 else ""
        raise RefusedInstances(f"{len(refused)} instance(s) cannot be exported ({profile.name}):"
                               f" {shown}{more}. Nothing was written; leave them out, or choose "
                               "another profile (--profile) where the profile is the reason.",
                               refused)
    items = [Item(sources[n].label, None, getter=sources[n].get) for n in targets]
    for it, n in zip(items, targets, strict=True):  # record values invalid for their VR
        record_type = record_type_for(sources[n].get("SOPClassUID"))
        for keyword, (value, why) in vr_fixes(sources[n].get, record_type, profile).items():
            it.fix(keyword, value, why)
        for keyword, (value, why) in uid_fixes(sources[n].get).items():  # invalid UIDs
            it.fix(keyword, value, why)
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
            unfit.append((s.label, f"its DICOMDIR records ({record_type}) need "
                          f"{', '.join(missing)} (Type 1), which the instance lacks and which "
                          "cannot be made up"))
            continue
        out.append(_planned(s, it, targets[n], record_type, created))
    if unfit and options.skip_unexportable:
        skipped.extend(unfit)
    elif unfit:
        shown = "; ".join(f"{f}: {r}" for f, r in unfit[:20])
        more = f" (and {len(unfit) - 20} more)" if len(unfit) > 20 else ""
        raise RefusedInstances(f"{len(unfit)} instance(s) cannot be listed in a DICOMDIR: "
                               f"{shown}{more}. Nothing was written.", unfit)
    del created
    return out


# Keys the record writer finds elsewhere when absent at the top level (records.py).
_FOUND_ELSEWHERE = frozenset({"ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                              "VerificationDateTime"})


@functools.lru_cache(maxsize=64)
def _type1_keys(record_type: str, profile: Profile) -> tuple[tuple[str, int], ...]:
    """(keyword, tag) of the Type 1 keys of PATIENT, STUDY, SERIES and ``record_type``."""
    from pydicom.datadict import tag_for_keyword

    from app.core.dicomdir.records import required_keys

    out: dict[str, int] = {}
    for level in ("PATIENT", "STUDY", "SERIES", record_type):
        try:
            keys = required_keys(level, profile)
        except ValueError:
            continue
        for keyword, typ in keys:
            tag = tag_for_keyword(keyword)
            if typ == "1" and keyword not in _FOUND_ELSEWHERE and tag is not None:
                out.setdefault(keyword, int(tag))
    return tuple(out.items())


def _missing_leaf_keys(s: SourceFile, fixes: dict[str, str], record_type: str,
                       profile: Profile) -> list[str]:
    """Type 1 keys of the instance's records (PATIENT, STUDY, SERIES, leaf) that neither the
    instance nor our fixes provide (e.g. Modality, an SR's Concept Name Code Sequence)."""
    missing: list[str] = []
    for keyword, tag in _type1_keys(record_type, profile):
        if keyword in fixes or keyword in missing:
            continue
        elem = s.element(tag)  # raw lookup: no Dataset, no Tag() per key and file
        if elem is None or _empty(elem[0] or _dictionary_vr(tag), elem[1]):
            missing.append(keyword)
    return missing


_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UI", "UR", "UT"})


def _dictionary_vr(tag: int) -> str | None:
    from pydicom.datadict import dictionary_VR

    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def _empty(vr: str | None, value: object) -> bool:
    """No value: absent, zero length, or (text VRs only) nothing but padding."""
    if value is None or value in (b"", "") or (isinstance(value, list | tuple) and not value):
        return True
    if isinstance(value, bytes) and vr in _TEXT_VRS:
        return not value.strip(b" \0")
    if isinstance(value, str):
        return not value.strip(" \0")
    return False


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


def _planned(s: SourceFile, it: Item, target: str, record_type: str,
             created: _dt.datetime | None = None) -> PlannedFile:
    sop_uid = s.get("SOPInstanceUID") or ""
    sop_class = s.get("SOPClassUID") or ""
    fixes = dict(it.fixes)
    meta_bytes = None
    splice = None
    if fixes and not it.other_patient_id and target == s.transfer_syntax:
        splice = splice_fixes(s, fixes, sop_class, fixes.get("SOPInstanceUID") or sop_uid,
                              target, created)
    if splice is not None:  # new header bytes + the source's body by the kernel: no pydicom
        action, exact, est = "splice", True, len(splice.prefix) + s.size - splice.offset
    elif target != s.transfer_syntax:
        action, exact = "transcode", False
        if is_compressed(s.transfer_syntax):
            est = s.header_bytes + 512 + decoded_size(s.header)
        else:
            est = s.size + 4 * max(1, len(s.header)) + 512
        est += 256 * len(fixes)
    elif fixes or it.other_patient_id or s.encoding_mismatch:
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
                       meta_bytes=meta_bytes, splice=splice)


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
