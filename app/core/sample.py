"""The built-in sample disc that ``discbridge demo`` and the welcome page open.

It is pydicom's ``dicomdirtests`` medium (a real DICOMDIR file-set of three patients, CT and MR),
used read-only from the installed pydicom package (or from the frozen bundle, which collects it).
"""

from __future__ import annotations

from pathlib import Path

from app.core.errors import UnreadableMedium


def sample_disc_path() -> Path:
    """Folder of the sample medium. Raises UnreadableMedium when the install lacks it."""
    import pydicom

    root = Path(pydicom.__file__).resolve().parent / "data" / "test_files" / "dicomdirtests"
    if not (root / "DICOMDIR").is_file():
        raise UnreadableMedium(f"{root}: the built-in sample disc is missing from this install")
    return root
