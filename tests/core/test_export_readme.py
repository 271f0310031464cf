"""README.TXT (IHE PDI): ASCII, CRLF, institution/contact/application, no patient data."""

from __future__ import annotations

import datetime as _dt

from app import __version__
from app.core.export.readme_txt import render_readme, to_ascii


def test_readme_content_ascii_and_crlf() -> None:
    data = render_readme(profile="STD-GEN-CD", fileset_id="DB20261126", files=12,
                         total_bytes=3_400_000, institution="Klinikum München",
                         contact="Radiologie, Tel. +49 89 1234 – Zi. 5",
                         created=_dt.datetime(2026, 11, 26, 9, 30))
    text = data.decode("ascii")
    assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
    assert "Klinikum Munchen" in text and "+49 89 1234 ? Zi. 5" in text
    assert f"DiscBridge {__version__}" in text
    assert "DICOMDIR" in text and "PAnnn" in text and "STD-GEN-CD" in text
    assert "2026-11-26 09:30" in text and "12 DICOM files" in text
    assert "This is volume" not in text


def test_readme_spanning_note_and_defaults() -> None:
    text = render_readme(profile="STD-GEN-DVD-JPEG", fileset_id="DB_V02", files=1, total_bytes=1,
                         institution=None, contact="", created=_dt.datetime(2026, 1, 1),
                         volume=(2, 3)).decode("ascii")
    assert "volume 2 of 3" in text and "(not given)" in text


def test_to_ascii() -> None:
    assert to_ascii("Zoë Ådne\tÇa") == "Zoe Adne Ca"
    assert to_ascii("山田") == "??"
