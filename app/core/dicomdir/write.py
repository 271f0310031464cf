"""Write a DICOMDIR: Basic Directory IOD with exact offsets (STANDARDS.md §1–§3, §7 "Writer checklist").

``build_dicomdir(entries, fileset_id=…)`` turns instance headers with their File IDs into the
bytes of a DICOMDIR:

- one PATIENT record per Patient ID (two entries with the same ID and different names raise
  ValueError: the exporter resolves clashes first), one STUDY per Study Instance UID, one SERIES
  per Series Instance UID, and the leaf record type of each SOP Class (:mod:`app.core.dicomdir.records`);
  single-level objects (hanging protocols, palettes, implants) sit at the root;
- records in pre-order (PATIENT, its first STUDY, its first SERIES, its leaves, …) in the order
  the entries are given; every record In-use FFFFH; offsets counted from the first byte of the
  file (preamble included) to each record's Item tag;
- Referenced File ID and Referenced SOP Class / Instance / Transfer Syntax UID in File come from
  each entry's File Meta, which must describe the file as written;
- icons: ``DirEntry.icon`` on the leaf record (IMAGE, RT DOSE, SPECTROSCOPY, RAW DATA; ignored
  on record types that cannot carry one) and ``series_icons[series_uid]`` on SERIES records;
  a profile with ``icon_required`` (STD-XABC-CD) refuses IMAGE entries without a
  ``icon_size``² icon;
- File-set ID, File-set UID (new unless given), Consistency Flag 0, optional File-set
  Descriptor File ID (e.g. ``("README",)``: ``README.TXT`` cannot be named there); File Meta
  with Media Storage SOP Class 1.2.840.10008.1.3.10, Instance UID = File-set UID, Explicit VR
  LE and our Implementation Class UID / Version Name.

Records are encoded by :mod:`app.core.dicom.encode` (struct, bytes join), not by pydicom's
writer, so that 4,000 records take a fraction of a second.
"""

from __future__ import annotations

import os
import re
import struct
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from app import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from app.core.dicom.encode import CharsetError, encode_dataset, encode_element
from app.core.dicomdir import records
from app.core.dicomdir.file_id import is_valid_component
from app.core.dicomdir.headers import read_header_checked
from app.core.dicomdir.profiles import EXPLICIT_VR_LE, Profile
from app.core.dicomdir.record_keys import ICON_RECORD_TYPES, ROOT_RECORD_TYPES
from app.core.dicomdir.records import RecordError
from app.core.jobs import Cancelled, CancelToken, Progress, ProgressCallback, Throttle

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_FILESET_ID = re.compile(r"^[A-Z0-9_ ]{0,16}$")
_ITEM = struct.Struct("<HHI")
_UL = struct.Struct("<HH2sHI")
_IN_USE = struct.pack("<HH2sHH", 0x0004, 0x1410, b"US", 2, 0xFFFF)
_RECORD_HEAD = 12 + 10 + 12  # next (UL), in-use (US), lower (UL)


@dataclass
class DirEntry:
    """One file of the file-set: its File ID, its header (with ``file_meta``), its icon item."""

    file_id: tuple[str, ...]
    dataset: Dataset
    icon: Dataset | None = None


class _Node:
    __slots__ = ("rest", "children", "offset")

    def __init__(self, rest: bytes) -> None:
        self.rest = rest
        self.children: list[_Node] = []
        self.offset = 0


def _text(value: object) -> str:
    return "" if value is None else str(value).strip(" \0")


def _ui(tag: int, uid: str) -> bytes:
    return encode_element(tag, "UI", uid.encode("ascii"))


def _cs(tag: int, text: str) -> bytes:
    return encode_element(tag, "CS", text.encode("ascii"))


def _charset(ds: Dataset) -> str | None:
    value = ds.get("SpecificCharacterSet")
    if not value:
        return None
    text = value if isinstance(value, str) else "\\".join(str(v) for v in value)
    return None if text.strip() in ("", "ISO_IR 6") else text.strip()


def _encode_record(record_type: str, keys: Dataset, refs: bytes = b"") -> bytes:
    try:
        body = encode_dataset(keys)
    except CharsetError:
        # A value the record's character set cannot hold (e.g. a filled-in value): UTF-8.
        keys.SpecificCharacterSet = records.UTF8
        body = encode_dataset(keys)
    return _cs(0x00041430, record_type) + refs + body


def _check_icon(icon: Dataset, where: str, profile: Profile | None, required: bool) -> None:
    try:
        rows, cols = int(icon.Rows), int(icon.Columns)
        bits = int(icon.BitsAllocated)
        spp = int(icon.get("SamplesPerPixel", 1))
        photometric = str(icon.PhotometricInterpretation).strip()
        data = icon.PixelData
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"{where}: icon item is incomplete ({exc})") from exc
    if spp != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR") \
            or bits not in (1, 8):
        raise RecordError(f"{where}: icon must be 1 sample of 1 or 8 bits, MONOCHROME1/2 or "
                         f"PALETTE COLOR (got {spp} × {bits} bits {photometric})")
    if len(data) < rows * cols * bits // 8:
        raise RecordError(f"{where}: icon Pixel Data is shorter than {rows}×{cols}")
    if required and profile is not None and profile.icon_size \
            and (rows, cols) != (profile.icon_size, profile.icon_size):
        raise RecordError(f"{where}: {profile.name} needs {profile.icon_size}×"
                         f"{profile.icon_size} icons (got {rows}×{cols})")


def _group_charset(datasets: list[Dataset]) -> str | None:
    """ISO_IR 192 when the instances merged into one record declare different charsets."""
    charsets = {_charset(ds) for ds in datasets}
    return records.UTF8 if len(charsets) > 1 else None


def build_dicomdir(entries: Sequence[DirEntry], *, fileset_id: str,
                   fileset_uid: str | None = None,
                   descriptor_file_id: tuple[str, ...] | None = None,
                   profile: Profile | None = None,
                   series_icons: Mapping[str, Dataset] | None = None,
                   progress: ProgressCallback | None = None,
                   cancel: CancelToken | None = None) -> bytes:
    """The bytes of a DICOMDIR for ``entries`` (see the module docstring).

    Raises
    ------
    ValueError
        A bad File-set ID or File ID, a missing Type 1 key or File Meta element, a Patient ID
        shared by different names, a Study/Series UID under two parents, a missing or wrong
        icon where the profile requires one. Messages name the file.
    Cancelled
        ``cancel`` was cancelled.
    """
    fileset_id = fileset_id or ""
    if not _FILESET_ID.match(fileset_id):
        raise RecordError(f"File-set ID {fileset_id!r}: at most 16 of A-Z 0-9 _ and space")
    if descriptor_file_id is not None and not (
            1 <= len(descriptor_file_id) <= 8
            and all(is_valid_component(c) for c in descriptor_file_id)):
        raise RecordError(f"File-set Descriptor File ID {descriptor_file_id!r} is not a valid "
                         "File ID (README.TXT cannot be named: use README)")
    fileset_uid = fileset_uid or generate_uid()
    report = Throttle(progress) if progress is not None else None
    at = _Where()
    try:
        patients, root_leaves = _group(entries, at)
        roots = _tree(patients, root_leaves, len(entries), profile, series_icons or {}, report,
                      cancel, at)
    except (RecordError, Cancelled):
        raise
    except Exception as exc:  # noqa: BLE001 - hostile values pydicom cannot convert
        raise RecordError(f"{at.where}: a value cannot be read ({type(exc).__name__}: {exc})"
                         ) from exc
    if cancel is not None:
        cancel.raise_if_cancelled()
    data = _assemble(roots, fileset_id, fileset_uid, descriptor_file_id)
    if report is not None:
        report(Progress("dicomdir", len(entries), len(entries), done_bytes=len(data),
                        total_bytes=len(data), message="DICOMDIR encoded"), force=True)
    return data


class _Where:
    """The file being recorded, for error messages."""

    where = "(no file)"


_Groups = dict[str, dict[str, dict[str, list[DirEntry]]]]


def _group(entries: Sequence[DirEntry], at: _Where) -> tuple[_Groups, list[DirEntry]]:
    """Patient → study → series → entries (first-appearance order), and root-level entries."""
    patients: _Groups = {}
    patient_names: dict[str, tuple[str, str]] = {}
    study_owner: dict[str, str] = {}
    series_owner: dict[str, str] = {}
    root_leaves: list[DirEntry] = []
    for entry in entries:
        where = at.where = "/".join(entry.file_id)
        if not (1 <= len(entry.file_id) <= 8
                and all(is_valid_component(c) for c in entry.file_id)):
            raise RecordError(f"{where}: not a valid File ID (1-8 components of 1-8 A-Z 0-9 _)")
        ds = entry.dataset
        if records.record_type_for(records.fast_text(ds, "SOPClassUID")) in ROOT_RECORD_TYPES:
            root_leaves.append(entry)
            continue
        pid = records.fast_text(ds, "PatientID")
        name = records.fast_text(ds, "PatientName")
        if pid in patient_names and patient_names[pid][0] != name:
            raise RecordError(f"{where}: Patient ID {pid!r} is used by {patient_names[pid][0]!r} "
                             f"({patient_names[pid][1]}) and {name!r}: one PATIENT record per "
                             "Patient ID; resolve the clash before writing")
        patient_names.setdefault(pid, (name, where))
        study_uid = records.fast_text(ds, "StudyInstanceUID")
        series_uid = records.fast_text(ds, "SeriesInstanceUID")
        if study_owner.setdefault(study_uid, pid) != pid:
            raise RecordError(f"{where}: Study Instance UID {study_uid} belongs to two patients")
        if series_owner.setdefault(series_uid, study_uid) != study_uid:
            raise RecordError(f"{where}: Series Instance UID {series_uid} belongs to two studies")
        patients.setdefault(pid, {}).setdefault(study_uid, {}).setdefault(
            series_uid, []).append(entry)
    return patients, root_leaves


def _tree(patients: _Groups, root_leaves: list[DirEntry], total: int, profile: Profile | None,
          series_icons: Mapping[str, Dataset], report: Throttle | None,
          cancel: CancelToken | None, at: _Where) -> list[_Node]:
    """The encoded records as a tree (PATIENT roots, then root-level leaves)."""
    roots: list[_Node] = []
    done = 0
    for studies in patients.values():
        all_ds = [e.dataset for st in studies.values() for se in st.values() for e in se]
        at.where = "/".join(next(iter(next(iter(studies.values())).values()))[0].file_id)
        pkeys = records.patient_keys(all_ds[0], profile, source=at.where,
                                     charset=_group_charset(all_ds))
        pnode = _Node(_encode_record("PATIENT", pkeys))
        roots.append(pnode)
        for series_map in studies.values():
            st_ds = [e.dataset for se in series_map.values() for e in se]
            st_first = next(iter(series_map.values()))[0]
            at.where = "/".join(st_first.file_id)
            skeys = records.study_keys(st_first.dataset, profile, source=at.where,
                                       charset=_group_charset(st_ds))
            snode = _Node(_encode_record("STUDY", skeys))
            pnode.children.append(snode)
            for series_uid, leaves in series_map.items():
                at.where = "/".join(leaves[0].file_id)
                sekeys = records.series_keys(leaves[0].dataset, profile, source=at.where,
                                             charset=_group_charset([e.dataset for e in leaves]))
                icon = series_icons.get(series_uid)
                if icon is not None:
                    _check_icon(icon, f"series {series_uid}", profile, False)
                    sekeys.IconImageSequence = DicomSequence([icon])
                senode = _Node(_encode_record("SERIES", sekeys))
                snode.children.append(senode)
                for entry in leaves:
                    at.where = "/".join(entry.file_id)
                    senode.children.append(_leaf(entry, profile))
                    done += 1
                    if done % 64 == 0:
                        if cancel is not None:
                            cancel.raise_if_cancelled()
                        if report is not None:
                            report(Progress("dicomdir", done, total,
                                            message="writing DICOMDIR records"))
    for entry in root_leaves:
        at.where = "/".join(entry.file_id)
        roots.append(_leaf(entry, profile))
    return roots


def _leaf(entry: DirEntry, profile: Profile | None) -> _Node:
    ds = entry.dataset
    where = "/".join(entry.file_id)
    meta = getattr(ds, "file_meta", None)
    sop_class = records.fast_text(meta, "MediaStorageSOPClassUID") if meta is not None else ""
    sop_inst = records.fast_text(meta, "MediaStorageSOPInstanceUID") if meta is not None else ""
    tsuid = records.fast_text(meta, "TransferSyntaxUID") if meta is not None else ""
    if not (sop_class and sop_inst and tsuid):
        raise RecordError(f"{where}: File Meta lacks Media Storage SOP Class/Instance UID or "
                         "Transfer Syntax UID")
    for keyword, meta_value in (("SOPClassUID", sop_class), ("SOPInstanceUID", sop_inst)):
        own = records.fast_text(ds, keyword)
        if own and own != meta_value:
            raise RecordError(f"{where}: File Meta {meta_value} differs from {keyword} {own}")
    rtype = records.record_type_for(sop_class)
    keys = records.leaf_keys(ds, rtype, profile, source=where)
    icon_required = bool(profile and profile.icon_required and rtype == "IMAGE")
    if entry.icon is not None and rtype in ICON_RECORD_TYPES:
        _check_icon(entry.icon, where, profile, icon_required)
        keys.IconImageSequence = DicomSequence([entry.icon])
    elif icon_required:
        assert profile is not None
        raise RecordError(f"{where}: {profile.name} requires a {profile.icon_size}×"
                         f"{profile.icon_size} icon on every IMAGE record")
    refs = (_cs(0x00041500, "\\".join(entry.file_id)) + _ui(0x00041510, sop_class)
            + _ui(0x00041511, sop_inst) + _ui(0x00041512, tsuid))
    return _Node(_encode_record(rtype, keys, refs))


def _file_meta(fileset_uid: str) -> bytes:
    body = (encode_element(0x00020001, "OB", b"\x00\x01")
            + _ui(0x00020002, MEDIA_STORAGE_DIRECTORY)
            + _ui(0x00020003, fileset_uid)
            + _ui(0x00020010, EXPLICIT_VR_LE)
            + _ui(0x00020012, IMPLEMENTATION_CLASS_UID)
            + encode_element(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME.encode("ascii")))
    return (b"\0" * 128 + b"DICM" + _UL.pack(0x0002, 0x0000, b"UL", 4, len(body)) + body)


def _assemble(roots: list[_Node], fileset_id: str, fileset_uid: str,
              descriptor_file_id: tuple[str, ...] | None) -> bytes:
    head = _file_meta(fileset_uid)
    top = _cs(0x00041130, fileset_id)
    if descriptor_file_id:
        top += _cs(0x00041141, "\\".join(descriptor_file_id))
    # (0004,1200) UL + (0004,1202) UL + (0004,1212) US + (0004,1220) SQ header.
    first_item = len(head) + len(top) + 12 + 12 + 10 + 12

    order: list[_Node] = []
    stack = list(reversed(roots))
    while stack:  # pre-order, iterative
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(node.children))
    pos = first_item
    for node in order:
        node.offset = pos
        pos += 8 + _RECORD_HEAD + len(node.rest)
    if pos > 0xFFFFFFFF:
        raise RecordError("DICOMDIR would exceed 4 GiB: offsets cannot address it")

    nxt: dict[int, int] = {}
    for siblings in [roots] + [n.children for n in order]:
        for a, b in zip(siblings, siblings[1:], strict=False):
            nxt[id(a)] = b.offset
    items = []
    for node in order:
        lower = node.children[0].offset if node.children else 0
        body_len = _RECORD_HEAD + len(node.rest)
        items.append(_ITEM.pack(0xFFFE, 0xE000, body_len)
                     + _UL.pack(0x0004, 0x1400, b"UL", 4, nxt.get(id(node), 0))
                     + _IN_USE
                     + _UL.pack(0x0004, 0x1420, b"UL", 4, lower)
                     + node.rest)
    seq = b"".join(items)
    first = roots[0].offset if roots else 0
    last = roots[-1].offset if roots else 0
    data = b"".join([
        head, top,
        _UL.pack(0x0004, 0x1200, b"UL", 4, first),
        _UL.pack(0x0004, 0x1202, b"UL", 4, last),
        struct.pack("<HH2sHH", 0x0004, 0x1212, b"US", 2, 0),
        struct.pack("<HH2s2xI", 0x0004, 0x1220, b"SQ", len(seq)),
        seq,
    ])
    assert not order or data[order[0].offset:order[0].offset + 4] == b"\xfe\xff\x00\xe0"
    return data


def read_entries_for_folder(root: Path, *, skip: tuple[tuple[str, ...], ...] = (),
                            progress: ProgressCallback | None = None,
                            cancel: CancelToken | None = None) -> list[DirEntry]:
    """Header-only :class:`DirEntry` list for the DICOM files under ``root``, by File ID.

    Files whose path is not a valid File ID (e.g. ``README.TXT``, ``INDEX.HTM``), the root
    DICOMDIR, ``skip``-listed File IDs and files without the ``DICM`` prefix are left out;
    symlinks pointing outside ``root`` are never followed. A file with the ``DICM`` prefix
    that cannot be parsed raises ValueError naming it.
    """
    root = Path(root)
    real_root = root.resolve()
    found: list[tuple[tuple[str, ...], Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).parts
        dirnames[:] = sorted(d for d in dirnames if is_valid_component(d))
        if len(rel_dir) >= 8:
            dirnames[:] = []
        for name in filenames:
            fid = (*rel_dir, name)
            if not is_valid_component(name) or fid == ("DICOMDIR",) or fid in skip:
                continue
            path = Path(dirpath, name)
            if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                continue
            found.append((fid, path))
    found.sort()
    entries = []
    report = Throttle(progress) if progress is not None else None
    for n, (fid, path) in enumerate(found):
        if n % 64 == 0:
            if cancel is not None:
                cancel.raise_if_cancelled()
            if report is not None:
                report(Progress("dicomdir", n, len(found), message="reading headers"))
        ds = read_header_checked(path, "/".join(fid))
        if ds is None:
            continue
        entries.append(DirEntry(fid, ds))
    return entries


def write_dicomdir_for_folder(root: Path, fileset_id: str, *, fileset_uid: str | None = None,
                              descriptor_file_id: tuple[str, ...] | None = None,
                              profile: Profile | None = None,
                              progress: ProgressCallback | None = None,
                              cancel: CancelToken | None = None) -> Path:
    """Write ``root/DICOMDIR`` for the files already in place under ``root``; returns its path.

    Headers are read with pydicom (``stop_before_pixels``); the DICOMDIR is written to a
    temporary file in ``root``, flushed and moved into place with ``os.replace`` (atomic: an
    existing DICOMDIR is replaced only by a complete one). Raises ValueError as
    :func:`build_dicomdir`.
    """
    root = Path(root)
    skip = (descriptor_file_id,) if descriptor_file_id else ()
    entries = read_entries_for_folder(root, skip=skip, progress=progress, cancel=cancel)
    data = build_dicomdir(entries, fileset_id=fileset_id, fileset_uid=fileset_uid,
                          descriptor_file_id=descriptor_file_id, profile=profile,
                          progress=progress, cancel=cancel)
    target = root / "DICOMDIR"
    fd, tmp = tempfile.mkstemp(prefix=".DICOMDIR.", suffix=".tmp", dir=root)
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
