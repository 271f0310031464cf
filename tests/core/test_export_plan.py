"""Export planning: merge/dedupe, Type 1 fixes, Patient ID clashes, refusals, sizes, spanning.

Nothing here writes a medium: ``plan_export`` must decide everything before writing.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import pytest
from pydicom.uid import JPEGBaseline8Bit

from app.core.errors import ExportError
from app.core.export.engine import plan_export
from app.core.export.identity import MissingStudyDate, PatientIdClash
from app.core.export.options import ExportOptions
from app.core.export.plan import RefusedInstances, TooBig, validate_fileset_id
from tests.corpus import write_compressed, write_corpus
from tests.export_helpers import listing, medium_of
from tests.media import make_dataset, uid, write_instance

CAP = 700_000_000


def _plan(tmp_path: Path, datasets: list, **kw):
    src = tmp_path / "src"
    for n, ds in enumerate(datasets):
        write_instance(src / f"f{n:03d}.dcm", ds)
    capacity = kw.pop("capacity", CAP)
    opts = ExportOptions(sources=[src], dest=tmp_path / "out", **kw)
    return plan_export(opts, [medium_of(src)], capacity=capacity)


def test_corpus_plan_fixes_every_type1_gap_and_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_corpus(src)
    opts = ExportOptions(sources=[src], dest=tmp_path / "out")
    plan = plan_export(opts, [medium_of(src)], capacity=CAP)
    assert not (tmp_path / "out").exists()
    assert len(plan.files) == 40
    # Every file now has all five Type 1 keys.
    for f in plan.files:
        for kw in ("PatientID", "StudyDate", "StudyTime", "StudyID", "SeriesNumber",
                   "InstanceNumber"):
            assert f.value(kw), (f.src.label, kw)
    attrs = {c.attribute for c in plan.changes}
    assert {"PatientID", "StudyDate", "StudyTime", "StudyID", "SeriesNumber",
            "InstanceNumber"} <= attrs
    # Study Date came from the Series Date, never from the clock.
    today = _dt.date.today().strftime("%Y%m%d")
    for c in plan.changes:
        if c.attribute == "StudyDate":
            assert c.new == "20240105" and "Series Date" in c.reason
        assert c.new != today
    # Two distinct anonymous patients stay two patients with distinct generated IDs.
    anon = [p for p in plan.patients if (p.name or "").startswith("Anonymous")]
    assert len(anon) == 2 and len({p.patient_id for p in anon}) == 2
    assert all(p.patient_id.startswith("DBPAT") for p in anon)
    # Names follow layout order and each change names a File ID.
    assert all(c.file.startswith("PA") for c in plan.changes)
    assert plan.disc_label == plan.fileset_id and plan.fileset_id.startswith("DB")
    summary = json.loads(json.dumps(plan.summary()))  # the GUI's summary page data is plain
    assert summary["files"] == 40 and len(summary["patients"]) == 6
    assert summary["capacity_bytes"] == CAP and summary["total_bytes"] <= CAP


def test_study_date_missing_everywhere_stops_and_asks(tmp_path: Path) -> None:
    kw = {k: None for k in ("StudyDate", "StudyTime", "SeriesDate", "AcquisitionDate",
                            "ContentDate")}
    with pytest.raises(MissingStudyDate, match="--study-date"):
        _plan(tmp_path, [make_dataset(**kw)])
    plan = _plan(tmp_path / "b", [make_dataset(**kw)], study_date="20200202")
    f = plan.files[0]
    assert f.value("StudyDate") == "20200202" and f.value("StudyTime") == "000000"


def test_duplicate_patient_id_different_names_is_an_error_or_separated(tmp_path: Path) -> None:
    a = make_dataset(PatientName="Smith^Ann", PatientID="X1", PatientBirthDate="19500101")
    b = make_dataset(PatientName="Jones^Bob", PatientID="X1", PatientBirthDate="19600101")
    with pytest.raises(PatientIdClash, match="X1.*Smith\\^Ann.*Jones\\^Bob|X1.*Jones.*Smith"):
        _plan(tmp_path, [a, b])
    plan = _plan(tmp_path / "sep", [a, b], on_id_clash="separate")
    ids = sorted(p.patient_id for p in plan.patients)
    assert ids == ["X1", "X1_2"]
    moved = [f for f in plan.files if f.value("PatientID") == "X1_2"]
    assert moved and moved[0].other_patient_id == "X1"


def test_same_patient_with_spelling_variants_is_one_patient(tmp_path: Path) -> None:
    a = make_dataset(PatientName="DOE^JOHN", PatientID="D1")
    b = make_dataset(PatientName="Doe^John^", PatientID="D1")
    plan = _plan(tmp_path, [a, b])
    assert len(plan.patients) == 1
    assert {f.value("PatientName") for f in plan.files} == {"DOE^JOHN"}


def test_duplicates_across_sources_are_exported_once(tmp_path: Path) -> None:
    ds = make_dataset()
    write_instance(tmp_path / "s1" / "a.dcm", ds)
    write_instance(tmp_path / "s2" / "b.dcm", ds)
    opts = ExportOptions(sources=[tmp_path / "s1", tmp_path / "s2"], dest=tmp_path / "o")
    plan = plan_export(opts, [medium_of(tmp_path / "s1"), medium_of(tmp_path / "s2")],
                       capacity=CAP)
    assert len(plan.files) == 1
    assert any(p.code == "duplicate-instance" for p in plan.problems)


def test_profile_refuses_by_name_before_writing(tmp_path: Path) -> None:
    video = make_dataset()
    video.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC
    from pydicom.encaps import encapsulate

    video.PixelData = encapsulate([b"\x00\x00\x00\x01" * 8])
    with pytest.raises(RefusedInstances, match=r"f000\.dcm.*STD-GEN-CD.*video"):
        _plan(tmp_path, [video])
    # STD-XABC-CD takes XA only; a CT is refused by name.
    with pytest.raises(RefusedInstances, match=r"f000\.dcm.*not allowed by STD-XABC-CD"):
        _plan(tmp_path / "x", [make_dataset()], profile="STD-XABC-CD")
    assert all(p.startswith(("src", "x")) for p in listing(tmp_path))  # nothing but sources
    assert not (tmp_path / "out").exists() and not (tmp_path / "x" / "out").exists()


def test_xabc_without_gdcm_refuses_xa_that_needs_encoding(tmp_path: Path) -> None:
    from app.core.export.transcode import can_encode

    xa = make_dataset(SOPClassUID="1.2.840.10008.5.1.4.1.1.12.1", Modality="XA",
                      BitsAllocated=8, BitsStored=8, HighBit=7, ImageType=["ORIGINAL"])
    xa.PixelData = bytes(64)
    xa.file_meta.MediaStorageSOPClassUID = xa.SOPClassUID
    if can_encode("1.2.840.10008.1.2.4.70"):
        plan = _plan(tmp_path, [xa], profile="STD-XABC-CD")
        assert plan.files[0].target_ts == "1.2.840.10008.1.2.4.70"
    else:
        with pytest.raises(RefusedInstances, match="python-gdcm"):
            _plan(tmp_path, [xa], profile="STD-XABC-CD")


def test_transcoding_decisions_per_profile(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_compressed(src, ["SC_rgb_jpeg_dcmtk.dcm", "MR_small_RLE.dcm"])
    opts = ExportOptions(sources=[src], dest=tmp_path / "o")
    plan = plan_export(opts, [medium_of(src)], capacity=CAP)
    assert {f.action for f in plan.files} == {"transcode"}
    assert {f.target_ts for f in plan.files} == {"1.2.840.10008.1.2.1"}
    assert len(plan.transcodings) == 2
    # A JPEG profile keeps JPEG baseline, transcodes RLE.
    opts = ExportOptions(sources=[src], dest=tmp_path / "o", media="dvd")
    plan = plan_export(opts, [medium_of(src)], capacity=CAP)
    by_ts = {f.source_ts: f for f in plan.files}
    assert by_ts[JPEGBaseline8Bit].action in ("copy", "meta")
    assert by_ts[JPEGBaseline8Bit].target_ts == JPEGBaseline8Bit
    assert by_ts["1.2.840.10008.1.2.5"].target_ts == "1.2.840.10008.1.2.1"
    # Estimated decode size = rows x cols x frames x samples x bytes (+ header).
    f = by_ts["1.2.840.10008.1.2.5"]
    hdr = f.src.header
    assert f.est_size >= hdr.Rows * hdr.Columns * 2


def test_exact_sizes_for_copies(tmp_path: Path) -> None:
    plan = _plan(tmp_path, [make_dataset(), make_dataset()])
    for f in plan.files:
        assert f.action == "copy" and f.exact and f.est_size == f.src.size


def test_too_big_without_span_and_volumes_with_span(tmp_path: Path) -> None:
    studies = []
    for s in range(3):
        study = uid()
        for se in range(2):
            series = uid()
            studies += [make_dataset(64, 64, StudyInstanceUID=study, SeriesInstanceUID=series,
                                     SeriesNumber=str(se + 1), StudyDate=f"2024010{s + 1}")
                        for _ in range(3)]
    with pytest.raises(TooBig, match="--span"):
        _plan(tmp_path, studies, capacity=60_000)
    plan = _plan(tmp_path / "s", studies, span=True, capacity=60_000)
    assert len(plan.volumes) >= 2
    assert [v.name for v in plan.volumes][:2] == ["VOL01", "VOL02"]
    assert len({v.fileset_id for v in plan.volumes}) == len(plan.volumes)
    # A series is never split unless it alone exceeds a volume.
    where: dict[str, set[int]] = {}
    for v in plan.volumes:
        for f in v.files:
            where.setdefault(f.value("SeriesInstanceUID"), set()).add(v.index)
        assert v.est_bytes <= 60_000
        assert v.files[0].file_id[0] == "PA001"  # each volume is numbered on its own
    assert all(len(vols) == 1 for vols in where.values())
    assert sum(len(v.files) for v in plan.volumes) == len(studies)


def test_fileset_id_validation() -> None:
    now = _dt.datetime(2026, 11, 26)
    assert validate_fileset_id(None, now) == "DB20261126"
    assert validate_fileset_id("MY_DISC_01", now) == "MY_DISC_01"
    for bad in ("lower", "WITH SPACE", "X" * 17, "Ä", ""):
        with pytest.raises(ExportError, match="fileset-id"):
            validate_fileset_id(bad, now)


def test_unknown_profile_is_an_export_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown application profile"):
        _plan(tmp_path, [make_dataset()], profile="STD-NOPE")


def test_usb_destination_warns_when_not_fat(tmp_path: Path) -> None:
    from app.core.devices.capacity import filesystem_type

    plan = _plan(tmp_path, [make_dataset()], media="usb")
    fs = (filesystem_type(tmp_path) or "").lower()
    if fs in ("vfat", "msdos", "fat32"):
        assert plan.warnings == []
    else:
        assert any("FAT16 or FAT32" in w for w in plan.warnings)
    assert plan.profile.name == "STD-GEN-USB-JPEG"


def test_leaf_record_keys_that_cannot_be_made_up_are_refused(tmp_path: Path) -> None:
    sr = make_dataset(SOPClassUID="1.2.840.10008.5.1.4.1.1.88.11", Modality="SR",
                      CompletionFlag="COMPLETE", VerificationFlag="UNVERIFIED",
                      ContentDate="20240101", ContentTime="120000")
    for kw in ("Rows", "Columns", "PixelData", "BitsAllocated", "BitsStored", "HighBit",
               "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        delattr(sr, kw)
    sr.file_meta.MediaStorageSOPClassUID = sr.SOPClassUID
    # No Concept Name Code Sequence: an SR DOCUMENT record needs it (Type 1).
    with pytest.raises(RefusedInstances, match=r"f000\.dcm: its DICOMDIR records \(SR DOCUMENT\) "
                                               r"need ConceptNameCodeSequence"):
        _plan(tmp_path, [sr])
    with pytest.raises(RefusedInstances, match=r"need Modality"):
        _plan(tmp_path / "m", [make_dataset(Modality=None)])


def test_destination_overlapping_a_source_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_instance(src / "a.dcm", make_dataset())
    for dest in (src, src / "out", tmp_path):
        opts = ExportOptions(sources=[src], dest=dest, force=True)
        with pytest.raises(ExportError, match="overlaps the source"):
            plan_export(opts, [medium_of(src)], capacity=CAP)
    assert sorted(p.name for p in src.iterdir()) == ["a.dcm"]


def test_selection_exports_only_the_chosen_instances(tmp_path: Path) -> None:
    datasets = [make_dataset() for _ in range(4)]
    chosen = {str(datasets[1].SOPInstanceUID), str(datasets[3].SOPInstanceUID)}
    plan = _plan(tmp_path, datasets, select=chosen)
    assert {f.sop_uid for f in plan.files} == chosen


def test_study_under_two_patients_stops_before_writing(tmp_path: Path) -> None:
    study = uid()
    a = make_dataset(PatientID="A1", PatientName="A^A", StudyInstanceUID=study)
    b = make_dataset(PatientID="B1", PatientName="B^B", StudyInstanceUID=study)
    with pytest.raises(ExportError, match="filed under Patient IDs A1, B1"):
        _plan(tmp_path, [a, b])


def test_empty_name_spellings_are_one_patient(tmp_path: Path) -> None:
    a = make_dataset(PatientName="", PatientID="")
    b = make_dataset(PatientName="^^^^", PatientID="")
    plan = _plan(tmp_path, [a, b])
    assert len(plan.patients) == 1
    assert {f.value("PatientName") for f in plan.files} == {None}


def test_acr_nema_study_date_and_time_are_converted(tmp_path: Path) -> None:
    plan = _plan(tmp_path, [make_dataset(StudyDate="1997.04.24", StudyTime="14:04:38")])
    f = plan.files[0]
    assert (f.value("StudyDate"), f.value("StudyTime")) == ("19970424", "140438")
    assert {c.attribute for c in plan.changes} == {"StudyDate", "StudyTime"}
    assert all("ACR-NEMA" in c.reason for c in plan.changes)


def test_a_file_over_4_gib_cannot_go_on_iso_or_fat(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.export import volumes as export_volumes

    monkeypatch.setattr(export_volumes, "MAX_FILE", 1000)  # stands for 4 GiB
    with pytest.raises(TooBig, match=r"f000\.dcm.*under 4 GiB"):
        _plan(tmp_path, [make_dataset(32, 32)], media="dvd")
    assert _plan(tmp_path / "ok", [make_dataset(32, 32)]).files  # a folder has no such limit


def test_binary_type1_keys_with_zero_bytes_are_present(tmp_path: Path) -> None:
    """Rows = 32 is b' \\x00' raw: a binary value, not padding (H.3-2 profiles need it)."""
    plan = _plan(tmp_path, [make_dataset(32, 32), make_dataset(256, 256)], media="usb")
    assert len(plan.files) == 2


@pytest.mark.parametrize("compressed", [False, True])
def test_a_source_cut_short_is_refused_by_name(tmp_path: Path, compressed: bool) -> None:
    src = tmp_path / "src"
    if compressed:
        write_compressed(src, ["MR_small_RLE.dcm"])
        victim = src / "MR_small_RLE.dcm"
    else:
        write_instance(src / "a.dcm", make_dataset(32, 32))
        victim = src / "a.dcm"
    data = victim.read_bytes()
    # Compressed: cut into the fragments (this sample has 146 bytes after its delimiter).
    victim.write_bytes(data[:-300] if compressed else data[:-40])
    opts = ExportOptions(sources=[src], dest=tmp_path / "out")
    with pytest.raises(RefusedInstances, match=rf"{victim.name}: damaged source, cut short"):
        plan_export(opts, [medium_of(src)], capacity=CAP)


@pytest.mark.parametrize("damaged_first", [True, False])
def test_duplicates_keep_the_intact_copy(tmp_path: Path, damaged_first: bool) -> None:
    ds = make_dataset(32, 32)
    good, bad = tmp_path / "good", tmp_path / "bad"
    write_instance(good / "a.dcm", ds)
    write_instance(bad / "a.dcm", ds)
    (bad / "a.dcm").write_bytes((bad / "a.dcm").read_bytes()[:-40])
    order = [bad, good] if damaged_first else [good, bad]
    opts = ExportOptions(sources=order, dest=tmp_path / "out")
    plan = plan_export(opts, [medium_of(s) for s in order], capacity=CAP)
    (f,) = plan.files
    assert f.src.label.startswith(str(good.resolve())) or f.src.label.startswith(str(good))
    assert f.src.damage is None


def test_record_values_invalid_for_their_vr_are_made_valid(tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = make_dataset(StudyID="ABCDEFGHIJKLMNOPQRSTUV", AccessionNumber="X" * 20,
                          StudyDescription="D" * 80, PatientID="P" * 70, Modality="ct",
                          SeriesNumber="1.0", PatientName="A^B^C^D^E^F^G")
    plan = _plan(tmp_path, [ds])
    f = plan.files[0]
    assert f.value("StudyID") == "ABCDEFGHIJKLMNOP" and f.value("AccessionNumber") == "X" * 16
    assert f.value("StudyDescription") == "D" * 64 and f.value("PatientID") == "P" * 64
    assert f.value("Modality") == "CT" and f.value("SeriesNumber") == "1"
    assert f.value("PatientName") == "A^B^C^D^E F G"
    assert f.action == "splice"  # new header bytes, the body copied by the kernel
    assert all("made valid" in c.reason for c in plan.changes)
    # Valid values (multi-valued Image Type, names with groups) are left alone.
    plan = _plan(tmp_path / "ok", [make_dataset(PatientName="Yamada^Tarou=山田^太郎",
                                               SpecificCharacterSet="ISO_IR 192")])
    assert plan.changes == [] and plan.files[0].action == "copy"


def test_plan_reads_headers_raw_and_matches_pydicom(tmp_path: Path) -> None:
    """The plan takes values from the raw header bytes (no pydicom Dataset built for Explicit VR
    LE files); every value, and the Dataset built later for the records, equals pydicom's."""
    import gc
    import pickle

    import pydicom

    from app.core.export.fixes import value_str

    src = tmp_path / "src"
    write_corpus(src)  # non-ASCII names in four character sets, an Implicit VR file
    plan = plan_export(ExportOptions(sources=[src], dest=tmp_path / "out"), [medium_of(src)],
                       capacity=CAP)
    assert gc.isenabled()  # paused while planning only
    keywords = ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyTime",
                "StudyID", "AccessionNumber", "StudyDescription", "SeriesNumber", "Modality",
                "SeriesDescription", "InstanceNumber", "SOPInstanceUID", "SpecificCharacterSet",
                "ImageType", "Rows", "NumberOfFrames", "ImagePositionPatient")
    fast = [f for f in plan.files if f.src.elements is not None]
    assert len(fast) >= 30  # all but the Implicit VR file and the like
    raw_only = [f for f in fast if f.src.dataset is None]
    assert raw_only  # ASCII-only files never needed a Dataset to be planned
    for f in plan.files:
        ref = pydicom.dcmread(f.src.local, stop_before_pixels=True)
        for kw in keywords:
            assert f.src.get(kw) == value_str(ref, kw), (f.src.label, kw)
            assert (kw in f.src) == (kw in ref), (f.src.label, kw)
        built = f.src.header
        for elem in ref:
            assert built[elem.tag].value == elem.value, (f.src.label, elem.keyword)
        assert built.file_meta.TransferSyntaxUID == ref.file_meta.TransferSyntaxUID
    # The plan crosses a process boundary (GUI): values and lazily built headers survive.
    copy = pickle.loads(pickle.dumps(plan))
    for f, g in zip(plan.files, copy.files, strict=True):
        assert g.src.get("PatientName") == f.src.get("PatientName")
        assert g.src.header.SOPInstanceUID == f.sop_uid


def test_parse_meta_info_matches_pydicom_and_never_raises(tmp_path: Path) -> None:
    """The File Meta parser reads what pydicom reads, and cut, odd and meta-less bytes give
    what could be read, never an exception."""
    from pydicom.filereader import read_file_meta_info

    from app.core.export.transcode import parse_meta_info

    src = tmp_path / "src"
    write_corpus(src)
    files = sorted(src.rglob("*.dcm"))
    for path in files:
        meta = parse_meta_info(path.read_bytes()[:16384])
        fm = read_file_meta_info(path)
        assert meta.has_prefix and meta.group_length_ok and meta.version_ok, path
        assert (meta.transfer_syntax, meta.sop_class, meta.sop_instance) == (
            fm.TransferSyntaxUID, fm.MediaStorageSOPClassUID, fm.MediaStorageSOPInstanceUID)
    first = files[0].read_bytes()[:16384]
    full = parse_meta_info(first)
    for n in (0, 100, 131):
        assert not parse_meta_info(first[:n]).has_prefix
    for n in (132, 135, 140, 150, 200, 250):
        cut = parse_meta_info(first[:n])
        assert cut.has_prefix and cut != full
    assert parse_meta_info(first[:full.body_offset]) == full
    for odd in (first[:128] + b"DICX" + first[132:], b"\0" * 128 + b"DICM",
                b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"1" * 40,
                b"\0" * 128 + b"DICM" + b"\x02\x00\x01\x00OB\0\0\xff\xff\xff\xff"):
        parse_meta_info(odd)
