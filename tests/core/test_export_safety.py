"""Safety: cancel, full disk, vanished source, existing medium, spanning, failed verification.

After any failure DEST must be exactly as before (no partial medium, no staging folder left) and
the sources unchanged; after success it holds the complete medium.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pydicom
import pytest

from app.core.errors import ExportError
from app.core.export import verify as export_verify
from app.core.export import worker as export_worker
from app.core.export import write as export_write
from app.core.export.engine import execute, plan_export
from app.core.export.options import ExportOptions
from app.core.jobs import Cancelled, CancelToken, Progress
from tests.conftest import require_tool
from tests.export_helpers import dciodvfy_errors, listing, medium_of, tree_hashes
from tests.media import make_dataset, uid, write_instance

CAP = 700_000_000


def _source(tmp_path: Path, n: int = 12, size: int = 32, **kw) -> Path:
    src = tmp_path / "src"
    study = uid()
    for i in range(n):
        write_instance(src / f"f{i:03d}.dcm",
                       make_dataset(size, size, StudyInstanceUID=study, **kw))
    return src


def _plan(src: Path, dest: Path, capacity: int = CAP, **kw):
    opts = ExportOptions(sources=[src], dest=dest, **kw)
    return plan_export(opts, [medium_of(src)], capacity=capacity)


def _dest_with_unrelated_file(tmp_path: Path) -> Path:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("not ours")
    return dest


def test_cancel_mid_way_leaves_dest_as_it_was(tmp_path: Path) -> None:
    src = _source(tmp_path)
    dest = _dest_with_unrelated_file(tmp_path)
    before_src, before_dest = tree_hashes(src), tree_hashes(dest)
    token = CancelToken()
    seen: list[Progress] = []

    def progress(p: Progress) -> None:
        seen.append(p)
        if p.phase == "write" and p.done_files >= 4:
            token.cancel()

    plan = _plan(src, dest)
    with pytest.raises(Cancelled):
        execute(plan, progress, token)
    assert tree_hashes(dest) == before_dest and listing(dest) == ["keep.txt"]
    assert tree_hashes(src) == before_src
    assert any(p.phase == "write" and p.total_files == 12 and p.total_bytes > 0 for p in seen)


def test_cancel_inside_a_big_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _source(tmp_path, n=2, size=256)
    dest = tmp_path / "dest"
    monkeypatch.setattr(export_write, "CHUNK", 4096)  # many chunks per file
    token = CancelToken()
    calls = {"n": 0}
    real = export_write._kernel_copy

    def counting(*a, **kw):  # cancel after the first chunk of the first file
        def on_bytes(n: int) -> None:
            calls["n"] += 1
            token.cancel()
        return real(a[0], a[1], a[2], a[3], a[4], on_bytes)

    monkeypatch.setattr(export_write, "_kernel_copy", counting)
    with pytest.raises(Cancelled):
        execute(_plan(src, dest, verify=False), None, token)
    assert 1 <= calls["n"] <= 2  # stopped after one chunk (per copy thread), not 32 chunks
    assert not dest.exists()


def test_full_disk_injected_enospc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _source(tmp_path)
    dest = _dest_with_unrelated_file(tmp_path)
    before = tree_hashes(dest)
    real = export_write.copy_file
    count = {"n": 0}

    def failing(*a, **kw):
        count["n"] += 1
        if count["n"] == 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(a[1]))
        return real(*a, **kw)

    monkeypatch.setattr("app.core.export.engine.copy_file", failing)
    with pytest.raises(ExportError, match="full"):
        execute(_plan(src, dest))
    assert tree_hashes(dest) == before and listing(dest) == ["keep.txt"]


def test_full_disk_in_a_header_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _source(tmp_path, n=3, StudyID="")  # every file needs a Study ID: header splices
    dest = tmp_path / "dest"
    plan = _plan(src, dest)
    assert {f.action for f in plan.files} == {"splice"}
    real = export_write.copy_file
    count = {"n": 0}

    def failing(*a, **kw):
        count["n"] += 1
        if count["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(a[1]))
        return real(*a, **kw)

    monkeypatch.setattr("app.core.export.engine.copy_file", failing)
    with pytest.raises(ExportError, match="full"):
        execute(plan)
    assert not dest.exists()


def test_full_disk_in_a_rewrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An ID clash resolved by a new ID edits Other Patient IDs Sequence: a pydicom rewrite.
    src = tmp_path / "src"
    for n, name in enumerate(("Anna^A", "Berta^B", "Carla^C")):
        write_instance(src / f"f{n}.dcm", make_dataset(PatientID="X", PatientName=name))
    dest = tmp_path / "dest"
    plan = _plan(src, dest, on_id_clash="separate")
    assert "rewrite" in {f.action for f in plan.files}
    real = export_worker.process_file
    count = {"n": 0}

    def failing(job):
        count["n"] += 1
        if count["n"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device", job.dest)
        return real(job)

    monkeypatch.setattr(export_worker, "process_file", failing)
    with pytest.raises(ExportError, match="full"):
        execute(plan)
    assert not dest.exists()


def test_full_real_tmpfs(tmp_path: Path) -> None:
    """A real tiny filesystem (root only: mount a 200 KiB tmpfs)."""
    src = _source(tmp_path, n=8, size=128)  # 8 x 32 KiB
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mnt)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        dest = mnt / "dest"
        # The plan uses a made-up capacity so that only the real disk can be full.
        with pytest.raises(ExportError, match="full"):
            execute(_plan(src, dest))
        assert listing(mnt) == []  # DEST did not exist before, and does not now
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_vanished_source(tmp_path: Path) -> None:
    src = _source(tmp_path)
    dest = tmp_path / "dest"
    plan = _plan(src, dest)
    victim = sorted(src.iterdir())[5]
    victim.unlink()
    with pytest.raises(ExportError, match=f"{victim.name}.*vanished"):
        execute(plan)
    assert not dest.exists()  # it did not exist before: DEST is as it was


def test_existing_medium_needs_force_and_is_replaced_atomically(tmp_path: Path) -> None:
    src = _source(tmp_path, n=4)
    dest = _dest_with_unrelated_file(tmp_path)
    assert execute(_plan(src, dest)).ok
    first = tree_hashes(dest)
    first_uid = pydicom.dcmread(dest / "DICOMDIR", stop_before_pixels=True) \
        .file_meta.MediaStorageSOPInstanceUID
    src2 = _source(tmp_path / "two", n=2)
    with pytest.raises(ExportError, match="--force"):
        execute(_plan(src2, dest))
    assert tree_hashes(dest) == first
    report = execute(_plan(src2, dest, force=True))
    assert report.ok
    files = [p for p in listing(dest) if "/IM" in p]
    assert len(files) == 2
    assert (dest / "keep.txt").read_text() == "not ours"
    new_uid = pydicom.dcmread(dest / "DICOMDIR", stop_before_pixels=True) \
        .file_meta.MediaStorageSOPInstanceUID
    assert new_uid != first_uid  # a new File-set UID per medium
    assert not [p for p in listing(dest) if p.startswith(".discbridge")]


def test_failed_verification_leaves_dest_untouched(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    src = _source(tmp_path, n=4)
    dest = _dest_with_unrelated_file(tmp_path)
    real = export_verify.read_back

    def corrupt(path: Path):
        digest, size, head = real(path)
        if path.parent.name == "SE002":
            digest = "0" * 64
        return digest, size, head

    monkeypatch.setattr(export_verify, "read_back", corrupt)
    report = execute(_plan(src, dest, verify=True))
    assert not report.ok
    assert any("SE002/IM000001" in f and "SHA-256" in f for f in report.verification.failures), \
        report.verification.failures
    assert listing(dest) == ["keep.txt"]
    assert any("VERIFICATION FAILED" in line for line in report.summary_lines())


def test_spanning_writes_self_contained_volumes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for s in range(3):
        study = uid()
        for _i in range(4):
            write_instance(src / f"s{s}_{_i}.dcm",
                           make_dataset(64, 64, StudyInstanceUID=study, StudyDate=f"2024010{s + 1}"))
    dest = tmp_path / "dest"
    plan = _plan(src, dest, capacity=70_000, span=True)
    report = execute(plan)
    assert report.ok
    names = [v.name for v in plan.volumes]
    assert len(names) >= 2 and sorted(os.listdir(dest)) == names
    dciodvfy = require_tool("dciodvfy")
    seen_studies: dict[str, str] = {}
    for vol, res in zip(plan.volumes, report.volumes, strict=True):
        root = dest / vol.name
        assert (root / "DICOMDIR").is_file() and (root / "README.TXT").is_file()
        assert b"volume" in (root / "README.TXT").read_bytes()
        assert dciodvfy_errors(dciodvfy, root / "DICOMDIR") == set()
        assert res.path == str(root) and res.files == len(vol.files)
        for s in res.studies:
            seen_studies[s["study_uid"]] = vol.name
        ds = pydicom.dcmread(root / "DICOMDIR")
        assert ds.FileSetID == vol.fileset_id
    assert len(seen_studies) == 3
    text = "\n".join(report.summary_lines())
    assert "VOL01" in text and "study 20240101" in text


def test_portable_copy_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without copy_file_range/sendfile (macOS, Windows) copies use a read/write loop."""
    src = tmp_path / "a.bin"
    src.write_bytes(bytes(range(256)) * 5000)
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    monkeypatch.setattr(export_write.sys, "platform", "darwin")
    monkeypatch.setattr(export_write, "CHUNK", 3000)
    got: list[int] = []
    export_write.copy_file(src, tmp_path / "b.bin", prefix=b"HEAD", offset=10,
                           on_bytes=got.append)
    assert (tmp_path / "b.bin").read_bytes() == b"HEAD" + src.read_bytes()[10:]
    assert sum(got) == src.stat().st_size - 10 and len(got) > 1


def test_progress_protocol_phases_files_and_bytes(tmp_path: Path) -> None:
    src = _source(tmp_path, n=6, StudyID="")  # rewrites too (worker path)
    seen: list[Progress] = []
    opts = ExportOptions(sources=[src], dest=tmp_path / "dest")
    plan = plan_export(opts, [medium_of(src)], capacity=CAP, progress=seen.append)
    report = execute(plan, seen.append, CancelToken())
    assert report.ok
    phases = [p.phase for p in seen]
    order = [ph for i, ph in enumerate(phases) if i == 0 or phases[i - 1] != ph]
    for wanted in ("plan", "stage", "write", "dicomdir", "verify"):
        assert wanted in order
    assert order.index("plan") < order.index("stage") < order.index("write") \
        < order.index("verify")
    writes = [p for p in seen if p.phase == "write" and p.total_files]
    assert writes[-1].done_files == writes[-1].total_files == 6
    assert writes[-1].total_bytes > 0 and writes[-1].fraction is not None
    verifies = [p for p in seen if p.phase == "verify"]
    assert verifies[-1].done_files == verifies[-1].total_files == 8  # + README, DICOMDIR
    assert verifies[-1].done_bytes == verifies[-1].total_bytes > 0
    assert all(p.cancellable for p in seen)


def test_cancel_while_transcoding_on_the_pool(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for n in range(12):
        ds = make_dataset(64, 64)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"  # Implicit VR: transcoded
        write_instance(src / f"i{n}.dcm", ds)
    dest = _dest_with_unrelated_file(tmp_path)
    token = CancelToken()

    def progress(p: Progress) -> None:
        if p.phase == "write" and p.done_files >= 1:
            token.cancel()

    plan = _plan(src, dest)
    assert {f.action for f in plan.files} == {"transcode"}
    with pytest.raises(Cancelled):
        execute(plan, progress, token)
    assert listing(dest) == ["keep.txt"]


def test_burn_cannot_span(tmp_path: Path) -> None:
    src = _source(tmp_path, n=2)
    with pytest.raises(ExportError, match="--span"):
        _plan(src, tmp_path / "d", burn="stdio:/dev/null", span=True)


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="Linux read-back path")
def test_read_back_drops_the_page_cache_of_every_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    src = _source(tmp_path, n=3)
    real = os.posix_fadvise
    dropped: list[int] = []

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        if advice == os.POSIX_FADV_DONTNEED:
            dropped.append(fd)
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    report = execute(_plan(src, tmp_path / "dest"))
    assert report.ok and report.verification.files == 5
    assert len(dropped) == 5  # 3 files + README.TXT + DICOMDIR, each read from the device


def test_copy_starts_writeback_over_every_byte_and_flush_still_syncs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each copied chunk's writeback is started (ranges cover the new file exactly once, the
    new header included); the flush still syncs (syncfs, or os.sync when it is unavailable)."""
    src = tmp_path / "src.bin"
    body = bytes(range(256)) * 4000  # 1,024,000 bytes
    src.write_bytes(body)
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(export_write, "CHUNK", 300_000)
    monkeypatch.setattr(export_write, "start_writeback",
                        lambda fd, offset=0, nbytes=0: calls.append((offset, nbytes)))
    dst = tmp_path / "out" / "copy.bin"
    dst.parent.mkdir()
    export_write.copy_file(src, dst, prefix=b"HEAD" * 33, offset=1000)
    assert dst.read_bytes() == b"HEAD" * 33 + body[1000:]
    pos = 0
    for offset, nbytes in calls:
        assert offset == pos and nbytes > 0
        pos += nbytes
    assert pos == dst.stat().st_size and len(calls) == 4  # 1,023,000 bytes in 300,000 chunks
    synced: list[str] = []
    monkeypatch.setattr(export_write, "_syncfs", lambda root: False)
    monkeypatch.setattr(os, "sync", lambda: synced.append("sync"))
    export_write.flush_tree(tmp_path / "out")
    assert synced == ["sync"]


def test_syncfs_and_writeback_run_for_real(tmp_path: Path) -> None:
    """On Linux the libc calls are found and succeed; elsewhere they are skipped (no-ops)."""
    import sys

    path = tmp_path / "f.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        os.write(fd, b"x" * 100_000)
        export_write.start_writeback(fd)
    finally:
        os.close(fd)
    assert export_write._syncfs(tmp_path) is sys.platform.startswith("linux")
    assert export_write._syncfs(tmp_path / "missing") is False
    export_write.flush_tree(tmp_path)
