"""README.TXT at the root of every exported medium (IHE RAD PDI, STANDARDS.md §6).

It gives the creating institution and its contact (``--institution``/``--contact`` or the
settings), the application's name and version, and a general description of how the medium is
organised; it holds **no patient data**. Plain ASCII (non-ASCII input is transliterated), CRLF
line ends so every system's text viewer shows it. The template is ``resources/README.TXT``.
"""

from __future__ import annotations

import datetime as _dt
import unicodedata
from pathlib import Path

from app import APP_NAME, __version__

TEMPLATE = Path(__file__).resolve().parents[2] / "resources" / "README.TXT"
_FALLBACK = (
    "DICOM MEDIUM - README\n\nDICOM data only (profile {profile}); no viewer included.\n\n"
    "Institution: {institution}\nContact:     {contact}\nCreated:     {created}\n"
    "Application: {application}\n\nDICOMDIR is the index; PAnnn/STnnn/SEnnn/IMnnnnnn are the\n"
    "patient/study/series/instance folders and files.\n{volume_note}\n"
    "File-set ID (volume label): {fileset_id}\nFiles on this medium: {files} DICOM files, "
    "{megabytes} MB.\n")


def to_ascii(text: str) -> str:
    """Printable ASCII: accents dropped (``München`` → ``Munchen``), anything else ``?``."""
    out = []
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(ch):
            continue
        if ch in "\r\n\t":
            out.append(" ")
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.append("?")
    return "".join(out).strip()


def render_readme(*, profile: str, fileset_id: str, files: int, total_bytes: int,
                  institution: str | None, contact: str | None, created: _dt.datetime,
                  volume: tuple[int, int] | None = None) -> bytes:
    """The README.TXT bytes (ASCII, CRLF). ``volume``: (number, count) when spanning."""
    try:
        template = TEMPLATE.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        template = _FALLBACK
    note = ""
    if volume is not None and volume[1] > 1:
        note = (f"\nThis is volume {volume[0]} of {volume[1]}. The export was too large for one\n"
                "medium; each volume is a complete DICOM medium of its own with its own\n"
                "DICOMDIR. A study may continue on the next volume.\n")
    text = template.format(
        profile=to_ascii(profile), fileset_id=to_ascii(fileset_id),
        institution=to_ascii(institution or "") or "(not given)",
        contact=to_ascii(contact or "") or "(not given)",
        created=created.strftime("%Y-%m-%d %H:%M"),
        application=to_ascii(f"{APP_NAME} {__version__}"),
        volume_note=note, files=files, megabytes=f"{total_bytes / 1e6:,.1f}")
    lines = text.replace("\r\n", "\n").split("\n")
    return "\r\n".join(line.rstrip() for line in lines).encode("ascii")
