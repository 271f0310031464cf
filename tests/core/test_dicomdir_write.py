"""DICOMDIR writer: validated by dciodvfy, dcmdump, dcmmkdir (append) and pydicom's FileSet."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.fileset import FileSet
from pydicom.sequence import Sequence
from pydicom.uid import (
    BasicTextSRStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    KeyObjectSelectionDocumentStorage,
)

from app import IMPLEMENTATION_CLASS_UID
from app.core.dicomdir.profiles import get_profile
from app.core.dicomdir.write import (
    DirEntry,
    build_dicomdir,
    read_entries_for_folder,
    write_dicomdir_for_folder,
)
from app.core.jobs import Cancelled, CancelToken, Progress
from tests.conftest import require_tool
from tests.media import make_dataset, uid, write_instance


def icon_item(size: int) -> Dataset:
    """An 8-bit MONOCHROME2 icon (from app.core.imaging.display when present, else built here)."""
    try:
        from app.core.imaging.display import make_icon_item

        return make_icon_item(make_dataset(32, 32), size)
    except ImportError:  # the imaging engineer's module is not there yet
        item = Dataset()
        item.SamplesPerPixel, item.PhotometricInterpretation = 1, "MONOCHROME2"
        item.Rows = item.Columns = size
        item.BitsAllocated, item.BitsStored, item.HighBit, item.PixelRepresentation = 8, 8, 7, 0
        item.add_new(0x7FE00010, "OB", (np.arange(size * size) % 251).astype(np.uint8).tobytes())
        return item


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


_NO_PIXELS = {k: None for k in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored",
                                 "HighBit", "PixelRepresentation", "SamplesPerPixel",
                                 "PhotometricInterpretation", "RescaleIntercept",
                                 "RescaleSlope", "RescaleType", "WindowCenter", "WindowWidth",
                                 "ImageType")}


def sr(base: Dataset, n: int) -> Dataset:
    ds = make_dataset(SOPClassUID=BasicTextSRStorage, Modality="SR", InstanceNumber=str(n),
                      CompletionFlag="COMPLETE", VerificationFlag="UNVERIFIED",
                      ContentDate="20240102", ContentTime="111500", **_NO_PIXELS)
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    return _same_study(ds, base)


def ko(base: Dataset, n: int) -> Dataset:
    ds = make_dataset(SOPClassUID=KeyObjectSelectionDocumentStorage, Modality="KO",
                      InstanceNumber=str(n), ContentDate="20240102", ContentTime="111600",
                      **_NO_PIXELS)
    ds.ConceptNameCodeSequence = Sequence([_code("113000", "DCM", "Of Interest")])
    return _same_study(ds, base)


def pr(base: Dataset, n: int) -> Dataset:
    ds = make_dataset(SOPClassUID=GrayscaleSoftcopyPresentationStateStorage, Modality="PR",
                      InstanceNumber=str(n), PresentationCreationDate="20240102",
                      PresentationCreationTime="111700", ContentLabel="LABEL",
                      ContentDescription="Window", ContentCreatorName="Doe^Jane", **_NO_PIXELS)
    ref_img = Dataset()
    ref_img.ReferencedSOPClassUID, ref_img.ReferencedSOPInstanceUID = base.SOPClassUID, \
        base.SOPInstanceUID
    ref = Dataset()
    ref.SeriesInstanceUID = base.SeriesInstanceUID
    ref.ReferencedImageSequence = Sequence([ref_img])
    ds.ReferencedSeriesSequence = Sequence([ref])
    return _same_study(ds, base)


def _same_study(ds: Dataset, base: Dataset) -> Dataset:
    for kw in ("PatientID", "PatientName", "SpecificCharacterSet", "StudyInstanceUID"):
        if kw in base:
            setattr(ds, kw, base.data_element(kw).value)
    return ds


def corpus() -> list[tuple[tuple[str, ...], Dataset]]:
    """Two patients (ISO_IR 100 and ISO_IR 192 names), three studies, image + SR/KO/PR leaves."""
    files: list[tuple[tuple[str, ...], Dataset]] = []
    p1 = dict(PatientID="P1", PatientName="Müller^Hans", SpecificCharacterSet="ISO_IR 100")
    st1, se1, se2 = uid(), uid(), uid()
    for n in range(1, 4):
        files.append((("PA001", "ST001", "SE001", f"IM{n:06d}"),
                      make_dataset(StudyInstanceUID=st1, SeriesInstanceUID=se1,
                                   InstanceNumber=str(n), StudyDescription="Schädel", **p1)))
    base = files[0][1]
    files.append((("PA001", "ST001", "SE002", "IM000001"), sr(base, 1)))
    files.append((("PA001", "ST001", "SE002", "IM000002"), ko(base, 2)))
    files.append((("PA001", "ST001", "SE002", "IM000003"), pr(base, 3)))
    for _, ds in files[3:]:
        ds.SeriesInstanceUID, ds.SeriesNumber = se2, "99"
    files.append((("PA001", "ST002", "SE001", "IM000001"),
                  make_dataset(StudyDate="20240301", SeriesNumber="2", **p1)))
    p2 = dict(PatientID="P2", PatientName="Иванов^Иван=山田^太郎", SpecificCharacterSet="ISO_IR 192")
    st3, se3 = uid(), uid()
    for n in range(1, 3):
        files.append((("PA002", "ST001", "SE001", f"IM{n:06d}"),
                      make_dataset(StudyInstanceUID=st3, SeriesInstanceUID=se3,
                                   InstanceNumber=str(n), SeriesDescription="Überblick", **p2)))
    return files


def write_medium(root: Path, files: list[tuple[tuple[str, ...], Dataset]], **kw: object) -> Path:
    for fid, ds in files:
        write_instance(root.joinpath(*fid), ds)
    return write_dicomdir_for_folder(root, "TESTSET", **kw)  # type: ignore[arg-type]


def dciodvfy_errors(path: Path) -> tuple[list[str], str]:
    tool = require_tool("dciodvfy")
    out = subprocess.run([tool, str(path)], capture_output=True, text=True, errors="replace",
                         timeout=60)
    text = out.stdout + out.stderr
    return [line for line in text.splitlines() if line.startswith("Error")], text


def walk_offsets(path: Path) -> list[tuple[int, Dataset]]:
    """Records reached from the root by offsets, pre-order, with their depth; checks each offset
    points at a real item start and that no record is reached twice."""
    ds = pydicom.dcmread(path)
    items = {item.seq_item_tell: item for item in ds.DirectoryRecordSequence}
    assert len(items) == len(ds.DirectoryRecordSequence)
    seen: set[int] = set()
    out: list[tuple[int, Dataset]] = []

    def chain(offset: int, depth: int) -> None:
        while offset:
            assert offset in items, f"offset {offset} is not an item start"
            assert offset not in seen
            seen.add(offset)
            rec = items[offset]
            assert rec.RecordInUseFlag == 0xFFFF
            out.append((depth, rec))
            chain(rec.OffsetOfReferencedLowerLevelDirectoryEntity, depth + 1)
            offset = rec.OffsetOfTheNextDirectoryRecord

    first = ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity
    chain(first, 0)
    assert len(seen) == len(items), "records not reachable by offsets"
    roots = [rec for depth, rec in out if depth == 0]
    if roots:
        assert ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity == \
            roots[-1].seq_item_tell
    # Sequence order is pre-order too (readers' fallback when offsets are broken).
    assert [rec.seq_item_tell for _, rec in out] == sorted(items)
    return out


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("medium")
    files = corpus()
    (root / "README").write_text("DiscBridge test medium\r\n", encoding="ascii")
    write_medium(root, files, descriptor_file_id=("README",))
    return root, files


def test_dciodvfy_reports_no_errors(medium: tuple[Path, list]) -> None:
    root, _ = medium
    errors, text = dciodvfy_errors(root / "DICOMDIR")
    assert not errors, text
    assert "BasicDirectory" in text, text


def test_dcmdump_reads_it(medium: tuple[Path, list]) -> None:
    root, files = medium
    tool = require_tool("dcmdump")
    out = subprocess.run([tool, "-q", str(root / "DICOMDIR")], capture_output=True, text=True,
                         errors="replace", timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("(0004,1500)") == len(files)
    assert "MediaStorageDirectoryStorage" in out.stdout


def test_dcmmkdir_appends_to_our_dicomdir(medium: tuple[Path, list], tmp_path: Path) -> None:
    tool = require_tool("dcmmkdir")
    copy = tmp_path / "copy"
    shutil.copytree(medium[0], copy)
    write_instance(copy / "PA003" / "ST001" / "SE001" / "IM000001",
                   make_dataset(PatientID="P3", PatientName="Third^Person"))
    out = subprocess.run([tool, "+A", "+D", "DICOMDIR", "PA003/ST001/SE001/IM000001"],
                         cwd=copy, capture_output=True, text=True, errors="replace",
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    fs = FileSet(copy / "DICOMDIR")
    assert len(fs) == len(medium[1]) + 1
    assert {i.PatientID for i in fs} == {"P1", "P2", "P3"}


def test_pydicom_fileset_resolves_every_file(medium: tuple[Path, list]) -> None:
    root, files = medium
    fs = FileSet(root / "DICOMDIR")
    assert fs.ID == "TESTSET"
    assert fs.descriptor_file_id == "README"
    instances = fs.find()
    assert len(instances) == len(files)
    for inst in instances:
        assert Path(inst.path).is_file()
        on_disk = pydicom.dcmread(inst.path, stop_before_pixels=True)
        assert inst.SOPInstanceUID == on_disk.SOPInstanceUID
    assert {i.PatientID for i in instances} == {"P1", "P2"}


def test_offsets_hierarchy_and_keys(medium: tuple[Path, list]) -> None:
    root, files = medium
    by_fid = {"\\".join(fid): ds for fid, ds in files}
    walked = walk_offsets(root / "DICOMDIR")
    types = [(d, r.DirectoryRecordType) for d, r in walked]
    assert types[:4] == [(0, "PATIENT"), (1, "STUDY"), (2, "SERIES"), (3, "IMAGE")]
    assert sum(1 for _, t in types if t == "PATIENT") == 2
    assert sum(1 for _, t in types if t == "STUDY") == 3
    assert {t for d, t in types if d == 3} == {"IMAGE", "SR DOCUMENT", "KEY OBJECT DOC",
                                               "PRESENTATION"}
    parents: list[Dataset] = []
    for depth, rec in walked:
        parents[depth:] = [rec]
        if depth < 3:
            continue
        fid = "\\".join(rec.ReferencedFileID)
        ds = by_fid[fid]
        meta = pydicom.dcmread(root.joinpath(*rec.ReferencedFileID), stop_before_pixels=True)
        assert rec.ReferencedSOPInstanceUIDInFile == meta.file_meta.MediaStorageSOPInstanceUID
        assert rec.ReferencedSOPClassUIDInFile == meta.file_meta.MediaStorageSOPClassUID
        assert rec.ReferencedTransferSyntaxUIDInFile == meta.file_meta.TransferSyntaxUID
        patient, study, series = parents[0], parents[1], parents[2]
        assert patient.PatientID == ds.PatientID
        assert study.StudyInstanceUID == ds.StudyInstanceUID
        assert series.SeriesInstanceUID == ds.SeriesInstanceUID
        for kw in ("StudyDate", "StudyTime", "StudyID", "StudyDescription", "AccessionNumber"):
            assert kw in study, kw
        for kw in ("Modality", "SeriesNumber"):
            assert kw in series, kw
        assert rec.InstanceNumber == ds.InstanceNumber
        if rec.DirectoryRecordType == "SR DOCUMENT":
            assert rec.CompletionFlag == "COMPLETE" and rec.VerificationFlag == "UNVERIFIED"
            assert rec.ConceptNameCodeSequence[0].CodeValue == "18748-4"
        if rec.DirectoryRecordType == "KEY OBJECT DOC":
            assert rec.ContentDate == "20240102"
        if rec.DirectoryRecordType == "PRESENTATION":
            assert rec.ContentLabel == "LABEL"
            assert rec.ReferencedSeriesSequence[0].SeriesInstanceUID == ds.ReferencedSeriesSequence[
                0].SeriesInstanceUID


def test_non_ascii_round_trip_and_charset_per_record(medium: tuple[Path, list]) -> None:
    root, _ = medium
    walked = walk_offsets(root / "DICOMDIR")
    patients = [r for d, r in walked if r.DirectoryRecordType == "PATIENT"]
    assert str(patients[0].PatientName) == "Müller^Hans"
    assert patients[0].SpecificCharacterSet == "ISO_IR 100"
    assert str(patients[1].PatientName) == "Иванов^Иван=山田^太郎"
    assert patients[1].SpecificCharacterSet == "ISO_IR 192"
    studies = [r for d, r in walked if r.DirectoryRecordType == "STUDY"]
    assert studies[0].StudyDescription == "Schädel"
    assert studies[0].SpecificCharacterSet == "ISO_IR 100"
    assert "SpecificCharacterSet" not in studies[2]  # ASCII only: no charset on that record
    series = [r for d, r in walked if r.DirectoryRecordType == "SERIES"]
    assert series[-1].SeriesDescription == "Überblick"
    raw = (root / "DICOMDIR").read_bytes()
    assert "Müller".encode("latin-1") in raw and "Иванов".encode() in raw


def test_file_meta_and_top_level(medium: tuple[Path, list]) -> None:
    root, _ = medium
    ds = pydicom.dcmread(root / "DICOMDIR")
    raw = (root / "DICOMDIR").read_bytes()
    assert raw[:128] == b"\0" * 128 and raw[128:132] == b"DICM"
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert ds.file_meta.MediaStorageSOPInstanceUID  # the File-set UID
    glen = struct.unpack_from("<I", raw, 140)[0]
    assert raw[144 + glen:146 + glen] == b"\x04\x00"  # group 2 length is exact
    assert ds.FileSetConsistencyFlag == 0
    assert ds.FileSetDescriptorFileID == "README"


def test_new_fileset_uid_per_medium_unless_given() -> None:
    entries = [DirEntry(("PA001", "ST001", "SE001", "IM000001"), make_dataset())]
    a = pydicom.dcmread(pydicom.filebase.DicomBytesIO(build_dicomdir(entries, fileset_id="A")))
    b = pydicom.dcmread(pydicom.filebase.DicomBytesIO(build_dicomdir(entries, fileset_id="A")))
    assert a.file_meta.MediaStorageSOPInstanceUID != b.file_meta.MediaStorageSOPInstanceUID
    c = pydicom.dcmread(pydicom.filebase.DicomBytesIO(
        build_dicomdir(entries, fileset_id="A", fileset_uid="1.2.3.4")))
    assert c.file_meta.MediaStorageSOPInstanceUID == "1.2.3.4"


def test_icons_on_image_and_series_records(tmp_path: Path) -> None:
    base = make_dataset()
    files = [(("PA001", "ST001", "SE001", f"IM{n:06d}"),
              make_dataset(StudyInstanceUID=base.StudyInstanceUID,
                           SeriesInstanceUID=base.SeriesInstanceUID, InstanceNumber=str(n)))
             for n in (1, 2)]
    for fid, ds in files:
        write_instance(tmp_path.joinpath(*fid), ds)
    entries = read_entries_for_folder(tmp_path)
    entries[0].icon = icon_item(64)
    entries[1].icon = icon_item(128)
    data = build_dicomdir(entries, fileset_id="ICONS",
                          series_icons={base.SeriesInstanceUID: icon_item(64)})
    (tmp_path / "DICOMDIR").write_bytes(data)
    errors, text = dciodvfy_errors(tmp_path / "DICOMDIR")
    assert not errors, text
    walked = walk_offsets(tmp_path / "DICOMDIR")
    by_type = {}
    for _, rec in walked:
        by_type.setdefault(rec.DirectoryRecordType, []).append(rec)
    series_icon = by_type["SERIES"][0].IconImageSequence[0]
    assert (series_icon.Rows, series_icon.Columns, series_icon.BitsAllocated) == (64, 64, 8)
    sizes = [r.IconImageSequence[0].Rows for r in by_type["IMAGE"]]
    assert sizes == [64, 128]
    icon = by_type["IMAGE"][1].IconImageSequence[0]
    assert icon.PixelData == entries[1].icon.PixelData
    assert icon["PixelData"].VR == "OB"
    assert len(FileSet(tmp_path / "DICOMDIR").find()) == 2


def test_xabc_requires_128_icons() -> None:
    xa = make_dataset(64, 64, SOPClassUID="1.2.840.10008.5.1.4.1.1.12.1", Modality="XA",
                      CalibrationImage=None)
    entry = DirEntry(("PA001", "ST001", "SE001", "IM000001"), xa)
    profile = get_profile("STD-XABC-CD")
    with pytest.raises(ValueError, match="requires a 128×128 icon"):
        build_dicomdir([entry], fileset_id="XA", profile=profile)
    entry.icon = icon_item(64)
    with pytest.raises(ValueError, match="needs 128×128 icons"):
        build_dicomdir([entry], fileset_id="XA", profile=profile)
    entry.icon = icon_item(128)
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(
        build_dicomdir([entry], fileset_id="XA", profile=profile)))
    image = ds.DirectoryRecordSequence[-1]
    assert image.IconImageSequence[0].Rows == 128
    assert list(image.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert "CalibrationImage" in image  # Type 2: present, empty
    patient = ds.DirectoryRecordSequence[0]
    assert patient.PatientSex == "O" and patient.PatientBirthDate == "19700101"


def test_h32_keys_on_dvd_profile() -> None:
    entry = DirEntry(("PA001", "ST001", "SE001", "IM000001"), make_dataset(16, 12,
                                                                            InstitutionName="X"))
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(
        build_dicomdir([entry], fileset_id="DVD", profile=get_profile("STD-GEN-DVD-JPEG"))))
    image = ds.DirectoryRecordSequence[-1]
    assert (image.Rows, image.Columns) == (16, 12)
    assert image.FrameOfReferenceUID == entry.dataset.FrameOfReferenceUID
    assert ds.DirectoryRecordSequence[2].InstitutionName == "X"


def test_patient_id_clash_refused() -> None:
    a = make_dataset(PatientID="SAME", PatientName="Alpha^A")
    b = make_dataset(PatientID="SAME", PatientName="Beta^B")
    entries = [DirEntry(("PA001", "ST001", "SE001", "IM000001"), a),
               DirEntry(("PA002", "ST001", "SE001", "IM000001"), b)]
    with pytest.raises(ValueError) as err:
        build_dicomdir(entries, fileset_id="X")
    assert "SAME" in str(err.value) and "PA002/ST001/SE001/IM000001" in str(err.value)


def test_mixed_charsets_in_one_patient_become_utf8() -> None:
    a = make_dataset(PatientID="M", PatientName="Müller^Hans", SpecificCharacterSet="ISO_IR 100")
    b = make_dataset(PatientID="M", PatientName="Müller^Hans", SpecificCharacterSet="ISO_IR 192")
    entries = [DirEntry(("PA001", "ST001", "SE001", "IM000001"), a),
               DirEntry(("PA001", "ST002", "SE001", "IM000001"), b)]
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(build_dicomdir(entries, fileset_id="X")))
    patient = ds.DirectoryRecordSequence[0]
    assert patient.SpecificCharacterSet == "ISO_IR 192"
    assert str(patient.PatientName) == "Müller^Hans"


def test_value_outside_charset_re_encoded_as_utf8() -> None:
    # A value the declared charset cannot hold (e.g. filled in by the exporter): UTF-8 record.
    ds = make_dataset(SpecificCharacterSet="ISO_IR 100", StudyDescription="Щ study")
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(build_dicomdir(
        [DirEntry(("PA001", "ST001", "SE001", "IM000001"), ds)], fileset_id="X")))
    study = out.DirectoryRecordSequence[1]
    assert study.SpecificCharacterSet == "ISO_IR 192" and study.StudyDescription == "Щ study"


def test_bad_input_refused_with_the_file_named() -> None:
    fid = ("PA001", "ST001", "SE001", "IM000001")
    with pytest.raises(ValueError, match="PA001/ST001/SE001/IM000001.*StudyID"):
        build_dicomdir([DirEntry(fid, make_dataset(StudyID=None))], fileset_id="X")
    with pytest.raises(ValueError, match="File-set ID"):
        build_dicomdir([], fileset_id="lower case")
    with pytest.raises(ValueError, match="README.TXT cannot be named"):
        build_dicomdir([], fileset_id="X", descriptor_file_id=("README.TXT",))
    with pytest.raises(ValueError, match="not a valid File ID"):
        build_dicomdir([DirEntry(("pa001", "x.dcm"), make_dataset())], fileset_id="X")
    no_meta = make_dataset()
    del no_meta.file_meta
    with pytest.raises(ValueError, match="File Meta"):
        build_dicomdir([DirEntry(fid, no_meta)], fileset_id="X")
    wrong = make_dataset()
    wrong.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    with pytest.raises(ValueError, match="differs"):
        build_dicomdir([DirEntry(fid, wrong)], fileset_id="X")


def test_empty_fileset(tmp_path: Path) -> None:
    (tmp_path / "DICOMDIR").write_bytes(build_dicomdir([], fileset_id="EMPTY"))
    ds = pydicom.dcmread(tmp_path / "DICOMDIR")
    assert ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity == 0
    assert len(ds.DirectoryRecordSequence) == 0
    errors, text = dciodvfy_errors(tmp_path / "DICOMDIR")
    assert not errors, text


def test_progress_and_cancel() -> None:
    base = make_dataset()
    entries = [DirEntry(("PA001", "ST001", "SE001", f"IM{n:06d}"),
                        make_dataset(StudyInstanceUID=base.StudyInstanceUID,
                                     SeriesInstanceUID=base.SeriesInstanceUID))
               for n in range(1, 201)]
    seen: list[Progress] = []
    build_dicomdir(entries, fileset_id="X", progress=seen.append)
    assert seen and all(p.phase == "dicomdir" for p in seen)
    assert (seen[-1].done_files, seen[-1].total_files) == (200, 200)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        build_dicomdir(entries, fileset_id="X", cancel=token)


def test_folder_writer_is_atomic_and_skips_non_dicom(tmp_path: Path) -> None:
    write_instance(tmp_path / "PA001" / "ST001" / "SE001" / "IM000001", make_dataset())
    (tmp_path / "README.TXT").write_text("hello\r\n")
    (tmp_path / "NOTDICOM").write_bytes(b"x" * 300)
    (tmp_path / "DICOMDIR").write_bytes(b"old")
    seen: list[Progress] = []
    path = write_dicomdir_for_folder(tmp_path, "ATOMIC", progress=seen.append)
    assert path == tmp_path / "DICOMDIR"
    assert seen[0].message == "reading headers" and seen[-1].message == "DICOMDIR encoded"
    assert seen[-1].done_files == seen[-1].total_files == 1
    assert len(FileSet(path).find()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DICOMDIR", "NOTDICOM", "PA001",
                                                          "README.TXT"]
    # A broken DICOM file is named and the old DICOMDIR is kept.
    bad = tmp_path / "PA001" / "ST001" / "SE001" / "IM000002"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    before = path.read_bytes()
    with pytest.raises(ValueError, match="IM000002"):
        write_dicomdir_for_folder(tmp_path, "ATOMIC")
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".DICOMDIR")]


def test_our_reader_reads_it_back(medium: tuple[Path, list]) -> None:
    """Cross-check with the project's own tolerant reader, when it is there."""
    dicomdir = pytest.importorskip("app.core.dicomdir.parse")
    root, files = medium
    parsed = dicomdir.parse_dicomdir((root / "DICOMDIR").read_bytes(), "DICOMDIR")
    assert not parsed.recovered
    assert parsed.fileset_id == "TESTSET"
    names = sorted(str(p.patient_name) for p in parsed.patients)
    assert names == sorted(["Müller^Hans", "Иванов^Иван=山田^太郎"])
    n = sum(len(se.instances) for p in parsed.patients for st in p.studies for se in st.series)
    assert n == len(files)


def test_charsets_of_pydicom_samples_round_trip(tmp_path: Path) -> None:
    """Every charset sample of pydicom (ISO 8859-x, GB18030, UTF-8, ISO 2022 with escapes)."""
    from pydicom.data import get_charset_files

    paths = sorted(p for p in get_charset_files("chr*.dcm") if "SQ" not in p)
    if not paths:
        pytest.skip("pydicom charset samples not installed")
    entries, names, studies = [], {}, set()
    for n, path in enumerate(paths, 1):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "SOPInstanceUID" not in ds or ds.get("StudyInstanceUID") in studies:
            continue  # some samples are variants of one study (same UIDs): keep the first
        studies.add(ds.get("StudyInstanceUID"))
        # File Meta as the exporter writes it (one sample's meta disagrees with its dataset).
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
        # Type 1 fills, as the exporter does in the exported copy.
        ds.PatientID = f"CS{n:03d}"
        for kw, value in (("StudyDate", "20200101"), ("StudyTime", "120000"), ("StudyID", "1"),
                          ("SeriesNumber", "1"), ("InstanceNumber", "1"), ("Modality", "OT")):
            if not ds.get(kw):
                setattr(ds, kw, value)
        names[ds.PatientID] = str(ds.PatientName)
        entries.append(DirEntry((f"PA{n:03d}", "ST001", "SE001", "IM000001"), ds))
    assert len(entries) >= 10
    (tmp_path / "DICOMDIR").write_bytes(build_dicomdir(entries, fileset_id="CHARSETS"))
    errors, text = dciodvfy_errors(tmp_path / "DICOMDIR")
    assert not errors, text
    for _, rec in walk_offsets(tmp_path / "DICOMDIR"):
        if rec.DirectoryRecordType == "PATIENT":
            assert str(rec.PatientName) == names[rec.PatientID], rec.PatientID
