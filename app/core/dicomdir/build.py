"""Stage 3 of the DICOMDIR parser: decode the linked records into the model.

Each record is decoded with its own Specific Character Set, falling back to its parent's and
then the dataset's (STANDARDS.md §2 "Specific Character Set"); missing Type 1 keys become
``missing-key`` warnings (STANDARDS.md §2 tables); icons are checked and kept undecoded
(STANDARDS.md §3); orphans get placeholder parents, root-level non-PATIENT records go to
``other_records``. Values are decoded in one pass per record with a cache of ASCII values.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

from app.core.dicom.charsets import CharsetDecoder, decoder_for, string_value, zeros_inside
from app.core.dicom.elements import (
    UNDEFINED,
    VALIDATORS,
    dicom_dictionary,
    numeric_value,
    valid_uid,
)
from app.core.dicom.layout import icon_item
from app.core.dicomdir.raw import (
    LEAF_TYPES,
    PATIENT,
    ROOT_ONLY,
    SERIES,
    STUDY,
    T_CHARSET,
    T_FILE_ID,
    T_ICON,
    DicomdirParse,
    RawDicomdir,
    RawRecord,
)
from app.core.dicomdir.tree import (
    FILE_KEYS,
    REQUIRED_KEYS,
    Tree,
    keyword_maps,
    missing_keys,
    split_file_id,
)
from app.core.model import Icon, Instance, Patient, Problem, Series, Study

__all__ = ["RecordBuilder", "REQUIRED_KEYS", "FILE_KEYS", "split_file_id"]

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
# Padded at both ends, and decoded the same way whatever the VR when the bytes are ASCII.
_STRIP_BOTH = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH", "TM", "UI",
                         "UC", "UR"})
_MISSING = object()
# The keys a plain IMAGE record always has (structure and model fields).
_LEAF_KEYS = frozenset({0x00041430, T_FILE_ID, 0x00041510, 0x00041511, 0x00041512, 0x00200013})
# Decoding plan of one tag: (is a model field, field name or keyword, validator, keyword).
_Step = tuple[bool, str, "Callable[[str], bool] | None", str]


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
        self._placeholders: dict[tuple[int, str, int], object] = {}
        maps = keyword_maps()
        # Decoded ASCII values by raw bytes: DICOMDIR values repeat a lot (dates, UIDs of
        # SOP classes and transfer syntaxes, image types).
        self.ascii_cache: dict[bytes, str] = {}
        self._plans: dict[int, dict[int, tuple[bool, str] | None]] = {}
        self.keywords: dict[int, str] = maps["keyword"]
        self.dictionary = dicom_dictionary()
        self._ok: set[str] = set()  # short values that passed their VR's check
        self.placeholders: set[int] = set()  # ids of placeholder Patient/Study/Series
        self.bad_values = False  # some value was invalid or cut by damage
        self.required: dict[str, tuple[tuple[str, int], ...]] = maps["required"]
        self.file_keys: tuple[tuple[str, int], ...] = maps["file_keys"][""]
        top_cs = raw.top.get(T_CHARSET)
        self.top_decoder = self._charset(top_cs) if top_cs else decoder_for(None)

    # -- values ------------------------------------------------------------------------
    def _charset_terms(self, value: str | bytes) -> CharsetDecoder:
        dec = decoder_for(value)
        if not dec.valid:
            terms = "\\".join(dec.terms)
            self._bad_charset(None, f"Specific Character Set {terms!r} is not valid; decoded "
                              "with the closest known character set")
        return dec

    def _charset(self, v: tuple[str, int, int]) -> CharsetDecoder:
        if v[2] == UNDEFINED:
            return decoder_for(None)
        return self._charset_terms(self.buf[v[1]:v[1] + v[2]])

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
        text, clean = string_value(self.buf[off:off + length], vr, dec)
        if not clean:
            terms = "\\".join(dec.terms) or "default"
            self._bad_charset(where, "a value could not be decoded with its Specific "
                              f"Character Set ({terms}); shown with replacement characters")
        return text

    def _step(self, plan: dict[int, _Step | None], mapping: dict[int, str],
              tag: int) -> _Step | None:
        name = mapping.get(tag)
        entry = self.dictionary.get(tag)
        check = VALIDATORS.get(entry[0][:2]) if entry is not None else None
        if name is not None:
            step: _Step | None = (True, name, check, self.keywords.get(tag, name))
        elif tag in _STRUCTURAL or (kw := self.keywords.get(tag)) is None:
            step = None
        else:
            step = (False, kw, check, kw)
        plan[tag] = step
        return step

    def _valid(self, check: Callable[[str], bool], text: str) -> bool:
        """``text`` passes ``check`` (each value of a multi-valued element); short values
        that passed are remembered (dates, times, SOP Class and Transfer Syntax UIDs)."""
        if text in self._ok:
            return True
        ok = check(text) or ("\\" in text and all(check(v) for v in text.split("\\")))
        if ok and len(text) <= 32 and len(self._ok) < 50_000:
            self._ok.add(text)
        return ok

    def decode_record(self, rec: RawRecord, mapping: dict[int, str], dec: CharsetDecoder,
                      where: str | tuple[str, ...] | None = None,
                      invalid: list[tuple[str, str]] | None = None,
                      ) -> tuple[dict[str, str | None], dict[str, str]]:
        """Model fields (``mapping``: tag → field name; absent → None) and ``attrs`` (every
        other plain record key, by keyword) of one record, in one pass. A UID, date or time
        that is not a valid value of its VR is left out (QA-14) and listed in ``invalid``
        as ``(keyword, value)``. ``where``: the record's file (File ID) or None."""
        fields: dict[str, str | None] = dict.fromkeys(mapping.values())
        attrs: dict[str, str] = {}
        plan = self._plans.get(id(mapping))
        if plan is None:
            plan = self._plans[id(mapping)] = {}
        missing = _MISSING
        ok = self._ok
        for tag, text in rec.vals.items():  # already decoded during the scan
            step = plan.get(tag, missing)
            if step is missing:
                step = self._step(plan, mapping, tag)
            if step is not None and text:
                if step[2] is not None and text not in ok and not self._valid(step[2], text):
                    if invalid is not None:
                        invalid.append((step[3], text))
                elif step[0]:
                    fields[step[1]] = text
                else:
                    attrs[step[1]] = text
        if rec.elems:
            self._decode_elems(rec, plan, mapping, dec, where, invalid, fields, attrs)
        return fields, attrs

    def _decode_elems(self, rec: RawRecord, plan: dict[int, _Step | None],
                      mapping: dict[int, str], dec: CharsetDecoder,
                      where: str | tuple[str, ...] | None,
                      invalid: list[tuple[str, str]] | None, fields: dict[str, str | None],
                      attrs: dict[str, str]) -> None:
        """The part of :meth:`decode_record` for elements not decoded during the scan."""
        buf = self.buf
        cache = self.ascii_cache
        missing = _MISSING
        for tag, v in rec.elems.items():
            step = plan.get(tag, missing)
            if step is missing:
                step = self._step(plan, mapping, tag)
            if step is None:
                continue
            vr, off, length = v
            if length == 0 or length == UNDEFINED or vr in _BINARY_VRS:
                continue
            if (vr not in _NUMERIC_VRS and tag not in (T_FILE_ID, T_CHARSET)
                    and zeros_inside(buf, off, length, vr == "UI")):
                if invalid is not None:  # a zeroed stretch inside the value: damage
                    invalid.append((step[3], "(zeros inside the value)"))
                continue
            if vr in _STRIP_BOTH:
                raw = buf[off:off + length]
                text = cache.get(raw)
                if text is None:
                    if raw.isascii() and b"\x1b" not in raw:
                        text = raw.decode("ascii").strip(" \0")
                        if not text.isprintable() and tag != T_CHARSET:
                            if invalid is not None:
                                invalid.append((step[3], text))
                            continue
                        if length <= 64 and len(cache) < 200_000:
                            cache[raw] = text
                    else:  # charset-dependent: not cached
                        text = self.value(v, dec, self._where(where))
            elif vr in _NUMERIC_VRS:
                text = numeric_value(buf, vr, off, length, self.little)
            else:
                text = self.value(v, dec, self._where(where))
            if text:
                if step[2] is not None and not self._valid(step[2], text):
                    if invalid is not None:
                        invalid.append((step[3], text))
                elif step[0]:
                    fields[step[1]] = text
                else:
                    attrs[step[1]] = text

    # -- problems ----------------------------------------------------------------------
    def _where(self, file_id: str | tuple[str, ...] | None) -> str:
        """Where a record's problem is: its file (from the File ID components) or the
        DICOMDIR."""
        if isinstance(file_id, str):
            return file_id
        if file_id:
            return posixpath.join(self.base, *file_id) if self.base else "/".join(file_id)
        return self.name

    def check_keys(self, rec: RawRecord, where: str | tuple[str, ...] | None, leaf: bool,
                   invalid: list[tuple[str, str]] | None = None) -> None:
        """``missing-key`` for absent or empty Type 1 keys; values that were left out as
        invalid (``invalid``) or cut by damage (``rec.suspect``) are reported here too."""
        if invalid or rec.suspect:
            self._report_values(rec, where, invalid or [])
        required = self.required.get(rec.rtype, ())
        if leaf and rec.rtype != "PRIVATE":
            required = self.file_keys + required
        if not required:
            return
        missing = missing_keys(rec, required, self.buf, {k for k, _ in invalid or ()})
        if missing:
            self.problems.append(Problem(
                "warning", "missing-key", self._where(where),
                f"{rec.rtype or 'untyped'} record at offset {rec.pos} lacks Type 1 "
                f"key{'s' if len(missing) > 1 else ''} {', '.join(missing)}"))

    def _report_values(self, rec: RawRecord, where: str | tuple[str, ...] | None,
                       invalid: list[tuple[str, str]]) -> None:
        self.bad_values = True
        parts = [f"{kw} {ascii(text[:70])} is not a valid value" for kw, text in invalid[:4]]
        cut = [self.keywords.get(t, f"({t >> 16:04X},{t & 0xFFFF:04X})") for t in rec.suspect]
        if cut:
            parts.append(f"{', '.join(cut)} may have been cut by a damaged stretch")
        self.problems.append(Problem(
            "warning", "dicomdir-recovered", self._where(where),
            f"{rec.rtype or 'untyped'} record at offset {rec.pos}: {'; '.join(parts)}; "
            "ignored (the file's own header has the right value)"))

    # -- icon --------------------------------------------------------------------------
    def icon(self, rec: RawRecord, where: str | tuple[str, ...] | None) -> Icon | None:
        if rec.icon is None:
            if T_ICON in rec.elems and rec.elems[T_ICON][2] not in (0,):
                self._bad_icon(where, rec, "Icon Image Sequence has no item")
            return None
        if not rec.icon_complete:
            self._bad_icon(where, rec, "Icon Image Sequence item is truncated")
            return None
        got = icon_item(self.buf, self.little, rec.icon)
        if isinstance(got, str):
            return self._bad_icon(where, rec, got)
        return got

    def _bad_icon(self, where: str | tuple[str, ...] | None, rec: RawRecord, msg: str) -> None:
        self.problems.append(Problem("warning", "bad-icon", self._where(where),
                                     f"{rec.rtype} record at offset {rec.pos}: {msg}"))
        return None

    # -- tree → model ------------------------------------------------------------------
    def build(self, tree: Tree) -> None:
        """Decode the records of ``tree`` into the model: placeholders stand in for parents
        that are missing or were lost to damage (one per orphan group of ``tree.groups``)."""
        records = self.raw.records
        result = self.result
        # Stack of (record index, patient, study, series, charset decoder, depth, group).
        stack: list[tuple[int, Patient | None, Study | None, Series | None, CharsetDecoder,
                          int, int]] = []
        groups = tree.groups
        for idx in reversed(tree.roots):
            stack.append((idx, None, None, None, self.top_decoder, 0, groups.get(idx, 0)))
        children = tree.children
        check_inuse = tree.by_offsets
        while stack:
            idx, patient, study, series, dec, depth, group = stack.pop()
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
            invalid: list[tuple[str, str]] = []
            if t == PATIENT or (t not in (STUDY, SERIES) and idx in children
                                and t not in LEAF_TYPES):
                if t != PATIENT:
                    self.problems.append(Problem(
                        "warning", "dicomdir-recovered", self.name,
                        f"record at offset {rec.pos} has type {t or 'none'!r} but holds "
                        "lower-level records: read as a PATIENT record"))
                f, a = self.decode_record(rec, _PATIENT_FIELDS, dec, None, invalid)
                if t == PATIENT or invalid or rec.suspect:
                    self.check_keys(rec, self.name, False, invalid)
                patient = Patient(**f, attrs=a)
                result.patients.append(patient)
                study = series = None
            elif t == STUDY:
                f, a = self.decode_record(rec, _STUDY_FIELDS, dec, None, invalid)
                self.check_keys(rec, self.name, False, invalid)
                patient = patient or self._placeholder_patient(rec)
                study = Study(**f, attrs=a)
                patient.studies.append(study)
                series = None
            elif t == SERIES:
                f, a = self.decode_record(rec, _SERIES_FIELDS, dec, None, invalid)
                self.check_keys(rec, self.name, False, invalid)
                if study is None:
                    patient = patient or self._placeholder_patient(rec)
                    study = self._placeholder_study(patient, rec, group)
                series = Series(**f, attrs=a)
                series.icon = self.icon(rec, self.name)
                study.series.append(series)
            else:
                inst = self.instance(rec, dec)
                if inst is None:
                    pass  # its File ID was cut by damage: the file is found as unreferenced
                elif series is None and (t in ROOT_ONLY or t == "PRIVATE" or (
                        t not in LEAF_TYPES and patient is None and not self.raw.damage)):
                    # (In a damaged DICOMDIR an unknown type may be a garbled leaf type: its
                    # file is listed under placeholders rather than hidden among these.)
                    result.other_records.append(inst)
                else:
                    if series is None:
                        if study is None:
                            patient = patient or self._placeholder_patient(rec)
                            study = self._placeholder_study(patient, rec, group)
                        series = self._placeholder_series(study, rec, group)
                    series.instances.append(inst)
            kids = children.get(idx)
            if kids:
                if depth > 64:
                    continue
                done = 0
                if t == SERIES and series is not None:
                    done = self._series_leaves(kids, series, check_inuse, children)
                for k in reversed(kids[done:]):
                    stack.append((k, patient, study, series, dec, depth + 1, 0))

    def _series_leaves(self, kids: list[int], series: Series, check_inuse: bool,
                       children: dict[int, list[int]]) -> int:
        """The bulk in a tight loop: plain IMAGE records of ``series`` (values decoded in the
        scan, every key present and valid). Returns how many of ``kids`` were done; the
        first that needs more and those after it take the general path, in order."""
        records = self.raw.records
        append = series.instances.append
        ok = self._ok
        name = self.name
        plan = self._plans.get(id(_INSTANCE_FIELDS))
        if plan is None:
            plan = self._plans[id(_INSTANCE_FIELDS)] = {}
        missing = _MISSING
        for n, k in enumerate(kids):
            rec = records[k]
            if (check_inuse and not rec.in_use) or not rec.complete:
                continue  # inactive (hidden with its subtree) or not a record
            if rec.rtype != "IMAGE" or rec.elems or k in children:
                return n
            v = rec.vals
            fid, sop, num = v.get(T_FILE_ID), v.get(0x00041511), v.get(0x00200013)
            cls, ts = v.get(0x00041510), v.get(0x00041512)
            if (not (fid and sop and num and cls and ts) or not valid_uid(sop)
                    or not (cls in ok or self._valid(valid_uid, cls))
                    or not (ts in ok or self._valid(valid_uid, ts))):
                return n
            file_id = split_file_id(fid)
            if not file_id:
                return n
            attrs: dict[str, str] = {}
            if len(v) > 6:  # further keys (Rows, ImageType, ...): attrs, each valid
                for tag, text in v.items():
                    if tag in _LEAF_KEYS or not text:
                        continue
                    step = plan.get(tag, missing)
                    if step is missing:
                        step = self._step(plan, _INSTANCE_FIELDS, tag)
                    if step is None:
                        continue
                    if step[0] or (step[2] is not None and text not in ok
                                   and not self._valid(step[2], text)):
                        return n  # (the general path reports an invalid value)
                    attrs[step[1]] = text
            append(Instance(sop, cls, "IMAGE", num, None, True, file_id, ts, None, name, None,
                            attrs))
        return len(kids)

    def instance(self, rec: RawRecord, dec: CharsetDecoder) -> Instance | None:
        """The leaf record as an Instance; None when its File ID was cut by damage."""
        file_id: tuple[str, ...] | None = None
        fid_text = rec.vals.get(T_FILE_ID)
        if fid_text is not None:
            file_id = split_file_id(fid_text) or None
        else:
            fid_v = rec.elems.get(T_FILE_ID)
            if fid_v is not None and fid_v[2] not in (0, UNDEFINED):
                text = self.buf[fid_v[1]:fid_v[1] + fid_v[2]].decode("latin-1")
                # A File ID is CS (ISO 646): control or non-ASCII bytes are damage.
                if not text.isascii() or not text.replace("\0", "").isprintable():
                    rec.suspect = (*rec.suspect, T_FILE_ID)  # zeros or junk: damaged
                else:
                    file_id = split_file_id(text) or None
        if file_id is None and T_FILE_ID in rec.suspect:
            self.problems.append(Problem(
                "warning", "dicomdir-recovered", self.name,
                f"{rec.rtype or 'untyped'} record at offset {rec.pos}: its Referenced File ID "
                "was cut by a damaged stretch; record dropped (its file is listed from its "
                "own header)"))
            return None
        where = file_id  # turned into a path only for a problem
        invalid: list[tuple[str, str]] = []
        f, a = self.decode_record(rec, _INSTANCE_FIELDS, dec, where, invalid)
        self.check_keys(rec, where, True, invalid)
        inst = Instance(**f, record_type=rec.rtype or "IMAGE", path=None, file_id=file_id,
                        dicomdir=self.name,
                        attrs=a)
        if inst.sop_instance_uid is None and "SOPInstanceUID" in inst.attrs:
            inst.sop_instance_uid = inst.attrs["SOPInstanceUID"]
        inst.icon = self.icon(rec, where)
        return inst

    def _placeholder(self, level: str, rec: RawRecord, make: Callable[[], object],
                     attach: Callable[[object], None], key: tuple[int, str, int]) -> object:
        """The placeholder ``level`` parent for ``key`` (IDs None), made once and reported."""
        obj = self._placeholders.get(key)
        if obj is None:
            obj = make()
            attach(obj)
            self._placeholders[key] = obj
            self.placeholders.add(id(obj))
            self.problems.append(Problem(
                "warning", "dicomdir-recovered", self.name,
                f"{rec.rtype} record at offset {rec.pos} has no {level.upper()} record above "
                f"it: listed under an unnamed {level}"))
        return obj

    def _placeholder_patient(self, rec: RawRecord) -> Patient:
        return self._placeholder(  # type: ignore[return-value]
            "patient", rec, lambda: Patient(patient_id=None), self.result.patients.append,
            (0, "patient", 0))

    def _placeholder_study(self, patient: Patient, rec: RawRecord, group: int = 0) -> Study:
        return self._placeholder(  # type: ignore[return-value]
            "study", rec, lambda: Study(study_uid=None), patient.studies.append,
            (id(patient), "study", group))

    def _placeholder_series(self, study: Study, rec: RawRecord, group: int = 0) -> Series:
        return self._placeholder(  # type: ignore[return-value]
            "series", rec, lambda: Series(series_uid=None), study.series.append,
            (id(study), "series", group))
