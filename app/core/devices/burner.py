"""A disc writer and what a burner backend provides: the types shared by the registry in
:mod:`app.core.devices.burn` and the per-OS backends (which import them from here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from app.core.jobs import CancelToken, ProgressCallback

MediaState = Literal["blank", "appendable", "closed", "none", "unknown"]


@dataclass(frozen=True)
class Burner:
    """A disc writer and the medium in it.

    ``device`` is what :func:`burn_image` takes (``/dev/sr0``, ``stdio:/tmp/disc.img``, a drutil
    drive number, an IMAPI2 recorder ID). ``capacity_bytes`` is the free space on the medium
    (0 when unknown or no medium). ``can_write`` is True for a blank or rewritable medium.
    """

    device: str
    name: str
    vendor: str
    media_state: MediaState
    media_type: str
    capacity_bytes: int
    can_write: bool


@dataclass(frozen=True)
class BurnResult:
    """What happened: ``ok`` only when the disc was written and read back identical."""

    ok: bool
    device: str
    bytes_written: int
    sha256_expected: str
    sha256_read: str
    message: str


class BurnerBackend(Protocol):
    """What an OS backend provides. All methods may raise :class:`ExportError`."""

    def list_burners(self) -> list[Burner]:
        """Every writer the OS offers, with its medium state."""
        ...

    def burn(self, iso: Path, device: str, progress: ProgressCallback | None,
             cancel: CancelToken | None) -> None:
        """Write ``iso`` as a closed single-session disc. Calls ``cancel.allow_cancel(False)``
        when the drive starts writing; raises :class:`Cancelled` only before that."""
        ...

    def read_back(self, device: str, size: int) -> BinaryIO | Path:
        """The medium's first ``size`` bytes: an open binary file or a path to open."""
        ...
