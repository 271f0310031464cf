"""The export's input: every instance of the sources, merged, with its header read once.

Several sources merge; an instance already seen (same SOP Instance UID) is dropped with an
``info`` problem (the first source wins). Each file is opened through its medium's ``fs`` (so
files inside an .iso work and nothing outside a medium root is read) and read header-only:
File Meta with :func:`app.core.transcode.read_meta_info`, the dataset with pydicom up to the
Pixel Data. A file that cannot be read stops the plan with an ExportError naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom import Dataset

from app.core.errors import DiscBridgeError, ExportError
from app.core.fixes import value_str
from app.core.jobs import CancelToken, Progress, ProgressCallback, Throttle
from app.core.model import Instance, Medium, Problem
from app.core.transcode import EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, MetaInfo, read_meta_info


@dataclass
class SourceFile:
    """One source instance, read header-only."""

    medium: Medium
    rel: str  # path relative to the medium root
    local: Path | None  # a real path for fast copies (None inside an .iso)
    size: int
    label: str  # "<medium root>/<rel>" for messages
    meta: MetaInfo
    header: Dataset  # no Pixel Data; ``file_meta`` as read
    header_bytes: int  # where Pixel Data starts (roughly: header size)
    transfer_syntax: str

    @property
    def meta_ok(self) -> bool:
        """File Meta can be kept byte for byte (STANDARDS.md §1)."""
        m = self.meta
        return (m.has_prefix and m.group_length_ok and m.version_ok
                and m.transfer_syntax == self.transfer_syntax
                and m.sop_class == value_str(self.header, "SOPClassUID")
                and m.sop_instance == value_str(self.header, "SOPInstanceUID"))

    @property
    def body_offset(self) -> int:
        return self.meta.body_offset if self.meta.has_prefix else 0


def _ts_of(ds: Dataset, meta: MetaInfo) -> str:
    if meta.transfer_syntax:
        return meta.transfer_syntax
    enc = getattr(ds, "original_encoding", None)
    if enc is not None:
        implicit, little = enc
        if implicit:
            return IMPLICIT_LE
        return EXPLICIT_LE if little else EXPLICIT_BE
    return IMPLICIT_LE


def read_source(medium: Medium, inst: Instance) -> SourceFile:
    """Read one instance's header. Raises ExportError naming the file."""
    assert inst.path is not None
    fs = medium.fs
    if fs is None:
        raise ExportError(f"{medium.root}: this source cannot be read (no file access)")
    label = f"{medium.root.rstrip('/')}/{inst.path}"
    try:
        local = fs.local_path(inst.path)
        size = fs.size(inst.path)
        with fs.open(inst.path) as fp:
            meta = read_meta_info(fp)
            fp.seek(0)
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
            header_bytes = fp.tell()
    except DiscBridgeError as exc:
        raise ExportError(f"{label}: {exc}") from exc
    except OSError as exc:
        raise ExportError(f"{label}: cannot read the file ({exc.strerror or exc})") from exc
    except Exception as exc:  # noqa: BLE001 - hostile bytes
        raise ExportError(f"{label}: not a readable DICOM file ({exc})") from exc
    if not value_str(ds, "SOPInstanceUID"):
        raise ExportError(f"{label}: no SOP Instance UID; it cannot be exported")
    return SourceFile(medium, inst.path, local, size, label, meta, ds, header_bytes,
                      _ts_of(ds, meta))


def read_sources(media: list[Medium], select: set[str] | None, *,
                 progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> tuple[list[SourceFile], list[Problem]]:
    """Every wanted instance of ``media`` once, in source order, and the problems to tell."""
    wanted: list[tuple[Medium, Instance]] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for medium in media:
        for _p, _st, _se, inst in medium.walk():
            uid = inst.sop_instance_uid
            if inst.path is None:
                if select is None or (uid and uid in select):
                    problems.append(Problem("warning", "missing-file", inst.path or None,
                                            f"{medium.root}: an instance ({uid}) is listed "
                                            "but its file is missing; not exported"))
                continue
            if select is not None and uid not in select:
                continue
            wanted.append((medium, inst))
    report = Throttle(progress) if progress else None
    out: list[SourceFile] = []
    total = len(wanted)
    for n, (medium, inst) in enumerate(wanted):
        if cancel is not None:
            cancel.raise_if_cancelled()
        src = read_source(medium, inst)
        uid = value_str(src.header, "SOPInstanceUID") or ""
        if select is not None and uid not in select:
            continue
        if uid in seen:
            problems.append(Problem("info", "duplicate-instance", inst.path,
                                    f"{src.label}: same SOP Instance UID as {seen[uid]}; "
                                    "exported once"))
            continue
        seen[uid] = src.label
        out.append(src)
        if report is not None:
            report(Progress("plan", n + 1, total, message="reading headers"),
                   force=n + 1 == total)
    return out, problems
