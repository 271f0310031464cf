"""Test media built in code. Small, deterministic datasets and conformant file-sets.

``make_dataset()`` returns a valid CT-like instance (8×8 by default, Explicit VR LE) with every
Type 1 directory key present; pass keyword overrides (``PatientName="Müller^Hans"``,
``SpecificCharacterSet="ISO_IR 100"``) or ``None`` to delete an attribute.
``write_fileset()`` writes a conformant medium with pydicom's FileSet (the reference writer).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

_counter = itertools.count(1)


def uid(tag: str = "") -> str:
    """A fresh UID (deterministic prefix makes failures easy to read)."""
    return generate_uid(prefix="1.2.826.0.1.3680043.8.498.")


def make_dataset(rows: int = 8, cols: int = 8, *, pixels: np.ndarray | None = None,
                 **overrides: Any) -> Dataset:
    n = next(_counter)
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = uid()
    ds.PatientName = "Test^Patient"
    ds.PatientID = "PID001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = uid()
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.AccessionNumber = "ACC1"
    ds.StudyDescription = "TEST STUDY"
    ds.SeriesInstanceUID = uid()
    ds.Modality = "CT"
    ds.SeriesNumber = "1"
    ds.SeriesDescription = "AXIAL"
    ds.InstanceNumber = str(n)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.FrameOfReferenceUID = uid()
    ds.ImagePositionPatient = [0, 0, n]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.SliceThickness = 1
    ds.KVP = ""
    ds.AcquisitionNumber = "1"
    ds.PatientPosition = "HFS"
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "DiscBridge tests"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    if pixels is None:
        pixels = (np.arange(rows * cols, dtype=np.uint16).reshape(rows, cols) * 7 + n) % 4096
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    for key, value in overrides.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def write_instance(path: Path, ds: Dataset) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_fileset(root: Path, datasets: Iterable[Dataset], fileset_id: str = "TESTFS") -> Path:
    """Write a conformant medium at ``root`` with pydicom's FileSet. Returns the DICOMDIR path."""
    fs = FileSet()
    fs.ID = fileset_id
    for ds in datasets:
        fs.add(ds)
    root.mkdir(parents=True, exist_ok=True)
    fs.write(root)
    return root / "DICOMDIR"


def pydicom_test_file(name: str) -> Path:
    """Path of a file shipped inside the installed pydicom (read-only: never write there)."""
    from pydicom.data import get_testdata_file

    p = get_testdata_file(name, download=False)
    assert p is not None, name
    return Path(str(p))


def dicomdirtests_root() -> Path:
    """pydicom's ``dicomdirtests`` sample medium (read-only)."""
    return pydicom_test_file("DICOMDIR").parent
