"""What the header reader returns (:class:`Header`), the keywords it reads, and the value
decoding shared by its general reader (:mod:`app.core.dicom.header`) and its fast path
(:mod:`app.core.dicom.header_fast`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.core.dicom.charsets import TEXT_VRS, CharsetDecoder
from app.core.dicom.elements import (
    UNDEFINED,
    dicom_dictionary,
    numeric_value,
)

FIRST_CHUNK = 16 * 1024


MAX_HEADER = 256 * 1024 * 1024


DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)


# Keys decoded from the dataset (top level only).
HEADER_KEYWORDS: tuple[str, ...] = (
    "SpecificCharacterSet", "ImageType", "SOPClassUID", "SOPInstanceUID", "StudyDate",
    "SeriesDate", "AcquisitionDate", "ContentDate", "StudyTime", "SeriesTime",
    "AcquisitionTime", "ContentTime", "AccessionNumber", "Modality", "Manufacturer",
    "InstitutionName", "ReferringPhysicianName", "StudyDescription", "SeriesDescription",
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "BodyPartExamined", "StudyInstanceUID", "SeriesInstanceUID", "StudyID", "SeriesNumber",
    "AcquisitionNumber", "InstanceNumber", "SamplesPerPixel", "PhotometricInterpretation",
    "NumberOfFrames", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "PlanarConfiguration", "LossyImageCompression",
    "LossyImageCompressionRatio", "LossyImageCompressionMethod",
    "RepresentativeFrameNumber", "MIMETypeOfEncapsulatedDocument", "DocumentTitle",
    "ContentLabel", "ContentDescription", "CompletionFlag", "VerificationFlag",
    "PresentationCreationDate", "PresentationCreationTime", "DoseSummationType",
    "StructureSetLabel", "RTPlanLabel", "DataPointRows", "DataPointColumns",
    "FileSetID",
)


META_KEYWORDS: tuple[str, ...] = (
    "FileMetaInformationGroupLength", "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID",
    "TransferSyntaxUID", "ImplementationClassUID", "ImplementationVersionName",
    "SourceApplicationEntityTitle",
)


_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT"})


_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SQ"})


_TRAILING_ONLY = frozenset({"ST", "LT", "UT"})


# VRs whose values are ASCII-only (no Specific Character Set, no escape sequences) and padded
# at both ends: decoded inline.
_PLAIN_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"})


_TAGS: dict[tuple[str, ...], dict[int, str]] = {}


def _tags_for(keywords: tuple[str, ...]) -> dict[int, str]:
    tags = _TAGS.get(keywords)
    if tags is None:
        by_kw = {e[4]: t for t, e in dicom_dictionary().items() if e[4]}
        tags = {by_kw[k]: k for k in keywords if k in by_kw}
        _TAGS[keywords] = tags
    return tags


_DEFAULT_TAGS: tuple[dict[int, str], dict[int, str]] | None = None


def _defaults() -> tuple[dict[int, str], dict[int, str]]:
    global _DEFAULT_TAGS
    if _DEFAULT_TAGS is None:  # a race only computes the same maps twice
        _DEFAULT_TAGS = (_tags_for(HEADER_KEYWORDS), _tags_for(META_KEYWORDS))
    return _DEFAULT_TAGS


def _default_tags() -> dict[int, str]:
    return _defaults()[0]


def _meta_tags() -> dict[int, str]:
    return _defaults()[1]


@dataclass
class Header:
    """What a file's header says (values decoded; absent or empty → None / missing).

    ``values`` by keyword (dataset, top level); ``meta`` by keyword (File Meta group);
    ``transfer_syntax`` the encoding the bytes really use (the declared one when it matches;
    for compressed pixel data, the declared one); ``declared_transfer_syntax`` what the meta
    says; ``ts_mismatch`` they disagree; ``pixel_offset``/``pixel_length`` the Pixel Data value
    (length None when encapsulated); ``truncated`` the file ends inside its Pixel Data;
    ``charset_problem`` a message when text could not be decoded cleanly.
    """

    name: str
    values: dict[str, str | None] = field(default_factory=dict)
    meta: dict[str, str | None] = field(default_factory=dict)
    transfer_syntax: str | None = None
    declared_transfer_syntax: str | None = None
    ts_mismatch: bool = False
    has_preamble: bool = False
    has_meta: bool = False
    has_pixels: bool = False
    is_dicomdir: bool = False
    pixel_offset: int | None = None
    pixel_length: int | None = None
    truncated: bool = False
    charset_problem: str | None = None

    def get(self, keyword: str, default: str | None = None) -> str | None:
        """A value by keyword, from the dataset or else the File Meta."""
        v = self.values.get(keyword)
        if v is None:
            v = self.meta.get(keyword)
        return default if v is None else v

    @property
    def sop_instance_uid(self) -> str | None:
        return self.get("SOPInstanceUID") or self.meta.get("MediaStorageSOPInstanceUID")

    @property
    def sop_class_uid(self) -> str | None:
        return self.get("SOPClassUID") or self.meta.get("MediaStorageSOPClassUID")


def _decode(buf: bytes, vr: str, off: int, length: int, little: bool,
            dec: CharsetDecoder) -> tuple[str | None, bool]:
    if length == 0 or length == UNDEFINED:
        return None, True
    if vr in _NUMERIC_VRS:
        if vr == "US" and length == 2:
            return str(buf[off] | buf[off + 1] << 8 if little else buf[off] << 8 | buf[off + 1]), True
        return numeric_value(buf, vr, off, length, little), True
    if vr in _BINARY_VRS:
        return None, True
    raw = buf[off:off + length]
    clean = True
    if raw.isascii() and b"\x1b" not in raw:
        text = raw.decode("ascii")
        if vr != "PN" and vr not in _TRAILING_ONLY:
            return (text.strip(" \0") or None), True
    elif vr in TEXT_VRS:
        text, clean = dec.decode(raw, vr)
    else:
        text = raw.decode("latin-1")
        clean = False
    text = text.rstrip(" \0") if vr in _TRAILING_ONLY else text.strip(" \0")
    if vr == "PN":
        text = text.rstrip("=")  # empty trailing component groups carry nothing
    return (text or None), clean


_FAST_VRS = {v.encode(): (v, v in ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN",
                                    "UR", "UT", "UV"))
             for v in ("AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS "
                       "ST SV TM UC UI UL UN UR US UT UV").split()}


def _tag_at(buf: bytes, pos: int, little: bool) -> int:
    order = "little" if little else "big"
    return (int.from_bytes(buf[pos:pos + 2], order) << 16) | int.from_bytes(buf[pos + 2:pos + 4],
                                                                             order)


def _length_at(buf: bytes, pos: int, little: bool, explicit: bool) -> tuple[int, int]:
    order = "little" if little else "big"
    if explicit and buf[pos + 4:pos + 6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"UN", b"OV"):
        if pos + 12 > len(buf):
            return UNDEFINED, pos + 12
        return int.from_bytes(buf[pos + 8:pos + 12], order), pos + 12
    if explicit and buf[pos + 4:pos + 6].isalpha():
        return int.from_bytes(buf[pos + 6:pos + 8], order), pos + 8
    return int.from_bytes(buf[pos + 4:pos + 8], order), pos + 8
