"""macOS burner backend up to the OS call: drutil answers as Apple prints them, a stand-in hdiutil."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

import pytest

from app.core.devices.burn import Burner, burn_image, list_burners
from app.core.devices.burn_macos import (
    MacBurnerBackend,
    disc_node,
    parse_drutil_list,
    parse_drutil_status,
    parse_hdiutil_list,
)
from app.core.errors import ExportError
from app.core.jobs import Cancelled, CancelToken, Progress

DRUTIL_LIST = """   Vendor   Product           Rev   Bus       SupportLevel
1  MATSHITA DVD-R   UJ-898      HE13  ATAPI     Apple Shipping
2  HL-DT-ST DVDRW  GX40N        RQ00  USB       Unsupported
"""
STATUS_BLANK_DVD = """ Vendor   Product           Rev
 MATSHITA DVD-R   UJ-898      HE13

           Type: DVD-R                Name: /dev/disk2
       Sessions: 0                  Tracks: 0
   Overwritable:   00:00:00         blocks:        0 /   0.00MB /   0.00MiB
     Space Free: 510:03:72          blocks:  2295104 /   4.70GB /   4.38GiB
     Space Used:   00:00:00         blocks:        0 /   0.00MB /   0.00MiB
    Writability: appendable, blank
      Book Type: DVD-R (v5)
"""
STATUS_CLOSED_CD = """ Vendor   Product           Rev
 HL-DT-ST DVDRW  GX40N        RQ00

           Type: CD-R                 Name: /dev/disk3
       Sessions: 1                  Tracks: 1
   Overwritable:   00:00:00         blocks:        0 /   0.00MB /   0.00MiB
     Space Free:   00:00:00         blocks:        0 /   0.00MB /   0.00MiB
     Space Used:  65:23:34          blocks:   294259 / 602.64MB / 574.73MiB
    Writability:
"""
STATUS_EMPTY = """ Vendor   Product           Rev
 MATSHITA DVD-R   UJ-898      HE13

           Type: No Media Inserted
"""
STATUS_CDRW = """           Type: CD-RW                Name: /dev/disk4
     Space Free:  79:59:74          blocks:   359849 / 736.97MB / 702.83MiB
    Writability: appendable, blank, overwritable, erasable
"""
HDIUTIL_LIST = """IOService:/AppleARMPE/arm-io@10F00000/AppleT810xIO/usb-drd1@2280000/AppleUSBXHCI/DRIVE1
IOService:/AppleARMPE/arm-io@10F00000/AppleT810xIO/usb-drd0@2280000/AppleUSBXHCI/DRIVE2
"""


def test_parse_drutil() -> None:
    assert parse_drutil_list(DRUTIL_LIST) == [("1", "MATSHITA", "DVD-R   UJ-898"),
                                              ("2", "HL-DT-ST", "DVDRW  GX40N")]
    assert parse_drutil_status("1", STATUS_BLANK_DVD, "MATSHITA", "DVD-R   UJ-898") == Burner(
        "1", "DVD-R   UJ-898", "MATSHITA", "blank", "DVD-R", 2295104 * 2048, True)
    closed = parse_drutil_status("2", STATUS_CLOSED_CD)
    assert (closed.media_state, closed.media_type, closed.can_write, closed.capacity_bytes) == (
        "closed", "CD-R", False, 0)
    empty = parse_drutil_status("1", STATUS_EMPTY)
    assert (empty.media_state, empty.media_type, empty.can_write) == ("none", "", False)
    cdrw = parse_drutil_status("3", STATUS_CDRW)
    assert (cdrw.media_state, cdrw.can_write, cdrw.capacity_bytes) == ("blank", True,
                                                                       359849 * 2048)
    assert disc_node(STATUS_BLANK_DVD) == "/dev/disk2" and disc_node(STATUS_EMPTY) is None
    assert len(parse_hdiutil_list(HDIUTIL_LIST)) == 2


def _runner(status: dict[str, str]):
    calls: list[list[str]] = []

    def run(args: list[str]) -> tuple[int, str]:
        calls.append(args)
        if args[1:] == ["list"]:
            return 0, DRUTIL_LIST
        if args[1:3] == ["status", "-drive"]:
            return 0, status[args[3]]
        if args[1:] == ["burn", "-list"]:
            return 0, HDIUTIL_LIST
        raise AssertionError(args)

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_list_burners() -> None:
    run = _runner({"1": STATUS_BLANK_DVD, "2": STATUS_CLOSED_CD})
    burners = list_burners(MacBurnerBackend(runner=run))
    assert [(b.device, b.vendor, b.media_state) for b in burners] == [
        ("1", "MATSHITA", "blank"), ("2", "HL-DT-ST", "closed")]
    assert run.calls[1] == ["drutil", "status", "-drive", "1"]


FAKE_HDIUTIL = r'''#!{python}
"""Stands in for hdiutil burn -puppetstrings: messages, a pause, percentages, then the copy."""
import shutil, sys, time
args = sys.argv[1:]
if args == ["burn", "-list"]:
    print("IOService:/fake/DRIVE1")
    sys.exit(0)
assert args[0] == "burn" and "-puppetstrings" in args and "-noverifyburn" in args, args
assert args[args.index("-device") + 1] == "IOService:/fake/DRIVE1", args
for msg in ("Please insert a disc:", "Preparing data for burn"):
    print("MESSAGE:" + msg, flush=True)
print("PERCENT:-1.000000", flush=True)
time.sleep({pause})
print("MESSAGE:Opening session", flush=True)
for p in ("12.5", "50.0", "100.0"):
    time.sleep(0.02)
    print("PERCENT:" + p, flush=True)
shutil.copyfile(args[1], {out!r})
print("MESSAGE:Closing session", flush=True)
print("MESSAGE:Burn completed successfully", flush=True)
'''


class FileBackedMac(MacBurnerBackend):
    """Reads back the file the stand-in hdiutil wrote instead of /dev/rdiskN."""

    def __init__(self, out: Path, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.out = out

    def read_back(self, device: str, size: int) -> BinaryIO | Path:
        assert super().read_back(device, size) == Path("/dev/rdisk2")
        return self.out


def _setup(tmp_path: Path, pause: float) -> tuple[Path, Path, str]:
    iso = tmp_path / "disc.iso"
    iso.write_bytes(bytes(range(256)) * 4096)
    out = tmp_path / "burned.img"
    script = tmp_path / "hdiutil"
    script.write_text(FAKE_HDIUTIL.format(python=sys.executable, pause=pause, out=str(out)))
    script.chmod(0o755)
    return iso, out, str(script)


def _status_runner(script: str):
    base = _runner({"1": STATUS_BLANK_DVD, "2": STATUS_CLOSED_CD})

    def run(args: list[str]) -> tuple[int, str]:
        if args[0] == script:
            return 0, "IOService:/fake/DRIVE1\n"
        return base(args)

    return run


def test_burn_with_stand_in_hdiutil(tmp_path: Path) -> None:
    iso, out, script = _setup(tmp_path, pause=0.0)
    backend = FileBackedMac(out, runner=_status_runner(script), hdiutil=script)
    token = CancelToken()
    seen: list[Progress] = []
    result = burn_image(iso, "1", progress=seen.append, cancel=token, backend=backend)
    assert result.ok, result.message
    assert not token.cancellable
    burn = [p for p in seen if p.phase == "burn"]
    assert burn[0].cancellable and not burn[-1].cancellable
    assert burn[-1].done_bytes == burn[-1].total_bytes == iso.stat().st_size
    assert seen[-1].phase == "verify" and seen[-1].done_bytes == iso.stat().st_size


def test_cancel_before_session_opens(tmp_path: Path) -> None:
    import threading

    iso, out, script = _setup(tmp_path, pause=3.0)
    backend = FileBackedMac(out, runner=_status_runner(script), hdiutil=script)
    token = CancelToken()
    threading.Timer(0.5, token.cancel).start()
    with pytest.raises(Cancelled):
        burn_image(iso, "1", cancel=token, backend=backend)
    assert not out.exists()


def test_refusals_and_real_read_back_failure(tmp_path: Path) -> None:
    iso, _out, script = _setup(tmp_path, pause=0.0)
    backend = MacBurnerBackend(runner=_status_runner(script), hdiutil=script)
    with pytest.raises(ExportError, match="the disc is closed"):
        burn_image(iso, "2", backend=backend)
    with pytest.raises(ExportError, match="no such burner"):
        burn_image(iso, "7", backend=backend)
    # The real read_back opens /dev/rdisk2, which does not exist here: reported, not raised.
    result = burn_image(iso, "1", backend=backend)
    assert not result.ok and "reading the disc back failed" in result.message
