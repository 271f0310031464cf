"""ISO 9660 Level 1 images made with xorriso: the alternative to :func:`app.core.devices.iso_image.write_iso`.

The same naming checks run first; progress comes from xorriso's pacifier lines, and cancel
terminates the process.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.core.devices.iso_image import (
    check_volume_id,
    fsync_and_replace,
    scan_staging,
    temp_next_to,
)
from app.core.devices.streaming import run_streaming
from app.core.errors import ExportError
from app.core.jobs import CancelToken, Progress, ProgressCallback

_XORRISO_PROGRESS = re.compile(r"Writing:\s+(\d+)s\s+([\d.]+)%")


def xorriso_command(staging: Path, out: Path, volume_id: str) -> list[str]:
    """The strict Level 1 xorriso command of TOOLCHAIN.md (aborts rather than dropping files)."""
    return ["xorriso", "-abort_on", "WARNING", "-outdev", f"stdio:{out}", "-volid", volume_id,
            "-rockridge", "off", "-joliet", "off", "-compliance", "strict:iso_9660_level=1",
            "-map", str(staging), "/", "-commit"]


def write_iso_xorriso(staging: Path, iso: Path, volume_id: str,
                      progress: ProgressCallback | None = None,
                      cancel: CancelToken | None = None, xorriso: str = "xorriso") -> None:
    """Like :func:`app.core.devices.iso_image.write_iso` (ISO 9660 Level 1 only) but with xorriso.

    Progress comes from xorriso's pacifier lines (``Writing: 71616s 48.8%``); cancel terminates
    the process. The same naming checks as :func:`write_iso` run first.
    """
    staging = Path(staging)
    iso = Path(iso)
    check_volume_id(volume_id)
    _dirs, files = scan_staging(staging)
    total = sum(size for _, _, size in files)
    tmp = temp_next_to(iso)
    tmp.unlink()  # xorriso must find a blank (absent) target
    cmd = xorriso_command(staging, tmp, volume_id)
    cmd[0] = xorriso

    def on_line(line: str) -> None:
        m = _XORRISO_PROGRESS.search(line)
        if m and progress is not None:
            done = int(float(m.group(2)) / 100 * total)
            progress(Progress("iso", done_bytes=done, total_bytes=total, message=str(iso)))

    try:
        rc, tail = run_streaming(cmd, on_line, cancel)
        if rc != 0:
            raise ExportError(f"{iso}: xorriso failed (exit {rc}): " + " | ".join(tail[-5:]))
        if progress is not None:
            progress(Progress("iso", done_bytes=total, total_bytes=total, message=str(iso)))
        fsync_and_replace(tmp, iso)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
