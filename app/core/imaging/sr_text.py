"""Structured reports (SR, Key Object Selection) as formatted plain text, for the viewer.

The document tree (PS3.3 C.17.3, SR Document Content Module) is walked iteratively, never
recursively, so a hostile file with thousands of nested containers cannot exhaust the stack; the
depth shown and the number of items are both capped. Every value type of PS3.3 Table C.17.3-1
gets a readable line: containers become headings, TEXT its text, CODE the code meaning (with
scheme and value), NUM the value with its units, DATE/TIME/DATETIME formatted, PNAME as a name,
references to images and other objects by SOP class and UID, and spatial/temporal coordinates
summarised. Pure Python: no Qt here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from app.core.errors import RenderError

MAX_DEPTH = 32  # deeper containers are flattened into the last shown level
MAX_ITEMS = 20000  # content items rendered before "(… more items not shown)"
INDENT = "    "

# Relationship types shown as a short prefix (PS3.3 C.17.3.2.4); CONTAINS is the default.
_RELATION_LABEL: dict[str, str] = {
    "HAS PROPERTIES": "property",
    "HAS OBS CONTEXT": "context",
    "HAS ACQ CONTEXT": "acquisition context",
    "HAS CONCEPT MOD": "modifier",
    "INFERRED FROM": "inferred from",
    "SELECTED FROM": "selected from",
}


@dataclass(frozen=True)
class SrLine:
    """One line of the rendered report: its nesting depth, kind and text.

    ``kind`` is ``"title"``, ``"meta"``, ``"heading"`` or ``"item"``; a GUI may style by it.
    """

    depth: int
    kind: str
    text: str


def is_structured_report(ds: Dataset) -> bool:
    """True when ``ds`` carries an SR document tree (any SR class, Key Object Selection, …)."""
    return ds.get("ValueType") == "CONTAINER" and "ContentSequence" in ds


def _read(source: BinaryIO | Path | str | Dataset, name: str) -> Dataset:
    if isinstance(source, Dataset):
        return source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(source, force=True)
    except Exception as exc:  # noqa: BLE001 - hostile bytes: any parser error is bad input
        raise RenderError(f"{name}: cannot read the report ({exc})") from exc


def _s(value: Any) -> str:
    """A DICOM value as display text ('' for empty), multi-values joined with backslashes."""
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(_s(v) for v in value)
    return str(value).strip()


def format_date(value: Any) -> str:
    """YYYYMMDD → YYYY-MM-DD (anything else unchanged)."""
    s = _s(value)
    if len(s) == 8 and s.isdigit():
        return f"{s[:4]}-{s[4:6]}-{s[6:]}"
    return s


def format_time(value: Any) -> str:
    """HHMMSS[.ffffff] → HH:MM:SS (shorter forms kept as far as given)."""
    s = _s(value).replace(":", "")
    head = s.split(".")[0]
    if head.isdigit() and len(head) in (2, 4, 6):
        return ":".join(head[i:i + 2] for i in range(0, len(head), 2))
    return s


def format_datetime(value: Any) -> str:
    """YYYYMMDDHHMMSS[.ffffff][&ZZXX] → YYYY-MM-DD HH:MM:SS."""
    s = _s(value)
    tz = ""
    for sign in "+-":
        if sign in s[8:]:
            s, tz = s[:8] + s[8:].split(sign)[0], sign + s[8:].split(sign)[1]
            break
    out = format_date(s[:8]) if len(s) >= 8 else s
    if len(s) > 8:
        out += " " + format_time(s[8:])
    return out + (f" {tz}" if tz else "")


def format_name(value: Any) -> str:
    """A Person Name for reading: 'Family^Given^Middle^Prefix^Suffix' → 'Prefix Given Middle Family
    Suffix' (first component group only; other groups appended in brackets)."""
    s = _s(value)
    if not s:
        return ""
    groups = s.split("=")
    parts = groups[0].split("^") + [""] * 5
    family, given, middle, prefix, suffix = (p.strip() for p in parts[:5])
    main = " ".join(p for p in (prefix, given, middle, family, suffix) if p)
    others = [g.replace("^", " ").strip() for g in groups[1:] if g.strip()]
    return main + (f" ({' / '.join(others)})" if others else "")


def _code(seq: Any) -> str:
    """The first item of a code sequence as 'meaning' (falls back to 'value (scheme)')."""
    if not seq:
        return ""
    try:
        item = seq[0]
    except (IndexError, TypeError):
        return ""
    meaning = _s(item.get("CodeMeaning"))
    if meaning:
        return meaning
    value = _s(item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue"))
    scheme = _s(item.get("CodingSchemeDesignator"))
    return f"{value} ({scheme})" if scheme else value


def _units(seq: Any) -> str:
    if not seq:
        return ""
    try:
        item = seq[0]
    except (IndexError, TypeError):
        return ""
    value = _s(item.get("CodeValue"))
    meaning = _s(item.get("CodeMeaning"))
    if _s(item.get("CodingSchemeDesignator")) == "UCUM" and value and value != "1":
        return value  # the UCUM symbol ("mm", "cm2", "Hz") reads better than its meaning
    if value == "1" or meaning in ("no units", "unity"):
        return ""
    return meaning or value


def _sop_name(uid: str) -> str:
    try:
        name = UID(uid).name
    except Exception:  # noqa: BLE001 - a malformed UID is still shown as itself
        return uid
    return name if name and name != uid else uid


def _number(value: Any) -> str:
    s = _s(value)
    try:
        f = float(s)
    except ValueError:
        return s
    return f"{f:g}" if abs(f) < 1e15 else s


def _value(item: Dataset) -> str:
    """The value part of one content item, by its Value Type."""
    vt = _s(item.get("ValueType")).upper()
    if vt == "TEXT":
        return _s(item.get("TextValue"))
    if vt == "CODE":
        return _code(item.get("ConceptCodeSequence"))
    if vt == "NUM":
        mvs = item.get("MeasuredValueSequence")
        if not mvs:
            qual = _code(item.get("NumericValueQualifierCodeSequence"))
            return qual or "(no value)"
        mv = mvs[0]
        num = _number(mv.get("NumericValue"))
        units = _units(mv.get("MeasurementUnitsCodeSequence"))
        return f"{num} {units}".strip()
    if vt == "DATE":
        return format_date(item.get("Date"))
    if vt == "TIME":
        return format_time(item.get("Time"))
    if vt == "DATETIME":
        return format_datetime(item.get("DateTime"))
    if vt == "PNAME":
        return format_name(item.get("PersonName"))
    if vt == "UIDREF":
        return _s(item.get("UID"))
    if vt in ("IMAGE", "COMPOSITE", "WAVEFORM"):
        refs = item.get("ReferencedSOPSequence") or []
        out = []
        for ref in list(refs)[:8]:
            cls = _sop_name(_s(ref.get("ReferencedSOPClassUID")))
            inst = _s(ref.get("ReferencedSOPInstanceUID"))
            frames = _s(ref.get("ReferencedFrameNumber"))
            out.append(f"{cls} {inst}" + (f" frame {frames}" if frames else ""))
        return "; ".join(out) or "(reference)"
    if vt in ("SCOORD", "SCOORD3D"):
        gtype = _s(item.get("GraphicType"))
        data = item.get("GraphicData") or []
        n = len(data) // (3 if vt == "SCOORD3D" else 2)
        return f"{gtype} ({n} point{'s' if n != 1 else ''})".strip()
    if vt == "TCOORD":
        return _s(item.get("TemporalRangeType"))
    if vt == "TABLE":
        return "(table)"
    return ""


def _item_text(item: Dataset) -> tuple[str, str]:
    """(kind, text) of one content item."""
    concept = _code(item.get("ConceptNameCodeSequence"))
    vt = _s(item.get("ValueType")).upper()
    rel = _RELATION_LABEL.get(_s(item.get("RelationshipType")).upper(), "")
    ref = item.get("ReferencedContentItemIdentifier")
    if ref is not None and not vt:
        target = ".".join(_s(v) for v in (ref if isinstance(ref, list | tuple) or
                                           type(ref).__name__ == "MultiValue" else [ref]))
        text = f"(see item {target})"
        return "item", f"{rel}: {text}" if rel else text
    if vt == "CONTAINER":
        return "heading", concept or "(untitled section)"
    value = _value(item)
    if concept and value:
        text = f"{concept}: {value}"
    else:
        text = concept or value or f"({vt.lower() or 'empty item'})"
    if rel:
        text = f"[{rel}] {text}"
    return "item", text


def sr_lines(source: BinaryIO | Path | str | Dataset, name: str = "report") -> list[SrLine]:
    """The report as structured lines: title, document facts, then the content tree.

    Parameters
    ----------
    source
        A dataset, a path, or an open binary file of an SR or Key Object Selection document.
    name
        What to call the file in an error message.

    Raises
    ------
    RenderError
        The file cannot be read, or holds no SR document tree.
    """
    ds = _read(source, name)
    try:
        if not is_structured_report(ds):
            raise RenderError(f"{name}: not a structured report (no document content tree)")
        return _lines(ds)
    except RenderError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed values deep in the tree
        raise RenderError(f"{name}: cannot render the report ({exc})") from exc


def _lines(ds: Dataset) -> list[SrLine]:
    lines: list[SrLine] = []
    title = _code(ds.get("ConceptNameCodeSequence")) or _sop_name(_s(ds.get("SOPClassUID")))
    lines.append(SrLine(0, "title", title or "Structured report"))
    facts: list[tuple[str, str]] = [
        ("Patient", format_name(ds.get("PatientName"))),
        ("Patient ID", _s(ds.get("PatientID"))),
        ("Birth date", format_date(ds.get("PatientBirthDate"))),
        ("Study date", format_date(ds.get("StudyDate"))),
        ("Content date", " ".join(x for x in (format_date(ds.get("ContentDate")),
                                              format_time(ds.get("ContentTime"))) if x)),
        ("Completion", _s(ds.get("CompletionFlag"))),
        ("Verification", _s(ds.get("VerificationFlag"))),
    ]
    for obs in ds.get("VerifyingObserverSequence") or []:
        who = format_name(obs.get("VerifyingObserverName"))
        org = _s(obs.get("VerifyingOrganization"))
        when = format_datetime(obs.get("VerificationDateTime"))
        facts.append(("Verified by", ", ".join(x for x in (who, org, when) if x)))
    for label, value in facts:
        if value:
            lines.append(SrLine(0, "meta", f"{label}: {value}"))

    # Iterative pre-order walk: a stack of (depth, item) in reverse order.
    stack: list[tuple[int, Dataset]] = [(0, it) for it in reversed(ds.get("ContentSequence") or [])]
    count = 0
    while stack:
        depth, item = stack.pop()
        count += 1
        if count > MAX_ITEMS:
            lines.append(SrLine(0, "meta", f"(… {len(stack) + 1} more items not shown)"))
            break
        kind, text = _item_text(item)
        lines.append(SrLine(min(depth, MAX_DEPTH), kind, text))
        children = item.get("ContentSequence")
        if children:
            stack.extend((depth + 1, child) for child in reversed(children))
    return lines


def sr_to_text(source: BinaryIO | Path | str | Dataset, name: str = "report") -> str:
    """The report as indented plain text (headings underlined at the top level).

    See :func:`sr_lines` for parameters and errors.
    """
    out: list[str] = []
    for line in sr_lines(source, name):
        pad = INDENT * line.depth
        if line.kind == "title":
            out += [line.text, "=" * max(3, len(line.text))]
        elif line.kind == "meta":
            out.append(line.text)
        elif line.kind == "heading":
            out.append("")
            out.append(pad + line.text)
            if line.depth == 0:
                out.append("-" * max(3, len(line.text)))
        else:
            first, *rest = line.text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            out.append(pad + first)
            out += [pad + INDENT + r for r in rest]
    return "\n".join(out).rstrip() + "\n"
