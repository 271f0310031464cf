"""Directory records: which record type an instance gets and which keys each record carries.

STANDARDS.md §2 "Basic Directory IOD": the record type follows the SOP Class (default IMAGE);
each record type has its keys and their Types (tables in :mod:`app.core.dicomdir.record_keys`); a
profile (STANDARDS.md §4) adds keys per level. ``patient_keys``/``study_keys``/``series_keys``/
``leaf_keys`` build a record's key values from an instance header (a pydicom Dataset):

- Type 1 keys must be present and non-empty: the exporter fills missing ones in the exported
  copy *before* calling us (so that file and record agree); a key still missing raises
  ValueError naming the file and the key.
- Type 2 keys are always present (empty when the instance has no value).
- Type 1C and 3 keys are copied when the instance has a value.
- Specific Character Set (0008,0005) is put on a record only when that record's own values need
  it (a non-ASCII text value), copied from the instance. ``charset="ISO_IR 192"`` forces UTF-8
  (used for a PATIENT record merged from instances with different character sets, and when a
  value cannot be represented in the instance's own character set).
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.sequence import Sequence

from app.core.dicomdir.profiles import Profile
from app.core.dicomdir.record_keys import RECORD_KEYS, SOP_CLASS_RECORD_TYPES

TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "PN"})
UTF8 = "ISO_IR 192"

# Keys found in the Shared Functional Groups of enhanced multi-frame objects (H.3-2 note).
_FUNCTIONAL_GROUP_KEYS = {
    "ImagePositionPatient": "PlanePositionSequence",
    "ImageOrientationPatient": "PlaneOrientationSequence",
    "PixelSpacing": "PixelMeasuresSequence",
}

_PROFILE_LEVEL = {"PATIENT": "PATIENT", "STUDY": "STUDY", "SERIES": "SERIES", "IMAGE": "IMAGE"}


class RecordError(ValueError):
    """A record cannot be made from an instance; the message names the file (and the key)."""


def record_type_for(sop_class_uid: str | None) -> str:
    """The Directory Record Type for an instance of ``sop_class_uid`` (default ``IMAGE``)."""
    if not sop_class_uid:
        return "IMAGE"
    return SOP_CLASS_RECORD_TYPES.get(str(sop_class_uid).strip().rstrip("\0"), "IMAGE")


def required_keys(record_type: str, profile: Profile | None = None) -> list[tuple[str, str]]:
    """The ``(keyword, type)`` keys of a record type, plus the profile's keys for that level.

    Types are "1", "1C", "2" or "3" (see the module docstring). A profile key overrides the
    Type of the same base key (e.g. STD-XABC-CD makes Patient's Birth Date Type 2).

    Raises
    ------
    ValueError
        Unknown record type.
    """
    record_type = record_type.upper()
    if record_type not in RECORD_KEYS:
        raise ValueError(f"unknown directory record type {record_type!r}")
    keys: dict[str, str] = dict(RECORD_KEYS[record_type])
    if profile is not None and record_type in _PROFILE_LEVEL:
        for keyword, typ in profile.keys_for(_PROFILE_LEVEL[record_type]):
            keys[keyword] = typ
    return list(keys.items())


def _source_name(ds: Dataset, source: str | None) -> str:
    if source:
        return source
    name = getattr(ds, "filename", None)
    return str(name) if isinstance(name, str) and name else "<dataset>"


# Values of these VRs are ASCII: a raw element is decoded here, without pydicom's conversion
# and validation (the costly part of building 4,000 records).
ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})


def _tag(keyword: str) -> int:
    tag = _TAGS.get(keyword)
    if tag is None:
        found = tag_for_keyword(keyword)
        if found is None:
            raise ValueError(f"unknown DICOM keyword {keyword!r}")
        tag = _TAGS[keyword] = int(found)
    return tag


_TAGS: dict[str, int] = {}


def fast_text(ds: Dataset, keyword: str) -> str:
    """The value of ``keyword`` as a stripped string ("" when absent), cheaply for raw ASCII."""
    elem = ds.get_item(_tag(keyword))
    if elem is None:
        return ""
    if isinstance(elem, RawDataElement):
        value = elem.value
        if value is None:
            return ""
        if elem.VR in ASCII_VRS or (value.isascii() and b"\x1b" not in value):
            return value.decode("ascii", "replace").strip(" \0")
        elem = ds[elem.tag]
    value = elem.value
    return "" if value is None else str(value).strip(" \0")


def _lookup(ds: Dataset, keyword: str) -> DataElement | None:
    tag = _tag(keyword)
    raw = ds.get_item(tag)
    if raw is not None:
        if isinstance(raw, RawDataElement) and raw.VR in ASCII_VRS:
            text = b"" if raw.value is None else raw.value
            return DataElement(tag, raw.VR, text.decode("ascii", "replace").strip(" \0"))
        return ds[tag]
    if keyword == "VerificationDateTime":
        # SR: the record carries the most recent verification (PS3.3 F.5, Type 1C when
        # VERIFIED); the instance keeps it in the Verifying Observer Sequence items.
        times = [str(item.VerificationDateTime) for item in
                 ds.get("VerifyingObserverSequence") or () if item.get("VerificationDateTime")]
        return DataElement(tag, "DT", max(times)) if times else None
    group = _FUNCTIONAL_GROUP_KEYS.get(keyword)
    if group is not None:
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared:
            inner = shared[0].get(group)
            if inner and keyword in inner[0]:
                return inner[0][keyword]
    return None


def _is_empty(elem: DataElement | None) -> bool:
    if elem is None:
        return True
    value = elem.value
    if value is None:
        return True
    if isinstance(value, str | bytes):
        return not value.strip(" \0" if isinstance(value, str) else b" \0")
    if isinstance(value, Sequence | list | tuple):
        return len(value) == 0
    return str(value).strip() == ""


def _concept_mod_items(seq: Sequence) -> Sequence:
    """Only the content items that modify the document title (as DCMTK does)."""
    return Sequence([item for item in seq
                     if str(item.get("RelationshipType", "")).strip() == "HAS CONCEPT MOD"])


def _needs_charset(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, bytes):
        return not value.isascii() or b"\x1b" in value
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return any(_needs_charset(v) for v in value)  # type: ignore[attr-defined]
    text = str(value)
    return not text.isascii()


def build_record(ds: Dataset, keys: list[tuple[str, str]], *, source: str | None = None,
                 charset: str | None = None) -> Dataset:
    """A record's key values from ``ds`` per ``keys`` (see the module docstring).

    ``charset`` forces the record's Specific Character Set when it needs one (None: the
    instance's own). Raises ValueError naming the file and key when a Type 1 key is missing.
    """
    record = Dataset()
    needs_charset = False
    for keyword, typ in keys:
        elem = _lookup(ds, keyword)
        if _is_empty(elem):
            if typ == "1":
                tag = tag_for_keyword(keyword)
                where = f"({tag >> 16:04X},{tag & 0xFFFF:04X})" if tag is not None else ""
                raise RecordError(f"{_source_name(ds, source)}: Type 1 key {keyword} {where} "
                                 "is missing or empty; it must be filled before the "
                                 "DICOMDIR is written")
            if typ != "2":
                continue
            tag = tag_for_keyword(keyword)
            assert tag is not None, keyword
            vr = dictionary_VR(tag)
            record.add(DataElement(tag, vr, Sequence() if vr == "SQ" else None))
            continue
        assert elem is not None
        value = elem.value
        if keyword == "ContentSequence":
            value = _concept_mod_items(value)
            if not value:
                continue
        new = DataElement(elem.tag, elem.VR, value)
        if elem.VR in TEXT_VRS and _needs_charset(value):
            needs_charset = True
        elif elem.VR == "SQ":
            needs_charset = needs_charset or _sequence_needs_charset(value)
        record.add(new)
    if needs_charset:
        chosen = charset or _charset_of(ds)
        if chosen:
            record.SpecificCharacterSet = chosen
        else:  # non-ASCII text without a declared character set: say what it is (UTF-8)
            record.SpecificCharacterSet = UTF8
    return record


def _sequence_needs_charset(seq: Sequence) -> bool:
    for item in seq:
        for elem in item:
            if elem.VR in TEXT_VRS and _needs_charset(elem.value):
                return True
            if elem.VR == "SQ" and _sequence_needs_charset(elem.value):
                return True
    return False


def _charset_of(ds: Dataset) -> str | None:
    value = ds.get("SpecificCharacterSet")
    if not value:
        return None
    if isinstance(value, str):
        return value
    return "\\".join(str(v) for v in value)


def patient_keys(ds: Dataset, profile: Profile | None = None, *, source: str | None = None,
                 charset: str | None = None) -> Dataset:
    """The PATIENT record keys of the instance ``ds`` (see :func:`build_record`)."""
    return build_record(ds, required_keys("PATIENT", profile), source=source, charset=charset)


def study_keys(ds: Dataset, profile: Profile | None = None, *, source: str | None = None,
               charset: str | None = None) -> Dataset:
    """The STUDY record keys of the instance ``ds``."""
    return build_record(ds, required_keys("STUDY", profile), source=source, charset=charset)


def series_keys(ds: Dataset, profile: Profile | None = None, *, source: str | None = None,
                charset: str | None = None) -> Dataset:
    """The SERIES record keys of the instance ``ds``."""
    return build_record(ds, required_keys("SERIES", profile), source=source, charset=charset)


def leaf_keys(ds: Dataset, record_type: str | None = None, profile: Profile | None = None, *,
              source: str | None = None, charset: str | None = None) -> Dataset:
    """The leaf record keys (IMAGE, SR DOCUMENT, …) of ``ds``; type from its SOP Class if None."""
    if record_type is None:
        record_type = record_type_for(ds.get("SOPClassUID"))
    return build_record(ds, required_keys(record_type, profile), source=source,
                        charset=charset)
