"""What a medium gives: read-only, root-confined access to its files, whatever holds them.

:class:`MediumFS` is implemented by :class:`app.core.medium.fs.DirFS` (a folder or mount point)
and :class:`app.core.medium.isofs.IsoFS` (an .iso image); both import these shared types from
here. Every path is relative to the medium root, ``/``-separated, in the real on-disc spelling.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import BinaryIO, NamedTuple, Protocol

from app.core.errors import UnsafePath


class Entry(NamedTuple):
    """One directory entry as listed (a tuple: tens of thousands are made per medium)."""

    name: str
    is_dir: bool
    size: int  # bytes; 0 for directories
    is_link: bool = False  # a symlink (DirFS): its target must be checked before it is trusted


class MediumFS(Protocol):
    """What the reader, the viewer and the exporter need from a medium."""

    label: str  # what to show as the root (the folder path, or the .iso path)

    def listdir(self, rel: str) -> list[Entry]:
        """Entries of the directory ``rel`` ("" is the root). Raises OSError when unreadable."""
        ...

    def open(self, rel: str) -> BinaryIO:
        """Open a file for binary reading. Raises OSError / UnsafePath."""
        ...

    def size(self, rel: str) -> int:
        """Size in bytes of a file. Raises OSError / UnsafePath."""
        ...

    def local_path(self, rel: str) -> Path | None:
        """A real filesystem path for ``rel`` (for fast copies), or None (e.g. inside an .iso)."""
        ...


def check_relative(rel: str) -> PurePosixPath:
    """Validate a root-relative path: no absolute, drive, UNC or ``..`` parts. Returns it parsed."""
    if "\\" in rel or "\x00" in rel:
        raise UnsafePath(f"{rel!r}: backslash or NUL in a medium path")
    p = PurePosixPath(rel)
    if p.is_absolute() or (p.parts and ":" in p.parts[0]):
        raise UnsafePath(f"{rel}: absolute path or drive letter leads outside the medium")
    if any(part == ".." for part in p.parts):
        raise UnsafePath(f"{rel}: '..' leads outside the medium")
    return p
