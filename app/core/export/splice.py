"""Header fixes as a byte-level splice: new header bytes, then the source's body as it is.

A file that only needs values filled in (Study ID, Series Number, dates, UIDs …) is not decoded
and re-encoded by pydicom. Its header was indexed while planning (Explicit VR Little Endian,
defined lengths, up to the Pixel Data: :func:`app.core.export.sources._index`); the new file is

- our File Meta (:func:`app.core.export.transcode.encode_file_meta`, with the SOP Instance UID
  the copy gets),
- every element before the Pixel Data, in tag order: an unchanged one byte for byte as the
  source has it, a fixed one newly encoded, and the Original Attributes Sequence (0400,0561)
  with one new item whose Modified Attributes Sequence holds the replaced elements byte for
  byte (or empty ones for values that were absent), as :func:`app.core.export.fixes.apply_fixes`
  writes it,
- then the source from its Pixel Data element to its end, copied by the kernel.

Anything this cannot express exactly (a fix that is not text, a value the file's character set
cannot hold, an ID-clash resolution that edits a sequence) returns None: the file then goes to
the worker processes (pydicom), as before.
"""

from __future__ import annotations

import datetime as _dt
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.core.dicom.elements import dictionary_vr
from app.core.dicom.encode import (
    CHARSET_VRS,
    CharsetError,
    element_header,
    encode_element,
    encode_text,
    python_encodings,
)
from app.core.export.fixes import MODIFYING_SYSTEM, REASON_CORRECT
from app.core.export.transcode import encode_file_meta, parse_meta_info

if TYPE_CHECKING:
    from pydicom import Dataset

    from app.core.export.sources import SourceFile

_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UI", "UT"})
_ITEM = struct.Struct("<HHI")
T_OAS = 0x04000561
T_MODIFIED = 0x04000550
T_CHARSET = 0x00080005


@dataclass
class Splice:
    """The new bytes before ``offset`` of the source, and their element index."""

    prefix: bytes  # File Meta + the elements before the Pixel Data
    offset: int  # the source is copied from here (its Pixel Data element) to its end
    elements: dict[int, tuple[str, int, int]]  # tag → (VR, value offset in prefix, length)

    def header(self) -> Dataset:
        """The copy's header as a pydicom Dataset (values decoded lazily), for its record."""
        from app.core.export.sources import _build_dataset

        return _build_dataset(self.prefix, self.elements, parse_meta_info(self.prefix))


def _encode_text(value: str, vr: str, charset: str | None) -> bytes | None:
    """A fixed value's bytes in the file's character set; None when a splice cannot say it
    (not text of a character-set VR, ISO 2022 code extensions, not representable)."""
    if value.isascii():
        return value.encode("ascii")
    if vr not in CHARSET_VRS:
        return None
    try:
        encodings = python_encodings(charset)
        if len(encodings) != 1:
            return None  # ISO 2022 code extensions: leave it to pydicom
        return encode_text(value, encodings, vr == "PN")
    except (CharsetError, LookupError):
        return None


def splice_fixes(s: SourceFile, fixes: dict[str, str], sop_class: str, sop_uid: str,
                 transfer_syntax: str, when: _dt.datetime | None) -> Splice | None:
    """The splice that applies ``fixes`` to ``s`` (module doc), or None when it cannot."""
    from app.core.export.sources import _tag

    elems = s.elements
    if elems is None or not fixes or transfer_syntax != s.transfer_syntax:
        return None
    raw = s.raw
    charset = s.get("SpecificCharacterSet")
    # The source's elements, byte for byte: contiguous from the body's start, in file order.
    body: dict[int, tuple[str, bytes, int]] = {}  # tag → (VR, element bytes, header size)
    pos = s.body_offset
    for tag, (vr, start, length) in elems.items():
        body[tag] = (vr, raw[pos:start + length], start - pos)
        pos = start + length
    if pos != s.header_bytes:
        return None
    replaced: list[tuple[int, bytes]] = []
    for keyword, value in fixes.items():
        tag = _tag(keyword)
        vr = dictionary_vr(tag) if tag is not None else None
        if tag is None or vr not in _TEXT_VRS or tag == T_CHARSET or tag >> 16 == 0x0002:
            return None
        data = _encode_text(value, vr, charset)
        if data is None:
            return None
        old = body.get(tag)
        replaced.append((tag, old[1] if old is not None else element_header(tag, vr, 0)))
        element = encode_element(tag, vr, data)
        body[tag] = (vr, element, len(element) - len(data) - len(data) % 2)
    stamp = (when or _dt.datetime.now(_dt.UTC).astimezone()).strftime("%Y%m%d%H%M%S%z")
    modified = b"".join(data for _tag_, data in sorted(replaced))
    item_body = (encode_element(T_MODIFIED, "SQ", _ITEM.pack(0xFFFE, 0xE000, len(modified))
                                + modified)
                 + encode_element(0x04000562, "DT", stamp.encode("ascii"))
                 + encode_element(0x04000563, "LO", MODIFYING_SYSTEM.encode("ascii"))
                 + encode_element(0x04000564, "LO", b"")
                 + encode_element(0x04000565, "CS", REASON_CORRECT.encode("ascii")))
    item = _ITEM.pack(0xFFFE, 0xE000, len(item_body)) + item_body
    old_oas = body.get(T_OAS)
    if old_oas is not None:
        if old_oas[0] != "SQ":
            return None
        value = old_oas[1][old_oas[2]:] + item  # the earlier items, then ours
    else:
        value = item
    oas = encode_element(T_OAS, "SQ", value)
    body[T_OAS] = ("SQ", oas, len(oas) - len(value))
    meta = encode_file_meta(sop_class, sop_uid, transfer_syntax)
    parts = [meta]
    index: dict[int, tuple[str, int, int]] = {}
    at = len(meta)
    for tag in sorted(body):
        vr, data, head = body[tag]
        index[tag] = (vr, at + head, len(data) - head)
        parts.append(data)
        at += len(data)
    return Splice(b"".join(parts), s.header_bytes, index)


__all__ = ["Splice", "splice_fixes"]
