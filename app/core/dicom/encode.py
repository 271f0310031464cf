"""A small, fast Explicit VR Little Endian encoder for directory records (no pydicom writer).

Encodes a pydicom Dataset's elements in tag order with explicit-length sequences and items.
Text values of Specific-Character-Set-aware VRs are encoded strictly with the dataset's own
Specific Character Set (or ASCII without one); a value that cannot be represented raises
:class:`CharsetError` so that the caller can re-encode the record as ISO_IR 192 (STANDARDS.md §2).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from functools import lru_cache

from pydicom import Dataset
from pydicom.charset import convert_encodings, decode_bytes, encode_string
from pydicom.dataelem import DataElement
from pydicom.valuerep import PersonName

LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UR", "UT", "UN",
                      "SV", "UV"})
CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "PN"})
_NUMERIC = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q",
            "UV": "Q"}
_BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2s2xI")
_ITEM = struct.Struct("<HHI")


class CharsetError(ValueError):
    """A text value cannot be represented in the record's Specific Character Set."""


def element_header(tag: int, vr: str, length: int) -> bytes:
    """The Explicit VR LE header of an element whose value is ``length`` bytes."""
    if vr in LONG_VRS:
        return _LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode("ascii"), length)
    if length > 0xFFFF:
        raise ValueError(f"value of ({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr} is too long "
                         f"({length} bytes)")
    return _SHORT.pack(tag >> 16, tag & 0xFFFF, vr.encode("ascii"), length)


def encode_element(tag: int, vr: str, value: bytes) -> bytes:
    """Header + ``value`` padded to even length (``\\0`` for UI and binary, else space)."""
    if len(value) % 2:
        value += b"\0" if vr in ("UI",) or vr in _BYTES_VRS else b" "
    return element_header(tag, vr, len(value)) + value


@lru_cache(maxsize=64)
def python_encodings(charset: str | None) -> tuple[str, ...]:
    """Python codecs for a Specific Character Set value (``\\``-separated terms)."""
    if not charset:
        return ("ascii",)
    terms = [t.strip() for t in charset.split("\\")]
    return tuple(convert_encodings(terms))


def _values(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, str | bytes | PersonName | int | float):
        return [value]
    if isinstance(value, Iterable):
        return list(value)
    return [value]


def encode_text(value: str, encodings: tuple[str, ...], pn: bool) -> bytes:
    """``value`` in ``encodings`` (a person name by its groups when ``pn``); raises
    :class:`CharsetError` when it cannot be represented."""
    if len(encodings) == 1:
        try:
            return value.encode(encodings[0])
        except UnicodeEncodeError as exc:
            raise CharsetError(str(exc)) from exc
    # ISO 2022 code extensions: pydicom inserts the escape sequences; verify the round trip
    # (pydicom replaces what it cannot encode instead of failing).
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if pn:
            data = PersonName(value).encode(list(encodings))
            back = str(PersonName(data, list(encodings)))
        else:
            data = encode_string(value, list(encodings))
            back = decode_bytes(data, list(encodings), set())
    if back != value:
        raise CharsetError(f"{value!r} cannot be encoded in {', '.join(encodings)}")
    return data


def value_bytes(elem: DataElement, vr: str, encodings: tuple[str, ...]) -> bytes:
    """The encoded (unpadded) value of ``elem`` as ``vr``."""
    value = elem.value
    if vr == "SQ":
        return b"".join(_item(item, encodings) for item in (value or ()))
    if value is None or value == "":
        return b""
    fmt = _NUMERIC.get(vr)
    if fmt is not None:
        if isinstance(value, bytes):
            return value
        nums = _values(value)
        return struct.pack(f"<{len(nums)}{fmt}", *nums)
    if vr in _BYTES_VRS:
        if isinstance(value, bytes):
            return value
        raise ValueError(f"{vr} value of {elem.tag} is not bytes")
    if vr == "AT":
        tags = _values(value)
        return b"".join(struct.pack("<HH", int(t) >> 16, int(t) & 0xFFFF) for t in tags)
    if isinstance(value, bytes):  # undecoded text: kept as it is
        return value
    parts = [str(v) if v is not None else "" for v in _values(value)]
    text = "\\".join(parts)
    if vr in CHARSET_VRS:
        if text.isascii():
            return text.encode("ascii")
        return encode_text(text, encodings, vr == "PN")
    return text.encode("ascii", errors="replace")


def _resolve_vr(elem: DataElement, ds: Dataset) -> str:
    vr = elem.VR
    if " or " not in vr:
        return vr
    value = elem.value
    if vr == "OB or OW":
        if elem.tag == 0x7FE00010:
            return "OB" if int(ds.get("BitsAllocated", 8) or 8) <= 8 else "OW"
        return "OW"
    if isinstance(value, bytes):
        return "OW" if "OW" in vr else "OB"
    if "SS" in vr and int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return "SS"
    return "US"


def encode_dataset(ds: Dataset, encodings: tuple[str, ...] | None = None) -> bytes:
    """All elements of ``ds`` in tag order, Explicit VR LE.

    ``encodings`` (Python codecs) defaults to those of the dataset's own Specific Character Set.
    """
    if encodings is None:
        encodings = python_encodings(_charset(ds))
    out = []
    for elem in ds:  # Dataset iterates in tag order
        vr = _resolve_vr(elem, ds)
        out.append(encode_element(elem.tag, vr, value_bytes(elem, vr, encodings)))
    return b"".join(out)


def _item(item: Dataset, encodings: tuple[str, ...]) -> bytes:
    # Items inherit the enclosing dataset's character set unless they declare their own.
    own = _charset(item)
    body = encode_dataset(item, python_encodings(own) if own else encodings)
    return _ITEM.pack(0xFFFE, 0xE000, len(body)) + body


def _charset(ds: Dataset) -> str | None:
    value = ds.get("SpecificCharacterSet")
    if not value:
        return None
    if isinstance(value, str):
        return value
    return "\\".join(str(v) for v in value)
