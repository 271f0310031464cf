"""parse_dicomdir / is_dicomdir: exact trees and problems for every DICOMDIR defect.

Media are built byte by byte with tests/dicomdir_bytes.py; pydicom's sample DICOMDIRs are read
from the installed package (read-only).
"""

from __future__ import annotations

import struct
import time
from collections import Counter
from typing import Any

import pytest

from app.core.dicomdir.parse import DicomdirParse, is_dicomdir, parse_dicomdir, split_file_id
from app.core.errors import DicomdirUnreadable
from tests import dicomdir_bytes as db
from tests.media import dicomdirtests_root, make_dataset, pydicom_test_file, write_fileset

# -- helpers ---------------------------------------------------------------------------------


def shape(res: DicomdirParse) -> list[Any]:
    """The tree as nested tuples of the values a user sees."""
    return [(p.patient_id, p.patient_name, [
        (st.study_uid, st.study_id, st.study_date, [
            (se.series_uid, se.modality, se.series_number, [
                (i.file_id, i.instance_number, i.sop_instance_uid) for i in se.instances])
            for se in st.series])
        for st in p.studies]) for p in res.patients]


def expected(roots: list[db.Rec]) -> list[Any]:
    """The same shape computed from the builder's records (inactive subtrees left out)."""
    def fid(r: db.Rec) -> tuple[str, ...] | None:
        if r.file_id is None:
            return None
        return r.file_id if isinstance(r.file_id, tuple) else split_file_id(r.file_id)

    return [(p.keys.get("PatientID"), p.keys.get("PatientName"), [
        (st.keys.get("StudyInstanceUID"), st.keys.get("StudyID"), st.keys.get("StudyDate"), [
            (se.keys.get("SeriesInstanceUID"), se.keys.get("Modality"),
             se.keys.get("SeriesNumber"), [
                (fid(i), i.keys.get("InstanceNumber"), i.keys.get("ReferencedSOPInstanceUIDInFile"))
                for i in se.children if i.in_use])
            for se in st.children if se.in_use])
        for st in p.children if st.in_use]) for p in roots if p.in_use]


def codes(res: DicomdirParse) -> Counter[str]:
    return Counter(p.code for p in res.problems)


def tree() -> list[db.Rec]:
    """Two patients, two studies, three series, six images, with charsets."""
    return [
        db.patient("PID1", "Müller^Hans",
                   db.study(db.series(db.image(("PA1", "ST1", "SE1", "IM1"), number="1"),
                                      db.image(("PA1", "ST1", "SE1", "IM2"), number="2"),
                                      number="1"),
                            db.series(db.image(("PA1", "ST1", "SE2", "IM1"), number="1"),
                                      modality="MR", number="2"),
                            StudyID="11"),
                   db.study(db.series(db.image(("PA1", "ST2", "SE1", "IM1"), number="1")),
                            StudyID="12", StudyDate="20230505"),
                   charset="ISO_IR 100"),
        db.patient("PID2", "Smith^Ann",
                   db.study(db.series(db.image(("PA2", "ST1", "SE1", "IM1"), number="7"),
                                      db.image(("PA2", "ST1", "SE1", "IM2"), number="8")))),
    ]


def recovered_messages(res: DicomdirParse) -> list[str]:
    return [p.message for p in res.problems if p.code == "dicomdir-recovered"]


# -- conformant ------------------------------------------------------------------------------


def test_conformant_exact_tree_and_fields() -> None:
    roots = tree()
    res = parse_dicomdir(db.encode(roots), "DICOMDIR")
    assert shape(res) == expected(roots)
    assert res.problems == []
    assert not res.recovered
    assert res.fileset_id == "TESTFS"
    assert res.fileset_uid == "1.2.826.0.1.3680043.8.498.77.0"
    assert res.other_records == []
    p = res.patients[0]
    assert (p.patient_name, p.birth_date, p.sex) == ("Müller^Hans", None, None)
    st = p.studies[0]
    assert (st.study_date, st.study_time, st.accession, st.description) == (
        "20240102", "101500", "ACC1", "TEST STUDY")
    inst = st.series[0].instances[0]
    rec = roots[0].children[0].children[0].children[0]
    assert inst.path is None
    assert inst.dicomdir == "DICOMDIR"
    assert inst.record_type == "IMAGE"
    assert inst.sop_class_uid == db.CT
    assert inst.transfer_syntax_uid == db.EXPLICIT_LE
    assert inst.sop_instance_uid == rec.keys["ReferencedSOPInstanceUIDInFile"]
    assert inst.icon is None
    assert inst.referenced is True


def test_attrs_keep_other_record_keys_by_keyword() -> None:
    img = db.image(("IM1",), Rows=512, Columns=256, NumberOfFrames="3",
                   ImageType=["ORIGINAL", "PRIMARY"], ContentDate="20240101")
    roots = [db.patient("P", "N", db.study(db.series(img)))]
    inst = parse_dicomdir(db.encode(roots), "DICOMDIR").patients[0].studies[0].series[0].instances[0]
    assert inst.attrs == {"Rows": "512", "Columns": "256", "NumberOfFrames": "3",
                          "ImageType": "ORIGINAL\\PRIMARY", "ContentDate": "20240101"}


# -- encodings -------------------------------------------------------------------------------

ENCODINGS = [
    pytest.param({}, [], id="explicit-le"),
    pytest.param({"explicit": False}, ["Implicit VR Little Endian"], id="implicit-le"),
    pytest.param({"little": False}, ["Explicit VR Big Endian"], id="explicit-be"),
    pytest.param({"undefined_items": True, "undefined_sequences": True}, [], id="undefined"),
    pytest.param({"explicit": False, "undefined_items": True, "undefined_sequences": True},
                 ["Implicit VR"], id="implicit-undefined"),
    pytest.param({"little": False, "undefined_items": True}, ["Big Endian"], id="be-undefined"),
    pytest.param({"meta": False}, [], id="no-meta"),
    pytest.param({"preamble": False, "meta": False},
                 ["no preamble"], id="no-preamble-no-meta"),
    pytest.param({"preamble": False}, ["no preamble"], id="no-preamble"),
    pytest.param({"explicit": False, "meta_ts": db.EXPLICIT_LE},
                 ["does not match"], id="ts-lies-implicit"),
    pytest.param({"little": False, "meta_ts": db.EXPLICIT_LE},
                 ["does not match"], id="ts-lies-big-endian"),
    pytest.param({"meta_ts": db.IMPLICIT_LE}, ["does not match"], id="ts-lies-explicit"),
]


@pytest.mark.parametrize(("knobs", "notes"), ENCODINGS)
def test_every_encoding_gives_the_same_tree(knobs: dict[str, Any], notes: list[str]) -> None:
    roots = tree()
    roots[0].children[0].children[0].children[0].icon = db.icon()
    res = parse_dicomdir(db.encode(roots, **knobs), "DICOMDIR")
    assert shape(res) == expected(roots)
    assert not res.recovered
    msgs = recovered_messages(res)
    assert len(msgs) == len(notes)
    for note, msg in zip(notes, msgs, strict=True):
        assert note in msg
    assert set(codes(res)) <= {"dicomdir-recovered"}
    icon = res.patients[0].studies[0].series[0].instances[0].icon
    assert icon is not None and icon.pixel_data[:64] == db.icon()["PixelData"]
    assert icon.little_endian == knobs.get("little", True)


# -- offsets ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["zero", "garbage", "cyclic", "missing"])
@pytest.mark.parametrize("undefined", [False, True])
def test_unusable_offsets_fall_back_to_sequence_order(mode: str, undefined: bool) -> None:
    roots = tree()
    res = parse_dicomdir(db.encode(roots, offsets=mode, undefined_items=undefined), "DICOMDIR")
    assert shape(res) == expected(roots)
    assert res.recovered
    msgs = recovered_messages(res)
    assert len(msgs) == 1 and "rebuilt from the order of the records" in msgs[0]
    assert codes(res) == Counter({"dicomdir-recovered": 1})


@pytest.mark.parametrize(("knobs", "shift"), [
    # A file stored without its preamble whose offsets still count it.
    ({"preamble": False, "offset_shift": 132}, -132),
    ({"preamble": False, "meta": False, "offset_shift": 132}, -132),
    ({"offset_shift": -128}, 128),                     # offsets counted without the preamble
    ({"offset_shift": 1000}, -1000),                   # any constant shift
    ({"explicit": False, "undefined_items": True, "offset_shift": 132}, -132),
])
def test_shifted_offsets_are_corrected(knobs: dict[str, Any], shift: int) -> None:
    roots = tree()
    res = parse_dicomdir(db.encode(roots, **knobs), "DICOMDIR")
    assert shape(res) == expected(roots)
    assert res.recovered
    msgs = recovered_messages(res)
    assert any(f"off by {shift} bytes" in m for m in msgs), msgs
    assert not any("rebuilt" in m for m in msgs)


def test_reordered_records_are_linked_by_offsets() -> None:
    roots = tree()
    for order in ("reversed", "levels"):
        res = parse_dicomdir(db.encode(roots, order=order), "DICOMDIR")
        assert shape(res) == expected(roots)
        assert res.problems == [] and not res.recovered


def test_reordered_records_without_offsets_lose_nothing() -> None:
    """Children before parents and no offsets: every instance is still listed, orphans under
    placeholder parents, and the problems say so."""
    roots = tree()
    want = sorted(r.file_id for root in roots for r in root.walk() if r.file_id)
    for order in ("levels", "reversed"):
        res = parse_dicomdir(db.encode(roots, order=order, offsets="zero"), "DICOMDIR")
        got = sorted(i.file_id for p in res.patients for i in p.instances())
        assert got == want
        assert res.recovered
    # Reversed: leaves come before any SERIES record.
    assert any("no SERIES record above it" in m for m in recovered_messages(res))


def test_wrong_root_offset_but_good_record_offsets() -> None:
    """Root offset points at a leaf (pydicom's DICOMDIR-nopatient has this): the records'
    own offsets still give the right tree."""
    roots = tree()
    data = bytearray(db.encode(roots))
    res0 = parse_dicomdir(bytes(data), "DICOMDIR")
    # Find (0004,1200) and point it at the first IMAGE record.
    idx = data.index(struct.pack("<HH2sH", 0x0004, 0x1200, b"UL", 4))
    first_image = bytes(data).index(b"IMAGE") - 40
    items = [i for i in range(len(data)) if data[i:i + 4] == b"\xfe\xff\x00\xe0"]
    target = max(i for i in items if i < first_image)
    data[idx + 8:idx + 12] = struct.pack("<I", target)
    res = parse_dicomdir(bytes(data), "DICOMDIR")
    assert shape(res) == shape(res0)
    assert res.recovered
    assert any("partly wrong" in m for m in recovered_messages(res))


# -- inactive records ------------------------------------------------------------------------

@pytest.mark.parametrize("offsets", ["correct", "zero"])
def test_inactive_records_and_subtrees_are_hidden(offsets: str) -> None:
    roots = tree()
    roots[0].children[0].children[0].children[1].in_use = False   # one IMAGE
    roots[0].children[0].children[1].in_use = False               # a SERIES with its image
    roots[1].in_use = False                                       # a whole PATIENT
    res = parse_dicomdir(db.encode(roots, offsets=offsets), "DICOMDIR")
    assert shape(res) == expected(roots)
    assert [p.patient_id for p in res.patients] == ["PID1"]
    assert sum(1 for p in res.patients for _ in p.instances()) == 2


# -- truncation and garbage ------------------------------------------------------------------

def test_truncated_keeps_the_records_read() -> None:
    roots = tree()
    full = db.encode(roots)
    # Cut inside the last PATIENT's first IMAGE record.
    cut = full.index(b"PA2") + 2
    res = parse_dicomdir(full[:cut], "DICOMDIR")
    assert res.recovered
    assert shape(res)[0] == expected(roots)[0]           # the first patient is complete
    msgs = recovered_messages(res)
    assert any("ends inside" in m and "lost" in m for m in msgs)
    assert all(p.path == "DICOMDIR" for p in res.problems)


@pytest.mark.parametrize("knobs", [{}, {"explicit": False}, {"little": False},
                                   {"undefined_items": True, "undefined_sequences": True}])
def test_every_truncation_point_is_survived(knobs: dict[str, Any]) -> None:
    data = db.encode(tree(), **knobs)
    listed = []
    for cut in range(0, len(data), 7):
        try:
            res = parse_dicomdir(data[:cut], "DICOMDIR")
        except DicomdirUnreadable:
            listed.append(-1)
            continue
        listed.append(sum(1 for p in res.patients for _ in p.instances()))
    # Never more than the full count; once the sequence starts, nothing raises.
    assert max(listed) <= 6
    first_ok = next(i for i, n in enumerate(listed) if n >= 0)
    assert all(n >= 0 for n in listed[first_ok:])
    assert listed[-1] >= 5


@pytest.mark.parametrize("data", [b"", b"<html><body>not dicom</body></html>" * 20,
                                  b"\0" * 2000, b"MZ\x90\0" + bytes(range(256)) * 8])
def test_nothing_usable_raises_dicomdir_unreadable(data: bytes) -> None:
    with pytest.raises(DicomdirUnreadable, match="DICOMDIR"):
        parse_dicomdir(data, "DICOMDIR")


def test_dicom_file_without_records_is_unreadable() -> None:
    raw = pydicom_test_file("CT_small.dcm").read_bytes()
    with pytest.raises(DicomdirUnreadable, match="no Directory Record Sequence"):
        parse_dicomdir(raw, "CT_small.dcm")


def test_empty_record_sequence_is_an_empty_fileset() -> None:
    res = parse_dicomdir(db.encode([]), "DICOMDIR")
    assert res.patients == [] and res.problems == []
    res = parse_dicomdir((dicomdirtests_root() / "DICOMDIR-empty.dcm").read_bytes(), "X")
    assert res.patients == [] and res.fileset_id == "PYDICOM_TEST"


# -- deep / looping / huge -------------------------------------------------------------------

def test_deeply_nested_sequences_do_not_recurse() -> None:
    """A record holding a private sequence nested 20,000 levels deep (undefined lengths)."""
    enc = db._Enc(True, True)
    depth = 20_000
    nest = (enc.header(0x00091010, "SQ", db.UNDEF) + enc.header(0xFFFEE000, "", db.UNDEF)) * depth
    nest += (enc.header(0xFFFEE00D, "", 0) + enc.header(0xFFFEE0DD, "", 0)) * depth
    roots = tree()
    roots[1].children[0].children[0].children[0].raw[0x00091010] = ("SQ", b"")
    data = db.encode(roots, offsets="zero")
    marker = enc.header(0x00091010, "SQ", 0)
    data = data.replace(marker, nest[:])
    # Item lengths are now wrong; lengths are defined in this file, so rebuild with undefined.
    data = db.encode(roots, offsets="zero", undefined_items=True, undefined_sequences=True)
    data = data.replace(marker, nest)
    t = time.perf_counter()
    res = parse_dicomdir(data, "DICOMDIR")
    assert time.perf_counter() - t < 10
    # The records before the bomb survive; the parser says where it stopped.
    assert [p.patient_id for p in res.patients][:1] == ["PID1"]
    assert sum(1 for _ in res.patients[0].instances()) == 4
    assert any("nesting too deep" in m for m in recovered_messages(res))


def test_long_offset_chains_and_cycles_terminate() -> None:
    """5,000 SERIES each pointing at the next as its lower level, the last back at the first."""
    n = 5000
    chain = [db.series(number=str(i)) for i in range(n)]
    for a, b in zip(chain, chain[1:], strict=False):
        a.children.append(b)
    roots = [db.patient("P", "N", db.study(chain[0]))]
    data = db.encode(roots, offsets="cyclic")
    t = time.perf_counter()
    res = parse_dicomdir(data, "DICOMDIR")
    assert time.perf_counter() - t < 10
    assert res.recovered
    assert len(res.patients[0].studies[0].series) == n


def test_many_records_parse_fast() -> None:
    roots = db.simple_tree(1, 1, 4, 1000)
    data = db.encode(roots)
    t = time.perf_counter()
    res = parse_dicomdir(data, "DICOMDIR")
    elapsed = time.perf_counter() - t
    assert sum(1 for _ in res.patients[0].instances()) == 4000
    assert elapsed < 2.0  # ~0.1 s here; generous for loaded CI machines


# -- orphans and other records ---------------------------------------------------------------

def test_root_level_other_records() -> None:
    hp = db.Rec("HANGING PROTOCOL", {"ReferencedSOPInstanceUIDInFile": "1.2.3"},
                file_id=("HP", "HP1"))
    priv = db.Rec("PRIVATE", {"PrivateRecordUID": "1.2.4"}, file_id=("PRIV1",))
    roots = tree()[:1] + [hp, priv]
    res = parse_dicomdir(db.encode(roots), "DICOMDIR")
    assert [(o.record_type, o.file_id) for o in res.other_records] == [
        ("HANGING PROTOCOL", ("HP", "HP1")), ("PRIVATE", ("PRIV1",))]
    assert res.other_records[1].attrs["PrivateRecordUID"] == "1.2.4"
    assert len(res.patients) == 1


def test_orphan_leaves_get_placeholder_parents() -> None:
    orphan = db.image(("LOST", "IM1"), number="5")
    roots = [orphan] + tree()
    res = parse_dicomdir(db.encode(roots), "DICOMDIR")
    placeholder = res.patients[0]
    assert placeholder.patient_id is None
    [st] = placeholder.studies
    [se] = st.series
    assert [i.file_id for i in se.instances] == [("LOST", "IM1")]
    assert shape(res)[1:] == expected(roots[1:])
    msgs = recovered_messages(res)
    assert sum("has no" in m for m in msgs) == 3


def test_untyped_container_with_studies_is_read_as_patient() -> None:
    roots = tree()
    roots[1].type = "UNKNOWN"
    res = parse_dicomdir(db.encode(roots), "DICOMDIR")
    assert shape(res) == expected(roots)
    assert any("'UNKNOWN'" in m for m in recovered_messages(res))


# -- charsets --------------------------------------------------------------------------------

def test_each_record_decoded_with_its_own_charset() -> None:
    roots = [
        db.patient("P1", "Müller^Hans", db.study(db.series(db.image(("A",))),
                                                  StudyDescription="Schädel"),
                   charset="ISO_IR 100"),
        db.patient("P2", "山田^太郎", db.study(db.series(db.image(("B",)))), charset="ISO_IR 192"),
        db.patient("P3", "Yamada^Tarou=山田^太郎=やまだ^たろう",
                   db.study(db.series(db.image(("C",))), StudyDescription="Ｔｅｓｔ漢字",
                            charset="\\ISO 2022 IR 87"),
                   charset="\\ISO 2022 IR 87"),
        db.patient("P4", "Ïñëz", db.study(db.series(db.image(("D",))), charset="ISO_IR 192",
                                             StudyDescription="Ωμέγα"),
                   charset="ISO_IR 100"),
        db.patient("P5", "Люкceмбypг", charset="ISO_IR 144"),
    ]
    res = parse_dicomdir(db.encode(roots), "DICOMDIR")
    names = [p.patient_name for p in res.patients]
    assert names == ["Müller^Hans", "山田^太郎", "Yamada^Tarou=山田^太郎=やまだ^たろう", "Ïñëz",
                     "Люкceмбypг"]
    descs = [p.studies[0].description for p in res.patients[:4]]
    assert descs == ["Schädel", "TEST STUDY", "Ｔｅｓｔ漢字", "Ωμέγα"]
    assert res.problems == []


def test_top_level_charset_is_the_fallback() -> None:
    roots = [db.patient("P1", "Zoë^Brontë", db.study(db.series(db.image(("A",)))))]
    res = parse_dicomdir(db.encode(roots, top_charset="ISO_IR 100"), "DICOMDIR")
    assert res.patients[0].patient_name == "Zoë^Brontë"
    assert res.problems == []


def test_bad_bytes_and_bad_charsets_are_problems_not_crashes() -> None:
    bad = db.patient("P1", "X", db.study(db.series(db.image(("A",)))), charset="ISO_IR 192")
    bad.raw[0x00101000] = ("LO", b"\xff\xfeAB")  # OtherPatientIDs: invalid UTF-8
    unknown = db.patient("P2", "Y", charset="ISO_IR 999")
    undeclared = db.patient("P3", None)
    undeclared.raw[0x00100010] = ("PN", "Gómez".encode() + b" ")
    res = parse_dicomdir(db.encode([bad, unknown, undeclared]), "DICOMDIR")
    assert res.patients[0].attrs["OtherPatientIDs"] == "\ufffd\ufffdAB"
    assert res.patients[1].patient_name == "Y"
    assert res.patients[2].patient_name == "Gómez"
    bc = [p for p in res.problems if p.code == "bad-charset"]
    assert len(bc) == 3
    assert all(p.severity == "warning" and p.path == "DICOMDIR" for p in bc)
    assert any("ISO_IR 999" in p.message for p in bc)


# -- missing keys ----------------------------------------------------------------------------

def test_missing_type1_keys_are_warnings() -> None:
    img = db.image(("PA1", "IM1"), number=None, ts=None)
    img_empty = db.image(("PA1", "IM2"), number="")
    se = db.series(img, img_empty, number=None)
    st = db.study(se, StudyDate=None, StudyID="")
    roots = [db.patient(None, "Anon", st)]
    res = parse_dicomdir(db.encode(roots), "DICOM/DICOMDIR")
    mk = [(p.path, p.message) for p in res.problems if p.code == "missing-key"]
    assert [p for p, _ in mk] == ["DICOM/DICOMDIR", "DICOM/DICOMDIR", "DICOM/DICOMDIR",
                                  "DICOM/PA1/IM1", "DICOM/PA1/IM2"]
    assert "PatientID" in mk[0][1]
    assert "StudyDate" in mk[1][1] and "StudyID" in mk[1][1] and "StudyTime" not in mk[1][1]
    assert "SeriesNumber" in mk[2][1]
    assert "ReferencedTransferSyntaxUIDInFile" in mk[3][1] and "InstanceNumber" in mk[3][1]
    assert mk[4][1].endswith("InstanceNumber")
    assert all(p.severity == "warning" for p in res.problems)
    # The tree is still complete.
    assert [i.file_id for i in res.patients[0].instances()] == [("PA1", "IM1"), ("PA1", "IM2")]


def test_other_leaf_types_have_their_own_required_keys() -> None:
    sr = db.image(("SR1",), rtype="SR DOCUMENT", CompletionFlag="COMPLETE")
    roots = [db.patient("P", "N", db.study(db.series(sr, modality="SR")))]
    res = parse_dicomdir(db.encode(roots), "DICOMDIR")
    [p] = [p for p in res.problems if p.code == "missing-key"]
    assert "VerificationFlag" in p.message and "ConceptNameCodeSequence" in p.message
    assert "CompletionFlag" not in p.message
    assert res.patients[0].studies[0].series[0].instances[0].record_type == "SR DOCUMENT"


# -- icons -----------------------------------------------------------------------------------

def test_icons_on_image_and_series_records() -> None:
    pal = bytes(range(256))
    lut = b"".join(struct.pack("<H", v * 257) for v in range(256))
    palette_icon = db.icon(photometric="PALETTE COLOR",
                           RedPaletteColorLookupTableDescriptor=[256, 0, 16],
                           GreenPaletteColorLookupTableDescriptor=[256, 0, 16],
                           BluePaletteColorLookupTableDescriptor=[256, 0, 16],
                           RedPaletteColorLookupTableData=lut,
                           GreenPaletteColorLookupTableData=lut,
                           BluePaletteColorLookupTableData=lut, pixels=pal[:64])
    img1 = db.image(("IM1",), icon=db.icon(64, 64))
    img2 = db.image(("IM2",), icon=db.icon(16, 16, bits=1, photometric="MONOCHROME1"))
    img3 = db.image(("IM3",), icon=palette_icon)
    se = db.series(img1, img2, img3, icon=db.icon(8, 8))
    res = parse_dicomdir(db.encode([db.patient("P", "N", db.study(se))]), "DICOMDIR")
    assert res.problems == []
    series = res.patients[0].studies[0].series[0]
    assert series.icon is not None and (series.icon.rows, series.icon.columns) == (8, 8)
    i1, i2, i3 = (i.icon for i in series.instances)
    assert i1 is not None and (i1.rows, i1.columns, i1.bits_allocated) == (64, 64, 8)
    assert i1.pixel_data == db.icon(64, 64)["PixelData"]
    assert i1.photometric == "MONOCHROME2"
    assert i2 is not None and (i2.bits_allocated, i2.photometric) == (1, "MONOCHROME1")
    assert len(i2.pixel_data) == 32
    assert i3 is not None and i3.palette is not None
    assert i3.palette[0] == (256, 0, 16) and i3.palette[1] == lut


@pytest.mark.parametrize(("overrides", "why"), [
    ({"PixelData": None}, "no native Pixel Data"),
    ({"Rows": None}, "lacks Rows"),
    ({"PixelData": b"\1" * 10}, "holds 10 bytes"),
    ({"BitsAllocated": 12}, "unsupported layout"),
    ({"PhotometricInterpretation": None}, "Photometric"),
    ({"PhotometricInterpretation": "PALETTE COLOR"}, "lookup tables"),
])
def test_malformed_icon_is_a_problem_and_no_icon(overrides: dict[str, Any], why: str) -> None:
    img = db.image(("PA1", "IM1"), icon=db.icon(**overrides))
    res = parse_dicomdir(db.encode([db.patient("P", "N", db.study(db.series(img)))]),
                         "DICOMDIR")
    inst = res.patients[0].studies[0].series[0].instances[0]
    assert inst.icon is None
    [p] = res.problems
    assert (p.code, p.severity, p.path) == ("bad-icon", "warning", "PA1/IM1")
    assert why in p.message


# -- pydicom's samples -----------------------------------------------------------------------

SAMPLES = ["DICOMDIR", "DICOMDIR-bigEnd", "DICOMDIR-implicit", "DICOMDIR-nooffset",
           "DICOMDIR-reordered", "DICOMDIR-nopatient"]


@pytest.mark.parametrize("name", SAMPLES)
def test_pydicom_samples_give_the_reference_tree(name: str) -> None:
    root = dicomdirtests_root()
    ref = parse_dicomdir((root / "DICOMDIR").read_bytes(), "DICOMDIR")
    res = parse_dicomdir((root / name).read_bytes(), name)
    assert shape(res) == shape(ref)
    assert [p.patient_name for p in res.patients] == ["Doe^Archibald", "Doe^Peter"]
    assert sum(1 for p in res.patients for _ in p.instances()) == 31
    # -nooffset had elements removed without fixing the item and sequence lengths.
    assert res.recovered == (name in ("DICOMDIR-nopatient", "DICOMDIR-nooffset"))
    if name in ("DICOMDIR", "DICOMDIR-reordered"):
        assert res.problems == []
    if name == "DICOMDIR-nooffset":
        [p] = res.problems
        assert "ends before its declared lengths" in p.message and p.severity == "warning"


def test_pydicom_sample_matches_pydicom_fileset() -> None:
    from pydicom import dcmread
    from pydicom.fileset import FileSet

    path = dicomdirtests_root() / "DICOMDIR"
    fs = FileSet(dcmread(path))
    want = sorted((tuple(i.ReferencedFileID), i.ReferencedSOPInstanceUIDInFile) for i in fs)
    res = parse_dicomdir(path.read_bytes(), "DICOMDIR")
    got = sorted((i.file_id, i.sop_instance_uid) for p in res.patients for i in p.instances())
    assert got == want
    p = res.patients[0]
    assert (p.patient_id, p.studies[0].study_date, p.studies[0].description) == (
        "77654033", "20010101", "XR C Spine Comp Min 4 Views")


def test_pydicom_written_fileset(tmp_path: Any) -> None:
    dss = [make_dataset(PatientName="Müller^Hans", SpecificCharacterSet="ISO_IR 100",
                        InstanceNumber=str(i)) for i in range(1, 4)]
    path = write_fileset(tmp_path, dss)
    res = parse_dicomdir(path.read_bytes(), "DICOMDIR")
    insts = [i for p in res.patients for i in p.instances()]
    assert sorted(i.sop_instance_uid for i in insts) == sorted(d.SOPInstanceUID for d in dss)
    assert res.patients[0].patient_name == "Müller^Hans"
    for inst in insts:
        assert (tmp_path.joinpath(*inst.file_id)).is_file()


# -- is_dicomdir / split_file_id ---------------------------------------------------------------

@pytest.mark.parametrize("knobs", [{}, {"explicit": False}, {"little": False},
                                   {"preamble": False}, {"preamble": False, "meta": False},
                                   {"meta": False}])
def test_is_dicomdir_true(knobs: dict[str, Any]) -> None:
    data = db.encode(tree(), **knobs)
    assert is_dicomdir(data[:4096])
    assert is_dicomdir(data[:300]) or not knobs.get("meta", True)


def test_is_dicomdir_when_the_meta_names_another_class() -> None:
    data = db.encode(tree())
    lying = data.replace(db.DICOMDIR_SOP.encode(), b"1.2.840.10008.1.3.99", 1)  # same length
    assert lying != data and is_dicomdir(lying[:4096])


def test_is_dicomdir_false() -> None:
    assert not is_dicomdir(pydicom_test_file("CT_small.dcm").read_bytes()[:4096])
    assert not is_dicomdir(b"")
    assert not is_dicomdir(b"<!DOCTYPE html><html>" * 100)
    assert not is_dicomdir(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    for name in SAMPLES:
        assert is_dicomdir((dicomdirtests_root() / name).read_bytes()[:2048])


@pytest.mark.parametrize(("raw", "parts"), [
    ("PA1\\ST1\\IM1", ("PA1", "ST1", "IM1")),
    ("PA1/ST1/IM1 ", ("PA1", "ST1", "IM1")),
    ("PA1\\\\IM1\\\0", ("PA1", "IM1")),
    ("\\PA1\\\\IM1\0", ("", "PA1", "IM1")),        # absolute: kept recognisable
    ("\\\\server\\share\\X", ("", "", "server", "share", "X")),  # UNC
    ("/tmp/x/SENTINEL", ("", "tmp", "x", "SENTINEL")),
    ("\\", ()),
    (" IM1 ", ("IM1",)),
    ("", ()),
])
def test_split_file_id(raw: str, parts: tuple[str, ...]) -> None:
    assert split_file_id(raw) == parts


def test_file_id_as_recorded_in_instances() -> None:
    img = db.image("pa1/st1\\im1.dcm ")
    res = parse_dicomdir(db.encode([db.patient("P", "N", db.study(db.series(img)))]), "D/DIR")
    inst = res.patients[0].studies[0].series[0].instances[0]
    assert inst.file_id == ("pa1", "st1", "im1.dcm")
    assert inst.dicomdir == "D/DIR"


# -- damaged lengths and garbage: records found by their item tags ---------------------------

def _all_file_ids(res: DicomdirParse) -> list[tuple[str, ...] | None]:
    return sorted(i.file_id for p in res.patients for i in p.instances())  # type: ignore[arg-type]


def _want_file_ids(roots: list[db.Rec]) -> list[tuple[str, ...]]:
    return sorted(r.file_id for root in roots for r in root.walk() if r.file_id)  # type: ignore[misc]


@pytest.mark.parametrize("undefined_sequences", [False, True])
def test_value_shortened_without_fixing_lengths(undefined_sequences: bool) -> None:
    """An anonymiser shortened a name but left the item and sequence lengths (and offsets)."""
    roots = tree()
    data = db.encode(roots, undefined_sequences=undefined_sequences)
    old = b"PN\x0a\x00Smith^Ann "
    assert data.count(old) == 1
    data = data.replace(old, b"PN\x08\x00Smith^An")
    res = parse_dicomdir(data, "DICOMDIR")
    assert _all_file_ids(res) == _want_file_ids(roots)
    assert [p.patient_name for p in res.patients] == ["Müller^Hans", "Smith^An"]
    assert res.recovered
    assert shape(res)[0] == expected(roots)[0]


def test_garbage_between_records() -> None:
    roots = tree()
    data = db.encode(roots)
    cut = data.index(b"PA2") - 60
    cut = data.rindex(b"\xfe\xff\x00\xe0", 0, cut)  # start of a record item
    data = data[:cut] + bytes(range(7, 57)) + data[cut:]
    res = parse_dicomdir(data, "DICOMDIR")
    assert _all_file_ids(res) == _want_file_ids(roots)
    assert res.recovered
    assert any("found by scanning for record items" in m for m in recovered_messages(res))


def test_damaged_sequence_header() -> None:
    roots = tree()
    data = db.encode(roots)
    seq = struct.pack("<HH2s", 0x0004, 0x1220, b"SQ")
    data = data.replace(seq, struct.pack("<HH2s", 0x0004, 0x1221, b"SQ"))
    res = parse_dicomdir(data, "DICOMDIR")
    assert shape(res) == expected(roots)   # offsets still point at the same bytes
    assert res.recovered


def test_item_length_far_too_long() -> None:
    roots = tree()
    data = bytearray(db.encode(roots))
    items = [i for i in range(len(data) - 12) if data[i:i + 4] == b"\xfe\xff\x00\xe0"
             and data[i + 8:i + 12] == b"\x04\x00\x00\x14"]
    data[items[3] + 4:items[3] + 8] = struct.pack("<I", 0x7FFFFFF0)
    res = parse_dicomdir(bytes(data), "DICOMDIR")
    assert _all_file_ids(res) == _want_file_ids(roots)
    assert shape(res) == expected(roots)


# -- attrs ---------------------------------------------------------------------------------

def test_attrs_with_and_without_text_agree_with_pydicom() -> None:
    """Leaf keys with and without charset-dependent text decode as pydicom does."""
    from pydicom import dcmread

    img_text = db.image(("IM1",), Rows=8, ImageComments="Schädel", charset="ISO_IR 100")
    img_plain = db.image(("IM2",), Rows=8, PixelSpacing=["0.5", "0.5"])
    roots = [db.patient("P", "N", db.study(db.series(img_text, img_plain)))]
    data = db.encode(roots)
    res = parse_dicomdir(data, "DICOMDIR")
    i1, i2 = res.patients[0].studies[0].series[0].instances
    assert dict(i1.attrs) == {"Rows": "8", "ImageComments": "Schädel",
                              "SpecificCharacterSet": "ISO_IR 100"}
    assert dict(i2.attrs) == {"Rows": "8", "PixelSpacing": "0.5\\0.5"}
    import io
    ds = dcmread(io.BytesIO(data))
    recs = [r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    assert i2.attrs["PixelSpacing"] == "\\".join(str(v) for v in recs[1].PixelSpacing)


def test_bad_charset_in_leaf_text_is_reported() -> None:
    img = db.image(("PA1", "IM1"), charset="ISO_IR 192")
    img.raw[0x00204000] = ("LT", b"ok \xff\xfe")  # ImageComments, invalid UTF-8
    res = parse_dicomdir(db.encode([db.patient("P", "N", db.study(db.series(img)))]),
                         "DICOMDIR")
    [p] = [p for p in res.problems if p.code == "bad-charset"]
    assert p.path == "PA1/IM1"
    inst = res.patients[0].studies[0].series[0].instances[0]
    assert inst.attrs["ImageComments"] == "ok \ufffd\ufffd"


def test_cut_inside_the_first_record_is_a_truncation_not_a_record() -> None:
    """QA-4: cut at, or a few bytes into, the first record item."""
    data = db.encode(tree())
    first = data.index(b"\xfe\xff\x00\xe0")
    for cut in range(first, first + 48, 2):
        res = parse_dicomdir(data[:cut], "DICOMDIR")
        assert res.patients == [] and res.other_records == []
        assert [p.code for p in res.problems] == ["dicomdir-recovered"], cut
        assert "ends inside" in res.problems[0].message


@pytest.mark.parametrize("knobs", [{}, {"explicit": False},
                                   {"undefined_items": True, "undefined_sequences": True}])
def test_zero_padding_is_cheap_and_harmless(knobs: dict[str, Any]) -> None:
    """QA-8: a DICOMDIR padded with zeros (tens of MB) parses in a blink, nothing lost."""
    roots = tree()
    data = db.encode(roots, **knobs) + bytes(40_000_000)
    t = time.perf_counter()
    res = parse_dicomdir(data, "DICOMDIR")
    assert time.perf_counter() - t < 1.0
    assert shape(res) == expected(roots)
    assert not res.recovered
    assert [p.severity for p in res.problems if p.code == "dicomdir-recovered"][-1] == "info"


def test_zeroed_sectors_in_the_middle_lose_only_those_records() -> None:
    roots = tree()
    data = bytearray(db.encode(roots, undefined_items=True, undefined_sequences=True))
    start = data.index(b"PA1\\ST1\\SE2") - 80
    data[start:start + 300] = bytes(300)  # a zeroed stretch
    res = parse_dicomdir(bytes(data), "DICOMDIR")
    got = _all_file_ids(res)
    assert got and set(got) < set(_want_file_ids(roots))
    assert ("PA2", "ST1", "SE1", "IM2") in got       # records after the zeros are found again
    assert res.recovered


def test_deflated_transfer_syntax_lie_and_real() -> None:
    """QA-3: a meta claiming Deflated over a plain body is a lie like the others; a really
    deflated DICOMDIR is inflated and read."""
    import zlib

    roots = tree()
    lie = db.encode(roots, meta_ts="1.2.840.10008.1.2.1.99")
    res = parse_dicomdir(lie, "DICOMDIR")
    assert shape(res) == expected(roots)
    assert any("does not match" in m for m in recovered_messages(res))
    meta_end = 144 + struct.unpack_from("<I", lie, 140)[0]
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    real = lie[:meta_end] + c.compress(lie[meta_end:]) + c.flush()
    res = parse_dicomdir(real, "DICOMDIR")
    assert shape(res) == expected(roots)
    assert any("deflated" in m for m in recovered_messages(res))
    with pytest.raises(DicomdirUnreadable, match="inflate"):
        parse_dicomdir(lie[:meta_end] + b"\xff" * 200, "DICOMDIR")


def test_dicomdir_extent_lets_callers_skip_padding() -> None:
    from app.core.dicomdir.parse import dicomdir_extent

    roots = tree()
    data = db.encode(roots)
    padded = data + bytes(10_000_000)
    extent = dicomdir_extent(padded[:8192])
    assert extent is not None and len(data) <= extent <= len(data) + 64 * 1024
    assert shape(parse_dicomdir(padded[:extent], "DICOMDIR")) == expected(roots)
    assert dicomdir_extent(db.encode(roots, undefined_sequences=True)[:8192]) is None
    assert dicomdir_extent(b"<html>" * 100) is None
    assert dicomdir_extent(data[:200]) is None  # sequence header not in the head
