"""Linux burner backend: xorriso (libburn). Images made with xorriso: :mod:`app.core.devices.iso_xorriso`.

Listing: ``xorriso -devices`` (drives with rw permission) and, per drive,
``xorriso -outdev DEV -toc -tell_media_space`` (vendor/product, media type, state, free space).
Burning: ``xorriso -as cdrecord -v dev=DEV ISO``: one closed session (no ``-multi``), the same
path for ``/dev/sr0`` and for xorriso's ``stdio:FILE`` pseudo-drive, which writes the image into a
real file (the tests burn to it). The disc is not ejected: it is read back first.
Output lines look like (xorriso 1.5.4)::

    0  -dev '/dev/sr0' rwrw-- :  'HL-DT-ST' 'DVDRAM GH24NSD1'
    Drive type   : vendor 'YOYODYNE' product 'WARP DRIVE' revision 'FX01'
    Media current: DVD+R
    Media status : is blank
    Media space  : 2295104s
    Beginning to write data track.
    xorriso : UPDATE :   60 of  286 MB written (fifo  0%) [buf  50%]  50.8x.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from app.core.devices.burner import Burner, MediaState
from app.core.devices.streaming import run_streaming
from app.core.errors import ExportError
from app.core.jobs import CancelToken, Progress, ProgressCallback

Runner = Callable[[list[str]], tuple[int, str]]

_DEVICE_LINE = re.compile(r"^\s*\d+\s+-dev\s+'([^']+)'\s+(\S+)\s*:\s*'([^']*)'\s+'([^']*)'")
_DRIVE_TYPE = re.compile(r"Drive type\s*:\s*vendor '([^']*)' product '([^']*)'")
_WRITTEN = re.compile(r"(\d+)\s+of\s+(\d+)\s+MB written")
_OVERWRITEABLE = ("DVD+RW", "DVD-RW restricted overwrite", "DVD-RAM", "BD-RE")
_MIB = 1024 * 1024
SECTOR = 2048



def _default_runner(args: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    except FileNotFoundError as exc:
        raise ExportError(f"{args[0]} is not installed (apt-get install xorriso)") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportError(f"{args[0]} failed: {exc}") from exc
    out = (done.stdout + done.stderr).decode("utf-8", "replace")
    return done.returncode, out


def parse_devices(text: str) -> list[tuple[str, str, str]]:
    """``xorriso -devices`` → [(device, vendor, product)]."""
    out = []
    for line in text.splitlines():
        m = _DEVICE_LINE.match(line)
        if m:
            out.append((m.group(1), m.group(3).strip(), m.group(4).strip()))
    return out


def parse_media(device: str, text: str, vendor: str = "", product: str = "") -> Burner:
    """``xorriso -outdev DEV -toc -tell_media_space`` → :class:`Burner` (last values win)."""
    media_type = ""
    status = ""
    space_sectors: int | None = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "Media current":
            media_type = value
        elif key == "Media status":
            status = value
        elif key == "Media space":
            m = re.match(r"(\d+)s", value)
            if m:
                space_sectors = int(m.group(1))
        m = _DRIVE_TYPE.search(line)
        if m:
            vendor, product = m.group(1).strip(), m.group(2).strip()
    state: MediaState
    if "is not present" in status or "is not present" in media_type or "no media" in status:
        state = "none"
    elif "is blank" in status:
        state = "blank"
    elif "is appendable" in status:
        state = "appendable"
    elif "is closed" in status:
        state = "closed"
    else:
        state = "unknown"
    kind = media_type.split(",")[0].strip()
    overwriteable = "overwriteable" in media_type or kind.startswith(_OVERWRITEABLE)
    can_write = state == "blank" or (overwriteable and state in ("appendable", "closed"))
    if state == "none":
        kind = ""
    capacity = (space_sectors or 0) * SECTOR
    return Burner(device=device, name=product or device, vendor=vendor, media_state=state,
                  media_type=kind, capacity_bytes=capacity, can_write=can_write)


class XorrisoBackend:
    """:class:`app.core.devices.burn.BurnerBackend` over xorriso; ``runner`` replaces subprocess in tests."""

    def __init__(self, xorriso: str = "xorriso", runner: Runner | None = None) -> None:
        self.xorriso = xorriso
        self.runner = runner or _default_runner

    def list_burners(self) -> list[Burner]:
        rc, text = self.runner([self.xorriso, "-devices"])
        devices = parse_devices(text)
        if rc != 0 and not devices:
            if "No drives found" in text:
                return []
            raise ExportError(f"xorriso -devices failed (exit {rc}): {text.strip()[-200:]}")
        return [self.describe(dev, vendor, product) for dev, vendor, product in devices]

    def describe(self, device: str, vendor: str = "", product: str = "") -> Burner:
        """State of one drive, also a ``stdio:`` pseudo-drive that ``-devices`` never lists."""
        rc, text = self.runner([self.xorriso, "-outdev", device, "-toc", "-tell_media_space"])
        if rc != 0 and "Media current" not in text:
            raise ExportError(f"{device}: xorriso cannot use this drive: {text.strip()[-200:]}")
        return parse_media(device, text, vendor, product)

    def burn(self, iso: Path, device: str, progress: ProgressCallback | None,
             cancel: CancelToken | None) -> None:
        size = Path(iso).stat().st_size
        writing = False

        def on_line(line: str) -> None:
            nonlocal writing
            m = _WRITTEN.search(line)
            if not writing and (m or "Beginning to write" in line):
                writing = True
                if cancel is not None:
                    cancel.allow_cancel(False)
            if progress is not None:
                if m:
                    done = min(size, int(m.group(1)) * _MIB)
                    progress(Progress("burn", done_bytes=done, total_bytes=size,
                                      message=f"writing to {device}", cancellable=False))
                elif not writing:
                    progress(Progress("burn", total_bytes=size, message=line.strip()))

        cmd = [self.xorriso, "-as", "cdrecord", "-v", f"dev={device}", str(iso)]
        rc, tail = run_streaming(cmd, on_line, cancel, stop_allowed=lambda: not writing)
        if rc != 0:
            raise ExportError(f"{device}: burning failed (xorriso exit {rc}): "
                              + " | ".join(tail[-4:]))
        if progress is not None:
            progress(Progress("burn", done_bytes=size, total_bytes=size,
                              message=f"written to {device}", cancellable=False))

    def read_back(self, device: str, size: int) -> BinaryIO | Path:
        """The drive's device file (or the ``stdio:`` file), read from its first byte."""
        path = device[len("stdio:"):] if device.startswith("stdio:") else device
        return Path(path)



