"""Low-level, tolerant DICOM element reader over an in-memory buffer.

The reader turns bytes into a flat stream of events (element, sequence start, item start, item
end, sequence end) without building any dataset. It is iterative (an explicit stack, never
recursion), bounded (caps on nesting depth and element count) and never raises on bad bytes:
it stops and says why in :attr:`ElementReader.stop_reason`. It understands Explicit and
Implicit VR, Little and Big Endian, defined and undefined lengths, nested sequences and items
with their delimiters, encapsulated (fragmented) values and UN-encoded sequences
(STANDARDS.md §1; PS3.5 §7).

Where a dataset starts and how its body is really encoded is :mod:`app.core.dicom.layout`.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import sys
from collections.abc import Iterator

from app.core.errors import DiscBridgeError

__all__ = [
    "EV_ELEM", "EV_SQ", "EV_ITEM", "EV_ITEM_END", "EV_SQ_END", "UNDEFINED",
    "ITEM", "ITEM_DELIM", "SEQ_DELIM", "ParseError", "ElementReader", "dicom_dictionary",
    "dictionary_vr", "numeric_value", "element_end", "valid_uid", "valid_date", "valid_time",
    "valid_datetime", "valid_cs", "VALIDATORS",
    "TS_IMPLICIT_LE", "TS_EXPLICIT_LE", "TS_EXPLICIT_BE", "TS_DEFLATED",
]

EV_ELEM, EV_SQ, EV_ITEM, EV_ITEM_END, EV_SQ_END = 0, 1, 2, 3, 4
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_DELIM, SEQ_DELIM = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD

TS_IMPLICIT_LE = "1.2.840.10008.1.2"
TS_EXPLICIT_LE = "1.2.840.10008.1.2.1"
TS_EXPLICIT_BE = "1.2.840.10008.1.2.2"
TS_DEFLATED = "1.2.840.10008.1.2.1.99"

MAX_DEPTH = 64
MAX_ELEMENTS = 20_000_000

_VRS = ("AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI "
        "UL UN UR US UT UV").split()
_LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
# VR bytes → (str, long header?) for the explicit fast path.
_VR_INFO: dict[bytes, tuple[str, bool]] = {v.encode(): (v, v in _LONG) for v in _VRS}

_LE_HH2sH = struct.Struct("<HH2sH")
_BE_HH2sH = struct.Struct(">HH2sH")
_LE_HHI = struct.Struct("<HHI")
_BE_HHI = struct.Struct(">HHI")
_LE_I = struct.Struct("<I")
_BE_I = struct.Struct(">I")


class ParseError(DiscBridgeError):
    """Bytes that cannot be read as DICOM at all (only raised by the layout helpers)."""


_DICTIONARY: dict[int, tuple[str, str, str, str, str]] | None = None


def dicom_dictionary() -> dict[int, tuple[str, str, str, str, str]]:
    """pydicom's data dictionary ``{tag: (VR, VM, name, retired, keyword)}``.

    Loaded from ``pydicom/_dicom_dict.py`` alone when pydicom itself is not imported yet:
    importing pydicom (and numpy with it) costs ~0.2 s, more than parsing a big DICOMDIR.
    """
    global _DICTIONARY
    if _DICTIONARY is None:
        mod = sys.modules.get("pydicom._dicom_dict")
        if mod is None:
            spec = importlib.util.find_spec("pydicom")
            locations = spec.submodule_search_locations if spec else None
            path = os.path.join(list(locations)[0], "_dicom_dict.py") if locations else ""
            dspec = (importlib.util.spec_from_file_location("_discbridge_dicom_dict", path)
                     if os.path.isfile(path) else None)
            if dspec is None or dspec.loader is None:
                # No source file: a frozen build (modules live in an archive) or a broken
                # install. Importing pydicom is slower but always works.
                from pydicom.datadict import DicomDictionary

                _DICTIONARY = DicomDictionary
                return _DICTIONARY
            mod = importlib.util.module_from_spec(dspec)
            dspec.loader.exec_module(mod)
        _DICTIONARY = mod.DicomDictionary
    return _DICTIONARY


def dictionary_vr(tag: int) -> str:
    """The data dictionary VR of ``tag`` (first of a multi-VR entry); ``UN`` when unknown."""
    entry = dicom_dictionary().get(tag)
    if entry is None:
        if tag & 0xFFFF == 0:
            return "UL"  # group length
        return "UN"
    return entry[0][:2]


# Cache of implicit VRs: the dictionary lookup + slicing is too slow for the hot loop.
_IMPLICIT_VR: dict[int, str] = {}


def _implicit_vr(tag: int) -> str:
    vr = _IMPLICIT_VR.get(tag)
    if vr is None:
        vr = dictionary_vr(tag)
        if len(_IMPLICIT_VR) < 100_000:
            _IMPLICIT_VR[tag] = vr
    return vr


class ElementReader:
    """Iterate the elements of a buffer as a flat stream of events.

    Each event is a tuple ``(kind, tag, vr, value_offset, length, position)``:

    - ``EV_ELEM``: a data element; ``length`` may be ``UNDEFINED`` for an encapsulated value
      (its fragments are skipped; ``value_offset`` points at the first item).
    - ``EV_SQ``: a sequence starts (``length`` may be ``UNDEFINED``).
    - ``EV_ITEM``: an item starts; ``position`` is the first byte of its Item tag (the byte a
      DICOMDIR offset points at).
    - ``EV_ITEM_END`` / ``EV_SQ_END``: the item / sequence ends (by length or delimiter).

    Iteration stops at ``end``, at the first element whose tag is ``>= stop_tag`` (at the top
    level), or at malformed bytes: then :attr:`stop_reason` says why and :attr:`stop_position`
    where; :attr:`truncated` is True when the data ran out. Nothing is raised.

    Parameters
    ----------
    buf : bytes
        The whole buffer (positions are absolute offsets into it).
    little, explicit : bool
        Encoding of the dataset at ``start``.
    """

    def __init__(self, buf: bytes, little: bool = True, explicit: bool = True, *,
                 max_depth: int = MAX_DEPTH, max_elements: int = MAX_ELEMENTS) -> None:
        self.buf = buf if isinstance(buf, bytes) else bytes(buf)
        self.little = little
        self.explicit = explicit
        self.max_depth = max_depth
        self.max_elements = max_elements
        self.stop_reason: str | None = None
        self.stop_position: int | None = None
        self.truncated = False
        self.zero_fill = False  # stopped at (0000,xxxx) at the top level
        self.end_position = 0  # where reading ended (next unread byte)

    def _stop(self, reason: str, pos: int, truncated: bool = False) -> None:
        self.stop_reason = reason
        self.stop_position = pos
        self.truncated = truncated

    def events(self, start: int = 0, end: int | None = None, stop_tag: int = 0x100000000,
               flat: bool = False) -> Iterator[tuple[int, int, str, int, int, int]]:
        """Yield events from ``start`` to ``end`` (see the class docstring).

        ``flat``: top-level sequences of defined length are yielded as one ``EV_ELEM`` (VR
        ``SQ``) and skipped without reading their items (header-only reads).
        """
        buf = self.buf
        n = len(buf)
        if end is None or end > n:
            end = n
        little = self.little
        explicit = self.explicit
        hh2sh = (_LE_HH2sH if little else _BE_HH2sH).unpack_from
        hhi = (_LE_HHI if little else _BE_HHI).unpack_from
        u32 = (_LE_I if little else _BE_I).unpack_from
        vr_info = _VR_INFO
        impl_vr = _implicit_vr
        # Open containers: [end (-1: undefined), is_item, explicit, little, cut by the data end].
        stack: list[list] = []
        pos = start
        count = 0
        max_elements = self.max_elements
        max_depth = self.max_depth
        while True:
            # Close defined-length containers that end here.
            while stack and 0 <= stack[-1][0] <= pos:
                frame = stack.pop()
                if frame[4] and not self.truncated:
                    # Its length went past the data: what is there was read; say so.
                    self._stop("data ends inside an item" if frame[1]
                               else "data ends inside a sequence", pos, True)
                yield (EV_ITEM_END if frame[1] else EV_SQ_END, 0, "", pos, 0, pos)
                if frame[2] != explicit or frame[3] != little:
                    explicit, little = (stack[-1][2], stack[-1][3]) if stack else (
                        self.explicit, self.little)
                    hh2sh = (_LE_HH2sH if little else _BE_HH2sH).unpack_from
                    hhi = (_LE_HHI if little else _BE_HHI).unpack_from
                    u32 = (_LE_I if little else _BE_I).unpack_from
            if pos + 8 > end:
                if pos < end or stack:
                    self._stop("data ends inside an element header" if pos < end
                               else "data ends inside a sequence", pos, True)
                self.end_position = pos
                return
            count += 1
            if count > max_elements:
                self._stop("too many elements", pos)
                self.end_position = pos
                return
            group, elem, vrb, len16 = hh2sh(buf, pos)
            tag = (group << 16) | elem
            if group == 0:
                # Command-group elements never occur in stored data: what follows is zero
                # fill (padding, unreadable sectors) or garbage. Stop, cheaply.
                self.stop_reason = "zero-filled data"
                self.stop_position = pos
                self.zero_fill = True
                self.end_position = pos
                return
            if group == 0xFFFE:
                length = u32(buf, pos + 4)[0]
                if tag == ITEM:
                    if len(stack) >= max_depth:
                        self._stop("nesting too deep", pos)
                        self.end_position = pos
                        return
                    if length == UNDEFINED:
                        stack.append([-1, True, explicit, little, False])
                    else:
                        iend = pos + 8 + length
                        # Truncated item: read what is there, then say so.
                        stack.append([min(iend, end), True, explicit, little, iend > end])
                    yield (EV_ITEM, tag, "", pos + 8, length, pos)
                    pos += 8
                    continue
                if tag == ITEM_DELIM or tag == SEQ_DELIM:
                    want_item = tag == ITEM_DELIM
                    # Find the matching undefined-length container; close everything above.
                    idx = len(stack) - 1
                    while idx >= 0 and not (stack[idx][0] == -1 and stack[idx][1] == want_item):
                        idx -= 1
                    pos += 8
                    if idx < 0:
                        continue  # stray delimiter: ignore it
                    while len(stack) > idx:
                        frame = stack.pop()
                        yield (EV_ITEM_END if frame[1] else EV_SQ_END, 0, "", pos, 0, pos)
                    explicit, little = (stack[-1][2], stack[-1][3]) if stack else (
                        self.explicit, self.little)
                    hh2sh = (_LE_HH2sH if little else _BE_HH2sH).unpack_from
                    hhi = (_LE_HHI if little else _BE_HHI).unpack_from
                    u32 = (_LE_I if little else _BE_I).unpack_from
                    continue
                # Any other (FFFE,xxxx) tag: treat as a plain element with a 32-bit length.
                vr = "UN"
                voff = pos + 8
            elif explicit:
                info = vr_info.get(vrb)
                if info is None:
                    # Not a VR: this element is implicit (tolerated, as dcmtk does).
                    vr = impl_vr(tag)
                    length = u32(buf, pos + 4)[0]
                    voff = pos + 8
                elif info[1]:
                    vr = info[0]
                    if pos + 12 > end:
                        self._stop("data ends inside an element header", pos, True)
                        self.end_position = pos
                        return
                    length = u32(buf, pos + 8)[0]
                    voff = pos + 12
                else:
                    vr = info[0]
                    length = len16
                    voff = pos + 8
            else:
                vr = impl_vr(tag)
                length = hhi(buf, pos)[2]
                voff = pos + 8
            if not stack and tag >= stop_tag:
                self.end_position = pos
                return
            if flat and not stack and vr == "SQ" and length != UNDEFINED:
                nxt = voff + length
                if nxt > end:
                    self._stop("data ends inside a value", pos, True)
                    self.end_position = pos
                    return
                yield (EV_ELEM, tag, vr, voff, length, pos)
                pos = nxt
                continue
            if vr == "SQ" or (length == UNDEFINED and vr in ("UN", "UT", "UC")) or (
                    vr == "UN" and not explicit and length != UNDEFINED and voff + 8 <= end
                    and hh2sh(buf, voff)[:2] == (0xFFFE, 0xE000)) or (
                    vr == "UN" and explicit and length != UNDEFINED
                    and impl_vr(tag) == "SQ"):
                if len(stack) >= max_depth:
                    self._stop("nesting too deep", pos)
                    self.end_position = pos
                    return
                # UN-encoded sequences are Implicit VR Little Endian inside (PS3.5 §6.2.2).
                inner_explicit, inner_little = (explicit, little) if vr == "SQ" else (False, True)
                if length == UNDEFINED:
                    stack.append([-1, False, inner_explicit, inner_little, False])
                else:
                    send = voff + length
                    stack.append([min(send, end), False, inner_explicit, inner_little,
                                  send > end])
                yield (EV_SQ, tag, "SQ", voff, length, pos)
                if inner_explicit != explicit or inner_little != little:
                    explicit, little = inner_explicit, inner_little
                    hh2sh = (_LE_HH2sH if little else _BE_HH2sH).unpack_from
                    hhi = (_LE_HHI if little else _BE_HHI).unpack_from
                    u32 = (_LE_I if little else _BE_I).unpack_from
                pos = voff
                continue
            if length == UNDEFINED:
                # Encapsulated value: skip its fragments up to the sequence delimiter.
                p = voff
                while True:
                    if p + 8 > end:
                        self._stop("data ends inside an encapsulated value", pos, True)
                        self.end_position = pos
                        return
                    g2, e2, flen = hhi(buf, p)
                    p += 8
                    if g2 == 0xFFFE and e2 == 0xE0DD:
                        break
                    if g2 != 0xFFFE or e2 != 0xE000 or flen == UNDEFINED:
                        self._stop("malformed encapsulated value", p - 8)
                        self.end_position = pos
                        return
                    p += flen
                yield (EV_ELEM, tag, vr, voff, UNDEFINED, pos)
                pos = p
                continue
            nxt = voff + length
            if nxt > end:
                self._stop("data ends inside a value", pos, True)
                self.end_position = pos
                return
            yield (EV_ELEM, tag, vr, voff, length, pos)
            pos = nxt


_NUM_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q",
                "UV": "Q", "AT": "HH"}
_NUM_SIZES = {k: struct.calcsize(v) for k, v in _NUM_FORMATS.items()}


def numeric_value(buf: bytes, vr: str, offset: int, length: int, little: bool) -> str | None:
    """Binary numbers (US, UL, SS, SL, FL, FD, SV, UV, AT) as a backslash-joined string."""
    if length == 2 and vr == "US":
        return str(int.from_bytes(buf[offset:offset + 2], "little" if little else "big"))
    fmt = _NUM_FORMATS.get(vr)
    if fmt is None or length == 0 or length == UNDEFINED:
        return None
    size = _NUM_SIZES[vr]
    count = length // size
    if count == 0 or offset + length > len(buf):
        return None
    values = struct.unpack_from(("<" if little else ">") + fmt * count, buf, offset)
    if vr == "AT":
        return "\\".join(f"({values[i]:04X},{values[i + 1]:04X})" for i in range(0, len(values), 2))
    return "\\".join(repr(v) if isinstance(v, float) else str(v) for v in values)


def element_end(buf: bytes, pos: int, little: bool, explicit: bool) -> int | None:
    """First byte after the one element at ``pos`` (sequences and encapsulated values of
    undefined length included); None when it does not end inside ``buf``."""
    reader = ElementReader(buf, little, explicit)
    depth = 0
    for kind, _tag, _vr, voff, length, _pos in reader.events(pos):
        if kind == EV_SQ or kind == EV_ITEM:
            depth += 1
        elif kind == EV_ITEM_END:
            depth -= 1
        elif kind == EV_SQ_END:
            depth -= 1
            if depth == 0:
                return voff
        elif depth == 0:  # EV_ELEM at the top: an encapsulated value (fragments skipped)
            return _encapsulated_end(buf, voff, length, little)
    return None


def _encapsulated_end(buf: bytes, voff: int, length: int, little: bool) -> int | None:
    """End of an encapsulated value starting at ``voff`` (its items up to the delimiter)."""
    if length != UNDEFINED:
        return voff + length
    hhi = struct.Struct("<HHI" if little else ">HHI").unpack_from
    p = voff
    n = len(buf)
    while p + 8 <= n:
        g, e, flen = hhi(buf, p)
        p += 8
        if (g, e) == (0xFFFE, 0xE0DD):
            return p
        if (g, e) != (0xFFFE, 0xE000) or flen == UNDEFINED:
            return None
        p += flen
    return None


# -- value plausibility by VR (PS3.5 §6.2, §9.1) ----------------------------------------------
# A damaged record's values must not be trusted blindly (QA-14): a UID is a key (dedupe,
# selection), so a value that is not one counts as absent; so do impossible dates and times.

_DIGITS = "0123456789"


def valid_uid(v: str) -> bool:
    """A UI value: digits and dots only, at most 64 characters, no empty component
    (no leading, trailing or doubled dot). Leading zeros in components are tolerated."""
    return (0 < len(v) <= 64 and not v.lstrip("0123456789.") and v[0] != "." and v[-1] != "."
            and ".." not in v)


def valid_date(v: str) -> bool:
    """A DA value ``YYYYMMDD`` (or ACR-NEMA ``YYYY.MM.DD``) with a possible month and day."""
    if len(v) == 10 and v[4] == "." and v[7] == ".":
        v = v[:4] + v[5:7] + v[8:]
    if len(v) != 8 or v.lstrip(_DIGITS):
        return False
    return 1 <= int(v[4:6]) <= 12 and 1 <= int(v[6:8]) <= 31


def valid_time(v: str) -> bool:
    """A TM value ``HH[MM[SS[.F{1,6}]]]`` (ACR-NEMA ``HH:MM:SS`` too) with possible fields."""
    if ":" in v:
        v = v.replace(":", "")
    head, dot, frac = v.partition(".")
    if (len(head) not in (2, 4, 6) or head.lstrip(_DIGITS) or frac.lstrip(_DIGITS)
            or (dot and (len(head) != 6 or not 0 < len(frac) <= 6))):
        return False
    return (int(head[:2]) <= 23 and (len(head) < 4 or int(head[2:4]) <= 59)
            and (len(head) < 6 or int(head[4:6]) <= 60))


def valid_datetime(v: str) -> bool:
    """A DT value ``YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]``."""
    body, zone = v, ""
    for sign in "+-":
        k = v.find(sign, 4)
        if k != -1:
            body, zone = v[:k], v[k + 1:]
            break
    if zone and (len(zone) != 4 or zone.lstrip(_DIGITS)):
        return False
    head, dot, frac = body.partition(".")
    if (len(head) not in (4, 6, 8, 10, 12, 14) or head.lstrip(_DIGITS) or frac.lstrip(_DIGITS)
            or (dot and (len(head) != 14 or not 0 < len(frac) <= 6))):
        return False
    if len(head) >= 8 and not valid_date(head[:8]):
        return False
    return len(head) < 10 or valid_time(head[8:])


_CS_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _")


def valid_cs(v: str) -> bool:
    """A CS value: upper-case letters, digits, space and underscore, at most 16 characters."""
    return len(v) <= 16 and _CS_CHARS.issuperset(v)


# Validators by VR, for each value of a multi-valued element.
VALIDATORS = {"UI": valid_uid, "DA": valid_date, "TM": valid_time, "DT": valid_datetime}
