"""Application profiles (STANDARDS.md §4): names, transfer syntax rules, refusals, extra keys."""

from __future__ import annotations

import pytest

from app.core.dicomdir import profiles
from app.core.dicomdir.profiles import (
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    JPEG2000,
    JPEG2000_LOSSLESS,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS_SV1,
    RLE_LOSSLESS,
    get_profile,
)
from app.core.export.options import DEFAULT_PROFILE
from tests.media import make_dataset

MPEG2 = "1.2.840.10008.1.2.4.100"


def test_every_default_profile_exists() -> None:
    for name in DEFAULT_PROFILE.values():
        assert get_profile(name).name == name


@pytest.mark.parametrize("name", [
    "STD-GEN-CD", "STD-GEN-DVD-RAM", "STD-GEN-BD", "STD-GEN-DVD-JPEG", "STD-GEN-DVD-J2K",
    "STD-GEN-USB-JPEG", "STD-GEN-USB-J2K", "STD-GEN-BD-JPEG", "STD-GEN-BD-J2K", "STD-XABC-CD",
    "STD-CTMR-CD", "STD-CTMR-DVD", "STD-US-SC-MF-CDR", "STD-DEN-CD"])
def test_known_profiles(name: str) -> None:
    p = get_profile(name.lower())
    assert p.name == name
    assert EXPLICIT_VR_LE in p.transfer_syntaxes or name == "STD-XABC-CD"
    assert p.media


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ValueError) as err:
        get_profile("STD-GEN-FLOPPY")
    assert "STD-GEN-FLOPPY" in str(err.value)
    assert "STD-GEN-CD" in str(err.value) and "STD-XABC-CD" in str(err.value)


def test_gen_cd_is_uncompressed_only() -> None:
    cd = get_profile("STD-GEN-CD")
    assert cd.transfer_syntaxes == frozenset({EXPLICIT_VR_LE})
    for ts in (JPEG_LOSSLESS_SV1, JPEG_BASELINE, JPEG2000_LOSSLESS, IMPLICIT_VR_LE, RLE_LOSSLESS):
        assert not cd.accepts_transfer_syntax(ts)
        assert cd.target_transfer_syntax(ts, set()) == EXPLICIT_VR_LE
    assert cd.target_transfer_syntax(EXPLICIT_VR_LE) == EXPLICIT_VR_LE
    assert cd.extra_keys == {} and not cd.icon_required


@pytest.mark.parametrize("medium", ["DVD", "USB", "BD"])
def test_jpeg_and_j2k_variants(medium: str) -> None:
    jpeg = get_profile(f"STD-GEN-{medium}-JPEG")
    j2k = get_profile(f"STD-GEN-{medium}-J2K")
    for ts in (EXPLICIT_VR_LE, JPEG_LOSSLESS_SV1, JPEG_BASELINE, JPEG_EXTENDED):
        assert jpeg.target_transfer_syntax(ts) == ts
    assert jpeg.target_transfer_syntax(JPEG2000) == EXPLICIT_VR_LE
    assert j2k.target_transfer_syntax(JPEG2000) == JPEG2000
    assert j2k.target_transfer_syntax(JPEG2000_LOSSLESS) == JPEG2000_LOSSLESS
    assert j2k.target_transfer_syntax(JPEG_BASELINE) == EXPLICIT_VR_LE
    assert j2k.target_transfer_syntax(RLE_LOSSLESS) == EXPLICIT_VR_LE
    image = dict(jpeg.keys_for("IMAGE"))
    assert image["Rows"] == "1" and image["Columns"] == "1"
    assert image["ImageType"] == "1C" and image["PixelSpacing"] == "1C"
    assert dict(jpeg.keys_for("PATIENT")) == {"PatientBirthDate": "1C", "PatientSex": "1C"}
    assert "PerformingPhysicianName" in dict(j2k.keys_for("SERIES"))


def test_video_refused_on_cd() -> None:
    with pytest.raises(ValueError, match="video"):
        get_profile("STD-GEN-CD").target_transfer_syntax(MPEG2, {EXPLICIT_VR_LE})


def test_xabc_rules() -> None:
    xa = get_profile("STD-XABC-CD")
    assert xa.icon_required and xa.icon_size == 128
    assert xa.transfer_syntaxes == frozenset({JPEG_LOSSLESS_SV1})
    assert xa.target_transfer_syntax(JPEG_LOSSLESS_SV1) == JPEG_LOSSLESS_SV1
    assert xa.target_transfer_syntax(EXPLICIT_VR_LE, {JPEG_LOSSLESS_SV1}) == JPEG_LOSSLESS_SV1
    with pytest.raises(ValueError, match="cannot be encoded"):
        xa.target_transfer_syntax(EXPLICIT_VR_LE, set())
    ok = make_dataset(64, 64, SOPClassUID=profiles.XA_IMAGE, Modality="XA", BitsAllocated=8,
                      BitsStored=8, HighBit=7, PixelData=b"\0" * 64 * 64)
    assert xa.refusal(ok) is None
    ct = make_dataset()
    assert "SOP Class" in (xa.refusal(ct) or "")
    big = make_dataset(1024, 1024, SOPClassUID=profiles.XA_IMAGE, Modality="XA",
                       BitsAllocated=8, BitsStored=8, HighBit=7)
    assert "1024 rows" in (xa.refusal(big) or "")
    sixteen = make_dataset(64, 64, SOPClassUID=profiles.XA_IMAGE, Modality="XA")
    assert "Bits Allocated 16" in (xa.refusal(sixteen) or "")
    assert dict(xa.keys_for("IMAGE"))["ImageType"] == "1"
    assert dict(xa.keys_for("PATIENT"))["PatientSex"] == "2"


def test_ctmr_and_us() -> None:
    ctmr = get_profile("STD-CTMR-CD")
    assert ctmr.transfer_syntaxes == frozenset({EXPLICIT_VR_LE, JPEG_LOSSLESS_SV1})
    assert ctmr.icon_size == 64 and not ctmr.icon_required
    assert ctmr.refusal(make_dataset()) is None
    assert ctmr.refusal(make_dataset(SOPClassUID=profiles.US_IMAGE, Modality="US"))
    assert dict(ctmr.keys_for("IMAGE"))["Rows"] == "1"
    us = get_profile("STD-US-ID-SF-CDR")
    assert us.transfer_syntaxes == frozenset({EXPLICIT_VR_LE, RLE_LOSSLESS, JPEG_BASELINE})
    assert us.refusal(make_dataset(SOPClassUID=profiles.US_IMAGE, Modality="US")) is None
    assert us.refusal(make_dataset(SOPClassUID=profiles.US_MULTIFRAME_IMAGE, Modality="US"))
    assert get_profile("STD-US-ID-MF-CDR").refusal(
        make_dataset(SOPClassUID=profiles.US_MULTIFRAME_IMAGE, Modality="US")) is None


def test_dental() -> None:
    den = get_profile("STD-DEN-CD")
    dx = make_dataset(SOPClassUID=profiles.DX_INTRAORAL_PRESENTATION, Modality="IO")
    assert den.refusal(dx) is None
    assert den.refusal(make_dataset(SOPClassUID=profiles.DX_INTRAORAL_PRESENTATION,
                                    Modality="IO", BitsStored=9))
    assert den.refusal(make_dataset())
