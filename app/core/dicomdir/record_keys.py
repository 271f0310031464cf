"""Tables for directory records: SOP Class → record type, and the keys of each record type.

Sources (STANDARDS.md §2): PS3.3 Annex F.5, cross-checked with pydicom ``fileset.py``
(``_FOUR_LEVEL_SOP_CLASSES``, ``_define_*``) and DCMTK ``dcddirif.cc`` (``sopClassToRecordType``).
Types are the record's DICOM Types: "1" must be present with a value, "1C" is copied when the
instance has it, "2" is present (empty when unknown), "3" is copied when present and not empty.
"""

from __future__ import annotations

from types import MappingProxyType

_P = "1.2.840.10008.5.1.4.1.1."  # storage SOP class root

SOP_CLASS_RECORD_TYPES: MappingProxyType[str, str] = MappingProxyType({
    # Retired standalone objects and stored print (DCMTK still maps them).
    _P + "8": "OVERLAY", _P + "9": "CURVE", _P + "129": "CURVE",
    _P + "10": "MODALITY LUT", _P + "11": "VOI LUT", _P + "27": "STORED PRINT",
    # Structured reports (incl. the retired trial classes) → SR DOCUMENT.
    **{_P + "88." + n: "SR DOCUMENT" for n in (
        "1", "2", "3", "4", "11", "22", "33", "34", "35", "40", "50", "65", "67", "68", "69",
        "70", "71", "72", "73", "74", "75", "76", "77")},
    _P + "78.6": "SR DOCUMENT",  # Spectacle Prescription Report
    _P + "79.1": "SR DOCUMENT",  # Macular Grid Thickness and Volume Report
    _P + "88.59": "KEY OBJECT DOC",
    # Presentation states and Basic Structured Display → PRESENTATION.
    **{_P + "11." + n: "PRESENTATION" for n in (
        "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12")},
    _P + "131": "PRESENTATION",
    # Waveforms.
    _P + "9.1": "WAVEFORM",  # Waveform Storage - Trial (retired)
    **{_P + "9." + n: "WAVEFORM" for n in (
        "1.1", "1.2", "1.3", "1.4", "2.1", "3.1", "4.1", "4.2", "5.1", "6.1", "6.2", "7.1",
        "7.2", "7.3", "7.4", "8.1")},
    # Radiotherapy, first generation.
    _P + "481.2": "RT DOSE",
    _P + "481.3": "RT STRUCTURE SET",
    _P + "481.5": "RT PLAN", _P + "481.8": "RT PLAN",
    _P + "481.4": "RT TREAT RECORD", _P + "481.6": "RT TREAT RECORD",
    _P + "481.7": "RT TREAT RECORD", _P + "481.9": "RT TREAT RECORD",
    # Radiotherapy, second generation (481.23/.24 are images: IMAGE).
    **{_P + "481." + n: "RADIOTHERAPY" for n in (
        "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20", "21", "22", "25")},
    "1.2.840.10008.5.1.4.34.7": "PLAN", "1.2.840.10008.5.1.4.34.10": "PLAN",
    # Registration, fiducials, raw data, spectroscopy, value map, stereometric.
    _P + "66.1": "REGISTRATION", _P + "66.3": "REGISTRATION",
    _P + "66.2": "FIDUCIAL",
    _P + "66": "RAW DATA",
    _P + "4.2": "SPECTROSCOPY",
    _P + "67": "VALUE MAP",
    _P + "77.1.5.3": "STEREOMETRIC",
    # Encapsulated documents: PDF, CDA, STL, OBJ, MTL.
    **{_P + "104." + n: "ENCAP DOC" for n in ("1", "2", "3", "4", "5")},
    # Ophthalmic measurements.
    **{_P + "78." + n: "MEASUREMENT" for n in ("1", "2", "3", "4", "5", "7", "8")},
    _P + "80.1": "MEASUREMENT",
    # Surfaces, tracts, assessments, annotations, inventories.
    _P + "66.5": "SURFACE",
    _P + "68.1": "SURFACE SCAN", _P + "68.2": "SURFACE SCAN",
    _P + "66.6": "TRACT",
    _P + "90.1": "ASSESSMENT",
    _P + "91.1": "ANNOTATION",
    _P + "201.1": "INVENTORY",
    # Single-level (root) record types.
    "1.2.840.10008.5.1.4.38.1": "HANGING PROTOCOL",
    "1.2.840.10008.5.1.4.39.1": "PALETTE",
    "1.2.840.10008.5.1.4.43.1": "IMPLANT",
    "1.2.840.10008.5.1.4.44.1": "IMPLANT ASSY",
    "1.2.840.10008.5.1.4.45.1": "IMPLANT GROUP",
})

# Record types that sit at the root of the directory, not under a SERIES (PS3.3 F.4).
ROOT_RECORD_TYPES = frozenset({"HANGING PROTOCOL", "PALETTE", "IMPLANT", "IMPLANT ASSY",
                               "IMPLANT GROUP"})

# Record types that may carry an Icon Image Sequence (STANDARDS.md §3).
ICON_RECORD_TYPES = frozenset({"SERIES", "IMAGE", "RT DOSE", "SPECTROSCOPY", "RAW DATA"})

Keys = tuple[tuple[str, str], ...]

_CONTENT_ID: Keys = (("InstanceNumber", "1"), ("ContentDate", "1"), ("ContentTime", "1"),
                     ("ContentLabel", "1"), ("ContentDescription", "2"),
                     ("ContentCreatorName", "2"))
_GENERIC: Keys = (("InstanceNumber", "1"), ("ContentDate", "1"), ("ContentTime", "1"))

RECORD_KEYS: MappingProxyType[str, Keys] = MappingProxyType({
    # The Study Instance UID is 1C in F.5 ("required when (0004,1511) is absent"), which our
    # STUDY records always are: it is listed as "1".
    "PATIENT": (("PatientName", "2"), ("PatientID", "1"), ("PatientBirthDate", "3"),
                ("PatientSex", "3")),
    "STUDY": (("StudyDate", "1"), ("StudyTime", "1"), ("AccessionNumber", "2"),
              ("StudyDescription", "2"), ("StudyInstanceUID", "1"), ("StudyID", "1")),
    "SERIES": (("Modality", "1"), ("SeriesDescription", "3"), ("SeriesInstanceUID", "1"),
               ("SeriesNumber", "1")),
    "IMAGE": (("InstanceNumber", "1"), ("NumberOfFrames", "3")),
    "SR DOCUMENT": (("InstanceNumber", "1"), ("CompletionFlag", "1"), ("VerificationFlag", "1"),
                    ("ContentDate", "1"), ("ContentTime", "1"), ("VerificationDateTime", "1C"),
                    ("ConceptNameCodeSequence", "1"), ("ContentSequence", "1C")),
    "KEY OBJECT DOC": (("InstanceNumber", "1"), ("ContentDate", "1"), ("ContentTime", "1"),
                       ("ConceptNameCodeSequence", "1"), ("ContentSequence", "1C")),
    "PRESENTATION": (("PresentationCreationDate", "1"), ("PresentationCreationTime", "1"),
                     ("InstanceNumber", "1"), ("ContentLabel", "1"),
                     ("ContentDescription", "2"), ("ContentCreatorName", "2"),
                     ("ReferencedSeriesSequence", "1C"), ("BlendingSequence", "1C")),
    "WAVEFORM": _GENERIC,
    "RT DOSE": (("InstanceNumber", "1"), ("DoseSummationType", "1")),
    "RT STRUCTURE SET": (("InstanceNumber", "1"), ("StructureSetLabel", "1"),
                         ("StructureSetDate", "2"), ("StructureSetTime", "2")),
    "RT PLAN": (("InstanceNumber", "1"), ("RTPlanLabel", "1"), ("RTPlanDate", "2"),
                ("RTPlanTime", "2")),
    "RT TREAT RECORD": (("InstanceNumber", "1"), ("TreatmentDate", "2"),
                        ("TreatmentTime", "2")),
    "RAW DATA": (("ContentDate", "1"), ("ContentTime", "1"), ("InstanceNumber", "2")),
    "ENCAP DOC": (("ContentDate", "2"), ("ContentTime", "2"), ("InstanceNumber", "1"),
                  ("DocumentTitle", "2"), ("HL7InstanceIdentifier", "1C"),
                  ("ConceptNameCodeSequence", "2"), ("MIMETypeOfEncapsulatedDocument", "1")),
    "REGISTRATION": _CONTENT_ID,
    "FIDUCIAL": _CONTENT_ID,
    "VALUE MAP": _CONTENT_ID,
    "SURFACE": _CONTENT_ID,
    "MEASUREMENT": _CONTENT_ID,
    "TRACT": _CONTENT_ID,
    "ANNOTATION": _CONTENT_ID,  # keys as pydicom's generic content identification recorder
    "INVENTORY": _GENERIC,
    "SPECTROSCOPY": (("ImageType", "1"), ("ContentDate", "1"), ("ContentTime", "1"),
                     ("InstanceNumber", "1"), ("ReferencedImageEvidenceSequence", "1C"),
                     ("NumberOfFrames", "1"), ("Rows", "1"), ("Columns", "1"),
                     ("DataPointRows", "1"), ("DataPointColumns", "1")),
    "SURFACE SCAN": (("ContentDate", "1"), ("ContentTime", "1")),
    "ASSESSMENT": (("InstanceNumber", "1"), ("InstanceCreationDate", "1"),
                   ("InstanceCreationTime", "2")),
    "RADIOTHERAPY": (("InstanceNumber", "1"), ("UserContentLabel", "1C"),
                     ("UserContentLongLabel", "1C"), ("ContentDescription", "2"),
                     ("ContentCreatorName", "2")),
    "STEREOMETRIC": (),
    "PLAN": (),
    "OVERLAY": (("OverlayNumber", "1"),),
    "CURVE": (("CurveNumber", "1"),),
    "MODALITY LUT": (("LUTNumber", "1"),),
    "VOI LUT": (("LUTNumber", "1"),),
    "STORED PRINT": (("InstanceNumber", "1"),),
    "HANGING PROTOCOL": (("HangingProtocolCreator", "1"),
                         ("HangingProtocolCreationDateTime", "1"),
                         ("HangingProtocolDefinitionSequence", "1"),
                         ("NumberOfPriorsReferenced", "1"),
                         ("HangingProtocolUserIdentificationCodeSequence", "2")),
    "PALETTE": (("ContentLabel", "1"), ("ContentDescription", "2")),
    "IMPLANT": (("Manufacturer", "1"), ("ImplantName", "1"), ("ImplantSize", "1C"),
                ("ImplantPartNumber", "1")),
    "IMPLANT ASSY": (("ImplantAssemblyTemplateName", "1"), ("Manufacturer", "1"),
                     ("ProcedureTypeCodeSequence", "1")),
    "IMPLANT GROUP": (("ImplantTemplateGroupName", "1"), ("ImplantTemplateGroupIssuer", "1")),
})
