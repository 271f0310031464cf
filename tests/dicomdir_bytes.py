"""A tiny byte-level DICOMDIR builder for defect media (tests only).

Build records, then encode them with knobs that reproduce the defects found on real discs::

    from tests import dicomdir_bytes as db
    tree = [db.patient("PID1", "Müller^Hans", db.study(children=[
        db.series(children=[db.image(("PA1", "ST1", "SE1", "IM1")),
                            db.image(("PA1", "ST1", "SE1", "IM2"), in_use=False)])]),
        charset="ISO_IR 100")]
    data = db.encode(tree, explicit=False, preamble=False, offsets="zero", truncate=None)
    db.write_medium(tmp_path, tree, **knobs)   # DICOMDIR + the referenced files

Knobs of :func:`encode`: ``explicit`` / ``little`` (body encoding), ``preamble`` (128 bytes +
``DICM``), ``meta`` (File Meta group), ``meta_ts`` (the Transfer Syntax the meta claims: set it
to lie), ``undefined_items`` / ``undefined_sequences`` (undefined lengths + delimiters),
``offsets`` (``correct``, ``zero``, ``garbage``, ``cyclic``, ``missing``), ``offset_shift``
(added to every offset: ``preamble=False, offset_shift=132`` is a file whose offsets assume a
preamble), ``order`` (``preorder``, ``reversed``, ``levels``), ``truncate`` (cut at N bytes),
``top_charset``. Records carry ``charset`` (their own Specific Character Set, also used to encode
their text), ``in_use``, ``icon`` (see :func:`icon`) and ``raw`` extra elements
(``{tag: (vr, bytes)}``) for anything else. Deterministic: UIDs come from a counter.
"""

from __future__ import annotations

import itertools
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.charset import convert_encodings, encode_string
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.valuerep import PersonName

from tests.media import make_dataset, write_instance

DICOMDIR_SOP = "1.2.840.10008.1.3.10"
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
UNDEF = 0xFFFFFFFF
_LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
_TEXT = {"SH", "LO", "ST", "LT", "UC", "UT", "PN"}
_uids = itertools.count(1)


def uid() -> str:
    """A deterministic UID (counter-based)."""
    return f"1.2.826.0.1.3680043.8.498.77.{next(_uids)}"


@dataclass
class Rec:
    """One directory record. ``keys``: keyword → value (str, list of str, int, bytes);
    a value of None leaves the key out. ``children`` are lower-level records."""

    type: str
    keys: dict[str, Any] = field(default_factory=dict)
    children: list[Rec] = field(default_factory=list)
    file_id: tuple[str, ...] | str | None = None
    icon: dict[str, Any] | None = None
    in_use: bool = True
    charset: str | None = None
    raw: dict[int, tuple[str, bytes]] = field(default_factory=dict)

    def walk(self) -> Iterator[Rec]:
        """This record and its subtree, pre-order (iterative)."""
        stack: list[Rec] = [self]
        while stack:
            r = stack.pop()
            yield r
            stack.extend(reversed(r.children))


def _merge(defaults: dict[str, Any], keys: dict[str, Any]) -> dict[str, Any]:
    out = dict(defaults)
    out.update(keys)
    return out


def patient(patient_id: str | None = "PID001", name: str | None = "Test^Patient",
            *children: Rec, charset: str | None = None, in_use: bool = True,
            **keys: Any) -> Rec:
    return Rec("PATIENT", _merge({"PatientID": patient_id, "PatientName": name}, keys),
               list(children), charset=charset, in_use=in_use)


def study(*children: Rec, uid_: str | None = None, charset: str | None = None,
          in_use: bool = True, **keys: Any) -> Rec:
    return Rec("STUDY", _merge({"StudyDate": "20240102", "StudyTime": "101500", "StudyID": "1",
                                "AccessionNumber": "ACC1", "StudyDescription": "TEST STUDY",
                                "StudyInstanceUID": uid_ or uid()}, keys),
               list(children), charset=charset, in_use=in_use)


def series(*children: Rec, uid_: str | None = None, modality: str | None = "CT",
           number: str | None = "1", charset: str | None = None, in_use: bool = True,
           icon: dict[str, Any] | None = None, **keys: Any) -> Rec:
    return Rec("SERIES", _merge({"Modality": modality, "SeriesInstanceUID": uid_ or uid(),
                                 "SeriesNumber": number}, keys),
               list(children), charset=charset, in_use=in_use, icon=icon)


def image(file_id: tuple[str, ...] | str | None, *, sop_uid: str | None = None,
          number: str | None = "1", sop_class: str | None = CT, ts: str | None = EXPLICIT_LE,
          rtype: str = "IMAGE", in_use: bool = True, icon: dict[str, Any] | None = None,
          charset: str | None = None, **keys: Any) -> Rec:
    k = {"ReferencedSOPClassUIDInFile": sop_class,
         "ReferencedSOPInstanceUIDInFile": sop_uid or uid(),
         "ReferencedTransferSyntaxUIDInFile": ts, "InstanceNumber": number}
    return Rec(rtype, _merge(k, keys), [], file_id=file_id, icon=icon, in_use=in_use,
               charset=charset)


def icon(rows: int = 8, cols: int = 8, bits: int = 8, photometric: str = "MONOCHROME2",
         pixels: bytes | None = None, **overrides: Any) -> dict[str, Any]:
    """Icon Image Sequence item keys (None in ``overrides`` drops a key: malformed icons)."""
    if pixels is None:
        n = (rows * cols * bits + 7) // 8
        pixels = bytes((i * 7) & 0xFF for i in range(n))
    keys: dict[str, Any] = {"SamplesPerPixel": 1, "PhotometricInterpretation": photometric,
                            "Rows": rows, "Columns": cols, "BitsAllocated": bits,
                            "BitsStored": bits, "HighBit": bits - 1, "PixelRepresentation": 0,
                            "PixelData": pixels}
    keys.update(overrides)
    return keys


def simple_tree(patients: int = 1, studies: int = 1, series_: int = 1, images: int = 2,
                charset: str | None = None, name: str = "Test^Patient") -> list[Rec]:
    """A conformant tree with File IDs ``PAp/STs/SEe/IMi``."""
    roots = []
    for p in range(1, patients + 1):
        sts = []
        for s in range(1, studies + 1):
            ses = []
            for e in range(1, series_ + 1):
                ims = [image((f"PA{p}", f"ST{s}", f"SE{e}", f"IM{i}"), number=str(i))
                       for i in range(1, images + 1)]
                ses.append(series(*ims, number=str(e)))
            sts.append(study(*ses, StudyID=str(s)))
        roots.append(patient(f"PID{p:03d}", name, *sts, charset=charset))
    return roots


# -- encoding ----------------------------------------------------------------------------------

class _Enc:
    def __init__(self, explicit: bool, little: bool) -> None:
        self.explicit = explicit
        self.little = little
        self.e = "<" if little else ">"

    def header(self, tag: int, vr: str, length: int) -> bytes:
        g, el = tag >> 16, tag & 0xFFFF
        if not self.explicit or g == 0xFFFE:
            return struct.pack(self.e + "HHI", g, el, length)
        if vr in _LONG:
            return struct.pack(self.e + "HH2s2xI", g, el, vr.encode(), length)
        return struct.pack(self.e + "HH2sH", g, el, vr.encode(), length)

    def value(self, vr: str, value: Any, charset: str | None) -> bytes:
        if isinstance(value, bytes):
            data = value
        elif vr in ("US", "SS", "UL", "SL"):
            fmt = {"US": "H", "SS": "h", "UL": "I", "SL": "i"}[vr]
            vals = value if isinstance(value, (list, tuple)) else [value]
            data = struct.pack(self.e + fmt * len(vals), *vals)
        else:
            text = "\\".join(value) if isinstance(value, (list, tuple)) else str(value)
            if vr in _TEXT and charset:
                with warnings.catch_warnings():  # unknown charsets are test cases, not noise
                    warnings.simplefilter("ignore")
                    encs = convert_encodings(charset.split("\\"))
                    if vr == "PN":
                        data = PersonName(text).encode(encs)
                    else:
                        data = encode_string(text, encs)
            else:
                data = text.encode("utf-8" if vr in _TEXT else "ascii")
        if len(data) % 2:
            data += b"\0" if vr in ("UI", "OB", "UN") else b" "
        return data

    def element(self, tag: int, vr: str, value: Any, charset: str | None = None) -> bytes:
        data = self.value(vr, value, charset)
        return self.header(tag, vr, len(data)) + data


def _vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    vr = dictionary_VR(tag)
    if vr == "OB or OW":
        vr = "OB"
    elif " or " in vr:
        vr = vr.split(" or ")[0]
    return tag, vr


def _items(enc: _Enc, bodies: list[bytes], undefined: bool) -> bytes:
    out = bytearray()
    for body in bodies:
        out += enc.header(0xFFFEE000, "", UNDEF if undefined else len(body)) + body
        if undefined:
            out += enc.header(0xFFFEE00D, "", 0)
    return bytes(out)


def _sequence(enc: _Enc, tag: int, items: bytes, undefined: bool) -> bytes:
    if undefined:
        return enc.header(tag, "SQ", UNDEF) + items + enc.header(0xFFFEE0DD, "", 0)
    return enc.header(tag, "SQ", len(items)) + items


def _record_body(enc: _Enc, rec: Rec, nxt: int | None, lower: int | None, charset: str | None,
                 undefined: bool) -> bytes:
    elems: list[tuple[int, bytes]] = []
    if nxt is not None:
        elems.append((0x00041400, enc.element(0x00041400, "UL", nxt)))
    elems.append((0x00041410, enc.element(0x00041410, "US", 0xFFFF if rec.in_use else 0)))
    if lower is not None:
        elems.append((0x00041420, enc.element(0x00041420, "UL", lower)))
    elems.append((0x00041430, enc.element(0x00041430, "CS", rec.type)))
    if rec.charset:
        elems.append((0x00080005, enc.element(0x00080005, "CS", rec.charset)))
    if rec.file_id is not None:
        fid = rec.file_id if isinstance(rec.file_id, str) else "\\".join(rec.file_id)
        elems.append((0x00041500, enc.element(0x00041500, "CS", fid)))
    for kw, value in rec.keys.items():
        if value is None:
            continue
        tag, vr = _vr(kw)
        elems.append((tag, enc.element(tag, vr, value, charset)))
    for tag, (vr, data) in rec.raw.items():
        elems.append((tag, enc.header(tag, vr, len(data)) + data))
    if rec.icon is not None:
        body = bytearray()
        parts = []
        for kw, value in rec.icon.items():
            if value is None:
                continue
            tag, vr = _vr(kw)
            if kw == "PixelData":
                vr = "OB"
            parts.append((tag, enc.element(tag, vr, value)))
        for _t, b in sorted(parts):
            body += b
        elems.append((0x00880200, _sequence(enc, 0x00880200, _items(enc, [bytes(body)],
                                                                     undefined), undefined)))
    return b"".join(b for _t, b in sorted(elems, key=lambda x: x[0]))


def _meta(ts: str, fileset_uid: str) -> bytes:
    enc = _Enc(True, True)
    body = (enc.element(0x00020001, "OB", b"\0\1") + enc.element(0x00020002, "UI", DICOMDIR_SOP)
            + enc.element(0x00020003, "UI", fileset_uid) + enc.element(0x00020010, "UI", ts)
            + enc.element(0x00020012, "UI", "1.2.826.0.1.3680043.8.498.1")
            + enc.element(0x00020013, "SH", "DBTEST"))
    return enc.element(0x00020000, "UL", len(body)) + body


def encode(roots: list[Rec], *, explicit: bool = True, little: bool = True,
           preamble: bool = True, meta: bool = True, meta_ts: str | None = None,
           undefined_items: bool = False, undefined_sequences: bool = False,
           offsets: str = "correct", offset_shift: int = 0, order: str = "preorder",
           truncate: int | None = None, fileset_id: str | None = "TESTFS",
           fileset_uid: str = "1.2.826.0.1.3680043.8.498.77.0",
           top_charset: str | None = None) -> bytes:
    """Encode a DICOMDIR for ``roots`` (see the module docstring for the knobs)."""
    enc = _Enc(explicit, little)
    real_ts = EXPLICIT_LE if (explicit and little) else (IMPLICIT_LE if little else EXPLICIT_BE)
    head = (b"\0" * 128 + b"DICM") if preamble else b""
    if meta:
        head += _meta(meta_ts or real_ts, fileset_uid)
    # Flatten: (record, parent, charset used to encode it).
    flat: list[tuple[Rec, Rec | None, str | None]] = []
    stack: list[tuple[Rec, Rec | None, str | None]] = [(r, None, top_charset)
                                                       for r in reversed(roots)]
    while stack:
        r, par, cs = stack.pop()
        cs = r.charset or cs
        flat.append((r, par, cs))
        stack.extend((c, r, cs) for c in reversed(r.children))
    if order == "reversed":
        flat.reverse()
    elif order == "levels":
        depth: dict[int, int] = {}
        for r, par, _cs in flat:
            depth[id(r)] = 0 if par is None else depth[id(par)] + 1
        flat.sort(key=lambda x: depth[id(x[0])])
    with_offsets = offsets != "missing"
    top_fixed = b""
    if fileset_id is not None:
        top_fixed += enc.element(0x00041130, "CS", fileset_id)
    top_len = len(top_fixed) + len(enc.element(0x00041212, "US", 0))
    if with_offsets:
        top_len += 2 * len(enc.element(0x00041200, "UL", 0))
    sq_header = len(enc.header(0x00041220, "SQ", 0))
    # Pass 1: sizes with zero offsets → item positions.
    pos = len(head) + top_len + sq_header
    positions: dict[int, int] = {}
    for r, _par, cs in flat:
        body = _record_body(enc, r, 0 if with_offsets else None, 0 if with_offsets else None,
                            cs, undefined_items)
        positions[id(r)] = pos
        pos += 8 + len(body) + (8 if undefined_items else 0)

    def first_of(recs: list[Rec]) -> int:
        return positions[id(recs[0])] if recs else 0

    links: dict[int, tuple[int, int]] = {}
    siblings_lists = [roots] + [r.children for r, _p, _c in flat]
    for sibs in siblings_lists:
        for i, r in enumerate(sibs):
            nxt = positions[id(sibs[i + 1])] if i + 1 < len(sibs) else 0
            if offsets == "cyclic" and i + 1 == len(sibs) and len(sibs) > 1:
                nxt = positions[id(sibs[0])]
            links[id(r)] = (nxt, first_of(r.children))
    if offsets == "cyclic":
        # Also make the first leaf point back up at its series (a lower-level cycle).
        for r, par, _cs in flat:
            if par is not None and not r.children and par.type == "SERIES":
                links[id(r)] = (links[id(r)][0], positions[id(par)])
                break

    def fix(v: int) -> int:
        if offsets == "zero" or v == 0:
            return 0
        if offsets == "garbage":
            return (v * 7 + 3) & 0xFFFFFFFF
        return (v + offset_shift) & 0xFFFFFFFF

    items = []
    for r, _par, cs in flat:
        nxt, low = links[id(r)]
        body = _record_body(enc, r, fix(nxt) if with_offsets else None,
                            fix(low) if with_offsets else None, cs, undefined_items)
        items.append(body)
    seq_items = _items(enc, items, undefined_items)
    top = top_fixed
    if with_offsets:
        last = positions[id(roots[-1])] if roots else 0
        top += enc.element(0x00041200, "UL", fix(first_of(roots)))
        top += enc.element(0x00041202, "UL", fix(last))
    top += enc.element(0x00041212, "US", 0)
    top += _sequence(enc, 0x00041220, seq_items, undefined_sequences)
    if top_charset:
        top += enc.element(0x00080005, "CS", top_charset)
    data = head + top
    if truncate is not None:
        data = data[:truncate]
    return data


# -- media --------------------------------------------------------------------------------------

def _ancestors(roots: list[Rec]) -> Iterator[tuple[Rec, list[Rec]]]:
    stack: list[tuple[Rec, list[Rec]]] = [(r, []) for r in reversed(roots)]
    while stack:
        r, anc = stack.pop()
        yield r, anc
        stack.extend((c, anc + [r]) for c in reversed(r.children))


def write_files(root: Path, roots: Iterable[Rec]) -> list[Path]:
    """Write a small DICOM file for every leaf record with a File ID, with values that agree
    with its records (UIDs, patient, study, series, instance number)."""
    written = []
    for rec, anc in _ancestors(list(roots)):
        if rec.file_id is None or rec.children:
            continue
        fid = rec.file_id if isinstance(rec.file_id, tuple) else tuple(
            p for p in rec.file_id.replace("/", "\\").split("\\") if p)
        values: dict[str, Any] = {}
        for a in anc:
            for kw in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "StudyTime",
                       "StudyID", "SeriesInstanceUID", "Modality", "SeriesNumber"):
                if kw in a.keys:
                    values[kw] = a.keys[kw]
            if a.charset:
                values["SpecificCharacterSet"] = a.charset
        values["SOPInstanceUID"] = rec.keys.get("ReferencedSOPInstanceUIDInFile") or uid()
        if rec.keys.get("ReferencedSOPClassUIDInFile"):
            values["SOPClassUID"] = rec.keys["ReferencedSOPClassUIDInFile"]
        values["InstanceNumber"] = rec.keys.get("InstanceNumber")
        ds = make_dataset(**values)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        written.append(write_instance(root.joinpath(*fid), ds))
    return written


def write_medium(root: Path, roots: list[Rec], *, files: bool = True, name: str = "DICOMDIR",
                 **knobs: Any) -> Path:
    """Write ``root/name`` (encoded with ``knobs``) and, unless ``files=False``, the referenced
    files. Returns the DICOMDIR path."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_bytes(encode(roots, **knobs))
    if files:
        write_files(path.parent, roots)
    return path
