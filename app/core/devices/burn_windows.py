"""Windows burner backend: IMAPI2 over COM (``comtypes``, a Windows-only dependency, imported lazily).

Objects used, as Microsoft documents them (imapi2.h):

- ``IMAPI2.MsftDiscMaster2``: a collection of recorder unique IDs (``Count``, ``Item(i)``);
- ``IMAPI2.MsftDiscRecorder2``: ``InitializeDiscRecorder(id)``, ``VendorId``, ``ProductId``,
  ``VolumePathNames`` (drive letters such as ``D:\\``);
- ``IMAPI2.MsftDiscFormat2Data``: ``Recorder``, ``ClientName``, ``ForceMediaToBeClosed``,
  ``IsCurrentMediaSupported(recorder)``, ``CurrentPhysicalMediaType``
  (IMAPI_MEDIA_PHYSICAL_TYPE), ``CurrentMediaStatus`` (IMAPI_FORMAT2_DATA_MEDIA_STATE flags),
  ``FreeSectorsOnMedia``, ``Write(IStream)``, ``CancelWrite()`` and the ``Update(sender, args)``
  event of ``DDiscFormat2DataEvents`` whose args (IDiscFormat2DataEventArgs) carry
  ``CurrentAction`` (IMAPI_FORMAT2_DATA_WRITE_ACTION), ``StartLba``, ``SectorCount`` and
  ``LastWrittenLba``;
- ``SHCreateStreamOnFileEx`` (shlwapi) for the image as an IStream.

All COM access goes through :class:`ImapiCom`, a thin adapter; tests pass a fake with the same
methods returning objects shaped like the interfaces above. Cancel uses ``CancelWrite`` and is
honoured only before ``WRITING_DATA``. The read-back opens the drive's volume device
(``\\\\.\\D:``). This backend has not been run on Windows: it is tested up to the COM calls.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from app.core.devices.burner import Burner, MediaState
from app.core.errors import ExportError
from app.core.jobs import Cancelled, CancelToken, Progress, ProgressCallback

SECTOR = 2048
# IMAPI_FORMAT2_DATA_MEDIA_STATE
MS_OVERWRITE_ONLY = 0x1
MS_BLANK = 0x2
MS_APPENDABLE = 0x4
MS_FINAL_SESSION = 0x8
MS_DAMAGED = 0x400
MS_ERASE_REQUIRED = 0x800
MS_NON_EMPTY_SESSION = 0x1000
MS_WRITE_PROTECTED = 0x2000
MS_FINALIZED = 0x4000
MS_UNSUPPORTED_MEDIA = 0x8000
# IMAPI_FORMAT2_DATA_WRITE_ACTION
WA_VALIDATING_MEDIA = 0
WA_FORMATTING_MEDIA = 1
WA_INITIALIZING_HARDWARE = 2
WA_CALIBRATING_POWER = 3
WA_WRITING_DATA = 4
WA_FINALIZATION = 5
WA_COMPLETED = 6
WA_VERIFYING = 7
_ACTIONS = {0: "validating the disc", 1: "formatting the disc", 2: "initialising the drive",
            3: "calibrating the laser", 4: "writing", 5: "closing the disc", 6: "completed",
            7: "verifying"}
# IMAPI_MEDIA_PHYSICAL_TYPE
PHYSICAL_TYPES = {
    0: "unknown", 1: "CD-ROM", 2: "CD-R", 3: "CD-RW", 4: "DVD-ROM", 5: "DVD-RAM", 6: "DVD+R",
    7: "DVD+RW", 8: "DVD+R DL", 9: "DVD-R", 10: "DVD-RW", 11: "DVD-R DL", 12: "disk",
    13: "DVD+RW DL", 14: "HD DVD-ROM", 15: "HD DVD-R", 16: "HD DVD-RAM", 17: "BD-ROM",
    18: "BD-R", 19: "BD-RE",
}
_REWRITABLE = {"CD-RW", "DVD+RW", "DVD-RW", "DVD-RAM", "DVD+RW DL", "BD-RE", "HD DVD-RAM"}


class ImapiComLike(Protocol):
    def recorder_ids(self) -> list[str]: ...

    def recorder(self, unique_id: str) -> Any: ...

    def data_format(self) -> Any: ...

    def file_stream(self, path: Path) -> Any: ...

    def advise(self, fmt: Any, on_update: Callable[[Any, Any], None]) -> Any: ...


class ImapiCom:
    """The real COM calls (Windows only). Initialises COM multithreaded on the calling thread
    so IMAPI delivers ``Update`` events during the blocking ``Write`` without a message pump."""

    def __init__(self) -> None:
        try:
            import comtypes  # type: ignore[import-not-found]
            import comtypes.client  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ExportError("burning on Windows needs the comtypes package") from exc
        self._comtypes = comtypes
        self._client = comtypes.client
        try:
            comtypes.CoInitializeEx(comtypes.COINIT_MULTITHREADED)
        except OSError:
            pass  # already initialised on this thread

    def recorder_ids(self) -> list[str]:
        master = self._client.CreateObject("IMAPI2.MsftDiscMaster2")
        return [str(master.Item(i)) for i in range(int(master.Count))]

    def recorder(self, unique_id: str) -> Any:
        rec = self._client.CreateObject("IMAPI2.MsftDiscRecorder2")
        rec.InitializeDiscRecorder(unique_id)
        return rec

    def data_format(self) -> Any:
        return self._client.CreateObject("IMAPI2.MsftDiscFormat2Data")

    def file_stream(self, path: Path) -> Any:
        import ctypes

        from comtypes import POINTER  # type: ignore[import-not-found]
        from comtypes.persist import IStream  # type: ignore[import-not-found]

        stgm_read, stgm_share_deny_write = 0x0, 0x20
        stream = POINTER(IStream)()
        shlwapi = ctypes.WinDLL("shlwapi")  # type: ignore[attr-defined]
        hr = shlwapi.SHCreateStreamOnFileEx(str(path), stgm_read | stgm_share_deny_write, 0,
                                            False, None, ctypes.byref(stream))
        if hr != 0:
            raise ExportError(f"{path}: cannot open the image for IMAPI (HRESULT {hr:#x})")
        return stream

    def advise(self, fmt: Any, on_update: Callable[[Any, Any], None]) -> Any:
        class Sink:
            def Update(self, this: Any, sender: Any, args: Any) -> None:  # noqa: N802 - COM name
                on_update(sender, args)

        return self._client.GetEvents(fmt, Sink())


def media_state_from_status(status: int) -> MediaState:
    """IMAPI_FORMAT2_DATA_MEDIA_STATE flags → our state."""
    if status & MS_BLANK:
        return "blank"
    if status & (MS_FINALIZED | MS_FINAL_SESSION):
        return "closed"
    if status & MS_APPENDABLE:
        return "appendable"
    if status & MS_OVERWRITE_ONLY:
        return "appendable"
    return "unknown"


class ImapiBackend:
    """:class:`app.core.devices.burn.BurnerBackend` over IMAPI2; ``com`` defaults to :class:`ImapiCom`."""

    client_name = "DiscBridge"

    def __init__(self, com: ImapiComLike | None = None) -> None:
        self._com = com

    @property
    def com(self) -> ImapiComLike:
        if self._com is None:
            self._com = ImapiCom()
        return self._com

    def list_burners(self) -> list[Burner]:
        try:
            ids = self.com.recorder_ids()
        except ExportError:
            raise
        except Exception as exc:  # COMError and friends
            raise ExportError(f"IMAPI2 cannot list recorders: {exc}") from exc
        return [self.describe(uid) for uid in ids]

    def describe(self, unique_id: str) -> Burner:
        try:
            rec = self.com.recorder(unique_id)
            vendor = str(rec.VendorId).strip()
            product = str(rec.ProductId).strip()
            letters = [str(p) for p in (rec.VolumePathNames or ())]
        except Exception as exc:
            raise ExportError(f"{unique_id}: IMAPI2 cannot open this recorder: {exc}") from exc
        name = f"{product} ({', '.join(x.rstrip(chr(92)) for x in letters)})" if letters \
            else product
        fmt = self.com.data_format()
        try:
            fmt.Recorder = rec
            if not fmt.IsCurrentMediaSupported(rec):
                return Burner(unique_id, name, vendor, "none", "", 0, False)
            media_type = PHYSICAL_TYPES.get(int(fmt.CurrentPhysicalMediaType), "unknown")
            status = int(fmt.CurrentMediaStatus)
            free = int(fmt.FreeSectorsOnMedia) * SECTOR
        except Exception:  # no disc: IMAPI raises E_IMAPI_RECORDER_MEDIA_NO_MEDIA
            return Burner(unique_id, name, vendor, "none", "", 0, False)
        state = media_state_from_status(status)
        bad = status & (MS_DAMAGED | MS_ERASE_REQUIRED | MS_WRITE_PROTECTED | MS_UNSUPPORTED_MEDIA)
        can_write = not bad and (state == "blank" or (
            media_type in _REWRITABLE and bool(status & MS_OVERWRITE_ONLY)))
        return Burner(unique_id, name, vendor, state, media_type, free, can_write)

    def burn(self, iso: Path, device: str, progress: ProgressCallback | None,
             cancel: CancelToken | None) -> None:
        size = Path(iso).stat().st_size
        state = {"writing": False, "cancel_sent": False}
        try:
            rec = self.com.recorder(device)
            fmt = self.com.data_format()
            fmt.Recorder = rec
            fmt.ClientName = self.client_name
            fmt.ForceMediaToBeClosed = True
            stream = self.com.file_stream(Path(iso))
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"{device}: IMAPI2 cannot prepare the burn: {exc}") from exc

        def on_update(_sender: Any, args: Any) -> None:
            action = int(args.CurrentAction)
            if action >= WA_WRITING_DATA and not state["writing"]:
                state["writing"] = True
                if cancel is not None:
                    cancel.allow_cancel(False)
            if not state["writing"] and cancel is not None and cancel.cancelled \
                    and not state["cancel_sent"]:
                state["cancel_sent"] = True
                fmt.CancelWrite()
                return
            if progress is None:
                return
            done = 0
            if action == WA_WRITING_DATA:
                start, count = int(args.StartLba), int(args.SectorCount)
                written = int(args.LastWrittenLba) - start
                done = min(size, size * max(written, 0) // max(count, 1))
            elif action >= WA_FINALIZATION:
                done = size
            progress(Progress("burn", done_bytes=done, total_bytes=size,
                              message=_ACTIONS.get(action, "burning"),
                              cancellable=not state["writing"]))

        connection = self.com.advise(fmt, on_update)
        try:
            if cancel is not None:
                cancel.raise_if_cancelled()
            fmt.Write(stream)
        except Cancelled:
            raise
        except Exception as exc:
            if state["cancel_sent"] and not state["writing"]:
                raise Cancelled("cancelled by the user") from exc
            raise ExportError(f"{device}: IMAPI2 burn failed: {exc}") from exc
        finally:
            del connection
        if state["cancel_sent"] and not state["writing"]:
            raise Cancelled("cancelled by the user")
        if progress is not None:
            progress(Progress("burn", done_bytes=size, total_bytes=size,
                              message="written", cancellable=False))

    def read_back(self, device: str, size: int) -> BinaryIO | Path:
        """The recorder's volume device (``\\\\.\\D:``), read from sector 0."""
        try:
            letters = [str(p) for p in (self.com.recorder(device).VolumePathNames or ())]
        except Exception as exc:
            raise ExportError(f"{device}: cannot find the drive letter: {exc}") from exc
        if not letters:
            raise ExportError(f"{device}: the recorder has no drive letter to read back from")
        return Path("\\\\.\\" + letters[0].rstrip("\\"))
