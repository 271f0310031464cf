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
from typing import Any

__all__ = ["CharsetDecoder", "decoder_for", "parse_charset_value", "decode_text", "string_value",
           "zeros_inside",
           "TEXT_VRS", "PN_DELIMS", "TEXT_DELIMS"]

ESC = 0x1B
_DEFAULT = "iso8859"  # pydicom's default (Latin-1 alias, a superset of ASCII)
PN_DELIMS = frozenset(b"^=\\")
TEXT_DELIMS = frozenset(b"\r\n\t\f\\")
# VRs whose values are affected by Specific Character Set (PS3.5 §6.1.2.3).
TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
_FRAGMENTS = re.compile(rb"(^[^\x1b]+|[\x1b][^\x1b]*)")
# Defined Terms of (0008,0005) (PS3.3 C.12.1.1.2): checked without importing pydicom.
STAND_ALONE_ENCODINGS = ("ISO_IR 192", "GBK", "GB18030")
# Python codec per Defined Term (PS3.3 C.12.1.1.2), identical to pydicom's
# ``charset.python_encoding`` (a test keeps them in step): resolved without importing pydicom.
TERM_CODECS = {
    "ISO_IR 6": _DEFAULT, "ISO_IR 13": "shift_jis", "ISO_IR 100": "latin_1",
    "ISO_IR 101": "iso8859_2", "ISO_IR 109": "iso8859_3", "ISO_IR 110": "iso8859_4",
    "ISO_IR 126": "iso_ir_126", "ISO_IR 127": "iso_ir_127", "ISO_IR 138": "iso_ir_138",
    "ISO_IR 144": "iso_ir_144", "ISO_IR 148": "iso_ir_148", "ISO_IR 166": "iso_ir_166",
    "ISO 2022 IR 6": _DEFAULT, "ISO 2022 IR 13": "shift_jis", "ISO 2022 IR 87": "iso2022_jp",
    "ISO 2022 IR 100": "latin_1", "ISO 2022 IR 101": "iso8859_2",
    "ISO 2022 IR 109": "iso8859_3", "ISO 2022 IR 110": "iso8859_4",
    "ISO 2022 IR 126": "iso_ir_126", "ISO 2022 IR 127": "iso_ir_127",
    "ISO 2022 IR 138": "iso_ir_138", "ISO 2022 IR 144": "iso_ir_144",
    "ISO 2022 IR 148": "iso_ir_148", "ISO 2022 IR 149": "euc_kr",
    "ISO 2022 IR 159": "iso2022_jp_2", "ISO 2022 IR 166": "iso_ir_166",
    "ISO 2022 IR 58": "iso_ir_58", "ISO_IR 192": "UTF8", "GB18030": "GB18030", "GBK": "GBK",
    "ISO 2022 GBK": "GBK", "ISO 2022 58": "GB2312",  # CP 1234
}
KNOWN_TERMS = frozenset(TERM_CODECS)
_TABLES: dict[str, Any] = {}


def _pydicom_tables() -> dict[str, Any]:
    """pydicom's charset tables, imported on first need (importing pydicom costs ~0.2 s, and
    ASCII values, the vast majority, never need them)."""
    if not _TABLES:
        from pydicom import charset as pc

        _TABLES.update(python_encoding=pc.python_encoding, codes=pc.CODES_TO_ENCODINGS,
                       handled=pc.handled_encodings)
    return _TABLES


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
    codec = TERM_CODECS.get(term)
    if codec is not None:
        return codec, True
    py_encoding = _pydicom_tables()["python_encoding"]
    codec = py_encoding.get(term)
    if codec is not None:
        return codec, term in KNOWN_TERMS
    # Common misspellings (pydicom's corrections): "ISO IR 100", "ISO-IR 100", "ISO_IR100",
    # lowercase, "ISO 2022-IR 87".
    fixed = term.upper().replace("-", " ").replace("_", " ")
    fixed = re.sub(r"\s+", " ", fixed)
    m = re.fullmatch(r"ISO ?IR ?(\d+)", fixed)
    if m:
        codec = py_encoding.get(f"ISO_IR {m.group(1)}")
    else:
        m = re.fullmatch(r"ISO ?2022 ?IR ?(\d+)", fixed)
        if m:
            codec = py_encoding.get(f"ISO 2022 IR {m.group(1)}")
        elif fixed in ("UTF8", "UTF 8"):
            codec = "UTF8"
        else:
            codec = py_encoding.get(fixed)
    if codec is not None:
        return codec, False
    try:  # already a Python text codec name (what some writers put there)?
        info = codecs.lookup(term)
        if not getattr(info, "_is_text_encoding", True) or b"Az".decode(term) != "Az":
            return _DEFAULT, False
        return term, False
    except (LookupError, ValueError, TypeError, UnicodeError):
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
        self.declared = bool(terms and any(terms))
        valid = True
        for i, term in enumerate(terms):
            if i == 0 and term == "":
                continue
            if term not in KNOWN_TERMS or (i > 0 and term in STAND_ALONE_ENCODINGS):
                valid = False
        if len(terms) > 1 and terms[0] in STAND_ALONE_ENCODINGS:
            valid = False
        self.valid = valid
        self._encodings: list[str] | None = None

    @property
    def encodings(self) -> list[str]:
        """Python codecs, resolved on first use (needs pydicom's tables)."""
        if self._encodings is None:
            encodings: list[str] = []
            for i, term in enumerate(self.terms or ("",)):
                if i == 0 and term == "":
                    encodings.append(_DEFAULT)
                    continue
                if i > 0 and term in STAND_ALONE_ENCODINGS:
                    continue  # cannot be a code extension: ignored
                encodings.append(_codec_for_term(term)[0])
                if i == 0 and term in STAND_ALONE_ENCODINGS:
                    break  # extensions after a stand-alone charset: ignored
            self._encodings = encodings or [_DEFAULT]
        return self._encodings

    @property
    def _first(self) -> str:
        return self.encodings[0]

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
        tables = _pydicom_tables()
        # Python's codecs strip these escape sequences themselves; GB2312 (iso_ir_58) does
        # not, although pydicom lists it (its escape is stripped here like the others).
        handled_encodings = tuple(e for e in tables["handled"] if e != "iso_ir_58")
        encoding = tables["codes"].get(frag[:seq_len], "")
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
    if value is None:
        return _decoder(())
    if isinstance(value, bytes):
        dec = _BY_RAW.get(value)
        if dec is None:
            dec = _decoder(parse_charset_value(value))
            if len(_BY_RAW) < 1024:
                _BY_RAW[value] = dec
        return dec
    if isinstance(value, (tuple, list)):
        terms = tuple(t.strip(" \0") for t in value)
    else:
        terms = parse_charset_value(value)
    return _decoder(terms)


_BY_RAW: dict[bytes, CharsetDecoder] = {}


def decode_text(raw: bytes, charset: bytes | str | tuple[str, ...] | list[str] | None = None,
                vr: str = "LO") -> tuple[str, bool]:
    """Decode one raw string value with a Specific Character Set; ``(text, clean)``."""
    return decoder_for(charset).decode(raw, vr)


# Text VRs may hold CR, LF, FF and TAB (PS3.5 §6.1.3); ESC starts ISO 2022 sequences.
_TEXT_ONLY = frozenset({"ST", "LT", "UT", "PN", "SH", "LO", "UC"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f-\x9f]")


def string_value(raw: bytes, vr: str, dec: CharsetDecoder) -> tuple[str | None, bool]:
    """A string element's value, decoded (text VRs with ``dec``) and stripped of padding;
    ``(None, clean)`` when empty or when it holds control bytes (junk from a damaged
    stretch, QA-14). ``clean`` is False when bytes did not fit the character set."""
    clean = True
    if vr in TEXT_VRS:
        text, clean = dec.decode(raw, vr)
        text = text.strip(" \0") if vr not in ("ST", "LT", "UT") else text.rstrip(" \0")
        if vr == "PN":
            text = text.rstrip("=")  # empty trailing component groups carry nothing
    else:
        text = raw.decode("ascii", "replace").strip(" \0")
    if not text.isprintable() and (vr not in _TEXT_ONLY or _CONTROL.search(text)):
        return None, clean
    return text or None, clean


def zeros_inside(buf: bytes, off: int, length: int, uid: bool = False) -> bool:
    """Zeros from a damaged stretch inside a string value: a NUL followed by other bytes,
    or (``uid``: a UID is padded with one NUL at most) several trailing NULs."""
    k = buf.find(b"\0", off, off + length)
    if k == -1:
        return False
    stripped = buf[off:off + length].rstrip(b"\0")
    return b"\0" in stripped or (uid and length - len(stripped) > 1)
