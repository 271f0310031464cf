"""The corpus acceptance run for every application profile (not part of the test suite).

Run: ``.venv/bin/python benchmarks/corpus_all_profiles.py [--profiles STD-GEN-CD,STD-XABC-CD]
[--match liver] [--workers 2] [--list] [--json FILE] [--keep]``.

Every file pydicom and pydicom-data ship, each on its own medium, is exported to every profile of
``app.core.dicomdir.profiles.PROFILES`` (or those given) and judged exactly as
``tests/integration/test_corpus_export.py`` judges STD-GEN-CD and STD-GEN-DVD-JPEG: true
refusals only, dcmdump, dciodvfy (no new error in a copy, none in the DICOMDIR), pydicom's
FileSet, decoded pixel values, Type 1 record keys. Prints a table of exported / refused /
failed (export returned ok=False) / crashed files per profile with the number of problems per
category; ``--list`` prints every problem (one line per file, profile and problem). Exit status
0 when no problem was found, 1 otherwise. Work files go to ``benchmarks/_out/corpus/`` and are
deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.test_corpus_export import (  # noqa: E402
    CATEGORIES,
    WORKERS,
    corpus_files,
    run_corpus,
)

OUT = ROOT / "benchmarks" / "_out" / "corpus"
SHORT = {"dicomdir-dciodvfy": "dd-dciod", "lossy-decompress": "lossy", "record-keys": "keys"}


def main(argv: list[str] | None = None) -> int:
    from app.core.dicomdir.profiles import PROFILES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", help="comma-separated profile names (default: all)")
    ap.add_argument("--match", help="only corpus files whose path contains this text")
    ap.add_argument("--workers", type=int, default=WORKERS, help="worker processes")
    ap.add_argument("--list", action="store_true", help="print every problem found")
    ap.add_argument("--json", type=Path, help="write every outcome to this JSON file")
    ap.add_argument("--keep", action="store_true", help=f"keep the work files in {OUT}")
    args = ap.parse_args(argv)

    profiles = tuple(p.strip().upper() for p in args.profiles.split(",")) if args.profiles \
        else tuple(PROFILES)
    unknown = [p for p in profiles if p not in PROFILES]
    if unknown:
        ap.error(f"unknown profile(s) {', '.join(unknown)}; known: {', '.join(PROFILES)}")
    files = corpus_files()
    if args.match:
        files = [f for f in files if args.match in str(f)]
    tools = {name: path for name in ("dciodvfy", "dcmdump")
             if (path := shutil.which(name)) is not None}
    missing = {"dciodvfy", "dcmdump"} - set(tools)
    if missing:
        print(f"note: {', '.join(sorted(missing))} not installed: those checks are skipped")

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    print(f"{len(files)} files x {len(profiles)} profiles, {args.workers} worker processes")
    try:
        run = run_corpus(OUT, profiles, tools, files=files, workers=args.workers, progress=True)
    finally:
        if not args.keep:
            shutil.rmtree(OUT, ignore_errors=True)

    cols = ["exported", "refused", "failed", "crashed"]
    cats = [SHORT.get(c, c) for c in CATEGORIES]
    width = max(len(p) for p in profiles)
    head = f"{'profile':<{width}} " + " ".join(f"{c:>8}" for c in cols) + " | " + \
        " ".join(f"{c:>9}" for c in cats)
    print()
    print(head)
    print("-" * len(head))
    table = run.table()
    total = 0
    for prof in profiles:
        row = table.get(prof, {})
        counts = [sum(1 for o in run.outcomes if o.profile == prof for cat, _m in o.problems
                      if cat == c) for c in CATEGORIES]
        total += sum(counts)
        print(f"{prof:<{width}} " + " ".join(f"{row.get(c, 0):>8}" for c in cols) + " | "
              + " ".join(f"{n:>9}" for n in counts))
    print(f"\n{run.files} files, {len(profiles)} profiles in {run.seconds:.0f} s; "
          f"{total} problem(s)")
    if args.list:
        for prof in profiles:
            for cat in CATEGORIES:
                for line in run.lines(prof, cat):
                    print(line)
    if args.json:
        args.json.write_text(json.dumps({"seconds": run.seconds, "files": run.files,
                                         "table": table, "checked": run.checked(),
                                         "outcomes": [asdict(o) for o in run.outcomes]},
                                        indent=1), encoding="utf-8")
        print(f"outcomes written to {args.json}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
