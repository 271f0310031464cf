"""Stage 3 of the DICOMDIR parser: decode the linked records into the model.

Each record is decoded with its own Specific Character Set, falling back to its parent's and
then the dataset's (STANDARDS.md §2 "Specific Character Set"); missing Type 1 keys become
``missing-key`` warnings (STANDARDS.md §2 tables); icons are checked and kept undecoded
(STANDARDS.md §3); orphans get placeholder parents, root-level non-PATIENT records go to
``other_records``. Values are decoded in one pass per record with a cache of ASCII values.
"""

from __future__ import annotations

import posixpath
import struct
from typing import TYPE_CHECKING

from app.core.charsets import TEXT_VRS, CharsetDecoder, decoder_for
from app.core.dcmbytes import UNDEFINED, dicom_dictionary, numeric_value
from app.core.dicomdir_scan import (
    LEAF_TYPES,
    PATIENT,
    ROOT_ONLY,
    SERIES,
    STUDY,
    T_CHARSET,
    T_FILE_ID,
    T_ICON,
    RawDicomdir,
    RawRecord,
)
from app.core.dicomdir_tree import Tree
from app.core.model import Icon, Instance, Patient, Problem, Series, Study

if TYPE_CHECKING:
    from app.core.dicomdir import DicomdirParse

__all__ = ["RecordBuilder", "REQUIRED_KEYS", "FILE_KEYS", "split_file_id"]

# Type 1 keys by record type (STANDARDS.md §2, pydicom `_define_*`, dcmtk).
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PatientID",),
    "STUDY": ("StudyDate", "StudyTime", "StudyID", "StudyInstanceUID"),
    "SERIES": ("Modality", "SeriesInstanceUID", "SeriesNumber"),
    "IMAGE": ("InstanceNumber",),
    "SR DOCUMENT": ("InstanceNumber", "CompletionFlag", "VerificationFlag", "ContentDate",
                    "ContentTime", "ConceptNameCodeSequence"),
    "KEY OBJECT DOC": ("InstanceNumber", "ContentDate", "ContentTime",
                       "ConceptNameCodeSequence"),
    "PRESENTATION": ("PresentationCreationDate", "PresentationCreationTime", "InstanceNumber",
                     "ContentLabel"),
    "RT DOSE": ("InstanceNumber", "DoseSummationType"),
    "RT STRUCTURE SET": ("InstanceNumber", "StructureSetLabel"),
    "RT PLAN": ("InstanceNumber", "RTPlanLabel"),
    "WAVEFORM": ("InstanceNumber", "ContentDate", "ContentTime"),
    "RAW DATA": ("ContentDate", "ContentTime"),
    "ENCAP DOC": ("InstanceNumber", "MIMETypeOfEncapsulatedDocument"),
    "SPECTROSCOPY": ("ImageType", "ContentDate", "ContentTime", "InstanceNumber",
                     "NumberOfFrames", "Rows", "Columns", "DataPointRows", "DataPointColumns"),
}
for _t in ("REGISTRATION", "FIDUCIAL", "VALUE MAP", "SURFACE", "MEASUREMENT", "TRACT"):
    REQUIRED_KEYS[_t] = ("InstanceNumber", "ContentDate", "ContentTime", "ContentLabel")
# Keys every record that references a file must carry (Type 1C, PS3.3 F.5).
FILE_KEYS = ("ReferencedFileID", "ReferencedSOPClassUIDInFile",
             "ReferencedSOPInstanceUIDInFile", "ReferencedTransferSyntaxUIDInFile")

_MAPS: dict[str, dict] = {}


def _maps() -> dict[str, dict]:
    """Keyword ↔ tag maps from the data dictionary, built on first use."""
    if not _MAPS:
        dictionary = dicom_dictionary()
        tags = {entry[4]: tag for tag, entry in dictionary.items() if entry[4]}
        # One update call: other threads see all three maps or none.
        _MAPS.update(
            keyword={tag: entry[4] for tag, entry in dictionary.items() if entry[4]},
            required={t: tuple((k, tags[k]) for k in keys) for t, keys in REQUIRED_KEYS.items()},
            file_keys={"": tuple((k, tags[k]) for k in FILE_KEYS)})
    return _MAPS


# Keys that are structure or go to model fields: not copied into ``attrs``.
_STRUCTURAL = frozenset({0x00041400, 0x00041410, 0x00041420, 0x00041430, 0x00041500,
                         0x00041510, 0x00041511, 0x00041512, T_ICON, 0xFFFEE000})
_PATIENT_FIELDS = {0x00100020: "patient_id", 0x00100010: "patient_name",
                   0x00100030: "birth_date", 0x00100040: "sex"}
_STUDY_FIELDS = {0x0020000D: "study_uid", 0x00080020: "study_date", 0x00080030: "study_time",
                 0x00200010: "study_id", 0x00080050: "accession", 0x00081030: "description"}
_SERIES_FIELDS = {0x0020000E: "series_uid", 0x00080060: "modality",
                  0x00200011: "series_number", 0x0008103E: "description"}
_INSTANCE_FIELDS = {0x00041511: "sop_instance_uid", 0x00041510: "sop_class_uid",
                    0x00041512: "transfer_syntax_uid", 0x00200013: "instance_number"}
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SQ"})
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT"})
_TRAILING_ONLY = frozenset({"ST", "LT", "UT"})
# Padded at both ends, and decoded the same way whatever the VR when the bytes are ASCII.
_STRIP_BOTH = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH", "TM", "UI",
                         "UC", "UR"})
_MISSING = object()


def split_file_id(value: str) -> tuple[str, ...]:
    """Referenced File ID components: split on ``\\`` and ``/``, space and NUL padding
    stripped, empty components dropped (STANDARDS.md §7 "Referenced File ID").

    Except leading ones: an ID recorded as absolute (``\\X``, ``/X``) or UNC
    (``\\\\server\\share``) keeps one or two leading ``""`` components, so that the
    resolver sees it for what it is and refuses it (STANDARDS.md §7 "Security").
    """
    if "/" in value:
        value = value.replace("/", "\\")
    parts = value.split("\\")
    if " " in value or "\0" in value:
        parts = [c.strip(" \0") for c in parts]
    if "" not in parts:
        return tuple(parts)
    lead = 0
    while lead < len(parts) and parts[lead] == "":
        lead += 1
    rest = [p for p in parts[lead:] if p]
    if not rest:
        return ()
    return ("",) * min(lead, 2) + tuple(rest)


class RecordBuilder:
    """Stage 3: decode the linked records into the model."""

    def __init__(self, raw: RawDicomdir, name: str, result: DicomdirParse) -> None:
        self.raw = raw
        self.buf = raw.buf
        self.little = raw.layout.little
        self.name = name
        self.base = posixpath.dirname(name.replace("\\", "/"))
        self.result = result
        self.problems = result.problems
        self.bad_charset_reported: set[str] = set()
        self._placeholders: dict[tuple[int, str], object] = {}
        maps = _maps()
        # Decoded ASCII values by raw bytes: DICOMDIR values repeat a lot (dates, UIDs of
        # SOP classes and transfer syntaxes, image types).
        self.ascii_cache: dict[bytes, str] = {}
        self._plans: dict[int, dict[int, tuple[bool, str] | None]] = {}
        self.keywords: dict[int, str] = maps["keyword"]
        self.required: dict[str, tuple[tuple[str, int], ...]] = maps["required"]
        self.file_keys: tuple[tuple[str, int], ...] = maps["file_keys"][""]
        top_cs = raw.top.get(T_CHARSET)
        self.top_decoder = self._charset(top_cs) if top_cs else decoder_for(None)

    # -- values ------------------------------------------------------------------------
    def _charset_terms(self, value: str) -> CharsetDecoder:
        dec = decoder_for(value)
        if not dec.valid:
            terms = "\\".join(dec.terms)
            self._bad_charset(None, f"Specific Character Set {terms!r} is not valid; decoded "
                              "with the closest known character set")
        return dec

    def _charset(self, v: tuple[str, int, int]) -> CharsetDecoder:
        if v[2] == UNDEFINED:
            return decoder_for(None)
        dec = decoder_for(self.buf[v[1]:v[1] + v[2]])
        if not dec.valid:
            terms = "\\".join(dec.terms)
            self._bad_charset(None, f"Specific Character Set {terms!r} is not valid; decoded "
                              "with the closest known character set")
        return dec

    def _bad_charset(self, where: str | None, message: str) -> None:
        if message in self.bad_charset_reported or len(self.bad_charset_reported) > 50:
            return
        self.bad_charset_reported.add(message)
        self.problems.append(Problem("warning", "bad-charset", where or self.name, message))

    def value(self, v: tuple[str, int, int] | None, dec: CharsetDecoder,
              where: str | None = None) -> str | None:
        """Decoded string of an element; None when absent or empty."""
        if v is None:
            return None
        vr, off, length = v
        if length == 0 or length == UNDEFINED:
            return None
        if vr in _NUMERIC_VRS:
            return numeric_value(self.buf, vr, off, length, self.little)
        if vr in _BINARY_VRS:
            return None
        raw = self.buf[off:off + length]
        if vr in TEXT_VRS:
            text, clean = dec.decode(raw, vr)
            if not clean:
                terms = "\\".join(dec.terms) or "default"
                self._bad_charset(where, "a value could not be decoded with its Specific "
                                  f"Character Set ({terms}); shown with replacement "
                                  "characters")
            text = text.strip(" \0") if vr not in ("ST", "LT", "UT") else text.rstrip(" \0")
            if vr == "PN":
                text = text.rstrip("=")  # empty trailing component groups carry nothing
        else:
            text = raw.decode("ascii", "replace").strip(" \0")
        return text or None

    def _plan(self, mapping: dict[int, str]) -> dict[int, tuple[bool, str] | None]:
        """Per-tag decoding plan for one field mapping: (is_field, name) or None (skip)."""
        plan = self._plans.get(id(mapping))
        if plan is None:
            plan = {}
            self._plans[id(mapping)] = plan
        return plan

    def _step(self, plan: dict[int, tuple[bool, str] | None], mapping: dict[int, str],
              tag: int) -> tuple[bool, str] | None:
        name = mapping.get(tag)
        if name is not None:
            step: tuple[bool, str] | None = (True, name)
        elif tag in _STRUCTURAL or (kw := self.keywords.get(tag)) is None:
            step = None
        else:
            step = (False, kw)
        plan[tag] = step
        return step

    def decode_record(self, rec: RawRecord, mapping: dict[int, str], dec: CharsetDecoder,
                      where: str | None = None) -> tuple[dict[str, str | None], dict[str, str]]:
        """Model fields (``mapping``: tag → field name; absent → None) and ``attrs`` (every
        other plain record key, by keyword) of one record, in one pass."""
        fields: dict[str, str | None] = dict.fromkeys(mapping.values())
        attrs: dict[str, str] = {}
        buf = self.buf
        plan = self._plan(mapping)
        skip_vrs = _BINARY_VRS
        strip_both = _STRIP_BOTH
        cache = self.ascii_cache
        missing = _MISSING
        for tag, text in rec.vals.items():  # already decoded during the scan
            step = plan.get(tag, missing)
            if step is missing:
                step = self._step(plan, mapping, tag)
            if step is not None and text:
                if step[0]:
                    fields[step[1]] = text
                else:
                    attrs[step[1]] = text
        for tag, v in rec.elems.items():
            step = plan.get(tag, missing)
            if step is missing:
                step = self._step(plan, mapping, tag)
            if step is None:
                continue
            vr, off, length = v
            if length == 0 or length == UNDEFINED or vr in skip_vrs:
                continue
            if vr in strip_both:
                raw = buf[off:off + length]
                text = cache.get(raw)
                if text is None:
                    if raw.isascii() and b"\x1b" not in raw:
                        text = raw.decode("ascii").strip(" \0")
                        if length <= 64 and len(cache) < 200_000:
                            cache[raw] = text
                    else:
                        text = self.value(v, dec, where)  # charset-dependent: not cached
            elif vr in _NUMERIC_VRS:
                text = numeric_value(buf, vr, off, length, self.little)
            else:
                text = self.value(v, dec, where)
            if text:
                if step[0]:
                    fields[step[1]] = text
                else:
                    attrs[step[1]] = text
        return fields, attrs

    # -- problems ----------------------------------------------------------------------
    def where(self, rec: RawRecord, file_id: tuple[str, ...] | None) -> str:
        if file_id:
            return posixpath.join(self.base, *file_id) if self.base else "/".join(file_id)
        return self.name

    def check_keys(self, rec: RawRecord, where: str, leaf: bool) -> None:
        required = self.required.get(rec.rtype, ())
        if leaf and rec.rtype != "PRIVATE":
            required = self.file_keys + required
        if not required:
            return
        e = rec.elems
        vals = rec.vals
        buf = self.buf
        missing = []
        for kw, tag in required:
            text = vals.get(tag)
            if text is not None:
                if not text:
                    missing.append(kw)
                continue
            v = e.get(tag)
            if v is None or v[2] == 0 or (v[0] != "SQ" and v[2] <= 16 and (
                    not buf[v[1]:v[1] + v[2]].strip(b" \0"))):
                missing.append(kw)
        if missing:
            self.problems.append(Problem(
                "warning", "missing-key", where,
                f"{rec.rtype or 'untyped'} record at offset {rec.pos} lacks Type 1 "
                f"key{'s' if len(missing) > 1 else ''} {', '.join(missing)}"))

    # -- icon --------------------------------------------------------------------------
    def icon(self, rec: RawRecord, where: str) -> Icon | None:
        if rec.icon is None:
            if T_ICON in rec.elems and rec.elems[T_ICON][2] not in (0,):
                self._bad_icon(where, rec, "Icon Image Sequence has no item")
            return None
        if not rec.icon_complete:
            self._bad_icon(where, rec, "Icon Image Sequence item is truncated")
            return None
        e = rec.icon
        buf = self.buf

        def num(tag: int) -> int | None:
            v = e.get(tag)
            if v is None or v[2] == UNDEFINED or v[2] < 2:
                return None
            if v[0] in ("US", "SS", "UN", "OB", "OW") or v[2] == 2:
                fmt = ("<" if self.little else ">") + ("h" if v[0] == "SS" else "H")
                return struct.unpack_from(fmt, buf, v[1])[0]
            try:
                return int(buf[v[1]:v[1] + v[2]].decode("ascii").strip(" \0"))
            except ValueError:
                return None

        rows, cols = num(0x00280010), num(0x00280011)
        bits = num(0x00280100)
        stored = num(0x00280101) or bits
        spp = num(0x00280002) or 1
        pixrep = num(0x00280103) or 0
        photometric = self.value(e.get(0x00280004), decoder_for(None)) or ""
        pd = e.get(0x7FE00010)
        if not rows or not cols or not bits:
            return self._bad_icon(where, rec, "Icon Image Sequence item lacks Rows, Columns "
                                  "or Bits Allocated")
        if pd is None or pd[2] == UNDEFINED:
            return self._bad_icon(where, rec, "icon has no native Pixel Data")
        if bits not in (1, 8, 16) or spp not in (1, 3) or rows > 4096 or cols > 4096:
            return self._bad_icon(where, rec, f"icon has an unsupported layout ({rows}x{cols}, "
                                  f"{bits} bits, {spp} samples)")
        need = (rows * cols * spp * bits + 7) // 8
        if pd[2] < need:
            return self._bad_icon(where, rec, f"icon Pixel Data holds {pd[2]} bytes, "
                                  f"{need} needed for {rows}x{cols}x{bits} bits")
        palette = None
        if photometric == "PALETTE COLOR":
            luts = []
            for dtag, ltag in ((0x00281101, 0x00281201), (0x00281102, 0x00281202),
                               (0x00281103, 0x00281203)):
                d, lut = e.get(dtag), e.get(ltag)
                if d is None or lut is None or d[2] < 6 or lut[2] in (0, UNDEFINED):
                    return self._bad_icon(where, rec, "PALETTE COLOR icon lacks its lookup "
                                          "tables")
                desc = struct.unpack_from(("<" if self.little else ">") + "HHH", buf, d[1])
                luts.append((desc, bytes(buf[lut[1]:lut[1] + lut[2]])))
            palette = (luts[0][0], luts[0][1], luts[1][1], luts[2][1])
        elif not photometric:
            return self._bad_icon(where, rec, "icon lacks Photometric Interpretation")
        return Icon(rows=rows, columns=cols, photometric=photometric, bits_allocated=bits,
                    bits_stored=stored or bits, pixel_data=bytes(buf[pd[1]:pd[1] + pd[2]]),
                    samples_per_pixel=spp, pixel_representation=pixrep, palette=palette,
                    little_endian=self.little)

    def _bad_icon(self, where: str, rec: RawRecord, msg: str) -> None:
        self.problems.append(Problem("warning", "bad-icon", where,
                                     f"{rec.rtype} record at offset {rec.pos}: {msg}"))
        return None

    # -- tree → model ------------------------------------------------------------------
    def build(self, tree: Tree) -> None:
        records = self.raw.records
        result = self.result
        # Stack of (record index, patient, study, series, charset decoder).
        stack: list[tuple[int, Patient | None, Study | None, Series | None, CharsetDecoder,
                          int]] = []
        for idx in reversed(tree.roots):
            stack.append((idx, None, None, None, self.top_decoder, 0))
        children = tree.children
        check_inuse = tree.by_offsets
        while stack:
            idx, patient, study, series, dec, depth = stack.pop()
            rec = records[idx]
            if check_inuse and not rec.in_use:
                continue  # inactive: hide it and its subtree
            if not rec.complete:
                continue
            csv = rec.vals.get(T_CHARSET)
            if csv is not None:
                dec = self._charset_terms(csv)
            else:
                cs = rec.elems.get(T_CHARSET)
                if cs is not None:
                    dec = self._charset(cs)
            t = rec.rtype
            if t == PATIENT or (t not in (STUDY, SERIES) and idx in children
                                and t not in LEAF_TYPES):
                if t != PATIENT:
                    self.problems.append(Problem(
                        "warning", "dicomdir-recovered", self.name,
                        f"record at offset {rec.pos} has type {t or 'none'!r} but holds "
                        "lower-level records: read as a PATIENT record"))
                self.check_keys(rec, self.name, False) if t == PATIENT else None
                f, a = self.decode_record(rec, _PATIENT_FIELDS, dec)
                patient = Patient(**f, attrs=a)
                result.patients.append(patient)
                study = series = None
            elif t == STUDY:
                self.check_keys(rec, self.name, False)
                patient = patient or self._placeholder_patient(rec)
                f, a = self.decode_record(rec, _STUDY_FIELDS, dec)
                study = Study(**f, attrs=a)
                patient.studies.append(study)
                series = None
            elif t == SERIES:
                self.check_keys(rec, self.name, False)
                if study is None:
                    patient = patient or self._placeholder_patient(rec)
                    study = self._placeholder_study(patient, rec)
                f, a = self.decode_record(rec, _SERIES_FIELDS, dec)
                series = Series(**f, attrs=a)
                series.icon = self.icon(rec, self.name)
                study.series.append(series)
            else:
                inst = self.instance(rec, dec)
                if series is None and (t in ROOT_ONLY or t == "PRIVATE" or (
                        t not in LEAF_TYPES and patient is None)):
                    result.other_records.append(inst)
                else:
                    if series is None:
                        if study is None:
                            patient = patient or self._placeholder_patient(rec)
                            study = self._placeholder_study(patient, rec)
                        series = self._placeholder_series(study, rec)
                    series.instances.append(inst)
            kids = children.get(idx)
            if kids:
                if depth > 64:
                    continue
                for k in reversed(kids):
                    stack.append((k, patient, study, series, dec, depth + 1))

    def instance(self, rec: RawRecord, dec: CharsetDecoder) -> Instance:
        file_id: tuple[str, ...] | None = None
        fid_text = rec.vals.get(T_FILE_ID)
        if fid_text is not None:
            file_id = split_file_id(fid_text) or None
        else:
            fid_v = rec.elems.get(T_FILE_ID)
            if fid_v is not None and fid_v[2] not in (0, UNDEFINED):
                file_id = split_file_id(self.buf[fid_v[1]:fid_v[1] + fid_v[2]]
                                        .decode("latin-1")) or None
        where = self.where(rec, file_id)
        self.check_keys(rec, where, True)
        f, a = self.decode_record(rec, _INSTANCE_FIELDS, dec, where)
        inst = Instance(**f, record_type=rec.rtype or "IMAGE", path=None, file_id=file_id,
                        dicomdir=self.name,
                        attrs=a)
        if inst.sop_instance_uid is None and "SOPInstanceUID" in inst.attrs:
            inst.sop_instance_uid = inst.attrs["SOPInstanceUID"]
        inst.icon = self.icon(rec, where)
        return inst

    def _placeholder_patient(self, rec: RawRecord) -> Patient:
        key = (0, "patient")
        p = self._placeholders.get(key)
        if p is None:
            p = Patient(patient_id=None)
            self.result.patients.append(p)
            self._placeholders[key] = p
            self.problems.append(Problem(
                "warning", "dicomdir-recovered", self.name,
                f"{rec.rtype} record at offset {rec.pos} has no PATIENT record above it: "
                "listed under an unnamed patient"))
        return p  # type: ignore[return-value]

    def _placeholder_study(self, patient: Patient, rec: RawRecord) -> Study:
        key = (id(patient), "study")
        st = self._placeholders.get(key)
        if st is None:
            st = Study(study_uid=None)
            patient.studies.append(st)
            self._placeholders[key] = st
            self.problems.append(Problem(
                "warning", "dicomdir-recovered", self.name,
                f"{rec.rtype} record at offset {rec.pos} has no STUDY record above it: "
                "listed under an unnamed study"))
        return st  # type: ignore[return-value]

    def _placeholder_series(self, study: Study, rec: RawRecord) -> Series:
        key = (id(study), "series")
        se = self._placeholders.get(key)
        if se is None:
            se = Series(series_uid=None)
            study.series.append(se)
            self._placeholders[key] = se
            self.problems.append(Problem(
                "warning", "dicomdir-recovered", self.name,
                f"{rec.rtype} record at offset {rec.pos} has no SERIES record above it: "
                "listed under an unnamed series"))
        return se  # type: ignore[return-value]
