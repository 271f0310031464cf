"""A generated multi-patient corpus for export tests (deterministic, small, written in code).

``write_corpus(root)`` writes loose files (no DICOMDIR: the reader scans them) covering what an
exporter must fix or keep: empty Study IDs, missing Series/Instance Numbers, missing Study Date
(with a Series Date to take it from), empty Patient IDs for two different people, non-ASCII
names in several character sets (Latin-1, Cyrillic, Japanese ISO 2022, UTF-8), and an
Implicit VR file. ``write_compressed(root)`` copies pydicom's compressed test files
(JPEG baseline/extended, JPEG-LS, JPEG 2000, RLE) under readable names.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydicom.uid import ImplicitVRLittleEndian

from tests.media import make_dataset, pydicom_test_file, uid, write_instance

# name, charset, patient id, birth date
PATIENTS = [
    ("Müller^Hans", "ISO_IR 100", "P100", "19600101"),
    ("Иванов^Иван", "ISO_IR 144", "P200", "19710202"),
    ("Yamada^Tarou=山田^太郎=やまだ^たろう", "ISO 2022 IR 6\\ISO 2022 IR 87", "P300", "19820303"),
    ("Dupont^Zoë", "ISO_IR 192", "P400", "19930404"),
    ("Anonymous^One", None, "", "20000101"),
    ("Anonymous^Two", None, "", "20010101"),
]


def _instances(name: str, charset: str | None, pid: str, birth: str, n_studies: int,
               seed: int) -> list:
    out = []
    for s in range(n_studies):
        study_uid = uid()
        for se in range(2):
            series_uid = uid()
            for i in range(2):
                kw: dict = {"PatientName": name, "PatientID": pid, "PatientBirthDate": birth,
                            "StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid,
                            "SeriesNumber": str(se + 1), "InstanceNumber": str(i + 1),
                            "StudyID": str(s + 1), "SeriesDate": "20240105",
                            "SeriesTime": "093000"}
                if charset:
                    kw["SpecificCharacterSet"] = charset
                if s == 0:
                    kw["StudyID"] = ""  # empty Study ID (Type 2 in the IOD, Type 1 in a record)
                if s == 1 and se == 1:
                    kw["SeriesNumber"] = None  # missing Series Number
                if s == 1 and i == 1:
                    kw["InstanceNumber"] = None  # missing Instance Number
                if seed % 2 and s == 1:
                    kw["StudyDate"] = None  # no Study Date: must come from the Series Date
                    kw["StudyTime"] = None
                out.append(make_dataset(16, 16, **kw))
    return out


def corpus_datasets() -> list:
    """The corpus instances (fresh UIDs on every call)."""
    out = []
    for n, (name, charset, pid, birth) in enumerate(PATIENTS):
        out.extend(_instances(name, charset, pid, birth, 2 if n < 4 else 1, n))
    return out


def write_corpus(root: Path) -> list[Path]:
    """Write the corpus as loose files under ``root``; one file Implicit VR LE."""
    paths = []
    for n, ds in enumerate(corpus_datasets()):
        if n == 3:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        paths.append(write_instance(root / f"f{n:03d}.dcm", ds))
    return paths


COMPRESSED = [
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline (lossy), YBR_FULL_422
    "JPGExtended.dcm",  # JPEG extended 12-bit (lossy)
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "MR_small_RLE.dcm",  # RLE lossless
    "SC_rgb_rle.dcm",  # RLE, colour
]


def write_compressed(root: Path, names: list[str] | None = None) -> list[Path]:
    """Copy pydicom's compressed test files into ``root`` (the originals are never touched)."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names or COMPRESSED:
        dst = root / name
        shutil.copyfile(pydicom_test_file(name), dst)
        out.append(dst)
    return out
