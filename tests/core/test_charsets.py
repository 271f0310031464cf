"""charsets: every Specific Character Set pydicom supports, decoded without raising."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.charset import convert_encodings, encode_string, python_encoding
from pydicom.data import get_charset_files
from pydicom.valuerep import PersonName

from app.core.dicom.charsets import (
    KNOWN_TERMS,
    TERM_CODECS,
    CharsetDecoder,
    decode_text,
    decoder_for,
    parse_charset_value,
)


def test_term_table_matches_pydicom() -> None:
    """Our pydicom-free table is pydicom's table (every term pydicom supports)."""
    for term, codec in python_encoding.items():
        if term:
            assert TERM_CODECS[term] == codec, term
    assert set(TERM_CODECS) == {t for t in python_encoding if t}


ROUND_TRIP = [
    ("ISO_IR 100", "Müller^Hans"),
    ("ISO_IR 101", "Wałęsa^Lech"),
    ("ISO_IR 109", "Ġużeppi"),
    ("ISO_IR 110", "Ķēniņš"),
    ("ISO_IR 126", "Διονυσιος"),
    ("ISO_IR 127", "قباني^لنزار"),
    ("ISO_IR 138", "שרון^דבורה"),
    ("ISO_IR 144", "Люкceмбypг"),
    ("ISO_IR 148", "Çağlar^Şükrü"),
    ("ISO_IR 166", "นายสมชาย"),
    ("ISO_IR 13", "ﾔﾏﾀﾞ^ﾀﾛｳ"),
    ("ISO_IR 192", "Wang^XiaoDong=王^小东="[:-1]),
    ("GB18030", "Wang^XiaoDong=王^小东"),
    ("GBK", "Wang^XiaoDong=王^小东"),
    ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    ("ISO 2022 IR 13\\ISO 2022 IR 87", "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"),
    ("\\ISO 2022 IR 149", "Hong^Gildong=洪^吉洞=홍^길동"),
    ("ISO 2022 IR 100\\ISO 2022 IR 126", "Dionysios=Διονυσιος"),
]


@pytest.mark.parametrize(("charset", "text"), ROUND_TRIP)
def test_person_names_round_trip(charset: str, text: str) -> None:
    encs = convert_encodings(charset.split("\\"))
    raw = PersonName(text).encode(encs)
    got, clean = decode_text(raw, charset, "PN")
    assert (got.rstrip(" "), clean) == (text, True)


@pytest.mark.parametrize(("charset", "text"), [
    ("ISO_IR 100", "Schädel ÄÖÜ"),
    ("ISO_IR 192", "头部 CT ✓"),
    ("\\ISO 2022 IR 87", "頭部ＣＴ"),
    ("\\ISO 2022 IR 149", "머리 CT"),
])
def test_text_round_trip(charset: str, text: str) -> None:
    raw = encode_string(text, convert_encodings(charset.split("\\")))
    got, clean = decode_text(raw, charset, "LO")
    assert (got.rstrip(" "), clean) == (text, True)


def test_gb2312_code_extension() -> None:
    """PS3.5 Annex K style ISO 2022 IR 58 value: escape sequence before each GB2312 run."""
    raw = b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab="
    assert decode_text(raw, "\\ISO 2022 IR 58", "PN") == ("Zhang^XiaoDong=张^小东=", True)


def test_jis_bytes_that_look_like_delimiters() -> None:
    """JIS X 0208 kanji can contain the bytes of '^' and '=' (やま = $d$^): not delimiters."""
    raw = b"\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B"
    assert decode_text(raw, "\\ISO 2022 IR 87", "PN") == ("やまだ^たろう", True)


CHARSET_FILES = ["chrArab.dcm", "chrFren.dcm", "chrFrenMulti.dcm", "chrGerm.dcm",
                 "chrGreek.dcm", "chrH31.dcm", "chrH32.dcm", "chrHbrw.dcm", "chrI2.dcm",
                 "chrJapMulti.dcm", "chrJapMultiExplicitIR6.dcm", "chrKoreanMulti.dcm",
                 "chrRuss.dcm", "chrX1.dcm", "chrX2.dcm"]


@pytest.mark.parametrize("name", CHARSET_FILES)
def test_pydicom_charset_samples(name: str) -> None:
    """Raw Patient's Name bytes of pydicom's charset samples decode as pydicom decodes them."""
    path = Path(get_charset_files(name)[0])
    ds = dcmread(path)
    raw_ds = dcmread(path)
    raw = raw_ds.get_item("PatientName").value
    charset = raw_ds.get_item("SpecificCharacterSet").value
    if isinstance(charset, bytes):
        charset = charset.decode("ascii")
    terms = charset if isinstance(charset, str) else list(charset)
    got, clean = decode_text(raw, terms, "PN")
    assert clean
    assert got.strip(" ").rstrip("=") == str(ds.PatientName).rstrip("=")


BAD_BYTES = [
    ("ISO_IR 192", b"M\xfcller"),            # Latin-1 bytes in a UTF-8 value
    ("ISO_IR 192", b"\xff\xfe\xfd"),
    ("\\ISO 2022 IR 87", b"\x1b$B\xff\xff\x1b(B"),
    ("\\ISO 2022 IR 87", b"\x1b$Z??\x1b(B"),   # unknown escape sequence
    ("ISO_IR 100", b"ok\x1b$Bxx"),            # escape not declared by the charset
    ("GB18030", b"\x81"),
    ("\\ISO 2022 IR 149", b"\x1b$)C\xff"),
]


@pytest.mark.parametrize(("charset", "raw"), BAD_BYTES)
@pytest.mark.parametrize("vr", ["PN", "LO", "LT"])
def test_bad_bytes_never_raise(charset: str, raw: bytes, vr: str) -> None:
    text, clean = decode_text(raw, charset, vr)
    assert isinstance(text, str) and text
    assert not clean


def test_undeclared_non_ascii() -> None:
    assert decode_text("Gómez".encode(), None) == ("Gómez", False)
    assert decode_text(b"G\xf3mez", None) == ("Gómez", False)
    assert decode_text(b"Gomez", None) == ("Gomez", True)


@pytest.mark.parametrize(("value", "terms", "valid"), [
    (b"ISO_IR 100", ("ISO_IR 100",), True),
    (b"ISO_IR 192 ", ("ISO_IR 192",), True),
    (b"\\ISO 2022 IR 87", ("", "ISO 2022 IR 87"), True),
    (b"ISO 2022 IR 6\\ISO 2022 IR 87\\", ("ISO 2022 IR 6", "ISO 2022 IR 87"), True),
    (b"ISO_IR 192\\ISO 2022 IR 87", ("ISO_IR 192", "ISO 2022 IR 87"), False),
    (b"ISO_IR100", ("ISO_IR100",), False),
    (b"ISO-IR 144", ("ISO-IR 144",), False),
    (b"ISO_IR 999", ("ISO_IR 999",), False),
    (b"", (), True),
    (None, (), True),
])
def test_parse_and_validate(value: bytes | None, terms: tuple[str, ...], valid: bool) -> None:
    assert parse_charset_value(value) == terms
    assert decoder_for(value).valid == valid


def test_misspelled_terms_still_decode() -> None:
    assert decode_text(b"M\xfcller", "ISO_IR100") == ("Müller", True)
    assert decode_text("Люк".encode("iso8859_5"), "ISO-IR 144") == ("Люк", True)
    assert decode_text(b"M\xfcller", "ISO_IR 999")[0] == "Müller"  # default: Latin-1 superset
    assert CharsetDecoder(("ISO_IR 192", "ISO 2022 IR 87")).encodings == ["UTF8"]


def test_known_terms_cover_the_standard() -> None:
    for n in (6, 13, 100, 101, 109, 110, 126, 127, 138, 144, 148, 166, 192):
        assert f"ISO_IR {n}" in KNOWN_TERMS
    for n in (6, 13, 58, 87, 100, 101, 109, 110, 126, 127, 138, 144, 148, 149, 159, 166):
        assert f"ISO 2022 IR {n}" in KNOWN_TERMS


def test_ascii_path_does_not_import_pydicom() -> None:
    """Parsing an ASCII/Latin-1 DICOMDIR needs no pydicom import (it costs ~0.2 s)."""
    code = ("import sys\n"
            "from app.core.dicom.charsets import decode_text\n"
            "assert decode_text(b'M\\xfcller', 'ISO_IR 100') == ('Müller', True)\n"
            "assert decode_text(b'abc', '\\\\ISO 2022 IR 87') == ('abc', True)\n"
            "import app.core.dicomdir.parse, app.core.dicom.header\n"
            "print('pydicom' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], check=True)
    assert out.stdout.strip() == "False"
