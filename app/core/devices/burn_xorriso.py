"""Linux burner backend: xorriso (libburn); also xorriso-made ISO images (:func:`write_iso_xorriso`).

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

import queue
import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from app.core.devices.burn import Burner, MediaState
from app.core.devices.iso_image import (
    check_volume_id,
    fsync_and_replace,
    scan_staging,
    temp_next_to,
)
from app.core.errors import ExportError
from app.core.jobs import Cancelled, CancelToken, Progress, ProgressCallback

Runner = Callable[[list[str]], tuple[int, str]]

_DEVICE_LINE = re.compile(r"^\s*\d+\s+-dev\s+'([^']+)'\s+(\S+)\s*:\s*'([^']*)'\s+'([^']*)'")
_DRIVE_TYPE = re.compile(r"Drive type\s*:\s*vendor '([^']*)' product '([^']*)'")
_WRITTEN = re.compile(r"(\d+)\s+of\s+(\d+)\s+MB written")
_OVERWRITEABLE = ("DVD+RW", "DVD-RW restricted overwrite", "DVD-RAM", "BD-RE")
_MIB = 1024 * 1024
SECTOR = 2048


def run_streaming(cmd: list[str], on_line: Callable[[str], None],
                  cancel: CancelToken | None = None, poll: float = 0.1,
                  stop_allowed: Callable[[], bool] | None = None) -> tuple[int, list[str]]:
    """Run ``cmd``, calling ``on_line`` for every output line (stdout and stderr, ``\\r`` too).

    While ``cancel`` is cancelled and ``stop_allowed()`` (default: always) is true the process is
    terminated and :class:`Cancelled` raised; the cancel flag is polled every ``poll`` seconds even
    when the program prints nothing. Returns (exit code, last 20 lines).
    """
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except OSError as exc:
        raise ExportError(f"cannot run {cmd[0]}: {exc.strerror}") from exc
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        buf = b""
        while chunk := proc.stdout.read1(65536):
            buf += chunk
            *done, buf = re.split(rb"[\r\n]", buf)
            for d in done:
                if d.strip():
                    lines.put(d.decode("utf-8", "replace"))
        if buf.strip():
            lines.put(buf.decode("utf-8", "replace"))
        lines.put(None)

    reader = threading.Thread(target=pump, name="xorriso-output", daemon=True)
    reader.start()
    tail: list[str] = []
    finished = False
    try:
        while True:
            if cancel is not None and cancel.cancelled and (stop_allowed is None or stop_allowed()):
                _drain(lines, on_line, tail)  # a line saying "writing began" may be waiting
                if stop_allowed is None or stop_allowed():
                    raise Cancelled("cancelled by the user")
            try:
                line = lines.get(timeout=poll)
            except queue.Empty:
                continue
            if line is None:
                break
            tail = (tail + [line])[-20:]
            on_line(line)
        finished = True
    finally:
        if not finished and proc.poll() is None and (stop_allowed is None or stop_allowed()):
            proc.terminate()  # never once a drive is writing: that would ruin the disc
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        rc = proc.wait()
        reader.join(timeout=5)
        proc.stdout.close()
    return rc, tail


def _drain(lines: queue.Queue[str | None], on_line: Callable[[str], None], tail: list[str]) -> None:
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return
        if line is None:
            lines.put(None)
            return
        tail.append(line)
        on_line(line)


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


# --- ISO images with xorriso (app.core.devices.iso_image.write_iso_xorriso) ---

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
