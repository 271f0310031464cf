"""DICOMDIR writing alone, files already in place: ``write_dicomdir_for_folder`` vs ``dcmmkdir +I +r``.

Run: ``.venv/bin/python benchmarks/bench_dicomdir.py [--files 4000]``. The first run generates
4,000 CT files of 512×512 (Explicit VR LE, about 2 GB) under ``benchmarks/_data/dicomdir/``
(gitignored), laid out ``PA001/ST001/SE001/IM000001``… (4 patients × 2 studies × 5 series ×
100 images); later runs reuse them. Each tool runs 3 times, alternating, on the same tree with the
DICOMDIR deleted before every run (both see the same warm page cache); the medians and their ratio
are printed. ``--cold`` drops the page cache before every run instead (Linux, as root).
Results are recorded in ``benchmarks/results_dicomdir.md``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.dicomdir.write import write_dicomdir_for_folder  # noqa: E402
from tests.media import make_dataset, uid, write_instance  # noqa: E402

DATA = Path(__file__).resolve().parent / "_data" / "dicomdir"


def generate(root: Path, n_files: int) -> None:
    """4 patients × 2 studies × 5 series × (n_files / 40) images, 512×512 16-bit CT."""
    marker = root / f".complete_{n_files}"
    if marker.exists():
        return
    if root.exists():
        shutil.rmtree(root)
    per_series = max(1, n_files // 40)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4096, (512, 512), dtype=np.uint16)
    written = 0
    for pa in range(1, 5):
        pid, name = f"BENCH{pa:03d}", f"Bench^Patient{pa}"
        for st in range(1, 3):
            study = uid()
            for se in range(1, 6):
                series = uid()
                for im in range(1, per_series + 1):
                    if written >= n_files:
                        break
                    ds = make_dataset(512, 512, pixels=pixels, PatientID=pid, PatientName=name,
                                      StudyInstanceUID=study, StudyDate=f"2024010{st}",
                                      SeriesInstanceUID=series, SeriesNumber=str(se),
                                      InstanceNumber=str(im))
                    write_instance(root / f"PA{pa:03d}" / f"ST{st:03d}" / f"SE{se:03d}"
                                   / f"IM{im:06d}", ds)
                    written += 1
    marker.touch()


def drop_caches() -> None:
    """Linux, as root: empty the page cache so that the next run reads from the disk."""
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def run_ours(root: Path, cold: bool = False) -> float:
    (root / "DICOMDIR").unlink(missing_ok=True)
    if cold:
        drop_caches()
    t = time.perf_counter()
    write_dicomdir_for_folder(root, "BENCH")
    return time.perf_counter() - t


def run_dcmmkdir(root: Path, tool: str, cold: bool = False) -> float:
    (root / "DICOMDIR").unlink(missing_ok=True)
    if cold:
        drop_caches()
    t = time.perf_counter()
    subprocess.run([tool, "-q", "+I", "+r", "+F", "BENCH"], cwd=root, check=True)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true",
                        help="drop the page cache before every run (Linux, root)")
    args = parser.parse_args()
    tool = shutil.which("dcmmkdir")
    if tool is None:
        sys.exit("dcmmkdir (DCMTK) is required")
    t = time.perf_counter()
    generate(DATA, args.files)
    print(f"data: {args.files} files under {DATA} (ready in {time.perf_counter() - t:.1f} s)")
    # Warm the page cache once for both (read every file), so that neither pays for cold reads.
    run_ours(DATA)
    ours, theirs = [], []
    for _ in range(args.runs):
        ours.append(run_ours(DATA, args.cold))
        theirs.append(run_dcmmkdir(DATA, tool, args.cold))
    (DATA / "DICOMDIR").unlink(missing_ok=True)
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    print("page cache: " + ("dropped before every run" if args.cold else "warm"))
    print(f"write_dicomdir_for_folder : median {m_ours:6.2f} s  runs "
          + " ".join(f"{x:.2f}" for x in ours))
    print(f"dcmmkdir +I +r            : median {m_theirs:6.2f} s  runs "
          + " ".join(f"{x:.2f}" for x in theirs))
    print(f"ratio ours/dcmmkdir       : {m_ours / m_theirs:.2f} "
          f"({m_theirs / m_ours:.1f}x faster)")


if __name__ == "__main__":
    main()
