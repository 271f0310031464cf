"""Type 1 fills applied to the exported copy, with the replaced values kept in the file.

STANDARDS.md §2 lists the directory keys whose record Type (1) exceeds the image IOD Type (2):
Patient ID, Study Date/Time, Study ID, Series Number, Instance Number. DiscBridge fills them *in
the exported file and in its record alike* (so file and DICOMDIR agree, unlike dcmtk's ``+I``),
and keeps what was there before in the file's Original Attributes Sequence (0400,0561) with
Reason for the Attribute Modification "CORRECT" (STANDARDS.md §6, IHE IRWF). A Patient ID
replaced because of a clash is also kept in Other Patient IDs Sequence (0010,1002).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence

from app import APP_NAME, __version__

REASON_CORRECT = "CORRECT"
MODIFYING_SYSTEM = f"{APP_NAME} {__version__}"


@dataclass(frozen=True)
class Change:
    """One attribute changed in one exported file (listed in the report and the CLI output).

    ``file`` is the destination File ID path (``PA001/ST001/SE001/IM000001``) once names are
    assigned, else the source path. ``old`` is None when the attribute was absent or empty.
    """

    file: str
    attribute: str
    old: str | None
    new: str
    reason: str

    def to_dict(self) -> dict[str, str | None]:
        return {"file": self.file, "attribute": self.attribute, "old": self.old, "new": self.new,
                "reason": self.reason}

    def __str__(self) -> str:
        old = "(empty)" if self.old is None else repr(self.old)
        return f"{self.file}: {self.attribute} {old} -> {self.new!r} ({self.reason})"


def value_str(ds: Dataset, keyword: str) -> str | None:
    """The attribute's value as a stripped string, or None when absent or empty."""
    try:
        elem = ds[keyword] if keyword in ds else None
    except Exception:  # noqa: BLE001 - hostile bytes: treat as absent
        return None
    if elem is None or elem.value is None:
        return None
    value = elem.value
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v).strip() for v in value).strip("\\ ")
        return text or None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    text = str(value).strip().strip("\x00").strip()
    return text or None


def apply_fixes(ds: Dataset, fixes: dict[str, str], *, other_patient_id: str | None = None,
                when: _dt.datetime | None = None) -> None:
    """Set ``fixes`` (keyword → new value) on ``ds`` and record the old values.

    The previous values (an empty element when the attribute was absent) go into one new item of
    the Original Attributes Sequence, with Attribute Modification DateTime, Modifying System,
    Source of Previous Values (empty: Type 2) and Reason "CORRECT". ``other_patient_id``: the
    Patient ID being replaced by a clash resolution, added to Other Patient IDs Sequence.
    """
    if not fixes:
        return
    modified = Dataset()
    for keyword, new in fixes.items():
        if keyword in ds:
            modified.add(_copy_element(ds[keyword]))
        else:
            tag = _tag_for(keyword)
            modified.add(DataElement(tag, dictionary_VR(tag), None))
        setattr(ds, keyword, new)
    if other_patient_id is not None:
        if "OtherPatientIDsSequence" in ds:
            modified.add(_copy_element(ds["OtherPatientIDsSequence"]))
            seq = ds.OtherPatientIDsSequence
        else:
            modified.add(DataElement(0x00101002, "SQ", Sequence()))
            seq = Sequence()
            ds.OtherPatientIDsSequence = seq
        item = Dataset()
        item.PatientID = other_patient_id
        if "IssuerOfPatientID" in ds and ds.IssuerOfPatientID:
            item.IssuerOfPatientID = ds.IssuerOfPatientID
        item.TypeOfPatientID = "TEXT"
        ds.OtherPatientIDsSequence.append(item)
    stamp = (when or _dt.datetime.now(_dt.UTC).astimezone()).strftime("%Y%m%d%H%M%S%z")
    oas_item = Dataset()
    oas_item.ModifiedAttributesSequence = Sequence([modified])
    oas_item.AttributeModificationDateTime = stamp
    oas_item.ModifyingSystem = MODIFYING_SYSTEM
    oas_item.SourceOfPreviousValues = ""
    oas_item.ReasonForTheAttributeModification = REASON_CORRECT
    if "OriginalAttributesSequence" in ds and ds.OriginalAttributesSequence is not None:
        ds.OriginalAttributesSequence.append(oas_item)
    else:
        ds.OriginalAttributesSequence = Sequence([oas_item])


def _tag_for(keyword: str) -> int:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return int(tag)


def _copy_element(elem: DataElement) -> DataElement:
    import copy

    return copy.deepcopy(elem)
