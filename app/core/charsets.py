"""Decode DICOM string values per Specific Character Set (0008,0005), never raising.

Every character set pydicom knows is supported, including ISO 2022 code extensions (escape
sequences, e.g. ``ISO 2022 IR 87`` for Japanese): the term → codec table and the escape
sequence table come from :mod:`pydicom.charset`. Unlike pydicom, decoding never warns or
raises: bad bytes are replaced (U+FFFD) and the result says it was not clean, so the caller can
record a ``bad-charset`` problem (STANDARDS.md §2, "Specific Character Set": each record is
decoded with its own charset).

Values without a declared charset are ASCII by the standard; non-ASCII bytes there are decoded
as UTF-8 when they are valid UTF-8 (a common writer mistake), else as Latin-1, and flagged.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

from pydicom.charset import CODES_TO_ENCODINGS, STAND_ALONE_ENCODINGS, handled_encodings
from pydicom.charset import python_encoding as _PY_ENCODING

__all__ = ["CharsetDecoder", "decoder_for", "parse_charset_value", "decode_text",
           "TEXT_VRS", "PN_DELIMS", "TEXT_DELIMS"]

ESC = 0x1B
_DEFAULT = "iso8859"  # pydicom's default (Latin-1 alias, a superset of ASCII)
PN_DELIMS = frozenset(b"^=\\")
TEXT_DELIMS = frozenset(b"\r\n\t\f\\")
# VRs whose values are affected by Specific Character Set (PS3.5 §6.1.2.3).
TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
_FRAGMENTS = re.compile(rb"(^[^\x1b]+|[\x1b][^\x1b]*)")


def parse_charset_value(raw: bytes | str | None) -> tuple[str, ...]:
    """The terms of a raw (0008,0005) value: split on ``\\``, padding stripped.

    An empty first value (the default repertoire followed by extensions) is kept as ``""``.
    """
    if raw is None:
        return ()
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    terms = [t.strip(" \0") for t in text.split("\\")]
    while terms and not terms[-1]:
        terms.pop()
    return tuple(terms)


def _codec_for_term(term: str) -> tuple[str, bool]:
    """Python codec for one DICOM term, and whether the term was valid as written."""
    codec = _PY_ENCODING.get(term)
    if codec is not None:
        return codec, True
    # Common misspellings (pydicom's corrections): "ISO IR 100", "ISO-IR 100", "ISO_IR100",
    # lowercase, "ISO 2022-IR 87".
    fixed = term.upper().replace("-", " ").replace("_", " ")
    fixed = re.sub(r"\s+", " ", fixed)
    m = re.fullmatch(r"ISO ?IR ?(\d+)", fixed)
    if m:
        codec = _PY_ENCODING.get(f"ISO_IR {m.group(1)}")
    else:
        m = re.fullmatch(r"ISO ?2022 ?IR ?(\d+)", fixed)
        if m:
            codec = _PY_ENCODING.get(f"ISO 2022 IR {m.group(1)}")
        elif fixed in ("UTF8", "UTF 8"):
            codec = "UTF8"
        else:
            codec = _PY_ENCODING.get(fixed)
    if codec is not None:
        return codec, False
    try:
        codecs.lookup(term)  # already a Python codec name
        return term, False
    except LookupError:
        return _DEFAULT, False


class CharsetDecoder:
    """Decoder for one Specific Character Set value.

    Attributes
    ----------
    terms : tuple of str
        The DICOM terms as recorded.
    encodings : list of str
        Python codecs, first = the default for fragments without an escape sequence.
    valid : bool
        False when a term was unknown or misspelled, or a stand-alone charset was combined
        with extensions (decoding still proceeds with the best guess).
    """

    def __init__(self, terms: tuple[str, ...] = ()) -> None:
        self.terms = terms
        self.valid = True
        self.declared = bool(terms and any(terms))
        encodings: list[str] = []
        for i, term in enumerate(terms or ("",)):
            if i == 0 and term == "":
                encodings.append(_DEFAULT)
                continue
            if i > 0 and term in STAND_ALONE_ENCODINGS:
                self.valid = False  # cannot be a code extension: ignored
                continue
            codec, ok = _codec_for_term(term)
            if not ok:
                self.valid = False
            encodings.append(codec)
            if i == 0 and term in STAND_ALONE_ENCODINGS and len(terms) > 1:
                self.valid = False  # extensions after a stand-alone charset: ignored
                break
        self.encodings = encodings or [_DEFAULT]
        self._first = self.encodings[0]
        self._iso2022 = len(self.encodings) > 1 or any(t.startswith("ISO 2022") for t in terms)

    def decode(self, raw: bytes, vr: str = "LO") -> tuple[str, bool]:
        """Decode ``raw`` (padding not stripped). Returns ``(text, clean)``; never raises."""
        if ESC not in raw:
            if raw.isascii():
                return raw.decode("ascii"), True
            if not self.declared:
                try:
                    return raw.decode("utf-8"), False
                except UnicodeDecodeError:
                    return raw.decode("latin-1"), False
            try:
                return raw.decode(self._first), True
            except UnicodeDecodeError:
                return raw.decode(self._first, "replace"), False
            except LookupError:  # pragma: no cover - codecs come from pydicom's table
                return raw.decode("latin-1", "replace"), False
        if vr == "PN":
            # Component delimiters reset the code extension state (PS3.5 §6.1.2.5.3).
            return self._decode_escaped(raw, PN_DELIMS)
        return self._decode_escaped(raw, TEXT_DELIMS)

    def _decode_escaped(self, raw: bytes, delimiters: frozenset[int]) -> tuple[str, bool]:
        """pydicom's ``decode_bytes`` algorithm, strict first, replacement on failure."""
        out: list[str] = []
        clean = True
        for frag in _FRAGMENTS.findall(raw):
            text, ok = self._decode_fragment(frag, delimiters)
            out.append(text)
            clean = clean and ok
        return "".join(out), clean

    def _decode_fragment(self, frag: bytes, delimiters: frozenset[int]) -> tuple[str, bool]:
        first = self._first
        if not frag.startswith(b"\x1b"):
            try:
                return frag.decode(first), True
            except UnicodeDecodeError:
                return frag.decode(first, "replace"), False
        seq_len = 4 if frag.startswith((b"\x1b$(", b"\x1b$)")) else 3
        encoding = CODES_TO_ENCODINGS.get(frag[:seq_len], "")
        if not encoding or (encoding not in self.encodings and encoding != _DEFAULT):
            # Unknown escape sequence, or one the charset does not declare.
            body = frag[seq_len:] if encoding else frag[1:]
            if encoding:
                try:
                    return body.decode(encoding), False
                except UnicodeDecodeError:
                    pass
            return body.decode(first, "replace"), False
        try:
            if encoding in handled_encodings:
                return frag.decode(encoding), True
            body = frag[seq_len:]
            idx = next((i for i, ch in enumerate(body) if ch in delimiters), None)
            if idx is not None:
                return body[:idx].decode(encoding) + body[idx:].decode(first), True
            return body.decode(encoding), True
        except UnicodeDecodeError:
            body = frag if encoding in handled_encodings else frag[seq_len:]
            return body.decode(encoding, "replace"), False


@lru_cache(maxsize=256)
def _decoder(terms: tuple[str, ...]) -> CharsetDecoder:
    return CharsetDecoder(terms)


def decoder_for(value: bytes | str | tuple[str, ...] | list[str] | None) -> CharsetDecoder:
    """A (cached) decoder for a raw (0008,0005) value, a term string, or a list of terms."""
    if isinstance(value, (tuple, list)):
        terms = tuple(t.strip(" \0") for t in value)
    else:
        terms = parse_charset_value(value)
    return _decoder(terms)


def decode_text(raw: bytes, charset: bytes | str | tuple[str, ...] | list[str] | None = None,
                vr: str = "LO") -> tuple[str, bool]:
    """Decode one raw string value with a Specific Character Set; ``(text, clean)``."""
    return decoder_for(charset).decode(raw, vr)
