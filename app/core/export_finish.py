"""The end of writing a volume (README.TXT, DICOMDIR with series icons), and ISO / burn.

The DICOMDIR is E1a's :func:`app.core.dicomdir_write.build_dicomdir`; SERIES icons follow the
DESIGN.md rule (the middle instance, :func:`app.core.imaging.series_representative`). The ISO
image and burning are E2's :mod:`app.core.iso` / :mod:`app.core.burn`: Volume ID = File-set ID,
a UDF bridge for BD, the image read back and compared (``verify_iso``), a burn verified by the
backend's read-back.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from pydicom import Dataset
from pydicom.uid import generate_uid

from app.core.errors import DiscBridgeError, ExportError
from app.core.export_plan import ExportPlan, PlannedFile, Volume
from app.core.export_report import ExportReport
from app.core.export_verify import Expected
from app.core.export_write import write_bytes
from app.core.jobs import CancelToken, Progress, ProgressCallback
from app.core.readme_txt import render_readme
from app.core.transcode import FileResult


def _emit(progress: ProgressCallback | None, p: Progress) -> None:
    if progress is not None:
        progress(p)


def finish_volume(plan: ExportPlan, v: Volume, staging: Path, results: dict[str, FileResult],
                   progress: ProgressCallback | None, cancel: CancelToken) -> list[Expected]:
    """README.TXT and the DICOMDIR of one volume; returns what verification must find."""
    from app.core.dicomdir_write import DirEntry, build_dicomdir  # E1a's module

    root = staging / v.name if v.name else staging
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    expected: list[Expected] = []
    for f in v.files:
        res = results[f.sop_uid]
        assert res.header is not None
        entries.append(DirEntry(f.file_id, res.header, res.icon))
        expected.append(Expected(f.rel, res.sha256 or "", f.sop_uid, f.sop_class, f.target_ts,
                                 res.size))
    _emit(progress, Progress("dicomdir", 0, len(entries), message=f"DICOMDIR {v.fileset_id}"))
    try:
        data = build_dicomdir(entries, fileset_id=v.fileset_id, fileset_uid=generate_uid(),
                              profile=plan.profile, series_icons=_series_icons(v, results),
                              progress=progress, cancel=cancel)
    except (ValueError, DiscBridgeError) as exc:
        raise ExportError(f"DICOMDIR of {v.fileset_id} cannot be written: {exc}") from exc
    total = sum(results[f.sop_uid].size for f in v.files)
    readme = render_readme(profile=plan.profile.name, fileset_id=v.fileset_id,
                           files=len(v.files), total_bytes=total,
                           institution=plan.options.institution, contact=plan.options.contact,
                           created=plan.created,
                           volume=(v.index + 1, len(plan.volumes)) if v.name else None)
    expected.append(Expected("README.TXT", write_bytes(root / "README.TXT", readme),
                             size=len(readme)))
    expected.append(Expected("DICOMDIR", write_bytes(root / "DICOMDIR", data), size=len(data)))
    return expected


def _series_icons(v: Volume, results: dict[str, FileResult]) -> dict[str, Dataset]:
    """The icon of each series' representative instance (DESIGN.md: the middle one)."""
    from app.core.imaging import series_representative
    from app.core.model import Instance

    by_series: dict[str, list[PlannedFile]] = {}
    for f in v.files:
        if results[f.sop_uid].icon is not None:
            by_series.setdefault(f.value("SeriesInstanceUID") or "", []).append(f)
    icons: dict[str, Dataset] = {}
    for series_uid, files in by_series.items():
        insts = [Instance(f.sop_uid, f.sop_class, f.record_type, f.value("InstanceNumber"))
                 for f in files]
        rep = series_representative(insts)
        icon = results[rep.sop_instance_uid or ""].icon
        if icon is not None:
            icons[series_uid] = icon
    return icons


def iso_and_burn(plan: ExportPlan, dest: Path, expected: dict[int, list[Expected]],
                  report: ExportReport, progress: ProgressCallback | None,
                  cancel: CancelToken, temp_root: Path | None) -> None:
    from app.core.iso import verify_iso, write_iso  # E2's module

    opts = plan.options
    udf = plan.media_type == "bd"
    t = time.monotonic()
    isos: list[Path] = []
    for v, vr in zip(plan.volumes, report.volumes, strict=True):
        if opts.iso is not None:
            iso = opts.iso if not v.name else opts.iso.with_name(
                f"{opts.iso.stem}_{v.name}{opts.iso.suffix or '.iso'}")
        else:  # burn only: a temporary image (inside our temporary folder when there is one)
            iso = (temp_root or dest.parent) / f".discbridge-{v.fileset_id}.iso"
        root = dest / v.name if v.name else dest
        write_iso(root, iso, v.fileset_id, udf=udf, progress=progress, cancel=cancel)
        vr.iso = str(iso)
        isos.append(iso)
        sums = {e.rel: e.sha256 for e in expected[v.index]}
        if opts.verify and all(sums.values()):
            fails = verify_iso(iso, sums, progress=progress, cancel=cancel,
                               volume_id=v.fileset_id, udf=udf)
            report.verification.iso_failures.extend(f"{iso.name}: {m}" for m in fails)
    report.timings["iso"] = time.monotonic() - t
    if opts.burn is not None:
        from app.core.burn import burn_image  # E2's module

        t = time.monotonic()
        result = burn_image(isos[0], opts.burn, progress=progress, cancel=cancel)
        report.verification.burn = result.message
        if not result.ok:
            report.verification.iso_failures.append(f"burn on {opts.burn}: {result.message}")
        report.timings["burn"] = time.monotonic() - t
        if opts.iso is None:
            with contextlib.suppress(OSError):
                isos[0].unlink()
    if not report.verification.ok:
        report.ok = False
        report.error = "the image or the disc did not verify"
