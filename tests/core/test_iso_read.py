"""open_medium / check_medium on .iso images read directly (pycdlib; no mounting)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.core.medium.check import check_medium
from app.core.medium.fs import IsoFS
from app.core.medium.reader import open_medium, read_medium
from tests.conftest import require_tool
from tests.defect_media import FaultFS, conformant, expected_tree, leaves, make_iso, payloads


def test_iso_level1_pycdlib(tmp_path: Path) -> None:
    b = conformant(tmp_path / "staging")
    iso = make_iso(b.root, tmp_path / "disc.iso")
    m = open_medium(iso)
    d = m.to_dict()
    assert d["root"] == str(iso.resolve())
    assert d["source"] == "dicomdir" and d["dicomdirs"] == ["DICOMDIR"]
    assert d["patients"] == expected_tree(b.roots)
    assert d["problems"] == []
    assert isinstance(m.fs, IsoFS) and m.fs.namespace == "iso9660"
    for inst in m.instances():
        with m.fs.open(inst.path) as fp:  # type: ignore[arg-type]
            assert fp.read(132)[128:] == b"DICM"
    assert check_medium(m) == []


@pytest.mark.parametrize("ext", [{"joliet": True}, {"rock_ridge": True},
                                 {"joliet": True, "rock_ridge": True}, {"udf": True}])
def test_iso_with_extensions_uses_primary_names(tmp_path: Path, ext: dict[str, bool]) -> None:
    b = conformant(tmp_path / "staging", patients=1)
    payloads(b.root)
    iso = make_iso(b.root, tmp_path / "disc.iso", **ext)
    m = open_medium(iso)
    assert m.fs.namespace == "iso9660"  # type: ignore[union-attr]
    assert m.to_dict()["patients"] == expected_tree(b.roots)
    assert m.problems == []


def test_iso_without_dicomdir_is_scanned(tmp_path: Path) -> None:
    b = conformant(tmp_path / "staging", patients=1)
    (b.root / "DICOMDIR").unlink()
    m = open_medium(make_iso(b.root, tmp_path / "disc.iso"))
    assert m.source == "scan"
    assert [i.path for i in m.instances()] == sorted(
        "/".join(r.file_id) for r in leaves(b.roots))  # type: ignore[arg-type]


def test_iso_scratched_sector(tmp_path: Path) -> None:
    b = conformant(tmp_path / "staging", patients=1)
    iso = make_iso(b.root, tmp_path / "disc.iso")
    bad = "/".join(leaves(b.roots)[0].file_id)  # type: ignore[arg-type]
    fs = FaultFS(IsoFS(iso), bad_files={bad})
    m = read_medium(fs)
    assert m.problems == []  # ls does not read it
    probs = check_medium(m)
    assert [(p.code, p.path) for p in probs] == [("read-error", bad)]
    assert fs.attempts[bad] == 2


def test_iso_not_an_image(tmp_path: Path) -> None:
    from app.core.errors import UnreadableMedium

    fake = tmp_path / "fake.iso"
    fake.write_bytes(b"\x00" * 32769 + b"CD001" + b"\x00" * 3000)
    with pytest.raises(UnreadableMedium):
        open_medium(fake)


def test_iso_xorriso_strict_level1(tmp_path: Path) -> None:
    xorriso = require_tool("xorriso")
    b = conformant(tmp_path / "staging")
    iso = tmp_path / "xorriso.iso"
    subprocess.run([xorriso, "-abort_on", "WARNING", "-outdev", f"stdio:{iso}", "-volid",
                    "TESTFS", "-rockridge", "off", "-joliet", "off", "-compliance",
                    "strict:iso_9660_level=1", "-map", str(b.root), "/", "-commit"],
                   check=True, capture_output=True)
    m = open_medium(iso)
    assert m.source == "dicomdir"
    assert m.to_dict()["patients"] == expected_tree(b.roots)
    assert m.problems == []
    assert check_medium(m) == []


def test_iso_xorriso_with_rock_ridge_and_joliet(tmp_path: Path) -> None:
    xorriso = require_tool("xorriso")
    b = conformant(tmp_path / "staging", patients=1)
    iso = tmp_path / "xorriso.iso"
    subprocess.run([xorriso, "-outdev", f"stdio:{iso}", "-volid", "TESTFS", "-joliet", "on",
                    "-map", str(b.root), "/", "-commit"], check=True, capture_output=True)
    m = open_medium(iso)
    assert m.to_dict()["patients"] == expected_tree(b.roots)
    assert m.problems == []


@pytest.mark.parametrize("udf", [False, True])
def test_reads_the_exporters_iso(tmp_path: Path, udf: bool) -> None:
    """Images made by app.core.devices.iso_image.write_iso (Level 1, or the UDF 2.60 bridge) read back."""
    from app.core.devices.iso_image import write_iso

    b = conformant(tmp_path / "staging")
    iso = tmp_path / "export.iso"
    write_iso(b.root, iso, "TESTFS", udf=udf)
    m = open_medium(iso)
    assert m.to_dict()["patients"] == expected_tree(b.roots)
    assert m.problems == []
    assert check_medium(m) == []


@pytest.mark.parametrize("gap", [0, 7, 11400])
def test_multisession_image_reads_the_newest_session(tmp_path: Path, gap: int) -> None:
    """QA-11, STANDARDS §5: the last session's tree (every image, its DICOMDIR) is read."""
    from tests import dicomdir_bytes as db
    from tests.defect_media import make_multisession

    roots = db.simple_tree(patients=1, series_=2, images=2)
    all_leaves = leaves(roots)
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    db.write_medium(s2, roots)  # session 2: the DICOMDIR listing all, half of the files
    one = [r for r in all_leaves if r.file_id[-2] == "SE1"]  # type: ignore[index]
    first_roots = [db.patient("PID001", "Test^Patient",
                              db.study(db.series(*one, uid_=None)))]
    db.write_medium(s1, first_roots)
    for rec in one:  # session 2 carries only what is new (the old files stay in session 1)
        s2.joinpath(*rec.file_id).unlink()  # type: ignore[misc]
    iso = make_multisession([s1, s2], tmp_path / "disc.iso", gap=gap)
    fs = IsoFS(iso)
    assert len(fs.sessions) == 2 and fs.session_start == fs.sessions[1] > 0
    m = open_medium(iso)
    assert m.source == "dicomdir"
    assert m.to_dict()["patients"] == expected_tree(roots)
    assert m.problems == []
    for inst in m.instances():  # files of both sessions open with the right bytes
        with m.fs.open(inst.path) as fp:  # type: ignore[arg-type]
            assert inst.sop_instance_uid.encode() in fp.read()  # type: ignore[union-attr]


def test_an_image_appended_to_an_image_is_not_a_session(tmp_path: Path) -> None:
    """A second, self-contained image after the first (relative extents: an .iso *file*, or
    junk) is not a later session of the disc."""
    a = conformant(tmp_path / "a", patients=1)
    b = conformant(tmp_path / "b", patients=2)
    ia, ib = make_iso(a.root, tmp_path / "a.iso"), make_iso(b.root, tmp_path / "b.iso")
    both = tmp_path / "both.iso"
    both.write_bytes(ia.read_bytes() + ib.read_bytes())
    fs = IsoFS(both)
    assert fs.sessions == [0]
    assert open_medium(both).to_dict()["patients"] == expected_tree(a.roots)


def _udf_only(b_root: Path, out: Path) -> Path:
    """A UDF 2.60 image with no ISO 9660 descriptors at all (a BD): a pycdlib UDF bridge image
    whose ISO 9660 PVD/terminator are removed and whose UDF Volume Recognition Sequence is moved
    to sector 16, where ECMA-167 puts it."""
    bridge = make_iso(b_root, out.with_suffix(".bridge"), udf=True)
    img = bytearray(bridge.read_bytes())
    s = 2048
    assert img[16 * s + 1:16 * s + 6] == b"CD001" and img[18 * s + 1:18 * s + 6] == b"BEA01"
    vrs = [bytes(img[k * s:(k + 1) * s]) for k in (18, 19, 20)]
    img[16 * s:21 * s] = bytes(5 * s)
    for j, desc in enumerate(vrs):
        img[(16 + j) * s:(17 + j) * s] = desc
    out.write_bytes(bytes(img))
    return out


def test_udf_only_image(tmp_path: Path) -> None:
    """QA-17, STANDARDS §5 (DVD readers must read UDF; BD is UDF only): the UDF tree is read."""
    b = conformant(tmp_path / "staging", patients=1)
    iso = _udf_only(b.root, tmp_path / "bd.iso")
    fs = IsoFS(iso)
    assert fs.namespace == "udf" and fs.sessions == [0]
    m = open_medium(iso)
    assert m.source == "dicomdir" and m.problems == []
    assert m.to_dict()["patients"] == expected_tree(b.roots)
    for inst in m.instances():
        with m.fs.open(inst.path) as fp:  # type: ignore[arg-type]
            assert fp.read(132)[128:] == b"DICM"
    assert check_medium(m) == []


def test_an_image_with_no_volume_structure_is_refused(tmp_path: Path) -> None:
    from app.core.errors import UnreadableMedium

    junk = tmp_path / "junk.iso"
    junk.write_bytes(bytes(16 * 2048) + b"\x00BEA01\x01" + bytes(2040) + bytes(64 * 2048))
    with pytest.raises(UnreadableMedium):
        open_medium(junk)


def _iso_and_extents(tmp_path: Path) -> tuple[Path, object, dict[str, int]]:
    import pycdlib

    b = conformant(tmp_path / "staging", patients=2)
    iso = make_iso(b.root, tmp_path / "disc.iso")
    pc = pycdlib.PyCdlib()
    pc.open(str(iso))
    ext = {p: pc.get_record(iso_path=p).extent_location()
           for p in ("/PA1", "/PA2", "/PA2/ST1", "/PA2/ST1/SE1")}
    pc.close()
    return iso, b, ext


@pytest.mark.parametrize("damage", ["junk", "loop", "past-end"])
def test_one_damaged_directory_loses_only_itself(tmp_path: Path, damage: str) -> None:
    """QA-20: pycdlib refuses the whole image; the primary tree is then read directory by
    directory and only the damaged folder is lost, reported as read-error naming it."""
    import random
    import struct

    iso, b, ext = _iso_and_extents(tmp_path)
    data = bytearray(iso.read_bytes())
    se = ext["/PA2/ST1/SE1"]
    if damage == "junk":
        rnd = random.Random(5)
        data[se * 2048:(se + 1) * 2048] = bytes(rnd.randrange(256) for _ in range(2048))
    else:
        rec = data.index(b"SE1", ext["/PA2/ST1"] * 2048) - 33
        target = ext["/PA2"] if damage == "loop" else 1_000_000
        data[rec + 2:rec + 10] = struct.pack("<I", target) + struct.pack(">I", target)
    iso.write_bytes(bytes(data))
    fs = IsoFS(iso)
    assert fs.fallback is not None  # pycdlib refused it
    m = open_medium(iso)
    got = {i.path for i in m.instances() if i.path}
    pa1 = {"/".join(r.file_id) for r in leaves(b.roots) if r.file_id[0] == "PA1"}  # type: ignore[index]
    assert pa1 <= got and not any(p.startswith("PA2/ST1/SE1") for p in got)
    assert m.problems[0].code == "read-error" and m.problems[0].path is None  # the damage
    codes = {(p.code, p.path) for p in m.problems}
    assert ("read-error", "PA2/ST1/SE1") in codes or damage == "loop" and any(
        c == "read-error" and (p or "").startswith("PA2") for c, p in codes)
    assert {p.code for p in m.problems if p.path and p.path.startswith("PA2/ST1/SE1/")} <= {
        "missing-file"}


def test_cut_short_image_names_the_lost_files(tmp_path: Path) -> None:
    """QA-21: files whose data lies past the end of a cut image are read errors, not empty or
    not-DICOM files; what is still there is listed."""
    iso, b, _ext = _iso_and_extents(tmp_path)
    m0 = open_medium(iso)
    import pycdlib

    pc = pycdlib.PyCdlib()
    pc.open(str(iso))
    ends = {i.path: pc.get_record(iso_path="/" + i.path + ".;1").extent_location()  # type: ignore[operator]
            for i in m0.instances()}
    pc.close()
    cut = sorted(ends.values())[len(ends) // 2]
    iso.write_bytes(iso.read_bytes()[:cut * 2048])
    m = open_medium(iso)
    problems = {p.path: p.code for p in check_medium(m)}
    for path, extent in ends.items():
        if extent >= cut:
            assert problems.get(path) in ("read-error", "missing-file"), (path, problems)
        else:
            assert path not in problems
