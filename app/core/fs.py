"""Read-only, root-confined access to a medium's files: a folder, a mount point or an .iso image.

Every path here is *relative to the medium root*, ``/``-separated, in the real on-disc spelling.
Implementations refuse to leave the root (``..``, absolute paths, symlinks pointing outside)
by raising :class:`app.core.errors.UnsafePath`. Nothing here ever writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from app.core.errors import UnsafePath


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool
    size: int  # bytes; 0 for directories


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


class DirFS:
    """A folder or mount point. Symlinks are followed only while they stay inside the root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.label = str(self.root)

    def _path(self, rel: str) -> Path:
        p = check_relative(rel)
        full = self.root.joinpath(*p.parts) if p.parts else self.root
        real = full.resolve()
        if real != self.root and not real.is_relative_to(self.root):
            raise UnsafePath(f"{rel}: symlink leads outside the medium ({real})")
        return real

    def listdir(self, rel: str) -> list[Entry]:
        out: list[Entry] = []
        with os.scandir(self._path(rel)) as it:
            for de in it:
                try:
                    is_dir = de.is_dir()
                    size = 0 if is_dir else de.stat().st_size
                except OSError:
                    is_dir, size = False, 0
                out.append(Entry(de.name, is_dir, size))
        return out

    def open(self, rel: str) -> BinaryIO:
        return open(self._path(rel), "rb")  # noqa: SIM115 - caller closes

    def size(self, rel: str) -> int:
        return self._path(rel).stat().st_size

    def local_path(self, rel: str) -> Path | None:
        return self._path(rel)
