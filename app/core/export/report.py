"""The export report: what was written where, what was changed, verified, how long it took.

``summary_lines()`` is what ``discbridge export`` prints; ``to_dict()`` is the JSON written to
``--report FILE`` or to ``<user data dir>/reports/export-YYYYmmdd-HHMMSS.json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.export.fixes import Change

MB = 1e6


@dataclass
class VolumeResult:
    path: str  # the volume folder (or staging folder, for an ISO/burn)
    fileset_id: str
    studies: list[dict[str, str | None]]  # study_uid, patient_id, study_date, description
    files: int
    bytes: int
    iso: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "fileset_id": self.fileset_id, "studies": self.studies,
                "files": self.files, "bytes": self.bytes, "iso": self.iso}


@dataclass
class Verification:
    checked: bool = False
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    iso_failures: list[str] = field(default_factory=list)
    burn: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures and not self.iso_failures

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "ok": self.ok, "files": self.files,
                "bytes": self.bytes, "seconds": round(self.seconds, 3),
                "failures": self.failures, "iso_failures": self.iso_failures,
                "burn": self.burn}


@dataclass
class ExportReport:
    ok: bool
    dest: str | None
    profile: str
    media: str
    fileset_id: str
    volumes: list[VolumeResult] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    transcodings: list[dict[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verification: Verification = field(default_factory=Verification)
    timings: dict[str, float] = field(default_factory=dict)
    report_path: Path | None = None
    error: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source file, why) left out
    worker_processes: int = 0  # how many worker processes did per-file work (0: none needed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "dest": self.dest, "profile": self.profile, "media": self.media,
            "fileset_id": self.fileset_id, "error": self.error,
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
            "worker_processes": self.worker_processes,
            "volumes": [v.to_dict() for v in self.volumes],
            "changes": [c.to_dict() for c in self.changes],
            "transcodings": self.transcodings, "problems": self.problems,
            "warnings": self.warnings, "verification": self.verification.to_dict(),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }

    def summary_lines(self) -> list[str]:
        out: list[str] = []
        files = sum(v.files for v in self.volumes)
        size = sum(v.bytes for v in self.volumes)
        state = "done" if self.ok else "FAILED"
        out.append(f"export {state}: {files} files, {size / MB:,.1f} MB, profile {self.profile}"
                   f", File-set ID {self.fileset_id}")
        if self.error:
            out.append(f"  error: {self.error}")
        for v in self.volumes:
            where = v.iso or v.path
            out.append(f"  volume {v.fileset_id}: {where} ({v.files} files, "
                       f"{v.bytes / MB:,.1f} MB, {len(v.studies)} studies)")
            if len(self.volumes) > 1:
                for s in v.studies:
                    out.append(f"    study {s.get('study_date') or '?'} "
                               f"{s.get('description') or ''} [{s.get('study_uid')}]".rstrip())
        if self.changes:
            out.append(f"  {len(self.changes)} value(s) filled in the exported copies "
                       "(originals kept in Original Attributes Sequence):")
            out.extend(f"    {c}" for c in self.changes)
        if self.transcodings:
            out.append(f"  {len(self.transcodings)} file(s) transcoded:")
            out.extend(f"    {t['file']}: {t['from']} -> {t['to']}"
                       + (f" ({t['note']})" if t.get("note") else "") for t in self.transcodings)
        if self.skipped:
            out.append(f"  {len(self.skipped)} file(s) LEFT OUT, as asked "
                       "(--skip-unexportable):")
            out.extend(f"    {f}: {r}" for f, r in self.skipped)
        for w in self.warnings:
            out.append(f"  warning: {w}")
        for p in self.problems:
            out.append(f"  note: {p}")
        ver = self.verification
        if ver.checked:
            if ver.ok:
                out.append(f"  verified: {ver.files} files read back from the device, "
                           "all identical")
                isos = [v.iso for v in self.volumes if v.iso]
                if isos:
                    out.append(f"  image verified: {', '.join(isos)} read back, every file "
                               "identical")
            else:
                out.append(f"  VERIFICATION FAILED for {len(ver.failures) + len(ver.iso_failures)}"
                           " item(s):")
                out.extend(f"    {f}" for f in ver.failures + ver.iso_failures)
        else:
            out.append("  not verified (--no-verify)")
        if ver.burn:
            out.append(f"  burn: {ver.burn}")
        if self.report_path is not None:
            out.append(f"  report: {self.report_path}")
        return out

    def write(self, path: Path | None) -> Path:
        """Write the JSON report (default location when ``path`` is None); returns the path."""
        if path is None:
            path = self.report_path or _new_report_path()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.report_path = path
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fp:
            json.dump(self.to_dict(), fp, indent=1, ensure_ascii=False)
            fp.write("\n")
        os.replace(tmp, path)
        return path


def _new_report_path() -> Path:
    """``reports/export-YYYYmmdd-HHMMSS.json`` in the data folder, reserved (created
    exclusively): a second export within the same second gets ``…-2.json``, never the first's."""
    from app.core.appdirs import user_data_dir

    folder = user_data_dir() / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        path = folder / (f"export-{stamp}.json" if n == 1 else f"export-{stamp}-{n}.json")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return path
    raise OSError(f"{folder}: no free report name for {stamp}")
