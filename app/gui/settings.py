"""The user's settings, through QSettings (organisation and application "DiscBridge").

One small typed wrapper, so every widget reads and writes the same keys::

    s = Settings()
    s.institution = "St. Mary's Radiology"
    s.add_recent_folder("/media/cdrom")
    if s.detection_policy == "ask": ...

The wizard (app/gui/wizard/) reads and remembers institution, contact, media, profile and
burner here; the Sources panel keeps the recent folders; the main window its geometry.
"""

from __future__ import annotations

from typing import Literal, cast

from PySide6.QtCore import QByteArray, QSettings

from app import APP_NAME

ORGANIZATION = "DiscBridge"
DetectionPolicy = Literal["ask", "open", "ignore"]
DETECTION_POLICIES: tuple[DetectionPolicy, ...] = ("ask", "open", "ignore")
MAX_RECENT = 10


class Settings:
    """Typed access to the stored settings. Cheap to create; every write is saved at once."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.q = qsettings or QSettings(QSettings.defaultFormat(), QSettings.Scope.UserScope,
                                        ORGANIZATION, APP_NAME)

    # ----- helpers ------------------------------------------------------------------------
    def _str(self, key: str, default: str = "") -> str:
        value = self.q.value(key, default)
        return value if isinstance(value, str) else default

    def _set(self, key: str, value: object) -> None:
        self.q.setValue(key, value)
        self.q.sync()

    # ----- export defaults (README.TXT, wizard) --------------------------------------------
    @property
    def institution(self) -> str:
        return self._str("export/institution")

    @institution.setter
    def institution(self, value: str) -> None:
        self._set("export/institution", value)

    @property
    def contact(self) -> str:
        return self._str("export/contact")

    @contact.setter
    def contact(self, value: str) -> None:
        self._set("export/contact", value)

    @property
    def default_media(self) -> str:
        """"folder", "cd", "dvd", "dvd-dl", "bd" or "usb"."""
        return self._str("export/media", "cd")

    @default_media.setter
    def default_media(self, value: str) -> None:
        self._set("export/media", value)

    @property
    def default_profile(self) -> str:
        """An application profile name, or "" for the media type's default profile."""
        return self._str("export/profile")

    @default_profile.setter
    def default_profile(self, value: str) -> None:
        self._set("export/profile", value)

    @property
    def burner(self) -> str:
        """The burner device last used ("" when none)."""
        return self._str("export/burner")

    @burner.setter
    def burner(self, value: str) -> None:
        self._set("export/burner", value)

    # ----- media detection -----------------------------------------------------------------
    @property
    def detection_policy(self) -> DetectionPolicy:
        """What to do when a medium with DICOM content is inserted: ask, open, or ignore."""
        value = self._str("media/detection_policy", "ask")
        return cast(DetectionPolicy, value) if value in DETECTION_POLICIES else "ask"

    @detection_policy.setter
    def detection_policy(self, value: DetectionPolicy) -> None:
        if value not in DETECTION_POLICIES:
            raise ValueError(f"detection policy must be one of {DETECTION_POLICIES}: {value!r}")
        self._set("media/detection_policy", value)

    # ----- recent folders ------------------------------------------------------------------
    @property
    def recent_folders(self) -> list[str]:
        """Most recent first, at most MAX_RECENT."""
        value = self.q.value("recent/folders", [])
        if isinstance(value, str):  # QSettings gives a plain string for a one-item list
            value = [value]
        if not isinstance(value, list):
            return []
        return [v for v in value if isinstance(v, str) and v][:MAX_RECENT]

    def add_recent_folder(self, path: str) -> None:
        folders = [path] + [p for p in self.recent_folders if p != path]
        self._set("recent/folders", folders[:MAX_RECENT])

    def remove_recent_folder(self, path: str) -> None:
        self._set("recent/folders", [p for p in self.recent_folders if p != path])

    # ----- window --------------------------------------------------------------------------
    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        geo = self.q.value("window/geometry")
        state = self.q.value("window/state")
        return (geo if isinstance(geo, QByteArray) else None,
                state if isinstance(state, QByteArray) else None)

    def save_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self.q.setValue("window/geometry", geometry)
        self._set("window/state", state)
