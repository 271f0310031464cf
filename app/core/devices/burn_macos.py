"""macOS burner backend: ``drutil`` for drives and media, ``hdiutil burn`` for writing.

Listing: ``drutil list`` (drives numbered from 1) and ``drutil status -drive N``::

     Vendor   Product           Rev
     MATSHITA DVD-R   UJ-898      HE13

               Type: DVD-R                Name: /dev/disk2
           Sessions: 0                  Tracks: 0
       Overwritable:   00:00:00         blocks:        0 /   0.00MB /   0.00MiB
         Space Free: 510:03:72          blocks:  2295104 /   4.70GB /   4.38GiB
         Space Used:   00:00:00         blocks:        0 /   0.00MB /   0.00MiB
        Writability: appendable, blank, overwritable

Burning: ``hdiutil burn ISO -device PATH -noverifyburn -noeject -puppetstrings`` (PATH from
``hdiutil burn -list``, in drive order); ``-puppetstrings`` makes hdiutil print
``MESSAGE:Opening session`` / ``PERCENT:12.5`` lines. We verify ourselves (hence
``-noverifyburn``) by reading ``/dev/rdiskN`` back, which needs read access to the raw device
(admin); without it the result says the read-back failed. Point of no return: "Opening session"
or the first positive percentage. The runners are injectable; this backend has not been run on
a real Mac: it is tested with outputs shaped as above and a stand-in ``hdiutil``.
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
SECTOR = 2048
_FIELD = re.compile(r"^\s*([A-Za-z ]+):\s*(.*)$")
_PERCENT = re.compile(r"^PERCENT:\s*(-?[\d.]+)")


def _default_runner(args: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    except FileNotFoundError as exc:
        raise ExportError(f"{args[0]} not found (this backend needs macOS)") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportError(f"{args[0]} failed: {exc}") from exc
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


def parse_drutil_list(text: str) -> list[tuple[str, str, str]]:
    """``drutil list`` → [(drive number, vendor, product)], cut at the header's columns."""
    lines = text.splitlines()
    header = next((x for x in lines if "Vendor" in x and "Product" in x and "Rev" in x), None)
    if header is None:
        return []
    v, p, r = header.index("Vendor"), header.index("Product"), header.index("Rev")
    out = []
    for line in lines:
        m = re.match(r"^\s*(\d+)\s", line)
        if m and len(line) > p:
            out.append((m.group(1), line[v:p].strip(), line[p:r].strip()))
    return out


def parse_drutil_status(drive: str, text: str, vendor: str = "", product: str = "") -> Burner:
    """``drutil status -drive N`` → :class:`Burner` (device = the drive number)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        # Two "key: value" pairs may share a line ("Type: DVD-R    Name: /dev/disk2").
        for part in re.split(r"\s{3,}(?=[A-Z][A-Za-z ]*:)", line.strip()):
            m = _FIELD.match(part)
            if m:
                fields.setdefault(m.group(1).strip(), m.group(2).strip())
    media_type = fields.get("Type", "")
    writability = {w.strip() for w in fields.get("Writability", "").split(",") if w.strip()}
    free_sectors = 0
    m = re.search(r"Space Free:.*?blocks:\s*(\d+)", text)
    if m:
        free_sectors = int(m.group(1))
    state: MediaState
    if not media_type or "No Media" in media_type:
        state, media_type = "none", ""
    elif "blank" in writability:
        state = "blank"
    elif "appendable" in writability:
        state = "appendable"
    elif "Writability" in fields:
        state = "closed"
    else:
        state = "unknown"
    can_write = state == "blank" or "overwritable" in writability and state != "none"
    return Burner(device=drive, name=product or f"drive {drive}", vendor=vendor,
                  media_state=state, media_type=media_type,
                  capacity_bytes=free_sectors * SECTOR, can_write=can_write)


def disc_node(text: str) -> str | None:
    """The ``Name: /dev/diskN`` of ``drutil status``."""
    m = re.search(r"Name:\s*(/dev/disk\d+)", text)
    return m.group(1) if m else None


def parse_hdiutil_list(text: str) -> list[str]:
    """``hdiutil burn -list`` → IOService paths usable with ``-device``, in drive order."""
    return [line.strip() for line in text.splitlines() if line.strip().startswith("IOService:")]


class MacBurnerBackend:
    """:class:`app.core.devices.burn.BurnerBackend` over drutil/hdiutil; runners injectable for tests."""

    def __init__(self, runner: Runner | None = None, hdiutil: str = "hdiutil",
                 drutil: str = "drutil") -> None:
        self.runner = runner or _default_runner
        self.hdiutil = hdiutil
        self.drutil = drutil

    def list_burners(self) -> list[Burner]:
        rc, text = self.runner([self.drutil, "list"])
        if rc != 0:
            raise ExportError(f"drutil list failed (exit {rc}): {text.strip()[-200:]}")
        out = []
        for drive, vendor, product in parse_drutil_list(text):
            _rc, status = self.runner([self.drutil, "status", "-drive", drive])
            out.append(parse_drutil_status(drive, status, vendor, product))
        return out

    def _device_path(self, drive: str) -> str:
        rc, text = self.runner([self.hdiutil, "burn", "-list"])
        paths = parse_hdiutil_list(text)
        index = int(drive) - 1 if drive.isdigit() else -1
        if rc != 0 or not 0 <= index < len(paths):
            raise ExportError(f"drive {drive}: not among hdiutil's burners")
        return paths[index]

    def burn(self, iso: Path, device: str, progress: ProgressCallback | None,
             cancel: CancelToken | None) -> None:
        size = Path(iso).stat().st_size
        path = self._device_path(device)
        writing = False

        def on_line(line: str) -> None:
            nonlocal writing
            m = _PERCENT.match(line)
            pct = float(m.group(1)) if m else None
            if not writing and ("Opening session" in line or (pct is not None and pct > 0)):
                writing = True
                if cancel is not None:
                    cancel.allow_cancel(False)
            if progress is None:
                return
            if pct is not None and pct >= 0:
                progress(Progress("burn", done_bytes=int(size * min(pct, 100) / 100),
                                  total_bytes=size, message=f"writing to drive {device}",
                                  cancellable=not writing))
            elif line.startswith("MESSAGE:"):
                progress(Progress("burn", total_bytes=size, message=line[8:].strip(),
                                  cancellable=not writing))

        cmd = [self.hdiutil, "burn", str(iso), "-device", path, "-noverifyburn", "-noeject",
               "-puppetstrings"]
        rc, tail = run_streaming(cmd, on_line, cancel, stop_allowed=lambda: not writing)
        if rc != 0:
            raise ExportError(f"drive {device}: hdiutil burn failed (exit {rc}): "
                              + " | ".join(tail[-4:]))
        if progress is not None:
            progress(Progress("burn", done_bytes=size, total_bytes=size,
                              message=f"written to drive {device}", cancellable=False))

    def read_back(self, device: str, size: int) -> BinaryIO | Path:
        """The raw disc device (``/dev/rdiskN``) of the drive."""
        _rc, status = self.runner([self.drutil, "status", "-drive", device])
        node = disc_node(status)
        if node is None:
            raise ExportError(f"drive {device}: no disc to read back")
        return Path(node.replace("/dev/disk", "/dev/rdisk"))
