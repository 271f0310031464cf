"""``check``: deep validation of an opened medium; every referenced file's header is read.

Beyond what :func:`app.core.medium.reader.open_medium` already found (kept, first), this reports:

- ``not-dicom``, ``truncated-file``, ``read-error`` (after one retry) for referenced files;
- ``record-file-mismatch`` where a record and its file disagree on SOP Instance/Class UID,
  Transfer Syntax, Patient ID, Study or Series Instance UID (STANDARDS.md §2: (0004,1510)–
  (0004,1512) must match the file's meta). The file wins: the model is updated from its header
  (an instance whose patient/study/series differs is moved where its header puts it);
- ``missing-key`` for the Type 1 keys of each record type and application profile
  (:func:`app.core.dicomdir.records.required_keys`; STANDARDS.md §2, §4), not already reported;
- ``bad-icon`` for Icon Image Sequences that do not decode or break STANDARDS.md §3;
- ``bad-pixel-data`` for native (not encapsulated) Pixel Data whose length is not what Rows ×
  Columns × Samples per Pixel × Number of Frames × Bits Allocated require (PS3.5 §8.1.1: 1-bit
  data packed, the value padded to an even length): an error when too short, a warning when
  longer.

File ID rules (PS3.10 §8.2/8.5), missing, empty and unreferenced files are reported by the
reader itself and appear here unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.core.files import Entry
from app.core.jobs import CancelToken, Progress, ProgressCallback, Throttle
from app.core.medium.scan import FileRef, HeaderInfo, TreeBuilder, read_one
from app.core.model import Icon, Instance, Medium, Patient, Problem, Series, Study

# (record field, header keyword, label) compared between record and file.
_INSTANCE_KEYS = (("sop_instance_uid", "SOPInstanceUID", "SOP Instance UID"),
                  ("sop_class_uid", "SOPClassUID", "SOP Class UID"))
_LEVEL_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "PATIENT": (("patient_id", "PatientID"), ("patient_name", "PatientName"),
                ("birth_date", "PatientBirthDate"), ("sex", "PatientSex")),
    "STUDY": (("study_uid", "StudyInstanceUID"), ("study_date", "StudyDate"),
              ("study_time", "StudyTime"), ("study_id", "StudyID"),
              ("accession", "AccessionNumber"), ("description", "StudyDescription")),
    "SERIES": (("series_uid", "SeriesInstanceUID"), ("modality", "Modality"),
               ("series_number", "SeriesNumber"), ("description", "SeriesDescription")),
}
_LEAF_FIELDS = (("sop_instance_uid", "ReferencedSOPInstanceUIDInFile"),
                ("sop_class_uid", "ReferencedSOPClassUIDInFile"),
                ("transfer_syntax_uid", "ReferencedTransferSyntaxUIDInFile"),
                ("instance_number", "InstanceNumber"))
_ICON_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")


def check_medium(medium: Medium, profile: str | None = None,
                 progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> list[Problem]:
    """Validate ``medium`` deeply; return all problems (the reader's first, then the new ones).

    Parameters
    ----------
    medium
        From :func:`app.core.medium.reader.open_medium` (its ``fs`` is used to read the files).
    profile
        An application profile name (``STD-GEN-CD`` ...) whose extra record keys are required.
    progress, cancel
        The job protocol of :mod:`app.core.jobs` (phase ``check``).

    Raises
    ------
    ValueError
        Unknown profile (the CLI maps it to exit code 2).
    """
    prof = _profile(profile)
    report = Throttle(progress) if progress is not None else None
    problems = list(medium.problems)
    known = {(p.code, p.path, p.message) for p in problems}

    def add(p: Problem) -> None:
        key = (p.code, p.path, p.message)
        if key not in known:
            known.add(key)
            problems.append(p)

    if medium.source == "dicomdir":
        for p in _record_key_problems(medium, prof):
            add(p)
    for p in _icon_problems(medium):
        add(p)
    # Unreferenced files were read by the scan already (their problems are listed): here only
    # what the scan does not judge (the Pixel Data length).
    todo = [(pat, st, se, inst) for pat, st, se, inst in medium.walk() if inst.path is not None]
    moves: list[tuple[Instance, Series, dict[str, str | None]]] = []
    for i, (pat, st, se, inst) in enumerate(todo):
        if cancel is not None and i % 16 == 0:
            cancel.raise_if_cancelled()
        if report is not None:
            report(Progress("check", i, len(todo), message=inst.path or ""))
        if inst.size == 0:
            continue  # empty-file already reported from the listing
        assert medium.fs is not None and inst.path is not None
        res = read_one(medium.fs, FileRef(inst.path, Entry(inst.path.rsplit("/", 1)[-1], False,
                                                             inst.size or 0)), prefilter=False)
        if not inst.referenced:
            bad = None if res.info is None or res.info.truncated else \
                pixel_data_problem(inst.path, res.info)
            if bad is not None:
                add(bad)
            continue
        if res.problem is not None:
            add(res.problem)
            continue
        if res.info is None:
            add(Problem("error", "not-dicom", inst.path, "referenced file is not a DICOM file"))
            continue
        for p in _compare(pat, st, se, inst, res.info):
            add(p)
        if res.info.charset_problem:
            add(Problem("warning", "bad-charset", inst.path, res.info.charset_problem))
        if res.info.truncated:
            add(Problem("error", "truncated-file", inst.path, "file ends inside its Pixel Data"))
        else:
            bad = pixel_data_problem(inst.path, res.info)
            if bad is not None:
                add(bad)
        if _file_wins(inst, res.info, pat, st, se):
            moves.append((inst, se, res.info.values))
    if moves:
        _rehome(medium, moves)
    if report is not None:
        report(Progress("check", len(todo), len(todo), message="checked"), force=True)
    return problems


def _profile(name: str | None) -> Any:
    if name is None:
        return None
    from app.core.dicomdir.profiles import get_profile

    return get_profile(name)  # ValueError when unknown


# --------------------------------------------------------------------------------------------
# record keys


def _record_key_problems(medium: Medium, profile: Any) -> Iterable[Problem]:
    """Type 1 keys missing from records, beyond those the DICOMDIR parser reports itself.

    The parser checks the base keys of every record type on the raw record (present and
    non-empty); here the keys of :func:`app.core.dicomdir.records.required_keys` for the record type and
    the profile are checked on the model, skipping the parser's.
    """
    from app.core.dicomdir import parse as dicomdir
    from app.core.dicomdir.records import required_keys

    parser_keys: dict[str, tuple[str, ...]] = getattr(dicomdir, "REQUIRED_KEYS", {})
    file_keys: tuple[str, ...] = getattr(dicomdir, "FILE_KEYS", ())

    def missing(rtype: str, obj: Any, fields: dict[str, str], leaf: bool) -> list[str]:
        try:
            keys = required_keys(rtype, profile)
        except ValueError:
            return []
        skip = set(parser_keys.get(rtype, ())) | (set(file_keys) if leaf else set())
        out = []
        for kw, typ in keys:
            if typ != "1" or kw in _NOT_IN_MODEL or kw in skip:
                continue
            attr = fields.get(kw)
            value = getattr(obj, attr) if attr else obj.attrs.get(kw)
            if value in (None, "", ()):
                out.append(kw)
        return out

    def problem(where: str | None, rtype: str, kws: list[str]) -> Problem:
        return Problem("warning", "missing-key", where,
                       f"{rtype} record lacks Type 1 key{'s' if len(kws) > 1 else ''} "
                       f"{', '.join(kws)}" + _for(profile))

    seen: set[int] = set()
    for pat, st, se, inst in medium.walk():
        if not inst.referenced:
            continue
        where = inst.path or ("/".join(inst.file_id) if inst.file_id else inst.dicomdir)
        for rtype, obj, fields in (("PATIENT", pat, _PATIENT_KW), ("STUDY", st, _STUDY_KW),
                                   ("SERIES", se, _SERIES_KW)):
            if id(obj) not in seen:
                seen.add(id(obj))
                kws = missing(rtype, obj, fields, False)
                if kws:
                    yield problem(where, rtype, kws)
        kws = missing(inst.record_type, inst, _INSTANCE_KW, True)
        if kws:
            yield problem(where, inst.record_type, kws)
        if profile is not None and getattr(profile, "icon_required", False) \
                and inst.record_type == "IMAGE" and inst.icon is None:
            yield Problem("warning", "missing-key", where,
                          f"IMAGE record lacks the Icon Image Sequence{_for(profile)}")


def _for(profile: Any) -> str:
    return f" (required by {profile.name})" if profile is not None else ""


_PATIENT_KW = {"PatientID": "patient_id", "PatientName": "patient_name",
               "PatientBirthDate": "birth_date", "PatientSex": "sex"}
_STUDY_KW = {"StudyInstanceUID": "study_uid", "StudyDate": "study_date",
             "StudyTime": "study_time", "StudyID": "study_id",
             "AccessionNumber": "accession", "StudyDescription": "description"}
_SERIES_KW = {"SeriesInstanceUID": "series_uid", "Modality": "modality",
              "SeriesNumber": "series_number", "SeriesDescription": "description"}
_INSTANCE_KW = {"InstanceNumber": "instance_number",
                "ReferencedSOPInstanceUIDInFile": "sop_instance_uid",
                "ReferencedSOPClassUIDInFile": "sop_class_uid",
                "ReferencedTransferSyntaxUIDInFile": "transfer_syntax_uid",
                "ReferencedFileID": "file_id"}
# Sequences and the like that the model does not keep as text: not judged here.
_NOT_IN_MODEL = frozenset({"ConceptNameCodeSequence", "ReferencedImageSequence",
                           "IconImageSequence"})


# --------------------------------------------------------------------------------------------
# icons (STANDARDS.md §3)


def _icon_problems(medium: Medium) -> Iterable[Problem]:
    seen: set[int] = set()
    for _pat, _st, se, inst in medium.walk():
        if se.icon is not None and id(se.icon) not in seen:
            seen.add(id(se.icon))
            why = icon_defect(se.icon)
            if why:
                yield Problem("warning", "bad-icon", inst.dicomdir,
                              f"SERIES record {se.series_number or se.series_uid}: {why}")
        if inst.icon is not None and id(inst.icon) not in seen:
            seen.add(id(inst.icon))
            why = icon_defect(inst.icon)
            if why:
                yield Problem("warning", "bad-icon", inst.path or inst.dicomdir, why)


def icon_defect(icon: Icon) -> str | None:
    """Why an icon is unusable or non-conformant (STANDARDS.md §3), or None."""
    try:
        from app.core.imaging.display import decode_icon
    except ImportError:  # pragma: no cover - imaging is part of the install
        decode_icon = None  # type: ignore[assignment]
    if decode_icon is not None:
        from app.core.errors import BadIcon

        try:
            decode_icon(icon)
        except BadIcon as exc:
            return f"icon cannot be decoded: {exc}"
    if icon.samples_per_pixel != 1:
        return f"icon has {icon.samples_per_pixel} samples per pixel (1 required)"
    if icon.photometric not in _ICON_PHOTOMETRICS:
        return f"icon photometric interpretation {icon.photometric!r} is not allowed"
    if icon.bits_allocated not in (1, 8) or icon.bits_stored != icon.bits_allocated:
        return (f"icon has Bits Allocated {icon.bits_allocated} / Bits Stored "
                f"{icon.bits_stored} (1/1 or 8/8 required)")
    if icon.pixel_representation != 0:
        return "icon pixels are signed (Pixel Representation 0 required)"
    if icon.photometric == "PALETTE COLOR" and icon.bits_allocated != 8:
        return "palette icons must be 8-bit"
    if icon.rows <= 0 or icon.columns <= 0:
        return f"icon size {icon.rows}x{icon.columns} is empty"
    need = (icon.rows * icon.columns * icon.bits_allocated + 7) // 8
    if len(icon.pixel_data) < need:
        return f"icon Pixel Data holds {len(icon.pixel_data)} bytes, {need} needed"
    return None


# --------------------------------------------------------------------------------------------
# record vs file


def _compare(pat: Patient, st: Study, se: Series, inst: Instance,
             info: HeaderInfo) -> Iterable[Problem]:
    v = info.values
    pairs = [("SOP Instance UID", inst.sop_instance_uid, v.get("SOPInstanceUID")),
             ("SOP Class UID", inst.sop_class_uid, v.get("SOPClassUID")),
             ("Transfer Syntax UID", inst.transfer_syntax_uid, info.transfer_syntax),
             ("Patient ID", pat.patient_id, v.get("PatientID")),
             ("Study Instance UID", st.study_uid, v.get("StudyInstanceUID")),
             ("Series Instance UID", se.series_uid, v.get("SeriesInstanceUID"))]
    for label, rec, file in pairs:
        if rec is not None and file is not None and rec.strip() != file.strip():
            yield Problem("warning", "record-file-mismatch", inst.path,
                          f"{label} differs: record {rec!r}, file {file!r} (the file's is used)")


_NATIVE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
_HALF_CHROMA = ("YBR_FULL_422", "YBR_PARTIAL_422")  # two samples' worth per pixel (PS3.3 C.7.6.3)


def pixel_data_problem(path: str, info: HeaderInfo) -> Problem | None:
    """``bad-pixel-data`` when native Pixel Data is not as long as its image needs, else None."""
    if info.pixel_length is None or info.transfer_syntax not in _NATIVE:
        return None
    v = info.values
    try:
        rows, cols, bits = int(v["Rows"] or ""), int(v["Columns"] or ""), int(v["BitsAllocated"] or "")
        samples = int(v.get("SamplesPerPixel") or 1)
        frames = int(v.get("NumberOfFrames") or 1)
    except (KeyError, ValueError):
        return None  # the keys themselves are missing or malformed: not this check's business
    if (v.get("PhotometricInterpretation") or "").strip() in _HALF_CHROMA and samples == 3:
        samples = 2
    need = (rows * cols * samples * max(frames, 1) * bits + 7) // 8
    padded = need + need % 2
    got = info.pixel_length
    what = (f"{rows}×{cols} pixels × {samples} samples × {max(frames, 1)} frames × "
            f"{bits} bits" + (" (packed)" if bits == 1 else ""))
    if got < need:
        return Problem("error", "bad-pixel-data", path,
                       f"Pixel Data holds {got} bytes; {what} need {need}")
    if got > padded:  # a whole frame or more too long: readers see frames that are not there
        frame = max(1, need // max(frames, 1))
        return Problem("error" if got - padded >= frame else "warning", "bad-pixel-data", path,
                       f"Pixel Data holds {got} bytes where {what} need {padded}")
    return None


def _file_wins(inst: Instance, info: HeaderInfo, pat: Patient, st: Study, se: Series) -> bool:
    """Copy the file's values into the instance; True when it belongs elsewhere in the tree."""
    v = info.values
    for attr, kw in (("sop_instance_uid", "SOPInstanceUID"), ("sop_class_uid", "SOPClassUID"),
                     ("instance_number", "InstanceNumber")):
        if v.get(kw):
            setattr(inst, attr, v[kw])
    if info.transfer_syntax:
        inst.transfer_syntax_uid = info.transfer_syntax
    for attr, kw in (("patient_id", "PatientID"),):
        if v.get(kw) and getattr(pat, attr) is not None and getattr(pat, attr) != v[kw]:
            return True
    if v.get("StudyInstanceUID") and st.study_uid and st.study_uid != v["StudyInstanceUID"]:
        return True
    if v.get("SeriesInstanceUID") and se.series_uid and se.series_uid != v["SeriesInstanceUID"]:
        return True
    # same place: fill what the records left empty
    for obj, level in ((pat, "PATIENT"), (st, "STUDY"), (se, "SERIES")):
        for attr, kw in _LEVEL_FIELDS[level]:
            if getattr(obj, attr) is None and v.get(kw):
                setattr(obj, attr, v[kw])
    return False


def _rehome(medium: Medium, moves: list[tuple[Instance, Series, dict[str, str | None]]]) -> None:
    """Move instances whose file says they belong to another patient/study/series."""
    builder = TreeBuilder.from_patients(medium.patients)
    for inst, old, values in moves:
        old.instances = [i for i in old.instances if i is not inst]
        builder.place(values).instances.append(inst)
    builder.prune()
    medium.patients = builder.patients
