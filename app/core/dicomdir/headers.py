"""Fast header reading for the DICOMDIR writer (files already in place, usually our own).

``read_header(path)`` reads the first 8 KiB (up to 64 KiB if needed) of a Part 10 file and, when the dataset is
Explicit VR Little Endian (native or encapsulated pixel data) with defined lengths up to the
Pixel Data, builds the pydicom Dataset straight from raw elements (pydicom decodes the values
lazily, with the file's Specific Character Set). Anything else (Implicit VR, Big Endian,
deflate, undefined-length sequences, headers beyond 64 KiB, odd bytes) is read by pydicom's
``dcmread(stop_before_pixels=True)``, so the result is the same, only slower.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.charset import convert_encodings
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileMetaDataset

FIRST = 8192  # enough for most headers; cold reads cost per page
CHUNK = 65536
_LONG = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UR", b"UT", b"UN",
                   b"SV", b"UV"})
_VRS = frozenset(v.encode() for v in (
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    "UN UR US UT UV").split())
_NOT_EXPLICIT_LE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.2",
                              "1.2.840.10008.1.2.1.99"})
_HEAD = struct.Struct("<HH2sH")
_U32 = struct.Struct("<I")
PIXEL_DATA = 0x7FE00008  # Float/Double Float/Pixel Data: stop before any of them


class NotPart10(Exception):  # noqa: N818 - internal signal
    """No ``DICM`` prefix at offset 128."""


def _elements(buf: bytes, pos: int, end: int, stop: int | None
              ) -> tuple[dict[int, RawDataElement], int] | None:
    """Raw elements from ``pos``; None when the fast path cannot be sure of the result."""
    out: dict[int, RawDataElement] = {}
    size = len(buf)
    while pos < end:
        if pos + 8 > size:
            return None
        group, elem, vr, short_len = _HEAD.unpack_from(buf, pos)
        tag = group << 16 | elem
        if stop is not None and tag >= stop:
            return out, pos
        if vr not in _VRS:
            return None
        if vr in _LONG:
            if pos + 12 > size:
                return None
            length = _U32.unpack_from(buf, pos + 8)[0]
            start = pos + 12
        else:
            length = short_len
            start = pos + 8
        if length == 0xFFFFFFFF or start + length > size:
            return None
        out[tag] = RawDataElement(tag, vr.decode("ascii"), length, buf[start:start + length],
                                  start, False, True)
        pos = start + length
    return out, pos


def read_header(path: Path) -> Dataset:
    """The header (no Pixel Data) of the Part 10 file ``path``, with ``file_meta``.

    Raises
    ------
    NotPart10
        The file has no ``DICM`` prefix at offset 128 (not a Part 10 file).
    pydicom's errors
        As ``dcmread`` for a file the fast path hands over.
    """
    with open(path, "rb") as fp:
        buf = fp.read(FIRST)
        if len(buf) < 132 or buf[128:132] != b"DICM":
            raise NotPart10(str(path))
        ds = _fast(buf, len(buf) < FIRST)
        if ds is None and len(buf) == FIRST:
            buf += fp.read(CHUNK - FIRST)
            ds = _fast(buf, len(buf) < CHUNK)
        if ds is None:
            fp.seek(0)
            ds = dcmread(fp, stop_before_pixels=True)
    ds.filename = str(path)
    return ds


def _fast(buf: bytes, whole: bool) -> Dataset | None:
    if len(buf) < 144 or buf[132:138] != b"\x02\x00\x00\x00UL":
        return None
    meta_end = 144 + _U32.unpack_from(buf, 140)[0]
    parsed = _elements(buf, 144, meta_end, None)
    if parsed is None or meta_end > len(buf):
        return None
    meta_raw, _ = parsed
    ts_raw = meta_raw.get(0x00020010)
    if ts_raw is None:
        return None
    ts = ts_raw.value.decode("ascii", "replace").strip("\0 ")
    if ts in _NOT_EXPLICIT_LE:
        return None
    body = _elements(buf, meta_end, len(buf), PIXEL_DATA)
    if body is None:
        return None
    raw, pos = body
    if pos >= len(buf) and not whole:
        return None  # the header may go on beyond what was read
    meta = FileMetaDataset()
    for tag, elem in meta_raw.items():
        if tag != 0x00020000:
            meta._dict[tag] = elem  # type: ignore[index]
    ds = Dataset(raw)
    ds.file_meta = meta
    charset = ds.get("SpecificCharacterSet")
    terms = [charset] if isinstance(charset, str) else list(charset or [])
    ds.set_original_encoding(False, True, convert_encodings(terms or None))
    return ds


def read_header_checked(path: Path, name: str) -> Dataset | None:
    """:func:`read_header`, None for a non-Part 10 file, ValueError naming ``name`` otherwise."""
    try:
        return read_header(path)
    except NotPart10:
        return None
    except OSError as exc:
        raise ValueError(f"{name}: cannot be read ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on hostile bytes
        raise ValueError(f"{name}: unreadable DICOM header ({type(exc).__name__}: {exc})"
                         ) from exc
