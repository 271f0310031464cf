"""ISO 9660 Level 1 / UDF bridge images: write, read back, verify, refuse, cancel."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
from pathlib import Path

import pycdlib
import pytest

from app.core.devices.iso_image import (
    iso_path_for,
    scan_staging,
    sha256_tree,
    verify_iso,
    write_iso,
)
from app.core.devices.iso_xorriso import write_iso_xorriso
from app.core.errors import ExportError
from app.core.jobs import Cancelled, CancelToken, Progress
from tests.conftest import require_tool
from tests.media import make_dataset


def _staging(tmp_path: Path, n_images: int = 3, big: int = 0) -> Path:
    """A small exported medium: DICOMDIR-like file, README.TXT, PA001/ST001/SE001/IM00000n."""
    root = tmp_path / "staging"
    series = root / "PA001" / "ST001" / "SE001"
    series.mkdir(parents=True)
    for i in range(1, n_images + 1):
        ds = make_dataset()
        ds.save_as(series / f"IM{i:06d}", enforce_file_format=True)
    if big:
        (series / "IM999999").write_bytes(os.urandom(big))
    (root / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"fake dicomdir body")
    (root / "README.TXT").write_text("Made by DiscBridge tests\r\n")
    return root


def _iso_listing(iso: Path) -> dict[str, bytes]:
    """Every file of the image by its ISO 9660 path, read with pycdlib."""
    pc = pycdlib.PyCdlib()
    pc.open(str(iso))
    try:
        out: dict[str, bytes] = {}
        for root, _dirs, files in pc.walk(iso_path="/"):
            for name in files:
                path = root.rstrip("/") + "/" + name
                buf = io.BytesIO()
                pc.get_file_from_iso_fp(buf, iso_path=path)
                out[path] = buf.getvalue()
        return out
    finally:
        pc.close()


def test_write_level1_names_and_contents(tmp_path: Path) -> None:
    staging = _staging(tmp_path)
    iso = tmp_path / "out" / "disc.iso"
    iso.parent.mkdir()
    write_iso(staging, iso, "DISCBRIDGE_01")
    listing = _iso_listing(iso)
    assert sorted(listing) == [
        "/DICOMDIR.;1",
        "/PA001/ST001/SE001/IM000001.;1",
        "/PA001/ST001/SE001/IM000002.;1",
        "/PA001/ST001/SE001/IM000003.;1",
        "/README.TXT;1",
    ]
    for path, data in listing.items():
        rel = path.lstrip("/").split(";")[0].rstrip(".")
        assert data == (staging / rel).read_bytes(), path
    pc = pycdlib.PyCdlib()
    pc.open(str(iso))
    try:
        assert pc.pvd.volume_identifier.rstrip(b" ") == b"DISCBRIDGE_01"
        assert not pc.has_joliet() and not pc.has_rock_ridge() and not pc.has_udf()
    finally:
        pc.close()
    assert [p.name for p in iso.parent.iterdir()] == ["disc.iso"]  # no temp file left


def test_verify_passes_and_checks_volume_id(tmp_path: Path) -> None:
    staging = _staging(tmp_path)
    iso = tmp_path / "disc.iso"
    seen: list[Progress] = []
    write_iso(staging, iso, "VOL1", progress=seen.append)
    assert seen and seen[-1].phase == "iso" and seen[-1].done_bytes == seen[-1].total_bytes
    assert seen[-1].total_bytes == iso.stat().st_size
    expected = sha256_tree(staging)
    verified: list[Progress] = []
    assert verify_iso(iso, expected, progress=verified.append, volume_id="VOL1", udf=False) == []
    assert verified[-1].done_bytes == sum((staging / r).stat().st_size for r in expected)
    bad = verify_iso(iso, expected, volume_id="OTHER")
    assert bad == [f"{iso}: Volume ID is 'VOL1', expected 'OTHER'"]


def test_verify_reports_missing_extra_and_mismatch(tmp_path: Path) -> None:
    staging = _staging(tmp_path)
    iso = tmp_path / "disc.iso"
    write_iso(staging, iso, "VOL1")
    expected = sha256_tree(staging)
    expected["PA001/ST001/SE001/IM000404"] = "0" * 64
    del expected["README.TXT"]
    expected["DICOMDIR"] = hashlib.sha256(b"something else").hexdigest()
    failures = verify_iso(iso, expected)
    assert failures == [
        "README.TXT: in the image but not expected",
        "DICOMDIR: SHA-256 differs from the file written",
        "PA001/ST001/SE001/IM000404: missing from the image",
    ]


def test_corrupted_image_fails_verification(tmp_path: Path) -> None:
    staging = _staging(tmp_path)
    iso = tmp_path / "disc.iso"
    write_iso(staging, iso, "VOL1")
    expected = sha256_tree(staging)
    data = bytearray(iso.read_bytes())
    needle = (staging / "PA001/ST001/SE001/IM000002").read_bytes()
    at = data.find(needle)
    assert at > 0
    data[at + len(needle) // 2] ^= 0xFF
    iso.write_bytes(bytes(data))
    assert verify_iso(iso, expected) == [
        "PA001/ST001/SE001/IM000002: SHA-256 differs from the file written"]


def test_garbage_and_truncated_images_fail_cleanly(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.iso"
    garbage.write_bytes(os.urandom(70000))
    out = verify_iso(garbage, {"DICOMDIR": "0" * 64})
    assert len(out) == 1 and out[0].startswith(f"{garbage}: not a readable ISO 9660 image")
    assert verify_iso(tmp_path / "absent.iso", {}) == [
        f"{tmp_path / 'absent.iso'}: cannot open the image (No such file or directory)"]
    staging = _staging(tmp_path)
    iso = tmp_path / "disc.iso"
    write_iso(staging, iso, "VOL1")
    data = iso.read_bytes()
    last = (staging / "PA001/ST001/SE001/IM000003").read_bytes()
    cut = tmp_path / "cut.iso"
    cut.write_bytes(data[: data.index(last) + 10])
    failures = verify_iso(cut, sha256_tree(staging))
    assert failures[0] == f"{cut}: image truncated ({len(cut.read_bytes())} of {len(data)} bytes)"
    assert failures[1].startswith("PA001/ST001/SE001/IM000003: ")
    assert len(failures) == 2


def test_udf_bridge_image(tmp_path: Path) -> None:
    staging = _staging(tmp_path)
    iso = tmp_path / "bd.iso"
    write_iso(staging, iso, "BDVOL", udf=True)
    pc = pycdlib.PyCdlib()
    pc.open(str(iso))
    try:
        assert pc.has_udf()
        assert b"BDVOL" in pc.udf_main_descs.pvds[0].vol_ident
        buf = io.BytesIO()
        pc.get_file_from_iso_fp(buf, udf_path="/PA001/ST001/SE001/IM000001")
        assert buf.getvalue() == (staging / "PA001/ST001/SE001/IM000001").read_bytes()
        udf_names = sorted(n for _r, _d, names in pc.walk(udf_path="/") for n in names)
        assert udf_names == ["DICOMDIR", "IM000001", "IM000002", "IM000003", "README.TXT"]
    finally:
        pc.close()
    assert verify_iso(iso, sha256_tree(staging), udf=True, volume_id="BDVOL") == []
    plain = tmp_path / "plain.iso"
    write_iso(staging, plain, "BDVOL")
    assert verify_iso(plain, sha256_tree(staging), udf=True) == [
        f"{plain}: no UDF file system (expected a UDF bridge image)"]


@pytest.mark.parametrize(("bad", "why"), [
    ("PA001/st001/IM1", "directory name breaks ISO 9660 Level 1"),
    ("PA001/LONGNAME1/IM1", "directory name breaks ISO 9660 Level 1"),
    ("PA001/IM.DCM.X", "file name breaks ISO 9660 Level 1"),
    ("PA001/readme.txt", "file name breaks ISO 9660 Level 1"),
    ("PA001/IM 1", "file name breaks ISO 9660 Level 1"),
    ("A/B/C/D/E/F/G/H/IM1", "deeper than ISO 9660 allows"),
])
def test_refuses_names_level1_cannot_hold(tmp_path: Path, bad: str, why: str) -> None:
    root = tmp_path / "st"
    (root / bad).parent.mkdir(parents=True)
    (root / bad).write_bytes(b"x")
    iso = tmp_path / "x.iso"
    with pytest.raises(ExportError, match=why) as info:
        write_iso(root, iso, "VOL")
    assert str(info.value).startswith(bad.split("/")[0])
    assert not iso.exists() and sorted(os.listdir(tmp_path)) == ["st"]


def test_depth_limits(tmp_path: Path) -> None:
    """ECMA-119: 8 levels with the root; pycdlib: a file has at most 7 path components."""
    root = tmp_path / "st"
    (root / "A/B/C/D/E/F").mkdir(parents=True)
    (root / "A/B/C/D/E/F/IM1").write_bytes(b"deep")
    iso = tmp_path / "deep.iso"
    write_iso(root, iso, "DEEP")
    assert _iso_listing(iso) == {"/A/B/C/D/E/F/IM1.;1": b"deep"}
    (root / "A/B/C/D/E/F/G").mkdir()
    (root / "A/B/C/D/E/F/G/IM2").write_bytes(b"deeper")
    with pytest.raises(ExportError, match=r"^A/B/C/D/E/F/G/IM2: deeper than this ISO writer"):
        write_iso(root, iso, "DEEP")
    scan_staging(root)  # the standard allows it (xorriso writes it)


def test_refuses_symlink_and_bad_volume_id(tmp_path: Path) -> None:
    root = _staging(tmp_path)
    with pytest.raises(ExportError, match="Volume Identifier"):
        write_iso(root, tmp_path / "x.iso", "lower case")
    (root / "LINK").symlink_to(root / "README.TXT")
    with pytest.raises(ExportError, match="LINK: symbolic link"):
        write_iso(root, tmp_path / "x.iso", "VOL")
    with pytest.raises(ExportError, match="staging folder does not exist"):
        write_iso(tmp_path / "nope", tmp_path / "x.iso", "VOL")


def test_cancel_mid_write_leaves_nothing(tmp_path: Path) -> None:
    staging = _staging(tmp_path, n_images=2, big=6 * 1024 * 1024)
    out = tmp_path / "out"
    out.mkdir()
    token = CancelToken()
    during: list[list[str]] = []

    def progress(p: Progress) -> None:
        if not during:  # the image is being written now: its temporary file exists
            during.append(sorted(os.listdir(out)))
            token.cancel()

    with pytest.raises(Cancelled):
        write_iso(staging, out / "disc.iso", "VOL", progress=progress, cancel=token)
    assert len(during[0]) == 1 and during[0][0].startswith(".disc.iso.")
    assert list(out.iterdir()) == []


def test_lazy_file_honours_cancel_and_closes(tmp_path: Path) -> None:
    """Inside one large file the token is checked on every read; the file closes at its end."""
    from app.core.devices.iso_image import _LazyFile

    f = tmp_path / "BIG"
    f.write_bytes(b"a" * 1000)
    token = CancelToken()
    lazy = _LazyFile(f, 1000, token)
    assert lazy._fp is None
    lazy.seek(10)
    assert lazy.read(100) == b"a" * 100 and lazy._fp is not None and lazy.tell() == 110
    token.cancel()
    with pytest.raises(Cancelled):
        lazy.read(100)
    lazy2 = _LazyFile(f, 1000, None)
    assert len(lazy2.read(2000)) == 1000 and lazy2._fp is None


def test_many_files_do_not_exhaust_descriptors(tmp_path: Path) -> None:
    """pycdlib keeps every add_fp object until write; ours open one file at a time."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    root = tmp_path / "st" / "PA001" / "ST001" / "SE001"
    root.mkdir(parents=True)
    for i in range(300):
        (root / f"IM{i:06d}").write_bytes(i.to_bytes(2, "big") * 10)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(200, hard), hard))
    try:
        write_iso(tmp_path / "st", tmp_path / "many.iso", "MANY")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert verify_iso(tmp_path / "many.iso", sha256_tree(tmp_path / "st")) == []


def test_scan_staging_order(tmp_path: Path) -> None:
    staging = _staging(tmp_path)
    dirs, files = scan_staging(staging)
    assert dirs == ["PA001", "PA001/ST001", "PA001/ST001/SE001"]
    assert [f[0] for f in files] == ["DICOMDIR", "README.TXT", "PA001/ST001/SE001/IM000001",
                                     "PA001/ST001/SE001/IM000002", "PA001/ST001/SE001/IM000003"]
    assert iso_path_for("PA001/IM1") == "/PA001/IM1.;1"
    assert iso_path_for("README.TXT") == "/README.TXT;1"


def test_image_readable_by_xorriso(tmp_path: Path) -> None:
    xorriso = require_tool("xorriso")
    staging = _staging(tmp_path)
    iso = tmp_path / "disc.iso"
    write_iso(staging, iso, "XVOL")
    out = subprocess.run([xorriso, "-indev", str(iso), "-find", "/", "-exec", "lsdl"],
                         capture_output=True, text=True, check=True)
    text = out.stdout + out.stderr
    assert "Volume id    : 'XVOL'" in text
    for name in ("'/DICOMDIR'", "'/README.TXT'", "'/PA001/ST001/SE001/IM000003'"):
        assert name in text, text
    size = (staging / "PA001/ST001/SE001/IM000001").stat().st_size
    line = next(x for x in text.splitlines() if x.endswith("'/PA001/ST001/SE001/IM000001'"))
    assert f" {size} " in line


def test_write_iso_xorriso_matches_pycdlib_contents(tmp_path: Path) -> None:
    xorriso = require_tool("xorriso")
    staging = _staging(tmp_path, big=3 * 1024 * 1024)
    iso = tmp_path / "x.iso"
    seen: list[Progress] = []
    write_iso_xorriso(staging, iso, "XVOL", progress=seen.append, xorriso=xorriso)
    assert verify_iso(iso, sha256_tree(staging), volume_id="XVOL", udf=False) == []
    assert sorted(_iso_listing(iso)) == sorted(_iso_listing_of_pycdlib(tmp_path, staging))
    assert seen[-1].done_bytes == seen[-1].total_bytes > 3 * 1024 * 1024
    assert sorted(os.listdir(tmp_path)) == ["staging", "x.iso"]


def test_write_iso_xorriso_cancel_and_failure_leave_nothing(tmp_path: Path) -> None:
    xorriso = require_tool("xorriso")
    staging = _staging(tmp_path)
    token = CancelToken()
    token.cancel()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Cancelled):
        write_iso_xorriso(staging, out / "x.iso", "XVOL", cancel=token, xorriso=xorriso)
    assert list(out.iterdir()) == []
    with pytest.raises(ExportError, match="cannot run"):
        write_iso_xorriso(staging, out / "x.iso", "XVOL", xorriso=str(tmp_path / "no-xorriso"))
    assert list(out.iterdir()) == []


def _iso_listing_of_pycdlib(tmp_path: Path, staging: Path) -> dict[str, bytes]:
    iso = tmp_path / "ref" / "p.iso"
    iso.parent.mkdir()
    write_iso(staging, iso, "XVOL")
    try:
        return _iso_listing(iso)
    finally:
        iso.unlink()
        iso.parent.rmdir()


def test_full_disk_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC half-way through the image: ExportError naming the image, no temp file left."""
    import errno

    staging = _staging(tmp_path, big=2 * 1024 * 1024)
    out = tmp_path / "out"
    out.mkdir()
    real_open = open

    class FullFile:
        def __init__(self, fp: io.BufferedWriter) -> None:
            self.fp = fp
            self.written = 0

        def __getattr__(self, name: str) -> object:
            return getattr(self.fp, name)

        def write(self, data: bytes) -> int:
            self.written += len(data)
            if self.written > 1024 * 1024:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fp.write(data)

        def __enter__(self) -> FullFile:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fp.close()

    def fake_open(file: object, mode: str = "r", *args: object, **kw: object) -> object:
        fp = real_open(file, mode, *args, **kw)  # type: ignore[call-overload]
        if mode == "wb" and str(file).endswith(".part"):
            return FullFile(fp)
        return fp

    monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(ExportError, match="No space left on device"):
        write_iso(staging, out / "disc.iso", "VOL")
    monkeypatch.undo()
    assert list(out.iterdir()) == []


def test_vanished_source_file_is_named(tmp_path: Path) -> None:
    staging = _staging(tmp_path)
    gone = staging / "PA001/ST001/SE001/IM000002"
    token = CancelToken()
    removed: list[bool] = []

    def progress(p: Progress) -> None:
        if not removed:  # after the scan, before the data is copied
            gone.unlink()
            removed.append(True)

    with pytest.raises(ExportError, match="IM000002: cannot write the image"):
        write_iso(staging, tmp_path / "x.iso", "VOL", progress=progress, cancel=token)
    assert not (tmp_path / "x.iso").exists()
    assert not any(p.name.endswith(".part") for p in tmp_path.iterdir())
