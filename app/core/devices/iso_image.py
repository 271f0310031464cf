"""ISO 9660 images of an exported medium, and their verification by reading them back.

CD and DVD: ISO 9660 Level 1, no Joliet, no Rock Ridge, so the primary names are the DICOM names
(``/PA001/ST001/SE001/IM000001.;1``, ``/DICOMDIR.;1``, ``/README.TXT;1``) and the Volume
Identifier is the File-set ID [STANDARDS.md §5, PS3.12 Annex F/P]. BD: a UDF 2.60 bridge image
(ISO 9660 Level 1 plus UDF 2.60 over the same file data) [PS3.12 Annex X].

The image is built by pycdlib while streaming the file contents (a file is opened when its data
is written and closed at once, so neither memory nor file descriptors grow with the medium),
into a temporary file next to the target that is renamed into place at the end: cancel or any
failure leaves no partial image behind. :func:`app.core.devices.iso_xorriso.write_iso_xorriso` does the same with the
xorriso command of TOOLCHAIN.md.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import tempfile
from pathlib import Path
from typing import IO, Any

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from app.core.errors import ExportError
from app.core.jobs import Cancelled, CancelToken, Progress, ProgressCallback, Throttle

# PS3.12 F / ISO 9660: at most 8 directory levels counting the root, so 7 below it.
MAX_DIR_DEPTH = 7
# pycdlib refuses an ISO path of more than 7 components (a file in the 8th level).
PYCDLIB_MAX_FILE_COMPONENTS = 7
# ISO 9660 Level 1 puts a file in one extent: strictly less than 4 GiB.
MAX_FILE_SIZE = 2**32 - 1
_DIR_RE = re.compile(r"^[A-Z0-9_]{1,8}$")
_FILE_RE = re.compile(r"^[A-Z0-9_]{1,8}(\.[A-Z0-9_]{0,3})?$")
_VOLID_RE = re.compile(r"^[A-Z0-9_]{0,32}$")
_CHUNK = 1024 * 1024


class _LazyFile(io.RawIOBase):
    """A read-only file that opens on first use and closes itself after its last byte.

    pycdlib keeps every ``add_fp`` object until ``write_fp``; real open files would exhaust the
    descriptor limit on a 20,000-file medium. This opens one file at a time, and checks the
    cancel token on every read so a large file can be interrupted.
    """

    mode = "rb"

    def __init__(self, path: Path, length: int, cancel: CancelToken | None) -> None:
        super().__init__()
        self.path = path
        self.length = length
        self.cancel = cancel
        self._fp: IO[bytes] | None = None
        self._pos = 0

    def _open(self) -> IO[bytes]:
        if self._fp is None:
            self._fp = open(self.path, "rb")  # noqa: SIM115 - closed after the last byte
            self._fp.seek(self._pos)
        return self._fp

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = self.length + offset
        if self._fp is not None:
            self._fp.seek(self._pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        fp = self._open()
        data = fp.read(size)
        self._pos += len(data)
        if self._pos >= self.length or not data:
            self.close_file()
        return data

    def close_file(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None

    def close(self) -> None:
        self.close_file()
        super().close()


def _iso_file_name(name: str) -> str:
    """The ISO 9660 name of a staged file: ``IM000001`` → ``IM000001.;1``."""
    return f"{name};1" if "." in name else f"{name}.;1"


def iso_path_for(relpath: str) -> str:
    """The ISO 9660 path of a staged file, e.g. ``PA001/ST001/IM1`` → ``/PA001/ST001/IM1.;1``."""
    parts = relpath.strip("/").split("/")
    return "/" + "/".join([*parts[:-1], _iso_file_name(parts[-1])])


def check_volume_id(volume_id: str) -> None:
    """Raise :class:`ExportError` unless ``volume_id`` is 0-32 of ``A-Z 0-9 _``."""
    if not _VOLID_RE.match(volume_id):
        raise ExportError(
            f"volume ID {volume_id!r}: an ISO 9660 Volume Identifier (the File-set ID) may hold "
            "only A-Z, 0-9 and _ (at most 32 characters)"
        )


def scan_staging(staging: Path, max_file_components: int = MAX_DIR_DEPTH + 1
                 ) -> tuple[list[str], list[tuple[str, Path, int]]]:
    """Directories and files of ``staging`` for an ISO 9660 Level 1 image, checked.

    ECMA-119 6.8.2.1 allows 8 directory levels counting the root, so a file may have 8 path
    components; pycdlib stops at 7 (:data:`PYCDLIB_MAX_FILE_COMPONENTS`), which is what
    :func:`write_iso` passes. Exported media use 4 (``PA001/ST001/SE001/IM000001``).

    Returns (directories, files) as ``/``-separated paths relative to ``staging`` (parents before
    children, sorted) and (relpath, path, size) triples. Raises :class:`ExportError` naming the
    path for a name Level 1 cannot hold, a directory deeper than 8 levels (root = 1), a file of
    4 GiB or more, a symlink or anything that is not a regular file or directory.
    """
    if not staging.is_dir():
        raise ExportError(f"{staging}: staging folder does not exist")
    dirs: list[str] = []
    files: list[tuple[str, Path, int]] = []
    stack: list[tuple[Path, tuple[str, ...]]] = [(staging, ())]
    while stack:
        folder, parts = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise ExportError(f"{folder}: cannot list the staging folder ({exc.strerror})") from exc
        subdirs: list[tuple[Path, tuple[str, ...]]] = []
        for entry in entries:
            rel = "/".join((*parts, entry.name))
            if entry.is_symlink():
                raise ExportError(f"{rel}: symbolic link in the staging folder (refused)")
            if entry.is_dir():
                if not _DIR_RE.match(entry.name):
                    raise ExportError(
                        f"{rel}: directory name breaks ISO 9660 Level 1 (1-8 of A-Z 0-9 _)")
                if len(parts) + 1 > MAX_DIR_DEPTH:
                    raise ExportError(
                        f"{rel}: deeper than ISO 9660 allows (8 directory levels, root = 1)")
                dirs.append(rel)
                subdirs.append((Path(entry.path), (*parts, entry.name)))
            elif entry.is_file():
                if not _FILE_RE.match(entry.name):
                    raise ExportError(
                        f"{rel}: file name breaks ISO 9660 Level 1 (8.3 of A-Z 0-9 _)")
                if len(parts) + 1 > max_file_components:
                    raise ExportError(f"{rel}: deeper than this ISO writer allows "
                                      f"({max_file_components} path components)")
                size = entry.stat().st_size
                if size > MAX_FILE_SIZE:
                    raise ExportError(f"{rel}: {size} bytes; ISO 9660 Level 1 files must be < 4 GiB")
                files.append((rel, Path(entry.path), size))
            else:
                raise ExportError(f"{rel}: not a regular file or directory (refused)")
        stack.extend(reversed(subdirs))
    dirs.sort(key=lambda d: (d.count("/"), d))
    return dirs, files


def temp_next_to(target: Path) -> Path:
    """A new empty temporary file beside ``target`` (same filesystem, so rename is atomic)."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    return Path(name)


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def fsync_and_replace(tmp: Path, target: Path) -> None:
    """Flush ``tmp`` to the device, rename it to ``target``, flush the directory."""
    with open(tmp, "rb+") as fp:
        os.fsync(fp.fileno())
        if hasattr(os, "fchmod"):  # as any new file (mkstemp made it 0600)
            os.fchmod(fp.fileno(), 0o666 & ~_umask())
    os.replace(tmp, target)
    try:
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def write_iso(staging: Path, iso: Path, volume_id: str, udf: bool = False,
              progress: ProgressCallback | None = None,
              cancel: CancelToken | None = None) -> None:
    """Write ``staging`` as an ISO 9660 Level 1 image (``udf=True``: UDF 2.60 bridge) to ``iso``.

    Parameters
    ----------
    staging : Path
        A complete medium (``DICOMDIR``, ``README.TXT``, ``PA001/...``), names already DICOM
        File IDs (STANDARDS.md §1) or 8.3 upper-case names.
    iso : Path
        The image to create (replaced when it exists: the caller decides about ``--force``).
    volume_id : str
        The File-set ID; becomes the Volume Identifier (and the UDF volume identifier).
    udf : bool
        Also write a UDF 2.60 file system over the same data (Blu-ray, PS3.12 Annex X).
    progress, cancel
        Reports phase ``"iso"`` by bytes of image written; cancel is checked while writing.

    Raises
    ------
    ExportError
        A name Level 1 cannot hold, a tree too deep, a file too big, an unwritable target.
    Cancelled
        The token was cancelled; no partial image is left.
    """
    staging = Path(staging)
    iso = Path(iso)
    check_volume_id(volume_id)
    dirs, files = scan_staging(staging, PYCDLIB_MAX_FILE_COMPONENTS)
    if cancel is not None:
        cancel.raise_if_cancelled()
    report = Throttle(progress) if progress is not None else None
    lazies: list[_LazyFile] = []
    pc = pycdlib.PyCdlib()
    try:
        pc.new(interchange_level=1, vol_ident=volume_id, sys_ident="",
               app_ident_str="DISCBRIDGE", udf="2.60" if udf else None)
        for d in dirs:
            pc.add_directory("/" + d, udf_path=("/" + d) if udf else None)
        for rel, path, size in files:
            lazy = _LazyFile(path, size, cancel)
            lazies.append(lazy)
            pc.add_fp(lazy, size, iso_path=iso_path_for(rel), udf_path=("/" + rel) if udf else None)
    except PyCdlibException as exc:
        pc.close()
        raise ExportError(f"{iso}: cannot lay out the image: {exc}") from exc

    def on_progress(done: int, total: int) -> None:
        if cancel is not None:
            cancel.raise_if_cancelled()
        if report is not None:
            report(Progress("iso", done_bytes=done, total_bytes=total, message=str(iso)),
                   force=done >= total)

    try:
        tmp = temp_next_to(iso)
    except OSError as exc:
        pc.close()
        raise ExportError(f"{iso}: cannot create the image ({exc.strerror})") from exc
    try:
        with open(tmp, "wb") as out:
            pc.write_fp(out, blocksize=_CHUNK, progress_cb=on_progress)
        fsync_and_replace(tmp, iso)
    except (Cancelled, KeyboardInterrupt):
        tmp.unlink(missing_ok=True)
        raise
    except PyCdlibException as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{iso}: cannot write the image: {exc}") from exc
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{exc.filename or iso}: cannot write the image ({exc.strerror})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        for lazy in lazies:
            lazy.close_file()
        pc.close()



class _HashWriter:
    """A write-only sink that hashes what it is given and reports progress."""

    def __init__(self, on_bytes: Any) -> None:
        self.h = hashlib.sha256()
        self.n = 0
        self._on_bytes = on_bytes

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.n += len(data)
        self._on_bytes(len(data))
        return len(data)


def _drop_cache(fp: IO[bytes]) -> None:
    """Ask the OS to forget cached pages so verification reads the device (Linux)."""
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fp.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def _walk_files(pc: pycdlib.PyCdlib, key: str) -> dict[str, int]:
    """Files of one tree of an open image: relpath (no ``;1``, no trailing dot) → size."""
    out: dict[str, int] = {}
    for root, _dirs, names in pc.walk(**{key: "/"}):
        for name in names:
            full = (root.rstrip("/") + "/" + name).lstrip("/")
            rec = pc.get_record(**{key: "/" + full})
            clean = full.split(";")[0].rstrip(".") if key == "iso_path" else full
            out[clean] = rec.get_data_length()
    return out


def verify_iso(iso: Path, expected: dict[str, str], progress: ProgressCallback | None = None,
               cancel: CancelToken | None = None, *, volume_id: str | None = None,
               udf: bool | None = None) -> list[str]:
    """Read every file back from ``iso`` and compare its SHA-256 with ``expected``.

    Parameters
    ----------
    iso : Path
        The image.
    expected : dict[str, str]
        ``relpath`` (``PA001/ST001/SE001/IM000001``, ``DICOMDIR``, ``README.TXT``) → SHA-256 hex.
    volume_id : str, optional
        When given, the image's Volume Identifier must equal it.
    udf : bool, optional
        True: the image must carry a UDF tree listing the same files with the same sizes;
        False: it must not; None: not checked.

    Returns
    -------
    list[str]
        One message per failure (missing, extra, different, unreadable); empty when all is well.
    """
    iso = Path(iso)
    expected = {rel.strip("/"): digest for rel, digest in expected.items()}
    failures: list[str] = []
    try:
        fp = open(iso, "rb")  # noqa: SIM115 - closed in finally
    except OSError as exc:
        return [f"{iso}: cannot open the image ({exc.strerror})"]
    pc = pycdlib.PyCdlib()
    try:
        _drop_cache(fp)
        try:
            pc.open_fp(fp)
        except (PyCdlibException, OSError, ValueError, IndexError, struct.error) as exc:
            return [f"{iso}: not a readable ISO 9660 image ({exc})"]
        expected_size = pc.pvd.space_size * pc.pvd.logical_block_size()
        actual_size = os.fstat(fp.fileno()).st_size
        if actual_size < expected_size:
            failures.append(f"{iso}: image truncated ({actual_size} of {expected_size} bytes)")
        if volume_id is not None:
            found = pc.pvd.volume_identifier.decode("ascii", "replace").rstrip(" \x00")
            if found != volume_id:
                failures.append(f"{iso}: Volume ID is {found!r}, expected {volume_id!r}")
        try:
            on_disc = _walk_files(pc, "iso_path")
        except PyCdlibException as exc:
            return [*failures, f"{iso}: cannot list the image ({exc})"]
        for rel in sorted(set(on_disc) - set(expected)):
            failures.append(f"{rel}: in the image but not expected")
        if udf is not None:
            has_udf = pc.has_udf()
            if udf and not has_udf:
                failures.append(f"{iso}: no UDF file system (expected a UDF bridge image)")
            elif not udf and has_udf:
                failures.append(f"{iso}: unexpected UDF file system")
            elif udf:
                udf_files = _walk_files(pc, "udf_path")
                if udf_files != on_disc:
                    diff = sorted(set(udf_files) ^ set(on_disc))[:5]
                    failures.append(f"{iso}: UDF and ISO 9660 trees differ ({', '.join(diff)})")
        total = sum(on_disc.get(rel, 0) for rel in expected)
        done = 0
        report = Throttle(progress) if progress is not None else None

        def on_bytes(n: int) -> None:
            nonlocal done
            done += n
            if cancel is not None:
                cancel.raise_if_cancelled()
            if report is not None:
                report(Progress("verify", done_bytes=done, total_bytes=total, message=str(iso)))

        for rel in sorted(expected):
            if cancel is not None:
                cancel.raise_if_cancelled()
            if rel not in on_disc:
                failures.append(f"{rel}: missing from the image")
                continue
            sink = _HashWriter(on_bytes)
            try:
                pc.get_file_from_iso_fp(sink, iso_path=iso_path_for(rel))
            except (PyCdlibException, OSError) as exc:
                failures.append(f"{rel}: unreadable in the image ({exc})")
                continue
            if sink.n != on_disc[rel]:
                failures.append(f"{rel}: read {sink.n} of {on_disc[rel]} bytes from the image")
            elif sink.h.hexdigest() != expected[rel].lower():
                failures.append(f"{rel}: SHA-256 differs from the file written")
        if report is not None:
            report(Progress("verify", done_bytes=done, total_bytes=total, message=str(iso)),
                   force=True)
    finally:
        try:
            pc.close()
        except PyCdlibException:
            pass
        fp.close()
    return failures


def sha256_tree(staging: Path) -> dict[str, str]:
    """SHA-256 of every file below ``staging`` by ``/``-separated relpath (for :func:`verify_iso`)."""
    out: dict[str, str] = {}
    _dirs, files = scan_staging(Path(staging))
    for rel, path, _size in files:
        h = hashlib.sha256()
        with open(path, "rb") as fp:
            while chunk := fp.read(_CHUNK):
                h.update(chunk)
        out[rel] = h.hexdigest()
    return out
