"""Record values that are invalid for their VR, made valid in the exported copy and its record.

Real modalities write 80-character descriptions, lowercase modalities, "1.0" series numbers,
Patient IDs of 70 characters, names with seven components. The source keeps them; the DICOMDIR
we write must pass ``dciodvfy`` (issue 3 acceptance), and file and record must agree. So for the
keys that go into the directory records (STANDARDS.md §2; records.required_keys per level and
profile), a value invalid for its VR (PS3.5 §6.2) is normalised in the exported file, the old
value kept in Original Attributes Sequence and the change listed in the report, as for the
Type 1 fills:

- too long (SH/CS/AE 16, LO 64, IS 12, DS 16, ST 1024 characters): shortened;
- CS: upper case, characters outside ``A–Z 0–9 space _`` become ``_``;
- IS with a decimal point but an integral value (``1.0``): the integer;
- DS longer than 16 characters: fewer significant digits;
- PN with more than five components in a group: the extra components joined into the fifth,
  each group at most 64 characters;
- several values (``CT\\HEAD``) where the data dictionary allows one: joined with a space;
- control characters (BEL, ESC, TAB, … as decoded text; PS3.5 §6.1.2.3 allows none in SH, LO,
  PN, CS and only TAB, LF, FF, CR in ST/LT): each becomes a space.

UIDs are never touched (they are identities); dates and times are left to
:mod:`app.core.export.identity` (ACR-NEMA forms).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from pydicom.datadict import dictionary_VM, dictionary_VR, tag_for_keyword

from app.core.dicomdir.profiles import Profile

MAX_CHARS = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "IS": 12, "DS": 16, "ST": 1024,
             "LT": 10240}
_CS_BAD = re.compile(r"[^A-Z0-9 _]")
_IS_OK = re.compile(r"^\s*[+-]?\d+\s*$")
_SKIP = frozenset({"SpecificCharacterSet"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_TEXT = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")  # ST/LT keep TAB LF FF CR


@functools.lru_cache(maxsize=64)
def record_text_keys(record_type: str, profile: Profile) -> tuple[tuple[str, str, bool], ...]:
    """(keyword, VR, single-valued) of the text keys of PATIENT, STUDY, SERIES and
    ``record_type`` records."""
    from app.core.dicomdir.records import required_keys

    out: dict[str, tuple[str, str, bool]] = {}
    for level in ("PATIENT", "STUDY", "SERIES", record_type):
        try:
            keys = required_keys(level, profile)
        except ValueError:
            continue
        for keyword, _typ in keys:
            tag = tag_for_keyword(keyword)
            if tag is None or keyword in _SKIP:
                continue
            try:
                vr = str(dictionary_VR(tag))
            except KeyError:
                continue
            if vr in MAX_CHARS or vr == "PN":
                out.setdefault(keyword, (keyword, vr, dictionary_VM(tag) == "1"))
    return tuple(out.values())


@functools.lru_cache(maxsize=4096)  # files of a series share most values
def _fix_one(vr: str, value: str) -> tuple[str, str] | None:
    """(new value, what was wrong) for one value of a VR, or None when it is valid."""
    text = value.strip()
    if vr == "CS":
        new = _CS_BAD.sub("_", text.upper())[:16]
        if new != text:
            return new, "CS value not in upper-case letters, digits, space and _ or too long"
        return None
    if vr == "IS" and not _IS_OK.match(value):
        try:
            number = float(text)
        except ValueError:
            return None  # cannot be made an integer without guessing
        if number.is_integer() and abs(number) < 2**31:
            return str(int(number)), "IS value is not an integer string"
        return None
    if vr == "DS" and len(text) > 16:
        try:
            number = float(text)
        except ValueError:
            return None
        for digits in range(15, 0, -1):
            new = f"{number:.{digits}g}"
            if len(new) <= 16:
                return new, "DS value longer than 16 characters"
        return None
    if vr == "PN":
        groups = text.split("=")
        fixed = []
        for group in groups:
            parts = group.split("^")
            if len(parts) > 5:
                parts = parts[:4] + [" ".join(p for p in parts[4:] if p)]
            fixed.append("^".join(parts)[:64])
        new = "=".join(fixed[:3])
        if new != text:
            return new, "PN value with more than five components or longer than 64 characters"
        return None
    limit = MAX_CHARS.get(vr)
    if limit is not None and len(text) > limit:
        return text[:limit].rstrip(), f"{vr} value longer than {limit} characters"
    return None


def vr_fixes(get: Callable[[str], str | None], record_type: str,
             profile: Profile) -> dict[str, tuple[str, str]]:
    """Keyword → (valid value, reason) for this instance's record values invalid for their VR."""
    out: dict[str, tuple[str, str]] = {}
    for keyword, vr, single in record_text_keys(record_type, profile):
        value = get(keyword)
        if not value:
            continue
        why = None
        control = _CONTROL_TEXT if vr in ("ST", "LT") else _CONTROL
        if control.search(value):
            value = control.sub(" ", value)
            why = f"{vr} value with control characters"
        if single and vr not in ("ST", "LT") and "\\" in value:
            value = " ".join(p.strip() for p in value.split("\\") if p.strip())
            why = f"{keyword} allows one value, the source has several"
        parts = value.split("\\") if vr != "PN" else [value]
        new_parts = []
        for part in parts:
            fixed = _fix_one(vr, part)
            if fixed is None:
                new_parts.append(part)
            else:
                new_parts.append(fixed[0])
                why = fixed[1]
        if why is not None:
            out[keyword] = ("\\".join(new_parts),
                            f"{why}; made valid so the DICOMDIR passes validation")
    return out
