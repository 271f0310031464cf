"""Parser benchmarks, side by side (medians of interleaved runs).

1. ``parse_dicomdir`` on a DICOMDIR of 20,000 IMAGE records (built in code, ~8 MB) versus DCMTK
   ``dcmdump`` on the same file, each in a fresh process (so both pay their start-up), plus the
   parser's peak memory. Wall and CPU (user + system) time, medians of interleaved runs: on a
   shared machine the CPU time is the steadier figure.
1b. When the reader benchmark's medium exists (``benchmarks/_data/reader/ls20000``, made by
   ``bench_reader.py``): the whole ``python -m app ls DIR --json`` versus ``dcmdump
   DIR/DICOMDIR``, interleaved, and the in-process parse time of that DICOMDIR.
2. ``read_header`` over N 512×512 CT files versus pydicom ``dcmread(f, stop_before_pixels=True)``
   over the same files (warm cache, same process).

Usage: ``.venv/bin/python benchmarks/bench_parse.py [--records 20000] [--ct-files 1000]
[--runs 5] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import gc
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

PARSE_SNIPPET = """
import resource, sys, time
t = time.perf_counter()
from app.core.dicomdir.parse import parse_dicomdir
data = open(sys.argv[1], 'rb').read()
res = parse_dicomdir(data, 'DICOMDIR')
n = sum(1 for p in res.patients for _ in p.instances())
print(time.perf_counter() - t, n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def build_dicomdir(path: Path, records: int) -> None:
    from tests import dicomdir_bytes as db

    per_series = 1000
    series = []
    for e in range(max(1, records // per_series)):
        ims = [db.image(("PA1", "ST1", f"SE{e + 1}", f"IM{i + 1}"), number=str(i + 1),
                        Rows=512, Columns=512, ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
                        ContentDate="20240102", ContentTime="101500.123456",
                        ImagePositionPatient=["-125.0", "-125.0", f"{i * 1.25:.6f}"],
                        SliceLocation=f"{i * 1.25:.6f}",
                        ImageOrientationPatient=["1", "0", "0", "0", "1", "0"],
                        PixelSpacing=["0.488281", "0.488281"])
               for i in range(per_series)]
        series.append(db.series(*ims, number=str(e + 1), SeriesDescription=f"AXIAL {e}"))
    roots = [db.patient("PID1", "Müller^Hans", db.study(*series), charset="ISO_IR 100")]
    path.write_bytes(db.encode(roots))


def timed(cmd: list[str]) -> float:
    return timed_cpu(cmd)[0]


def timed_cpu(cmd: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one command."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return time.perf_counter() - t, usage.ru_utime + usage.ru_stime


def bench_ls(runs: int) -> None:
    """``ls --json`` on the reader benchmark's 20,000-record medium vs dcmdump, interleaved."""
    medium = ROOT / "benchmarks" / "_data" / "reader" / "ls20000"
    if not (medium / "DICOMDIR").exists() or not shutil.which("dcmdump"):
        print("ls: benchmarks/_data/reader/ls20000 (bench_reader.py) or dcmdump missing")
        return
    from app.core.dicomdir.parse import parse_dicomdir

    data = (medium / "DICOMDIR").read_bytes()
    parse_dicomdir(data, "DICOMDIR")
    gc.disable()  # as the reader does while it builds the tree
    cpu = []
    for _ in range(runs):
        t = time.process_time()
        parse_dicomdir(data, "DICOMDIR")
        cpu.append(time.process_time() - t)
    gc.enable()
    ours_cmd = [sys.executable, "-m", "app", "ls", str(medium), "--json"]
    ref_cmd = ["dcmdump", str(medium / "DICOMDIR")]
    timed_cpu(ours_cmd)
    timed_cpu(ref_cmd)
    ow, oc, rw, rc = [], [], [], []
    for _ in range(runs):
        w, c = timed_cpu(ours_cmd)
        ow.append(w)
        oc.append(c)
        w, c = timed_cpu(ref_cmd)
        rw.append(w)
        rc.append(c)
    med = statistics.median
    print(f"ls --json, 20,000-record medium ({runs} interleaved runs, medians)")
    print(f"  parse_dicomdir in process (CPU): {med(cpu):.3f} s (min {min(cpu):.3f})")
    print(f"  discbridge ls --json : wall {med(ow):.3f} s, CPU {med(oc):.3f} s")
    print(f"  dcmdump              : wall {med(rw):.3f} s, CPU {med(rc):.3f} s")
    print(f"  ratio ours/dcmdump   : wall {med(ow) / med(rw):.2f}, CPU {med(oc) / med(rc):.2f}")


def bench_dicomdir(workdir: Path, records: int, runs: int) -> None:
    path = workdir / "DICOMDIR"
    build_dicomdir(path, records)
    ours, theirs, inner, rss, cpu_ours, cpu_theirs = [], [], [], [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", PARSE_SNIPPET, str(path)],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        out_text = proc.stdout.read() if proc.stdout else ""
        _, _status, usage = os.wait4(proc.pid, 0)
        ours.append(time.perf_counter() - t)
        cpu_ours.append(usage.ru_utime + usage.ru_stime)
        out = out_text.split()
        inner.append(float(out[0]))
        rss.append(int(out[2]) / 1024)
        if shutil.which("dcmdump"):
            w, c = timed_cpu(["dcmdump", str(path)])
            theirs.append(w)
            cpu_theirs.append(c)
    size = path.stat().st_size / 1e6
    mo, mi = statistics.median(ours), statistics.median(inner)
    print(f"DICOMDIR: {records} IMAGE records, {size:.1f} MB, {runs} runs (medians)")
    print(f"  parse_dicomdir, fresh process : {mo:.3f} s  (import + read + parse: {mi:.3f} s)"
          f"  peak RSS {statistics.median(rss):.0f} MB")
    if theirs:
        mt = statistics.median(theirs)
        co, ct = statistics.median(cpu_ours), statistics.median(cpu_theirs)
        print(f"  dcmdump                       : {mt:.3f} s")
        print(f"  ratio ours/dcmdump            : {mo / mt:.2f} (CPU {co:.3f} s vs {ct:.3f} s: "
              f"{co / ct:.2f})")


def bench_headers(workdir: Path, count: int, runs: int) -> None:
    import numpy as np
    from pydicom import dcmread

    from app.core.dicom.header import read_header
    from tests.media import make_dataset

    folder = workdir / "ct"
    folder.mkdir(exist_ok=True)
    pixels = np.zeros((512, 512), np.uint16)
    for i in range(count):
        ds = make_dataset(512, 512, pixels=pixels, InstanceNumber=str(i + 1))
        ds.save_as(folder / f"CT{i:05d}.dcm", enforce_file_format=True)
    files = sorted(folder.iterdir())

    def ours() -> None:
        for f in files:
            with f.open("rb") as fp:
                read_header(fp, f.name)

    def theirs() -> None:
        for f in files:
            dcmread(f, stop_before_pixels=True)

    ours()
    theirs()  # warm the cache
    a, b = [], []
    for _ in range(runs):
        t = time.perf_counter()
        ours()
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        theirs()
        b.append(time.perf_counter() - t)
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"Headers: {count} CT files 512x512, {runs} runs (medians, warm cache)")
    print(f"  read_header loop              : {ma:.3f} s")
    print(f"  dcmread(stop_before_pixels)   : {mb:.3f} s")
    print(f"  speed-up                      : {mb / ma:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--ct-files", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_parse_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        bench_ls(args.runs)
        bench_dicomdir(workdir, args.records, args.runs)
        if args.ct_files:
            bench_headers(workdir, args.ct_files, args.runs)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
