"""Independent builders of hostile DICOM interchange media, for the end-to-end suite.

Nothing here comes from the product or from the other test builders: image files are written
with pydicom, DICOMDIRs with the byte-level encoder below (Explicit/Implicit VR, big endian,
with or without preamble and File Meta, defined or undefined lengths), and the defects of
STANDARDS.md §5 and §7 are introduced at the byte level (offsets, in-use flags, lengths, names).

Vocabulary
----------
``ImageInfo``  one image: its patient/study/series/instance values and canonical File ID.
``Rec``        a directory record (type, elements, children) before encoding.
``DDOpts``     how a DICOMDIR is encoded and which defect it carries.
``Built``      a medium written on disc: its root and, for every DICOM image on it, the
               SOP Instance UID → the real relative path (``/`` separators).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydicom.charset import convert_encodings, encode_string
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.valuerep import PersonName

REPO = Path(__file__).resolve().parents[2]
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
IMPL_UID = "1.2.826.0.1.3680043.8.498.424242"

SENTINEL_UID = "1.2.826.0.1.3680043.8.498.66666.6"
SENTINEL_NAME = "SENTINEL^OUTSIDE"
SENTINEL_PID = "SENTINEL666"


def uid(*parts: object) -> str:
    """A deterministic UID (2.25 form) for the given name parts."""
    h = hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:28]
    return "2.25." + str(int(h, 16))


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


@dataclass
class ImageInfo:
    """Everything about one image that a DICOMDIR record or an `ls` row can show."""

    sop_uid: str
    patient_id: str | None
    patient_name: str | None
    study_uid: str
    series_uid: str
    fid: tuple[str, ...]  # canonical File ID (PA/ST/SE/IM), uppercase
    birth_date: str | None = "19600101"
    sex: str | None = "M"
    study_date: str | None = "20240102"
    study_time: str | None = "101500"
    study_id: str | None = "1"
    accession: str | None = "A1"
    study_desc: str | None = "CT HEAD"
    modality: str = "CT"
    series_number: str | None = "1"
    series_desc: str | None = "AXIAL"
    instance_number: str | None = "1"
    sop_class: str = CT
    charset: str | None = None
    transfer_syntax: str = EXPLICIT_LE
    extra: dict[str, Any] = field(default_factory=dict)  # further attributes, by keyword
    pixels: bool = True  # False: no Image Pixel module (SR, encapsulated documents, ...)


def corpus(tag: str, patients: int = 2, studies: int = 1, series: int = 2, images: int = 2, *,
           names: Sequence[str] | None = None, charset: str | None = None) -> list[ImageInfo]:
    """A small multi-patient corpus; ``tag`` makes every UID and Patient ID unique to the medium."""
    out: list[ImageInfo] = []
    for p in range(1, patients + 1):
        name = names[p - 1] if names else f"{tag.upper()}^PATIENT{p}"
        for s in range(1, studies + 1):
            st_uid = uid(tag, p, s)
            for e in range(1, series + 1):
                se_uid = uid(tag, p, s, e)
                for i in range(1, images + 1):
                    out.append(ImageInfo(
                        sop_uid=uid(tag, p, s, e, i), patient_id=f"{tag.upper()}{p}",
                        patient_name=name, study_uid=st_uid, series_uid=se_uid,
                        fid=(f"PA{p:03d}", f"ST{s:03d}", f"SE{e:03d}", f"IM{i:05d}"),
                        study_id=str(s), accession=f"ACC{p}{s}", series_number=str(e),
                        instance_number=str(i), modality="CT" if e % 2 else "MR",
                        sop_class=CT if e % 2 else MR, charset=charset,
                        study_date=f"202401{s:02d}"))
    return out


def make_dataset(info: ImageInfo) -> Dataset:
    """A small but complete CT/MR-like instance (8×8, 16-bit) with the values of ``info``."""
    ds = Dataset()
    if info.charset:
        ds.SpecificCharacterSet = info.charset.split("\\") if "\\" in info.charset else info.charset
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = info.sop_class
    ds.SOPInstanceUID = info.sop_uid
    for kw, v in (("StudyDate", info.study_date), ("StudyTime", info.study_time),
                  ("AccessionNumber", info.accession), ("Modality", info.modality),
                  ("StudyDescription", info.study_desc), ("SeriesDescription", info.series_desc),
                  ("PatientName", info.patient_name), ("PatientID", info.patient_id),
                  ("PatientBirthDate", info.birth_date), ("PatientSex", info.sex)):
        if v is not None:
            setattr(ds, kw, v)
    ds.StudyInstanceUID = info.study_uid
    ds.SeriesInstanceUID = info.series_uid
    if info.study_id is not None:
        ds.StudyID = info.study_id
    if info.series_number is not None:
        ds.SeriesNumber = info.series_number
    if info.instance_number is not None:
        ds.InstanceNumber = info.instance_number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    for kw, v in info.extra.items():
        setattr(ds, kw, v)
    if not info.pixels:
        del ds.ImageType
        return ds
    seed = int(hashlib.sha1(info.sop_uid.encode()).hexdigest()[:6], 16)
    ds.PixelData = bytes(((seed + k * 37) & 0xFF) if k % 2 == 0 else ((seed >> 8) & 0x0F)
                         for k in range(128))
    return ds


def dicom_bytes(info: ImageInfo, *, preamble: bool = True, meta: bool = True) -> bytes:
    """The image as file bytes. ``meta=False``: a bare Implicit VR LE dataset (no preamble, no
    ``DICM``, no group 0002), as old modalities wrote them. ``preamble=False``: ``DICM`` at 0."""
    ds = make_dataset(info)
    if not meta:
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = True
        write_dataset(fp, ds)
        return fp.getvalue()
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = info.sop_class
    fm.MediaStorageSOPInstanceUID = info.sop_uid
    fm.TransferSyntaxUID = info.transfer_syntax
    fm.ImplementationClassUID = IMPL_UID
    fm.ImplementationVersionName = "HOSTILEQA"
    ds.file_meta = fm
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    return data[128:] if not preamble else data


def sentinel_info() -> ImageInfo:
    return ImageInfo(sop_uid=SENTINEL_UID, patient_id=SENTINEL_PID, patient_name=SENTINEL_NAME,
                     study_uid=SENTINEL_UID + ".1", series_uid=SENTINEL_UID + ".2",
                     fid=("SENTINEL",))


def sentinel_bytes() -> bytes:
    """A valid DICOM image that must never be listed: it lives outside every medium root."""
    return dicom_bytes(sentinel_info())


# --------------------------------------------------------------------------------------------
# Byte-level DICOMDIR encoder
# --------------------------------------------------------------------------------------------

LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
TEXT_PAD_NUL = {"UI"}


@dataclass(frozen=True)
class Syntax:
    explicit: bool = True
    little: bool = True

    @property
    def e(self) -> str:
        return "<" if self.little else ">"

    @property
    def uid(self) -> str:
        if not self.explicit:
            return IMPLICIT_LE
        return EXPLICIT_LE if self.little else EXPLICIT_BE


ELE = Syntax(True, True)
ILE = Syntax(False, True)
EBE = Syntax(True, False)


@dataclass(frozen=True)
class Nested:
    """An SQ value nested ``depth`` levels deep (item → SQ → item → ...), undefined lengths."""

    depth: int


Item = list["Elem"]
Value = str | bytes | int | list | Nested | None
Elem = tuple[int, str, Value]  # (tag, VR, value); VR "RAW": value is the whole encoded element


@dataclass
class Rec:
    """A directory record before encoding. ``in_use=None`` omits the In-use flag."""

    rtype: str
    elems: list[Elem]
    children: list[Rec] = field(default_factory=list)
    in_use: int | None = 0xFFFF
    charset: str | None = None
    label: str = ""  # for tests: find a record's start offset by label


@dataclass
class DDOpts:
    """How a DICOMDIR is encoded, and its defects."""

    syntax: Syntax = ELE
    preamble: bool = True
    meta: bool = True
    meta_ts: str | None = None  # the Transfer Syntax UID written in the meta (a lie if ≠ syntax)
    undefined_items: bool = False
    undefined_seq: bool = False
    deflate: bool = False  # Deflated Explicit VR LE: the body after the meta is raw-deflated
    offsets: str = "correct"  # correct zero shift random cycle self_lower missing
    shift: int = 0
    order: str = "depth"  # depth | levels | reverse
    fileset_id: str = "HOSTILEQA"
    fileset_uid: str = "2.25.4242"
    seed: int = 7
    item_length: dict[str, int] = field(default_factory=dict)  # label → forced item length
    seq_length: int | None = None  # forced (0004,1220) length


class _Encoder:
    def __init__(self, s: Syntax) -> None:
        self.s = s

    def tag(self, tag: int) -> bytes:
        return struct.pack(self.s.e + "HH", tag >> 16, tag & 0xFFFF)

    def header(self, tag: int, vr: str, length: int) -> bytes:
        e = self.s.e
        if not self.s.explicit:
            return self.tag(tag) + struct.pack(e + "I", length)
        if vr in LONG_VRS:
            return self.tag(tag) + vr.encode() + b"\0\0" + struct.pack(e + "I", length)
        return self.tag(tag) + vr.encode() + struct.pack(e + "H", length)

    def text(self, vr: str, value: str | bytes, charset: str | None) -> bytes:
        if isinstance(value, bytes):
            raw = value
        elif charset is None or value.isascii():
            raw = value.encode("ascii")
        else:
            encs = convert_encodings(charset.split("\\"))
            raw = (PersonName(value, encodings=encs).encode(encs) if vr == "PN"
                   else encode_string(value, encs))
        if len(raw) % 2:
            raw += b"\0" if vr in TEXT_PAD_NUL or vr in ("OB", "UN") else b" "
        return raw

    def elem(self, tag: int, vr: str, value: Value, charset: str | None,
             undefined: bool) -> bytes:
        e = self.s.e
        if vr == "RAW":
            assert isinstance(value, bytes)
            return value
        if vr == "SQ":
            return self.sq(tag, value, charset, undefined)
        if vr in ("UL", "US") and isinstance(value, bytes):  # raw (multi-valued, hostile)
            raw = value
        elif vr == "UL":
            assert isinstance(value, int)
            raw = struct.pack(e + "I", value)
        elif vr == "US":
            assert isinstance(value, int)
            raw = struct.pack(e + "H", value)
        else:
            assert isinstance(value, (str, bytes))
            raw = self.text(vr, value, charset)
        return self.header(tag, vr, len(raw)) + raw

    def item(self, body: bytes, undefined: bool, length: int | None = None) -> bytes:
        e = self.s.e
        if undefined:
            return (self.tag(0xFFFEE000) + struct.pack(e + "I", 0xFFFFFFFF) + body
                    + self.tag(0xFFFEE00D) + struct.pack(e + "I", 0))
        return self.tag(0xFFFEE000) + struct.pack(e + "I", len(body) if length is None
                                                     else length) + body

    def sq(self, tag: int, value: Value, charset: str | None, undefined: bool) -> bytes:
        e = self.s.e
        if isinstance(value, Nested):  # iterative: prefix pieces, then suffix pieces
            open_sq = self.header(tag, "SQ", 0xFFFFFFFF)
            open_item = self.tag(0xFFFEE000) + struct.pack(e + "I", 0xFFFFFFFF)
            close_item = self.tag(0xFFFEE00D) + struct.pack(e + "I", 0)
            close_sq = self.tag(0xFFFEE0DD) + struct.pack(e + "I", 0)
            leaf = self.elem(0x00080100, "SH", "LEAF", None, False)
            n = value.depth
            return b"".join([(open_sq + open_item) * n, leaf, (close_item + close_sq) * n])
        assert isinstance(value, list)
        items = b"".join(self.item(self.body(it, charset, undefined), undefined)
                         for it in value)
        if undefined:
            return (self.header(tag, "SQ", 0xFFFFFFFF) + items + self.tag(0xFFFEE0DD)
                    + struct.pack(e + "I", 0))
        return self.header(tag, "SQ", len(items)) + items

    def body(self, elems: Iterable[Elem], charset: str | None, undefined: bool) -> bytes:
        return b"".join(self.elem(t, vr, v, charset, undefined)
                        for t, vr, v in sorted(elems, key=lambda x: x[0]))


def _meta(ts_uid: str, fileset_uid: str) -> bytes:
    enc = _Encoder(ELE)
    body = b"".join([
        enc.elem(0x00020001, "OB", b"\x00\x01", None, False),
        enc.elem(0x00020002, "UI", DICOMDIR_CLASS, None, False),
        enc.elem(0x00020003, "UI", fileset_uid, None, False),
        enc.elem(0x00020010, "UI", ts_uid, None, False),
        enc.elem(0x00020012, "UI", IMPL_UID, None, False),
        enc.elem(0x00020013, "SH", "HOSTILEQA", None, False),
    ])
    return enc.elem(0x00020000, "UL", len(body), None, False) + body


def _flatten(roots: list[Rec]) -> tuple[list[Rec], dict[int, int | None], dict[int, int | None],
                                         dict[int, int]]:
    """Depth-first order (iterative), next-sibling and first-child maps, and each depth."""
    flat: list[Rec] = []
    nxt: dict[int, int | None] = {}
    child: dict[int, int | None] = {}
    depth: dict[int, int] = {}
    index: dict[int, int] = {}
    stack: list[tuple[Rec, int]] = [(r, 0) for r in reversed(roots)]
    while stack:
        r, d = stack.pop()
        index[id(r)] = len(flat)
        depth[len(flat)] = d
        flat.append(r)
        stack.extend((c, d + 1) for c in reversed(r.children))
    for r in flat:
        i = index[id(r)]
        child[i] = index[id(r.children[0])] if r.children else None
        for a, b in zip(r.children, r.children[1:], strict=False):
            nxt[index[id(a)]] = index[id(b)]
        if r.children:
            nxt[index[id(r.children[-1])]] = None
    for a, b in zip(roots, roots[1:], strict=False):
        nxt[index[id(a)]] = index[id(b)]
    if roots:
        nxt[index[id(roots[-1])]] = None
    return flat, nxt, child, depth


def encode_dicomdir(roots: list[Rec], o: DDOpts | None = None) -> bytes:
    """Encode the records as a DICOMDIR with exact offsets, then apply ``o.offsets`` defects."""
    o = o or DDOpts()
    enc = _Encoder(o.syntax)
    flat, nxt, child, depth = _flatten(roots)
    n = len(flat)
    if o.order == "levels":
        order = sorted(range(n), key=lambda i: (depth[i], i))
    elif o.order == "reverse":
        order = list(reversed(range(n)))
    else:
        order = list(range(n))

    def rec_item(i: int, next_off: int, lower_off: int) -> bytes:
        r = flat[i]
        elems: list[Elem] = list(r.elems)
        if o.offsets != "missing":
            elems += [(0x00041400, "UL", next_off), (0x00041420, "UL", lower_off)]
        if r.in_use is not None:
            elems.append((0x00041410, "US", r.in_use))
        elems.append((0x00041430, "CS", r.rtype))
        if r.charset:
            elems.append((0x00080005, "CS", r.charset.encode("latin-1")))
        body = enc.body(elems, r.charset, o.undefined_items)
        return enc.item(body, o.undefined_items, o.item_length.get(r.label) if r.label else None)

    prefix = (b"\0" * 128 if o.preamble else b"") + (b"DICM" if o.preamble or o.meta else b"")
    if o.meta:
        prefix += _meta(o.meta_ts or o.syntax.uid, o.fileset_uid)
    elif o.preamble:
        prefix = b"\0" * 128 + b"DICM"

    def top(first: int, last: int) -> bytes:
        return b"".join([
            enc.elem(0x00041130, "CS", o.fileset_id, None, False),
            enc.elem(0x00041200, "UL", first, None, False) if o.offsets != "missing" else b"",
            enc.elem(0x00041202, "UL", last, None, False) if o.offsets != "missing" else b"",
            enc.elem(0x00041212, "US", 0, None, False),
        ])

    sq_head = len(enc.header(0x00041220, "SQ", 0))
    base = len(prefix) + len(top(0, 0)) + sq_head
    start: dict[int, int] = {}
    pos = base
    for i in order:
        start[i] = pos
        pos += len(rec_item(i, 0, 0))
    nx = {i: (start[j] if j is not None else 0) for i, j in nxt.items()}
    lo = {i: (start[j] if j is not None else 0) for i, j in child.items()}
    root_ids = [i for i in range(n) if depth[i] == 0]
    first = start[root_ids[0]] if root_ids else 0
    last = start[root_ids[-1]] if root_ids else 0
    rng = random.Random(o.seed)
    if o.offsets == "zero":
        nx = dict.fromkeys(nx, 0)
        lo = dict.fromkeys(lo, 0)
        first = last = 0
    elif o.offsets == "shift":
        nx = {i: (v + o.shift if v else 0) for i, v in nx.items()}
        lo = {i: (v + o.shift if v else 0) for i, v in lo.items()}
        first, last = first + o.shift, last + o.shift
    elif o.offsets == "random":
        nx = {i: rng.randrange(1, 1 << 32) for i in nx}
        lo = {i: rng.randrange(1, 1 << 32) for i in lo}
        first, last = rng.randrange(1, 1 << 32), rng.randrange(1, 1 << 32)
    elif o.offsets == "cycle":  # the last sibling of every chain points back to the first
        chains = [[i for i in root_ids]] + [
            [j for j in range(n) if depth[j] == depth[i] + 1 and _parent(flat, i, j)]
            for i in range(n) if flat[i].children]
        for ch in chains:
            if ch:
                nx[ch[-1]] = start[ch[0]]
    elif o.offsets == "self_lower":
        for i in range(n):
            if flat[i].rtype == "SERIES":
                lo[i] = start[i]
    items = b"".join(rec_item(i, nx[i], lo[i]) for i in order)
    if o.undefined_seq:
        seq = (enc.header(0x00041220, "SQ", 0xFFFFFFFF) + items + enc.tag(0xFFFEE0DD)
               + struct.pack(o.syntax.e + "I", 0))
    else:
        seq = enc.header(0x00041220, "SQ", len(items) if o.seq_length is None
                         else o.seq_length) + items
    data = prefix + top(first, last) + seq
    if o.deflate:  # offsets stay those of the inflated stream (as pydicom and dcmtk read them)
        import zlib

        c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = prefix + c.compress(top(first, last) + seq) + c.flush()
    return data


def _parent(flat: list[Rec], parent: int, j: int) -> bool:
    return any(c is flat[j] for c in flat[parent].children)


def record_offsets(roots: list[Rec], o: DDOpts | None = None) -> dict[str, int]:
    """The true start offset of every labelled record (as ``encode_dicomdir`` lays them out)."""
    o = replace(o or DDOpts(), offsets="correct")
    data = encode_dicomdir(roots, o)
    # Re-derive by scanning for the item starts in layout order.
    flat, _, _, depth = _flatten(roots)
    enc = _Encoder(o.syntax)
    item_tag = enc.tag(0xFFFEE000)
    out: dict[str, int] = {}
    idx = data.index(enc.tag(0x00041220)) + len(enc.header(0x00041220, "SQ", 0))
    order = (sorted(range(len(flat)), key=lambda i: (depth[i], i)) if o.order == "levels"
             else list(reversed(range(len(flat)))) if o.order == "reverse"
             else list(range(len(flat))))
    for i in order:
        assert data[idx:idx + 4] == item_tag
        if flat[i].label:
            out[flat[i].label] = idx
        ln = struct.unpack(o.syntax.e + "I", data[idx + 4:idx + 8])[0]
        if ln == 0xFFFFFFFF:
            end = data.index(enc.tag(0xFFFEE00D) + b"\0\0\0\0", idx)
            idx = end + 8
        else:
            idx += 8 + ln
    return out


# --------------------------------------------------------------------------------------------
# Records from images
# --------------------------------------------------------------------------------------------


def _v(elems: list[Elem], tag: int, vr: str, value: str | bytes | None, keep_empty: bool) -> None:
    if value is None:
        if keep_empty:
            elems.append((tag, vr, ""))
        return
    elems.append((tag, vr, value))


def records_for(images: Sequence[ImageInfo], recorded: Callable[[ImageInfo], Sequence[str]]
                | None = None, *, drop: Iterable[tuple[str, int]] = (),
                charset_per_level: bool = True) -> list[Rec]:
    """PATIENT/STUDY/SERIES/IMAGE records for ``images`` (grouped in order of appearance).

    ``recorded(info)`` gives the Referenced File ID components as recorded (default: canonical).
    ``drop`` removes elements by (record type, tag), to make records miss Type 1 keys.
    """
    dropped = set(drop)
    pats: dict[str, Rec] = {}
    studies: dict[str, Rec] = {}
    series: dict[str, Rec] = {}
    roots: list[Rec] = []

    def finish(rtype: str, elems: list[Elem]) -> list[Elem]:
        return [e for e in elems if (rtype, e[0]) not in dropped]

    for info in images:
        cs = info.charset if charset_per_level else None
        pkey = f"{info.patient_id}|{info.patient_name}"
        if pkey not in pats:
            el: list[Elem] = []
            _v(el, 0x00100010, "PN", info.patient_name, True)
            _v(el, 0x00100020, "LO", info.patient_id, False)
            _v(el, 0x00100030, "DA", info.birth_date, True)
            _v(el, 0x00100040, "CS", info.sex, True)
            pats[pkey] = Rec("PATIENT", finish("PATIENT", el), charset=info.charset,
                             label=f"PATIENT:{info.patient_id}")
            roots.append(pats[pkey])
        skey = f"{pkey}|{info.study_uid}"  # one STUDY record per patient, as writers do
        if skey not in studies:
            el = []
            _v(el, 0x00080020, "DA", info.study_date, False)
            _v(el, 0x00080030, "TM", info.study_time, False)
            _v(el, 0x00080050, "SH", info.accession, True)
            _v(el, 0x00081030, "LO", info.study_desc, True)
            _v(el, 0x0020000D, "UI", info.study_uid, False)
            _v(el, 0x00200010, "SH", info.study_id, False)
            studies[skey] = Rec("STUDY", finish("STUDY", el), charset=cs,
                                label=f"STUDY:{info.study_uid}")
            pats[pkey].children.append(studies[skey])
        ekey = f"{skey}|{info.series_uid}"
        if ekey not in series:
            el = []
            _v(el, 0x00080060, "CS", info.modality, False)
            _v(el, 0x0008103E, "LO", info.series_desc, False)
            _v(el, 0x0020000E, "UI", info.series_uid, False)
            _v(el, 0x00200011, "IS", info.series_number, False)
            series[ekey] = Rec("SERIES", finish("SERIES", el), charset=cs,
                               label=f"SERIES:{info.series_uid}")
            studies[skey].children.append(series[ekey])
        fid = list(recorded(info) if recorded else info.fid)
        el = [(0x00041500, "CS", "\\".join(fid)),
              (0x00041510, "UI", info.sop_class),
              (0x00041511, "UI", info.sop_uid),
              (0x00041512, "UI", info.transfer_syntax)]
        _v(el, 0x00200013, "IS", info.instance_number, False)
        series[ekey].children.append(
            Rec("IMAGE", finish("IMAGE", el), label=f"IMAGE:{info.sop_uid}"))
    return roots


def find_rec(roots: list[Rec], label: str) -> Rec:
    stack = list(roots)
    while stack:
        r = stack.pop()
        if r.label == label:
            return r
        stack.extend(r.children)
    raise KeyError(label)


def icon_item(rows: int = 64, cols: int = 64, pixel_bytes: int | None = None) -> Item:
    """One Icon Image Sequence item (MONOCHROME2, 8 bit); ``pixel_bytes`` truncates the pixels."""
    n = rows * cols if pixel_bytes is None else pixel_bytes
    return [(0x00280002, "US", 1), (0x00280004, "CS", "MONOCHROME2"),
            (0x00280010, "US", rows), (0x00280011, "US", cols),
            (0x00280100, "US", 8), (0x00280101, "US", 8), (0x00280102, "US", 7),
            (0x00280103, "US", 0), (0x7FE00010, "OB", bytes(k % 251 for k in range(n)))]


# --------------------------------------------------------------------------------------------
# Media on disc
# --------------------------------------------------------------------------------------------


def disk_canonical(fid: Sequence[str]) -> str:
    return "/".join(fid)


def disk_lower(fid: Sequence[str]) -> str:
    return "/".join(fid).lower()


def disk_suffix(suffix: str, lower: bool = False) -> Callable[[Sequence[str]], str]:
    def f(fid: Sequence[str]) -> str:
        p = "/".join(fid) + suffix
        return p.lower() if lower else p
    return f


@dataclass
class Built:
    root: Path
    images: list[ImageInfo]
    expected: dict[str, str]  # SOP Instance UID → real relative path of its file on the medium
    dicomdir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def write_file(root: Path, rel: str, data: bytes) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def write_images(root: Path, images: Sequence[ImageInfo], disk: Callable[[Sequence[str]], str]
                 = disk_canonical, *, base: str = "", preamble: bool = True,
                 meta: bool = True) -> dict[str, str]:
    out: dict[str, str] = {}
    for info in images:
        rel = (base + "/" if base else "") + disk(info.fid)
        write_file(root, rel, dicom_bytes(info, preamble=preamble, meta=meta))
        out[info.sop_uid] = rel
    return out


def write_medium(root: Path, images: Sequence[ImageInfo], *,
                 disk: Callable[[Sequence[str]], str] = disk_canonical,
                 recorded: Callable[[ImageInfo], Sequence[str]] | None = None,
                 base: str = "", dicomdir_name: str = "DICOMDIR",
                 opts: DDOpts | None = None, roots: list[Rec] | None = None,
                 mutate: Callable[[bytes], bytes] | None = None) -> Built:
    """Write ``images`` under ``root/base`` and a DICOMDIR named ``dicomdir_name`` in ``base``."""
    root.mkdir(parents=True, exist_ok=True)
    expected = write_images(root, images, disk, base=base)
    roots = roots if roots is not None else records_for(images, recorded)
    data = encode_dicomdir(roots, opts)
    if mutate:
        data = mutate(data)
    dd = (base + "/" if base else "") + dicomdir_name
    write_file(root, dd, data)
    return Built(root, list(images), expected, dd, {"roots": roots, "opts": opts})


def make_outside(tmp: Path) -> tuple[Path, Path]:
    """A sentinel DICOM file (and folder) outside the medium root: ``tmp/outside``."""
    outside = tmp / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    s = write_file(outside, "SENTINEL", sentinel_bytes())
    write_file(outside, "DICOMDIR.TXT", b"not a dicomdir")
    write_file(outside, "DICOMDIR", encode_dicomdir(records_for([sentinel_info()])))
    return outside, s


def html_bytes() -> bytes:
    return b"<!DOCTYPE html><html><head><title>Viewer</title></head><body>DICM</body></html>\n"


def pe_bytes() -> bytes:
    """The start of a Windows executable (MZ, DOS stub, PE header)."""
    b = bytearray(1024)
    b[0:2] = b"MZ"
    b[0x3C:0x40] = struct.pack("<I", 0x80)
    b[0x80:0x84] = b"PE\0\0"
    b[0x4E:0x4E + 39] = b"This program cannot be run in DOS mode."
    b[128:132] = b"PE\0\0"
    return bytes(b)


def jpeg_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (16, 16), 128).save(buf, format="JPEG")
    return buf.getvalue()


def write_iso(iso_path: Path, files: dict[str, bytes], *, joliet: bool,
              volume_id: str = "HOSTILEQA") -> None:
    """An ISO 9660 image (Level 1 primary names ``NAME.;1``; optional Joliet) with pycdlib."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, joliet=3 if joliet else None, vol_ident=volume_id)
    dirs: set[str] = set()
    for rel in sorted(files):
        parts = rel.split("/")
        for k in range(1, len(parts)):
            d = "/" + "/".join(parts[:k])
            if d not in dirs:
                dirs.add(d)
                iso.add_directory(d.upper(), joliet_path=d if joliet else None)
        data = files[rel]
        name = "/" + rel.upper() + (";1" if "." in parts[-1] else ".;1")
        iso.add_fp(io.BytesIO(data), len(data), name,
                   joliet_path="/" + rel if joliet else None)
    iso.write(str(iso_path))
    iso.close()


# --------------------------------------------------------------------------------------------
# Observation helpers
# --------------------------------------------------------------------------------------------


def tree_state(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (not following symlinks) → sha256 / 'dir' / 'link:target'."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = f"dir:{st.st_mode:o}"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() + f":{st.st_mode:o}"
    return out


@dataclass
class Run:
    rc: int
    out: str
    err: str
    secs: float
    raw_out: bytes = b""

    def json(self) -> dict[str, Any]:
        """stdout as JSON; from a subprocess it must be strict UTF-8 (RFC 8259)."""
        if self.raw_out:
            return json.loads(self.raw_out.decode("utf-8"))
        return json.loads(self.out)


def run_cli(*args: str | os.PathLike[str], timeout: float = 10.0,
            env: dict[str, str] | None = None) -> Run:
    """``python -m app ARGS`` from the checkout, bounded in time."""
    full_env = dict(os.environ)
    full_env.pop("PYTHONSTARTUP", None)
    full_env["PYTHONPATH"] = str(REPO)
    full_env["QT_QPA_PLATFORM"] = "offscreen"
    if env:
        full_env.update(env)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "app", *map(str, args)], cwd=REPO,
                       capture_output=True, timeout=timeout, env=full_env)
    return Run(p.returncode, p.stdout.decode("utf-8", "replace"),
               p.stderr.decode("utf-8", "replace"), time.monotonic() - t0, p.stdout)


def listed(d: dict[str, Any]) -> list[dict[str, Any]]:
    """Every instance row of an ``ls --json`` document, with its parents' keys merged in."""
    rows: list[dict[str, Any]] = []
    for p in d["patients"]:
        for st in p["studies"]:
            for se in st["series"]:
                for inst in se["instances"]:
                    rows.append({**{f"patient.{k}": v for k, v in p.items() if k != "studies"},
                                 **{f"study.{k}": v for k, v in st.items() if k != "series"},
                                 **{f"series.{k}": v for k, v in se.items()
                                    if k != "instances"},
                                 **inst})
    return rows


def run_inproc(capsys: Any, *args: str | os.PathLike[str]) -> Run:
    """``app.cli.main(ARGS)`` in this process (stdout/stderr captured by pytest's capsys)."""
    from app.cli import main

    capsys.readouterr()
    t0 = time.monotonic()
    rc = main([str(a) for a in args])
    secs = time.monotonic() - t0
    out, err = capsys.readouterr()
    return Run(rc, out, err, secs)


DESIGN_CODES = {
    "dicomdir-unreadable", "dicomdir-recovered", "no-dicomdir", "missing-file", "empty-file",
    "truncated-file", "not-dicom", "outside-root", "unreferenced-file", "duplicate-instance",
    "bad-file-id", "record-file-mismatch", "missing-key", "bad-icon", "bad-charset", "read-error",
}


def assert_sane(r: Run, rcs: Iterable[int] = (0,), secs: float = 10.0) -> None:
    """Exit code per contract, no traceback, bounded time."""
    assert "Traceback" not in r.err, r.err[-3000:]
    assert r.rc in tuple(rcs), (r.rc, r.err[-2000:], r.out[-2000:])
    assert r.secs < secs, f"took {r.secs:.1f} s"


def problems(d: dict[str, Any], code: str | None = None) -> list[dict[str, Any]]:
    return [p for p in d["problems"] if code is None or p["code"] == code]


def assert_each_once(d: dict[str, Any], built: Built, *, exact_paths: bool = True) -> None:
    """Every DICOM image of the medium is listed exactly once, with its real path; no sentinel."""
    rows = listed(d)
    by_uid: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_uid.setdefault(r["sop_instance_uid"], []).append(r)
    for u, rel in built.expected.items():
        got = by_uid.get(u, [])
        assert len(got) == 1, f"{u} ({rel}) listed {len(got)} times: {got}"
        if exact_paths:
            assert got[0]["path"] == rel, (got[0]["path"], rel)
    paths = [r["path"] for r in rows if r["path"] is not None]
    assert len(paths) == len(set(paths)), f"a file listed twice: {sorted(paths)}"
    text = json.dumps(d)
    assert SENTINEL_UID not in text and SENTINEL_NAME not in text and SENTINEL_PID not in text


SR_BASIC_TEXT = "1.2.840.10008.5.1.4.1.1.88.11"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
MINIMAL_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]"
               b"/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue = value
    c.CodingSchemeDesignator = scheme
    c.CodeMeaning = meaning
    return c


def sr_info(base: ImageInfo) -> ImageInfo:
    """A Basic Text SR (SR DOCUMENT record) with its record keys present."""
    return replace(base, sop_class=SR_BASIC_TEXT, modality="SR", pixels=False, extra={
        "CompletionFlag": "COMPLETE", "VerificationFlag": "UNVERIFIED",
        "ContentDate": "20240102", "ContentTime": "101600", "ValueType": "CONTAINER",
        "ContinuityOfContent": "SEPARATE",
        "ConceptNameCodeSequence": [_code("11528-7", "LN", "Radiology Report")]})


def pdf_info(base: ImageInfo) -> ImageInfo:
    """An Encapsulated PDF (ENCAP DOC record)."""
    pdf = MINIMAL_PDF + (b"\0" if len(MINIMAL_PDF) % 2 else b"")
    return replace(base, sop_class=ENCAPSULATED_PDF, modality="DOC", pixels=False, extra={
        "MIMETypeOfEncapsulatedDocument": "application/pdf", "EncapsulatedDocument": pdf,
        "ContentDate": "20240102", "ContentTime": "101700", "BurnedInAnnotation": "NO",
        "DocumentTitle": "REPORT", "ConceptNameCodeSequence": [],
        "AcquisitionDateTime": "20240102101700"})


RLE_LOSSLESS = "1.2.840.10008.1.2.5"


def rle_bytes(info: ImageInfo) -> bytes:
    """The image RLE Lossless compressed by pydicom (a compressed source for transcoding)."""
    from pydicom.uid import RLELossless

    ds = pydicom_read(dicom_bytes(info))
    ds.compress(RLELossless, generate_instance_uid=False)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def pydicom_read(data: bytes) -> Dataset:
    import pydicom

    return pydicom.dcmread(io.BytesIO(data), force=True)


def meta_end(data: bytes) -> int:
    """Offset of the first body byte of a file written by :func:`dicom_bytes` (with preamble)."""
    assert data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00"
    return 144 + struct.unpack("<I", data[140:144])[0]


def set_meta_ts(data: bytes, ts: str) -> bytes:
    """Rewrite (0002,0010) in place (same length, NUL padded) to claim another transfer syntax."""
    pos = data.index(b"\x02\x00\x10\x00UI", 132)
    n = struct.unpack("<H", data[pos + 6:pos + 8])[0]
    new = ts.encode()
    assert len(new) <= n
    return data[:pos + 8] + new.ljust(n, b"\0") + data[pos + 8 + n:]


def jpeg_baseline_bytes(info: ImageInfo, *, lossy_attrs: bool = True) -> bytes:
    """The image as 8-bit JPEG Baseline (lossy), encapsulated (a compressed DVD/USB source)."""
    import numpy as np
    from PIL import Image
    from pydicom.encaps import encapsulate

    ds = make_dataset(info)
    arr = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=80)
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    if lossy_attrs:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = "8"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = info.sop_class
    fm.MediaStorageSOPInstanceUID = info.sop_uid
    fm.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.file_meta = fm
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def mpeg2_video_bytes(info: ImageInfo) -> bytes:
    """A Video Endoscopic instance in MPEG2 MP@ML (a CD profile cannot hold it)."""
    from pydicom.encaps import encapsulate

    ds = make_dataset(replace(info, sop_class="1.2.840.10008.5.1.4.1.1.77.1.1.1",
                              modality="ES"))
    ds.Rows, ds.Columns = 16, 16
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.PlanarConfiguration = 0
    ds.NumberOfFrames = 2
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    ds["PixelData"].VR = "OB"
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = ds.SOPClassUID
    fm.MediaStorageSOPInstanceUID = info.sop_uid
    fm.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
    ds.file_meta = fm
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# A tiny read-only FUSE file system that fails reads with EIO (a scratched disc), pure Python
# --------------------------------------------------------------------------------------------

_FUSE_HDR = struct.Struct("<IIQQIIII")  # len, opcode, unique, nodeid, uid, gid, pid, padding
_ATTR = struct.Struct("<QQQQQQIIIIIIIIII")  # fuse_attr (88 bytes)


def serve_fuse(spec_path: str) -> None:
    """Mount and serve the tree described in ``spec_path`` (JSON) until unmounted.

    Spec: ``{"mount": dir, "files": {rel: hex}, "eio": [rel...], "eio_dirs": [rel...],
    "log": path}``. Reads of an ``eio`` file fail with EIO (each attempt is logged to ``log``),
    listings of an ``eio_dirs`` folder fail with EIO. Needs root (mount(2) with fd=).
    """
    import ctypes
    import errno

    spec = json.loads(Path(spec_path).read_text())
    files = {k: bytes.fromhex(v) for k, v in spec["files"].items()}
    eio, eio_dirs = set(spec["eio"]), set(spec.get("eio_dirs", []))
    dirs: set[str] = {""}
    for rel in files:
        parts = rel.split("/")
        dirs.update("/".join(parts[:k]) for k in range(1, len(parts)))
    paths = sorted(dirs) + sorted(files)
    ino = {p: k + 1 for k, p in enumerate(paths)}  # root = 1
    by_ino = {v: k for k, v in ino.items()}
    log = open(spec["log"], "a", buffering=1)  # noqa: SIM115
    fd = os.open("/dev/fuse", os.O_RDWR)
    libc = ctypes.CDLL(None, use_errno=True)
    opts = f"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other".encode()
    if libc.mount(b"qafuse", spec["mount"].encode(), b"fuse", ctypes.c_ulong(6), opts) != 0:
        raise OSError(ctypes.get_errno(), "mount failed")
    Path(spec["log"] + ".ready").write_text("ok")

    def attr(p: str) -> bytes:
        is_dir = p in dirs
        size = 0 if is_dir else len(files[p])
        mode = (0o040555 if is_dir else 0o100444)
        return _ATTR.pack(ino[p], size, (size + 511) // 512, 0, 0, 0, 0, 0, 0, mode,
                          2 if is_dir else 1, 0, 0, 0, 4096, 0)

    def children(p: str) -> list[str]:
        pre = p + "/" if p else ""
        return sorted({q[len(pre):].split("/")[0] for q in paths
                       if q.startswith(pre) and q != p and q})

    while True:
        try:
            buf = os.read(fd, 1 << 20 | 4096)
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.EBADF):
                return
            if exc.errno in (errno.EINTR, errno.ENOENT, errno.EAGAIN):
                continue
            raise
        if not buf:
            return
        _, op, unique, node, *_ = _FUSE_HDR.unpack_from(buf)
        body = buf[_FUSE_HDR.size:]
        err, out = 0, b""
        p = by_ino.get(node, "")
        if op == 26:  # INIT
            major, minor = struct.unpack_from("<II", body)
            out = struct.pack("<IIIIHHIIHHI", 7, min(minor, 31), 0, 0, 0, 0, 1 << 20, 1, 0, 0,
                              0) + b"\0" * 28
        elif op == 1:  # LOOKUP
            name = body.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            q = f"{p}/{name}" if p else name
            if q in ino:
                out = struct.pack("<QQQQII", ino[q], 0, 1, 1, 0, 0) + attr(q)
            else:
                err = -errno.ENOENT
        elif op == 3:  # GETATTR
            out = struct.pack("<QII", 1, 0, 0) + attr(p)
        elif op in (14, 27):  # OPEN, OPENDIR
            out = struct.pack("<QII", 0, 0, 0)
        elif op == 15:  # READ
            _, off, size = struct.unpack_from("<QQI", body)
            if p in eio:
                log.write(f"EIO {p}\n")
                err = -errno.EIO
            else:
                out = files[p][off:off + size]
        elif op == 28:  # READDIR
            _, off, size = struct.unpack_from("<QQI", body)
            if p in eio_dirs:
                log.write(f"EIO-DIR {p}\n")
                err = -errno.EIO
            else:
                entries = [(".", p), ("..", p)] + [
                    (c, f"{p}/{c}" if p else c) for c in children(p)]
                chunks = []
                for k, (name, q) in enumerate(entries[off:], start=off + 1):
                    nb = name.encode()
                    ent = struct.pack("<QQII", ino[q], k, len(nb),
                                      4 if q in dirs else 8) + nb
                    ent += b"\0" * (-len(ent) % 8)
                    if sum(map(len, chunks)) + len(ent) > size:
                        break
                    chunks.append(ent)
                out = b"".join(chunks)
        elif op == 17:  # STATFS
            out = struct.pack("<QQQQQIIII", 1000, 0, 0, len(paths), 0, 2048, 255, 2048, 0) \
                + b"\0" * 24
        elif op in (2, 42, 36):  # FORGET, BATCH_FORGET, INTERRUPT: no reply
            continue
        elif op in (18, 25, 29, 34, 38):  # RELEASE, FLUSH, RELEASEDIR, ACCESS, DESTROY
            pass
        else:
            err = -errno.ENOSYS
        reply = struct.pack("<IiQ", 16 + len(out), err, unique) + out
        try:
            os.write(fd, reply)
        except OSError as exc:
            if exc.errno == errno.ENOENT:  # the request was interrupted
                continue
            raise
        if op == 38:
            return


@dataclass
class FuseMount:
    mount: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def eio_reads(self) -> list[str]:
        return [ln.split(" ", 1)[1] for ln in self.log.read_text().splitlines()
                if ln.startswith("EIO ")]

    def close(self) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.umount2(str(self.mount).encode(), 2)  # MNT_DETACH
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def mount_fuse(tmp: Path, files: dict[str, bytes], eio: Iterable[str] = (),
               eio_dirs: Iterable[str] = ()) -> FuseMount:
    """Serve ``files`` read-only at ``tmp/fusemnt`` with EIO on the given files/folders."""
    mnt = tmp / "fusemnt"
    mnt.mkdir()
    log = tmp / "fuse.log"
    log.write_text("")
    spec = tmp / "fuse.json"
    spec.write_text(json.dumps({"mount": str(mnt), "files": {k: v.hex() for k, v in
                                                            files.items()},
                                "eio": list(eio), "eio_dirs": list(eio_dirs), "log": str(log)}))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c",
                             "import sys; from tests.integration.hostile_media import serve_fuse;"
                             " serve_fuse(sys.argv[1])", str(spec)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = Path(str(log) + ".ready")
    t0 = time.monotonic()
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() - t0 > 10:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            proc.kill()
            raise OSError(f"FUSE mount failed: {err[-500:]}")
        time.sleep(0.02)
    return FuseMount(mnt, log, proc)


def j2k_lossless_bytes(info: ImageInfo) -> bytes:
    """A 64×64 12-bit image, JPEG 2000 Lossless (pylibjpeg-openjpeg encodes it)."""
    import numpy as np
    from pydicom.uid import JPEG2000Lossless

    ds = pydicom_read(dicom_bytes(info))
    ds.Rows = ds.Columns = 64
    ds.PixelData = (np.arange(64 * 64, dtype=np.uint16) * 7 % 4000).tobytes()
    ds.compress(JPEG2000Lossless, generate_instance_uid=False)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
