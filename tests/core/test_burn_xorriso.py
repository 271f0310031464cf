"""Burning with xorriso: for real against its ``stdio:`` pseudo-drive, plus recorded drive answers."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import BinaryIO

import pytest

from app.core.devices.burn import Burner, burn_image, list_burners
from app.core.devices.burn_xorriso import XorrisoBackend, parse_devices, parse_media, run_streaming
from app.core.devices.iso_image import sha256_tree, verify_iso, write_iso
from app.core.errors import ExportError
from app.core.jobs import Cancelled, CancelToken, Progress
from tests.conftest import require_tool

# Shaped as xorriso 1.5.4 prints them (libburn drive and media reports).
DEVICES = """xorriso 1.5.4 : RockRidge filesystem manipulator, libburnia project.

Beginning to scan for devices ...
Full drive scan lasted 0 seconds.
-----------------------------------------------------------------------------
0  -dev '/dev/sr0' rwrw-- :  'HL-DT-ST' 'DVDRAM GH24NSD1'
1  -dev '/dev/sr1' rwrw-- :  'ASUS    ' 'BW-16D1HT'
-----------------------------------------------------------------------------
"""
BLANK_DVD = """xorriso 1.5.4 : RockRidge filesystem manipulator, libburnia project.

Drive current: -outdev '/dev/sr0'
Media current: DVD+R
Media status : is blank
Media summary: 0 sessions, 0 data blocks, 0 data, 4483m free
Drive current: -outdev '/dev/sr0'
Drive access : exclusive:unrestricted
Drive type   : vendor 'HL-DT-ST' product 'DVDRAM GH24NSD1' revision 'LG00'
Media current: DVD+R
Media product: CMC MAG/E01/0 , CMC Magnetics Corporation
Media status : is blank
Media blocks : 0 readable , 2295104 writable , 2295104 overall
Media summary: 0 sessions, 0 data blocks, 0 data, 4483m free
Media space  : 2295104s
After commit : 2295104s
"""
CLOSED_CD = """Drive current: -outdev '/dev/sr1'
Drive type   : vendor 'ASUS' product 'BW-16D1HT' revision '3.10'
Media current: CD-R
Media status : is written , is closed
Media blocks : 146560 readable , 0 writable , 359844 overall
TOC layout   : Idx ,  sbsector ,       Size , Volume Id
ISO session  :   1 ,         0 ,    146496s , DISCBRIDGE
Media summary: 1 session, 146496 data blocks,  286m data, 0 free
Media space  : 0s
After commit : 0s
"""
NO_DISC = """Drive current: -outdev '/dev/sr0'
Media current: is not present
Media status : is not present
Media summary: 0 sessions, 0 data blocks, 0 data, 0 free
"""
USED_BDRE = """Drive type   : vendor 'ASUS' product 'BW-16D1HT' revision '3.10'
Media current: BD-RE
Media status : is written , is appendable
Media summary: 1 session, 4096 data blocks, 8192k data, 22.3g free
Media space  : 11675264s
"""


def _recorded(answers: dict[str, tuple[int, str]]) -> XorrisoBackend:
    calls: list[list[str]] = []

    def runner(args: list[str]) -> tuple[int, str]:
        calls.append(args)
        key = "-devices" if "-devices" in args else args[args.index("-outdev") + 1]
        return answers[key]

    backend = XorrisoBackend(runner=runner)
    backend.calls = calls  # type: ignore[attr-defined]
    return backend


def test_parse_recorded_drive_answers() -> None:
    assert parse_devices(DEVICES) == [("/dev/sr0", "HL-DT-ST", "DVDRAM GH24NSD1"),
                                      ("/dev/sr1", "ASUS", "BW-16D1HT")]
    assert parse_media("/dev/sr0", BLANK_DVD) == Burner(
        "/dev/sr0", "DVDRAM GH24NSD1", "HL-DT-ST", "blank", "DVD+R", 2295104 * 2048, True)
    assert parse_media("/dev/sr1", CLOSED_CD) == Burner(
        "/dev/sr1", "BW-16D1HT", "ASUS", "closed", "CD-R", 0, False)
    assert parse_media("/dev/sr0", NO_DISC, "V", "P") == Burner(
        "/dev/sr0", "P", "V", "none", "", 0, False)
    bdre = parse_media("/dev/sr1", USED_BDRE)
    assert (bdre.media_state, bdre.media_type, bdre.can_write) == ("appendable", "BD-RE", True)
    assert parse_media("x", "garbage\n").media_state == "unknown"


def test_list_burners_from_recorded_answers() -> None:
    backend = _recorded({"-devices": (0, DEVICES), "/dev/sr0": (0, BLANK_DVD),
                         "/dev/sr1": (0, CLOSED_CD)})
    burners = list_burners(backend)
    assert [(b.device, b.media_state, b.can_write) for b in burners] == [
        ("/dev/sr0", "blank", True), ("/dev/sr1", "closed", False)]
    assert backend.calls[1] == ["xorriso", "-outdev", "/dev/sr0", "-toc", "-tell_media_space"]
    none = _recorded({"-devices": (32, "xorriso : SORRY : No drives found\n")})
    assert list_burners(none) == []
    broken = _recorded({"-devices": (5, "xorriso : FAILURE : something\n")})
    with pytest.raises(ExportError, match="xorriso -devices failed"):
        broken.list_burners()
    assert list_burners(broken) == []  # the convenience never raises


@pytest.mark.parametrize(("answer", "why"), [
    (CLOSED_CD, "the disc is closed"),
    (NO_DISC, "no disc in the drive"),
    (BLANK_DVD.replace("2295104s", "10s"), "do not fit on the disc"),
])
def test_burn_refused_before_anything_is_written(tmp_path: Path, answer: str, why: str) -> None:
    iso = tmp_path / "x.iso"
    iso.write_bytes(b"\0" * 65536)
    backend = _recorded({"-devices": (0, DEVICES), "/dev/sr0": (0, answer),
                         "/dev/sr1": (0, answer)})
    with pytest.raises(ExportError, match=why):
        burn_image(iso, "/dev/sr0", backend=backend)
    assert not any("cdrecord" in c for call in backend.calls for c in call)


def _image(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    staging = tmp_path / "st" / "PA001" / "ST001" / "SE001"
    staging.mkdir(parents=True)
    for i in range(4):
        (staging / f"IM00000{i}").write_bytes(bytes([i]) * (700_000 + i))
    (tmp_path / "st" / "DICOMDIR").write_bytes(b"DICOMDIR bytes")
    iso = tmp_path / "disc.iso"
    write_iso(tmp_path / "st", iso, "BURNTEST")
    return iso, sha256_tree(tmp_path / "st")


def test_burn_for_real_to_stdio_pseudo_drive(tmp_path: Path) -> None:
    """xorriso writes the image through libburn into a file; read back and compare."""
    require_tool("xorriso")
    iso, expected = _image(tmp_path)
    disc = tmp_path / "drive" / "disc.img"
    disc.parent.mkdir()
    device = f"stdio:{disc}"
    backend = XorrisoBackend()
    before = backend.describe(device)
    assert (before.media_state, before.can_write, before.vendor) == ("blank", True, "YOYODYNE")
    token = CancelToken()
    seen: list[Progress] = []
    result = burn_image(iso, device, progress=seen.append, cancel=token, backend=backend)
    assert result.ok, result.message
    assert result.sha256_read == result.sha256_expected == hashlib.sha256(
        iso.read_bytes()).hexdigest()
    assert result.bytes_written == iso.stat().st_size
    assert not token.cancellable and token.cancel() is False  # past the point of no return
    burn = [p for p in seen if p.phase == "burn"]
    assert burn[0].cancellable and not burn[-1].cancellable
    assert burn[-1].done_bytes == burn[-1].total_bytes == iso.stat().st_size
    assert [p for p in seen if p.phase == "verify"][-1].done_bytes == iso.stat().st_size
    # The written "disc" is a readable file-set image (libburn pads it a little).
    assert disc.stat().st_size >= iso.stat().st_size
    assert verify_iso(disc, expected, volume_id="BURNTEST") == []
    after = backend.describe(device)
    assert after.media_state == "appendable" and after.can_write  # a stdio file is overwriteable


def test_cancel_before_starting_runs_nothing(tmp_path: Path) -> None:
    require_tool("xorriso")
    iso, _ = _image(tmp_path)
    disc = tmp_path / "disc.img"
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        burn_image(iso, f"stdio:{disc}", cancel=token, backend=XorrisoBackend())
    assert not disc.exists()



FAKE_XORRISO = r'''#!{python}
"""A stand-in for xorriso with a slow drive: it talks, pauses, then writes (to stdio: files)."""
import shutil, sys, time
args = sys.argv[1:]
if "-devices" in args:
    print("xorriso : SORRY : No drives found")
    sys.exit(32)
if "-tell_media_space" in args:
    print("Drive type   : vendor 'FAKE' product 'SLOW DRIVE' revision '1'")
    print("Media current: DVD+R")
    print("Media status : is blank")
    print("Media space  : 2295104s")
    sys.exit(0)
dev = next(a[4:] for a in args if a.startswith("dev="))
iso = args[-1]
print("Drive current: -outdev '%s'" % dev, flush=True)
print("Media status : is blank", flush=True)
time.sleep({pause})
print("Beginning to write data track.", flush=True)
time.sleep({pause})
print("xorriso : UPDATE :    1 of    2 MB written (fifo 99%) [buf  50%]   4.0x.", flush=True)
shutil.copyfile(iso, dev[len("stdio:"):])
time.sleep({pause})
print("Writing to '%s' completed successfully." % dev, flush=True)
'''


def _fake_xorriso(tmp_path: Path, pause: float) -> str:
    import sys

    script = tmp_path / "fake-xorriso"
    script.write_text(FAKE_XORRISO.format(python=sys.executable, pause=pause))
    script.chmod(0o755)
    return str(script)


def test_cancel_while_drive_prepares_stops_it(tmp_path: Path) -> None:
    import threading
    import time

    iso, _ = _image(tmp_path)
    disc = tmp_path / "disc.img"
    token = CancelToken()
    backend = XorrisoBackend(xorriso=_fake_xorriso(tmp_path, pause=3.0))
    timer = threading.Timer(0.5, token.cancel)  # the fake drive is still preparing then
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        burn_image(iso, f"stdio:{disc}", cancel=token, backend=backend)
    assert time.monotonic() - t0 < 2.5  # stopped, not waited for
    assert not disc.exists()


def test_cancel_while_drive_writes_is_ignored(tmp_path: Path) -> None:
    """Cancel requested at the wrong moment: writing began, so the burn goes on and verifies."""
    iso, _ = _image(tmp_path)
    disc = tmp_path / "disc.img"
    token = CancelToken()
    answers: list[bool] = []

    def cancel_when_writing(p: Progress) -> None:
        if p.phase == "burn" and not p.cancellable and not answers:
            answers.append(token.cancel())

    backend = XorrisoBackend(xorriso=_fake_xorriso(tmp_path, pause=0.2))
    result = burn_image(iso, f"stdio:{disc}", progress=cancel_when_writing, cancel=token,
                        backend=backend)
    assert answers == [False] and result.ok, result.message


def test_cancel_once_writing_is_refused(tmp_path: Path) -> None:
    require_tool("xorriso")
    iso, _ = _image(tmp_path)
    disc = tmp_path / "disc.img"
    token = CancelToken()
    answers: list[bool] = []

    def try_cancel(p: Progress) -> None:
        if p.phase == "burn" and not p.cancellable and not answers:
            answers.append(token.cancel())

    result = burn_image(iso, f"stdio:{disc}", progress=try_cancel, cancel=token,
                        backend=XorrisoBackend())
    assert answers == [False] and result.ok and not token.cancelled


def test_read_back_mismatch_and_failure_are_reported(tmp_path: Path) -> None:
    require_tool("xorriso")
    iso, _ = _image(tmp_path)

    class Flipping(XorrisoBackend):
        def read_back(self, device: str, size: int) -> BinaryIO | Path:
            data = bytearray(Path(device[6:]).read_bytes()[:size])
            data[size // 2] ^= 1
            return io.BytesIO(bytes(data))

    result = burn_image(iso, f"stdio:{tmp_path / 'a.img'}", backend=Flipping())
    assert not result.ok and result.sha256_read != result.sha256_expected
    assert result.message.endswith("the disc differs from the image (SHA-256 mismatch)")

    class Short(XorrisoBackend):
        def read_back(self, device: str, size: int) -> BinaryIO | Path:
            return io.BytesIO(b"\0" * (size - 2048))

    result = burn_image(iso, f"stdio:{tmp_path / 'b.img'}", backend=Short())
    assert not result.ok and "reading the disc back failed" in result.message
    assert f"read only {iso.stat().st_size - 2048} of {iso.stat().st_size} bytes" in result.message


def test_unknown_device_and_missing_image(tmp_path: Path) -> None:
    require_tool("xorriso")
    iso, _ = _image(tmp_path)
    with pytest.raises(ExportError, match="xorriso cannot use this drive"):
        burn_image(iso, "stdio:/nonexistent/dir/x.img", backend=XorrisoBackend())
    with pytest.raises(ExportError, match="cannot read the image"):
        burn_image(tmp_path / "none.iso", "stdio:/tmp/x.img", backend=XorrisoBackend())


def test_run_streaming_splits_carriage_returns_and_polls_cancel(tmp_path: Path) -> None:
    lines: list[str] = []
    rc, tail = run_streaming(["sh", "-c", r"printf 'a\rb\nc'; exit 3"], lines.append)
    assert (rc, lines, tail) == (3, ["a", "b", "c"], ["a", "b", "c"])
    token = CancelToken()
    import threading
    import time

    threading.Timer(0.2, token.cancel).start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        run_streaming(["sleep", "30"], lines.append, token, poll=0.05)
    assert time.monotonic() - t0 < 5


def test_for_platform() -> None:
    from app.core.devices import burn

    assert type(burn.for_platform("linux")).__name__ == "XorrisoBackend"
    assert type(burn.for_platform("darwin")).__name__ == "MacBurnerBackend"
    assert type(burn.for_platform("win32")).__name__ == "ImapiBackend"
    with pytest.raises(ExportError, match="no disc burner support"):
        burn.for_platform("plan9")
