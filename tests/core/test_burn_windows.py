"""Windows IMAPI2 backend up to the COM calls: a fake COM layer shaped like the documented interfaces."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO

import pytest

from app.core.devices.burn import burn_image, list_burners
from app.core.devices.burn_windows import (
    MS_APPENDABLE,
    MS_BLANK,
    MS_FINALIZED,
    MS_NON_EMPTY_SESSION,
    MS_OVERWRITE_ONLY,
    MS_WRITE_PROTECTED,
    WA_CALIBRATING_POWER,
    WA_COMPLETED,
    WA_FINALIZATION,
    WA_INITIALIZING_HARDWARE,
    WA_VALIDATING_MEDIA,
    WA_WRITING_DATA,
    ImapiBackend,
    media_state_from_status,
)
from app.core.errors import ExportError
from app.core.jobs import Cancelled, CancelToken, Progress

RECORDERS = {
    "{D1}": dict(VendorId="HL-DT-ST", ProductId="DVDRAM GP65NB60 ", VolumePathNames=("E:\\",),
                 media=(6, MS_BLANK, 2295104)),  # DVD+R, blank
    "{D2}": dict(VendorId="ASUS    ", ProductId="BW-16D1HT", VolumePathNames=("F:\\",),
                 media=(2, MS_FINALIZED | MS_NON_EMPTY_SESSION, 0)),  # closed CD-R
    "{D3}": dict(VendorId="PIONEER ", ProductId="BDR-XD07", VolumePathNames=(), media=None),
    "{D4}": dict(VendorId="LITEON", ProductId="iHAS124", VolumePathNames=("H:\\",),
                 media=(7, MS_OVERWRITE_ONLY | MS_APPENDABLE, 2295104)),  # used DVD+RW
    "{D5}": dict(VendorId="LITEON", ProductId="iHAS124", VolumePathNames=("I:\\",),
                 media=(9, MS_BLANK | MS_WRITE_PROTECTED, 2295104)),
}


class FakeRecorder:
    def __init__(self) -> None:
        self.unique_id: str | None = None

    def InitializeDiscRecorder(self, unique_id: str) -> None:  # noqa: N802 - COM names
        if unique_id not in RECORDERS:
            raise OSError(-2147024809, "The parameter is incorrect.")
        self.unique_id = unique_id
        info = RECORDERS[unique_id]
        self.VendorId = info["VendorId"]
        self.ProductId = info["ProductId"]
        self.VolumePathNames = info["VolumePathNames"]


class FakeFormat:
    """MsftDiscFormat2Data: properties read from the recorder's media; Write fires Update."""

    def __init__(self, com: FakeCom) -> None:
        self.com = com
        self.Recorder: FakeRecorder | None = None
        self.ClientName = ""
        self.ForceMediaToBeClosed = False
        self.cancel_requested = False
        self.handler: Any = None

    def _media(self) -> tuple[int, int, int]:
        assert self.Recorder is not None and self.Recorder.unique_id is not None
        media = RECORDERS[self.Recorder.unique_id]["media"]
        if media is None:
            raise OSError(-1062599672, "E_IMAPI_RECORDER_MEDIA_NO_MEDIA")
        return media

    def IsCurrentMediaSupported(self, recorder: FakeRecorder) -> bool:  # noqa: N802
        try:
            self.Recorder = recorder
            self._media()
        except OSError:
            return False
        return True

    @property
    def CurrentPhysicalMediaType(self) -> int:  # noqa: N802
        return self._media()[0]

    @property
    def CurrentMediaStatus(self) -> int:  # noqa: N802
        return self._media()[1]

    @property
    def FreeSectorsOnMedia(self) -> int:  # noqa: N802
        return self._media()[2]

    def CancelWrite(self) -> None:  # noqa: N802
        self.cancel_requested = True

    def Write(self, stream: BinaryIO) -> None:  # noqa: N802
        assert self.ClientName == "DiscBridge" and self.ForceMediaToBeClosed
        sectors = -(-self.com.iso_size // 2048)
        start = 0

        def update(action: int, last: int = 0) -> None:
            args = SimpleNamespace(CurrentAction=action, StartLba=start, SectorCount=sectors,
                                   LastWrittenLba=last, ElapsedTime=1, RemainingTime=1)
            self.handler(self, args)
            if self.com.pause_after == action:
                self.com.pause_hook()

        for action in (WA_VALIDATING_MEDIA, WA_INITIALIZING_HARDWARE, WA_CALIBRATING_POWER):
            update(action)
            if self.cancel_requested:
                raise OSError(-1062600702, "E_IMAPI_REQUEST_CANCELLED")
        with open(self.com.disc, "wb") as out:
            for i in range(4):
                update(WA_WRITING_DATA, start + sectors * i // 4)
                out.write(stream.read(-(-self.com.iso_size // 4)))
            shutil.copyfileobj(stream, out)
        update(WA_WRITING_DATA, start + sectors)
        update(WA_FINALIZATION)
        update(WA_COMPLETED)
        stream.close()


class FakeCom:
    def __init__(self, disc: Path, iso_size: int = 0) -> None:
        self.disc = disc
        self.iso_size = iso_size
        self.pause_after: int | None = None
        self.pause_hook: Any = None
        self.advised = 0

    def recorder_ids(self) -> list[str]:
        return list(RECORDERS)

    def recorder(self, unique_id: str) -> FakeRecorder:
        r = FakeRecorder()
        r.InitializeDiscRecorder(unique_id)
        return r

    def data_format(self) -> FakeFormat:
        self.last_format = FakeFormat(self)
        return self.last_format

    def file_stream(self, path: Path) -> BinaryIO:
        return open(path, "rb")  # noqa: SIM115 - closed by Write, as IMAPI releases the stream

    def advise(self, fmt: FakeFormat, on_update: Any) -> object:
        fmt.handler = on_update
        self.advised += 1
        return object()


class DiscFileBackend(ImapiBackend):
    def read_back(self, device: str, size: int) -> BinaryIO | Path:
        assert super().read_back(device, size) == Path("\\\\.\\E:")
        return self.com.disc  # type: ignore[attr-defined]


def test_list_burners_and_media_states(tmp_path: Path) -> None:
    burners = {b.device: b for b in list_burners(ImapiBackend(FakeCom(tmp_path / "d")))}
    assert burners["{D1}"].name == "DVDRAM GP65NB60 (E:)" and burners["{D1}"].vendor == "HL-DT-ST"
    assert [(b.media_state, b.media_type, b.capacity_bytes, b.can_write)
            for b in burners.values()] == [
        ("blank", "DVD+R", 2295104 * 2048, True),
        ("closed", "CD-R", 0, False),
        ("none", "", 0, False),
        ("appendable", "DVD+RW", 2295104 * 2048, True),
        ("blank", "DVD-R", 2295104 * 2048, False),  # write-protected
    ]
    assert burners["{D3}"].name == "BDR-XD07"
    assert media_state_from_status(0) == "unknown"


def _iso(tmp_path: Path) -> Path:
    iso = tmp_path / "x.iso"
    iso.write_bytes(bytes(range(256)) * 2048 * 3)
    return iso


def test_burn_and_verify(tmp_path: Path) -> None:
    iso = _iso(tmp_path)
    com = FakeCom(tmp_path / "disc.bin", iso.stat().st_size)
    token = CancelToken()
    seen: list[Progress] = []
    result = burn_image(iso, "{D1}", progress=seen.append, cancel=token,
                        backend=DiscFileBackend(com))
    assert result.ok, result.message
    assert result.sha256_read == hashlib.sha256(iso.read_bytes()).hexdigest()
    assert not token.cancellable and com.advised == 1
    burn = [p for p in seen if p.phase == "burn"]
    assert burn[-1].done_bytes == burn[-1].total_bytes and not burn[-1].cancellable


def test_cancel_before_writing_sends_cancelwrite(tmp_path: Path) -> None:
    iso = _iso(tmp_path)
    com = FakeCom(tmp_path / "disc.bin", iso.stat().st_size)
    token = CancelToken()
    com.pause_after = WA_INITIALIZING_HARDWARE
    com.pause_hook = token.cancel  # the user clicks Cancel while the drive initialises
    with pytest.raises(Cancelled):
        burn_image(iso, "{D1}", cancel=token, backend=DiscFileBackend(com))
    assert com.last_format.cancel_requested and not (tmp_path / "disc.bin").exists()


def test_cancel_while_writing_is_refused(tmp_path: Path) -> None:
    iso = _iso(tmp_path)
    com = FakeCom(tmp_path / "disc.bin", iso.stat().st_size)
    token = CancelToken()
    answers: list[bool] = []
    com.pause_after = WA_WRITING_DATA
    com.pause_hook = lambda: answers.append(token.cancel())
    result = burn_image(iso, "{D1}", cancel=token, backend=DiscFileBackend(com))
    assert result.ok and set(answers) == {False} and not com.last_format.cancel_requested


def test_refusals_and_failures(tmp_path: Path) -> None:
    iso = _iso(tmp_path)
    com = FakeCom(tmp_path / "disc.bin", iso.stat().st_size)
    with pytest.raises(ExportError, match="the disc is closed"):
        burn_image(iso, "{D2}", backend=ImapiBackend(com))
    with pytest.raises(ExportError, match="no disc in the drive"):
        burn_image(iso, "{D3}", backend=ImapiBackend(com))
    with pytest.raises(ExportError, match="the disc is blank"):  # write-protected blank
        burn_image(iso, "{D5}", backend=ImapiBackend(com))

    class Failing(FakeCom):
        def data_format(self) -> FakeFormat:
            fmt = super().data_format()

            def boom(stream: BinaryIO) -> None:
                stream.close()
                raise OSError(-1062600185, "E_IMAPI_RECORDER_MEDIA_BECOMING_READY")

            fmt.Write = boom  # type: ignore[method-assign]
            return fmt

    with pytest.raises(ExportError, match="IMAPI2 burn failed"):
        burn_image(iso, "{D1}", backend=ImapiBackend(Failing(tmp_path / "d2")))
    # The real read-back opens \\.\E:, which does not exist here: reported, not raised.
    result = burn_image(iso, "{D4}", backend=ImapiBackend(com))
    assert not result.ok and "reading the disc back failed" in result.message


@pytest.mark.skipif(sys.platform == "win32", reason="checks the non-Windows failure mode")
def test_real_com_needs_windows() -> None:
    with pytest.raises(ExportError):
        list(ImapiBackend().list_burners())
