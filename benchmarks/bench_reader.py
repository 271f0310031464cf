"""Reader speed, side by side with the reference tools.

Run from the repository root: ``.venv/bin/python benchmarks/bench_reader.py [--runs 3]``.
Data is generated on the first run under ``benchmarks/_data/reader/`` (gitignored) and reused.

(a) ``ls``: a medium whose DICOMDIR has 20,000 IMAGE records (10 patients × 2 studies × 4 series
    × 250 images) with its 20,000 small files present. ``python -m app ls DIR --json`` (the whole
    command: interpreter start-up, imports, DICOMDIR, listings, JSON; the app byte-compiled
    first, as installed) vs DCMTK ``dcmdump DIR/DICOMDIR`` on the same DICOMDIR, alternating;
    medians and minima of the runs, their ratio (target ≤ 1.0), CPU times, and the peak RSS of
    our process (target < 200 MB).
(b) scan: 4,000 CT files of 512×512 (16-bit, about 2 GB) without DICOMDIR. ``open_medium(DIR)``
    (header-only scan) vs a loop of ``pydicom.dcmread(f, stop_before_pixels=True)`` over the
    same files, warm cache (one untimed pass of each first), in one process, alternating;
    medians, minima and CPU times, and the speed-up (target ≥ 3×).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "benchmarks" / "_data" / "reader"
LS_DIR = DATA / "ls20000"
SCAN_DIR = DATA / "scan4000"
PY = sys.executable


# -- data ------------------------------------------------------------------------------------

def _template(rows: int, cols: int) -> tuple[bytes, bytes]:
    """A DICOM file's bytes and the placeholder SOP Instance UID in them (fixed width)."""
    import io

    import numpy as np

    from tests.media import make_dataset

    placeholder = "1.2.826.0.1.3680043.8.498.9" + "9" * 30  # 57 chars, replaced in place
    pixels = (np.arange(rows * cols, dtype=np.uint32).reshape(rows, cols) % 4096).astype(
        np.uint16)
    ds = make_dataset(rows, cols, pixels=pixels, SOPInstanceUID=placeholder)
    ds.file_meta.MediaStorageSOPInstanceUID = placeholder
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), placeholder.encode()


def _write(path: Path, template: bytes, placeholder: bytes, sop_uid: str, **swap: str) -> None:
    new = sop_uid.encode().ljust(len(placeholder), b"0")[: len(placeholder)]
    data = template.replace(placeholder, new)
    for old, value in swap.items():
        data = data.replace(old.encode(), value.encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def make_ls_medium(root: Path) -> None:
    """20,000 IMAGE records and their files (8×8 CT), DICOMDIR via tests.dicomdir_bytes."""
    marker = root.parent / f".{root.name}.complete"
    if marker.exists():
        return
    if root.exists():
        shutil.rmtree(root)
    from tests import dicomdir_bytes as db

    template, placeholder = _template(8, 8)
    pats = []
    n = 0
    for p in range(1, 11):
        studies = []
        for s in range(1, 3):
            series = []
            for e in range(1, 5):
                images = []
                for i in range(1, 251):
                    n += 1
                    sop = f"1.2.826.0.1.3680043.8.498.9.9{n:08d}"
                    fid = (f"PA{p:02d}", f"ST{s:02d}", f"SE{e:02d}", f"IM{i:04d}")
                    images.append(db.image(fid, sop_uid=sop.ljust(57, "0")[:57],
                                           number=str(i)))
                    _write(root.joinpath(*fid), template, placeholder, sop)
                series.append(db.series(*images, number=str(e)))
            studies.append(db.study(*series, StudyID=str(s)))
        pats.append(db.patient(f"PID{p:03d}", f"Bench^Patient{p}", *studies))
    (root / "DICOMDIR").write_bytes(db.encode(pats))
    marker.touch()


def make_scan_medium(root: Path, n_files: int = 4000) -> None:
    """4,000 CT 512×512 files in 4 series folders, no DICOMDIR."""
    marker = root.parent / f".{root.name}.complete_{n_files}"
    if marker.exists():
        return
    if root.exists():
        shutil.rmtree(root)
    template, placeholder = _template(512, 512)
    for k in range(n_files):
        sop = f"1.2.826.0.1.3680043.8.498.8.9{k:08d}"
        _write(root / f"SERIES{k % 4}" / f"IM{k:06d}.dcm", template, placeholder, sop)
    marker.touch()


# -- measurements ------------------------------------------------------------------------------

def timed_process(cmd: list[str]) -> tuple[float, int, float]:
    """Wall time, peak RSS (bytes) and CPU time (user + system) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err}")
    return dt, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def compile_app() -> None:
    """Byte-compile the app as an install does: this environment sets PYTHONDONTWRITEBYTECODE,
    which would make every timed ``python -m app`` compile all its modules from source first
    (≈ 35 ms, not what a user's installed or frozen DiscBridge pays)."""
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "app")], check=True,
                   stdout=subprocess.DEVNULL)


def bench_ls(runs: int) -> dict[str, float]:
    make_ls_medium(LS_DIR)
    compile_app()
    dcmdump = shutil.which("dcmdump")
    ours_cmd = [PY, "-m", "app", "ls", str(LS_DIR), "--json"]
    ref_cmd = [dcmdump, str(LS_DIR / "DICOMDIR")] if dcmdump else None
    timed_process(ours_cmd)  # warm the cache
    if ref_cmd:
        timed_process(ref_cmd)
    ours, ref, rss, cpu_ours, cpu_ref = [], [], [], [], []
    for _ in range(runs):
        t, m, c = timed_process(ours_cmd)
        ours.append(t)
        rss.append(m)
        cpu_ours.append(c)
        if ref_cmd:
            t, _m, c = timed_process(ref_cmd)
            ref.append(t)
            cpu_ref.append(c)
    res = {"ours": statistics.median(ours), "rss_mb": max(rss) / 2**20,
           "cpu_ours": statistics.median(cpu_ours), "min_ours": min(ours)}
    if ref:
        res["dcmdump"] = statistics.median(ref)
        res["ratio"] = res["ours"] / res["dcmdump"]
        res["cpu_dcmdump"] = statistics.median(cpu_ref)
        res["cpu_ratio"] = res["cpu_ours"] / res["cpu_dcmdump"]
        res["min_dcmdump"] = min(ref)
        res["min_ratio"] = res["min_ours"] / res["min_dcmdump"]
    res.update(ls_breakdown(runs))
    return res


def ls_breakdown(runs: int) -> dict[str, float]:
    """Where the ``ls`` time goes, in process (CPU time): start-up, parse, the rest of
    open_medium, to_dict, JSON (as app/cli.py writes it: one ``json.dumps``)."""
    import json

    from app.core.dicomdir.parse import parse_dicomdir
    from app.core.medium.reader import open_medium

    startup = statistics.median(timed_process([PY, "-c", "import app.cli, app.core.medium.reader, "
                                                "app.core.dicomdir.parse"])[2] for _ in range(runs))
    data = (LS_DIR / "DICOMDIR").read_bytes()
    t_parse, t_open, t_dict, t_dumps = [], [], [], []
    for _ in range(runs):
        t0 = time.process_time()
        parse_dicomdir(data, "DICOMDIR")
        t_parse.append(time.process_time() - t0)
        t0 = time.process_time()
        m = open_medium(LS_DIR)
        t_open.append(time.process_time() - t0)
        t0 = time.process_time()
        d = m.to_dict()
        t_dict.append(time.process_time() - t0)
        t0 = time.process_time()
        json.dumps(d, ensure_ascii=False).encode("utf-8", "backslashreplace")
        t_dumps.append(time.process_time() - t0)
    return {"startup": startup, "parse": statistics.median(t_parse),
            "open_medium": statistics.median(t_open), "to_dict": statistics.median(t_dict),
            "json_dumps": statistics.median(t_dumps)}


def bench_scan(runs: int) -> dict[str, float]:
    make_scan_medium(SCAN_DIR)
    import pydicom

    from app.core.medium.reader import open_medium

    files = sorted(p for p in SCAN_DIR.rglob("*") if p.is_file() and not p.name.startswith("."))

    def pydicom_loop() -> int:
        n = 0
        for f in files:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            n += bool(ds.SOPInstanceUID)
        return n

    def ours() -> int:
        return sum(1 for _ in open_medium(SCAN_DIR).instances())

    from app.core.dicom.header import read_header

    def header_loop() -> int:
        for f in files:
            with open(f, "rb") as fp:
                read_header(fp, f.name)
        return len(files)

    assert ours() == pydicom_loop() == len(files)  # warm-up pass, and both see every file
    header_loop()
    t_ours, t_ref, t_hdr, c_ours, c_ref = [], [], [], [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        ours()
        t_ours.append(time.perf_counter() - t0)
        c_ours.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        pydicom_loop()
        t_ref.append(time.perf_counter() - t0)
        c_ref.append(time.process_time() - c0)
        t0 = time.perf_counter()
        header_loop()
        t_hdr.append(time.perf_counter() - t0)
    o, r = statistics.median(t_ours), statistics.median(t_ref)
    return {"ours": o, "pydicom": r, "speedup": r / o, "files": len(files),
            "read_header_loop": statistics.median(t_hdr),
            "cpu_speedup": statistics.median(c_ref) / statistics.median(c_ours),
            "min_speedup": min(t_ref) / min(t_ours), "min_ours": min(t_ours),
            "min_pydicom": min(t_ref)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=["ls", "scan"])
    args = ap.parse_args()
    if args.only in (None, "ls"):
        r = bench_ls(args.runs)
        print(f"(a) ls --json, 20,000 records + files: discbridge {r['ours']:.3f} s"
              + (f", dcmdump {r['dcmdump']:.3f} s, ratio {r['ratio']:.2f} (target <= 1.0)"
                 if "ratio" in r else ", dcmdump not installed")
              + f"; peak RSS {r['rss_mb']:.0f} MB (target < 200)")
        if "cpu_ratio" in r:
            print(f"    CPU time (user+sys): discbridge {r['cpu_ours']:.3f} s, dcmdump "
                  f"{r['cpu_dcmdump']:.3f} s, ratio {r['cpu_ratio']:.2f}")
            print(f"    fastest runs (least disturbed by other load): discbridge "
                  f"{r['min_ours']:.3f} s, dcmdump {r['min_dcmdump']:.3f} s, ratio "
                  f"{r['min_ratio']:.2f}")
        print(f"    CPU in process: start-up+imports {r['startup']:.3f} s, open_medium "
              f"{r['open_medium']:.3f} s (of which parse_dicomdir alone {r['parse']:.3f} s), "
              f"to_dict {r['to_dict']:.3f} s, json.dumps {r['json_dumps']:.3f} s")
    if args.only in (None, "scan"):
        r = bench_scan(args.runs)
        print(f"(b) scan of {int(r['files'])} CT 512x512 files (warm): discbridge "
              f"{r['ours']:.3f} s, pydicom dcmread loop {r['pydicom']:.3f} s, speed-up "
              f"{r['speedup']:.1f}x (target >= 3)")
        print(f"    CPU-time speed-up {r['cpu_speedup']:.1f}x; fastest runs: discbridge "
              f"{r['min_ours']:.3f} s, pydicom {r['min_pydicom']:.3f} s, "
              f"{r['min_speedup']:.1f}x")
        print(f"    read_header alone over the same files: {r['read_header_loop']:.3f} s "
              f"({r['pydicom'] / r['read_header_loop']:.1f}x pydicom)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
