"""What a conformant File ID component is (PS3.10 §8.2, PS3.12): 1–8 of ``A–Z 0–9 _``, and
(for media read on Windows) never a device name. Used by the layout and the DICOMDIR writer."""

from __future__ import annotations

import re

_COMPONENT = re.compile(r"^[A-Z0-9_]{1,8}$")


WINDOWS_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CLOCK$", "CONIN$", "CONOUT$"}
    | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)})


def is_valid_component(name: str) -> bool:
    """True for a File ID component: 1–8 of ``A–Z 0–9 _`` and no Windows device name."""
    return bool(_COMPONENT.match(name)) and name not in WINDOWS_DEVICE_NAMES
