"""The DICOMDIR parser's shared data: the raw Directory Record items of stage 1, the tags and
record types every stage uses (:mod:`.scan` finds the items, :mod:`.salvage` recovers them after
damage, :mod:`.tree` links them, :mod:`.build` decodes them), and the result of the whole parse
(:class:`DicomdirParse`, returned by :func:`app.core.dicomdir.parse.parse_dicomdir`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.core.dicom.layout import Layout
from app.core.model import Instance, Patient, Problem

T_CHARSET = 0x00080005
T_FILESET_ID = 0x00041130
T_FIRST = 0x00041200
T_LAST = 0x00041202
T_RECORDS = 0x00041220
T_NEXT = 0x00041400
T_INUSE = 0x00041410
T_LOWER = 0x00041420
T_TYPE = 0x00041430
T_FILE_ID = 0x00041500
T_ICON = 0x00880200

MAX_RECORDS = 2_000_000

Elems = dict[int, tuple[str, int, int]]

PATIENT, STUDY, SERIES = "PATIENT", "STUDY", "SERIES"
# Single-level record types that belong at the root (PS3.3 F.4).
ROOT_ONLY = frozenset({"HANGING PROTOCOL", "PALETTE", "IMPLANT", "IMPLANT ASSY",
                       "IMPLANT GROUP"})
# Leaf record types (PS3.3 Table F.4-1); anything else with a File ID is treated as a leaf.
LEAF_TYPES = frozenset({
    "IMAGE", "RT DOSE", "RT STRUCTURE SET", "RT PLAN", "RT TREAT RECORD", "PRESENTATION",
    "WAVEFORM", "SR DOCUMENT", "KEY OBJECT DOC", "SPECTROSCOPY", "RAW DATA", "REGISTRATION",
    "FIDUCIAL", "ENCAP DOC", "VALUE MAP", "STEREOMETRIC", "SURFACE", "MEASUREMENT",
    "SURFACE SCAN", "TRACT", "ASSESSMENT", "RADIOTHERAPY", "ANNOTATION", "INVENTORY",
    "WF PRESENTATION", "PLAN", "TOPIC", "VISIT", "RESULTS", "INTERPRETATION",
    "STUDY COMPONENT", "STORED PRINT", "OVERLAY", "MODALITY LUT", "VOI LUT", "CURVE",
    "HL7 STRUC DOC", "MRDR",
})


@dataclass
class RawRecord:
    """One Directory Record item as found in the bytes. ``vals``: string values that decode
    alike in every character set (ASCII, no escape), decoded and stripped (``""``: empty);
    ``elems``: every other element as ``(vr, value offset, length)``; never both."""

    pos: int  # first byte of its Item tag (what offsets point at)
    elems: Elems
    vals: dict[int, str] = field(default_factory=dict)
    icon: Elems | None = None  # elements of the first Icon Image Sequence item
    icon_complete: bool = True
    complete: bool = True  # False: the item was cut by the end of the data
    rtype: str = ""
    next: int = 0
    lower: int = 0
    in_use: bool = True
    has_file_id: bool = False
    end: int = 0  # first byte after the item (0: unknown)
    suspect: tuple[int, ...] = ()  # tags dropped: their values touch a damaged stretch


@dataclass
class RawDicomdir:
    """Stage 1 result: top-level elements and the records in sequence order."""

    buf: bytes
    layout: Layout
    top: Elems
    records: list[RawRecord]
    has_sequence: bool
    stop_reason: str | None = None
    truncated: bool = False
    stop_position: int | None = None
    salvaged: int = 0  # records found by scanning for record items after damage
    salvage_from: int | None = None
    seq_start: int | None = None  # first byte of the Directory Record Sequence's value
    seq_end: int | None = None  # its end when the length is defined
    # Damaged stretches ``(start, end)`` (end may be past the data): bytes between intact
    # records that hold no intact record (zeroed or junk sectors, cut records, lost tails).
    damage: list[tuple[int, int]] = field(default_factory=list)
    cut: int = 0  # records cut by damage (dropped)
    filled: bool = False  # the records' structure (type, offsets, in-use) is decoded


@dataclass
class DicomdirParse:
    """What a DICOMDIR lists: the record tree and the problems found.

    Instances have ``path=None`` and ``file_id`` as recorded; ``other_records`` holds
    root-level records that are not PATIENTs (HANGING PROTOCOL, PALETTE, PRIVATE, ...).
    ``recovered`` is True when the offsets could not be used as recorded.
    """

    patients: list[Patient] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    fileset_id: str | None = None
    fileset_uid: str | None = None
    other_records: list[Instance] = field(default_factory=list)
    recovered: bool = False
    # Leaves whose PATIENT, STUDY or SERIES record is missing or was lost to damage: they are
    # listed below placeholder parents (IDs None), never under a neighbour (QA-13). A reader
    # that opens their files can place them by the files' own headers.
    orphans: list[Instance] = field(default_factory=list)
