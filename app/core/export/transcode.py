"""Per-file work of an export: File Meta parsing/encoding, rewriting and transcoding.

The cheap paths (fast copy, new header + unchanged body) are in :mod:`app.core.export.write`;
this module holds what needs pydicom: a full rewrite with Type 1 fixes, a transfer syntax change
(decode/encode), icons. :func:`process_file` is a top-level function so that a
``ProcessPoolExecutor`` can run it on every core.

Rules (STANDARDS.md §1, §4): a file whose File Meta changes gets our Implementation Class UID and
Version Name (``app/__init__.py``); decompressing a lossy source keeps Lossy Image Compression
"01" with its ratio and method; the SOP Instance UID is kept (a transfer syntax change does not
make a new instance).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import os
import struct
import warnings
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from app.core.dicom.file_meta import our_file_meta
from app.core.export.fixes import apply_fixes
from app.core.imaging.jpeg_lossless import keep_gdcm_out_of_pydicom

EXPLICIT_LE = str(ExplicitVRLittleEndian)
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"

# Lossy transfer syntaxes → Lossy Image Compression Method (PS3.3 C.7.6.1.1.5.1).
LOSSY_METHOD: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",  # only when the dataset says it was lossy
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",
}
VIDEO_TS = {
    "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.100.1", "1.2.840.10008.1.2.4.101",
    "1.2.840.10008.1.2.4.101.1", "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.102.1",
    "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.103.1", "1.2.840.10008.1.2.4.104",
    "1.2.840.10008.1.2.4.104.1", "1.2.840.10008.1.2.4.105", "1.2.840.10008.1.2.4.105.1",
    "1.2.840.10008.1.2.4.106", "1.2.840.10008.1.2.4.106.1", "1.2.840.10008.1.2.4.107",
    "1.2.840.10008.1.2.4.108",
}
_LONG_VRS = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV", b"SV",
             b"UV"}


def ts_name(ts: str | None) -> str:
    """A transfer syntax's name for messages."""
    if not ts:
        return "no transfer syntax"
    name = UID(ts).name
    return name if name and name != ts else ts


def is_compressed(ts: str) -> bool:
    """True for encapsulated (compressed) transfer syntaxes."""
    return ts not in (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED_LE) and UID(ts).is_compressed


def can_decode(ts: str) -> bool:
    """True when an installed pydicom plugin can decode pixel data of this transfer syntax."""
    if not is_compressed(ts):
        return True
    if ts in VIDEO_TS:
        return False
    try:
        from pydicom.pixels import get_decoder

        return bool(get_decoder(ts).is_available)
    except (NotImplementedError, ValueError):
        return False


def can_encode(ts: str) -> bool:
    """True when pydicom can encode this transfer syntax here (JPEG Lossless SV1 needs gdcm)."""
    if not is_compressed(ts):
        return True
    if ts == JPEG_LOSSLESS_SV1:  # pydicom has no encoder: ours, through python-gdcm
        from app.core.imaging.jpeg_lossless import can_encode_jpeg_lossless_sv1

        return can_encode_jpeg_lossless_sv1()
    try:
        from pydicom.pixels import get_encoder

        return bool(get_encoder(ts).is_available)
    except (NotImplementedError, ValueError):
        return False


@dataclass(frozen=True)
class MetaInfo:
    """Where a source file's dataset starts and whether its File Meta can be kept as is."""

    has_prefix: bool  # 128-byte preamble + "DICM"
    body_offset: int  # first byte after group 0002 (0 when no prefix)
    group_length_ok: bool
    version_ok: bool
    transfer_syntax: str | None
    sop_class: str | None
    sop_instance: str | None


_META_HEAD = struct.Struct("<HH2sH")
_META_U32 = struct.Struct("<I")


def parse_meta_info(buf: bytes) -> MetaInfo:
    """Parse the preamble and group 0002 (always Explicit VR LE, PS3.10 §7.1) of a file's first
    bytes, without pydicom. Never raises: cut or odd bytes give what could be read."""
    if len(buf) < 132 or buf[128:132] != b"DICM":
        return MetaInfo(False, 0, False, False, None, None, None)
    pos, size = 132, len(buf)
    values: dict[int, bytes] = {}
    group_length: int | None = None
    group_length_end = 0
    while pos + 8 <= size:
        group, elem, vr, short_len = _META_HEAD.unpack_from(buf, pos)
        if group != 0x0002:
            break
        if vr in _LONG_VRS:
            if pos + 12 > size:
                break
            length, hdr = _META_U32.unpack_from(buf, pos + 8)[0], 12
        else:
            length, hdr = short_len, 8
        if length == 0xFFFFFFFF or length > 1 << 20:
            break
        value = buf[pos + hdr:pos + hdr + length]
        pos += hdr + length
        values[elem] = value
        if elem == 0x0000 and length == 4:
            group_length = struct.unpack("<I", value)[0] if len(value) == 4 else None
            group_length_end = pos
    gl_ok = group_length is not None and group_length_end + group_length == pos

    def text(e: int) -> str | None:
        v = values.get(e)
        if v is None:
            return None
        s = v.decode("ascii", "replace").strip("\x00 ")
        return s or None

    return MetaInfo(True, pos, gl_ok, values.get(0x0001) == b"\x00\x01", text(0x0010),
                    text(0x0002), text(0x0003))


def encode_file_meta(sop_class: str, sop_instance: str, transfer_syntax: str,
                     source_ae: str | None = None) -> bytes:
    """Preamble + ``DICM`` + a complete group 0002 with our implementation UID and name."""
    meta = our_file_meta(sop_class, sop_instance, transfer_syntax, source_ae)
    buf = io.BytesIO()
    buf.write(b"\x00" * 128 + b"DICM")
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_file_meta_info

    fp = DicomFileLike(buf)
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_file_meta_info(fp, meta, enforce_standard=True)
    return buf.getvalue()


def set_our_meta(ds: Dataset, transfer_syntax: str) -> None:
    """Give ``ds`` a fresh File Meta for ``transfer_syntax`` with our implementation UID."""
    old = getattr(ds, "file_meta", None)
    ae = old.get("SourceApplicationEntityTitle") if old is not None else None
    ds.file_meta = our_file_meta(ds.SOPClassUID, ds.SOPInstanceUID, transfer_syntax, ae)


@dataclass
class FileJob:
    """One file to rewrite or transcode (or only to make an icon of, with ``dest`` None)."""

    source: str | bytes  # a local path, or the whole file (sources inside an .iso)
    dest: str | None  # staging path to create; None: icon only
    source_ts: str
    target_ts: str
    fixes: dict[str, str] = field(default_factory=dict)
    other_patient_id: str | None = None
    when: _dt.datetime | None = None
    icon_size: int | None = None
    want_hash: bool = True


@dataclass
class FileResult:
    """What a worker hands back: plain data only (bytes, numbers, strings), never a pydicom
    object, so that any result crosses a process boundary (pickling a Dataset fails on real
    files: lazily converted values hold local functions)."""

    size: int
    sha256: str | None
    header: bytes | None  # the written file without Pixel Data (Part 10 bytes): header_bytes()
    icon: bytes | None  # the Icon Image Sequence item, Explicit VR LE: item_bytes()
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # raised while working on this file
    pixel_digest: str | None = None  # pixel_digest() of the written file when pixels re-encoded
    worker_pid: int = field(default_factory=os.getpid)  # which process did the work


_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class PixelsChanged(ValueError):
    """A conversion that should have kept every pixel value did not: nothing of it is written."""


def pixel_digest(ds: Dataset) -> str | None:
    """SHA-256 of the decoded pixel values of every frame, with their shape and value type
    (the same for equal values whatever the byte order); None without pixel data. Decoding
    errors are raised."""
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        return None
    arr = np.asarray(ds.pixel_array)
    arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("="), copy=False))
    h = hashlib.sha256(f"{arr.shape}|{arr.dtype.kind}{arr.dtype.itemsize}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def pixels_changed(job: FileJob) -> bool:
    """True when ``job`` re-encodes pixel data (transfer syntax, byte order, bit packing)."""
    return job.dest is not None and job.source_ts != job.target_ts


def header_bytes(ds: Dataset) -> bytes:
    """``ds`` without Pixel Data as Part 10 bytes (its File Meta included)."""
    return encode_dataset(header_only(ds))


def header_from_bytes(data: bytes) -> Dataset:
    """The Dataset of :func:`header_bytes`' output (File Meta in ``file_meta``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # our own bytes: any warning was recorded at writing
        return pydicom.dcmread(io.BytesIO(data), force=True)


def item_bytes(item: Dataset) -> bytes:
    """A sequence item (an icon) encoded in Explicit VR Little Endian, without its Item tag."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, item)
    return fp.getvalue()


def item_from_bytes(data: bytes) -> Dataset:
    """The Dataset of :func:`item_bytes`' output."""
    from pydicom.filereader import read_dataset

    return read_dataset(io.BytesIO(data), is_implicit_VR=False, is_little_endian=True)


def load_dataset(source: str | bytes) -> Dataset:
    """Read a whole source file (pixel data left encoded), every element converted.

    Converting up front gives each element its VR even when the file's body is encoded other
    than its File Meta says (e.g. Implicit VR under an explicit transfer syntax), so that it
    can be written in the target encoding.
    Warnings are left to the caller (:func:`process_file` records them for the report).
    """
    fp: BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    with fp:
        ds = pydicom.dcmread(fp, force=True)
        ds.walk(lambda _ds, _elem: None)
    return ds


def header_only(ds: Dataset) -> Dataset:
    """A copy of ``ds`` without Pixel Data (and other bulk pixel elements), file_meta included."""
    hdr = Dataset()
    for elem in ds:
        if elem.tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):
            continue
        hdr.add(elem)
    hdr.file_meta = ds.file_meta
    return hdr


def _mark_lossy(ds: Dataset, source_ts: str, compressed_len: int, notes: list[str]) -> None:
    method = LOSSY_METHOD.get(source_ts)
    if method is None:
        return
    already = str(ds.get("LossyImageCompression", "")).strip()
    if source_ts == "1.2.840.10008.1.2.4.91" and already != "01":
        return  # JPEG 2000 "lossy or lossless": lossless unless the dataset says otherwise
    ds.LossyImageCompression = "01"
    ratios = ds.get("LossyImageCompressionRatio")
    methods = ds.get("LossyImageCompressionMethod")
    n_ratios = 0 if ratios in (None, "") else (len(ratios) if isinstance(ratios, list) else 1)
    n_methods = 0 if methods in (None, "") else (len(methods) if isinstance(methods, list) else 1)
    if n_methods == 0:  # one method per ratio value (PS3.3 C.7.6.1.1.5)
        ds.LossyImageCompressionMethod = [method] * max(1, n_ratios) if n_ratios > 1 else method
        n_methods = max(1, n_ratios)
    if n_ratios == 0 and n_methods == 1 and compressed_len > 0:
        ds.LossyImageCompressionRatio = f"{len(ds.PixelData) / compressed_len:.2f}"[:16]
    notes.append("lossy source: Lossy Image Compression 01 kept with its ratio and method")


def _to_explicit_le(ds: Dataset, source_ts: str, notes: list[str]) -> None:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return
    if is_compressed(source_ts):
        compressed_len = len(ds.PixelData)
        ds.decompress(generate_instance_uid=False, as_rgb=True)
        _mark_lossy(ds, source_ts, compressed_len, notes)
    if source_ts == EXPLICIT_BE:
        _swap_other_words(ds)
    if source_ts == EXPLICIT_BE and "PixelData" in ds:
        arr = ds.pixel_array
        if int(ds.get("SamplesPerPixel", 1)) > 1:
            ds.PlanarConfiguration = 0
        if int(ds.BitsAllocated) == 1:  # one bit per pixel, packed (PS3.5 8.1.1)
            from pydicom.pixels import pack_bits

            data = pack_bits(arr, pad=False)
        else:
            if int(ds.BitsAllocated) > 8:
                arr = arr.astype(arr.dtype.newbyteorder("<"))
            data = np.ascontiguousarray(arr).tobytes()
        ds.PixelData = data + (b"\x00" if len(data) % 2 else b"")
        ds["PixelData"].VR = "OB" if int(ds.BitsAllocated) <= 8 else "OW"


_WORD = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _swap_other_words(ds: Dataset) -> None:
    """Big Endian → Little Endian for raw word data (OW/OF/OL/OD/OV: overlays, LUTs, curves)
    other than Pixel Data, which pydicom leaves as bytes; numbers in other VRs are parsed."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or []:
                _swap_other_words(item)
            continue
        size = _WORD.get(str(elem.VR))
        if size is None or elem.tag == 0x7FE00010 or not isinstance(elem.value, bytes | bytearray):
            continue
        data = bytes(elem.value)
        usable = len(data) - len(data) % size
        arr = np.frombuffer(data[:usable], dtype=f">u{size}").astype(f"<u{size}")
        elem.value = arr.tobytes() + data[usable:]


def transcode_dataset(ds: Dataset, source_ts: str, target_ts: str, notes: list[str]) -> None:
    """Change ``ds`` in place from ``source_ts`` to ``target_ts`` (decode, then encode)."""
    if target_ts == source_ts:
        return
    _to_explicit_le(ds, source_ts, notes)
    if target_ts == JPEG_LOSSLESS_SV1:
        if "PixelData" in ds:
            from app.core.imaging.jpeg_lossless import apply_jpeg_lossless_sv1

            ds.file_meta.TransferSyntaxUID = EXPLICIT_LE  # the body is native LE now
            apply_jpeg_lossless_sv1(ds)  # ValueError: refused, named by the caller
    elif target_ts != EXPLICIT_LE and is_compressed(target_ts):
        ds.compress(target_ts, generate_instance_uid=False)
    set_our_meta(ds, target_ts)


def encode_dataset(ds: Dataset) -> bytes:
    """The complete file bytes of ``ds`` (preamble, File Meta, dataset)."""
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def process_file(job: FileJob) -> FileResult:
    """Rewrite/transcode one file into ``job.dest`` (created exclusively), and/or make its icon.

    Runs in a worker process (or in the export's own for a handful of files). Every warning
    raised meanwhile (pydicom's, the codecs') is recorded in ``FileResult.warnings`` for the
    report, never printed. Raises OSError (ENOSPC, vanished source) or pydicom/numpy errors,
    which the caller turns into an ExportError naming the file.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _process_file(job)
    result.warnings = warning_lines(caught)
    return result


def warning_lines(caught: list[warnings.WarningMessage]) -> list[str]:
    """Recorded warnings as one line each (``Category: message``), each said once."""
    seen: dict[str, None] = {}
    for w in caught:
        seen.setdefault(" ".join(f"{w.category.__name__}: {w.message}".split()), None)
    return list(seen)


def _process_file(job: FileJob) -> FileResult:
    keep_gdcm_out_of_pydicom()  # each worker process: gdcm can abort it on valid files
    ds = load_dataset(job.source)
    if job.source_ts and not str(ds.file_meta.get("TransferSyntaxUID", "")):
        ds.file_meta.TransferSyntaxUID = job.source_ts  # what the bytes use (no File Meta)
    notes: list[str] = []
    icon = None
    if job.icon_size:
        from app.core.imaging.display import make_icon_item

        try:
            icon = item_bytes(make_icon_item(ds, job.icon_size))
        except Exception as exc:  # noqa: BLE001 - an icon is optional: note it, go on
            notes.append(f"no icon: {exc}")
    if job.dest is None:
        return FileResult(0, None, None, icon, notes)
    if job.fixes or job.other_patient_id:
        apply_fixes(ds, job.fixes, other_patient_id=job.other_patient_id, when=job.when)
    before = pixel_digest(ds) if pixels_changed(job) else None  # the source's decoded values
    transcode_dataset(ds, job.source_ts, job.target_ts, notes)
    set_our_meta(ds, job.target_ts)
    data = encode_dataset(ds)
    after = None
    if before is not None:  # decode what will be written and compare, before writing it
        after = pixel_digest(pydicom.dcmread(io.BytesIO(data)))
        if after != before and job.target_ts not in LOSSY_METHOD:
            raise PixelsChanged(
                f"converting its pixel data from {ts_name(job.source_ts)} to "
                f"{ts_name(job.target_ts)} changed the decoded values (a conversion bug); "
                "nothing of it was written")
    digest = hashlib.sha256(data).hexdigest() if job.want_hash else None
    with open(job.dest, "xb") as out:
        out.write(data)
    return FileResult(len(data), digest, header_bytes(ds), icon, notes, pixel_digest=after)


def decoded_size(hdr: Dataset) -> int:
    """Estimated size of the native pixel data: rows × cols × frames × samples × bytes."""
    try:
        rows = int(hdr.get("Rows", 0) or 0)
        cols = int(hdr.get("Columns", 0) or 0)
        frames = int(hdr.get("NumberOfFrames", 1) or 1)
        samples = int(hdr.get("SamplesPerPixel", 1) or 1)
        bits = int(hdr.get("BitsAllocated", 8) or 8)
    except (TypeError, ValueError):
        return 0
    n = rows * cols * frames * samples * max(1, bits // 8)
    return n + (n % 2)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fp:
        while chunk := fp.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
