"""Hostile media read end to end: every defect class of STANDARDS.md §5/§7 and issue 2, through
``app.cli.main`` (in process, under a deadline and an ``open``/listing audit) and ``python -m app``.

For every medium the suite asserts: bounded time, the exit code of DESIGN.md, no traceback,
every DICOM image on the medium listed exactly once with its real path (none lost, none twice),
the right problem codes naming the offending file, and nothing outside the root read or listed
(a sentinel DICOM file sits next to every medium root).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import struct
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from tests.integration.hostile_media import (
    EBE,
    ELE,
    EXPLICIT_BE,
    EXPLICIT_LE,
    ILE,
    IMPLICIT_LE,
    SENTINEL_UID,
    Built,
    DDOpts,
    ImageInfo,
    Nested,
    Rec,
    assert_each_once,
    assert_sane,
    corpus,
    dicom_bytes,
    disk_canonical,
    disk_lower,
    disk_suffix,
    encode_dicomdir,
    find_rec,
    html_bytes,
    icon_item,
    jpeg_bytes,
    listed,
    make_outside,
    pe_bytes,
    problems,
    record_offsets,
    records_for,
    run_cli,
    run_inproc,
    uid,
    write_file,
    write_images,
    write_iso,
    write_medium,
)

DEADLINE = 10.0
CHEAP = 5.0  # zero-filled data must cost next to nothing (a fixed reader needs well under 1 s)

# ------------------------------------------------------------------------ deadline and audit


class Deadline(BaseException):
    """Raised in the main thread when a read takes too long (BaseException: not swallowed)."""


@contextlib.contextmanager
def deadline(secs: float = DEADLINE) -> Iterator[None]:
    def fire(signum: int, frame: Any) -> None:
        raise Deadline(f"still running after {secs} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, secs)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


_AUDIT: list[tuple[str, str]] | None = None


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _AUDIT is None or not args:
        return
    if event in ("open", "os.listdir", "os.scandir", "os.readlink"):
        p = args[0]
        if isinstance(p, (str, bytes, os.PathLike)):
            _AUDIT.append((event, os.fsdecode(p)))
    elif event == "subprocess.Popen":  # a helper process (e.g. find) reads on our behalf
        _, argv, cwd, _ = args
        _AUDIT.append(("popen", json.dumps([os.fsdecode(a) if isinstance(a, (str, bytes))
                                            else str(a) for a in (argv or [])])))
        if cwd is not None:
            _AUDIT.append(("popen-cwd", os.fsdecode(cwd)))


sys.addaudithook(_hook)


@contextlib.contextmanager
def audit() -> Iterator[list[tuple[str, str]]]:
    global _AUDIT
    seen: list[tuple[str, str]] = []
    _AUDIT = seen
    try:
        yield seen
    finally:
        _AUDIT = None


def assert_confined(seen: list[tuple[str, str]], root: Path, tmp: Path) -> None:
    """Nothing under ``tmp`` but outside ``root`` was opened or listed (symlinks resolved)."""
    real_root = os.path.realpath(root)
    real_tmp = os.path.realpath(tmp)
    bad = []
    for event, p in seen:
        if event == "popen":  # no symlink-following walk; path arguments stay in the root
            argv = json.loads(p)
            if set(argv) & {"-L", "-follow", "-H", "--dereference"}:
                bad.append((event, p, "follows symlinks"))
            for a in argv[1:]:
                if a.startswith("/") and not os.path.realpath(a).startswith(real_root):
                    bad.append((event, p, a))
            continue
        rp = os.path.realpath(p)
        inside_tmp = rp == real_tmp or rp.startswith(real_tmp + os.sep)
        inside_root = rp == real_root or rp.startswith(real_root + os.sep)
        if real_root.endswith(".iso"):
            inside_root = rp == real_root
        if inside_tmp and not inside_root:
            bad.append((event, p, rp))
        if "outside" in rp.split(os.sep) or rp.endswith("SENTINEL"):
            bad.append((event, p, rp))
    assert not bad, f"read outside the medium root: {bad[:5]}"


def ls(capsys: pytest.CaptureFixture[str], target: Path, tmp: Path, *, cmd: str = "ls",
       rcs: tuple[int, ...] = (0,), root: Path | None = None, text: bool = True
       ) -> dict[str, Any]:
    """``discbridge CMD TARGET --json`` in process: deadline, audit, no traceback, exit code."""
    with audit() as seen, deadline():
        r = run_inproc(capsys, cmd, target, "--json")
    assert_sane(r, rcs, DEADLINE)
    base = root or (target if target.is_dir() or target.suffix == ".iso" else target.parent)
    assert_confined(seen, base, tmp)
    if text:
        with audit() as seen, deadline():  # the human-readable output survives the same medium
            t = run_inproc(capsys, cmd, target)
        assert_sane(t, rcs, DEADLINE)
        assert_confined(seen, base, tmp)
    return json.loads(r.out) if r.out.strip() else {}


def assert_tree(d: dict[str, Any], built: Built) -> None:
    """Every listed image sits under its own patient, study and series."""
    info = {i.sop_uid: i for i in built.images}
    for row in listed(d):
        i = info.get(row["sop_instance_uid"])
        if i is None:
            continue
        assert row["patient.patient_id"] == i.patient_id, row
        assert row["study.study_uid"] == i.study_uid, row
        assert row["series.series_uid"] == i.series_uid, row


def assert_all_referenced(d: dict[str, Any]) -> None:
    rows = listed(d)
    assert all(r["referenced"] for r in rows), [r["path"] for r in rows if not r["referenced"]]
    assert not problems(d, "unreferenced-file"), problems(d, "unreferenced-file")
    assert not problems(d, "missing-file"), problems(d, "missing-file")


def codes(d: dict[str, Any]) -> set[str]:
    return {p["code"] for p in d["problems"]}


@pytest.fixture
def medium_dir(tmp_path: Path) -> Path:
    """``tmp/medium`` as the root; ``tmp/outside/SENTINEL`` next to it."""
    make_outside(tmp_path)
    return tmp_path / "medium"


def small(tag: str) -> list[ImageInfo]:
    return corpus(tag, patients=2, series=2, images=2)


# ------------------------------------------------------------------------ harness self-check


def test_harness_audit_and_deadline_can_fail(tmp_path: Path) -> None:
    """The confinement audit sees opens and listings outside the root, and the deadline fires."""
    outside, sentinel = make_outside(tmp_path)
    root = tmp_path / "medium"
    root.mkdir()
    os.symlink(sentinel, root / "LINK")
    with audit() as seen:
        (root / "LINK").read_bytes()
    with pytest.raises(AssertionError, match="outside the medium root"):
        assert_confined(seen, root, tmp_path)
    with audit() as seen:
        os.listdir(outside)
    with pytest.raises(AssertionError):
        assert_confined(seen, root, tmp_path)
    import subprocess

    with audit() as seen:
        subprocess.run(["find", "-L", str(root), "-maxdepth", "1"], capture_output=True)
    with pytest.raises(AssertionError, match="follows symlinks"):
        assert_confined(seen, root, tmp_path)
    with pytest.raises(Deadline), deadline(0.2):
        while True:
            pass


# ------------------------------------------------------------------------ builder self-check


@pytest.mark.parametrize("syntax", [ELE, ILE, EBE], ids=["ele", "ile", "ebe"])
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_builder_offsets_match_pydicom(tmp_path: Path, syntax: Any, undefined: bool) -> None:
    """Our encoder's offsets point at the item tags pydicom finds (independent of the product)."""
    imgs = small("selfcheck")
    opts = DDOpts(syntax=syntax, undefined_items=undefined, undefined_seq=undefined)
    roots = records_for(imgs)
    data = encode_dicomdir(roots, opts)
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.file_meta.TransferSyntaxUID == syntax.uid
    recs = ds.DirectoryRecordSequence
    assert len(recs) == len(imgs) + 2 + 2 * 1 + 2 * 2
    starts = {r.seq_item_tell for r in recs}
    offs = record_offsets(roots, opts)
    assert set(offs.values()) == starts
    assert ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity in starts
    for r in recs:
        for kw in ("OffsetOfTheNextDirectoryRecord",
                   "OffsetOfReferencedLowerLevelDirectoryEntity"):
            v = r.get(kw)
            assert v == 0 or v in starts


# ------------------------------------------------------------------------ finding DICOMDIRs


@pytest.mark.parametrize("name", ["DICOMDIR", "dicomdir", "DicomDir", "DICOMDIR.", "DICOMDIR;1",
                                  "DICOMDIR.;1", "dicomdir.;1", "dicomdir;1"])
def test_dicomdir_name_variants(medium_dir: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str], name: str) -> None:
    built = write_medium(medium_dir, small("name"), dicomdir_name=name)
    d = ls(capsys, medium_dir, tmp_path)
    assert d["source"] == "dicomdir" and d["dicomdirs"] == [name]
    assert_each_once(d, built)
    assert_tree(d, built)
    assert_all_referenced(d)


@pytest.mark.parametrize("name", ["DIRFILE", "INDEX.DAT", "dicomdir.dcm", "DICOMDIR.BAK"])
def test_renamed_dicomdir_found_by_sop_class(medium_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             name: str) -> None:
    built = write_medium(medium_dir, small("renamed"), dicomdir_name=name)
    d = ls(capsys, medium_dir, tmp_path)
    assert d["source"] == "dicomdir" and d["dicomdirs"] == [name]
    assert_each_once(d, built)
    assert_all_referenced(d)


@pytest.mark.parametrize("base", ["DICOM", "dicom", "CD1/DICOM", "PATIENT 1/dicom"])
def test_dicomdir_in_subfolder(medium_dir: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str], base: str) -> None:
    """File IDs are relative to the DICOMDIR's own folder (PS3.10 §8.6 note)."""
    built = write_medium(medium_dir, small("sub"), base=base)
    write_file(medium_dir, "AUTORUN.INF", b"[autorun]\r\n")
    d = ls(capsys, medium_dir, tmp_path)
    assert d["source"] == "dicomdir" and d["dicomdirs"] == [f"{base}/DICOMDIR"]
    assert_each_once(d, built)
    assert_all_referenced(d)


def test_renamed_dicomdir_in_subfolder(medium_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    built = write_medium(medium_dir, small("subren"), base="DICOM", dicomdir_name="DIRFILE")
    d = ls(capsys, medium_dir, tmp_path)
    assert d["dicomdirs"] == ["DICOM/DIRFILE"]
    assert_each_once(d, built)
    assert_all_referenced(d)


def test_two_overlapping_dicomdirs_merge_without_duplicates(
        medium_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Root DICOMDIR lists everything under DATA/; DATA/DICOMDIR lists half of it again."""
    imgs = small("overlap")
    built = write_medium(medium_dir, imgs, base="DATA", dicomdir_name="DICOMDIR",
                         roots=records_for(imgs[: len(imgs) // 2]))
    root_dd = encode_dicomdir(records_for(imgs, lambda i: ("DATA",) + i.fid))
    write_file(medium_dir, "DICOMDIR", root_dd)
    d = ls(capsys, medium_dir, tmp_path)
    assert sorted(d["dicomdirs"]) == ["DATA/DICOMDIR", "DICOMDIR"]
    assert_each_once(d, built)
    assert_tree(d, built)
    assert_all_referenced(d)
    assert len(d["patients"]) == 2, [p["patient_id"] for p in d["patients"]]


def test_two_disjoint_dicomdirs_both_read(medium_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    a = write_medium(medium_dir, corpus("cda", patients=1), base="CD1")
    b = write_medium(medium_dir, corpus("cdb", patients=1), base="CD2")
    d = ls(capsys, medium_dir, tmp_path)
    assert sorted(d["dicomdirs"]) == ["CD1/DICOMDIR", "CD2/DICOMDIR"]
    built = Built(medium_dir, a.images + b.images, {**a.expected, **b.expected})
    assert_each_once(d, built)
    assert_all_referenced(d)


# ------------------------------------------------------------------------ resolving names

NAME_CASES: dict[str, tuple[Callable[..., str], Callable[[ImageInfo], tuple[str, ...]] | None]] = {
    "lowercase-tree": (disk_lower, None),
    "semicolon-1": (disk_suffix(";1"), None),
    "dot-semicolon-1": (disk_suffix(".;1"), None),
    "lower-dot-semicolon-1": (disk_suffix(".;1", lower=True), None),
    "trailing-dot": (disk_suffix("."), None),
    "dcm": (disk_suffix(".dcm"), None),
    "DCM-lower-tree": (disk_suffix(".DCM", lower=True), None),
    "slash-in-file-id": (disk_canonical, lambda i: ("/".join(i.fid),)),
    "mixed-separators": (disk_canonical, lambda i: (i.fid[0] + "/" + i.fid[1],) + i.fid[2:]),
    "trailing-spaces": (disk_canonical, lambda i: tuple(c + " " for c in i.fid)),
    "trailing-nuls": (disk_canonical, lambda i: tuple(c + "\0" for c in i.fid)),
    "empty-components": (disk_canonical, lambda i: (i.fid[0], "", i.fid[1], i.fid[2], "",
                                                     i.fid[3])),
    "lowercase-file-ids": (disk_canonical, lambda i: tuple(c.lower() for c in i.fid)),
    "lower-ids-lower-tree-semicolon": (disk_suffix(";1", lower=True),
                                       lambda i: tuple(c.lower() for c in i.fid)),
}


@pytest.mark.parametrize("case", sorted(NAME_CASES))
def test_file_id_resolution(medium_dir: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str], case: str) -> None:
    disk, recorded = NAME_CASES[case]
    name = "dicomdir" if "lower" in case else "DICOMDIR"
    built = write_medium(medium_dir, small("res"), disk=disk, recorded=recorded,
                         dicomdir_name=name)
    d = ls(capsys, medium_dir, tmp_path)
    assert d["source"] == "dicomdir"
    assert_each_once(d, built)  # the real on-disc name, e.g. pa001/st001/se001/im00001;1
    assert_tree(d, built)
    assert_all_referenced(d)
    assert not [p for p in d["problems"] if p["severity"] == "error"], d["problems"]
    # every listed path opens through the medium's own file system, to the right file
    from app.core.medium.reader import open_medium

    with deadline():
        m = open_medium(medium_dir)
    assert m.fs is not None
    for inst in m.instances():
        assert inst.path is not None
        with m.fs.open(inst.path) as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
        assert ds.SOPInstanceUID == inst.sop_instance_uid


def test_lowercase_whole_tree_like_fuseiso(medium_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """fuseiso/`map=normal` lowercases everything and drops ';1': DICOMDIR too."""
    built = write_medium(medium_dir, small("fuse"), disk=disk_lower, dicomdir_name="dicomdir")
    write_file(medium_dir, "readme.txt", b"x")
    d = ls(capsys, medium_dir, tmp_path)
    assert d["dicomdirs"] == ["dicomdir"]
    assert_each_once(d, built)
    assert_all_referenced(d)
    assert all(r["path"] == r["path"].lower() for r in listed(d))


# ------------------------------------------------------------------------ traversal, symlinks


def _escape_cases(tmp: Path, root: Path) -> dict[str, tuple[str, ...]]:
    sentinel = tmp / "outside" / "SENTINEL"
    return {
        "dotdot": ("..", "outside", "SENTINEL"),
        "dotdot-deep": ("PA001", "..", "..", "outside", "SENTINEL"),
        "dotdot-many": ("..",) * 12 + tuple(sentinel.parts[1:]),
        "dotdot-slash": ("../outside/SENTINEL",),
        "absolute": (str(sentinel),),
        "absolute-split": ("",) + sentinel.parts[1:],
        "drive": ("C:", "outside", "SENTINEL"),
        "drive-joined": ("C:\\outside\\SENTINEL",),
        "unc": ("", "", "server", "share", "SENTINEL"),
        "unc-slash": ("//server/share/SENTINEL",),
        "symlink-file": ("LINKS", "EVIL"),
        "symlink-dir": ("LINKDIR", "SENTINEL"),
        "symlink-dir-lower": ("linkdir", "sentinel"),
        "dotdot-space": (".. ", "outside", "SENTINEL"),
        "dotdot-nul": ("..\0", "outside", "SENTINEL"),
        "dotdot-backslash-in-component": ("..\\outside\\SENTINEL",),
        "win-long-path": ("", "", "?", "C:", "outside", "SENTINEL"),
        "drive-relative": ("C:..", "outside", "SENTINEL"),
    }


ESCAPES = ["dotdot", "dotdot-deep", "dotdot-many", "dotdot-slash", "absolute", "absolute-split",
           "drive", "drive-joined", "unc", "unc-slash", "symlink-file", "symlink-dir",
           "symlink-dir-lower", "dotdot-space", "dotdot-nul", "dotdot-backslash-in-component",
           "win-long-path", "drive-relative"]


@pytest.mark.parametrize("case", ESCAPES)
def test_file_id_escaping_root_is_refused(medium_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], case: str) -> None:
    imgs = small("esc")
    evil = ImageInfo(sop_uid=uid("esc", "evil"), patient_id="ESC1", patient_name="ESC^PATIENT1",
                     study_uid=imgs[0].study_uid, series_uid=imgs[0].series_uid,
                     fid=("EVIL",), instance_number="99")
    fid = _escape_cases(tmp_path, medium_dir)[case]
    medium_dir.mkdir(parents=True)
    (medium_dir / "LINKS").mkdir()
    os.symlink(tmp_path / "outside" / "SENTINEL", medium_dir / "LINKS" / "EVIL")
    os.symlink(tmp_path / "outside", medium_dir / "LINKDIR")
    roots = records_for(imgs + [evil], lambda i: fid if i is evil else i.fid)
    built = write_medium(medium_dir, imgs, roots=roots)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    rows = {r["sop_instance_uid"]: r for r in listed(d)}
    assert evil.sop_uid in rows, "the refused record is still listed"
    assert rows[evil.sop_uid]["path"] is None
    refused = [p for p in d["problems"] if p["code"] in ("outside-root", "bad-file-id")
               and p["severity"] == "error"]
    assert refused, d["problems"]
    assert any("SENTINEL" in (p["path"] or "") + p["message"]
               or "EVIL" in (p["path"] or "") + p["message"]
               or "sentinel" in (p["path"] or "") for p in refused), refused
    assert not problems(d, "missing-file") or all(
        "SENTINEL" not in (p["path"] or "").upper() for p in problems(d, "missing-file"))


def test_scan_never_follows_symlinks_out(medium_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """No DICOMDIR: the scan meets symlinks to outside files/folders, loops, and an alias."""
    imgs = small("scanlink")
    expected = write_images(medium_dir, imgs)
    os.symlink(tmp_path / "outside" / "SENTINEL", medium_dir / "EVIL")
    os.symlink(tmp_path / "outside", medium_dir / "OUTDIR")
    os.symlink(tmp_path, medium_dir / "PA001" / "UP")  # the parent of the root
    os.symlink("..", medium_dir / "PA002" / "LOOP")  # a loop inside the root
    os.symlink("SELF", medium_dir / "SELF")  # dangling self-loop
    os.symlink(medium_dir / expected[imgs[0].sop_uid], medium_dir / "ALIAS")  # same file twice
    d = ls(capsys, medium_dir, tmp_path)
    assert d["source"] == "scan"
    assert_each_once(d, Built(medium_dir, imgs, expected), exact_paths=False)


def test_dicomdir_plus_symlink_loops_and_alias(medium_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    imgs = small("ddlink")
    built = write_medium(medium_dir, imgs)
    os.symlink("..", medium_dir / "PA001" / "LOOP")
    os.symlink(tmp_path, medium_dir / "UP")
    os.symlink(medium_dir / "PA002", medium_dir / "ALIASDIR")
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    assert_all_referenced(d)


def test_directory_named_like_a_file(medium_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The record's File ID names a directory (holding an unrelated DICOM file)."""
    imgs = small("dirlike")
    victim, rest = imgs[0], imgs[1:]
    built = write_medium(medium_dir, rest, roots=records_for(imgs))
    inner = ImageInfo(sop_uid=uid("dirlike", "inner"), patient_id="DIRLIKE9",
                      patient_name="INNER^X", study_uid=uid("dirlike", "is"),
                      series_uid=uid("dirlike", "ise"), fid=victim.fid + ("X",))
    built.expected.update(write_images(medium_dir, [inner]))
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    rows = {r["sop_instance_uid"]: r for r in listed(d)}
    assert rows[victim.sop_uid]["path"] is None
    assert any(p["path"] == "/".join(victim.fid) and p["severity"] == "error"
               for p in d["problems"] if p["code"] in ("missing-file", "not-dicom")), d["problems"]
    assert rows[inner.sop_uid]["referenced"] is False


# ------------------------------------------------------------------------ offsets

OFFSET_DEFECTS = {
    "zero": DDOpts(offsets="zero"),
    "missing": DDOpts(offsets="missing"),
    "shift+132": DDOpts(offsets="shift", shift=132),
    "shift-128": DDOpts(offsets="shift", shift=-128),
    "shift+1": DDOpts(offsets="shift", shift=1),
    "random-1": DDOpts(offsets="random", seed=1),
    "random-2": DDOpts(offsets="random", seed=2),
    "random-3": DDOpts(offsets="random", seed=3),
    "cycle": DDOpts(offsets="cycle"),
    "self-lower": DDOpts(offsets="self_lower"),
    "zero-implicit": DDOpts(offsets="zero", syntax=ILE),
    "shift-128-no-preamble": DDOpts(offsets="shift", shift=-128, preamble=False),
    "random-undefined": DDOpts(offsets="random", undefined_items=True, undefined_seq=True),
}


@pytest.mark.parametrize("case", sorted(OFFSET_DEFECTS))
def test_bad_offsets_recovered(medium_dir: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str], case: str) -> None:
    built = write_medium(medium_dir, corpus("off", patients=3, series=2, images=3),
                         opts=OFFSET_DEFECTS[case])
    d = ls(capsys, medium_dir, tmp_path)
    assert d["source"] == "dicomdir"
    assert_each_once(d, built)
    assert_tree(d, built)
    assert_all_referenced(d)
    rec = problems(d, "dicomdir-recovered")
    assert rec and all(p["path"] == "DICOMDIR" and p["severity"] == "warning" for p in rec), \
        d["problems"]
    c = ls(capsys, medium_dir, tmp_path, cmd="check", rcs=(1,))
    assert "dicomdir-recovered" in codes(c)


@pytest.mark.parametrize("order", ["levels", "reverse"])
def test_correct_offsets_any_record_order(medium_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], order: str) -> None:
    """Records may be in any order (PS3.3 F.3): correct offsets must be followed, not doubted."""
    built = write_medium(medium_dir, corpus("order", patients=3, series=2, images=2),
                         opts=DDOpts(order=order))
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    assert_tree(d, built)
    assert_all_referenced(d)
    assert not [p for p in d["problems"] if p["severity"] != "info"], d["problems"]


def test_levels_order_with_zero_offsets_loses_nothing(medium_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Sequence order cannot rebuild a level-ordered tree: still, no image may be lost."""
    built = write_medium(medium_dir, corpus("lvz", patients=2, series=2, images=2),
                         opts=DDOpts(order="levels", offsets="zero"))
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)


def test_lower_offset_points_to_ancestor(medium_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A SERIES whose lower-level offset points back to its PATIENT (a loop across levels)."""
    imgs = small("anc")
    roots = records_for(imgs)
    offs = record_offsets(roots)
    pat = find_rec(roots, f"PATIENT:{imgs[0].patient_id}")
    ser = find_rec(roots, f"SERIES:{imgs[0].series_uid}")
    target = offs[pat.label]
    ser_off = offs[ser.label]

    def patch(data: bytes) -> bytes:
        b = bytearray(data)
        pos = b.index(b"\x04\x00\x20\x14UL\x04\x00", ser_off)
        b[pos + 8:pos + 12] = struct.pack("<I", target)
        return bytes(b)

    built = write_medium(medium_dir, imgs, roots=roots, mutate=patch)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)


# ------------------------------------------------------------------------ encodings

ENCODINGS = {
    "implicit": DDOpts(syntax=ILE),
    "big-endian": DDOpts(syntax=EBE),
    "no-preamble": DDOpts(preamble=False),
    "no-preamble-no-meta-implicit": DDOpts(preamble=False, meta=False, syntax=ILE),
    "no-preamble-no-meta-explicit": DDOpts(preamble=False, meta=False),
    "preamble-no-meta": DDOpts(meta=False),
    "meta-says-explicit-body-implicit": DDOpts(syntax=ILE, meta_ts=EXPLICIT_LE),
    "meta-says-implicit-body-explicit": DDOpts(syntax=ELE, meta_ts=IMPLICIT_LE),
    "meta-says-big-body-little": DDOpts(syntax=ELE, meta_ts=EXPLICIT_BE),
    "meta-says-jpeg-body-explicit": DDOpts(meta_ts="1.2.840.10008.1.2.4.50"),
    "meta-says-deflate-body-explicit": DDOpts(meta_ts="1.2.840.10008.1.2.1.99"),
    "really-deflated": DDOpts(meta_ts="1.2.840.10008.1.2.1.99", deflate=True),
    "really-deflated-undefined": DDOpts(meta_ts="1.2.840.10008.1.2.1.99", deflate=True,
                                        undefined_items=True, undefined_seq=True),
    "undefined-items": DDOpts(undefined_items=True),
    "undefined-seq": DDOpts(undefined_seq=True),
    "undefined-all-implicit": DDOpts(undefined_items=True, undefined_seq=True, syntax=ILE),
    "undefined-all-big": DDOpts(undefined_items=True, undefined_seq=True, syntax=EBE),
}


@pytest.mark.parametrize("case", sorted(ENCODINGS))
def test_dicomdir_encodings(medium_dir: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str], case: str) -> None:
    built = write_medium(medium_dir, small("enc"), opts=ENCODINGS[case])
    d = ls(capsys, medium_dir, tmp_path)
    assert d["source"] == "dicomdir" and d["dicomdirs"] == ["DICOMDIR"]
    assert_each_once(d, built)
    assert_tree(d, built)
    assert_all_referenced(d)
    names = {p["patient_name"] for p in d["patients"]}
    assert names == {"ENC^PATIENT1", "ENC^PATIENT2"}


# ------------------------------------------------------------------------ truncation


def test_truncated_dicomdir_every_cut_point(medium_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    imgs = corpus("trunc", patients=2, series=2, images=3)
    built = write_medium(medium_dir, imgs)
    full = (medium_dir / "DICOMDIR").read_bytes()
    offs = sorted(record_offsets(records_for(imgs)).values())
    cuts = {0, 1, 4, 100, 128, 131, 132, 136, 140, 150, 200, len(full) - 1, len(full) - 8}
    cuts |= {o + k for o in offs[::3] for k in (0, 3, 8, 13)}
    cuts |= {len(full) * k // 23 for k in range(1, 23)}
    t0 = time.monotonic()
    undiagnosed = []
    for cut in sorted(c for c in cuts if 0 <= c < len(full)):
        (medium_dir / "DICOMDIR").write_bytes(full[:cut])
        d = ls(capsys, medium_dir, tmp_path, text=cut % 3 == 0)
        try:
            assert_each_once(d, built)
            assert_tree(d, built)
        except AssertionError as exc:
            raise AssertionError(f"DICOMDIR cut at {cut} of {len(full)}: {exc}") from exc
        # the damage is reported as such, naming the DICOMDIR
        if not [p for p in d["problems"] if p["path"] == "DICOMDIR" and p["code"] in
                ("dicomdir-recovered", "dicomdir-unreadable", "truncated-file")]:
            undiagnosed.append((cut, sorted(codes(d))))
    assert time.monotonic() - t0 < 30
    assert not undiagnosed, f"truncation not reported as damage at cuts {undiagnosed}"


# ------------------------------------------------------------------------ inactive records


@pytest.mark.parametrize("files_present", [True, False], ids=["files-present", "files-gone"])
def test_inactive_patient_subtree_hidden(medium_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         files_present: bool) -> None:
    imgs = small("inact")
    roots = records_for(imgs)
    roots[1].in_use = 0x0000  # second patient deleted: its whole subtree is inactive
    gone = [i for i in imgs if i.patient_id == imgs[-1].patient_id]
    keep = [i for i in imgs if i not in gone]
    built = write_medium(medium_dir, imgs if files_present else keep, roots=roots)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    rows = {r["sop_instance_uid"]: r for r in listed(d)}
    for i in keep:
        assert rows[i.sop_uid]["referenced"] is True
    for i in gone:
        if files_present:  # the files are still there: listed, as unreferenced
            assert rows[i.sop_uid]["referenced"] is False
        else:
            assert i.sop_uid not in rows
    assert not problems(d, "missing-file")


def test_inactive_image_record(medium_dir: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    imgs = small("inimg")
    roots = records_for(imgs)
    find_rec(roots, f"IMAGE:{imgs[2].sop_uid}").in_use = 0
    built = write_medium(medium_dir, [i for i in imgs if i is not imgs[2]], roots=roots)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    assert imgs[2].sop_uid not in {r["sop_instance_uid"] for r in listed(d)}
    assert not problems(d, "missing-file")


# ------------------------------------------------------------------------ deep and huge


def test_ten_thousand_level_record_chain(medium_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    imgs = small("deep")
    roots = records_for(imgs)
    node = Rec("PATIENT", [(0x00100010, "PN", "DEEP^CHAIN"), (0x00100020, "LO", "DEEP999")])
    roots.append(node)
    for k in range(10_000):
        child = Rec("STUDY" if k == 0 else "SERIES",
                    [(0x0020000D if k == 0 else 0x0020000E, "UI", uid("deepchain", k))])
        node.children.append(child)
        node = child
    built = write_medium(medium_dir, imgs, roots=roots)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    assert_tree(d, built)


@pytest.mark.parametrize("syntax", [ELE, ILE], ids=["explicit", "implicit"])
def test_ten_thousand_level_nested_sequences(medium_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             syntax: Any) -> None:
    imgs = small("nest")
    roots = records_for(imgs)
    find_rec(roots, f"IMAGE:{imgs[1].sop_uid}").elems.append((0x00081140, "SQ", Nested(10_000)))
    find_rec(roots, f"SERIES:{imgs[4].series_uid}").elems.append((0x00081115, "SQ",
                                                                   Nested(10_000)))
    built = write_medium(medium_dir, imgs, roots=roots, opts=DDOpts(syntax=syntax))
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)


def _huge_elem(syntax: Any) -> bytes:
    e = syntax.e
    tag = struct.pack(e + "HH", 0x0009, 0x1001)
    if syntax.explicit:
        return tag + b"UN\0\0" + struct.pack(e + "I", 0xFFFFFFF0) + b"\xAB" * 16
    return tag + struct.pack(e + "I", 0xFFFFFFF0) + b"\xAB" * 16


HUGE = ["elem-explicit", "elem-implicit", "elem-big", "item", "seq", "short-lo", "item-negative"]


@pytest.mark.parametrize("case", HUGE)
def test_huge_lengths(medium_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                      case: str) -> None:
    imgs = corpus("huge", patients=2, series=2, images=2)
    roots = records_for(imgs)
    victim = find_rec(roots, f"IMAGE:{imgs[2].sop_uid}")
    syntax = {"elem-implicit": ILE, "elem-big": EBE}.get(case, ELE)
    opts = DDOpts(syntax=syntax)
    if case.startswith("elem"):
        victim.elems.append((0x00091001, "RAW", _huge_elem(syntax)))
    elif case == "item":
        opts.item_length[victim.label] = 0xFFFFFFF0
    elif case == "item-negative":
        opts.item_length[victim.label] = 0x80000000
    elif case == "seq":
        opts.seq_length = 0xFFFFFFF0
    elif case == "short-lo":
        victim.elems.append((0x00081030, "RAW", b"\x08\x00\x30\x10LO\xfe\xff" + b"X" * 10))
    built = write_medium(medium_dir, imgs, roots=roots, opts=opts)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)


def test_huge_lengths_subprocess_no_traceback(medium_dir: Path, tmp_path: Path) -> None:
    imgs = small("hugesub")
    roots = records_for(imgs)
    find_rec(roots, f"IMAGE:{imgs[0].sop_uid}").elems.append((0x00091001, "RAW",
                                                              _huge_elem(ELE)))
    opts = DDOpts(offsets="cycle", seq_length=0xFFFFFFF0)
    built = write_medium(medium_dir, imgs, roots=roots, opts=opts)
    for cmd in ("ls", "check"):
        r = run_cli(cmd, medium_dir, "--json", timeout=DEADLINE)
        assert_sane(r, (0,) if cmd == "ls" else (1,))
        assert_each_once(r.json(), built)


# ------------------------------------------------------------------------ record keys, charsets


@pytest.mark.parametrize("drop", [
    ("PATIENT", 0x00100020), ("STUDY", 0x00080020), ("STUDY", 0x00080030),
    ("STUDY", 0x00200010), ("STUDY", 0x0020000D), ("SERIES", 0x00080060),
    ("SERIES", 0x0020000E), ("SERIES", 0x00200011), ("IMAGE", 0x00200013),
    ("IMAGE", 0x00041511), ("IMAGE", 0x00041510),
], ids=lambda x: f"{x[0]}-{x[1]:08X}" if isinstance(x, tuple) else str(x))
def test_records_missing_type1_keys(medium_dir: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str],
                                    drop: tuple[str, int]) -> None:
    imgs = small("nokey")
    built = write_medium(medium_dir, imgs, roots=records_for(imgs, drop=[drop]))
    d = ls(capsys, medium_dir, tmp_path)
    paths = sorted(r["path"] for r in listed(d) if r["path"])
    assert paths == sorted(built.expected.values()), "every file listed once"
    if drop[1] not in (0x00041511, 0x00041510):
        assert_each_once(d, built)
    c = ls(capsys, medium_dir, tmp_path, cmd="check", rcs=(1,))
    mk = problems(c, "missing-key")
    # named by the DICOMDIR, or for a leaf record by the file it references
    assert mk and all(p["path"] in {"DICOMDIR", *built.expected.values()} for p in mk), mk
    assert all(p["severity"] == "warning" for p in mk)


CHARSETS = [
    ("ISO_IR 100", "Müller^Hans"),
    ("ISO_IR 192", "Ünal^Çağrı=李^华"),
    ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    ("\\ISO 2022 IR 149", "Hong^Gildong=洪^吉洞=홍^길동"),
    ("GB18030", "Wang^XiaoDong=王^小东"),
    ("ISO_IR 144", "Люкceмбypг^Aнa"),
    ("ISO_IR 126", "Διονυσιος"),
    ("ISO_IR 138", "שרון^דבורה"),
    ("ISO_IR 13", "ﾔﾏﾀﾞ^ﾀﾛｳ"),
    ("ISO_IR 101", "Wałęsa^Lech"),
    ("ISO 2022 IR 13\\ISO 2022 IR 87", "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"),
    ("ISO 2022 IR 6\\ISO 2022 IR 100", "Zoë^Brontë"),
    ("ISO_IR 166", "ทดสอบ^ภาษาไทย"),
    ("ISO_IR 148", "Öztürk^Şükrü"),
]


def test_per_record_charsets(medium_dir: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    imgs: list[ImageInfo] = []
    for k, (cs, name) in enumerate(CHARSETS):
        imgs += [replace_info(i, charset=cs, patient_name=name, fid=(f"PA{k + 1:03d}",) + i.fid[1:])
                 for i in corpus(f"cs{k}", patients=1, series=1, images=1)]
    # the STUDY record of the first patient has its own charset and a Latin-1 description
    roots = records_for(imgs)
    st = find_rec(roots, f"STUDY:{imgs[0].study_uid}")
    st.charset = "ISO_IR 100"
    st.elems = [e for e in st.elems if e[0] != 0x00081030] + [(0x00081030, "LO", "Schädel")]
    built = write_medium(medium_dir, imgs, roots=roots)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    got = {p["patient_id"]: p["patient_name"] for p in d["patients"]}
    assert got == {i.patient_id: i.patient_name for i in imgs}
    assert d["patients"][0]["studies"][0]["description"] == "Schädel"
    assert "bad-charset" not in codes(d)
    c = ls(capsys, medium_dir, tmp_path, cmd="check", rcs=(0, 1))
    assert "bad-charset" not in codes(c)


def replace_info(info: ImageInfo, **kw: Any) -> ImageInfo:
    from dataclasses import replace

    return replace(info, **kw)


@pytest.mark.parametrize("case", ["utf8-declared-latin1-bytes", "unknown-charset",
                                  "ascii-declared-latin1-bytes", "garbage-charset-term"])
def test_wrong_or_unknown_charset(medium_dir: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str], case: str) -> None:
    imgs = small("badcs")
    roots = records_for(imgs)
    pat = roots[0]
    pat.elems = [e for e in pat.elems if e[0] != 0x00100010]
    if case == "utf8-declared-latin1-bytes":
        pat.charset, raw = "ISO_IR 192", b"M\xfcller^Hans"
    elif case == "unknown-charset":
        pat.charset, raw = "ISO_IR 999", b"Mueller^Hans"
    elif case == "ascii-declared-latin1-bytes":
        pat.charset, raw = None, b"M\xfcller^Hans"
    else:
        pat.charset, raw = "\x00\xff\\\\", b"Mueller^Hans"
    pat.elems.append((0x00100010, "PN", raw))
    built = write_medium(medium_dir, imgs, roots=roots)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    name = d["patients"][0]["patient_name"]
    assert name and name.startswith("M") and name.endswith("ller^Hans"), name
    bc = problems(d, "bad-charset")
    assert bc and all(p["path"] == "DICOMDIR" for p in bc), d["problems"]


# ------------------------------------------------------------------------ referenced file defects


def _defect_files(root: Path) -> tuple[Built, dict[str, ImageInfo]]:
    imgs = corpus("fdef", patients=1, series=2, images=6)
    roles = ["good", "missing", "empty", "trunc-header", "trunc-pixels", "html", "pe", "jpeg",
             "no-preamble-no-meta", "dicm-at-0", "good2", "mismatch"]
    role = dict(zip(roles, imgs, strict=True))
    unref = ImageInfo(sop_uid=uid("fdef", "unref"), patient_id="FDEF1", patient_name="FDEF^X",
                      study_uid=imgs[0].study_uid, series_uid=imgs[0].series_uid,
                      fid=("PA001", "ST001", "SE001", "EXTRA1"), instance_number="77")
    roots = records_for(imgs)
    expected: dict[str, str] = {}
    for r, info in role.items():
        rel = "/".join(info.fid)
        data = dicom_bytes(info)
        if r == "missing":
            continue
        if r == "empty":
            data = b""
        elif r == "trunc-header":
            data = data[:200]
        elif r == "trunc-pixels":
            data = data[:-60]
        elif r == "html":
            data = html_bytes()
        elif r == "pe":
            data = pe_bytes()
        elif r == "jpeg":
            data = jpeg_bytes()
        elif r == "no-preamble-no-meta":
            data = dicom_bytes(info, preamble=False, meta=False)
            expected[info.sop_uid] = rel
        elif r == "dicm-at-0":
            data = dicom_bytes(info, preamble=False)
            expected[info.sop_uid] = rel
        elif r == "mismatch":
            data = dicom_bytes(replace_info(info, patient_id="OTHERID", study_date="19990101"))
            expected[info.sop_uid] = rel
        else:
            expected[info.sop_uid] = rel
        write_file(root, rel, data)
    expected.update(write_images(root, [unref]))
    write_file(root, "DICOMDIR", encode_dicomdir(roots))
    role["unref"] = unref
    return Built(root, imgs + [unref], expected), role


def test_referenced_file_defects_ls(medium_dir: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    built, role = _defect_files(medium_dir)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    rows = {r["sop_instance_uid"]: r for r in listed(d)}
    p = {(x["code"], x["path"]) for x in d["problems"]}
    f = {r: "/".join(i.fid) for r, i in role.items()}
    assert ("missing-file", f["missing"]) in p, d["problems"]
    assert rows[role["missing"].sop_uid]["path"] is None
    assert ("empty-file", f["empty"]) in p, d["problems"]
    assert ("unreferenced-file", f["unref"]) in p
    assert rows[role["unref"].sop_uid]["referenced"] is False
    for r in ("good", "good2", "no-preamble-no-meta", "dicm-at-0"):
        assert not [x for x in d["problems"] if x["path"] == f[r]], (r, d["problems"])
    assert {x["severity"] for x in d["problems"]
            if x["code"] in ("missing-file", "empty-file")} == {"error"}


def test_referenced_file_defects_check(medium_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    built, role = _defect_files(medium_dir)
    d = ls(capsys, medium_dir, tmp_path, cmd="check", rcs=(1,))
    assert_each_once(d, built)
    p = {(x["code"], x["path"]) for x in d["problems"]}
    f = {r: "/".join(i.fid) for r, i in role.items()}
    want = {("missing-file", f["missing"]), ("empty-file", f["empty"]),
            ("truncated-file", f["trunc-header"]), ("truncated-file", f["trunc-pixels"]),
            ("not-dicom", f["html"]), ("not-dicom", f["pe"]), ("not-dicom", f["jpeg"]),
            ("unreferenced-file", f["unref"]), ("record-file-mismatch", f["mismatch"])}
    assert want <= p, sorted(want - p)
    for r in ("good", "good2", "dicm-at-0"):
        assert not [x for x in d["problems"] if x["path"] == f[r]
                    and x["severity"] == "error"], (r, d["problems"])
    npm = [x for x in d["problems"] if x["path"] == f["no-preamble-no-meta"]]
    assert all(x["code"] not in ("not-dicom", "truncated-file", "empty-file") for x in npm), npm


def test_icons_good_and_malformed(medium_dir: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    imgs = small("icon")
    roots = records_for(imgs)
    find_rec(roots, f"IMAGE:{imgs[0].sop_uid}").elems.append((0x00880200, "SQ", [icon_item()]))
    find_rec(roots, f"IMAGE:{imgs[1].sop_uid}").elems.append(
        (0x00880200, "SQ", [icon_item(pixel_bytes=10)]))
    find_rec(roots, f"IMAGE:{imgs[2].sop_uid}").elems.append(
        (0x00880200, "SQ", [icon_item(rows=0, cols=65535, pixel_bytes=0)]))
    built = write_medium(medium_dir, imgs, roots=roots)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    rows = {r["sop_instance_uid"]: r for r in listed(d)}
    assert rows[imgs[0].sop_uid]["has_icon"] is True
    assert rows[imgs[3].sop_uid]["has_icon"] is False
    c = ls(capsys, medium_dir, tmp_path, cmd="check", rcs=(1,))
    bad = problems(c, "bad-icon")
    assert len(bad) >= 2, c["problems"]
    assert all(b["path"] in ("DICOMDIR", "/".join(imgs[1].fid), "/".join(imgs[2].fid))
               for b in bad), bad
    assert not [b for b in bad if "/".join(imgs[0].fid) == b["path"]]


# ------------------------------------------------------------------------ scanning


def test_viewer_disc_with_images_in_odd_folders(medium_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    imgs = corpus("odd", patients=2, series=2, images=2)
    odd = ["IMAGES/2024/x/1.dcm", "export/IMG0001", "A B/снимок.dcm", "d1/d2/d3/d4/d5/d6/d7/d8/X",
           "PATIENT/Study 1/Series 1/IM1.DCM", "DICOM/00000001", "raw.dcm", "IHE_PDI/X.DCM"]
    expected = {}
    for k, (info, rel) in enumerate(zip(imgs, odd, strict=True)):
        write_file(medium_dir, rel, dicom_bytes(info, preamble=k != 6, meta=k != 6))
        expected[info.sop_uid] = rel
    write_file(medium_dir, "AUTORUN.INF", b"[autorun]\r\nopen=viewer\\viewer.exe\r\n")
    write_file(medium_dir, "viewer/viewer.exe", pe_bytes())
    write_file(medium_dir, "viewer/lib.dll", pe_bytes())
    write_file(medium_dir, "INDEX.HTM", html_bytes())
    write_file(medium_dir, "IHE_PDI/INDEX.HTM", html_bytes())
    write_file(medium_dir, "IHE_PDI/IMG1.JPG", jpeg_bytes())
    write_file(medium_dir, "fake.dcm", html_bytes())
    write_file(medium_dir, "empty.dcm", b"")
    write_file(medium_dir, "DICOM/DICM", b"\0" * 128 + b"DICM")  # preamble and nothing else
    d = ls(capsys, medium_dir, tmp_path)
    assert d["source"] == "scan" and d["dicomdirs"] == []
    assert_each_once(d, Built(medium_dir, imgs, expected))
    assert_tree(d, Built(medium_dir, imgs, expected))
    assert all(r["referenced"] is False or r["referenced"] is True for r in listed(d))


def test_unusable_dicomdir_falls_back_to_scan(medium_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A DICOMDIR whose every reference dangles is not used: the files are scanned."""
    imgs = small("dangle")
    expected = write_images(medium_dir, imgs, disk=lambda f: "X/" + "_".join(f))
    write_file(medium_dir, "DICOMDIR", encode_dicomdir(records_for(imgs)))
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, Built(medium_dir, imgs, expected), exact_paths=True)


def _clone(template: bytes, old: str, new: str) -> bytes:
    assert len(old) == len(new)
    out = template.replace(old.encode(), new.encode())
    assert out.count(new.encode()) == template.count(old.encode()) >= 2
    return out


def test_two_thousand_files_in_one_folder(medium_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    base = "1.2.826.0.1.3680043.8.498.4242."
    info = ImageInfo(sop_uid=base + "100000", patient_id="BIG1", patient_name="BIG^FOLDER",
                     study_uid=base + "9", series_uid=base + "8", fid=("X",))
    template = dicom_bytes(info)
    medium_dir.mkdir()
    expected = {}
    for k in range(2000):
        u = f"{base}{100000 + k}"
        (medium_dir / f"IMG{k:05d}").write_bytes(_clone(template, info.sop_uid, u))
        expected[u] = f"IMG{k:05d}"
    t0 = time.monotonic()
    d = ls(capsys, medium_dir, tmp_path)
    secs = time.monotonic() - t0
    assert_each_once(d, Built(medium_dir, [], expected))
    assert secs < 10, secs
    # and the same folder behind a DICOMDIR that lists only the first 100
    firsts = [replace_info(info, sop_uid=f"{base}{100000 + k}", fid=(f"IMG{k:05d}",))
              for k in range(100)]
    write_file(medium_dir, "DICOMDIR", encode_dicomdir(records_for(firsts)))
    d = ls(capsys, medium_dir, tmp_path, text=False)
    assert_each_once(d, Built(medium_dir, [], expected))
    assert len(problems(d, "unreferenced-file")) == 1900
    d = ls(capsys, medium_dir, tmp_path, cmd="check", rcs=(1,), text=False)
    assert_each_once(d, Built(medium_dir, [], expected))


# ------------------------------------------------------------------------ ISO images


def _stage(medium: Path) -> dict[str, bytes]:
    return {p.relative_to(medium).as_posix(): p.read_bytes()
            for p in sorted(medium.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("joliet", [False, True], ids=["iso9660", "joliet"])
@pytest.mark.parametrize("with_dicomdir", [True, False], ids=["dicomdir", "scan"])
def test_iso_image_read_directly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 joliet: bool, with_dicomdir: bool) -> None:
    make_outside(tmp_path)
    stage = tmp_path / "stage"
    imgs = small("iso")
    built = write_medium(stage, imgs)
    if not with_dicomdir:
        (stage / "DICOMDIR").unlink()
    write_file(stage, "README.TXT", b"readme")
    iso = tmp_path / "disc.iso"
    write_iso(iso, _stage(stage), joliet=joliet)
    d = ls(capsys, iso, tmp_path, root=iso)
    assert d["root"] == str(iso)
    assert d["source"] == ("dicomdir" if with_dicomdir else "scan")
    rows = listed(d)
    assert sorted(r["sop_instance_uid"] for r in rows) == sorted(built.expected)
    assert all(r["path"] for r in rows)
    assert len({r["path"] for r in rows}) == len(rows)
    if with_dicomdir:
        assert_all_referenced(d)
    from app.core.medium.reader import open_medium

    with deadline():
        m = open_medium(iso)
    assert m.fs is not None
    for inst in m.instances():
        assert inst.path is not None
        with m.fs.open(inst.path) as fp:
            data = fp.read()
        assert data == (stage / built.expected[inst.sop_instance_uid or ""]).read_bytes()


@pytest.mark.parametrize("case", ["truncated", "garbage", "empty"])
def test_broken_iso_images(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    stage = tmp_path / "stage"
    write_medium(stage, small("isobad"))
    iso = tmp_path / "disc.iso"
    write_iso(iso, _stage(stage), joliet=True)
    data = iso.read_bytes()
    if case == "truncated":
        iso.write_bytes(data[: len(data) // 2])
    elif case == "garbage":
        rnd = random.Random(5)
        iso.write_bytes(bytes(rnd.randrange(256) for _ in range(64 * 2048)))
    else:
        iso.write_bytes(b"")
    for cmd in ("ls", "check"):
        r = run_cli(cmd, iso, "--json", timeout=DEADLINE)
        assert_sane(r, (0, 1))
        if r.rc == 1 and not r.out.strip():
            assert str(iso) in r.err or "disc.iso" in r.err, r.err


# ------------------------------------------------------------------------ fuzz


def test_mutated_dicomdirs_fuzz(medium_dir: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """Seeded byte mutations: bounded, no crash, no file lost, nothing outside read."""
    imgs = small("fuzz")
    roots = records_for(imgs)
    find_rec(roots, f"IMAGE:{imgs[0].sop_uid}").elems.append((0x00880200, "SQ", [icon_item()]))
    built = write_medium(medium_dir, imgs, roots=roots)
    os.symlink(tmp_path / "outside" / "SENTINEL", medium_dir / "EVIL")
    full = (medium_dir / "DICOMDIR").read_bytes()
    rnd = random.Random(20261126)
    t0 = time.monotonic()
    for k in range(60):
        b = bytearray(full)
        for _ in range(rnd.choice([1, 2, 4, 16, 64])):
            pos = rnd.randrange(132, len(b))
            kind = rnd.random()
            if kind < 0.5:
                b[pos] = rnd.randrange(256)
            elif kind < 0.7:
                b[pos:pos + 4] = struct.pack("<I", rnd.choice([0, 1, 0xFFFFFFFF, 0xFFFFFFF0,
                                                               0x7FFFFFFF, len(b), pos]))
            elif kind < 0.85:
                del b[pos:pos + rnd.randrange(1, 50)]
            else:
                b[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 30)))
        (medium_dir / "DICOMDIR").write_bytes(bytes(b))
        with audit() as seen, deadline():
            r = run_inproc(capsys, "ls", medium_dir, "--json")
        assert_sane(r, (0,), DEADLINE)
        assert_confined(seen, medium_dir, tmp_path)
        d = json.loads(r.out)
        paths = {x["path"] for x in listed(d)}
        lost = set(built.expected.values()) - paths
        assert not lost, f"mutant {k}: lost {lost}"
        assert SENTINEL_UID not in r.out
    assert time.monotonic() - t0 < 30


# ------------------------------------------------------------------------ special files and names


def test_fifo_and_device_nodes_never_block(medium_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A named pipe or a character device (endless zeros) where a file should be."""
    imgs = corpus("fifo", patients=1, series=1, images=4)
    built = write_medium(medium_dir, imgs)
    for info, kind in ((imgs[0], "fifo"), (imgs[1], "dev")):
        p = medium_dir / built.expected.pop(info.sop_uid)
        p.unlink()
        if kind == "fifo":
            os.mkfifo(p)
        else:
            try:
                os.mknod(p, 0o600 | 0o020000, os.makedev(1, 5))  # /dev/zero
            except PermissionError:
                os.mkfifo(p)
    os.mkfifo(medium_dir / "EXTRA_FIFO")
    for cmd, rcs in (("ls", (0,)), ("check", (1,))):
        d = ls(capsys, medium_dir, tmp_path, cmd=cmd, rcs=rcs)
        assert_each_once(d, built)
        for info in imgs[:2]:
            assert any(p["path"] == "/".join(info.fid) and p["severity"] == "error"
                       for p in d["problems"]), (info.fid, d["problems"])


def test_undecodable_file_names(medium_dir: Path, tmp_path: Path) -> None:
    """Linux allows any bytes in a name: the listing stays valid UTF-8 JSON and loses nothing."""
    imgs = corpus("badname", patients=1, series=1, images=3)
    medium_dir.mkdir()
    os.makedirs(os.fsencode(medium_dir) + b"/DIR\xe9")
    for info, name in zip(imgs, [b"IM\xff\xfe", b"DIR\xe9/IMG\x80", b"ok"], strict=True):
        with open(os.fsencode(medium_dir) + b"/" + name, "wb") as fp:
            fp.write(dicom_bytes(info))
    r = run_cli("ls", medium_dir, "--json", env={"PYTHONIOENCODING": "utf-8"})
    assert_sane(r, (0,))
    d = r.json()  # strict UTF-8
    assert sorted(x["sop_instance_uid"] for x in listed(d)) == sorted(i.sop_uid for i in imgs)
    # the listed paths open the right files through the medium's own file system
    from app.core.medium.reader import open_medium

    m = open_medium(medium_dir)
    assert m.fs is not None
    by_path = {x["path"]: x["sop_instance_uid"] for x in listed(d)}
    for path, u in by_path.items():
        with m.fs.open(path) as fp:
            assert pydicom.dcmread(fp, stop_before_pixels=True).SOPInstanceUID == u
    r = run_cli("ls", medium_dir, env={"PYTHONIOENCODING": "utf-8"})
    assert_sane(r, (0,))


def test_dicomdir_symlink_to_outside_not_followed(medium_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    imgs = small("ddlinkout")
    expected = write_images(medium_dir, imgs)
    os.symlink(tmp_path / "outside" / "DICOMDIR", medium_dir / "DICOMDIR")
    (medium_dir / "DICOM").mkdir()
    os.symlink(tmp_path / "outside" / "DICOMDIR", medium_dir / "DICOM" / "DIRFILE")
    d = ls(capsys, medium_dir, tmp_path)
    assert d["dicomdirs"] == []
    assert_each_once(d, Built(medium_dir, imgs, expected))
    assert any(p["code"] == "outside-root" and p["path"] == "DICOMDIR" for p in d["problems"]), \
        d["problems"]


def test_dicomdir_is_a_folder(medium_dir: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    imgs = small("ddfolder")
    expected = write_images(medium_dir, imgs, base="DICOMDIR")
    d = ls(capsys, medium_dir, tmp_path)
    assert d["source"] == "scan"
    assert_each_once(d, Built(medium_dir, imgs, expected))


def test_exact_case_wins_over_case_insensitive_match(medium_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Both PA001/.../IM00001 and pa001/.../im00001 exist (a case-sensitive file system)."""
    imgs = small("case")
    built = write_medium(medium_dir, imgs)
    twins = [replace_info(i, sop_uid=uid("case-twin", i.sop_uid), patient_id="TWIN",
                          patient_name="TWIN^LOWER") for i in imgs[:2]]
    built.expected.update(write_images(medium_dir, twins, disk=disk_lower))
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    rows = {r["sop_instance_uid"]: r for r in listed(d)}
    assert all(rows[i.sop_uid]["referenced"] for i in imgs)
    assert not any(rows[t.sop_uid]["referenced"] for t in twins)


# ------------------------------------------------------------------------ zero-filled data


def _sparse(path: Path, head: bytes, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fp:
        fp.write(head)
        fp.truncate(size)


def test_zero_filled_dicom_files_are_cheap(medium_dir: Path, tmp_path: Path) -> None:
    """Unreadable sectors often come back as zeros: 'DICM' then 32 MB of zeros, three times."""
    imgs = small("zeros")
    expected = write_images(medium_dir, imgs)
    for k in range(3):
        _sparse(medium_dir / f"ZERO{k}", b"\0" * 128 + b"DICM", 32 << 20)
    _sparse(medium_dir / "ZERONOHD", b"", 512 << 20)
    try:
        r = run_cli("ls", medium_dir, "--json", timeout=CHEAP)
    except subprocess_timeout() as exc:
        raise AssertionError(f"ls took more than {CHEAP} s on zero-filled files") from exc
    assert_sane(r, (0,), CHEAP)
    assert_each_once(r.json(), Built(medium_dir, imgs, expected))


def test_zero_padded_dicomdir_is_cheap(medium_dir: Path, tmp_path: Path) -> None:
    """A valid DICOMDIR followed by 256 MB of zeros (a padded or badly copied file)."""
    imgs = small("zpad")
    built = write_medium(medium_dir, imgs)
    dd = medium_dir / "DICOMDIR"
    _sparse(dd, dd.read_bytes(), 256 << 20)
    try:
        r = run_cli("ls", medium_dir, "--json", timeout=CHEAP)
    except subprocess_timeout() as exc:
        raise AssertionError(f"ls took more than {CHEAP} s on a zero-padded DICOMDIR") \
            from exc
    assert_sane(r, (0,), CHEAP)
    d = r.json()
    assert_each_once(d, built)
    assert_all_referenced(d)


def subprocess_timeout() -> type[BaseException]:
    import subprocess

    return subprocess.TimeoutExpired


# ------------------------------------------------------------------------ record types, duplicates


LEAF_TYPES = {"SR DOCUMENT": "1.2.840.10008.5.1.4.1.1.88.11",
              "ENCAP DOC": "1.2.840.10008.5.1.4.1.1.104.1",
              "PRESENTATION": "1.2.840.10008.5.1.4.1.1.11.1",
              "KEY OBJECT DOC": "1.2.840.10008.5.1.4.1.1.88.59",
              "RT DOSE": "1.2.840.10008.5.1.4.1.1.481.2",
              "WAVEFORM": "1.2.840.10008.5.1.4.1.1.9.1.1",
              "RAW DATA": "1.2.840.10008.5.1.4.1.1.66",
              "PRIVATE": "1.2.826.0.1.3680043.8.498.999.1"}


def test_non_image_leaves_and_odd_root_records(medium_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    base = corpus("leaf", patients=1, series=1, images=len(LEAF_TYPES) + 1)
    imgs = [base[0]] + [replace_info(i, sop_class=cls)
                        for i, cls in zip(base[1:], LEAF_TYPES.values(), strict=True)]
    roots = records_for(imgs)
    for i, rtype in zip(imgs[1:], LEAF_TYPES, strict=True):
        rec = find_rec(roots, f"IMAGE:{i.sop_uid}")
        rec.rtype = rtype
        if rtype == "PRIVATE":
            rec.elems.append((0x00041432, "UI", "1.2.826.0.1.3680043.8.498.999"))
    roots.append(Rec("HANGING PROTOCOL", [(0x00041500, "CS", "HP\\HP000001"),
                                          (0x00041511, "UI", uid("leaf", "hp"))]))
    roots.append(Rec("PRIVATE", [(0x00041432, "UI", "1.2.826.0.1.3680043.8.498.998")]))
    roots.append(Rec("FROBNICATE", [(0x00100020, "LO", "NOTAPATIENT")]))
    roots.append(Rec("", []))
    built = write_medium(medium_dir, imgs, roots=roots)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    rows = {r["sop_instance_uid"]: r for r in listed(d)}
    assert rows[imgs[0].sop_uid]["record_type"] == "IMAGE"
    for i, rtype in zip(imgs[1:], LEAF_TYPES, strict=True):
        assert rows[i.sop_uid]["record_type"] == rtype
        assert rows[i.sop_uid]["sop_class_uid"] == i.sop_class
        assert rows[i.sop_uid]["referenced"] is True
    assert "NOTAPATIENT" not in {p["patient_id"] for p in d["patients"]}


def test_same_instance_in_two_files_listed_once(medium_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    imgs = small("dup")
    roots = records_for(imgs)
    # a second IMAGE record for the same instance, in another series record
    find_rec(roots, f"SERIES:{imgs[-1].series_uid}").children.append(
        Rec("IMAGE", [(0x00041500, "CS", "\\".join(imgs[0].fid)),
                      (0x00041510, "UI", imgs[0].sop_class),
                      (0x00041511, "UI", imgs[0].sop_uid),
                      (0x00041512, "UI", imgs[0].transfer_syntax),
                      (0x00200013, "IS", "1")]))
    built = write_medium(medium_dir, imgs, roots=roots)
    copy = medium_dir / "BACKUP" / "COPY1"
    copy.parent.mkdir()
    copy.write_bytes((medium_dir / built.expected[imgs[1].sop_uid]).read_bytes())
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)  # the referenced path wins; the copy is not a second image
    dup = problems(d, "duplicate-instance")
    assert any(p["path"] == "BACKUP/COPY1" for p in dup), d["problems"]


def test_file_id_rule_violations_reported(medium_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Resolved, listed, and reported by check as bad-file-id (PS3.10 §8.2 / §8.5)."""
    imgs = corpus("fidrule", patients=1, series=1, images=5)
    bad = {imgs[0].sop_uid: ("pa001", "st001", "se001", "im00001"),
           imgs[1].sop_uid: ("PA001", "ST001", "SE001", "IMAGE00002"),
           imgs[2].sop_uid: ("PA001", "ST001", "SE001", "IM3.DCM"),
           imgs[3].sop_uid: ("A", "B", "C", "D", "E", "F", "G", "H", "IM4")}
    disk = {imgs[0].sop_uid: "pa001/st001/se001/im00001",
            imgs[1].sop_uid: "PA001/ST001/SE001/IMAGE00002",
            imgs[2].sop_uid: "PA001/ST001/SE001/IM3.DCM",
            imgs[3].sop_uid: "A/B/C/D/E/F/G/H/IM4",
            imgs[4].sop_uid: "PA001/ST001/SE001/IM00005"}
    for i in imgs:
        write_file(medium_dir, disk[i.sop_uid], dicom_bytes(i))
    roots = records_for(imgs, lambda i: bad.get(i.sop_uid, i.fid))
    write_file(medium_dir, "DICOMDIR", encode_dicomdir(roots))
    built = Built(medium_dir, imgs, disk)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    assert_all_referenced(d)
    c = ls(capsys, medium_dir, tmp_path, cmd="check", rcs=(1,))
    flagged = {p["path"] for p in problems(c, "bad-file-id")}
    for u in bad:
        assert disk[u] in flagged or "/".join(bad[u]) in flagged, (disk[u], flagged)
    assert disk[imgs[4].sop_uid] not in flagged


def test_progress_and_cancel_through_open_medium(medium_dir: Path) -> None:
    from app.core.jobs import Cancelled, CancelToken

    imgs = corpus("prog", patients=1, series=1, images=200)
    write_images(medium_dir, imgs, disk=lambda f: "X/" + f[-1])
    seen: list[Any] = []
    from app.core.medium.reader import open_medium

    with deadline():
        m = open_medium(medium_dir, progress=seen.append)
    assert sum(1 for _ in m.instances()) == 200
    assert seen and all(isinstance(p.phase, str) for p in seen)
    token = CancelToken()

    def cancel_at_once(p: Any) -> None:
        token.cancel()

    with deadline(), pytest.raises(Cancelled):
        open_medium(medium_dir, progress=cancel_at_once, cancel=token)


def test_tens_of_thousands_of_empty_records(medium_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    imgs = small("many")
    roots = records_for(imgs)
    roots += [Rec("PATIENT", [(0x00100020, "LO", f"EMPTY{k}")]) for k in range(20_000)]
    built = write_medium(medium_dir, imgs, roots=roots)
    d = ls(capsys, medium_dir, tmp_path, text=False)
    assert_each_once(d, built)
    assert_all_referenced(d)


def test_iso_with_rock_ridge_symlinks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pycdlib

    make_outside(tmp_path)
    imgs = corpus("rrlink", patients=1, series=1, images=2)
    ev = replace_info(imgs[0], sop_uid=uid("rrlink", "evil"), fid=("LINK",), instance_number="9")
    files = {"/".join(i.fid): dicom_bytes(i) for i in imgs}
    files["DICOMDIR"] = encode_dicomdir(records_for(imgs + [ev]))
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, rock_ridge="1.09", joliet=3)
    made: set[str] = set()
    for rel in sorted(files):
        parts = rel.split("/")
        for k in range(1, len(parts)):
            dpath = "/" + "/".join(parts[:k])
            if dpath not in made:
                made.add(dpath)
                iso.add_directory(dpath, rr_name=parts[k - 1], joliet_path=dpath)
        data = files[rel]
        iso.add_fp(io.BytesIO(data), len(data), "/" + rel + ".;1", rr_name=parts[-1],
                   joliet_path="/" + rel)
    iso.add_symlink("/LINK.;1", "LINK", str(tmp_path / "outside" / "SENTINEL"),
                    joliet_path="/LINK")
    iso.add_symlink("/PA001/UP.;1", "UP", "../..", joliet_path="/PA001/UP")
    path = tmp_path / "rr.iso"
    iso.write(str(path))
    iso.close()
    for cmd, rcs in (("ls", (0,)), ("check", (1,))):
        d = ls(capsys, path, tmp_path, cmd=cmd, rcs=rcs, root=path)
        rows = listed(d)
        assert sorted(r["sop_instance_uid"] for r in rows if r["path"] and r["path"] != "LINK") \
            == sorted(i.sop_uid for i in imgs)
        assert SENTINEL_UID not in json.dumps(d)


# ------------------------------------------------------------------------ hostile image headers


def _explicit(tag: int, vr: str, length: int) -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in ("OB", "OW", "SQ", "UN", "UT"):
        return head + b"\0\0" + struct.pack("<I", length)
    return head + struct.pack("<H", length)


ITEM = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
ITEM_END = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
SEQ_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _deep_sq(depth: int) -> bytes:
    open_ = _explicit(0x00080006, "SQ", 0xFFFFFFFF) + ITEM
    return open_ * depth + (ITEM_END + SEQ_END) * depth


def _hostile_header(kind: str, data: bytes) -> tuple[bytes, bool]:
    """(file bytes, whether the image is still readable and must be listed)."""
    from tests.integration.hostile_media import meta_end, set_meta_ts

    m = meta_end(data)
    body = data[m:]
    if kind == "sq-huge-length":
        return data[:m] + _explicit(0x00080006, "SQ", 0xFFFFFFF0) + body, False
    if kind == "ob-huge-length":
        return data[:m] + _explicit(0x00080006, "OB", 0x7FFFFFFF) + body, False
    if kind == "sq-10000-deep":
        return data[:m] + _deep_sq(10_000) + body, True
    if kind == "sq-never-closed":
        return data[:m] + _explicit(0x00080006, "SQ", 0xFFFFFFFF) + ITEM + body, False
    if kind == "un-undefined-length":
        inner = b"\x08\x00\x00\x01\x04\x00\x00\x00ABCD"  # implicit (0008,0100) "ABCD"
        un = _explicit(0x00080006, "UN", 0xFFFFFFFF) + ITEM + inner + ITEM_END + SEQ_END
        return data[:m] + un + body, True
    if kind == "meta-length-huge":
        return data[:140] + struct.pack("<I", 0xFFFFFFF0) + data[144:], False
    if kind == "meta-length-small":
        return data[:140] + struct.pack("<I", 4) + data[144:], True
    if kind == "meta-says-big-endian":
        return set_meta_ts(data, "1.2.840.10008.1.2.2"), True
    if kind == "meta-says-implicit":
        return set_meta_ts(data, "1.2.840.10008.1.2"), True
    if kind == "meta-ts-empty":
        return set_meta_ts(data, ""), True
    if kind == "no-meta-after-dicm":
        return data[:132] + body, True
    if kind == "stray-delimiters":
        return data[:m] + SEQ_END + ITEM_END + body, True
    if kind == "invalid-vr":
        return data[:m] + b"\x08\x00\x06\x00\x00\x00\x04\x00ABCD" + body, False
    if kind == "tags-descending":
        return data[:m] + body + _explicit(0x00080005, "CS", 10) + b"ISO_IR 100", True
    raise KeyError(kind)


HOSTILE_HEADERS = ["sq-huge-length", "ob-huge-length", "sq-10000-deep", "sq-never-closed",
                   "un-undefined-length", "meta-length-huge", "meta-length-small",
                   "meta-says-big-endian", "meta-says-implicit", "meta-ts-empty",
                   "no-meta-after-dicm", "stray-delimiters", "invalid-vr", "tags-descending"]


@pytest.mark.parametrize("with_dicomdir", [False, True], ids=["scan", "dicomdir"])
def test_hostile_image_headers(medium_dir: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str], with_dicomdir: bool) -> None:
    """One medium, one hostile file per kind next to good ones: nothing crashes or hangs; every
    readable file is listed once; an unreadable one is named in a problem, never dropped silently."""
    imgs = corpus("hdr", patients=1, series=2, images=len(HOSTILE_HEADERS))
    good, victims = imgs[: len(imgs) - len(HOSTILE_HEADERS)], imgs[len(imgs) - len(HOSTILE_HEADERS):]
    expected = write_images(medium_dir, good)
    must_list: dict[str, str] = {}
    may_fail: dict[str, str] = {}
    for info, kind in zip(victims, HOSTILE_HEADERS, strict=True):
        data, readable = _hostile_header(kind, dicom_bytes(info))
        rel = f"HOSTILE/{kind.upper().replace('-', '_')[:8]}{len(must_list) + len(may_fail)}"
        write_file(medium_dir, rel, data)
        (must_list if readable else may_fail)[info.sop_uid] = rel
    if with_dicomdir:  # the DICOMDIR references the good ones only
        write_file(medium_dir, "DICOMDIR", encode_dicomdir(records_for(good)))
    for cmd, rcs in (("ls", (0,)), ("check", (1,))):
        d = ls(capsys, medium_dir, tmp_path, cmd=cmd, rcs=rcs)
        assert_each_once(d, Built(medium_dir, good, {**expected, **must_list}))
        rows = {r["sop_instance_uid"]: r for r in listed(d)}
        named = {p["path"] for p in d["problems"]}
        for u, rel in may_fail.items():
            assert u in rows or rel in named, f"{cmd}: {rel} neither listed nor reported"


def test_image_header_fuzz(medium_dir: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """Seeded mutations of whole image files (scan mode): bounded, no crash, good files kept."""
    imgs = corpus("hfuzz", patients=1, series=1, images=40)
    good = imgs[:4]
    expected = write_images(medium_dir, good)
    rnd = random.Random(4242)
    for k, info in enumerate(imgs[4:]):
        b = bytearray(dicom_bytes(info))
        for _ in range(rnd.choice([1, 3, 8, 30])):
            pos = rnd.randrange(128, len(b))
            r = rnd.random()
            if r < 0.5:
                b[pos] = rnd.randrange(256)
            elif r < 0.75:
                b[pos:pos + 4] = struct.pack("<I", rnd.choice([0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF,
                                                               0, 1, len(b)]))
            else:
                del b[pos:pos + rnd.randrange(1, 40)]
        write_file(medium_dir, f"FUZZ/F{k:03d}", bytes(b))
    for cmd, rcs in (("ls", (0,)), ("check", (0, 1))):
        d = ls(capsys, medium_dir, tmp_path, cmd=cmd, rcs=rcs)
        rows = listed(d)
        for u, rel in expected.items():
            assert [r["path"] for r in rows if r["sop_instance_uid"] == u] == [rel]
        paths = [r["path"] for r in rows if r["path"]]
        assert len(paths) == len(set(paths))


def test_scan_decodes_each_files_charset(medium_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    imgs: list[ImageInfo] = []
    for k, (cs, name) in enumerate(CHARSETS):
        imgs += [replace_info(i, charset=cs, patient_name=name, fid=(f"P{k}",) + i.fid[1:])
                 for i in corpus(f"scs{k}", patients=1, series=1, images=1)]
    expected = write_images(medium_dir, imgs)
    d = ls(capsys, medium_dir, tmp_path)
    assert d["source"] == "scan"
    assert_each_once(d, Built(medium_dir, imgs, expected))
    assert {p["patient_id"]: p["patient_name"] for p in d["patients"]} == \
        {i.patient_id: i.patient_name for i in imgs}
    assert "bad-charset" not in codes(d)


def test_check_record_file_disagreements(medium_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Never trust the DICOMDIR over the file: each disagreement is reported, naming the file."""
    imgs = corpus("disagree", patients=1, series=1, images=5)
    recorded = [replace_info(imgs[0], sop_uid=uid("disagree", "other")),
                replace_info(imgs[1], transfer_syntax=IMPLICIT_LE),
                replace_info(imgs[2], sop_class="1.2.840.10008.5.1.4.1.1.7"),
                replace_info(imgs[3], series_uid=uid("disagree", "other-series")),
                imgs[4]]
    expected = write_images(medium_dir, imgs)
    write_file(medium_dir, "DICOMDIR", encode_dicomdir(records_for(recorded)))
    d = ls(capsys, medium_dir, tmp_path, cmd="check", rcs=(1,))
    mism = {p["path"] for p in problems(d, "record-file-mismatch")}
    for i in imgs[:4]:
        assert expected[i.sop_uid] in mism, (i.fid, d["problems"])
    assert expected[imgs[4].sop_uid] not in mism
    paths = [r["path"] for r in listed(d) if r["path"]]
    assert sorted(paths) == sorted(expected.values())


# ------------------------------------------------------------------------ pydicom's real variants


PYDICOM_VARIANTS = ["DICOMDIR", "DICOMDIR-bigEnd", "DICOMDIR-implicit", "DICOMDIR-nooffset",
                    "DICOMDIR-reordered", "DICOMDIR-nopatient", "DICOMDIR-empty.dcm"]


@pytest.fixture(scope="module")
def pydicom_truth() -> tuple[Path, dict[str, str]]:
    """pydicom's dicomdirtests (read-only) and, read independently, SOP UID → relative path."""
    from pydicom.data import get_testdata_file

    src = Path(str(get_testdata_file("DICOMDIR", read=False))).parent
    truth: dict[str, str] = {}
    for p in sorted(src.rglob("*")):
        if p.is_file() and "DICOMDIR" not in p.name and p.suffix.lower() != ".txt":
            ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
            if "SOPInstanceUID" in ds:  # TINY_ALPHA/README is a text file
                truth[str(ds.SOPInstanceUID)] = p.relative_to(src).as_posix()
    assert len(truth) == 81
    return src, truth


@pytest.mark.parametrize("variant", PYDICOM_VARIANTS)
def test_pydicom_dicomdir_variants(medium_dir: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str], variant: str,
                                   pydicom_truth: tuple[Path, dict[str, str]]) -> None:
    import shutil

    src, truth = pydicom_truth
    shutil.copytree(src, medium_dir, ignore=lambda d, names: [
        n for n in names if n.startswith("DICOMDIR") and Path(d) == src])
    shutil.copyfile(src / variant, medium_dir / "DICOMDIR")
    for cmd, rcs in (("ls", (0,)), ("check", (0, 1))):
        d = ls(capsys, medium_dir, tmp_path, cmd=cmd, rcs=rcs)
        assert_each_once(d, Built(medium_dir, [], truth))
    assert "DICOMDIR" in d["dicomdirs"] or variant == "DICOMDIR-empty.dcm"


# ------------------------------------------------------------------------ odd hierarchies


def _leaf(i: ImageInfo, fid: tuple[str, ...] | None = None) -> Rec:
    return Rec("IMAGE", [(0x00041500, "CS", "\\".join(fid or i.fid)),
                         (0x00041510, "UI", i.sop_class), (0x00041511, "UI", i.sop_uid),
                         (0x00041512, "UI", i.transfer_syntax),
                         (0x00200013, "IS", i.instance_number or "1")])


def _odd_roots(kind: str, imgs: list[ImageInfo]) -> list[Rec]:
    if kind == "images-under-patient":
        return [Rec("PATIENT", [(0x00100020, "LO", "ODD1"), (0x00100010, "PN", "ODD^ONE")],
                    [_leaf(i) for i in imgs])]
    if kind == "study-at-root":
        return [Rec("STUDY", [(0x0020000D, "UI", imgs[0].study_uid)],
                    [Rec("SERIES", [(0x0020000E, "UI", imgs[0].series_uid),
                                    (0x00080060, "CS", "CT")], [_leaf(i) for i in imgs])])]
    if kind == "series-at-root":
        return [Rec("SERIES", [(0x0020000E, "UI", imgs[0].series_uid)],
                    [_leaf(i) for i in imgs])]
    if kind == "images-at-root":
        return [_leaf(i) for i in imgs]
    if kind == "no-records":
        return []
    if kind == "leaf-points-at-dicomdir":
        roots = records_for(imgs)
        find_rec(roots, f"SERIES:{imgs[0].series_uid}").children.append(
            _leaf(replace_info(imgs[0], sop_uid=uid("odd", "dd")), ("DICOMDIR",)))
        return roots
    if kind == "children-under-image":
        roots = records_for(imgs[:1])
        find_rec(roots, f"IMAGE:{imgs[0].sop_uid}").children.extend(_leaf(i) for i in imgs[1:])
        return roots
    raise KeyError(kind)


@pytest.mark.parametrize("kind", ["images-under-patient", "study-at-root", "series-at-root",
                                  "images-at-root", "no-records", "leaf-points-at-dicomdir",
                                  "children-under-image"])
def test_odd_hierarchies_lose_nothing(medium_dir: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str], kind: str) -> None:
    imgs = corpus("odd", patients=1, series=1, images=3)
    built = write_medium(medium_dir, imgs, roots=_odd_roots(kind, imgs))
    for cmd, rcs in (("ls", (0,)), ("check", (0, 1))):
        d = ls(capsys, medium_dir, tmp_path, cmd=cmd, rcs=rcs)
        assert_each_once(d, built)


@pytest.mark.parametrize("prefix", [("..",), ("", "media", "cdrom"), ("C:",), ("", "", "srv", "x")],
                         ids=["dotdot", "absolute", "drive", "unc"])
def test_subfolder_dicomdir_with_dotdot_ids(medium_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            prefix: tuple[str, ...]) -> None:
    """DICOM/DICOMDIR whose every File ID is refused (.., absolute, drive, UNC): the
    files are still listed (unreferenced) and each refusal is reported by File ID."""
    imgs = small("updot")
    expected = write_images(medium_dir, imgs)
    write_file(medium_dir, "DICOM/DICOMDIR",
               encode_dicomdir(records_for(imgs, lambda i: prefix + i.fid)))
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, Built(medium_dir, imgs, expected))
    refused = [p for p in d["problems"] if p["code"] in ("outside-root", "bad-file-id")]
    assert len(refused) >= len(imgs), d["problems"]
    assert not [p for p in d["problems"] if "exist" in p["message"] and p["path"] and
                p["path"].endswith("DICOMDIR")], d["problems"]

def test_iso_joliet_long_names_referenced_by_dicomdir(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A non-conformant mastering: 8.3 primary names, long Joliet names, and File IDs that use
    the long (Windows-visible) names. Whatever view is used, no image may be lost."""
    import pycdlib

    imgs = corpus("jlong", patients=1, series=2, images=2)
    long_ids = {i.sop_uid: (f"Patient {i.patient_id}", f"Series {i.series_number}",
                            f"Image {i.instance_number}.dcm") for i in imgs}
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, joliet=3)
    made: set[str] = set()
    for k, i in enumerate(imgs):
        p, s, f = long_ids[i.sop_uid]
        for short, long_ in ((f"/D{k // 4}", f"/{p}"),
                             (f"/D{k // 4}/S{i.series_number}", f"/{p}/{s}")):
            if short not in made:
                made.add(short)
                iso.add_directory(short, joliet_path=long_)
        data = dicom_bytes(i)
        iso.add_fp(io.BytesIO(data), len(data), f"/D{k // 4}/S{i.series_number}/F{k}.DCM;1",
                   joliet_path=f"/{p}/{s}/{f}")
    dd = encode_dicomdir(records_for(imgs, lambda i: long_ids[i.sop_uid]))
    iso.add_fp(io.BytesIO(dd), len(dd), "/DICOMDIR.;1", joliet_path="/DICOMDIR")
    path = tmp_path / "joliet.iso"
    iso.write(str(path))
    iso.close()
    d = ls(capsys, path, tmp_path, root=path)
    rows = [r for r in listed(d) if r["path"]]
    assert sorted(r["sop_instance_uid"] for r in rows) == sorted(i.sop_uid for i in imgs)
    assert len({r["path"] for r in rows}) == len(rows)


def test_paths_longer_than_path_max(medium_dir: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """25 folders of 200-character names (a USB stick can hold that; > PATH_MAX = 4096): the
    image at the bottom is listed, or its folder is reported; it is never dropped silently."""
    imgs = small("longpath")
    expected = write_images(medium_dir, imgs[:-1])
    fd = os.open(medium_dir, os.O_RDONLY)
    try:
        for _ in range(25):
            os.mkdir("D" * 200, dir_fd=fd)
            nfd = os.open("D" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        wfd = os.open("IMG", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(wfd, dicom_bytes(imgs[-1]))
        os.close(wfd)
    finally:
        os.close(fd)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, Built(medium_dir, imgs[:-1], expected))
    deep_listed = imgs[-1].sop_uid in {r["sop_instance_uid"] for r in listed(d)}
    reported = [p for p in d["problems"] if (p["path"] or "").startswith("DDDD")
                and p["severity"] in ("error", "warning")]
    assert deep_listed or reported, d["problems"]


# ------------------------------------------------------------------------ scratched disc (EIO)


@pytest.fixture
def fuse(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Mount a read-only FUSE tree that fails chosen reads with EIO (needs Linux, root, /dev/fuse)."""
    from tests.integration.hostile_media import mount_fuse

    if sys.platform != "linux" or os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("EIO media need Linux, root and /dev/fuse")
    mounts: list[Any] = []

    def make(files: dict[str, bytes], **kw: Any) -> Any:
        try:
            m = mount_fuse(tmp_path, files, **kw)
        except OSError as exc:
            pytest.skip(f"cannot mount FUSE here: {exc}")
        mounts.append(m)
        return m

    yield make
    for m in mounts:
        m.close()


def test_scratched_disc_referenced_files(fuse: Callable[..., Any], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    imgs = small("eio")
    files = {"/".join(i.fid): dicom_bytes(i) for i in imgs}
    files["DICOMDIR"] = encode_dicomdir(records_for(imgs))
    extra = replace_info(imgs[0], sop_uid=uid("eio", "unref"), fid=("EXTRA", "X1"))
    files["EXTRA/X1"] = dicom_bytes(extra)
    files["EXTRA/X2"] = dicom_bytes(replace_info(imgs[0], sop_uid=uid("eio", "unref2"),
                                                 fid=("EXTRA", "X2")))
    bad = ["/".join(imgs[1].fid), "/".join(imgs[5].fid), "EXTRA/X2"]
    m = fuse(files, eio=bad)
    for cmd, rcs in (("ls", (0,)), ("check", (1,))):
        with deadline():
            r = run_inproc(capsys, cmd, m.mount, "--json")
        assert_sane(r, rcs)
        d = json.loads(r.out)
        rows = {x["sop_instance_uid"]: x for x in listed(d)}
        for i in imgs:  # every record is listed (ls opens no referenced file)
            assert i.sop_uid in rows
        assert extra.sop_uid in rows and rows[extra.sop_uid]["path"] == "EXTRA/X1"
        errs = {p["path"] for p in problems(d, "read-error") if p["severity"] == "error"}
        assert "EXTRA/X2" in errs, d["problems"]  # unreferenced: its header had to be read
        if cmd == "check":
            assert {"/".join(imgs[1].fid), "/".join(imgs[5].fid)} <= errs, d["problems"]
    assert m.eio_reads()


def test_scratched_disc_dicomdir_and_folder(fuse: Callable[..., Any], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The DICOMDIR itself and one folder cannot be read: the rest is scanned and listed."""
    imgs = corpus("eiodd", patients=2, series=1, images=2)
    files = {"/".join(i.fid): dicom_bytes(i) for i in imgs}
    files["DICOMDIR"] = encode_dicomdir(records_for(imgs))
    m = fuse(files, eio=["DICOMDIR"], eio_dirs=["PA002/ST001"])
    with deadline():
        r = run_inproc(capsys, "ls", m.mount, "--json")
    assert_sane(r, (0,))
    d = json.loads(r.out)
    got = {x["sop_instance_uid"] for x in listed(d) if x["path"]}
    assert {i.sop_uid for i in imgs if i.patient_id.endswith("1")} <= got
    named = {p["path"] for p in d["problems"] if p["severity"] in ("error", "warning")}
    assert "DICOMDIR" in named, d["problems"]
    assert any((p or "").startswith("PA002") for p in named), d["problems"]


def test_zero_filled_variants_are_cheap(medium_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The class of QA-7: zeros after a valid meta, after half a header, inside the meta, and
    a file whose whole body after 4 KB of real data is zero. All bounded, none lost silently."""
    imgs = corpus("zvar", patients=1, series=1, images=7)
    good = imgs[:3]
    expected = write_images(medium_dir, good)
    from tests.integration.hostile_media import meta_end

    heads = {}
    for k, info in enumerate(imgs[3:]):
        data = dicom_bytes(info)
        m = meta_end(data)
        heads[f"Z/V{k}"] = [data[:m], data[:m + 60], data[:150], data[:m] + b"\0" * 64][k]
    for rel, head in heads.items():
        _sparse(medium_dir / rel, head, 32 << 20)
    write_file(medium_dir, "DICOMDIR", encode_dicomdir(records_for(good)))
    for cmd, rcs in (("ls", (0,)), ("check", (1,))):
        try:
            r = run_cli(cmd, medium_dir, "--json", timeout=CHEAP)
        except subprocess_timeout() as exc:
            raise AssertionError(f"{cmd} took more than {CHEAP} s on zero-filled files") from exc
        assert_sane(r, rcs, CHEAP)
        d = r.json()
        assert_each_once(d, Built(medium_dir, good, expected))
        named = {p["path"] for p in d["problems"]}
        for rel in heads:
            assert rel in named, (cmd, rel, d["problems"])


def misfiled(d: dict[str, Any], root: Path) -> list[tuple[str, str, str, str]]:
    """Rows listed under another patient/study/series than their own file says."""
    bad = []
    for row in listed(d):
        if not row["path"]:
            continue
        ds = pydicom.dcmread(root / row["path"], stop_before_pixels=True, force=True)
        for key, kw in (("patient.patient_id", "PatientID"), ("study.study_uid",
                                                               "StudyInstanceUID"),
                        ("series.series_uid", "SeriesInstanceUID")):
            if row[key] is not None and row[key] != str(ds.get(kw, "")):
                bad.append((row["path"], key, row[key], str(ds.get(kw, ""))))
    return bad


def assert_not_misfiled(d: dict[str, Any], root: Path) -> None:
    """A record tree rebuilt after damage must not move an image to a neighbour patient."""
    bad = misfiled(d, root)
    assert not bad, f"images filed under the wrong patient/study/series: {bad[:6]}"


@pytest.mark.parametrize("case", ["zeroed-sectors", "inactive-middle-patient-zero-offsets",
                                  "garbled-patient-type-zero-offsets",
                                  "lost-patient-record-zero-offsets"])
def test_damaged_tree_never_misfiles_images(medium_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            case: str) -> None:
    imgs = corpus("misfile", patients=12 if case == "zeroed-sectors" else 3, series=2, images=2)
    roots = records_for(imgs)
    opts = DDOpts(offsets="zero") if "zero-offsets" in case else DDOpts()
    files = imgs
    if case == "inactive-middle-patient-zero-offsets":
        roots[1].in_use = 0
    elif case == "garbled-patient-type-zero-offsets":
        roots[1].rtype = "PXTIENT"
    elif case == "lost-patient-record-zero-offsets":  # its children are promoted to the root
        lost = roots.pop(1)
        roots[1:1] = lost.children
    built = write_medium(medium_dir, files, roots=roots, opts=opts)
    if case == "zeroed-sectors":
        dd = medium_dir / "DICOMDIR"
        full = bytearray(dd.read_bytes())
        for start in (2048 * 2, 2048 * 5):
            full[start:start + 2048] = bytes(2048)
        dd.write_bytes(bytes(full))
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    if case != "lost-patient-record-zero-offsets":  # record order alone cannot tell there
        assert_not_misfiled(d, medium_dir)
    wrong = {m[0] for m in misfiled(d, medium_dir)}
    c = ls(capsys, medium_dir, tmp_path, cmd="check", rcs=(1,))
    assert_each_once(c, built)
    flagged = {p["path"] for p in problems(c, "record-file-mismatch")}
    assert wrong <= flagged, f"check does not flag misfiled {sorted(wrong - flagged)}"


@pytest.mark.parametrize("variant", PYDICOM_VARIANTS)
def test_pydicom_variants_not_misfiled(medium_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str], variant: str,
                                       pydicom_truth: tuple[Path, dict[str, str]]) -> None:
    import shutil

    src, _ = pydicom_truth
    shutil.copytree(src, medium_dir, ignore=lambda d, names: [
        n for n in names if n.startswith("DICOMDIR") and Path(d) == src])
    shutil.copyfile(src / variant, medium_dir / "DICOMDIR")
    assert_not_misfiled(ls(capsys, medium_dir, tmp_path), medium_dir)


@pytest.mark.parametrize("fill", ["zeros", "junk"])
def test_every_damaged_sector_position(medium_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str], fill: str) -> None:
    """Each 2 KB sector of the DICOMDIR in turn comes back as zeros (or junk): every image is
    still listed once, and none under another patient's name."""
    imgs = corpus("sweep", patients=10, series=2, images=2)
    built = write_medium(medium_dir, imgs)
    dd = medium_dir / "DICOMDIR"
    full = dd.read_bytes()
    rnd = random.Random(77)
    failures = []
    for start in range(0, len(full), 2048):
        b = bytearray(full)
        n = min(2048, len(b) - start)
        b[start:start + n] = bytes(n) if fill == "zeros" else bytes(rnd.randrange(256)
                                                                   for _ in range(n))
        dd.write_bytes(bytes(b))
        d = ls(capsys, medium_dir, tmp_path, text=False)
        try:
            assert_listed_truthfully(d, built, medium_dir)
        except AssertionError as exc:
            failures.append(f"sector at {start}: {str(exc)[:300]}")
    assert not failures, "\n".join(failures)


def assert_listed_truthfully(d: dict[str, Any], built: Built, root: Path) -> None:
    """Every file of the medium listed exactly once (by path); whatever a row says about it
    (SOP Instance UID, patient, study, series) is either unknown (null) or what the file says."""
    rows = [r for r in listed(d) if r["path"]]
    paths = sorted(r["path"] for r in rows)
    assert paths == sorted(built.expected.values()), "files lost or listed twice"
    truth = {rel: u for u, rel in built.expected.items()}
    wrong_uid = [(r["path"], r["sop_instance_uid"]) for r in rows
                 if r["sop_instance_uid"] is not None and r["sop_instance_uid"] != truth[r["path"]]]
    assert not wrong_uid, f"rows carry a SOP Instance UID that is not their file's: {wrong_uid}"
    assert_not_misfiled(d, root)


@pytest.mark.parametrize("fid", [("~", "SENTINEL"), ("%TEMP%", "SENTINEL"), ("$HOME", "X"),
                                 ("file:", "", "", "etc", "passwd")],
                         ids=["tilde", "percent-var", "dollar-var", "url"])
def test_file_ids_are_never_expanded(medium_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str],
                                     fid: tuple[str, ...]) -> None:
    """No shell/user/environment expansion of File IDs: they stay names inside the medium."""
    imgs = small("noexpand")
    ghost = replace_info(imgs[0], sop_uid=uid("noexpand", "ghost"), fid=fid,
                         instance_number="77")
    built = write_medium(medium_dir, imgs, roots=records_for(imgs + [ghost]))
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    row = [r for r in listed(d) if r["sop_instance_uid"] == ghost.sop_uid]
    assert len(row) == 1 and row[0]["path"] is None
    assert [p for p in d["problems"] if p["severity"] == "error"
            and p["code"] in ("missing-file", "bad-file-id", "outside-root")], d["problems"]


def test_typical_pdi_disc_with_viewer_is_quiet(medium_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A conformant IHE PDI disc with a viewer: DICOMDIR at the root, images under DICOM/,
    README.TXT, AUTORUN.INF, INDEX.HTM, IHE_PDI/ (XHTML + JPEG), a viewer with its DLLs:
    non-DICOM content is ignored without noise (IHE PDI importer rule), and check finds
    nothing to complain about."""
    imgs = corpus("pdi", patients=2, series=2, images=2)
    built = write_medium(medium_dir, imgs, recorded=lambda i: ("DICOM",) + i.fid,
                         disk=lambda f: "DICOM/" + "/".join(f))
    for rel, data in {"README.TXT": b"Created by QA\r\n", "AUTORUN.INF": b"[autorun]\r\n",
                      "INDEX.HTM": html_bytes(), "IHE_PDI/INDEX.HTM": html_bytes(),
                      "IHE_PDI/IMG1.JPG": jpeg_bytes(), "VIEWER/VIEWER.EXE": pe_bytes(),
                      "VIEWER/QT5CORE.DLL": pe_bytes(), "VIEWER/HELP/INDEX.HTM": html_bytes(),
                      "VIEWER/VIEWER.INI": b"[x]\n"}.items():
        write_file(medium_dir, rel, data)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    assert_all_referenced(d)
    assert [p for p in d["problems"] if p["severity"] != "info"] == []
    c = ls(capsys, medium_dir, tmp_path, cmd="check", rcs=(0,))
    assert [p for p in c["problems"] if p["severity"] != "info"] == []


@pytest.mark.parametrize("with_dicomdir", [False, True], ids=["scan", "dicomdir"])
def test_uid_collisions_across_patients_never_misfile(medium_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      with_dicomdir: bool) -> None:
    """Two patients whose files share a Study Instance UID (and a Series Instance UID): a
    broken modality or a bad merge. Each image stays under its own patient."""
    a = corpus("collide", patients=2, series=1, images=2)
    shared_study, shared_series = a[0].study_uid, a[0].series_uid
    imgs = [replace_info(i, study_uid=shared_study, series_uid=shared_series) for i in a]
    if with_dicomdir:
        built = write_medium(medium_dir, imgs)
    else:
        built = Built(medium_dir, imgs, write_images(medium_dir, imgs))
    for cmd, rcs in (("ls", (0,)), ("check", (0, 1))):
        d = ls(capsys, medium_dir, tmp_path, cmd=cmd, rcs=rcs)
        assert_each_once(d, built)
        assert_not_misfiled(d, medium_dir)


def test_icon_bombs(medium_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Icons that claim 65535×65535 pixels, a palette of 65535 entries in 10 bytes, and a
    16 MB 4096×4096 series icon: check stays small and fast, and names the bad ones."""
    imgs = small("icbomb")
    roots = records_for(imgs)
    find_rec(roots, f"IMAGE:{imgs[0].sop_uid}").elems.append(
        (0x00880200, "SQ", [icon_item(rows=65535, cols=65535, pixel_bytes=100)]))
    pal = [e for e in icon_item() if e[0] != 0x00280004] + [
        (0x00280004, "CS", "PALETTE COLOR")] + [
        (tag, "US", b"\xff\xff\x00\x00\x10\x00") for tag in (0x00281101, 0x00281102, 0x00281103)
    ] + [(tag, "OW", b"\0" * 10) for tag in (0x00281201, 0x00281202, 0x00281203)]
    find_rec(roots, f"IMAGE:{imgs[1].sop_uid}").elems.append((0x00880200, "SQ", [pal]))
    find_rec(roots, f"SERIES:{imgs[0].series_uid}").elems.append(
        (0x00880200, "SQ", [icon_item(rows=4096, cols=4096)]))
    built = write_medium(medium_dir, imgs, roots=roots)
    d = ls(capsys, medium_dir, tmp_path, cmd="check", rcs=(1,))
    assert_each_once(d, built)
    bad = {p["path"] for p in problems(d, "bad-icon")}
    assert {"/".join(imgs[0].fid), "/".join(imgs[1].fid)} <= bad | {"DICOMDIR"} and bad, \
        d["problems"]


def test_iso_2022_ir_58_record(medium_dir: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """GB2312 through ISO 2022 (PS3.5 Annex K example bytes: ESC $ ) A, repeated after '^' since
    each PN component starts in the default set), which pydicom's own encoder does not produce."""
    imgs = small("ir58")
    roots = records_for(imgs)
    roots[0].charset = "\\ISO 2022 IR 58"
    roots[0].elems = [e for e in roots[0].elems if e[0] != 0x00100010] + [
        (0x00100010, "PN", b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab=")]
    built = write_medium(medium_dir, imgs, roots=roots)
    d = ls(capsys, medium_dir, tmp_path)
    assert_each_once(d, built)
    assert d["patients"][0]["patient_name"].rstrip("=") == "Zhang^XiaoDong=张^小东"
    assert "bad-charset" not in codes(d)


@pytest.mark.parametrize("damage", ["junk-sector", "loop", "extent-past-end", "zero-sector"])
def test_iso_with_one_damaged_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        damage: str) -> None:
    """One directory of a disc image is damaged (a bad sector read back as junk, a directory
    record pointing at its grandparent, an extent past the end): the rest of the disc is still
    read and listed, and the damage is reported; one bad sector must not lose the whole disc."""
    import pycdlib

    stage = tmp_path / "stage"
    imgs = corpus("isodmg", patients=2, series=1, images=2)
    built = write_medium(stage, imgs)
    files = {p.relative_to(stage).as_posix(): p.read_bytes()
             for p in sorted(stage.rglob("*")) if p.is_file()}
    good = tmp_path / "good.iso"
    write_iso(good, files, joliet=False)
    iso = pycdlib.PyCdlib()
    iso.open(str(good))
    se = iso.get_record(iso_path="/PA002/ST001/SE001").extent_location()
    st = iso.get_record(iso_path="/PA002/ST001").extent_location()
    pa = iso.get_record(iso_path="/PA002").extent_location()
    iso.close()
    data = bytearray(good.read_bytes())
    rec = data.index(b"SE001", st * 2048) - 33  # SE001's directory record inside ST001
    if damage == "junk-sector":
        rnd = random.Random(3)
        data[se * 2048:(se + 1) * 2048] = bytes(rnd.randrange(256) for _ in range(2048))
    elif damage == "zero-sector":
        data[se * 2048:(se + 1) * 2048] = bytes(2048)
    else:
        target = pa if damage == "loop" else 1_000_000
        data[rec + 2:rec + 6] = struct.pack("<I", target)
        data[rec + 6:rec + 10] = struct.pack(">I", target)
    disc = tmp_path / "damaged.iso"
    disc.write_bytes(bytes(data))
    d = ls(capsys, disc, tmp_path, root=disc)
    rows = {r["sop_instance_uid"]: r for r in listed(d) if r["path"]}
    for i in imgs[:2]:  # patient 1 is intact
        assert i.sop_uid in rows, (i.fid, d["problems"])
    assert [p for p in d["problems"] if p["severity"] in ("error", "warning")], d["problems"]
    assert len(rows) == len({r["path"] for r in rows.values()})
    assert built.expected


def test_iso_file_extent_past_the_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file whose extent lies past the end of a (cut short) disc image: check reports it as
    unreadable or truncated, not as 'not DICOM', and the other files are fine."""
    import pycdlib

    stage = tmp_path / "stage"
    imgs = corpus("isoext", patients=1, series=1, images=3)
    write_medium(stage, imgs)
    files = {p.relative_to(stage).as_posix(): p.read_bytes()
             for p in sorted(stage.rglob("*")) if p.is_file()}
    good = tmp_path / "good.iso"
    write_iso(good, files, joliet=False)
    iso = pycdlib.PyCdlib()
    iso.open(str(good))
    se = iso.get_record(iso_path="/PA001/ST001/SE001").extent_location()
    iso.close()
    data = bytearray(good.read_bytes())
    rec = data.index(b"IM00002.;1", se * 2048) - 33
    data[rec + 2:rec + 6] = struct.pack("<I", 1_000_000)
    data[rec + 6:rec + 10] = struct.pack(">I", 1_000_000)
    disc = tmp_path / "cut.iso"
    disc.write_bytes(bytes(data))
    d = ls(capsys, disc, tmp_path, cmd="check", rcs=(1,), root=disc)
    named = {(p["code"], p["path"]) for p in d["problems"]}
    victim = "/".join(imgs[1].fid)
    assert named & {("read-error", victim), ("truncated-file", victim)}, d["problems"]
    assert not [p for p in d["problems"] if p["path"] in ("/".join(imgs[0].fid),
                                                          "/".join(imgs[2].fid))]


@pytest.mark.parametrize("keep_blocks", [44, 50], ids=["cut-in-joliet-tree", "cut-in-file-data"])
def test_iso_cut_short(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       keep_blocks: int) -> None:
    """A download or rip cut short. Layout (pycdlib, Joliet): primary tree, Joliet tree,
    DICOMDIR at block 46, images at 48–55. Cut at 44: the primary tree is whole; cut at 50: two
    images are there, the others lost. Whatever is there is listed; lost data is a read error
    or a truncation naming the file, never 'empty' or 'not DICOM'."""
    import pycdlib

    stage = tmp_path / "stage"
    imgs = corpus("isocut", patients=2, series=2, images=2)
    write_medium(stage, imgs)
    files = {p.relative_to(stage).as_posix(): p.read_bytes()
             for p in sorted(stage.rglob("*")) if p.is_file()}
    full = tmp_path / "full.iso"
    write_iso(full, files, joliet=True)
    iso = pycdlib.PyCdlib()
    iso.open(str(full))
    extents = {"/".join(i.fid): iso.get_record(iso_path="/" + "/".join(i.fid) + ".;1")
               .extent_location() for i in imgs}
    dd_extent = iso.get_record(iso_path="/DICOMDIR.;1").extent_location()
    iso.close()
    assert dd_extent == 46 and sorted(extents.values()) == list(range(48, 56))
    disc = tmp_path / "cut.iso"
    disc.write_bytes(full.read_bytes()[: keep_blocks * 2048])
    d = ls(capsys, disc, tmp_path, cmd="check", rcs=(1,), root=disc)
    listed_paths = {r["path"] for r in listed(d) if r["path"]}
    lost = {rel for rel, ext in extents.items() if ext >= keep_blocks}
    present = set(extents) - lost
    assert present <= listed_paths, (sorted(present - listed_paths), d["problems"])
    diag = {p["path"]: p["code"] for p in d["problems"] if p["path"] in lost}
    for rel in lost:
        assert diag.get(rel) in ("read-error", "truncated-file", "missing-file"), (rel, diag)


def test_iso_image_fuzz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Seeded byte mutations of a disc image's descriptors, path tables and directory sectors
    (everything before the file data): bounded, never a traceback, never outside the image,
    and whatever `check` lists without a problem opens to its own file's bytes."""
    import pycdlib

    from app.core.medium.reader import open_medium

    stage = tmp_path / "stage"
    imgs = corpus("isofuzz", patients=2, series=2, images=2)
    built = write_medium(stage, imgs)
    files = {p.relative_to(stage).as_posix(): p.read_bytes()
             for p in sorted(stage.rglob("*")) if p.is_file()}
    good = tmp_path / "good.iso"
    write_iso(good, files, joliet=True)
    iso = pycdlib.PyCdlib()
    iso.open(str(good))
    first_data = min(iso.get_record(iso_path="/" + rel + ("" if "." in rel.rsplit("/", 1)[-1]
                                                           else ".") + ";1").extent_location()
                     for rel in files)
    iso.close()
    full = good.read_bytes()
    truth = {u: (stage / rel).read_bytes() for u, rel in built.expected.items()}
    rnd = random.Random(99)
    disc = tmp_path / "fuzz.iso"
    readable = 0
    for k in range(40):
        b = bytearray(full)
        for _ in range(rnd.choice([1, 4, 16, 64])):
            pos = rnd.randrange(16 * 2048, first_data * 2048)
            r = rnd.random()
            if r < 0.6:
                b[pos] = rnd.randrange(256)
            else:
                b[pos:pos + 4] = struct.pack("<I", rnd.choice([0, 1, 0xFFFFFFFF, 16, 17,
                                                               first_data, len(b) // 2048]))
        disc.write_bytes(bytes(b))
        with audit() as seen, deadline():
            r_ = run_inproc(capsys, "ls", disc, "--json")
        assert_sane(r_, (0, 1), DEADLINE)
        assert_confined(seen, disc, tmp_path)
        if r_.rc == 1:
            assert str(disc) in r_.err
            continue
        with audit() as seen, deadline():  # check opens every file: a listed path that opens
            c = run_inproc(capsys, "check", disc, "--json")  # to another image is flagged
        assert_sane(c, (0, 1), DEADLINE)
        assert_confined(seen, disc, tmp_path)
        d = json.loads(c.out)
        flagged = {p["path"] for p in d["problems"] if p["severity"] in ("error", "warning")}
        readable += bool(listed(d))
        m = open_medium(disc)
        assert m.fs is not None
        for row in listed(d):
            u, path = row["sop_instance_uid"], row["path"]
            if not path or u not in truth or path in flagged:
                continue
            with m.fs.open(path) as fp:
                data = fp.read()
            assert data == truth[u], f"mutant {k}: {path} opens to other bytes, unflagged"
    assert readable >= 20, f"only {readable} of 40 mutated images could be read at all"
