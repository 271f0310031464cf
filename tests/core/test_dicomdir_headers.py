"""Fast header reading for the DICOMDIR writer: same result as pydicom's dcmread."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from tests.core.test_dicomdir_write import corpus
from tests.media import make_dataset, write_instance


@pytest.mark.parametrize("name", [
    "CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
    "JPEG2000.dcm", "SC_rgb_rle.dcm", "image_dfl.dcm", "reportsi.dcm", "rtplan.dcm",
    "rtstruct.dcm", "rtdose.dcm", "waveform_ecg.dcm", "nested_priv_SQ.dcm", "test-SR.dcm",
    "chrH31.dcm", "chrX1.dcm", "chrFren.dcm"])
def test_fast_header_reader_matches_pydicom(name: str) -> None:
    from pydicom.data import get_charset_files, get_testdata_file

    from app.core.dicomdir.headers import read_header

    path = get_testdata_file(name, download=False)
    if path is None:
        found = [p for p in get_charset_files(name) if p.endswith(name)]
        path = found[0] if found else None
    if path is None:
        pytest.skip(f"{name} not shipped with this pydicom")
    raw = Path(path).read_bytes()
    if raw[128:132] != b"DICM":
        pytest.skip("not a Part 10 file")
    ours = read_header(Path(path))
    ref = pydicom.dcmread(path, stop_before_pixels=True)
    assert [e.tag for e in ours] == [e.tag for e in ref]
    for elem in ref:
        assert ours[elem.tag].value == elem.value, elem.tag
    for elem in ref.file_meta:
        if elem.tag != 0x00020000:
            assert ours.file_meta[elem.tag].value == elem.value, elem.tag


def test_fast_header_reader_on_our_corpus(tmp_path: Path) -> None:
    from app.core.dicomdir.headers import read_header

    for n, (_, ds) in enumerate(corpus()):
        path = write_instance(tmp_path / f"F{n}", ds)
        ours, ref = read_header(path), pydicom.dcmread(path, stop_before_pixels=True)
        assert [e.tag for e in ours] == [e.tag for e in ref]
        for elem in ref:
            assert ours[elem.tag].value == elem.value, elem.tag
    # Header longer than the first read (64 KiB): same result through the fallback.
    # Headers beyond the first 8 KiB read and beyond 64 KiB: same result (second read, dcmread).
    for size in (20000, 70000):
        big = make_dataset()
        big.add_new(0x00290010, "LO", "DISCBRIDGE TEST")
        big.add_new(0x00291010, "OB", b"\x01" * size)
        path = write_instance(tmp_path / f"BIG{size}", big)
        head = read_header(path)
        assert head[0x00291010].value == b"\x01" * size
        assert head.InstanceNumber == big.InstanceNumber and "PixelData" not in head



def test_hostile_header_bytes_give_value_errors_naming_the_file(tmp_path: Path) -> None:
    """Random damage to a header: either a DICOMDIR or a ValueError naming the file."""
    import random
    import warnings

    from app.core.dicomdir.profiles import get_profile
    from app.core.dicomdir.write import build_dicomdir, read_entries_for_folder

    path = write_instance(tmp_path / "PA001" / "ST001" / "SE001" / "IM000001",
                          make_dataset(SpecificCharacterSet="ISO_IR 192", PatientName="Zoë"))
    good = path.read_bytes()
    rng = random.Random(7)
    outcomes = {"ok": 0, "refused": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in range(300):
            damaged = bytearray(good)
            for _ in range(rng.randint(1, 6)):
                damaged[rng.randrange(132, 1200)] = rng.randrange(256)
            path.write_bytes(bytes(damaged))
            try:
                entries = read_entries_for_folder(tmp_path)
                build_dicomdir(entries, fileset_id="FUZZ",
                               profile=get_profile("STD-GEN-DVD-JPEG") if n % 2 else None)
                outcomes["ok"] += 1
            except ValueError as exc:
                assert "PA001/ST001/SE001/IM000001" in str(exc), exc
                outcomes["refused"] += 1
    assert outcomes["ok"] and outcomes["refused"]
