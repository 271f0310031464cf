"""Capacity and spanning: how much fits, and which files go on which volume (and their names).

Sizes are known before writing (exact for copies, estimated for transcodes: see
:mod:`app.core.export.plan`); each file is rounded up to the medium's block (2048-byte sectors
on discs and images, 4 KiB clusters otherwise) and each volume pays for its DICOMDIR records,
icons, README.TXT and folders. Capacities come from :mod:`app.core.devices.capacity` (CD, DVD, DVD-DL,
BD with a safety margin; USB and folders: the free space). Spanning fills volumes with whole
studies in medium order; a study that alone exceeds a volume is split by series, a series that
alone exceeds one by instances. Every volume is numbered and named on its own (PA001…).
"""

from __future__ import annotations

from pathlib import Path

from app.core.errors import ExportError
from app.core.export.options import ExportOptions
from app.core.export.plan_model import PlannedFile, PlanPatient, TooBig, Volume

MB = 1000 * 1000
MAX_FILE = 2**32 - 1  # ISO 9660 Level 1 extent / FAT32 file size limit
# Estimated DICOMDIR bytes per directory record, README.TXT and per-folder overhead.
RECORD_BYTES = 600
README_BYTES = 4096
DIR_BYTES = 2048


def _round(size: int, block: int) -> int:
    return -(-size // block) * block


def capacity_for(options: ExportOptions, override: int | None) -> tuple[int, str, list[str]]:
    """Bytes per volume, how that was found, and warnings (a USB stick that is not FAT)."""
    from app.core.devices import capacity as cap

    media = options.effective_media
    warnings: list[str] = []
    where = options.dest if options.dest is not None else (
        options.iso.parent if options.iso is not None else Path.cwd())
    probe = Path(where)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if media == "usb" and options.dest is not None:
        warning = cap.usb_filesystem_warning(probe)
        if warning:
            warnings.append(warning)
    if override is not None:
        return override, f"{override / MB:,.3f} MB (set by the caller)", warnings
    if media in ("cd", "dvd", "dvd-dl", "bd"):
        size = int(cap.CAPACITY[media])
        return size, f"{media.upper()} {size / MB:,.0f} MB", warnings
    free = int(cap.free_space(probe))
    return free, f"free space {free / MB:,.0f} MB at {probe}", warnings


def _block(options: ExportOptions) -> int:
    return 2048 if options.effective_media in ("cd", "dvd", "dvd-dl", "bd") or options.iso \
        else 4096


def _volume_overhead(n_files: int, n_series: int, icon_size: int | None) -> int:
    icon = (icon_size * icon_size + 256) if icon_size else 0
    records = n_files * (RECORD_BYTES + icon) + n_series * (3 * RECORD_BYTES + icon)
    return records + README_BYTES + 4 * DIR_BYTES + n_series * 3 * DIR_BYTES


def pack_volumes(patients: list[PlanPatient], cap: int, options: ExportOptions, fileset_id: str,
             icon_size: int | None) -> list[Volume]:
    block = _block(options)
    if options.effective_media in ("cd", "dvd", "dvd-dl", "usb") or options.iso is not None \
            or options.burn is not None:
        huge = [f for p in patients for st in p.studies for f in st.files
                if f.est_size >= MAX_FILE]
        if huge:
            raise TooBig("; ".join(f"{f.src.label}: about {f.est_size / MB:,.0f} MB" for f in huge)
                         + " - ISO 9660 and FAT32 hold files under 4 GiB only (PS3.12); "
                         "nothing was written", huge[0].est_size, MAX_FILE)
    units: list[list[PlannedFile]] = [st.files for p in patients for st in p.studies]

    def cost(files: list[PlannedFile]) -> int:
        n_series = len({f.value("SeriesInstanceUID") for f in files})
        return sum(_round(f.est_size, block) for f in files) + _volume_overhead(
            len(files), n_series, icon_size)

    everything = [f for u in units for f in u]
    total = cost(everything)
    if total <= cap:
        vol = Volume(0, "", fileset_id, everything, total)
        return [vol]
    if not options.span:
        raise TooBig(f"the export needs about {total / MB:,.1f} MB but the medium holds "
                     f"{cap / MB:,.1f} MB. Nothing was written; use --span to split it over "
                     "several volumes, a bigger medium, or fewer studies.", total, cap)
    # Spanning: whole studies first; a study too big alone is split by series, a series too
    # big alone by instances.
    groups: list[list[PlannedFile]] = []
    for study_files in units:
        if cost(study_files) <= cap:
            groups.append(study_files)
            continue
        by_series: dict[str, list[PlannedFile]] = {}
        for f in study_files:
            by_series.setdefault(f.value("SeriesInstanceUID") or "", []).append(f)
        for se_files in by_series.values():
            if cost(se_files) <= cap:
                groups.append(se_files)
            else:
                for f in se_files:
                    if cost([f]) > cap:
                        raise TooBig(f"{f.src.label}: this one file (about "
                                     f"{f.est_size / MB:,.1f} MB) is larger than a volume "
                                     f"({cap / MB:,.1f} MB)", f.est_size, cap)
                    groups.append([f])
    bins: list[list[PlannedFile]] = [[]]
    for g in groups:
        if bins[-1] and cost(bins[-1] + g) > cap:
            bins.append([])
        bins[-1].extend(g)
    if len(bins) > 99:
        raise TooBig(f"spanning would need {len(bins)} volumes (at most 99)", total, cap)
    vols = []
    for n, files in enumerate(bins):
        vid = f"{fileset_id[:12]}_V{n + 1:02d}" if len(bins) > 1 else fileset_id
        v = Volume(n, f"VOL{n + 1:02d}" if len(bins) > 1 else "", vid, files, cost(files))
        for f in files:
            f.volume = n
        vols.append(v)
    return vols


def name_volumes(volumes: list[Volume]) -> None:
    """File IDs per volume (DESIGN.md naming, via :mod:`app.core.export.layout`); files in that order."""
    from app.core.export.layout import LayoutItem, plan_layout

    for v in volumes:
        items = [LayoutItem(f.value("PatientID") or "", f.value("PatientName") or "",
                            f.value("StudyInstanceUID") or "", f.value("StudyDate") or "",
                            f.value("StudyTime") or "", f.value("SeriesInstanceUID") or "",
                            f.value("SeriesNumber") or "", f.sop_uid,
                            f.value("InstanceNumber") or "", key=n)
                 for n, f in enumerate(v.files)]
        try:
            layout = plan_layout(items)
        except ValueError as exc:
            raise ExportError(f"cannot name the files: {exc}") from exc
        ordered = []
        for fid, item in layout.items:
            f = v.files[int(item.key)]  # type: ignore[call-overload]
            f.file_id = tuple(fid)
            ordered.append(f)
        v.files = ordered
