"""Acceptance: every file pydicom and pydicom-data ship, each on its own medium, exported to
STD-GEN-CD and STD-GEN-DVD-JPEG through the real engine, then judged independently.

Each export gets its own source folder holding one file, as shipped: DICOM files, DICOMDIRs,
READMEs, JSON, dumps, an ICC profile, a .gz. Two worker processes export (``run_export`` with
``skip_unexportable=True``, in-process) and judge what needs pydicom. The main process runs the
external validators on a thread pool while the workers go on. Every (file, profile) is judged on
its own:

- ``refusal``: every source instance (by the SOP Instance UID pydicom reads) is on the medium or
  named in the report (``skipped``, ``problems``, or the refusing error) with a TRUE reason: the
  reason is classified (unreadable, UID, undecodable pixels, damaged, Type 1 key, profile) and the
  fact it claims is checked on the source. A refusal of a file pydicom reads, with its UIDs,
  decodable pixel data and every Type 1 record key present or derivable, is FALSE. A crash (an
  exception other than ExportError) is a failure too, also for non-DICOM files;
- ``export``: an export that returns but says it failed (``report.ok`` False);
- ``dcmdump``: dcmdump reads every exported file and the DICOMDIR (exit 0, no "E:" line);
- ``dciodvfy``: no "Error" in an exported file that dciodvfy does not also print for its source;
- ``dicomdir-dciodvfy``: no "Error" in the DICOMDIR;
- ``fileset``: pydicom's FileSet resolves every record to an existing file with the recorded
  SOP Instance/Class UID and transfer syntax, and every exported file is referenced;
- ``pixels``: decoded values equal the source's (np.array_equal, same dtype kind and size)
  whenever the source decodes and its transfer syntax is lossless; copies of lossy sources are
  compared for shape only. Number of Frames unchanged; a native copy's Pixel Data has the length
  PS3.5 requires (1-bit packed) unless the source's own length was already wrong;
- ``lossy-decompress``: copies of lossy sources must still equal pydicom's decode of the source
  exactly (decompression is deterministic), reported apart from ``pixels``;
- ``record-keys``: every Type 1 key of every record (``required_keys(level, profile)``) is
  present and equal to the exported file's value (equality waived for the keys the report lists
  as changed for that file or as conflicting).

The whole run must stay well under 8 minutes on 2 cores (``test_corpus_wall_time``).
``benchmarks/corpus_all_profiles.py`` runs the same judging for every profile.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import shutil
import subprocess
import time
import traceback
import warnings
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from tests.conftest import require_tool

PROFILES_UNDER_TEST = ("STD-GEN-CD", "STD-GEN-DVD-JPEG")
CATEGORIES = ("refusal", "export", "dcmdump", "dciodvfy", "dicomdir-dciodvfy", "fileset",
              "pixels", "lossy-decompress", "record-keys")
BUDGET_SECONDS = 8 * 60
WORKERS = 2
TOOL_TIMEOUT = 120

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
UID_KEYWORDS = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")
NATIVE_TS = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                       "1.2.840.10008.1.2.1.99"})
# Lossy whatever the dataset says: JPEG processes 1-14 other than the lossless ones, JPEG-LS
# near-lossless, video, JPEG XL recompressed JPEG.
ALWAYS_LOSSY_TS = frozenset(
    {f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 52, 53, 54, 55, 56, 59, 60, 61, 62, 63, 64,
                                          81, 111)}
    | {f"1.2.840.10008.1.2.4.{n}" for n in range(100, 109)}
    | {f"1.2.840.10008.1.2.4.{n}.1" for n in range(100, 107)})
# Lossy or lossless: lossy when Lossy Image Compression says so (absent or "00": lossless).
MAYBE_LOSSY_TS = frozenset({"1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.93",
                            "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.4.112"})
# Type 1 record keys the exporter may fill in the copy (app.core.export.identity, fixes.py).
DERIVABLE_KEYS = frozenset({"PatientID", "StudyDate", "StudyTime", "StudyID", "SeriesNumber",
                            "InstanceNumber"})
FUNCTIONAL_GROUP_KEYS = {"ImagePositionPatient": "PlanePositionSequence",
                         "ImageOrientationPatient": "PlaneOrientationSequence",
                         "PixelSpacing": "PixelMeasuresSequence"}
YBR_422 = ("YBR_FULL_422", "YBR_PARTIAL_422")


# ------------------------------------------------------------------------------ the corpus


def corpus_files() -> list[Path]:
    """Every file ``get_testdata_files("**/*")`` lists (directories skipped), largest first."""
    from pydicom.data import get_testdata_files

    paths = {Path(p) for p in get_testdata_files("**/*")}
    return sorted((p for p in paths if p.is_file()), key=lambda p: (-p.stat().st_size, str(p)))


def display_name(path: Path) -> str:
    """``pydicom:test_files/CT_small.dcm`` or ``pydicom-data:data/liver.dcm``."""
    parts = path.parts
    for anchor, label in (("data_store", "pydicom-data"), ("pydicom", "pydicom")):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return f"{label}:{'/'.join(parts[i + 1:])}"
    return str(path)


# ------------------------------------------------------------------------- source facts


@dataclass
class Facts:
    """What the source really is, found with pydicom alone (the judge of every refusal)."""

    name: str
    path: str
    read_error: str | None = None  # dcmread(force=True) raised, or read nothing
    elements_error: str | None = None  # read, but converting the elements raised
    sop_uid: str | None = None
    uid_problems: dict[str, str] = field(default_factory=dict)  # keyword -> "missing"/"invalid"
    transfer_syntax: str | None = None
    pixel_keyword: str | None = None
    decode_error: str | None = None
    lossy: bool = False
    native_length_ok: bool | None = None  # native sources only
    truncated: str | None = None
    type1_absent: dict[str, list[str]] = field(default_factory=dict)  # profile -> keywords
    profile_reason: dict[str, str] = field(default_factory=dict)  # profile -> why it cannot hold

    @property
    def unusable(self) -> bool:
        return bool(self.read_error or self.elements_error or self.uid_problems
                    or self.decode_error or self.truncated)

    def summary(self, profile: str) -> str:
        if self.read_error:
            return f"pydicom cannot read it ({self.read_error})"
        bits = ["pydicom reads it" + (f" (but its elements fail: {self.elements_error})"
                                      if self.elements_error else "")]
        bits.append("UIDs " + (", ".join(f"{k} {v}" for k, v in self.uid_problems.items())
                               if self.uid_problems else "present and valid"))
        if self.pixel_keyword:
            bits.append(f"pixel_array fails ({self.decode_error})" if self.decode_error
                        else "pixel_array decodes")
        if self.truncated:
            bits.append(f"truncated: {self.truncated}")
        absent = self.type1_absent.get(profile) or []
        bits.append(f"Type 1 keys absent: {', '.join(absent)}" if absent
                    else "every Type 1 record key present or derivable")
        if profile in self.profile_reason:
            bits.append(f"profile: {self.profile_reason[profile]}")
        return "; ".join(bits)


def _short(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]


def _safe_get(ds: Any, keyword: str) -> Any:
    try:
        return ds.get(keyword)
    except Exception:  # noqa: BLE001 - a hostile element: treat as absent
        return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip(" \0")
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(_text(v) for v in value).strip("\\ ")
    return str(value).strip(" \0")


def transfer_syntax_of(ds: Any) -> str | None:
    meta = getattr(ds, "file_meta", None)
    ts = _text(_safe_get(meta, "TransferSyntaxUID")) if meta is not None else ""
    if ts:
        return ts
    enc = getattr(ds, "original_encoding", None)
    if enc and None not in enc:
        implicit, little = enc
        if implicit:
            return "1.2.840.10008.1.2"
        return "1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2"
    return None


def is_lossy(ts: str | None, ds: Any) -> bool:
    if ts in ALWAYS_LOSSY_TS:
        return True
    if ts in MAYBE_LOSSY_TS:
        return _text(_safe_get(ds, "LossyImageCompression")) not in ("", "00")
    return False


def required_length(ds: Any, bits: int | None = None) -> int | None:
    """PS3.5 native Pixel Data length (1-bit packed, padded to even); None when undeterminable."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(bits if bits is not None else ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel") or 1)
        frames = int(ds.get("NumberOfFrames") or 1)
    except Exception:  # noqa: BLE001
        return None
    if _text(ds.get("PhotometricInterpretation")) in YBR_422 and samples == 3:
        samples = 2
    n = rows * cols * samples * max(frames, 1)
    length = (n * bits + 7) // 8
    return length + length % 2


def file_value(ds: Any, keyword: str) -> Any:
    """A record key's value in a file: top level, else where the record writer finds it."""
    value = _safe_get(ds, keyword)
    if not is_empty(value):
        return value
    group = FUNCTIONAL_GROUP_KEYS.get(keyword)
    if group is not None:
        shared = _safe_get(ds, "SharedFunctionalGroupsSequence")
        if shared:
            inner = _safe_get(shared[0], group)
            if inner and keyword in inner[0]:
                return inner[0][keyword].value
    if keyword == "VerificationDateTime":
        times = [_text(i.get("VerificationDateTime"))
                 for i in _safe_get(ds, "VerifyingObserverSequence") or ()]
        times = [t for t in times if t]
        return max(times) if times else None
    return value


def is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list) or type(value).__name__ in ("MultiValue", "Sequence"):
        return len(value) == 0 or (type(value).__name__ != "Sequence" and _text(value) == "")
    return _text(value) == ""


def type1_keys(record_type: str, profile: Any) -> dict[str, list[str]]:
    """level -> Type 1 keywords of that level's record (PATIENT/STUDY/SERIES unless a root
    record type)."""
    from app.core.dicomdir.record_keys import ROOT_RECORD_TYPES
    from app.core.dicomdir.records import required_keys

    levels = [record_type] if record_type in ROOT_RECORD_TYPES else \
        ["PATIENT", "STUDY", "SERIES", record_type]
    out: dict[str, list[str]] = {}
    for level in levels:
        try:
            keys = required_keys(level, profile)
        except ValueError:
            continue
        out[level] = [kw for kw, typ in keys if typ == "1"]
    return out


def uid_valid(value: str) -> bool:
    """PS3.5 9.1 syntax (pydicom) and an ISO 8824 root: first arc 0, 1 or 2, and below 40
    under 0 and 1 (what dciodvfy reports as "Illegal root for UID")."""
    if not pydicom.uid.UID(value).is_valid:
        return False
    arcs = value.split(".")
    if arcs[0] not in ("0", "1", "2"):
        return False
    return arcs[0] == "2" or len(arcs) < 2 or int(arcs[1]) < 40


def header_truncation(ds: Any, size: int) -> str | None:
    """A top-level element whose value the file cuts short (pydicom reads such files quietly)."""
    for tag, raw in list(ds._dict.items()):
        length = getattr(raw, "length", None)
        value = getattr(raw, "value", None)
        if length in (None, 0xFFFFFFFF) or not isinstance(value, bytes):
            continue
        if len(value) < length:
            return f"element {tag} declares {length} bytes, the file holds {len(value)}"
        tell = getattr(raw, "value_tell", None)
        if tell is not None and tell + length > size:
            return f"element {tag} ends at byte {tell + length}, past the end ({size})"
    return None


def source_facts(path: Path, name: str, profiles: Iterable[str]) -> tuple[Facts, Any, Any]:
    """Facts about the source, its dataset (None when unreadable) and its decoded pixels."""
    from app.core.dicomdir.profiles import VIDEO_TRANSFER_SYNTAXES, get_profile
    from app.core.dicomdir.records import record_type_for

    facts = Facts(name=name, path=str(path))
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # noqa: BLE001 - the fact we want
        facts.read_error = _short(exc)
        return facts, None, None
    if len(ds) == 0:
        facts.read_error = "no data elements"
        return facts, None, None
    facts.truncated = header_truncation(ds, path.stat().st_size)
    try:
        for _elem in ds.iterall():
            pass
    except Exception as exc:  # noqa: BLE001
        facts.elements_error = _short(exc)
    for kw in UID_KEYWORDS:
        value = _text(_safe_get(ds, kw))
        if not value:
            facts.uid_problems[kw] = "missing"
        elif not uid_valid(value):
            facts.uid_problems[kw] = f"invalid ({value!r})"
    facts.sop_uid = _text(_safe_get(ds, "SOPInstanceUID")) or None
    facts.transfer_syntax = transfer_syntax_of(ds)
    facts.lossy = is_lossy(facts.transfer_syntax, ds)
    arr = None
    facts.pixel_keyword = next((kw for kw in PIXEL_KEYWORDS if kw in ds), None)
    if facts.pixel_keyword:
        meta = getattr(ds, "file_meta", None)
        if facts.transfer_syntax and (meta is None or "TransferSyntaxUID" not in meta):
            # no File Meta: decode with the encoding pydicom read the bytes in
            from pydicom.dataset import FileMetaDataset

            if meta is None:
                ds.file_meta = meta = FileMetaDataset()
            meta.TransferSyntaxUID = facts.transfer_syntax
        try:
            arr = ds.pixel_array
        except Exception as exc:  # noqa: BLE001
            facts.decode_error = _short(exc)
        if facts.transfer_syntax in NATIVE_TS:
            need = required_length(ds, 32 if facts.pixel_keyword == "FloatPixelData" else
                                   64 if facts.pixel_keyword == "DoubleFloatPixelData" else None)
            try:
                got = len(ds[facts.pixel_keyword].value or b"")
            except Exception:  # noqa: BLE001
                got = None
            facts.native_length_ok = need is not None and got is not None and \
                need <= got <= need + 1
            if need is not None and got is not None and got < need and not facts.truncated:
                facts.truncated = f"{facts.pixel_keyword} {got} bytes, the image needs {need}"
    record_type = record_type_for(_text(_safe_get(ds, "SOPClassUID")) or None)
    for pname in profiles:
        profile = get_profile(pname)
        absent = []
        for _level, kws in type1_keys(record_type, profile).items():
            for kw in kws:
                if kw in DERIVABLE_KEYS or kw in absent:
                    continue
                if is_empty(file_value(ds, kw)):
                    absent.append(kw)
        if absent:
            facts.type1_absent[pname] = absent
        why = None
        try:
            why = profile.refusal(ds)
        except Exception:  # noqa: BLE001
            why = None
        ts = facts.transfer_syntax or ""
        if why is None and not profile.accepts_transfer_syntax(ts):
            if ts in VIDEO_TRANSFER_SYNTAXES:
                why = f"video {ts} not allowed"
            elif profile.fallback_transfer_syntax != "1.2.840.10008.1.2.1":
                from app.core.export.transcode import can_encode

                if not can_encode(profile.fallback_transfer_syntax):
                    why = f"{profile.fallback_transfer_syntax} cannot be encoded here"
        if why:
            facts.profile_reason[pname] = why
    return facts, ds, arr


# --------------------------------------------------------------------- refusal judging

# category -> what the reason text looks like
REASON_PATTERNS: dict[str, re.Pattern[str]] = {
    "unreadable": re.compile(r"no readable dicom|no dicom data|not a (readable )?dicom|"
                             r"cannot read|unreadable|not dicom", re.I),
    "uid": re.compile(r"uid|identifier|cannot be filed", re.I),
    "decode": re.compile(r"decod|cannot be converted|convert", re.I),
    "damaged": re.compile(r"damaged|truncat|cut short|ends inside|no end", re.I),
    "type1": re.compile(r"type 1", re.I),
    "profile": re.compile(r"not allowed by|exceed|cannot hold|cannot be encoded here|video", re.I),
}


UID_PHRASES = {"SOP Instance UID": "SOPInstanceUID", "SOP Class UID": "SOPClassUID",
               "Study Instance UID": "StudyInstanceUID",
               "Series Instance UID": "SeriesInstanceUID"}


def _named_keywords(reason: str) -> list[str]:
    from pydicom.datadict import tag_for_keyword

    for phrase, kw in UID_PHRASES.items():
        reason = re.sub(phrase, kw, reason, flags=re.I)
    return [w for w in re.findall(r"\b[A-Z][A-Za-z]+\b", reason) if tag_for_keyword(w)]


def judge_reason(reason: str, facts: Facts, profile: str) -> tuple[bool, list[str]]:
    """(true?, categories) of one refusal reason against the source's facts."""
    cats = [c for c, pat in REASON_PATTERNS.items() if pat.search(reason)]
    named = _named_keywords(reason)
    absent = facts.type1_absent.get(profile) or []

    def holds(cat: str) -> bool:
        if cat == "unreadable":
            return bool(facts.read_error or facts.elements_error or facts.truncated
                        or {"SOPInstanceUID", "SOPClassUID"} & set(facts.uid_problems))
        if cat == "uid":
            uids = [k for k in named if k in UID_KEYWORDS]
            if uids:
                return all(k in facts.uid_problems for k in uids)
            return bool(facts.uid_problems)
        if cat == "decode":
            return bool(facts.decode_error or facts.read_error or facts.elements_error)
        if cat == "damaged":
            return bool(facts.truncated or facts.decode_error or facts.read_error
                        or facts.elements_error)
        if cat == "type1":
            keys = [k for k in named if k not in UID_KEYWORDS]
            if keys:
                return all(k in absent for k in keys)
            return bool(absent)
        if cat == "profile":
            return profile in facts.profile_reason
        return False

    if cats:
        return any(holds(c) for c in cats), cats
    return facts.unusable or bool(absent) or profile in facts.profile_reason, cats


# ------------------------------------------------------------------------ one source file


@dataclass
class Outcome:
    """One (source file, profile) export and what the in-process judges found."""

    name: str
    profile: str
    status: str  # "exported" | "refused" | "failed" | "crashed"
    dest: str | None = None
    dicomdir: str | None = None
    exported: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (category, message)
    seconds: float = 0.0
    checked: dict[str, int] = field(default_factory=dict)  # how many comparisons ran, by kind

    def count(self, kind: str) -> None:
        self.checked[kind] = self.checked.get(kind, 0) + 1

    def add(self, category: str, message: str) -> None:
        assert category in CATEGORIES, category
        self.problems.append((category, " ".join(message.split())))


def _mentions(line: str, src_name: str, src_folder: Path) -> bool:
    return src_name in line or str(src_folder) in line


def _export(src_dir: Path, dest: Path, report: Path, profile: str) -> Any:
    from app.core.export.engine import run_export
    from app.core.export.options import ExportOptions

    return run_export(ExportOptions(sources=[src_dir], dest=dest, profile=profile,
                                    study_date="20200101", report=report,
                                    skip_unexportable=True))


def export_and_judge(facts: Facts, ds: Any, arr: Any, src_dir: Path, work: Path,
                     profile: str) -> Outcome:
    from app.core.errors import ExportError

    src_name = Path(facts.path).name
    out = Outcome(facts.name, profile, "exported")
    dest = work / "out" / profile / src_dir.name
    t0 = time.monotonic()
    report = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            report = _export(src_dir, dest, work / "reports" / profile / f"{src_dir.name}.json",
                             profile)
        except ExportError as exc:
            out.status = "refused"
            out.reasons.append(" ".join(str(exc).split()))
        except Exception as exc:  # noqa: BLE001 - a crash, named with its traceback's end
            out.status = "crashed"
            tb = traceback.format_exception(exc)[-3:]
            out.reasons.append(_short(exc))
            out.add("refusal", f"export crashed (not an ExportError): {_short(exc)} "
                    f"at {' '.join(''.join(tb).split())[:300]}")
    out.seconds = time.monotonic() - t0
    if out.status == "refused" and report is None:
        out.reasons.extend(source_problems(src_dir, src_name))
    if report is not None:
        out.reasons.extend(f"skipped: {why}" for f, why in report.skipped)
        if not report.ok:
            out.status = "failed"
            fails = "; ".join(report.verification.failures[:3])
            out.add("export", f"export returned ok=False: {report.error}"
                    + (f" (verification: {fails})" if fails else ""))
        else:
            out.dest = str(dest)
            out.dicomdir = str(dest / "DICOMDIR")
            out.exported = sorted(str(p) for p in dest.rglob("*") if p.is_file()
                                  and p.name not in ("DICOMDIR", "README.TXT"))
            if not out.exported:
                out.status = "refused"
        out.reasons.extend(f"problem: {p}" for p in report.problems
                           if _mentions(p, src_name, src_dir))
    copies = judge_presence(out, facts, report)
    if report is not None and report.ok:
        judge_fileset(out, dest, profile, report, copies)
        for path, copy in copies.items():
            judge_pixels(out, facts, ds, arr, path, copy)
    return out


def source_problems(src_dir: Path, src_name: str) -> list[str]:
    """What the reader said about the file, when the export's error does not say it ("nothing
    to export: the sources hold no readable DICOM instance"): its real claim, to be judged."""
    try:
        from app.core.export.sources import read_sources
        from app.core.medium.reader import open_medium

        _sources, problems = read_sources([open_medium(src_dir)], None)
    except Exception:  # noqa: BLE001 - best effort; the error message is judged anyway
        return []
    return [f"source problem: {p}" for p in map(str, problems) if src_name in p]


def _uid_replaced(report: Any, old: str, new_uids: set[str]) -> bool:
    """The report lists the source's (invalid) SOP Instance UID replaced by the copy's."""
    if report is None:
        return False
    return any(c.attribute == "SOPInstanceUID" and _text(c.old) == old and _text(c.new) in new_uids
               for c in report.changes)


def judge_presence(out: Outcome, facts: Facts, report: Any = None) -> dict[str, Any]:
    """On the medium or refused with a true reason. Returns the exported datasets by path.

    A copy under another SOP Instance UID counts as the instance only when the source's UID is
    really invalid and the report lists that very replacement (the original is then kept in
    the copy's Original Attributes Sequence, the exporter's business)."""
    copies: dict[str, Any] = {}
    for p in out.exported:
        try:
            copies[p] = pydicom.dcmread(p)
        except Exception as exc:  # noqa: BLE001
            out.add("fileset", f"{Path(p).name}: pydicom cannot read the exported file "
                    f"({_short(exc)})")
    uids = {_text(_safe_get(c, "SOPInstanceUID")) for c in copies.values()}
    if facts.sop_uid and facts.sop_uid in uids:
        if uids - {facts.sop_uid}:
            out.add("refusal", f"the medium holds other instances too: {sorted(uids)}")
        return copies
    if copies and facts.sop_uid:
        invalid = "SOPInstanceUID" in facts.uid_problems
        listed = _uid_replaced(report, facts.sop_uid, uids)
        if invalid and listed:
            return copies
        if listed:
            out.add("refusal", f"SOP Instance UID {facts.sop_uid} replaced by {sorted(uids)} "
                    "although it is valid")
        else:
            out.add("refusal", f"exported with another SOP Instance UID {sorted(uids)} (source "
                    f"{facts.sop_uid}{', invalid' if invalid else ''}); the report lists no "
                    "such replacement")
        return copies
    if copies:
        return copies  # no UID in the source: nothing to match; the copy is judged anyway
    if out.status in ("crashed", "failed") and not out.reasons:
        return copies  # reported as the crash / the failed export itself
    if not out.reasons:
        out.add("refusal", "not on the medium and not named in the report (silently dropped)"
                if facts.sop_uid else "neither exported nor refused with a reason")
        return copies
    verdicts = [(r, *judge_reason(r, facts, out.profile)) for r in out.reasons]
    if facts.sop_uid is None and not facts.read_error:
        # not an instance (no SOP Instance UID): any stated reason is acceptable
        return copies
    if not any(ok for _r, ok, _c in verdicts):
        shown = " | ".join(f"{r[:240]} [{'/'.join(c) or 'unclassified'}]" for r, _ok, c in verdicts)
        out.add("refusal", f"FALSE refusal: {shown} -- although {facts.summary(out.profile)}")
    return copies


def _canon(value: Any) -> Any:
    if value is None:
        return ""
    if type(value).__name__ == "Sequence":
        return tuple(tuple(sorted((int(e.tag), _canon(e.value)) for e in item)) for item in value)
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return tuple(_canon(v) for v in value)
    if isinstance(value, bytes):
        return value.rstrip(b" \0")
    return str(value).strip(" \0")


def _exempt_keys(report: Any, rel: str) -> set[str]:
    keys = {c.attribute for c in report.changes if c.file == rel or c.file.endswith(rel)}
    for line in list(report.warnings) + list(report.problems):
        if re.search(r"conflict|disagree|differ", line, re.I):
            keys.update(_named_keywords(line))
    return keys


def judge_fileset(out: Outcome, dest: Path, profile_name: str, report: Any,
                  copies: dict[str, Any]) -> None:
    from pydicom.fileset import FileSet

    from app.core.dicomdir.profiles import get_profile
    from app.core.dicomdir.records import required_keys

    profile = get_profile(profile_name)
    try:
        fs = FileSet(pydicom.dcmread(dest / "DICOMDIR"))
    except Exception as exc:  # noqa: BLE001
        out.add("fileset", f"pydicom FileSet cannot load the DICOMDIR: {_short(exc)}")
        return
    referenced: set[str] = set()
    for inst in fs:
        try:
            path = Path(inst.path)
        except Exception as exc:  # noqa: BLE001
            out.add("fileset", f"a record's File ID does not resolve: {_short(exc)}")
            continue
        rel = path.relative_to(dest).as_posix() if path.is_relative_to(dest) else str(path)
        if not path.is_file():
            out.add("fileset", f"record -> {rel}: no such file")
            continue
        referenced.add(str(path))
        out.count("fileset-records")
        ds = copies.get(str(path))
        if ds is None:
            try:
                ds = pydicom.dcmread(path)
            except Exception as exc:  # noqa: BLE001
                out.add("fileset", f"{rel}: referenced file unreadable ({_short(exc)})")
                continue
        leaf = inst.node._record
        for rec_kw, value in (("ReferencedSOPInstanceUIDInFile", _safe_get(ds, "SOPInstanceUID")),
                              ("ReferencedSOPClassUIDInFile", _safe_get(ds, "SOPClassUID")),
                              ("ReferencedTransferSyntaxUIDInFile",
                               ds.file_meta.get("TransferSyntaxUID"))):
            if _text(leaf.get(rec_kw)) != _text(value):
                out.add("fileset", f"{rel}: record {rec_kw} {_text(leaf.get(rec_kw))!r}, file "
                        f"{_text(value)!r}")
        exempt = _exempt_keys(report, rel)
        nodes = [inst.node] + [n for n in inst.node.ancestors if not n.is_root]
        for node in nodes:
            record = node._record
            level = node.record_type
            try:
                keys = required_keys(level, profile)
            except ValueError:
                continue  # a record type the table does not know (PRIVATE): nothing to require
            for kw, typ in keys:
                if typ != "1":
                    continue
                rec_value = record[kw].value if kw in record else None
                if is_empty(rec_value) and not (type(rec_value).__name__ == "Sequence"
                                                and kw == "ContentSequence"):
                    out.add("record-keys", f"{rel}: {level} record lacks Type 1 key {kw}")
                    continue
                if kw in exempt:
                    continue
                out.count("record-keys")
                if _canon(rec_value) != _canon(file_value(ds, kw)):
                    out.add("record-keys", f"{rel}: {level} record {kw} = "
                            f"{_text(rec_value)[:60]!r}, file has {_text(file_value(ds, kw))[:60]!r}")
    for p in out.exported:
        if p not in referenced:
            out.add("fileset", f"{Path(p).relative_to(dest).as_posix()}: exported but no record "
                    "references it")


def _diff_summary(a: np.ndarray, b: np.ndarray) -> str:
    bad = a != b
    n = int(np.count_nonzero(bad))
    try:
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        mx = float(d.max())
    except Exception:  # noqa: BLE001
        mx = float("nan")
    return f"{n} of {a.size} values differ (max |diff| {mx:g})"


def judge_pixels(out: Outcome, facts: Facts, src: Any, arr: Any, path: str, copy: Any) -> None:
    name = Path(path).name
    kw = facts.pixel_keyword
    if src is None or kw is None:
        return
    copy_ts = _text(copy.file_meta.get("TransferSyntaxUID"))
    if _text(src.get("NumberOfFrames")) != _text(copy.get("NumberOfFrames")):
        out.add("pixels", f"{name}: NumberOfFrames {_text(src.get('NumberOfFrames'))!r} became "
                f"{_text(copy.get('NumberOfFrames'))!r}")
    if kw not in copy:
        out.add("pixels", f"{name}: {kw} missing in the copy")
        return
    if copy_ts in NATIVE_TS:
        need = required_length(copy, 32 if kw == "FloatPixelData" else
                               64 if kw == "DoubleFloatPixelData" else None)
        got = len(copy[kw].value or b"")
        source_native_bad = facts.transfer_syntax in NATIVE_TS and not facts.native_length_ok
        if need is not None and got != need and not source_native_bad:
            bits = _text(copy.get("BitsAllocated"))
            src_len = len(src[kw].value or b"") if kw in src else None
            out.add("pixels", f"{name}: {kw} length {got}, PS3.5 requires {need} (Bits "
                    f"Allocated {bits}; source {facts.transfer_syntax}, {src_len} bytes)")
    if arr is None:
        out.count("pixels-source-undecodable")
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got_arr = copy.pixel_array
    except Exception as exc:  # noqa: BLE001
        out.add("pixels", f"{name}: the copy does not decode although the source does "
                f"({_short(exc)})")
        return
    how = "kept as is" if copy_ts == facts.transfer_syntax else f"{facts.transfer_syntax} -> {copy_ts}"
    if got_arr.shape != arr.shape:
        out.add("pixels", f"{name}: decoded shape {got_arr.shape}, source {arr.shape} ({how})")
        return
    if facts.lossy:
        out.count("pixels-shape")
        out.count("lossy-exact")
        if not np.array_equal(got_arr, arr):
            out.add("lossy-decompress", f"{name}: lossy source {facts.transfer_syntax} ({how}): "
                    f"{_diff_summary(got_arr, arr)} vs pydicom's decode of the source")
        return
    out.count("pixels-exact")
    if not np.array_equal(got_arr, arr):
        out.add("pixels", f"{name}: decoded values differ from the source's ({how}): "
                f"{_diff_summary(got_arr, arr)}")
    elif (got_arr.dtype.kind, got_arr.dtype.itemsize) != (arr.dtype.kind, arr.dtype.itemsize):
        out.add("pixels", f"{name}: decoded dtype {got_arr.dtype}, source {arr.dtype} ({how})")


def corpus_job(index: int, path: str, profiles: tuple[str, ...], work: str
               ) -> tuple[Facts, list[Outcome]]:
    """Worker: put one file on its own source folder, export it to each profile, judge."""
    src_path = Path(path)
    work_dir = Path(work)
    src_dir = work_dir / "src" / f"{index:03d}"
    src_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src_path, src_dir / src_path.name)
    name = display_name(src_path)
    outcomes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings about the sources: not judged
        facts, ds, arr = source_facts(src_path, name, profiles)
        for profile in profiles:
            try:
                outcomes.append(export_and_judge(facts, ds, arr, src_dir, work_dir, profile))
            except Exception as exc:  # noqa: BLE001 - a bug in the judges: report, go on
                o = Outcome(name, profile, "crashed")
                o.add("refusal", f"TEST HARNESS error while judging: {_short(exc)} "
                      f"{' '.join(''.join(traceback.format_exception(exc)[-3:]).split())[:300]}")
                outcomes.append(o)
    return facts, outcomes


# -------------------------------------------------------------- external validators (threads)


def _run(argv: list[str]) -> tuple[int, str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                           timeout=TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {TOOL_TIMEOUT} s"
    return p.returncode, p.stdout + p.stderr


# The File Meta repeats the dataset's SOP UIDs (PS3.10 7.1: they must be equal): an error about
# the value in one place is the same error as about the other.
META_TWINS = (("(0x0002,0x0003)", "(0x0008,0x0018)"), ("(0x0002,0x0002)", "(0x0008,0x0016)"),
              ("Media Storage SOP Instance UID", "SOP Instance UID"),
              ("Media Storage SOP Class UID", "SOP Class UID"))
DCIODVFY_UNREADABLE = ("Dicom dataset read failed", "Tag read failed")


def _normalise(line: str, path: str) -> str:
    line = " ".join(line.replace(path, "<file>").split())
    for meta, twin in META_TWINS:
        line = line.replace(meta, twin)
    return line


def dciodvfy_output(tool: str, path: str) -> tuple[set[str], bool]:
    """dciodvfy's "Error" lines for ``path``, normalised; and whether it could read the file."""
    _rc, text = _run([tool, path])
    errors = {_normalise(ln.strip(), path) for ln in text.splitlines()
              if ln.strip().startswith("Error")}
    return errors, not any(u in text for u in DCIODVFY_UNREADABLE)


def dciodvfy_errors(tool: str, path: str) -> set[str]:
    return dciodvfy_output(tool, path)[0]


def reference_copy(src: str, dest: Path) -> Path | None:
    """The source's own content as pydicom writes it plainly in Explicit VR Little Endian (no
    other change): dciodvfy's baseline for sources it cannot read itself (Deflated, no meta)."""
    from pydicom.dataset import FileMetaDataset

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(src, force=True)
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.3")
            meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "1.2.3")
            meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
            if transfer_syntax_of(ds) == "1.2.840.10008.1.2.2":
                return None  # pydicom does not swap the bytes of OW data: no fair baseline
            ds.file_meta = meta
            dest.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(dest, enforce_file_format=True)
    except Exception:  # noqa: BLE001 - no baseline beyond the source then
        return None
    return dest


def source_baseline(tool: str, facts: Facts, work: Path) -> set[str]:
    errors, readable = dciodvfy_output(tool, facts.path)
    if not readable:
        ref = reference_copy(facts.path, work / "reference" / f"{abs(hash(facts.path))}.dcm")
        if ref is not None:
            errors |= dciodvfy_errors(tool, str(ref))
    return errors


def dcmdump_problem(tool: str, path: str) -> str | None:
    rc, text = _run([tool, path])
    errors = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("E:")]
    if rc != 0 or errors:
        return f"exit {rc}: {' | '.join(errors[:3]) or text.strip()[-200:]}"
    return None


def validate(facts: Facts, outcomes: list[Outcome], tools: dict[str, str], work: Path) -> None:
    """External validators for the outcomes of one source (adds to their problems)."""
    source_errors: set[str] | None = None
    for o in outcomes:
        if not o.dicomdir:
            continue
        dest = Path(o.dest or "")
        for p in o.exported:
            rel = Path(p).relative_to(dest).as_posix()
            if "dcmdump" in tools:
                why = dcmdump_problem(tools["dcmdump"], p)
                if why:
                    o.add("dcmdump", f"{rel}: dcmdump fails: {why}")
            if "dciodvfy" not in tools:
                continue
            if source_errors is None:
                source_errors = source_baseline(tools["dciodvfy"], facts, work)
            o.count("dciodvfy")
            for err in sorted(dciodvfy_errors(tools["dciodvfy"], p) - source_errors):
                o.add("dciodvfy", f"{rel}: new dciodvfy error (not in the source): {err}")
        why = dcmdump_problem(tools["dcmdump"], o.dicomdir) if "dcmdump" in tools else None
        if why:
            o.add("dcmdump", f"DICOMDIR: dcmdump fails: {why}")
        if "dciodvfy" in tools:
            for err in sorted(dciodvfy_errors(tools["dciodvfy"], o.dicomdir)):
                o.add("dicomdir-dciodvfy", f"DICOMDIR: {err}")


# ---------------------------------------------------------------------------- the whole run


@dataclass
class CorpusRun:
    facts: list[Facts]
    outcomes: list[Outcome]
    seconds: float
    files: int

    def lines(self, profile: str, category: str) -> list[str]:
        return [f"{o.name} [{o.profile}] {cat}: {msg}" for o in self.outcomes
                if o.profile == profile for cat, msg in o.problems if cat == category]

    def checked(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for o in self.outcomes:
            row = out.setdefault(o.profile, {})
            for k, v in o.checked.items():
                row[k] = row.get(k, 0) + v
        return out

    def table(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for o in self.outcomes:
            row = out.setdefault(o.profile, {"exported": 0, "refused": 0, "failed": 0,
                                             "crashed": 0, "with problems": 0})
            row[o.status] = row.get(o.status, 0) + 1
            row["with problems"] += bool(o.problems)
        return out


def run_corpus(work: Path, profiles: tuple[str, ...], tools: dict[str, str],
               files: list[Path] | None = None, workers: int = WORKERS,
               progress: bool = False) -> CorpusRun:
    """Export every corpus file to every profile in ``workers`` processes; validate in threads."""
    files = corpus_files() if files is None else files
    t0 = time.monotonic()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in
                                      multiprocessing.get_all_start_methods() else "spawn")
    facts: list[Facts] = []
    outcomes: list[Outcome] = []
    checks: list[Future[None]] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool, \
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="validators") as threads:
        futures = {pool.submit(corpus_job, i, str(p), profiles, str(work)): p
                   for i, p in enumerate(files)}
        for n, fut in enumerate(as_completed(futures), 1):
            src = futures[fut]
            try:
                f, outs = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died: every profile fails
                f = Facts(display_name(src), str(src), read_error="(worker died)")
                outs = []
                for prof in profiles:
                    o = Outcome(f.name, prof, "crashed")
                    o.add("refusal", f"the worker process died on this file: {_short(exc)}")
                    outs.append(o)
            facts.append(f)
            outcomes.extend(outs)
            checks.append(threads.submit(validate, f, outs, tools, work))
            if progress and n % 25 == 0:
                print(f"  {n}/{len(files)} files, {time.monotonic() - t0:.0f} s", flush=True)
        for c in checks:
            c.result()
    outcomes.sort(key=lambda o: (o.name, o.profile))
    return CorpusRun(facts, outcomes, time.monotonic() - t0, len(files))


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> CorpusRun:
    tools = {"dciodvfy": require_tool("dciodvfy"), "dcmdump": require_tool("dcmdump")}
    work = tmp_path_factory.mktemp("corpus")
    run = run_corpus(work, PROFILES_UNDER_TEST, tools)
    summary = {"seconds": round(run.seconds, 1), "files": run.files, "table": run.table(),
               "outcomes": [asdict(o) for o in run.outcomes]}
    (work / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(f"\ncorpus: {run.files} files x {len(PROFILES_UNDER_TEST)} profiles in "
          f"{run.seconds:.1f} s; {json.dumps(run.table())}; comparisons {json.dumps(run.checked())};"
          f" details in {work / 'summary.json'}")
    return run


@pytest.mark.parametrize("category", CATEGORIES)
@pytest.mark.parametrize("profile", PROFILES_UNDER_TEST)
def test_corpus(corpus_run: CorpusRun, profile: str, category: str) -> None:
    lines = corpus_run.lines(profile, category)
    assert not lines, f"{len(lines)} problem(s):\n" + "\n".join(lines)


def test_corpus_covers_every_file(corpus_run: CorpusRun) -> None:
    assert corpus_run.files >= 200, corpus_run.files  # pydicom + pydicom-data: ~240 files
    for profile in PROFILES_UNDER_TEST:
        got = [o for o in corpus_run.outcomes if o.profile == profile]
        assert len(got) == corpus_run.files, profile
        assert sum(o.status == "exported" for o in got) >= corpus_run.files // 2, \
            corpus_run.table()


def test_corpus_wall_time(corpus_run: CorpusRun) -> None:
    assert corpus_run.seconds < BUDGET_SECONDS, \
        f"the corpus run took {corpus_run.seconds:.0f} s (budget {BUDGET_SECONDS} s on 2 cores)"
