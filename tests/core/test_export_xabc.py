"""STD-XABC-CD end to end: XA images encoded to JPEG Lossless SV1 on export (python-gdcm)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.conftest import IN_CI
from tests.core.test_export_media import check_medium, export
from tests.media import make_dataset, write_instance

JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"


def _xa(frame_seed: int) -> pydicom.Dataset:
    rng = np.random.default_rng(frame_seed)
    pixels = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    ds = make_dataset(64, 64, SOPClassUID="1.2.840.10008.5.1.4.1.1.12.1", Modality="XA",
                      BitsAllocated=8, BitsStored=8, HighBit=7,
                      ImageType=["ORIGINAL", "PRIMARY", "SINGLE PLANE"],
                      RescaleIntercept=None, RescaleSlope=None, RescaleType=None)
    ds.PixelData = pixels.tobytes()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    return ds


def test_xa_is_encoded_to_jpeg_lossless_exactly(tmp_path: Path) -> None:
    from app.core.imaging.jpeg_lossless import can_encode_jpeg_lossless_sv1

    if not can_encode_jpeg_lossless_sv1():
        if IN_CI:
            pytest.fail("python-gdcm is part of the test extra and must be installed under CI")
        pytest.skip("python-gdcm not installed (pip install -e '.[xabc]')")
    src = tmp_path / "src"
    sources = [_xa(i) for i in range(3)]
    for i, ds in enumerate(sources):
        write_instance(src / f"xa{i}.dcm", ds)
    plan, report = export([src], tmp_path / "out", profile="STD-XABC-CD")
    assert report.ok and len(plan.files) == 3
    assert all(f.target_ts == JPEG_LOSSLESS_SV1 for f in plan.files)
    check_medium(tmp_path / "out", [src])  # dciodvfy, dcmdump, FileSet, pixels as the source
    by_uid = {ds.SOPInstanceUID: ds for ds in sources}
    for path in sorted((tmp_path / "out").glob("PA*/ST*/SE*/IM*")):
        out = pydicom.dcmread(path)
        assert out.file_meta.TransferSyntaxUID == JPEG_LOSSLESS_SV1
        src_ds = by_uid[out.SOPInstanceUID]
        assert np.array_equal(out.pixel_array, np.frombuffer(src_ds.PixelData, np.uint8)
                              .reshape(64, 64))
