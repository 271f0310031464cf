"""Running the per-file pydicom work of an export on every core.

Rewrites (Type 1 fixes), transcodes and icons go to a ``ProcessPoolExecutor`` (forkserver
workers, spawn on Windows: never a fork of the threaded CLI/GUI process) with one worker per core; a handful of jobs run in
this process (starting workers would cost more). Cancel is checked between results; pending jobs
are dropped at once. Any worker failure becomes an ExportError naming the source file.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, ProcessPoolExecutor, wait
from typing import TYPE_CHECKING

from app.core.errors import DiscBridgeError, ExportError
from app.core.export.transcode import FileJob, FileResult, process_file
from app.core.jobs import CancelToken

if TYPE_CHECKING:
    from app.core.export.plan import ExportPlan, PlannedFile

IN_PROCESS_MAX = 6  # fewer jobs than this run here, without a pool


def _job(plan: ExportPlan, f: PlannedFile, dest: str | None, want_hash: bool) -> FileJob:
    src = f.src
    if src.local is not None:
        source: str | bytes = str(src.local)
    else:
        assert src.medium.fs is not None
        with src.medium.fs.open(src.rel) as fp:
            source = fp.read()
    icon = plan.icon_size if (plan.icon_size and f.record_type == "IMAGE"
                              and "Rows" in src) else None
    return FileJob(source=source, dest=dest, source_ts=f.source_ts, target_ts=f.target_ts,
                   fixes=dict(f.fixes), other_patient_id=f.other_patient_id, when=plan.created,
                   icon_size=icon, want_hash=want_hash)


def _fail(f: PlannedFile, exc: BaseException) -> ExportError:
    if isinstance(exc, FileNotFoundError) and exc.filename and \
            str(exc.filename) == str(f.src.local):
        return ExportError(f"{f.src.label}: the source file vanished while exporting "
                           "(medium removed?); nothing was left behind, DEST is as it was")
    if isinstance(exc, OSError):
        import errno

        if exc.errno == errno.ENOSPC:
            return ExportError("the destination is full (no space left while writing "
                               f"{exc.filename or f.rel}); nothing was left behind, DEST is as "
                               "it was")
        return ExportError(f"{f.src.label}: {exc.strerror or exc}; nothing was left behind")
    if isinstance(exc, DiscBridgeError):
        return ExportError(f"{f.src.label}: {exc}")
    detail = " ".join(str(exc).split())
    return ExportError(f"{f.src.label}: cannot be converted for this medium "
                       f"({type(exc).__name__}: {detail}); nothing of it was written")


def run_file_jobs(plan: ExportPlan, heavy: list[PlannedFile], icons: list[PlannedFile],
                  dest_of: Callable[[PlannedFile], str], want_hash: bool, cancel: CancelToken,
                  on_done: Callable[[PlannedFile, FileResult], None],
                  on_skip: Callable[[PlannedFile, ExportError], None] | None = None,
                  ) -> dict[str, FileResult]:
    """Run rewrite/transcode jobs (``heavy``) and icon-only jobs; results by SOP Instance UID.

    A job that fails stops the export (an ExportError naming the file), except with
    ``on_skip``: a failure of that file alone (its bytes cannot be converted; not a full disk
    or a vanished source) is handed to ``on_skip`` and the other files go on.
    """
    work = [(f, dest_of(f)) for f in heavy] + [(f, None) for f in icons]
    results: dict[str, FileResult] = {}
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    # Workers re-import __main__ (a frozen build starts its own executable instead, which
    # multiprocessing.freeze_support() in packaging/discbridge_main.py turns into a worker).
    poolable = bool(getattr(sys, "frozen", False)) or main_file is None \
        or os.path.exists(main_file)
    if len(work) < IN_PROCESS_MAX or not poolable:
        for f, dest in work:
            cancel.raise_if_cancelled()
            try:
                res = process_file(_job(plan, f, dest, want_hash))
            except Exception as exc:  # noqa: BLE001 - turned into an ExportError naming the file
                if on_skip is not None and not isinstance(exc, OSError | BrokenExecutor):
                    on_skip(f, _fail(f, exc))
                    continue
                raise _fail(f, exc) from exc
            results[f.sop_uid] = res
            if dest is not None:
                on_done(f, res)
        return results
    workers = max(1, os.cpu_count() or 1)
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        pending: dict[Future[FileResult], tuple[PlannedFile, str | None]] = {}
        queue = iter(work)
        window = workers * 4
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < window:
                nxt = next(queue, None)
                if nxt is None:
                    exhausted = True
                    break
                f, dest = nxt
                pending[pool.submit(process_file, _job(plan, f, dest, want_hash))] = (f, dest)
            if not pending:
                break
            done, _ = wait(list(pending), timeout=0.2, return_when=FIRST_COMPLETED)
            cancel.raise_if_cancelled()
            for fut in done:
                f, dest = pending.pop(fut)
                try:
                    res = fut.result()
                except Exception as exc:  # noqa: BLE001 - as above
                    if on_skip is not None and not isinstance(exc, OSError | BrokenExecutor):
                        on_skip(f, _fail(f, exc))
                        continue
                    raise _fail(f, exc) from exc
                results[f.sop_uid] = res
                if dest is not None:
                    on_done(f, res)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results
