"""File ID splitting, refusal, conformance rules and case-insensitive resolution (app.core.medium.paths)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from app.core.medium.fs import DirFS, Entry
from app.core.medium.paths import (
    DirListing,
    Listings,
    Resolver,
    file_id_violations,
    name_key,
    retry_once,
    split_file_id,
)


@pytest.mark.parametrize(("raw", "components"), [
    (("PA001", "ST001", "IM1"), ("PA001", "ST001", "IM1")),
    ("PA001\\ST001\\IM1", ("PA001", "ST001", "IM1")),
    ("PA001/ST001/IM1", ("PA001", "ST001", "IM1")),
    (("PA001 ", "IM1\x00"), ("PA001", "IM1")),
    ("A\\\\B\\", ("A", "B")),  # inner and trailing empty components are dropped
    ("./A", ("A",)),
])
def test_split_accepts(raw: object, components: tuple[str, ...]) -> None:
    res = split_file_id(raw)  # type: ignore[arg-type]
    assert res.ok and res.components == components


@pytest.mark.parametrize(("raw", "code"), [
    ("..\\..\\etc\\passwd", "outside-root"),
    ("A\\..\\..\\B", "outside-root"),
    (("A", "..", "B"), "outside-root"),
    ("/etc/passwd", "outside-root"),
    ("\\etc\\passwd", "outside-root"),
    ("\\\\server\\share\\x", "outside-root"),
    (("", "", "server", "share"), "outside-root"),
    ("C:\\Windows\\x", "outside-root"),
    ("c:x", "outside-root"),
    (("C:", "X"), "outside-root"),
    ("", "bad-file-id"),
    ("  \x00", "bad-file-id"),
    (None, "bad-file-id"),
    ("A\\B\x01C", "bad-file-id"),
    ("A\\B:C", "bad-file-id"),
])
def test_split_refuses(raw: object, code: str) -> None:
    res = split_file_id(raw)  # type: ignore[arg-type]
    assert not res.ok
    assert res.refused == code
    assert res.components == ()


def test_violations() -> None:
    assert file_id_violations(("PA000001", "ST000001", "SE000001", "IM000001")) == []
    assert file_id_violations(("pa001", "IM1")) == ["lowercase letters in 'pa001'"]
    assert file_id_violations(("IMAGE0001",)) == ["component 'IMAGE0001' longer than 8 characters"]
    assert file_id_violations(("IM1.DCM",)) == ["characters other than A-Z 0-9 _ in 'IM1.DCM'"]
    assert file_id_violations(tuple("ABCDEFGHI")) == ["9 components (at most 8)"]
    assert file_id_violations("A-B\\c") == ["lowercase letters in 'c'",
                                            "characters other than A-Z 0-9 _ in 'A-B'"]


def test_name_key() -> None:
    assert name_key("IM000001.;1") == "im000001"
    assert name_key("DICOMDIR;1") == "dicomdir"
    assert name_key("dicomdir.") == "dicomdir"
    assert name_key("IM1.DCM") == "im1.dcm"
    assert name_key("...") == "..."


def _listing(*names: str, dirs: tuple[str, ...] = ()) -> DirListing:
    ents = [Entry(n, False, 10) for n in names] + [Entry(d, True, 0) for d in dirs]
    return DirListing.build("", ents)


def test_find_prefers_exact_then_case_then_suffixes() -> None:
    li = _listing("IM1", "im1", "IM2.;1", "im3.dcm", "IM4.", "Im5;1", dirs=("pa001",))
    assert li.find("IM1", False).name == "IM1"  # type: ignore[union-attr]
    assert li.find("im1", False).name == "im1"  # type: ignore[union-attr]
    assert li.find("iM1", False).name == "IM1"  # type: ignore[union-attr]
    assert li.find("IM2", False).name == "IM2.;1"  # type: ignore[union-attr]
    assert li.find("IM3", False).name == "im3.dcm"  # type: ignore[union-attr]
    assert li.find("IM4", False).name == "IM4."  # type: ignore[union-attr]
    assert li.find("IM5", False).name == "Im5;1"  # type: ignore[union-attr]
    assert li.find("PA001", True).name == "pa001"  # type: ignore[union-attr]
    assert li.find("PA001", False) is None  # a folder is not a file
    assert li.find("IM1", True) is None  # and a file is not a folder
    assert li.find("IM6", False) is None


def test_find_dcm_in_the_record() -> None:
    li = _listing("IM7")
    assert li.find("IM7.DCM", False).name == "IM7"  # type: ignore[union-attr]


def test_resolver_one_listdir_per_folder(tmp_path: Path) -> None:
    for i in range(5):
        p = tmp_path / "pa001" / "st001" / f"im{i}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * (i + 1))
    listings = Listings(DirFS(tmp_path))
    res = Resolver(listings.fs, listings)
    for i in range(5):
        r = res.resolve("", ("PA001", "ST001", f"IM{i}"))
        assert r.path == f"pa001/st001/im{i}"
        assert r.entry is not None and r.entry.size == i + 1
    assert listings.listdir_calls == 3  # root, pa001, st001: each listed once
    missing = res.resolve("", "PA001\\ST001\\IM9")
    assert missing.path is None and missing.problem == "missing-file"
    assert res.resolve("pa001", "ST001\\IM0").path == "pa001/st001/im0"


def test_resolver_refuses_symlink_out_of_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "LINK")
    os.symlink(outside / "secret", root / "FILE")
    (root / "REAL").mkdir()
    (root / "REAL" / "IM1").write_bytes(b"ok")
    os.symlink(root / "REAL", root / "INSIDE")
    listings = Listings(DirFS(root))
    res = Resolver(listings.fs, listings)
    assert res.resolve("", "LINK\\SECRET").problem == "outside-root"
    assert res.resolve("", "FILE").problem == "outside-root"
    inside = res.resolve("", "INSIDE\\IM1")
    assert inside.path == "INSIDE/IM1" and inside.problem is None


def test_retry_once() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.EIO, "I/O error")
        return "ok"

    assert retry_once(flaky) == "ok" and len(calls) == 2

    def broken() -> str:
        calls.append(1)
        raise OSError(errno.EIO, "I/O error")

    calls.clear()
    with pytest.raises(OSError):
        retry_once(broken)
    assert len(calls) == 2

    def absent() -> str:
        calls.append(1)
        raise FileNotFoundError(errno.ENOENT, "gone")

    calls.clear()
    with pytest.raises(FileNotFoundError):
        retry_once(absent)
    assert len(calls) == 1  # not retried: absence is not transient


def test_listing_error_reported_once(tmp_path: Path) -> None:
    seen: list[tuple[str, BaseException]] = []
    listings = Listings(DirFS(tmp_path), on_error=lambda rel, exc: seen.append((rel, exc)))
    assert listings.get("nope") is None  # absent: silent
    assert listings.get("../x") is None  # unsafe: reported
    assert listings.get("../x") is None
    assert [rel for rel, _ in seen] == ["../x"]


def test_bulk_listing_equals_folder_by_folder(tmp_path: Path) -> None:
    """The ``find`` bulk listing (Linux) gives exactly what ``listdir`` gives, folder by folder:
    kinds, sizes, symlinks followed for their kind, dangling links, FIFOs left out; non-UTF-8
    names round-trip; a listing it cannot vouch for is refused (None)."""
    import sys

    root = tmp_path / "m"
    (root / "A" / "B").mkdir(parents=True)
    (root / "EMPTY").mkdir()
    (root / "A" / "F1").write_bytes(b"12345")
    (root / "A" / "B" / "F2").write_bytes(b"")
    (root / "A" / "B" / "new\nline").write_bytes(b"x")
    os.symlink(root / "A", root / "LINKDIR")
    os.symlink(root / "A" / "F1", root / "LINKFILE")
    os.symlink(root / "nowhere", root / "DANGLING")
    os.mkfifo(root / "FIFO")
    with open(os.fsencode(root / "A") + b"/IM\xff", "wb") as fp:
        fp.write(b"abc")
    fs = DirFS(root)
    bulk = fs.start_bulk_listing()
    if not sys.platform.startswith("linux"):
        assert bulk is None
        return
    assert bulk is not None
    got = bulk.result()
    assert got is not None
    want = {rel: sorted(fs.listdir(rel)) for rel in ("", "A", "A/B", "EMPTY")}
    assert {rel: sorted(v) for rel, v in got.items()} == want
    # an unreadable folder: find complains, the bulk listing is refused (listed one by one)
    if os.geteuid() != 0:
        (root / "A" / "B").chmod(0)
        try:
            assert fs.start_bulk_listing().result() is None  # type: ignore[union-attr]
        finally:
            (root / "A" / "B").chmod(0o755)


def test_listings_take_the_bulk_listing_and_fall_back(tmp_path: Path) -> None:
    from tests.defect_media import FaultFS

    root = tmp_path / "m"
    (root / "A").mkdir(parents=True)
    (root / "A" / "F").write_bytes(b"1")
    lst = Listings(DirFS(root))
    lst.prefetch("")
    assert lst.get("A") is not None and set(lst.get("A").entries) == {"F"}  # type: ignore[union-attr]
    lst.stop()
    errors: list[str] = []
    faulty = Listings(FaultFS(DirFS(root), bad_dirs={"A"}), on_error=lambda r, e: errors.append(r))
    faulty.prefetch("")  # no bulk listing through a wrapper: the fault is seen and reported
    assert faulty.get("A") is None and errors == ["A"]
    faulty.stop()


def test_a_failing_bulk_listing_falls_back_to_folder_listings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``find`` that complains (a scratched folder, a find without -printf): its output is not
    used and every folder is listed one by one, with the normal error reports."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "find").write_text("#!/bin/sh\necho 'find: ./A: Input/output error' >&2\n"
                               "printf 'A\\0dd\\0\\0'\nexit 1\n")
    (fake / "find").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    root = tmp_path / "m"
    (root / "A").mkdir(parents=True)
    (root / "A" / "F").write_bytes(b"1")
    fs = DirFS(root)
    bulk = fs.start_bulk_listing()
    if bulk is None:  # not Linux
        return
    assert bulk.result() is None
    lst = Listings(fs)
    lst.prefetch("")
    assert set(lst.get("A").entries) == {"F"}  # type: ignore[union-attr]
    lst.stop()
