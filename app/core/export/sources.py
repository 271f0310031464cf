"""The export's input: every instance of the sources, merged, with its header read once.

Several sources merge; an instance already seen (same SOP Instance UID) is dropped with an
``info`` problem (the first source wins); exporting a whole medium also names the files its
reader set aside (a second copy of an instance, a file that is not DICOM). Each file is opened
through its medium's ``fs`` (so files inside an .iso work and nothing outside a medium root is
read) and read header-only:
File Meta with :func:`app.core.export.transcode.parse_meta_info`, the dataset with pydicom up to the
Pixel Data. A file that cannot be read stops the plan with an ExportError naming it.
"""

from __future__ import annotations

import os
import struct
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom import Dataset
from pydicom.charset import convert_encodings
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileMetaDataset

from app.core.dicom.elements import dictionary_vr
from app.core.errors import DiscBridgeError, ExportError
from app.core.export.damage import pixel_damage, quiet_stderr
from app.core.export.fixes import value_str
from app.core.export.transcode import (
    DEFLATED_LE,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    MetaInfo,
    is_compressed,
    parse_meta_info,
)
from app.core.files import MediumFS
from app.core.jobs import CancelToken, Progress, ProgressCallback, Throttle
from app.core.model import Instance, Medium, Problem

_HEAD = struct.Struct("<HH2sH")
_U32 = struct.Struct("<I")
_LONG = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UR", b"UT", b"UN",
                   b"SV", b"UV"})
_VRS = frozenset(v.encode() for v in (
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    "UN UR US UT UV").split())
_VR_NAMES = {v: v.decode("ascii") for v in _VRS}
_PIXELS = 0x7FE00008  # Float/Double Float/Pixel Data: the header ends before any of them
HEAD = 65536
FIRST_READ = 16384
# Keys read as plain ASCII from the raw bytes when they are ASCII (fast path of ``get``).
_ASCII_VRS = frozenset({"UI", "DA", "TM", "DT", "CS", "IS", "DS", "SH", "LO", "PN", "AE"})
_TAGS: dict[str, int] = {}


def _tag(keyword: str) -> int | None:
    tag = _TAGS.get(keyword)
    if tag is None:
        found = tag_for_keyword(keyword)
        if found is None:
            return None
        tag = _TAGS[keyword] = int(found)
    return tag


@dataclass(eq=False)
class SourceFile:
    """One source instance, read header-only.

    Explicit VR Little Endian files (nearly all) are kept as their header bytes plus an index of
    the top-level elements (``elements``: tag → (VR, value offset, length)); values are taken
    from those bytes, and the pydicom :attr:`header` Dataset is built only when something asks
    for it (a rewrite, a transcode, the DICOMDIR records: on the DICOMDIR thread, while the
    files are copied). Other files are read by pydicom up front.
    """

    medium: Medium
    rel: str  # path relative to the medium root
    local: Path | None  # a real path for fast copies (None inside an .iso)
    size: int
    label: str  # "<medium root>/<rel>" for messages
    meta: MetaInfo
    header_bytes: int  # where Pixel Data starts (roughly: header size)
    transfer_syntax: str
    raw: bytes = b""  # the file's first ``header_bytes`` bytes (fast path)
    elements: dict[int, tuple[str, int, int]] | None = None  # fast path: the element index
    dataset: Dataset | None = field(default=None, repr=False)  # read by pydicom, or built
    _values: _Values = field(init=False, repr=False)
    damage: str | None = None  # why the file is unusable (pixel data cut short), if it is
    # The dataset is encoded otherwise than its File Meta's transfer syntax says (e.g. Implicit
    # VR under JPEG): copied as it is, other systems could not read it; it is re-encoded.
    encoding_mismatch: bool = False

    @property
    def header(self) -> Dataset:
        """The header as a pydicom Dataset (no Pixel Data; ``file_meta`` as read), built once."""
        ds = self.dataset
        if ds is None:
            with _BUILD_LOCK:  # the DICOMDIR thread and a copy thread may ask at once
                ds = self.dataset
                if ds is None:
                    ds = self.dataset = _build_dataset(self.raw, self.elements or {}, self.meta)
        return ds

    def element(self, tag: int) -> tuple[str | None, object] | None:
        """(VR, value) of a top-level element, without building the Dataset (value: the raw
        bytes on the fast path, pydicom's value otherwise); None when absent."""
        elems = self.elements
        if elems is not None and self.dataset is None:
            found = elems.get(tag)
            if found is None:
                return None
            vr, start, length = found
            return vr, self.raw[start:start + length]
        elem = self.header._dict.get(tag)  # type: ignore[call-overload]
        return None if elem is None else (elem.VR, elem.value)

    def __contains__(self, keyword: str) -> bool:
        """Whether the header has the top-level element ``keyword`` (present, maybe empty)."""
        tag = _tag(keyword)
        if tag is None:
            return False
        if self.elements is not None:
            return tag in self.elements
        return tag in self.header._dict  # type: ignore[operator]

    def __post_init__(self) -> None:
        self._values = _Values(self._value)
        # ``get`` is the cache's own lookup: a hit costs no Python call (the plan asks 4,000
        # files about 50 values each); a miss computes through ``_value``.
        self.get: Callable[[str], str | None] = self._values.__getitem__

    def __getstate__(self) -> dict[str, object]:  # pickled for the GUI's export process
        state = dict(self.__dict__)
        state["_values"] = dict(self._values)
        del state["get"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        cached = state.pop("_values")
        self.__dict__.update(state)
        self.__post_init__()
        self._values.update(cached)  # type: ignore[call-overload]

    def _value(self, keyword: str) -> str | None:
        """A top-level value as a stripped string (None when absent/empty); through ``get``.

        ASCII values are taken from the raw bytes (no pydicom conversion: 4,000 files plan in
        well under a second); anything else goes through pydicom (character sets), including
        7-bit ISO 2022 text, whose escape sequences (ESC, 1BH) switch to other character sets.
        """
        value: str | None
        tag = _tag(keyword)
        elems = self.elements
        if tag is None:
            value = None
        elif elems is not None:
            found = elems.get(tag)
            if found is None:
                value = None  # absent from the header
            else:
                vr, start, length = found
                data = self.raw[start:start + length]
                if vr in _ASCII_VRS and data.isascii() and b"\x1b" not in data:
                    value = data.decode("ascii").strip(" \0") or None
                else:
                    value = value_str(self.header, keyword)
        else:
            raw = self.header._dict.get(tag)  # type: ignore[call-overload]
            if isinstance(raw, RawDataElement) and raw.VR in _ASCII_VRS \
                    and isinstance(raw.value, bytes) and raw.value.isascii() \
                    and b"\x1b" not in raw.value:
                value = raw.value.decode("ascii").strip(" \0") or None
            else:
                value = value_str(self.header, keyword)
        return value

    @property
    def meta_ok(self) -> bool:
        """File Meta can be kept byte for byte (STANDARDS.md §1)."""
        m = self.meta
        return (m.has_prefix and m.group_length_ok and m.version_ok
                and m.transfer_syntax == self.transfer_syntax
                and m.sop_class == self.get("SOPClassUID")
                and m.sop_instance == self.get("SOPInstanceUID"))

    @property
    def body_offset(self) -> int:
        return self.meta.body_offset if self.meta.has_prefix else 0


_BUILD_LOCK = threading.Lock()


class _Values(dict[str, "str | None"]):
    """keyword → value cache of a :class:`SourceFile`; a miss computes and stores the value."""

    __slots__ = ("_compute",)

    def __init__(self, compute: Callable[[str], str | None]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, keyword: str) -> str | None:
        value = self[keyword] = self._compute(keyword)
        return value


_NATIVE_ENCODING = {IMPLICIT_LE: (True, True), EXPLICIT_LE: (False, True),
                    EXPLICIT_BE: (False, False)}


def _real_encoding(head: bytes) -> tuple[bool, bool] | None:
    """(implicit, little) of the dataset as its bytes are, by the project's own layout guess
    (pydicom reads a lying body right but keeps reporting the declared encoding)."""
    from app.core.dicom.layout import find_layout

    try:
        layout = find_layout(head)
    except Exception:  # noqa: BLE001 - undecidable: believe the File Meta
        return None
    return (not layout.explicit, layout.little)


def _encoding_mismatch(enc: tuple[bool, bool] | None, meta: MetaInfo) -> bool:
    """The dataset's real encoding is not the one its File Meta's transfer syntax implies."""
    declared = meta.transfer_syntax
    if enc is None or not declared or declared == DEFLATED_LE:
        return False
    return enc != _NATIVE_ENCODING.get(declared, (False, True))  # compressed: Explicit VR LE


def _ts_of(ds: Dataset, meta: MetaInfo, real: tuple[bool, bool] | None = None) -> str:
    """The transfer syntax the file really uses: for native pixel data, what the bytes are
    (a File Meta that says Explicit VR over an Implicit VR body is not believed)."""
    enc = getattr(ds, "original_encoding", None)
    if meta.transfer_syntax:
        if meta.transfer_syntax in _NATIVE_ENCODING and _encoding_mismatch(real, meta):
            assert real is not None
            implicit, little = real
            return IMPLICIT_LE if implicit else EXPLICIT_LE if little else EXPLICIT_BE
        return meta.transfer_syntax
    if enc is not None:
        implicit, little = enc
        if implicit:
            return IMPLICIT_LE
        return EXPLICIT_LE if little else EXPLICIT_BE
    return IMPLICIT_LE


def _index(head: bytes, meta: MetaInfo, whole: bool
           ) -> tuple[dict[int, tuple[str, int, int]], int] | None:
    """Explicit VR LE with defined lengths up to the Pixel Data, all within ``head``: the index
    of the top-level elements (tag → (VR, value offset, length)) and where Pixel Data starts.
    None: let pydicom read it."""
    if not meta.has_prefix or not meta.group_length_ok or meta.transfer_syntax in (
            None, IMPLICIT_LE, EXPLICIT_BE, DEFLATED_LE):
        return None
    elems: dict[int, tuple[str, int, int]] = {}
    pos, size = meta.body_offset, len(head)
    unpack, unpack32, vrs, long_vrs, names = (_HEAD.unpack_from, _U32.unpack_from, _VRS, _LONG,
                                              _VR_NAMES)
    while True:
        if pos + 8 > size:
            if whole and pos == size:
                break
            return None
        group, elem, vr, short_len = unpack(head, pos)
        tag = group << 16 | elem
        if tag >= _PIXELS:
            break
        if vr in long_vrs:
            if pos + 12 > size:
                return None
            length, start = unpack32(head, pos + 8)[0], pos + 12
        elif vr in vrs:
            length, start = short_len, pos + 8
        else:
            return None
        end = start + length
        if length == 0xFFFFFFFF or end > size:
            return None
        name = names[vr]
        if name == "UN" and group & 1 == 0:  # a public element written as UN (PS3.5 §6.2.2):
            known = dictionary_vr(tag)  # its value bytes are those of its own VR
            if known and known not in ("UN", "SQ") and " " not in known:
                name = known
        elems[tag] = (name, start, length)
        pos = end
    return elems, pos


def _build_dataset(raw: bytes, elems: dict[int, tuple[str, int, int]], meta: MetaInfo
                   ) -> Dataset:
    """The pydicom Dataset of an indexed header (pydicom decodes the values lazily)."""
    # tuple.__new__ on the NamedTuple class: the same RawDataElement, without the Python-level
    # __new__ call per element (about 46 per CT header, 4,000 headers on the DICOMDIR thread).
    new = tuple.__new__
    ds = Dataset({tag: new(RawDataElement, (tag, vr, length, raw[start:start + length], start,
                                            False, True))
                  for tag, (vr, start, length) in elems.items()})
    file_meta = FileMetaDataset()
    for tag, value in ((0x00020002, meta.sop_class), (0x00020003, meta.sop_instance),
                       (0x00020010, meta.transfer_syntax)):
        if value:
            data = value.encode("ascii")
            data += b"\0" * (len(data) % 2)
            file_meta._dict[tag] = RawDataElement(  # type: ignore[index]
                tag, "UI", len(data), data, 0, False, True)
    ds.file_meta = file_meta
    try:
        charset = ds.get("SpecificCharacterSet")
    except Exception:  # noqa: BLE001 - hostile bytes: the default repertoire
        charset = None
    terms = [charset] if isinstance(charset, str) else list(charset or [])
    try:
        encodings = convert_encodings(terms or None)
    except Exception:  # noqa: BLE001 - an unknown character set: the default repertoire
        encodings = convert_encodings(None)
    ds.set_original_encoding(False, True, encodings)
    return ds


def _local_path(fs: MediumFS, rel: str, dirs: dict[str, Path | None]) -> Path | None:
    """``fs.local_path(rel)`` with the folder resolved once per folder (4,000 files: 4,000
    fewer ``resolve()`` calls); a symlinked file still goes through the full check."""
    parent, _, name = rel.rpartition("/")
    if parent not in dirs:
        dirs[parent] = fs.local_path(parent)
    base = dirs[parent]
    if base is None or not name or name in (".", ".."):
        return fs.local_path(rel)
    path = base / name
    if os.path.islink(path):
        return fs.local_path(rel)
    return path


def read_source(medium: Medium, inst: Instance,
                dirs: dict[str, Path | None] | None = None) -> SourceFile:
    """Read one instance's header. Raises ExportError naming the file."""
    dirs = {} if dirs is None else dirs
    assert inst.path is not None
    fs = medium.fs
    if fs is None:
        raise ExportError(f"{medium.root}: this source cannot be read (no file access)")
    label = f"{medium.root.rstrip('/')}/{inst.path}"
    try:
        local = _local_path(fs, inst.path, dirs)
        if local is not None:
            size = os.stat(local).st_size
            opened: BinaryIO = open(local, "rb")  # noqa: SIM115 - closed below
        else:
            size = fs.size(inst.path)
            opened = fs.open(inst.path)
        with opened as fp:
            head = fp.read(FIRST_READ)
            meta = parse_meta_info(head)
            found = None
            try:
                found = _index(head, meta, len(head) < FIRST_READ)
                if found is None and len(head) == FIRST_READ:
                    head += fp.read(HEAD - FIRST_READ)
                    found = _index(head, meta, len(head) < HEAD)
            except Exception:  # noqa: BLE001 - odd bytes: pydicom decides
                found = None
            if found is not None:
                elements, header_bytes = found
                damage = pixel_damage(fp, header_bytes, size, False, True, head)
                src = SourceFile(medium, inst.path, local, size, label, meta, header_bytes,
                                 meta.transfer_syntax or EXPLICIT_LE, head[:header_bytes],
                                 elements, damage=damage)
            else:
                fp.seek(0)
                with warnings.catch_warnings():  # odd files: problems are reported, not warned
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
                header_bytes = fp.tell()
                implicit, little = (bool(x) for x in getattr(ds, "original_encoding",
                                                              (False, True)))
                damage = pixel_damage(fp, header_bytes, size, implicit, little)
                real = _real_encoding(head)
                src = SourceFile(medium, inst.path, local, size, label, meta, header_bytes,
                                 _ts_of(ds, meta, real), dataset=ds, damage=damage,
                                 encoding_mismatch=_encoding_mismatch(real, meta))
    except DiscBridgeError as exc:
        raise ExportError(f"{label}: {exc}") from exc
    except OSError as exc:
        raise ExportError(f"{label}: cannot read the file ({exc.strerror or exc})") from exc
    except Exception as exc:  # noqa: BLE001 - hostile bytes
        raise ExportError(f"{label}: not a readable DICOM file ({exc})") from exc
    return src



# Reader problems naming a file it did not list as an instance (so it is not exported).
_SET_ASIDE = frozenset({"duplicate-instance", "not-dicom", "empty-file", "truncated-file",
                        "read-error", "outside-root"})


def _set_aside(medium: Medium) -> list[Problem]:
    """The files of ``medium`` its reader set aside (a file that is not DICOM, ...), each named
    with the reader's reason: a whole-medium export says what it leaves behind. Other copies of
    a listed instance are not set aside here: they are candidates (:func:`_other_copies`)."""
    listed = {inst.path for inst in medium.instances()}
    copies = {inst.path for inst in _other_copies(medium)}
    root = medium.root.rstrip("/")
    return [Problem(p.severity, p.code, p.path, f"{root}/{p.path}: {p.message}; not exported")
            for p in medium.problems
            if p.code in _SET_ASIDE and p.path and p.path not in listed
            and p.path not in copies]


def _other_copies(medium: Medium) -> list[Instance]:
    """Files the reader listed once as a second copy of an instance (same SOP Instance UID): the
    export reads them too and keeps the best copy (intact, decodable, lossless first)."""
    listed = {inst.path for inst in medium.instances()}
    return [Instance(None, path=p.path) for p in medium.problems
            if p.code == "duplicate-instance" and p.severity == "warning" and p.path
            and p.path not in listed]


def _whole_dataset(src: SourceFile) -> Dataset:
    """The whole file of ``src`` read by pydicom, quietly (warnings and the codecs' stderr)."""
    with src.medium.fs.open(src.rel) as fp, warnings.catch_warnings(), quiet_stderr():  # type: ignore[union-attr]
        warnings.simplefilter("ignore")
        return pydicom.dcmread(fp, force=True)


def _decodes(src: SourceFile) -> bool:
    """Whether pydicom decodes the pixel data of ``src`` (True without pixel data)."""
    if src.damage:
        return False
    if not is_compressed(src.transfer_syntax):
        return True
    try:
        ds = _whole_dataset(src)
        if "PixelData" in ds:
            with warnings.catch_warnings(), quiet_stderr():
                warnings.simplefilter("ignore")
                ds.pixel_array  # noqa: B018 - decoding is the test
    except Exception:  # noqa: BLE001 - any failure: this copy does not decode
        return False
    return True


def _same_content(a: SourceFile, b: SourceFile) -> bool:
    """Two copies of one SOP Instance UID hold the same instance: the same bytes after their
    File Meta, or the same decoded pixel values (one image in two encodings)."""
    from app.core.export.transcode import pixel_digest

    def body(s: SourceFile) -> bytes:
        with s.medium.fs.open(s.rel) as fp:  # type: ignore[union-attr]
            fp.seek(s.body_offset)
            return fp.read()

    try:
        if body(a) == body(b):
            return True
        digests = []
        for s in (a, b):
            ds = _whole_dataset(s)
            with warnings.catch_warnings(), quiet_stderr():
                warnings.simplefilter("ignore")
                digests.append(pixel_digest(ds))
    except Exception:  # noqa: BLE001 - undecidable: not called the same
        return False
    return digests[0] is not None and digests[0] == digests[1]


def _rank(src: SourceFile) -> tuple[bool, bool, bool, bool]:
    """Which copy of an instance to export: the smallest rank (intact, decodable, not lossy,
    not compressed)."""
    return (src.damage is not None, not _decodes(src),
            src.transfer_syntax in _LOSSY_SYNTAXES, is_compressed(src.transfer_syntax))


_LOSSY_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
                             "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91",
                             "1.2.840.10008.1.2.4.203"})


def read_sources(media: list[Medium], select: set[str] | None, *,
                 progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> tuple[list[SourceFile], list[Problem]]:
    """Every wanted instance of ``media`` once, in source order, and the problems to tell."""
    wanted: list[tuple[Medium, Instance]] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    index: dict[str, int] = {}
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
        copies = _other_copies(medium)
        wanted.extend((medium, c) for c in copies)  # filtered by UID once read, below
        if select is None:
            problems.extend(_set_aside(medium))
    report = Throttle(progress) if progress else None
    out: list[SourceFile] = []
    total = len(wanted)
    dir_cache: dict[int, dict[str, Path | None]] = {}
    ranks: dict[str, tuple[bool, bool, bool, bool]] = {}  # by label: each copy judged once
    for n, (medium, inst) in enumerate(wanted):
        if cancel is not None:
            cancel.raise_if_cancelled()
        src = read_source(medium, inst, dir_cache.setdefault(id(medium), {}))
        uid = src.get("SOPInstanceUID") or ""
        if not uid:
            problems.append(Problem("warning", "missing-key", inst.path,
                                    f"{src.label}: no SOP Instance UID; not an exportable "
                                    "instance, left out"))
            continue
        if select is not None and uid not in select:
            continue
        if uid in seen:
            kept = out[index[uid]]
            new_rank = ranks[src.label] = _rank(src)
            if kept.label not in ranks:
                ranks[kept.label] = _rank(kept)
            old_rank = ranks[kept.label]
            if new_rank < old_rank:  # keep the better copy of a duplicate
                out[index[uid]] = src
                why = (f"is damaged ({kept.damage})" if old_rank[0] else
                       "cannot be decoded" if old_rank[1] else
                       "is lossy" if old_rank[2] else "is compressed")
                problems.append(Problem("warning", "duplicate-instance", inst.path,
                                        f"{src.label}: exported instead of {kept.label}, the "
                                        f"same SOP Instance UID; that copy {why}"))
                seen[uid] = src.label
                continue
            if _same_content(kept, src):
                problems.append(Problem("info", "duplicate-instance", inst.path,
                                        f"{src.label}: same SOP Instance UID as {seen[uid]}; "
                                        "exported once"))
            else:
                problems.append(Problem("warning", "duplicate-instance", inst.path,
                                        f"{src.label}: a DIFFERENT image with the same SOP "
                                        f"Instance UID as {seen[uid]} (a UID clash in the "
                                        "source); not exported, only that one is"))
            continue
        seen[uid] = src.label
        index[uid] = len(out)
        out.append(src)
        if report is not None:
            report(Progress("plan", n + 1, total, message="reading headers"),
                   force=n + 1 == total)
    return out, problems
