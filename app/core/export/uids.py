"""Invalid UIDs made conformant in the exported copy and its records.

Real files carry Study, Series and SOP Instance UIDs that PS3.5 §9.1 does not allow: hex digits
(``05fa52f0…``), a root other than 0, 1 or 2 (``999.999.2.19941105``), components with leading
zeros, more than 64 characters. Copied as they are they make the DICOMDIR fail validation
(dciodvfy: "Illegal root for UID", "Character invalid for this VR"). Such a UID becomes
``2.25.`` + the integer of a name-based UUID (RFC 9562, version 5) of the old value: the same
old value always gives the same new one, so every file of a study or series keeps sharing it,
in file and record alike. The old value is kept in the file's Original Attributes Sequence and
the change is listed in the report, as for every other fix. A missing UID is a refusal (the
plan's), never made up here; SOP Class and Transfer Syntax UIDs are never replaced.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

# A fixed namespace of DiscBridge's (itself a random UUID): the map is the same on every machine.
NAMESPACE = uuid.UUID("6f1e4c2a-8d0b-5f43-9a77-3c5b1e2d9f60")
KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_VALID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))*$")


def is_valid_uid(value: str) -> bool:
    """PS3.5 §9.1: digits and dots, no empty or zero-padded component, at most 64 characters,
    and an ISO/ITU-T root (0, 1 or 2)."""
    return len(value) <= 64 and bool(_VALID.match(value))


def conformant_uid(value: str) -> str:
    """The ``2.25`` UID that replaces the invalid ``value`` (deterministic)."""
    return f"2.25.{uuid.uuid5(NAMESPACE, value).int}"


def uid_fixes(get: Callable[[str], str | None]) -> dict[str, tuple[str, str]]:
    """keyword → (new UID, why) for the invalid Study/Series/SOP Instance UIDs of one file."""
    out: dict[str, tuple[str, str]] = {}
    for keyword in KEYWORDS:
        old = (get(keyword) or "").strip()
        if old and not is_valid_uid(old):
            out[keyword] = (conformant_uid(old), f"{keyword} {old!r} is not a valid UID "
                            "(PS3.5 §9.1); replaced by a 2.25 UID derived from it")
    return out
