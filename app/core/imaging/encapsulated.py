"""Encapsulated documents (PDF, CDA, STL, OBJ, MTL) extracted to a temporary file for a viewer.

PS3.3 C.24.2 (Encapsulated Document Module): the document is the value of Encapsulated Document
(0042,0011), an OB padded to even length; Encapsulated Document Length (0042,0015), when present,
gives the unpadded length. The MIME type (0042,0012) and the SOP Class pick the file suffix. Nothing
from the file names the output: it goes to a fresh private temporary file (``mkstemp``) in our own
folder under the system temp directory, never onto the medium. Pure Python: no Qt here.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset

from app.core.errors import RenderError

# SOP Class → (kind, suffix) (PS3.4 B.5; STANDARDS.md §2 "ENCAP DOC").
ENCAPSULATED_CLASSES: dict[str, tuple[str, str]] = {
    "1.2.840.10008.5.1.4.1.1.104.1": ("PDF", ".pdf"),
    "1.2.840.10008.5.1.4.1.1.104.2": ("CDA", ".xml"),
    "1.2.840.10008.5.1.4.1.1.104.3": ("STL", ".stl"),
    "1.2.840.10008.5.1.4.1.1.104.4": ("OBJ", ".obj"),
    "1.2.840.10008.5.1.4.1.1.104.5": ("MTL", ".mtl"),
}
_MIME_SUFFIX: dict[str, tuple[str, str]] = {
    "application/pdf": ("PDF", ".pdf"),
    "text/xml": ("CDA", ".xml"),
    "application/xml": ("CDA", ".xml"),
    "model/stl": ("STL", ".stl"),
    "model/obj": ("OBJ", ".obj"),
    "model/mtl": ("MTL", ".mtl"),
}
MAX_DOCUMENT_BYTES = 1 << 30  # refuse anything claiming more than 1 GiB


@dataclass(frozen=True)
class ExtractedDocument:
    """A document written to ``path``; ``kind`` is "PDF", "CDA", … and ``mime`` as recorded."""

    path: Path
    kind: str
    mime: str
    title: str
    size: int


def is_encapsulated_document(ds: Dataset) -> bool:
    """True when ``ds`` carries an Encapsulated Document (0042,0011)."""
    return "EncapsulatedDocument" in ds


def document_kind(ds: Dataset) -> tuple[str, str]:
    """(kind, suffix) for an encapsulated document: by MIME type first, else by SOP Class."""
    mime = str(ds.get("MIMETypeOfEncapsulatedDocument", "") or "").strip().lower()
    if mime in _MIME_SUFFIX:
        return _MIME_SUFFIX[mime]
    cls = str(ds.get("SOPClassUID", "") or "")
    return ENCAPSULATED_CLASSES.get(cls, ("document", ".bin"))


def temp_folder() -> Path:
    """Our private folder for extracted documents (created on demand, mode 0700)."""
    user = os.getuid() if hasattr(os, "getuid") else "user"
    folder = Path(tempfile.gettempdir()) / f"discbridge-docs-{user}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def _payload(ds: Dataset, name: str) -> bytes:
    try:
        data = ds.EncapsulatedDocument
    except Exception as exc:  # noqa: BLE001 - hostile bytes
        raise RenderError(f"{name}: the encapsulated document cannot be read ({exc})") from exc
    if not isinstance(data, bytes | bytearray) or not data:
        raise RenderError(f"{name}: the encapsulated document is empty")
    data = bytes(data)
    length = ds.get("EncapsulatedDocumentLength")
    try:
        n = int(length) if length not in (None, "") else None
    except (TypeError, ValueError):
        n = None
    if n is not None and 0 < n <= len(data):
        data = data[:n]
    return data


def _strip_pdf_padding(data: bytes) -> bytes:
    """Drop the even-length pad byte (NUL or space) after the final %%EOF, if any."""
    end = data.rfind(b"%%EOF")
    if end >= 0:
        tail = data[end + 5:]
        if tail.strip(b"\x00 \r\n") == b"":
            return data[: end + 5] + tail.rstrip(b"\x00")
    return data


def extract_document(source: BinaryIO | Path | str | Dataset, name: str = "document",
                     folder: Path | None = None) -> ExtractedDocument:
    """Write the encapsulated document of ``source`` to a new temporary file.

    Parameters
    ----------
    source
        A dataset, a path or an open binary file of an Encapsulated Document instance.
    name
        What to call the source in error messages.
    folder
        Where to create the file (default: :func:`temp_folder`).

    Returns
    -------
    ExtractedDocument
        The new file (the caller may delete it when done).

    Raises
    ------
    RenderError
        Not an encapsulated document, empty, too large, or a PDF that does not start with %PDF-.
    """
    if isinstance(source, Dataset):
        ds = source
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(source, force=True)
        except Exception as exc:  # noqa: BLE001 - hostile bytes
            raise RenderError(f"{name}: cannot read the file ({exc})") from exc
    if not is_encapsulated_document(ds):
        raise RenderError(f"{name}: no encapsulated document in this object")
    data = _payload(ds, name)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise RenderError(f"{name}: the encapsulated document is too large ({len(data)} bytes)")
    kind, suffix = document_kind(ds)
    if kind == "PDF":
        start = data.find(b"%PDF-", 0, 1024)
        if start < 0:
            raise RenderError(f"{name}: the encapsulated PDF does not start with %PDF-")
        data = _strip_pdf_padding(data[start:])
    target = folder or temp_folder()
    fd, tmp = tempfile.mkstemp(prefix="discbridge-", suffix=suffix, dir=target)
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise RenderError(f"{name}: cannot write a temporary copy ({exc})") from exc
    title = str(ds.get("DocumentTitle", "") or "").strip()
    mime = str(ds.get("MIMETypeOfEncapsulatedDocument", "") or "").strip()
    return ExtractedDocument(Path(tmp), kind, mime, title, len(data))
