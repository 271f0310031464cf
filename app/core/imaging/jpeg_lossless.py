"""JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14, Selection Value 1) encoding.

STANDARDS.md §4: the STD-XABC-CD profile holds XA images in JPEG Lossless SV1
(1.2.840.10008.1.2.4.70) only; the JPEG profiles of STD-GEN-DVD/USB/BD allow it too. pydicom
cannot encode this transfer syntax, so the encoder here is python-gdcm (``import gdcm``, imported
lazily; an optional dependency): each frame becomes one gdcm image in memory (no temporary files),
``gdcm.ImageChangeTransferSyntax`` turns it into a JPEG Process 14 SV1 bit stream, and the frames
are encapsulated per PS3.5 §A.4 (Basic Offset Table, one fragment per frame) with pydicom.

Lossless means lossless: every result is decoded again with pydicom (pylibjpeg-libjpeg) and
compared with the source pixel values before it is returned; anything that would not come back
exactly raises ``ValueError`` naming the reason. Each bit stream is also checked to be SOF3
(lossless) with predictor 1 and no point transform.

Supported: MONOCHROME1, MONOCHROME2 and RGB (JPEG 2000 YBR_RCT/YBR_ICT sources decode to RGB);
Bits Allocated 8 or 16 with Bits Stored 2–16, unsigned or signed; any size from 1×1 to
65535²; single and multi-frame; any source transfer syntax pydicom can decode without gdcm
(native, deflated, big endian, RLE, JPEG, JPEG-LS, JPEG 2000; compressed sources are decoded
first, a lossy one keeps Lossy Image Compression "01"). gdcm writes the JPEG sample precision
as Bits Allocated (8 or 16; gdcm::JPEGCodec::SetPixelFormat), signed values as their full-width
two's complement, so decoders need no sign extension (pylibjpeg and DCMTK's dcmdjpeg both give
the exact values back). Refused: float pixel data, Bits Allocated 1 or 32, Bits Stored above
16 or below 2, YBR_FULL, YBR_FULL_422, PALETTE COLOR and other photometric interpretations,
values outside Bits Stored, pixel data nothing but gdcm decodes.

Never through pydicom's gdcm plugins: gdcm's C++ exceptions abort the process (see
:func:`keep_gdcm_out_of_pydicom`).
"""

from __future__ import annotations

import copy
import functools
import importlib
import warnings
from types import ModuleType
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID

from app.core.dicom.file_meta import our_file_meta

JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_SUPPORTED_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB")
# Pixel Data and the elements tied to its encoding, never copied from the source.
_PIXEL_TAGS = (0x7FE00010, 0x7FE00001, 0x7FE00002, 0x7FE00008, 0x7FE00009)
# Lossy transfer syntaxes → Lossy Image Compression Method (PS3.3 C.7.6.1.1.5.1).
_LOSSY_METHOD: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",
}
_GDCM_KEPT_OUT = False
_PLUGIN_ORDER = {"pylibjpeg": 0, "pydicom": 1, "pillow": 2}
_WORD = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


@functools.cache
def _gdcm() -> ModuleType | None:
    try:
        return importlib.import_module("gdcm")
    except ImportError:
        return None


def can_encode_jpeg_lossless_sv1() -> bool:
    """True when python-gdcm is importable here (imported on the first call only)."""
    return _gdcm() is not None


def keep_gdcm_out_of_pydicom() -> list[str]:
    """Remove python-gdcm from pydicom's pixel data decoders and encoders (idempotent).

    Installing python-gdcm makes pydicom try gdcm *first* for JPEG, JPEG-LS and JPEG 2000
    decoding and RLE encoding. gdcm raises C++ exceptions that SWIG does not catch, so some
    valid files (e.g. JPEG Lossless with Bits Stored 6 of 8 allocated) abort the whole process
    (``std::terminate``) instead of raising. Call this once at start-up, before any thread
    decodes (pydicom's plugin registry is not thread-safe), and in every worker process; the
    decoders then behave as they did without gdcm (pillow, pylibjpeg, pydicom). This module
    never uses gdcm through pydicom either way.

    Returns
    -------
    list[str]
        The transfer syntax UIDs whose decoder or encoder lost its gdcm plugin (empty on a
        second call).
    """
    global _GDCM_KEPT_OUT
    if _GDCM_KEPT_OUT:  # cheap enough to call once per file in worker processes
        return []
    from pydicom.pixels import get_decoder, get_encoder
    from pydicom.uid import AllTransferSyntaxes

    changed: list[str] = []
    for ts in AllTransferSyntaxes:
        for getter in (get_decoder, get_encoder):
            try:
                coder = getter(ts)
            except (NotImplementedError, ValueError, KeyError):
                continue
            try:
                coder.remove_plugin("gdcm")
            except (ValueError, KeyError):  # not registered (any more), or a racing call
                continue
            if str(ts) not in changed:
                changed.append(str(ts))
    _GDCM_KEPT_OUT = True
    return changed


def jpeg_lossless_sv1_refusal(ds: Dataset) -> str | None:
    """Why ``ds`` cannot be encoded by :func:`encode_jpeg_lossless_sv1` (None when it can).

    Checks the Image Pixel attributes only (a header without Pixel Data is fine), for planning
    before anything is decoded; the encoder itself may still refuse values it cannot keep
    exactly (e.g. a code stream with more bits than Bits Stored), and gdcm may be missing.
    """
    try:
        _check_attributes(ds, need_pixels=False)
    except ValueError as exc:
        return str(exc)
    return None


def apply_jpeg_lossless_sv1(ds: Dataset) -> None:
    """Like :func:`encode_jpeg_lossless_sv1`, but replaces the contents of ``ds`` in place.

    For pipelines that transcode a dataset in place: on success ``ds`` holds exactly the
    elements (and ``file_meta``) of the encoded copy; on ``ValueError`` it is unchanged.
    """
    encoded = encode_jpeg_lossless_sv1(ds)
    ds.clear()
    ds.update(encoded)
    ds.file_meta = encoded.file_meta


def encode_jpeg_lossless_sv1(ds: Dataset) -> Dataset:
    """A copy of ``ds`` with its Pixel Data encoded as JPEG Lossless SV1 (1.2.840.10008.1.2.4.70).

    Parameters
    ----------
    ds : pydicom.Dataset
        An image in any transfer syntax pydicom can decode (its ``file_meta`` gives the transfer
        syntax; Explicit VR Little Endian when it has none). It is not modified.

    Returns
    -------
    pydicom.Dataset
        A new dataset: every element of ``ds`` (deep-copied) except Pixel Data and its offset
        tables; Pixel Data encapsulated per PS3.5 §A.4 (Basic Offset Table, one fragment per
        frame); Photometric Interpretation as decoded (RGB for colour), Planar Configuration 0;
        a new File Meta with Transfer Syntax 1.2.840.10008.1.2.4.70 and our implementation
        UID and version name. A lossy source keeps/gets Lossy Image Compression "01".

    Raises
    ------
    ValueError
        The image cannot be encoded exactly (the message says why), gdcm is not installed, or
        the source pixel data cannot be decoded.
    """
    gdcm = _gdcm()
    if gdcm is None:
        raise ValueError("JPEG Lossless SV1 encoding needs python-gdcm, which is not installed")
    source_ts = _source_ts(ds)
    _check_attributes(ds)
    meta = _new_meta(ds)
    arr, photometric = _decode_source(ds, source_ts)
    bits_alloc = int(ds.BitsAllocated)
    bits_stored = int(ds.BitsStored)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    frames = arr if _n_frames(ds) > 1 else arr[np.newaxis]
    _check_range(frames, bits_stored, signed)
    # gdcm encodes with sample precision = Bits Allocated (gdcm::JPEGCodec::SetPixelFormat), so
    # signed values go in as their full-width two's complement bit pattern: every decoder that
    # reads the 8/16-bit container as signed gets them back, with no sign extension of its own.
    utype = np.dtype("<u1") if bits_alloc == 8 else np.dtype("<u2")
    fragments: list[bytes] = []
    for index, frame in enumerate(frames):
        pattern = (frame.astype(np.int32) & ((1 << bits_alloc) - 1)).astype(utype)
        stream = _encode_frame(gdcm, pattern, bits_alloc, bits_stored, spp, photometric)
        _check_sv1(stream, index)
        fragments.append(stream)

    out = Dataset()
    for elem in ds:
        if elem.tag not in _PIXEL_TAGS:
            out.add(copy.deepcopy(elem))
    if source_ts == _EXPLICIT_BE:
        _swap_other_words(out)
    out.PhotometricInterpretation = photometric
    if spp > 1:
        out.PlanarConfiguration = 0
    elif "PlanarConfiguration" in out:
        del out.PlanarConfiguration
    if UID(source_ts).is_compressed and source_ts in _LOSSY_METHOD:
        _mark_lossy(out, source_ts)
    out.file_meta = meta
    out.PixelData = encapsulate(fragments, has_bot=True)
    out["PixelData"].VR = "OB"
    out["PixelData"].is_undefined_length = True
    _verify(out, frames)
    return out


def _source_ts(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
    return ts or "1.2.840.10008.1.2.1"


def _check_attributes(ds: Dataset, need_pixels: bool = True) -> None:
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise ValueError("float pixel data cannot be encoded as JPEG Lossless")
    if need_pixels and "PixelData" not in ds:
        raise ValueError("the dataset has no Pixel Data")
    try:
        bits_alloc = int(ds.BitsAllocated)
        bits_stored = int(ds.BitsStored)
        rows, cols = int(ds.Rows), int(ds.Columns)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        signed = int(ds.get("PixelRepresentation", 0) or 0)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"the Image Pixel attributes are missing or invalid ({exc})") from exc
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if bits_alloc not in (8, 16):
        raise ValueError(f"Bits Allocated {bits_alloc} is not supported (8 or 16 only)")
    if not 2 <= bits_stored <= bits_alloc:
        raise ValueError(f"Bits Stored {bits_stored} is not supported with Bits Allocated "
                         f"{bits_alloc} (JPEG Lossless precision is 2–16 bits)")
    if rows < 1 or cols < 1 or rows > 65535 or cols > 65535:
        raise ValueError(f"image size {rows}×{cols} is not encodable")
    if spp not in (1, 3):
        raise ValueError(f"Samples per Pixel {spp} is not supported (1 or 3 only)")
    if signed not in (0, 1):
        raise ValueError(f"Pixel Representation {signed} is invalid")
    allowed = {1: ("MONOCHROME1", "MONOCHROME2"), 3: ("RGB", "YBR_RCT", "YBR_ICT")}[spp]
    if photometric not in allowed:
        raise ValueError(f"Photometric Interpretation {photometric or '(none)'} with "
                         f"{spp} sample(s) per pixel is not supported "
                         f"({', '.join(_SUPPORTED_PHOTOMETRIC)} only)")


def _n_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _decode_source(ds: Dataset, source_ts: str) -> tuple[np.ndarray, str]:
    """The source's pixel values as pydicom decodes them (no colour conversion) and the
    photometric interpretation they are in."""
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(source_ts)
    except (NotImplementedError, ValueError) as exc:
        raise ValueError(f"pixel data in {_ts_name(source_ts)} cannot be decoded ({exc})") from exc
    # pylibjpeg (the project's reference decoders) first; never gdcm: it aborts the whole
    # process on some valid input (e.g. JPEG Lossless with Bits Stored 6 of 8).
    plugins = [""] if decoder.is_native else sorted(
        (p for p in decoder.available_plugins if p != "gdcm"),
        key=lambda p: _PLUGIN_ORDER.get(p, len(_PLUGIN_ORDER)))
    if not plugins:
        raise ValueError(f"no installed plugin other than gdcm decodes {_ts_name(source_ts)}")
    errors: list[str] = []
    for plugin in plugins:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr, meta = decoder.as_array(ds, as_rgb=False, decoding_plugin=plugin)
            break
        except Exception as exc:  # noqa: BLE001 - corrupt or truncated pixel data
            errors.append(f"{plugin or 'pydicom'}: {exc}")
    else:
        raise ValueError(f"the source pixel data cannot be decoded ({'; '.join(errors)})")
    photometric = str(meta.get("photometric_interpretation", ds.PhotometricInterpretation))
    if photometric not in _SUPPORTED_PHOTOMETRIC:
        raise ValueError(f"the source decodes to {photometric}, which is not supported "
                         f"({', '.join(_SUPPORTED_PHOTOMETRIC)} only)")
    return arr, photometric


def _check_range(frames: np.ndarray, bits_stored: int, signed: bool) -> None:
    if frames.dtype.kind not in "ui":
        raise ValueError(f"pixel values of type {frames.dtype} cannot be encoded")
    if frames.size == 0:
        raise ValueError("the image has no pixels")
    lo, hi = int(frames.min()), int(frames.max())
    low, high = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed \
        else (0, (1 << bits_stored) - 1)
    if lo < low or hi > high:
        raise ValueError(f"pixel values {lo}..{hi} exceed Bits Stored {bits_stored}")


def _encode_frame(gdcm: Any, pattern: np.ndarray, bits_alloc: int, bits_stored: int, spp: int,
                  photometric: str) -> bytes:
    """One frame (rows, cols[, 3]) of unsigned bit patterns → a JPEG Process 14 SV1 bit stream."""
    rows, cols = pattern.shape[:2]
    data = np.ascontiguousarray(pattern).tobytes()
    # gdcm pads an odd-length value to even length and then splits it per frame, so an odd
    # byte count cannot be encoded as one frame (e.g. 8-bit 511×511): encode the frame twice
    # (even length, exact halves) and keep the first bit stream.
    copies = 2 if len(data) % 2 else 1
    image = gdcm.Image()
    image.SetNumberOfDimensions(3 if copies > 1 else 2)
    image.SetDimension(0, cols)
    image.SetDimension(1, rows)
    if copies > 1:
        image.SetDimension(2, copies)
    pf = gdcm.PixelFormat()
    pf.SetSamplesPerPixel(spp)
    pf.SetBitsAllocated(bits_alloc)
    pf.SetBitsStored(bits_stored)
    pf.SetHighBit(bits_stored - 1)
    pf.SetPixelRepresentation(0)  # the bit pattern; the sign stays in Pixel Representation
    image.SetPixelFormat(pf)
    pi = getattr(gdcm.PhotometricInterpretation, photometric)
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(pi))
    if spp > 1:
        image.SetPlanarConfiguration(0)
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.ExplicitVRLittleEndian))
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetByteStringValue(data * copies)
    image.SetDataElement(element)
    change = gdcm.ImageChangeTransferSyntax()
    try:
        change.SetTransferSyntax(
            gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(image)
        # ``change`` now holds the image through a gdcm SmartPointer, which deletes it when
        # ``change`` goes: Python must no longer own it, or the C++ object is freed twice
        # (abort "ReferenceCount > 0" or a segfault).
        image.thisown = False
        if not change.Change():
            raise ValueError(f"gdcm could not encode a {rows}×{cols} frame as JPEG Lossless SV1")
        parts = _fragments(change.GetOutput())
    finally:
        del change  # before anything it owns is touched again
    if len(parts) != copies:
        raise ValueError(f"gdcm produced {len(parts)} JPEG fragments for a {rows}×{cols} "
                         f"frame (expected {copies})")
    return parts[0]


def _fragments(output: Any) -> list[bytes]:
    """The bytes of every fragment of a gdcm image's encapsulated Pixel Data."""
    fragments = output.GetDataElement().GetSequenceOfFragments()
    if fragments is None:
        return []
    parts: list[bytes] = []
    for i in range(fragments.GetNumberOfFragments()):
        value = fragments.GetFragment(i).GetByteValue()
        # SWIG hands a char* back as str decoded with surrogateescape: undo it exactly.
        raw = value.GetBuffer()
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
        if len(data) != int(str(value.GetLength())):
            raise ValueError("gdcm returned a JPEG fragment of unexpected length")
        parts.append(data)
    return parts


def _check_sv1(stream: bytes, index: int) -> None:
    """Raise unless ``stream`` is a lossless (SOF3) JPEG with predictor 1 and no point transform."""
    if stream[:2] != b"\xff\xd8":
        raise ValueError(f"frame {index + 1}: the encoder returned no JPEG data")
    pos, sof = 2, None
    while pos + 4 <= len(stream):
        if stream[pos] != 0xFF:
            break
        marker = stream[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(stream[pos + 2:pos + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                      0xCF):
            sof = marker
        elif marker == 0xDA:
            ns = stream[pos + 4]
            ss, pt = stream[pos + 5 + 2 * ns], stream[pos + 7 + 2 * ns] & 0x0F
            if sof != 0xC3 or ss != 1 or pt != 0:
                raise ValueError(f"frame {index + 1}: the encoder did not produce JPEG Process 14 "
                                 f"SV1 (SOF {sof}, predictor {ss}, point transform {pt})")
            return
        pos += 2 + length
    raise ValueError(f"frame {index + 1}: the JPEG data has no scan")


def _verify(out: Dataset, frames: np.ndarray) -> None:
    """Decode ``out`` with pydicom and require exactly the source values."""
    from pydicom.pixels import get_decoder

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            back, _meta = get_decoder(JPEG_LOSSLESS_SV1).as_array(
                out, as_rgb=False, decoding_plugin="pylibjpeg")
    except Exception as exc:  # noqa: BLE001 - our own output must decode
        raise ValueError(f"the JPEG Lossless result does not decode ({exc})") from exc
    back = back.reshape(frames.shape)
    if not np.array_equal(back.astype(np.int64), frames.astype(np.int64)):
        raise ValueError("the JPEG Lossless result does not decode to the source pixel values")


def _new_meta(ds: Dataset) -> FileMetaDataset:
    old = getattr(ds, "file_meta", None) or FileMetaDataset()
    sop_class = ds.get("SOPClassUID") or old.get("MediaStorageSOPClassUID")
    sop_instance = ds.get("SOPInstanceUID") or old.get("MediaStorageSOPInstanceUID")
    if not sop_class or not sop_instance:
        raise ValueError("the dataset has no SOP Class or SOP Instance UID for its File Meta")
    return our_file_meta(sop_class, sop_instance, JPEG_LOSSLESS_SV1,
                         old.get("SourceApplicationEntityTitle"))


def _mark_lossy(out: Dataset, source_ts: str) -> None:
    """A lossy source stays marked lossy (PS3.3 C.7.6.1.1.5)."""
    already = str(out.get("LossyImageCompression", "") or "").strip()
    if source_ts == "1.2.840.10008.1.2.4.91" and already != "01":
        return  # JPEG 2000 "lossless or lossy": lossless unless the dataset says otherwise
    out.LossyImageCompression = "01"
    if not out.get("LossyImageCompressionMethod"):
        out.LossyImageCompressionMethod = _LOSSY_METHOD[source_ts]


def _swap_other_words(ds: Dataset) -> None:
    """Big Endian → Little Endian for raw OW/OF/OL/OD/OV values (LUTs, overlays) other than
    Pixel Data, which pydicom keeps as bytes in the source's byte order."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or []:
                _swap_other_words(item)
            continue
        size = _WORD.get(str(elem.VR))
        if size is None or not isinstance(elem.value, bytes | bytearray):
            continue
        data = bytes(elem.value)
        usable = len(data) - len(data) % size
        arr = np.frombuffer(data[:usable], dtype=f">u{size}").astype(f"<u{size}")
        elem.value = arr.tobytes() + data[usable:]


def _ts_name(ts: str) -> str:
    name = UID(ts).name
    return name if name and name != ts else ts
