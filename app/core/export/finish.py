"""The end of writing a volume (README.TXT, DICOMDIR with series icons), and ISO / burn.

The DICOMDIR is :func:`app.core.dicomdir.write.build_dicomdir`; SERIES icons follow the
DESIGN.md rule (the middle instance, :func:`app.core.imaging.display.series_representative`). The ISO
image and burning are :mod:`app.core.devices.iso_image` / :mod:`app.core.devices.burn`: Volume ID = File-set ID,
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
from app.core.export.plan import ExportPlan, PlannedFile, Volume
from app.core.export.readme_txt import render_readme
from app.core.export.report import ExportReport
from app.core.export.transcode import FileResult, header_from_bytes, item_from_bytes
from app.core.export.verify import Expected
from app.core.export.write import write_bytes
from app.core.jobs import CancelToken, Progress, ProgressCallback


def _emit(progress: ProgressCallback | None, p: Progress) -> None:
    if progress is not None:
        progress(p)


def copy_header(f: PlannedFile) -> Dataset:
    """The record dataset of a copied file: its header, with our File Meta for a new header."""
    from app.core.export.transcode import header_only, set_our_meta

    if f.action == "splice" and f.splice is not None:
        return f.splice.header()
    if f.action != "meta":
        return f.src.header
    header = header_only(f.src.header)
    set_our_meta(header, f.target_ts)
    return header


def prebuild_dicomdirs(plan: ExportPlan, cancel: CancelToken) -> dict[int, bytes] | None:
    """The DICOMDIR of every volume, built from the plan alone, when the written files cannot
    differ from the plan (copies only, no icons): the export builds it while the files are
    being copied. None when some file's header comes from a rewrite."""
    if plan.icon_size or any(f.action not in ("copy", "meta", "splice") for f in plan.files):
        return None
    return {v.index: _build(plan, v, {f.sop_uid: copy_header(f) for f in v.files}, {}, None,
                            cancel) for v in plan.volumes}


def _build(plan: ExportPlan, v: Volume, headers: dict[str, Dataset], icons: dict[str, Dataset],
           progress: ProgressCallback | None, cancel: CancelToken) -> bytes:
    from app.core.dicomdir.write import DirEntry, build_dicomdir

    entries = [DirEntry(f.file_id, headers[f.sop_uid], icons.get(f.sop_uid)) for f in v.files]
    try:
        return build_dicomdir(entries, fileset_id=v.fileset_id, fileset_uid=generate_uid(),
                              profile=plan.profile, series_icons=_series_icons(v, icons),
                              progress=progress, cancel=cancel)
    except (ValueError, DiscBridgeError) as exc:
        raise ExportError(f"DICOMDIR of {v.fileset_id} cannot be written: {exc}") from exc


def finish_volume(plan: ExportPlan, v: Volume, staging: Path, results: dict[str, FileResult],
                  progress: ProgressCallback | None, cancel: CancelToken,
                  prebuilt: bytes | None = None) -> list[Expected]:
    """README.TXT and the DICOMDIR of one volume; returns what verification must find."""
    root = staging / v.name if v.name else staging
    root.mkdir(parents=True, exist_ok=True)
    expected: list[Expected] = []
    headers: dict[str, Dataset] = {}
    icons: dict[str, Dataset] = {}
    for f in v.files:
        res = results[f.sop_uid]
        headers[f.sop_uid] = header_from_bytes(res.header) if res.header is not None \
            else copy_header(f)
        if res.icon is not None:
            icons[f.sop_uid] = item_from_bytes(res.icon)
        on_medium = f.value("SOPInstanceUID") or f.sop_uid  # a corrected UID, if invalid
        expected.append(Expected(f.rel, res.sha256 or "", on_medium, f.sop_class, f.target_ts,
                                 res.size, res.pixel_digest))
    _emit(progress, Progress("dicomdir", 0, len(v.files), message=f"DICOMDIR {v.fileset_id}"))
    data = prebuilt if prebuilt is not None else _build(plan, v, headers, icons, progress,
                                                         cancel)
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


def _series_icons(v: Volume, icons: dict[str, Dataset]) -> dict[str, Dataset]:
    """The icon of each series' representative instance (DESIGN.md: the middle one)."""
    from app.core.imaging.display import series_representative
    from app.core.model import Instance

    by_series: dict[str, list[PlannedFile]] = {}
    for f in v.files:
        if f.sop_uid in icons:
            by_series.setdefault(f.value("SeriesInstanceUID") or "", []).append(f)
    out: dict[str, Dataset] = {}
    for series_uid, files in by_series.items():
        insts = [Instance(f.sop_uid, f.sop_class, f.record_type, f.value("InstanceNumber"))
                 for f in files]
        rep = series_representative(insts)
        out[series_uid] = icons[rep.sop_instance_uid or ""]
    return out


def iso_and_burn(plan: ExportPlan, dest: Path, expected: dict[int, list[Expected]],
                  report: ExportReport, progress: ProgressCallback | None,
                  cancel: CancelToken, temp_root: Path | None) -> None:
    from app.core.devices.iso_image import verify_iso, write_iso

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
        from app.core.devices.burn import burn_image

        t = time.monotonic()
        result = burn_image(isos[0], opts.burn, progress=progress, cancel=cancel)
        report.verification.burn = result.message
        if not result.ok:
            report.verification.iso_failures.append(f"burn on {opts.burn}: {result.message}")
        report.timings["burn"] = time.monotonic() - t
        if opts.iso is None:  # the image was only the burner's input
            with contextlib.suppress(OSError):
                isos[0].unlink()
            for vr in report.volumes:
                vr.iso = None
    if not report.verification.ok:
        report.ok = False
        report.error = "the image or the disc did not verify"
