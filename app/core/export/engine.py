"""Export: plan → stage → write → DICOMDIR → flush → verify → install (→ ISO → burn).

The one export engine of the command line and the window: :func:`run_export` (plan and write),
:func:`execute_and_report` (write a plan and save its report, whatever happens: the wizard's
child process calls it), :func:`execute`, :func:`plan_export`. The pieces live beside it in
``app.core.export``: ``plan`` (decisions and sizes), ``identity`` (Patient IDs and Type 1
values), ``uids`` and ``values`` (invalid values made valid), ``fixes`` (Original Attributes
Sequence), ``transcode`` and ``worker`` (per-file work on worker processes, which return plain
data), ``write`` (staging, copies, flush, atomic install), ``finish`` (README.TXT, DICOMDIR,
ISO, burn), ``verify``, ``report``, ``readme_txt``.

Safety (issue 3 item 4): sources are only read; everything is written into a staging folder
inside DEST and moved into place at the end (the DICOMDIR last); cancel, any error, a full disk
or a vanished source remove the staging folder and leave DEST as it was; the data is flushed
(``os.sync`` + directory fsync) before verification and before "done".
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from app.core.errors import DiscBridgeError, ExportError
from app.core.export.finish import finish_volume, iso_and_burn, prebuild_dicomdirs
from app.core.export.options import ExportOptions
from app.core.export.plan import (
    ExportPlan,
    PlannedFile,
    Volume,
    dest_label,
    gc_paused,
    plan_export,
)
from app.core.export.report import ExportReport, Verification, VolumeResult
from app.core.export.transcode import FileResult, warning_lines
from app.core.export.verify import Expected, verify_bytes, verify_records
from app.core.export.worker import run_file_jobs
from app.core.export.write import (
    copy_file,
    copy_stream,
    flush_tree,
    hash_source,
    install,
    make_staging,
    medium_entries,
    remove_tree,
)
from app.core.jobs import Cancelled, CancelToken, Progress, ProgressCallback, Throttle

COPY_THREADS = 2

__all__ = ["ExportPlan", "ExportReport", "execute", "execute_and_report", "new_report",
           "plan_export", "run_export"]


def run_export(options: ExportOptions, progress: ProgressCallback | None = None,
               cancel: CancelToken | None = None) -> ExportReport:
    """Plan and carry out an export; write the JSON report. See :func:`execute_and_report`.

    Raises
    ------
    ExportError
        Nothing was written (bad options, refused instances, ID clash, no study date, too big,
        full disk, vanished source, ...): the message says why, naming the file.
    Cancelled
        Cancelled by the token; DEST was left as it was.
    """
    cancel = cancel or CancelToken()
    t0 = time.monotonic()
    plan = plan_export(options, progress=progress, cancel=cancel)
    return execute_and_report(plan, progress, cancel, plan_seconds=time.monotonic() - t0)


def new_report(plan: ExportPlan) -> ExportReport:
    """The report of ``plan`` before anything is written (``ok`` False until done)."""
    opts = plan.options
    return ExportReport(ok=False, dest=str(opts.dest) if opts.dest else None,
                        profile=plan.profile.name, media=plan.media_type,
                        fileset_id=plan.fileset_id, changes=list(plan.changes),
                        transcodings=[t.to_dict() for t in plan.transcodings],
                        problems=[str(p) for p in plan.problems],
                        warnings=list(plan.warnings), skipped=list(plan.skipped))


def execute_and_report(plan: ExportPlan, progress: ProgressCallback | None = None,
                       cancel: CancelToken | None = None, *, plan_seconds: float = 0.0,
                       crash_log: bool = False) -> ExportReport:
    """Write ``plan`` (see :func:`execute`) and save its JSON report, whatever happens.

    The one way the command line and the window run an export. Every warning raised meanwhile
    (pydicom's, the codecs', in this process or a worker) goes to the report, never to stderr.
    A failed or cancelled export saves its report too (``ok`` false, ``error`` saying why) and
    re-raises; the error then carries ``report_path`` and, with ``crash_log`` (the window),
    ``log_path``: the crash log holding the traceback of anything but a cancel.
    """
    cancel = cancel or CancelToken()
    t0 = time.monotonic() - plan_seconds
    report = new_report(plan)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                execute(plan, progress, cancel, report=report)
            finally:
                report.warnings.extend(_warning_lines(caught))
    except BaseException as exc:
        report.ok = False
        if isinstance(exc, Cancelled | KeyboardInterrupt):
            report.error = "cancelled by the user; the destination was left as it was"
        else:
            report.error = str(exc) or type(exc).__name__
            if not isinstance(exc, DiscBridgeError):
                report.error = f"{type(exc).__name__}: {report.error}"
        _timings(report, plan_seconds, t0)
        path = _save(report, plan.options.report)
        log_path = None
        if crash_log and not isinstance(exc, Cancelled | KeyboardInterrupt):
            from app.core.crashlog import write_crash_log

            log_path = write_crash_log("export failed", type(exc), exc, exc.__traceback__)
        with contextlib.suppress(AttributeError, TypeError):
            exc.report_path = path  # type: ignore[attr-defined]
            exc.log_path = log_path  # type: ignore[attr-defined]
        raise
    _timings(report, plan_seconds, t0)
    _save(report, plan.options.report)
    return report


def _timings(report: ExportReport, plan_seconds: float, t0: float) -> None:
    if plan_seconds:
        report.timings["plan"] = plan_seconds
    report.timings["total"] = time.monotonic() - t0


def _save(report: ExportReport, where: Path | None) -> Path | None:
    try:
        return report.write(where)
    except OSError as exc:
        report.warnings.append(f"{where or 'report'}: the JSON report could not be written "
                               f"({exc.strerror or exc})")
        return None


def _warning_lines(caught: list[warnings.WarningMessage]) -> list[str]:
    return [f"while exporting: {line}" for line in warning_lines(caught)]


def execute(plan: ExportPlan, progress: ProgressCallback | None = None,
            cancel: CancelToken | None = None, *,
            report: ExportReport | None = None) -> ExportReport:
    """Write ``plan`` (see the module docstring for the guarantees). Returns the report
    (``report``, when given, is filled in: it then holds what was done even when this
    raises); ``report.ok`` is False when verification failed (DEST then left as it was)."""
    cancel = cancel or CancelToken()
    opts = plan.options
    report = report if report is not None else new_report(plan)
    temp_root: Path | None = None
    if opts.iso is not None or opts.burn is not None:
        if opts.iso is not None and opts.iso.exists() and not opts.force:
            raise ExportError(f"{opts.iso}: exists already; use --force to replace it")
        if opts.dest is None:
            base = opts.iso.parent if opts.iso is not None else Path(tempfile.gettempdir())
            base.mkdir(parents=True, exist_ok=True)
            temp_root = Path(tempfile.mkdtemp(prefix=".discbridge-iso-", dir=base))
        dest = temp_root / "medium" if temp_root is not None else Path(opts.dest)  # type: ignore[arg-type]
    elif opts.dest is None:
        raise ExportError("export needs a destination: --to DEST, --iso FILE or --burn DEVICE")
    else:
        dest = Path(opts.dest)
    try:
        with gc_paused():  # the DICOMDIR thread builds 4,000 headers while the copies run
            expected = _write_medium(plan, dest, report, progress, cancel)
        if report.ok and (opts.iso is not None or opts.burn is not None):
            iso_and_burn(plan, dest, expected, report, progress, cancel, temp_root)
    finally:
        if temp_root is not None:
            remove_tree(temp_root)
    return report


def _top_names(vol_root: Path) -> list[str]:
    names = sorted(n for n in os.listdir(vol_root) if n != "DICOMDIR")
    return names + ["DICOMDIR"]


def _write_medium(plan: ExportPlan, dest: Path, report: ExportReport,
                  progress: ProgressCallback | None,
                  cancel: CancelToken) -> dict[int, list[Expected]]:
    opts = plan.options
    spanning = len(plan.volumes) > 1
    ours = [v.name for v in plan.volumes] if spanning else ["DICOMDIR", "README.TXT"]
    existing = medium_entries(dest, ours)
    if existing and not opts.force:
        raise ExportError(f"{dest}: holds a medium already ({', '.join(existing[:5])}); "
                          "nothing was written. Use --force to replace it.")
    t_start = time.monotonic()
    _emit(progress, Progress("stage", message=f"preparing {dest}"))
    created_dest = not dest.exists()
    try:
        staging = make_staging(dest)
    except OSError as exc:
        raise ExportError(f"{dest}: cannot write here ({exc.strerror or exc})") from exc
    timings = report.timings
    expected: dict[int, list[Expected]] = {}
    side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-dicomdir")
    try:
        # Copies only: the DICOMDIRs depend on the plan alone; build them while copying.
        prebuilt: Future[dict[int, bytes] | None] = side.submit(prebuild_dicomdirs, plan,
                                                                cancel)
        results = _write_files(plan, staging, progress, cancel)
        timings["write"] = time.monotonic() - t_start
        _sync_skipped(plan, report)
        for f in (f for v in plan.volumes for f in v.files):
            res = results.get(f.sop_uid)
            if res is not None and res.warnings:
                report.warnings.extend(f"{f.src.label}: {w}" for w in res.warnings)
        report.worker_processes = len({r.worker_pid for r in results.values()} - {os.getpid()})
        t = time.monotonic()
        ready = prebuilt.result() or {}
        for v in plan.volumes:
            cancel.raise_if_cancelled()
            expected[v.index] = finish_volume(plan, v, staging, results, progress, cancel,
                                              ready.get(v.index))
        timings["dicomdir"] = time.monotonic() - t
        t = time.monotonic()
        _emit(progress, Progress("write", message="flushing to the device"))
        flush_tree(staging)
        timings["flush"] = time.monotonic() - t
        ver = Verification()
        if opts.verify:
            t = time.monotonic()
            ver.checked = True
            for v in plan.volumes:
                root = staging / v.name if v.name else staging
                exp = expected[v.index]
                t_read = time.monotonic()
                fails, nbytes = verify_bytes(root, exp, progress=progress, cancel=cancel)
                timings["verify_read"] = timings.get("verify_read", 0.0) + (
                    time.monotonic() - t_read)
                t_rec = time.monotonic()
                fails += verify_records(root, exp, cancel=cancel)
                timings["verify_records"] = timings.get("verify_records", 0.0) + (
                    time.monotonic() - t_rec)
                prefix = f"{v.name}/" if v.name else ""
                ver.failures.extend(prefix + f for f in fails)
                ver.files += len(exp)
                ver.bytes += nbytes
            ver.seconds = timings["verify"] = time.monotonic() - t
        report.verification = ver
        if not ver.ok:
            report.error = ("the written medium did not verify; nothing was put in place "
                            f"at {dest}")
            return expected
        cancel.raise_if_cancelled()
        t = time.monotonic()
        top = [v.name for v in plan.volumes] if spanning else _top_names(staging)
        install(staging, dest, top, replace=existing)  # renames, then fsync of DEST
        timings["install"] = time.monotonic() - t
    except (Cancelled, DiscBridgeError):
        _drop_if_created(dest, created_dest)
        raise
    except OSError as exc:
        _drop_if_created(dest, created_dest)
        raise ExportError(_os_message(exc, dest)) from exc
    except Exception as exc:  # a bug or hostile bytes pydicom chokes on: still clean up, say so
        _drop_if_created(dest, created_dest)
        raise ExportError(f"export failed ({type(exc).__name__}: {' '.join(str(exc).split())});"
                          f" nothing was left behind, {dest} is as it was") from exc
    finally:
        side.shutdown(wait=True, cancel_futures=True)
        remove_tree(staging)
        if not report.ok:
            _drop_if_created(dest, created_dest)
    for v in plan.volumes:
        path = dest / v.name if v.name else dest
        report.volumes.append(VolumeResult(str(path), v.fileset_id, _studies_of(v),
                                           len(v.files), _volume_bytes(path, v)))
    report.ok = True
    timings["total_write"] = time.monotonic() - t_start
    return expected


def _sync_skipped(plan: ExportPlan, report: ExportReport) -> None:
    """The report names what the plan left out while writing; the changes and re-encodings of
    files that are not on the medium are no longer listed as made."""
    report.skipped.extend(plan.skipped[len(report.skipped):])
    on_medium = {f.src.label for f in plan.files}
    report.transcodings = [t for t in report.transcodings if t.get("source") in on_medium]
    kept = {dest_label(f, plan.volumes) for f in plan.files}  # as the plan named the changes
    report.changes = [c for c in report.changes if c.file in kept]


def _drop_if_created(dest: Path, created: bool) -> None:
    """Remove DEST again when this export created it and left it empty (DEST as it was)."""
    if created:
        with contextlib.suppress(OSError):
            if dest.is_dir() and not [n for n in os.listdir(dest)
                                      if not n.startswith(".discbridge-")]:
                remove_tree(dest)


def _volume_bytes(root: Path, v: Volume) -> int:
    total = 0
    for rel in [f.file_id for f in v.files] + [("DICOMDIR",), ("README.TXT",)]:
        with contextlib.suppress(OSError):
            total += root.joinpath(*rel).stat().st_size
    return total


def _studies_of(v: Volume) -> list[dict[str, str | None]]:
    seen: dict[str, dict[str, str | None]] = {}
    for f in v.files:
        uid = f.value("StudyInstanceUID") or ""
        if uid not in seen:
            seen[uid] = {"study_uid": uid, "patient_id": f.value("PatientID"),
                         "study_date": f.value("StudyDate"),
                         "description": f.value("StudyDescription"),
                         "first_file": "/".join(f.file_id[:2])}
    return list(seen.values())


def _os_message(exc: OSError, dest: Path) -> str:
    name = exc.filename or ""
    if exc.errno == errno.ENOSPC:
        return (f"{dest}: the destination is full (no space left while writing {name}); "
                "nothing was left behind, DEST is as it was")
    if isinstance(exc, FileNotFoundError):
        return (f"{name}: a source file vanished while exporting (medium removed?); "
                "nothing was left behind, DEST is as it was")
    return f"{name or dest}: {exc.strerror or exc}; nothing was left behind, DEST is as it was"


def _emit(progress: ProgressCallback | None, p: Progress) -> None:
    if progress is not None:
        progress(p)


def _dest_path(staging: Path, plan: ExportPlan, f: PlannedFile) -> Path:
    v = plan.volumes[f.volume]
    root = staging / v.name if v.name else staging
    return root.joinpath(*f.file_id)


def _write_files(plan: ExportPlan, staging: Path, progress: ProgressCallback | None,
                 cancel: CancelToken) -> dict[str, FileResult]:
    """Write every file into ``staging``; returns the result per SOP Instance UID.

    Rewrites/transcodes/icons start first on the worker pool (a helper thread feeds it) while
    this thread does the kernel copies; the SHA-256 of each copied file (for verification) is
    computed from the source on a hashing thread, overlapped with the copies.
    """
    want_hash = plan.options.verify or plan.options.iso is not None or plan.options.burn is not None
    files = [f for v in plan.volumes for f in v.files]
    total_bytes = sum(f.est_size for f in files)
    dirs = {_dest_path(staging, plan, f).parent for f in files}
    for d in sorted(dirs):
        d.mkdir(parents=True, exist_ok=True)
    report = Throttle(progress) if progress is not None else None
    state = {"files": 0, "bytes": 0}
    lock = threading.Lock()

    last = [0.0]

    def tick(nbytes: int = 0, file_done: bool = False) -> None:
        with lock:
            state["bytes"] += nbytes
            if file_done:
                state["files"] += 1
            if report is None:
                return
            now = time.monotonic()
            final = state["files"] == len(files)
            if final or now - last[0] >= 0.05:  # no Progress object per file when too soon
                last[0] = now
                report(Progress("write", state["files"], len(files), state["bytes"],
                                total_bytes, message="writing files"), force=final)

    results: dict[str, FileResult] = {}
    left_out: list[tuple[PlannedFile, str]] = []
    heavy = [f for f in files if f.action in ("rewrite", "transcode")]
    icons = [f for f in files if plan.icon_size and f.record_type == "IMAGE"
             and "Rows" in f.src and f.action in _COPIED]
    inner = CancelToken()  # stops the pool thread on cancel or on an error here
    pool_out: dict[str, object] = {}

    def skip(f: PlannedFile, err: ExportError) -> None:  # --skip-unexportable: left out, named
        with lock:
            left_out.append((f, str(err)))
        tick(0, True)

    def pool_work() -> None:
        try:
            pool_out["results"] = run_file_jobs(
                plan, heavy, icons, lambda f: str(_dest_path(staging, plan, f)), want_hash,
                inner, lambda f, r: tick(r.size, True),
                on_skip=skip if plan.options.skip_unexportable else None)
        except BaseException as exc:  # handed to the main thread
            pool_out["error"] = exc

    worker = threading.Thread(target=pool_work, name="export-pool", daemon=True) \
        if heavy or icons else None
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-hash")
    hashes: dict[str, Future[str]] = {}
    copies = [f for f in files if f.action in _COPIED]

    def copy(f: PlannedFile) -> None:
        if cancel.cancelled or "error" in pool_out:
            return
        res = _copy_one(f, _dest_path(staging, plan, f), cancel, tick)
        if want_hash and res.sha256 is None and f.src.local is not None:
            prefix, offset = _prefix_and_offset(f)
            hashes[f.sop_uid] = hasher.submit(hash_source, f.src.local, prefix, offset)
        results[f.sop_uid] = res
        tick(0, True)

    try:
        if worker is not None:
            worker.start()
        threads = _copy_threads(plan)
        if threads == 1:
            for f in copies:
                copy(f)
        else:  # kernel copies release the GIL: a few in flight keep the device busy
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="export-copy") as ex:
                window: list[Future[None]] = []
                for f in copies:
                    window.append(ex.submit(copy, f))
                    if len(window) >= 4 * threads:
                        window.pop(0).result()
                for fut in window:
                    fut.result()
        while worker is not None and worker.is_alive():
            if cancel.cancelled:
                inner.cancel()
            worker.join(0.1)
        cancel.raise_if_cancelled()
        if "error" in pool_out:
            raise pool_out["error"]  # type: ignore[misc]
        for uid, fut in hashes.items():
            results[uid].sha256 = fut.result()
    except BaseException:
        inner.cancel()
        if worker is not None:
            worker.join()
        raise
    finally:
        hasher.shutdown(wait=True, cancel_futures=True)
    done: dict[str, FileResult] = pool_out.get("results", {})  # type: ignore[assignment]
    for uid, res in done.items():
        if uid in results:
            results[uid].icon = res.icon  # icon-only job of a copied file
        else:
            results[uid] = res
    if left_out:
        _leave_out(plan, left_out)
    return results


def _leave_out(plan: ExportPlan, left_out: list[tuple[PlannedFile, str]]) -> None:
    """Files whose conversion failed, with --skip-unexportable: off the plan (so neither the
    DICOMDIR nor verification expects them), named in the plan's ``skipped``."""
    gone = {f.sop_uid for f, _why in left_out}
    for v in plan.volumes:
        v.files = [f for f in v.files if f.sop_uid not in gone]
    plan.files = [f for f in plan.files if f.sop_uid not in gone]
    for p in plan.patients:
        for st in p.studies:
            for se in st.series:
                se.files = [f for f in se.files if f.sop_uid not in gone]
    plan.skipped.extend((f.src.label, why.removeprefix(f"{f.src.label}: ")) for f, why in left_out)
    if not plan.files:  # nothing left to write: a refusal, not an empty medium
        shown = "; ".join(f"{f}: {why}" for f, why in plan.skipped[:20])
        raise ExportError(f"nothing to export: all {len(plan.skipped)} instance(s) cannot be "
                          f"exported ({plan.profile.name}): {shown}")


_COPIED = ("copy", "meta", "splice")  # written from the source by the kernel, not a worker


def _prefix_and_offset(f: PlannedFile) -> tuple[bytes, int]:
    """New bytes written first, and where in the source the kernel copy starts."""
    if f.action == "splice" and f.splice is not None:
        return f.splice.prefix, f.splice.offset
    if f.action == "meta":
        return f.meta_bytes or b"", f.src.body_offset
    return b"", 0


def _copy_threads(plan: ExportPlan) -> int:
    """Copy threads: 2 from disks and folders; 1 from optical discs and .iso images, where
    interleaved reads would make the drive seek."""
    from app.core.devices.capacity import filesystem_type

    for m in plan.media:
        root = Path(m.root)
        if not root.is_dir():
            return 1  # an .iso image (read through its fs)
        try:
            kind = (filesystem_type(root) or "").lower()
        except Exception:  # noqa: BLE001 - unknown: be gentle with the device
            return 1
        if kind in ("iso9660", "udf", "cd9660", "cdfs", "cdrom") or kind.startswith("fuse"):
            return 1
    return COPY_THREADS


def _copy_one(f: PlannedFile, dst: Path, cancel: CancelToken,
              on_bytes: Callable[[int], None]) -> FileResult:
    """Kernel copy (local sources; hashed later from the source) or a hashed stream (.iso)."""
    src = f.src
    prefix, offset = _prefix_and_offset(f)
    try:
        if src.local is not None:
            digest = copy_file(src.local, dst, cancel=cancel, on_bytes=on_bytes,
                               want_hash=False, prefix=prefix, offset=offset)
        else:
            assert src.medium.fs is not None
            with src.medium.fs.open(src.rel) as fin:
                digest = copy_stream(fin, dst, cancel=cancel, on_bytes=on_bytes, prefix=prefix,
                                     offset=offset)
    except FileNotFoundError as exc:
        raise ExportError(f"{src.label}: the source file vanished while exporting "
                          "(medium removed?); nothing was left behind, DEST is as it was"
                          ) from exc
    # The record's header is made from the plan later (copy_header), not on a copy thread.
    return FileResult(len(prefix) + src.size - offset, digest, None, None)
