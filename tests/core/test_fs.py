"""MediumFS implementations: DirFS confinement, IsoFS (pycdlib, no mounting), open_fs."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pycdlib
import pytest

from app.core.errors import UnreadableMedium, UnsafePath
from app.core.medium.fs import DirFS, IsoFS, check_relative, iso_clean_name, looks_like_iso, open_fs


def test_check_relative() -> None:
    assert check_relative("a/b").parts == ("a", "b")
    for bad in ("../x", "a/../../x", "/etc", "C:/x", "a\\b", "a\x00b"):
        with pytest.raises(UnsafePath):
            check_relative(bad)


def test_dirfs_listdir_open_and_confinement(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root = tmp_path / "root"
    (root / "A").mkdir(parents=True)
    (root / "A" / "F").write_bytes(b"12345")
    os.symlink(outside, root / "OUT")
    os.symlink(outside / "secret", root / "SECRET")
    os.symlink(root / "A", root / "ALIAS")
    os.symlink(root / "nowhere", root / "DANGLING")
    os.mkfifo(root / "FIFO")
    fs = DirFS(root)
    ents = {e.name: e for e in fs.listdir("")}
    assert set(ents) == {"A", "OUT", "SECRET", "ALIAS"}  # no dangling link, no FIFO
    assert ents["A"].is_dir and not ents["A"].is_link
    assert ents["ALIAS"].is_dir and ents["ALIAS"].is_link
    assert fs.listdir("A") == [type(ents["A"])("F", False, 5)]
    with fs.open("A/F") as fp:
        assert fp.read() == b"12345"
    assert fs.size("ALIAS/F") == 5
    assert fs.realpath("ALIAS/F") == "A/F"
    assert fs.realpath("") == ""
    for bad in ("OUT/secret", "SECRET", "../outside/secret", "/etc/passwd"):
        with pytest.raises(UnsafePath):
            fs.open(bad)
        with pytest.raises(UnsafePath):
            fs.realpath(bad)
    with pytest.raises(UnsafePath):
        fs.listdir("OUT")
    with pytest.raises(OSError):
        fs.open("FIFO")  # refused at once, never blocks waiting for a writer
    with pytest.raises(OSError):
        fs.open("A")


def _iso(path: Path, *, joliet: bool = False, rr: bool = False, udf: bool = False) -> Path:
    iso = pycdlib.PyCdlib()
    kw: dict[str, object] = {"interchange_level": 3 if udf else 1}
    if joliet:
        kw["joliet"] = 3
    if rr:
        kw["rock_ridge"] = "1.09"
    if udf:
        kw["udf"] = "2.60"
    iso.new(**kw)  # type: ignore[arg-type]

    def extra(p: str) -> dict[str, str]:
        d: dict[str, str] = {}
        if joliet:
            d["joliet_path"] = p
        if rr:
            d["rr_name"] = p.rsplit("/", 1)[-1].lower()
        if udf:
            d["udf_path"] = p
        return d

    iso.add_directory("/PA001", **extra("/PA001"))
    data = b"hello iso"
    iso.add_fp(io.BytesIO(data), len(data), "/PA001/IM000001.;1", **extra("/PA001/IM000001"))
    iso.add_fp(io.BytesIO(b""), 0, "/EMPTY.;1", **extra("/EMPTY"))
    iso.write(str(path))
    iso.close()
    return path


def test_isofs_primary_names(tmp_path: Path) -> None:
    image = _iso(tmp_path / "a.iso", joliet=True, rr=True)
    assert looks_like_iso(image)
    with IsoFS(image) as fs:
        assert fs.namespace == "iso9660"
        assert set(fs.namespaces) == {"iso9660", "joliet", "rock_ridge"}
        assert fs.label == str(image.resolve())
        assert sorted((e.name, e.is_dir, e.size) for e in fs.listdir("")) == [
            ("EMPTY", False, 0), ("PA001", True, 0)]
        assert [(e.name, e.size) for e in fs.listdir("PA001")] == [("IM000001", 9)]
        with fs.open("PA001/IM000001") as fp:
            assert fp.read(5) == b"hello"
            fp.seek(0)
            assert fp.read() == b"hello iso"
        assert fs.open("EMPTY").read() == b""
        assert fs.size("PA001/IM000001") == 9
        assert fs.local_path("PA001/IM000001") is None
        with pytest.raises(FileNotFoundError):
            fs.open("PA001/IM000002")
        with pytest.raises(UnsafePath):
            fs.open("../a.iso")
        with pytest.raises(IsADirectoryError):
            fs.open("PA001")
    with IsoFS(image, namespace="rock_ridge") as fs:
        assert sorted(e.name for e in fs.listdir("")) == ["empty", "pa001"]
        assert fs.open("pa001/im000001").read() == b"hello iso"
    with IsoFS(image, namespace="joliet") as fs:
        assert [e.name for e in fs.listdir("PA001")] == ["IM000001"]


def test_isofs_udf(tmp_path: Path) -> None:
    image = _iso(tmp_path / "u.iso", udf=True)
    with IsoFS(image, namespace="udf") as fs:
        assert [e.name for e in fs.listdir("PA001")] == ["IM000001"]
        assert fs.open("PA001/IM000001").read() == b"hello iso"


def test_isofs_threads_share_no_position(tmp_path: Path) -> None:
    image = _iso(tmp_path / "a.iso")
    with IsoFS(image) as fs:
        a, b = fs.open("PA001/IM000001"), fs.open("PA001/IM000001")
        assert a.read(3) == b"hel"
        assert b.read(6) == b"hello "
        assert a.read() == b"lo iso"


def test_bad_images(tmp_path: Path) -> None:
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"\x00" * 40000)
    assert not looks_like_iso(junk)
    with pytest.raises(UnreadableMedium):
        IsoFS(junk)
    fake = tmp_path / "fake.iso"
    fake.write_bytes(b"\x00" * 32769 + b"CD001" + b"\x00" * 4000)
    assert looks_like_iso(fake)
    with pytest.raises(UnreadableMedium):
        IsoFS(fake)


def test_iso_clean_name() -> None:
    assert iso_clean_name("IM000001.;1") == "IM000001"
    assert iso_clean_name("DICOMDIR;1") == "DICOMDIR"
    assert iso_clean_name("README.TXT;1") == "README.TXT"
    assert iso_clean_name("A.") == "A"


def test_open_fs(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "DICOMDIR").write_bytes(b"x")
    fs, start = open_fs(tmp_path / "m")
    assert isinstance(fs, DirFS) and start == ""
    fs, start = open_fs(tmp_path / "m" / "DICOMDIR")
    assert isinstance(fs, DirFS) and start == "DICOMDIR"
    assert fs.label == str((tmp_path / "m").resolve())
    image = _iso(tmp_path / "disc.bin")  # recognised by content, not by name
    fs, start = open_fs(image)
    assert isinstance(fs, IsoFS) and start == ""
    fs.close()
    with pytest.raises(UnreadableMedium, match="no such"):
        open_fs(tmp_path / "absent")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnreadableMedium):
        open_fs(tmp_path / "fifo")


def _deep(root: Path, levels: int, name: str = "D" * 200) -> str:
    """``levels`` nested folders of long names below ``root`` (made with ``dir_fd``: the whole
    path exceeds PATH_MAX), a file ``F`` at the bottom and a symlink ``L`` to it. Returns the
    root-relative folder."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        w = os.open("F", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(w, b"deep bytes")
        os.close(w)
        os.symlink("F", "L", dir_fd=fd)
    finally:
        os.close(fd)
    return "/".join([name] * levels)


def test_dirfs_paths_longer_than_path_max(tmp_path: Path) -> None:
    """QA-12: folders and files below a path longer than PATH_MAX are listed and opened
    (openat, component by component); symlinks down there are never followed."""
    rel = _deep(tmp_path, 25)
    assert len(str(tmp_path / rel)) > 4096
    fs = DirFS(tmp_path)
    walked = ""
    for part in rel.split("/"):  # every level lists, kinds right
        assert fs.listdir(walked) == [type(fs.listdir(walked)[0])(part, True, 0)]
        walked = f"{walked}/{part}" if walked else part
    ents = {e.name: e for e in fs.listdir(rel)}
    assert ents["F"] == type(ents["F"])("F", False, 10) and ents["L"].is_link
    with fs.open(f"{rel}/F") as fp:
        assert fp.read() == b"deep bytes"
    assert fs.size(f"{rel}/F") == 10
    with pytest.raises(OSError):
        fs.open(f"{rel}/L")
    fresh = DirFS(tmp_path)  # nothing cached: the descriptor walk starts at the root
    with fresh.open(f"{rel}/F") as fp:
        assert fp.read() == b"deep bytes"
