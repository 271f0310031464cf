"""PS3.11 application profiles: which objects and encodings a medium may hold.

A :class:`Profile` says which transfer syntaxes the objects on the medium may use, whether icons
are required (and their size), which SOP classes / modalities it admits, and which keys the
directory records must carry beyond the Basic Directory IOD (STANDARDS.md §4: the H.3-2 keys of
the DVD/USB/BD/flash profiles, the XABC and CT/MR keys). The DICOMDIR itself is always Explicit VR
Little Endian, in every profile.

Simplifications (documented, deliberate): the STD-US-* profiles are modelled by their transfer
syntaxes and SOP classes only (the per-TS photometric limits are not enforced here); STD-CTMR-*
admits the enhanced CT/MR classes next to CT, MR and SC, plus GSPS and X-Ray Radiation Dose SR.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydicom import Dataset

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG2000 = "1.2.840.10008.1.2.4.91"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

# Encodings that cannot be turned into native pixels here (video): a profile that does not list
# them cannot hold such an instance at all (issue 3: "MPEG video on a CD profile is refused").
VIDEO_TRANSFER_SYNTAXES: frozenset[str] = frozenset({
    "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.100.1",  # MPEG2 MP@ML
    "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.101.1",  # MPEG2 MP@HL
    "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.102.1",  # MPEG-4 AVC/H.264
    "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.103.1",
    "1.2.840.10008.1.2.4.104", "1.2.840.10008.1.2.4.104.1",
    "1.2.840.10008.1.2.4.105", "1.2.840.10008.1.2.4.105.1",
    "1.2.840.10008.1.2.4.106", "1.2.840.10008.1.2.4.106.1",
    "1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108",  # HEVC/H.265
})

# SOP classes used by the restricted profiles.
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.1"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
XA_IMAGE = "1.2.840.10008.5.1.4.1.1.12.1"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME_IMAGE = "1.2.840.10008.5.1.4.1.1.3.1"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_INTRAORAL_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.3"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
XRAY_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"

KeyTable = Mapping[str, tuple[tuple[str, str], ...]]

# PS3.11 Table H.3-2 (DVD/USB/BD/flash with compression): Type 1C = "copy if the instance has it".
H32_KEYS: KeyTable = MappingProxyType({
    "PATIENT": (("PatientBirthDate", "1C"), ("PatientSex", "1C")),
    "SERIES": (("InstitutionName", "1C"), ("InstitutionAddress", "1C"),
               ("PerformingPhysicianName", "1C")),
    "IMAGE": (("Rows", "1"), ("Columns", "1"), ("ImageType", "1C"), ("CalibrationImage", "1C"),
              ("LossyImageCompressionRatio", "1C"), ("FrameOfReferenceUID", "1C"),
              ("SynchronizationFrameOfReferenceUID", "1C"), ("NumberOfFrames", "1C"),
              ("AcquisitionDateTime", "1C"), ("ReferencedImageSequence", "1C"),
              ("ImagePositionPatient", "1C"), ("ImageOrientationPatient", "1C"),
              ("PixelSpacing", "1C")),
})

# PS3.11 Annex B (STD-XABC-CD) record keys.
XABC_KEYS: KeyTable = MappingProxyType({
    "PATIENT": (("PatientBirthDate", "2"), ("PatientSex", "2")),
    "SERIES": (("InstitutionName", "2"), ("InstitutionAddress", "2"),
               ("PerformingPhysicianName", "2")),
    "IMAGE": (("ImageType", "1"), ("CalibrationImage", "2"), ("ReferencedImageSequence", "1C")),
})

# PS3.11 Annex D (STD-CTMR-*) IMAGE record keys.
CTMR_KEYS: KeyTable = MappingProxyType({
    "IMAGE": (("Rows", "1"), ("Columns", "1"), ("ReferencedImageSequence", "1C"),
              ("ImagePositionPatient", "1C"), ("ImageOrientationPatient", "1C"),
              ("FrameOfReferenceUID", "1C"), ("PixelSpacing", "1C")),
})

NO_KEYS: KeyTable = MappingProxyType({})


@dataclass(frozen=True)
class Profile:
    """One PS3.11 application profile (STANDARDS.md §4).

    ``sop_classes``/``modalities`` of None admit anything. ``icon_size`` is the icon edge the
    profile wants (None: the default 64 when icons are asked for); ``icon_required`` makes an
    icon mandatory on every IMAGE record. ``extra_keys`` maps a record level ("PATIENT",
    "STUDY", "SERIES", "IMAGE") to ``(keyword, type)`` pairs added to the Basic Directory keys.
    ``media`` lists the media types (``ExportOptions.media`` values) the profile suits.
    """

    name: str
    description: str
    transfer_syntaxes: frozenset[str]
    fallback_transfer_syntax: str = EXPLICIT_VR_LE
    icon_size: int | None = None
    icon_required: bool = False
    sop_classes: frozenset[str] | None = None
    modalities: frozenset[str] | None = None
    extra_keys: KeyTable = field(default_factory=lambda: NO_KEYS, hash=False)
    media: tuple[str, ...] = ()
    max_rows: int | None = None
    max_columns: int | None = None
    bits_allocated: frozenset[int] | None = None
    bits_stored: frozenset[int] | None = None

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickle by name (the tables hold read-only mappings): plans cross process boundaries."""
        return (get_profile, (self.name,))

    def accepts_transfer_syntax(self, uid: str) -> bool:
        """True when an object encoded in ``uid`` may be written as is."""
        return str(uid) in self.transfer_syntaxes

    def target_transfer_syntax(self, source_ts: str, can_encode: Iterable[str] = ()) -> str:
        """The transfer syntax an instance encoded in ``source_ts`` is written in.

        Keep ``source_ts`` when the profile allows it; otherwise the profile's fallback (Explicit
        VR Little Endian; JPEG Lossless SV1 for STD-XABC-CD). Explicit VR LE needs only a
        decoder; any other fallback must be in ``can_encode``.

        Raises
        ------
        ValueError
            The source is video (cannot be decoded here) or the fallback cannot be encoded.
        """
        source_ts = str(source_ts)
        if self.accepts_transfer_syntax(source_ts):
            return source_ts
        if source_ts in VIDEO_TRANSFER_SYNTAXES:
            raise ValueError(f"profile {self.name} cannot hold video encoded as {source_ts} "
                             f"(allowed: {', '.join(sorted(self.transfer_syntaxes))})")
        target = self.fallback_transfer_syntax
        if target != EXPLICIT_VR_LE and target not in set(can_encode):
            raise ValueError(f"profile {self.name} needs {target}, which cannot be encoded "
                             f"here from {source_ts}")
        return target

    def refusal(self, ds: Dataset) -> str | None:
        """Why this profile cannot hold the instance ``ds`` (None when it can).

        Checks the SOP class, modality, matrix size and bit depth rules of the profile; the
        transfer syntax is :meth:`target_transfer_syntax`'s business.
        """
        sop = str(ds.get("SOPClassUID", "") or "")
        if self.sop_classes is not None and sop not in self.sop_classes:
            return f"SOP Class {sop or '(none)'} is not allowed by {self.name}"
        modality = str(ds.get("Modality", "") or "")
        if self.modalities is not None and modality not in self.modalities:
            return f"modality {modality or '(none)'} is not allowed by {self.name}"
        if "PixelData" in ds or "Rows" in ds:
            rows = int(ds.get("Rows", 0) or 0)
            cols = int(ds.get("Columns", 0) or 0)
            if self.max_rows is not None and rows > self.max_rows:
                return f"{rows} rows exceed {self.max_rows} allowed by {self.name}"
            if self.max_columns is not None and cols > self.max_columns:
                return f"{cols} columns exceed {self.max_columns} allowed by {self.name}"
            bits = int(ds.get("BitsAllocated", 0) or 0)
            if self.bits_allocated is not None and bits not in self.bits_allocated:
                return f"Bits Allocated {bits} is not allowed by {self.name}"
            stored = int(ds.get("BitsStored", 0) or 0)
            if self.bits_stored is not None and stored not in self.bits_stored:
                return f"Bits Stored {stored} is not allowed by {self.name}"
        return None

    def keys_for(self, level: str) -> tuple[tuple[str, str], ...]:
        """The profile's extra ``(keyword, type)`` keys for a record level (may be empty)."""
        return self.extra_keys.get(level, ())


_GEN_UNCOMPRESSED = frozenset({EXPLICIT_VR_LE})
_GEN_JPEG = frozenset({EXPLICIT_VR_LE, JPEG_LOSSLESS_SV1, JPEG_BASELINE, JPEG_EXTENDED})
_GEN_J2K = frozenset({EXPLICIT_VR_LE, JPEG2000_LOSSLESS, JPEG2000})
_US_TS = frozenset({EXPLICIT_VR_LE, RLE_LOSSLESS, JPEG_BASELINE})


def _make_profiles() -> dict[str, Profile]:
    p: list[Profile] = [
        Profile("STD-GEN-CD", "General purpose CD-R interchange (uncompressed)",
                _GEN_UNCOMPRESSED, media=("folder", "cd")),
        Profile("STD-GEN-DVD-RAM", "General purpose DVD-RAM interchange (uncompressed)",
                _GEN_UNCOMPRESSED, media=("dvd", "dvd-dl")),
        Profile("STD-GEN-BD", "General purpose BD interchange (uncompressed)",
                _GEN_UNCOMPRESSED, media=("bd",)),
    ]
    for medium, media in (("DVD", ("dvd", "dvd-dl")), ("BD", ("bd",)), ("USB", ("usb",)),
                          ("MMC", ("usb",)), ("CF", ("usb",)), ("SD", ("usb",))):
        p.append(Profile(f"STD-GEN-{medium}-JPEG",
                         f"General purpose {medium} interchange with JPEG", _GEN_JPEG,
                         extra_keys=H32_KEYS, media=media))
        p.append(Profile(f"STD-GEN-{medium}-J2K",
                         f"General purpose {medium} interchange with JPEG 2000", _GEN_J2K,
                         extra_keys=H32_KEYS, media=media))
    p.append(Profile(
        "STD-XABC-CD", "Basic cardiac X-ray angiographic studies on CD-R",
        frozenset({JPEG_LOSSLESS_SV1}), fallback_transfer_syntax=JPEG_LOSSLESS_SV1,
        icon_size=128, icon_required=True, sop_classes=frozenset({XA_IMAGE}),
        modalities=frozenset({"XA"}), extra_keys=XABC_KEYS, media=("folder", "cd"),
        max_rows=512, max_columns=512, bits_allocated=frozenset({8}),
        bits_stored=frozenset({8})))
    ctmr_classes = frozenset({CT_IMAGE, ENHANCED_CT_IMAGE, MR_IMAGE, ENHANCED_MR_IMAGE,
                              SECONDARY_CAPTURE, GSPS, XRAY_DOSE_SR})
    for medium, media in (("CD", ("folder", "cd")), ("DVD", ("dvd", "dvd-dl"))):
        p.append(Profile(f"STD-CTMR-{medium}", f"CT and MR images on {medium}",
                         frozenset({EXPLICIT_VR_LE, JPEG_LOSSLESS_SV1}), icon_size=64,
                         sop_classes=ctmr_classes, extra_keys=CTMR_KEYS, media=media))
    for kind in ("ID", "SC", "CC"):
        for frames, classes in (("SF", frozenset({US_IMAGE})),
                                ("MF", frozenset({US_IMAGE, US_MULTIFRAME_IMAGE}))):
            for medium, media in (("CDR", ("folder", "cd")), ("DVD", ("dvd", "dvd-dl"))):
                p.append(Profile(f"STD-US-{kind}-{frames}-{medium}",
                                 f"Ultrasound ({kind}, {frames}) on {medium}", _US_TS,
                                 sop_classes=classes, modalities=frozenset({"US"}),
                                 media=media))
    p.append(Profile(
        "STD-DEN-CD", "Dental radiographs on CD-R", _GEN_UNCOMPRESSED,
        sop_classes=frozenset({DX_PRESENTATION, DX_INTRAORAL_PRESENTATION}),
        media=("folder", "cd"), bits_stored=frozenset({8, 10, 12, 16})))
    return {profile.name: profile for profile in p}


PROFILES: Mapping[str, Profile] = MappingProxyType(_make_profiles())


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (case-insensitive).

    Raises
    ------
    ValueError
        Unknown name; the message lists the known profiles.
    """
    profile = PROFILES.get(str(name).strip().upper())
    if profile is None:
        raise ValueError(f"unknown application profile {name!r}; known: {', '.join(PROFILES)}")
    return profile
