"""Export speed: ``discbridge export --no-verify`` vs ``cp -r`` + ``sync``; verify read-back speed.

Run: ``.venv/bin/python benchmarks/bench_export.py [--files 4000] [--runs 3] [--copy-only]
[--needs nothing|study-id|implicit] [--window]`` (as root for the cache-dropping part).
``--needs study-id``: every file lacks its Study ID (a header fix: a byte-level splice);
``--needs implicit``: every file is Implicit VR Little Endian (re-encoded for STD-GEN-CD).
``--window``: also the same export through the window (``open --wizard-export``, with
verification), its "Write to verified" time against the command line's own (plan excluded on
both sides, so Qt's start-up and the summary page's planning are not counted). Wall times and CPU times (user + system of the child
processes) are printed per run, with the export's own phases from its JSON report (``startup``
is everything outside ``run_export``: interpreter start, imports, exit). The first run generates 4,000 CT files of 512×512 (Explicit VR LE, about
2 GB, no transcoding needed for STD-GEN-CD) with a DICOMDIR under ``benchmarks/_data/export/``
(gitignored); later runs reuse them. Outputs go to ``benchmarks/_out/`` and are deleted.

1. Copy: ``cp -r SRC OUT && sync`` vs ``python -m app export SRC --to OUT --no-verify`` (the
   whole command: start-up, reading the source DICOMDIR, plan, copy, DICOMDIR, flush, install),
   alternating, the same warm source cache for both; medians and their ratio (target ≤ 1.3).
2. Verify: an export with verification; its read-back speed (bytes / time of the read-back
   phase, from the JSON report) vs reading the same files after
   ``echo 3 > /proc/sys/vm/drop_caches`` (1 MiB reads, one thread, like ``cat``); medians and
   their ratio (target ≥ 0.8).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.media import make_dataset, uid, write_instance  # noqa: E402

DATA = ROOT / "benchmarks" / "_data" / "export"
OUT = ROOT / "benchmarks" / "_out" / "export"
PY = sys.executable


def generate(root: Path, n_files: int, needs: str = "nothing") -> None:
    """4 patients × 2 studies × 5 series × n/40 images (512×512 16-bit CT) + a DICOMDIR;
    ``needs``: what every file lacks (module doc)."""
    marker = root / f".complete_{n_files}"
    if marker.exists():
        return
    if root.exists():
        shutil.rmtree(root)
    per_series = max(1, n_files // 40)
    pixels = np.random.default_rng(1).integers(0, 4096, (512, 512), dtype=np.uint16)
    written = 0
    for pa in range(1, 5):
        for st in range(1, 3):
            study = uid()
            for se in range(1, 6):
                series = uid()
                for im in range(1, per_series + 1):
                    if written >= n_files:
                        break
                    ds = make_dataset(512, 512, pixels=pixels, PatientID=f"EXP{pa:03d}",
                                      PatientName=f"Export^Bench{pa}", StudyInstanceUID=study,
                                      StudyDate=f"2024020{st}", SeriesInstanceUID=series,
                                      SeriesNumber=str(se), InstanceNumber=str(im))
                    path = root / f"P{pa}" / f"S{st}" / f"SE{se}" / f"I{im:05d}"
                    if needs == "study-id":
                        del ds.StudyID
                    if needs == "implicit":
                        from pydicom.uid import ImplicitVRLittleEndian

                        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
                        path.parent.mkdir(parents=True, exist_ok=True)
                        ds.save_as(path, implicit_vr=True, little_endian=True,
                                   enforce_file_format=True)
                    else:
                        write_instance(path, ds)
                    written += 1
    if needs == "nothing":  # our writer refuses records without Study ID: those are scanned
        from app.core.dicomdir.write import write_dicomdir_for_folder

        write_dicomdir_for_folder(root, fileset_id="BENCHSRC")
    subprocess.run(["sync"], check=True)
    marker.touch()


def _rm(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    subprocess.run(["sync"], check=True)


def drop_caches() -> bool:
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def time_cp(src: Path, dst: Path) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of ``cp`` and ``sync``) of ``cp -r`` + ``sync``."""
    _rm(dst)
    cpu = _children_cpu()
    t = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - t, _children_cpu() - cpu


def export_cmd(src: Path, dst: Path, report: Path, verify: bool) -> list[str]:
    cmd = [PY, "-m", "app", "export", str(src), "--to", str(dst), "--report", str(report)]
    return cmd + ([] if verify else ["--no-verify"])


def time_export(src: Path, dst: Path, report: Path, verify: bool = False
                ) -> tuple[float, dict, float]:
    """Wall seconds, the JSON report, and CPU seconds (user + system of the export process)."""
    _rm(dst)
    cpu = _children_cpu()
    t = time.perf_counter()
    proc = subprocess.run(export_cmd(src, dst, report, verify), cwd=ROOT, capture_output=True,
                          text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"export failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed, json.loads(report.read_text()), _children_cpu() - cpu


def read_all(root: Path, rels: list[str]) -> tuple[float, int]:
    buf = bytearray(1 << 20)
    total = 0
    t = time.perf_counter()
    for rel in rels:
        with open(root / rel, "rb", buffering=0) as fp:
            while n := fp.readinto(buf):
                total += n
    return time.perf_counter() - t, total


def window_vs_cli(runs: int, report: Path) -> None:
    """Write-to-verified of the window (the hook's T) vs the command line's (total - plan)."""
    import re

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    win, cli = [], []
    for _ in range(runs):
        _rm(OUT / "win")
        proc = subprocess.run([PY, "-m", "app", "open", str(DATA), "--wizard-export",
                               str(OUT / "win"), "--media", "usb"], cwd=ROOT,
                              capture_output=True, text=True, env=env)
        m = re.search(r"verified, ([\d.]+) s", proc.stdout)
        if proc.returncode != 0 or m is None:
            raise SystemExit(f"window export failed:\n{proc.stdout}\n{proc.stderr}")
        win.append(float(m.group(1)))
        _elapsed, rep_cli, _cpu = time_export(DATA, OUT / "cli", report, verify=True)
        cli.append(rep_cli["timings"]["total"] - rep_cli["timings"].get("plan", 0.0))
        print(f"  window write→verified {win[-1]:6.2f} s   command line {cli[-1]:6.2f} s")
    _rm(OUT / "win")
    _rm(OUT / "cli")
    w, c = statistics.median(win), statistics.median(cli)
    print(f"window: write→verified median {w:.2f} s; command line median {c:.2f} s; "
          f"ratio {w / c:.2f} (target <= 1.4)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=4000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--copy-only", action="store_true", help="skip the verification part")
    ap.add_argument("--needs", choices=["nothing", "study-id", "implicit"], default="nothing",
                    help="what every source file needs: nothing, a Study ID, re-encoding")
    ap.add_argument("--window", action="store_true",
                    help="also time the export through the window (open --wizard-export)")
    args = ap.parse_args()
    global DATA
    DATA = DATA if args.needs == "nothing" else DATA.with_name(f"export-{args.needs}")
    t = time.perf_counter()
    generate(DATA, args.files, args.needs)
    size = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    print(f"source: {DATA} ({args.files} files, {size / 1e9:.2f} GB, needs {args.needs}; "
          f"ready in {time.perf_counter() - t:.1f} s)")
    OUT.mkdir(parents=True, exist_ok=True)
    report = OUT / "report.json"
    # Warm the source cache equally for both tools.
    time_cp(DATA, OUT / "cp")
    cp_times, ex_times, cp_cpu, ex_cpu = [], [], [], []
    phases: dict[str, list[float]] = {}
    for _ in range(args.runs):
        wall, cpu = time_cp(DATA, OUT / "cp")
        cp_times.append(wall)
        cp_cpu.append(cpu)
        wall, rep, cpu = time_export(DATA, OUT / "db", report)
        ex_times.append(wall)
        ex_cpu.append(cpu)
        tm = rep["timings"]
        inside = tm.get("total", 0.0)
        tm = dict(tm, startup=wall - inside)  # interpreter, imports, report, exit
        for k in ("startup", "plan", "write", "dicomdir", "flush", "install"):
            phases.setdefault(k, []).append(tm.get(k, 0.0))
        print(f"  cp -r + sync {cp_times[-1]:6.2f} s (cpu {cp_cpu[-1]:5.2f})   export "
              f"--no-verify {ex_times[-1]:6.2f} s (cpu {ex_cpu[-1]:5.2f}: "
              + ", ".join(f"{k} {tm.get(k, 0.0):.2f}" for k in phases) + ")")
    _rm(OUT / "cp")
    _rm(OUT / "db")
    cp_med, ex_med = statistics.median(cp_times), statistics.median(ex_times)
    print(f"copy: cp -r + sync median {cp_med:.2f} s (cpu {statistics.median(cp_cpu):.2f} s); "
          f"export --no-verify median {ex_med:.2f} s (cpu {statistics.median(ex_cpu):.2f} s); "
          f"ratio {ex_med / cp_med:.2f} (target <= 1.3); best runs {min(cp_times):.2f} s vs "
          f"{min(ex_times):.2f} s")
    print("export phases, medians: " + ", ".join(
        f"{k} {statistics.median(v):.2f} s" for k, v in phases.items()))
    if args.window:
        window_vs_cli(args.runs, report)
    if args.copy_only:
        print(f"cores: {os.cpu_count()}")
        return 0

    can_drop = drop_caches()
    ver_speeds, ref_speeds = [], []
    for _ in range(args.runs):
        _elapsed, rep, _cpu = time_export(DATA, OUT / "dbv", report, verify=True)
        ver = rep["verification"]
        read_s = rep["timings"]["verify_read"]
        ver_speeds.append(ver["bytes"] / read_s)
        rels = sorted(p.relative_to(OUT / "dbv").as_posix()
                      for p in (OUT / "dbv").rglob("*") if p.is_file())
        drop_caches()
        ref_s, ref_bytes = read_all(OUT / "dbv", rels)
        ref_speeds.append(ref_bytes / ref_s)
        print(f"  verify read-back {ver_speeds[-1] / 1e6:7.1f} MB/s ({read_s:.2f} s, ok="
              f"{ver['ok']})   cold read {ref_speeds[-1] / 1e6:7.1f} MB/s ({ref_s:.2f} s)")
    _rm(OUT / "dbv")
    v_med, r_med = statistics.median(ver_speeds), statistics.median(ref_speeds)
    print(f"verify: read-back median {v_med / 1e6:.1f} MB/s; cold read median "
          f"{r_med / 1e6:.1f} MB/s; ratio {v_med / r_med:.2f} (target >= 0.8)"
          + ("" if can_drop else " [caches could NOT be dropped: not root?]"))
    print(f"cores: {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
