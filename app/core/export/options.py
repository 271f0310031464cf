"""What the user asked an export to do: the CLI and the GUI wizard both fill this in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

MediaType = Literal["folder", "cd", "dvd", "dvd-dl", "bd", "usb"]
MEDIA_TYPES: tuple[str, ...] = ("cd", "dvd", "dvd-dl", "bd", "usb")

# Default application profile per media type (issue 3, PS3.11).
DEFAULT_PROFILE: dict[str, str] = {
    "folder": "STD-GEN-CD",
    "cd": "STD-GEN-CD",
    "dvd": "STD-GEN-DVD-JPEG",
    "dvd-dl": "STD-GEN-DVD-JPEG",
    "bd": "STD-GEN-BD-JPEG",
    "usb": "STD-GEN-USB-JPEG",
}


@dataclass
class ExportOptions:
    """An export request. ``sources`` are folders, mount points, DICOMDIR files or .iso images.

    ``select`` restricts the export to these SOP Instance UIDs (None: everything in the sources).
    ``dest`` is the target folder; with ``iso``/``burn`` it is an optional staging folder.
    """

    sources: list[Path]
    dest: Path | None = None
    media: MediaType | None = None  # None: "folder" (no capacity limit other than free space)
    profile: str | None = None  # None: DEFAULT_PROFILE[media]
    icons: bool = False
    fileset_id: str | None = None
    institution: str | None = None
    contact: str | None = None
    span: bool = False
    force: bool = False
    on_id_clash: Literal["error", "separate"] = "error"
    study_date: str | None = None  # YYYYMMDD, used only when a study has no date anywhere
    iso: Path | None = None
    burn: str | None = None  # a device name from a burner backend
    verify: bool = True
    report: Path | None = None  # None: the application's data folder
    select: set[str] | None = field(default=None)
    # Leave out the instances that cannot be put on this medium (each named in the plan and the
    # report with its reason) instead of stopping the export.
    skip_unexportable: bool = False

    @property
    def effective_media(self) -> str:
        return self.media or "folder"

    @property
    def effective_profile(self) -> str:
        return self.profile or DEFAULT_PROFILE[self.effective_media]
