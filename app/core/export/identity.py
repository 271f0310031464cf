"""Who is who on the exported medium: Patient IDs, and the Type 1 keys each record needs.

Policy (issue 3 item 2, STANDARDS.md §2 "Keys where the record Type exceeds the image-IOD
Type"): the values are fixed in the exported file and its record alike; this module only decides
*which* values, :mod:`app.core.export.fixes` writes them.

- One PATIENT per Patient ID. Two different patients (different names, or different birth
  dates) under one ID stop the export (:class:`PatientIdClash`) unless ``on_id_clash="separate"``:
  the later one (in name order) gets ``<ID>_2`` (unique on the medium) and keeps the original in
  Other Patient IDs Sequence.
- An empty Patient ID gets ``DBPAT0001``… (unique on the medium); distinct names (or birth dates)
  stay distinct patients; an empty ID is never merged into an existing ID by name.
- Study Date/Time: the study's own value from any of its instances, else the earliest Series,
  then Acquisition, then Content date (time from the same source). Never the clock: with none,
  :class:`MissingStudyDate` asks for ``--study-date`` (time then ``000000``: unknown).
- Study ID: from another instance of the study, else ``DB`` + a number unique on the medium.
- Series Number / Instance Number: from another instance, else the next free number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pydicom import Dataset

from app.core.errors import ExportError
from app.core.export.fixes import value_str


class PatientIdClash(ExportError):
    """Two different patients share one Patient ID (``clashes``: (id, [(name, birth, file)]))."""

    def __init__(self, message: str, clashes: list[tuple[str, list[tuple[str, str, str]]]]):
        super().__init__(message)
        self.clashes = clashes


class MissingStudyDate(ExportError):
    """Studies with no date anywhere; ``studies``: (study UID, patient name, a file) each."""

    def __init__(self, message: str, studies: list[tuple[str, str, str]]):
        super().__init__(message)
        self.studies = studies


@dataclass
class Item:
    """One instance as the identity pass sees it."""

    label: str  # source file for messages
    ds: Dataset | None  # header (never modified here); None when ``getter`` gives the values
    fixes: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    other_patient_id: str | None = None
    getter: Callable[[str], str | None] | None = None  # cached source values (SourceFile.get)

    def source_value(self, keyword: str) -> str | None:
        if self.getter is not None:
            return self.getter(keyword)
        return value_str(self.ds, keyword) if self.ds is not None else None

    def get(self, keyword: str) -> str | None:
        fixes = self.fixes
        if fixes and keyword in fixes:
            return fixes[keyword]
        getter = self.getter
        if getter is not None:
            return getter(keyword)
        return value_str(self.ds, keyword) if self.ds is not None else None

    def fix(self, keyword: str, value: str, reason: str) -> None:
        if self.fixes.get(keyword) == value:
            return  # already fixed to this value: keep the first reason
        if self.source_value(keyword) == value:
            self.fixes.pop(keyword, None)
            return
        self.fixes[keyword] = value
        self.reasons[keyword] = reason


def norm_name(name: str | None) -> str:
    """Person Name compared across files: case, spaces and trailing ``^``/``=`` ignored."""
    if not name:
        return ""
    text = re.sub(r"\s+", " ", name.upper()).strip()
    return re.sub(r"[\^= ]+$", "", text)


def _same_person(a: tuple[str, str], b: tuple[str, str]) -> bool:
    if a[0] != b[0]:
        return False
    return not (a[1] and b[1] and a[1] != b[1])


def _people(items: list[Item]) -> list[tuple[tuple[str, str], list[Item]]]:
    """``items`` grouped by person (:func:`_same_person`), groups sorted by identity."""
    people: list[tuple[tuple[str, str], list[Item]]] = []
    for it in items:
        ident = _identity(it)
        for known, members in people:
            if _same_person(known, ident):
                members.append(it)
                break
        else:
            people.append((ident, [it]))
    people.sort(key=lambda p: p[0])
    return people


def _identity(item: Item) -> tuple[str, str]:
    return norm_name(item.get("PatientName")), item.get("PatientBirthDate") or ""


def assign_patient_ids(items: Sequence[Item], on_id_clash: str) -> None:
    """Fill empty Patient IDs and resolve clashes (module docstring). Raises PatientIdClash."""
    used = {pid for it in items if (pid := it.get("PatientID"))}
    by_id: dict[str, list[Item]] = {}
    for it in items:
        pid = it.get("PatientID")
        if pid:
            by_id.setdefault(pid, []).append(it)
    clashes: list[tuple[str, list[tuple[str, str, str]]]] = []
    for pid in sorted(by_id):
        people = _people(by_id[pid])
        if len(people) < 2:
            continue
        if on_id_clash != "separate":
            clashes.append((pid, [(m[0].get("PatientName") or "(no name)",
                                   m[0].get("PatientBirthDate") or "(no birth date)",
                                   m[0].label) for _, m in people]))
            continue
        for n, (_, members) in enumerate(people[1:], start=2):
            new = _unique(f"{pid[:60]}_{n}", used)
            for it in members:
                it.fix("PatientID", new, f"Patient ID {pid!r} is also used by a different "
                       "patient; new ID, the original kept in Other Patient IDs Sequence")
                it.other_patient_id = pid
    if clashes:
        lines = []
        for pid, who in clashes:
            names = "; ".join(f"{n} (born {b}, e.g. {f})" for n, b, f in who)
            lines.append(f"Patient ID {pid!r} is used by {len(who)} different patients: {names}")
        raise PatientIdClash(
            "; ".join(lines) + ". Nothing was written. Export them separately, correct the "
            "sources, or use --on-id-clash separate (the second patient gets a new ID, the "
            "original kept in Other Patient IDs Sequence).", clashes)
    groups = _people([it for it in items if not it.get("PatientID")])
    counter = 0
    for _, members in groups:
        while True:
            counter += 1
            new = f"DBPAT{counter:04d}"
            if new not in used:
                break
        used.add(new)
        for it in members:
            it.fix("PatientID", new, "Patient ID empty; generated, unique on this medium")
    _harmonize_names(items)


def _harmonize_names(items: Sequence[Item]) -> None:
    """One spelling of Patient's Name per Patient ID (one PATIENT record per ID): names that
    differ only in case, spaces or trailing ``^`` take the first file's spelling."""
    first: dict[str, str] = {}
    for it in items:
        pid = it.get("PatientID") or ""
        name = it.get("PatientName") or ""
        known = first.setdefault(pid, name)
        if name != known and norm_name(name) == norm_name(known):
            it.fix("PatientName", known, "Patient's Name spelled differently in files of the "
                   "same patient; one spelling so the medium has one PATIENT record")


def _unique(base: str, used: set[str]) -> str:
    candidate, n = base, 2
    while candidate in used:
        n += 1
        candidate = f"{base.rsplit('_', 1)[0]}_{n}"
    used.add(candidate)
    return candidate


_DATE_SOURCES = (("SeriesDate", "SeriesTime", "Series Date"),
                 ("AcquisitionDate", "AcquisitionTime", "Acquisition Date"),
                 ("ContentDate", "ContentTime", "Content Date"))
_DATE_RE = re.compile(r"^\d{8}$")


def _date_time_from(members: Iterable[Item]) -> tuple[str, str | None, str] | None:
    """The earliest (date, time) from the first date source that has any, or None."""
    members = list(members)
    for date_kw, time_kw, label in _DATE_SOURCES:
        found = []
        for it in members:
            d = it.get(date_kw)
            if d and _DATE_RE.match(d):
                found.append((d, it.get(time_kw) or ""))
        if not found and date_kw == "AcquisitionDate":
            for it in members:
                dt = it.get("AcquisitionDateTime") or ""
                if len(dt) >= 8 and _DATE_RE.match(dt[:8]):
                    found.append((dt[:8], dt[8:14]))
        if found:
            d, t = min(found)
            return d, (t or None), label
    return None


_ACR_DATE = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})$")
_ACR_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?$")


def _acr_nema_date(value: str | None) -> str | None:
    """``YYYYMMDD`` for an old ACR-NEMA ``YYYY.MM.DD`` date (invalid DA today), else None."""
    m = _ACR_DATE.match(value or "")
    return "".join(m.groups()) if m else None


def _acr_nema_time(value: str | None) -> str | None:
    """``HHMMSS[.F]`` for an old ``HH:MM[:SS[.F]]`` time (invalid TM today), else None."""
    m = _ACR_TIME.match(value or "")
    if not m:
        return None
    hh, mm, ss, frac = m.groups()
    return hh + mm + (ss or "") + (frac or "")


def _earliest_time(members: Iterable[Item]) -> str | None:
    for _date_kw, time_kw, _label in _DATE_SOURCES:
        times = sorted(t for it in members if (t := it.get(time_kw)))
        if times:
            return times[0]
    return None


def fix_studies(studies: dict[str, list[Item]], study_date: str | None) -> None:
    """Study Date/Time and Study ID for every study (UID → its instances)."""
    missing: list[tuple[str, str, str]] = []
    used_ids = {sid for members in studies.values() for it in members
                if (sid := it.get("StudyID"))}
    counter = 0
    for uid, members in studies.items():
        date = next((d for it in members if (d := it.get("StudyDate"))), None)
        time = next((t for it in members if (t := it.get("StudyTime"))), None)
        legacy_date, legacy_time = _acr_nema_date(date), _acr_nema_time(time)
        if legacy_date:
            date = legacy_date
            why = "Study Date in the old ACR-NEMA form YYYY.MM.DD; written as YYYYMMDD"
        elif date:
            why = "Study Date missing; taken from another instance of the study"
        else:
            derived = _date_time_from(members)
            if derived is not None:
                date, dtime, label = derived
                why = f"Study Date missing; taken from the {label}"
                if not time and dtime:
                    time = dtime
            elif study_date:
                date, why = study_date, "Study Date missing everywhere; given with --study-date"
            else:
                first = members[0]
                missing.append((uid, first.get("PatientName") or "(no name)", first.label))
                continue
        for it in members:
            it.fix("StudyDate", date, why)
        if legacy_time:
            time, twhy = legacy_time, "Study Time in the old ACR-NEMA form HH:MM:SS; written " \
                                      "as HHMMSS"
        elif time:
            twhy = "Study Time missing; taken from another instance of the study or the " \
                   "Series/Acquisition/Content time"
        else:
            time = _earliest_time(members)
            twhy = "Study Time missing; taken from the Series/Acquisition/Content time"
            if not time:
                time, twhy = "000000", "Study Time missing everywhere; 000000 means unknown"
        for it in members:
            it.fix("StudyTime", time, twhy)
        sid = next((s for it in members if (s := it.get("StudyID"))), None)
        swhy = "Study ID missing; taken from another instance of the study"
        if not sid:
            while True:
                counter += 1
                sid = f"DB{counter}"
                if sid not in used_ids:
                    break
            used_ids.add(sid)
            swhy = "Study ID missing; generated, unique on this medium"
        for it in members:
            it.fix("StudyID", sid, swhy)
    if missing:
        lines = "; ".join(f"study {u} of {n} (e.g. {f})" for u, n, f in missing)
        raise MissingStudyDate(
            f"{len(missing)} stud{'y has' if len(missing) == 1 else 'ies have'} no Study, "
            f"Series, Acquisition or Content Date: {lines}. Nothing was written; give the date "
            "with --study-date YYYYMMDD (a date is never invented from the clock).", missing)


def _as_int(text: str | None) -> int | None:
    try:
        return int(str(text).strip()) if text is not None else None
    except ValueError:
        return None


def fix_numbers(series_of_study: dict[str, list[Item]], level_kw: str, reason_kind: str) -> None:
    """Series Number (per series of a study) or Instance Number (per instance of a series).

    ``series_of_study`` maps a group key (series UID when numbering series; a single key when
    numbering instances) → its items. For Series Number all items of a group share the value.
    """
    if level_kw == "SeriesNumber":
        values = {key: next((v for it in members if (v := it.get(level_kw))), None)
                  for key, members in series_of_study.items()}
        taken = [n for v in values.values() if (n := _as_int(v)) is not None]
        nxt = max(taken, default=0) + 1
        for key in sorted(series_of_study, key=lambda k: _series_sort_key(series_of_study[k], k)):
            members = series_of_study[key]
            value = values[key]
            why = f"{reason_kind} missing; taken from another instance of the series"
            if value is None:
                value, nxt = str(nxt), nxt + 1
                why = f"{reason_kind} missing; next free number in the study"
            for it in members:
                it.fix(level_kw, value, why)
        return
    for members in series_of_study.values():
        if all(it.get(level_kw) is not None for it in members):
            continue  # nothing to number
        taken = [n for it in members if (n := _as_int(it.get(level_kw))) is not None]
        nxt = max(taken, default=0) + 1
        for it in sorted(members, key=_instance_sort_key):
            if it.get(level_kw) is None:
                it.fix(level_kw, str(nxt), f"{reason_kind} missing; next free number in the series")
                nxt += 1


def _series_sort_key(members: list[Item], uid: str) -> tuple[str, str, str]:
    first = members[0]
    return (first.get("SeriesDate") or "", first.get("SeriesTime") or "", uid)


def _instance_sort_key(it: Item) -> tuple[str, str, str]:
    return (it.get("ContentDate") or it.get("AcquisitionDate") or "",
            it.get("ContentTime") or it.get("AcquisitionTime") or "",
            it.get("SOPInstanceUID") or "")
