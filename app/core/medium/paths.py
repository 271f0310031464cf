"""Referenced File ID ↔ path on the medium: tolerant matching, strict confinement.

Rules (STANDARDS.md §1, §7; PS3.10 §8.2, §8.5, §8.6 note):

- A File ID is split on ``\\`` and also ``/``; space and NUL padding is stripped and empty
  components are dropped, *except* that a leading empty component (``\\a``, ``\\\\server\\share``)
  marks an absolute or UNC path. Absolute, drive-letter (``C:``), UNC and ``..`` components are
  refused (``outside-root``); control characters are refused (``bad-file-id``).
- Each component is matched case-insensitively against the real directory listing, tolerating the
  forms mastering tools and mounts produce: ``;1``, ``.;1``, a trailing ``.``, and ``.dcm``.
  Every directory is listed once (a lowercase → real-name map is cached per directory).
- A path that passes through a symlink is resolved and must stay inside the medium root.
- A resolved File ID that breaks PS3.10 §8.2 (more than 8 components, components longer than
  8 characters, characters other than ``A–Z 0–9 _``) is reported, not refused.
"""

from __future__ import annotations

import errno
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from app.core.errors import UnsafePath
from app.core.files import Entry, MediumFS

T = TypeVar("T")

_VERSION_RE = re.compile(r";\d*$")
_BAD_CHAR_RE = re.compile(r"[^A-Z0-9_]")
_CONFORMANT_ID_RE = re.compile(r"(?:[A-Z0-9_]{1,8}\x00){0,7}[A-Z0-9_]{1,8}")
# A File ID (components joined with NUL) that needs no splitting, refusal or conformance check.
CONFORMANT_ID_RE = _CONFORMANT_ID_RE
# Components that need no further checks (no separator, padding, '..', ':' or control chars),
# joined with NUL: one regex match per File ID.
_SIMPLE_ID_RE = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.;~+\-]*\x00)*[A-Za-z0-9_][A-Za-z0-9_.;~+\-]*")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

# OSErrors that a second attempt will not cure (the file is simply not there, or not a file).
_PERMANENT = (FileNotFoundError, NotADirectoryError, IsADirectoryError, UnsafePath)


def retry_once(fn: Callable[[], T]) -> T:
    """Run ``fn``; on an I/O error (EIO from a scratched disc and the like) try once more.

    Errors that cannot be transient (not found, not a directory, unsafe path) are not retried.
    The second failure propagates to the caller, which reports ``read-error`` for that file.
    """
    try:
        return fn()
    except _PERMANENT:
        raise
    except OSError:
        return fn()


def is_io_error(exc: BaseException) -> bool:
    """True for errors worth a ``read-error`` problem (as opposed to plain absence)."""
    return isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError | NotADirectoryError)


def describe_os_error(exc: BaseException) -> str:
    """A short human text for an OSError (``I/O error (EIO)``)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{exc.strerror or 'error'} ({name})"
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------------------------
# File IDs


class FileIdResult(NamedTuple):
    """A File ID split into components, or the reason it was refused (a tuple: built 20,000
    times for a large DICOMDIR, so cheap to make)."""

    components: tuple[str, ...]
    refused: str | None = None  # problem code: "outside-root" or "bad-file-id"
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.refused is None


def file_id_text(file_id: Sequence[str] | str | None) -> str:
    """The File ID as recorded, for messages (``PA001\\ST001``)."""
    if file_id is None:
        return ""
    if isinstance(file_id, str):
        return file_id
    return "\\".join(file_id)


def split_file_id(file_id: Sequence[str] | str | None) -> FileIdResult:
    """Split and validate a Referenced File ID (a multi-valued CS, or one string).

    Returns the components to look up, or a refusal (``outside-root`` for absolute, drive, UNC
    and ``..``; ``bad-file-id`` for empty IDs and control characters).
    """
    if file_id is None:
        return FileIdResult((), "bad-file-id", "the record has no Referenced File ID")
    if isinstance(file_id, tuple) and _SIMPLE_ID_RE.fullmatch("\x00".join(file_id)):
        return FileIdResult(file_id)  # the common case, fast
    raw = file_id if isinstance(file_id, str) else "\\".join(file_id)
    raw = raw.strip(" \x00")
    if not raw:
        return FileIdResult((), "bad-file-id", "the Referenced File ID is empty")
    pieces = [p.strip(" \x00") for p in re.split(r"[\\/]", raw)]
    if _DRIVE_RE.match(pieces[0]):
        return FileIdResult((), "outside-root", "a drive letter leads outside the medium")
    if len(pieces) > 1 and pieces[0] == "":
        what = "a UNC path" if len(pieces) > 2 and pieces[1] == "" else "an absolute path"
        return FileIdResult((), "outside-root", f"{what} leads outside the medium")
    comps = tuple(p for p in pieces if p not in ("", "."))
    if not comps:
        return FileIdResult((), "bad-file-id", "the Referenced File ID is empty")
    if any(p == ".." for p in comps):
        return FileIdResult((), "outside-root", "'..' leads outside the medium")
    if any(_CONTROL_RE.search(p) for p in comps):
        return FileIdResult((), "bad-file-id", "control characters in the Referenced File ID")
    if any(":" in p for p in comps):
        return FileIdResult((), "bad-file-id", "':' in the Referenced File ID")
    return FileIdResult(comps)


def file_id_violations(file_id: Sequence[str] | str) -> list[str]:
    """What makes a (resolvable) File ID non-conformant to PS3.10 §8.2/§8.5 (STANDARDS §1)."""
    if not isinstance(file_id, str) and _CONFORMANT_ID_RE.fullmatch("\x00".join(file_id)):
        return []  # the common case, fast
    comps = [p.strip(" \x00") for p in re.split(r"[\\/]",
                                                file_id if isinstance(file_id, str)
                                                else "\\".join(file_id))]
    comps = [p for p in comps if p]
    out: list[str] = []
    if len(comps) > 8:
        out.append(f"{len(comps)} components (at most 8)")
    long = [p for p in comps if len(p) > 8]
    if long:
        out.append(f"component {long[0]!r} longer than 8 characters")
    lower = [p for p in comps if p != p.upper()]
    if lower:
        out.append(f"lowercase letters in {lower[0]!r}")
    bad = [p for p in comps if _BAD_CHAR_RE.search(p.upper())]
    if bad:
        out.append(f"characters other than A-Z 0-9 _ in {bad[0]!r}")
    return out


# --------------------------------------------------------------------------------------------
# Directory listings and name matching


def name_key(name: str) -> str:
    """The case- and version-insensitive key of an on-disc name: ``IM1.;1`` → ``im1``."""
    name = _VERSION_RE.sub("", name).rstrip(".") or name
    return name.lower()


@dataclass
class DirListing:
    """One directory's entries, with the lowercase → real-name maps used for matching."""

    rel: str
    entries: dict[str, Entry]
    _by_key: dict[str, list[str]] | None = None  # name_key → real names
    _by_stem: dict[str, list[str]] | None = None  # "im1" → ["IM1.dcm"]

    @classmethod
    def build(cls, rel: str, entries: Iterable[Entry]) -> DirListing:
        return cls(rel, {e.name: e for e in entries})

    def _maps(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """The lowercase maps, built on the first lookup that the exact name does not answer."""
        if self._by_key is None:
            by_key: dict[str, list[str]] = {}
            by_stem: dict[str, list[str]] = {}
            for name in sorted(self.entries):
                k = name_key(name)
                by_key.setdefault(k, []).append(name)
                if k.endswith(".dcm") and len(k) > 4:
                    by_stem.setdefault(k[:-4], []).append(name)
            self._by_key, self._by_stem = by_key, by_stem
        assert self._by_stem is not None
        return self._by_key, self._by_stem

    def find(self, component: str, want_dir: bool) -> Entry | None:
        """The entry a File ID component names, or None.

        Order: the exact name; then names equal ignoring case, ``;1`` and a trailing ``.`` (the
        exact-case spelling first); then ``component.dcm``. Only entries of the wanted kind
        (directory for inner components, file for the last) match.
        """
        e = self.entries.get(component)
        if e is not None and e.is_dir == want_dir:
            return e
        by_key, by_stem = self._maps()
        key = name_key(component)
        keys = [key] + ([key[:-4]] if key.endswith(".dcm") and len(key) > 4 else [])
        for k in keys:
            for name in by_key.get(k, ()):
                e = self.entries[name]
                if e.is_dir == want_dir:
                    return e
        if not want_dir:
            for name in by_stem.get(key, ()):
                e = self.entries[name]
                if not e.is_dir:
                    return e
        return None


ErrorSink = Callable[[str, BaseException], None]


class Listings:
    """Cache of directory listings: one ``listdir`` per directory for the whole open.

    A directory that cannot be listed (EIO after one retry, permission denied, unsafe) is
    reported once through ``on_error(rel, exc)`` and then treated as empty.

    :meth:`prefetch` lists a whole tree in the background while the main thread parses the
    DICOMDIR: in a separate process when the filesystem offers one (``start_bulk_listing``:
    :class:`app.core.medium.fs.DirFS` on Linux, where the GIL would otherwise serialise the ``stat``
    calls), else on a thread. Results, errors included, are handed out by :meth:`get` in the
    caller's order, so problems stay deterministic.
    """

    def __init__(self, fs: MediumFS, on_error: ErrorSink | None = None) -> None:
        self.fs = fs
        self.on_error = on_error
        self._cache: dict[str, DirListing | None] = {}
        self._raw: dict[str, list[Entry] | BaseException] = {}
        self._pending: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bulk: Any = None  # a running app.core.medium.fs.BulkListing
        self.listdir_calls = 0

    def _list(self, rel: str) -> list[Entry] | BaseException:
        self.listdir_calls += 1
        try:
            return retry_once(lambda: self.fs.listdir(rel))
        except (OSError, UnsafePath) as exc:
            return exc

    def _fetch(self, rel: str) -> list[Entry] | BaseException:
        """The raw listing of ``rel``: listed exactly once, whichever thread asks first."""
        if self._bulk is not None:
            self._ingest_bulk()
        while True:
            with self._lock:
                cached = self._cache.get(rel, False)
                if cached is not False:
                    return list(cached.entries.values()) if cached else []
                if rel in self._raw:
                    return self._raw[rel]
                ev = self._pending.get(rel)
                owner = ev is None
                if owner:
                    ev = self._pending[rel] = threading.Event()
            assert ev is not None
            if owner:
                raw = self._list(rel)
                with self._lock:
                    self._raw[rel] = raw
                    del self._pending[rel]
                ev.set()
                return raw
            ev.wait()

    def get(self, rel: str) -> DirListing | None:
        if rel in self._cache:
            return self._cache[rel]
        raw = self._fetch(rel)
        with self._lock:
            if rel in self._cache:
                return self._cache[rel]
            listing = None if isinstance(raw, BaseException) else DirListing.build(rel, raw)
            self._cache[rel] = listing
            self._raw.pop(rel, None)
        if isinstance(raw, BaseException) and self.on_error is not None \
                and not isinstance(raw, FileNotFoundError):
            self.on_error(rel, raw)
        return listing

    def _ingest_bulk(self) -> None:
        """Take the bulk listing's results (waiting for them) for every folder not yet listed."""
        with self._lock:
            bulk, self._bulk = self._bulk, None
        if bulk is None:
            return
        got = bulk.result()
        if got is None:
            return  # it could not vouch for everything: folders are listed one by one
        with self._lock:
            for rel, entries in got.items():
                if rel not in self._cache and rel not in self._raw:
                    self._raw[rel] = entries

    def prefetch(self, start: str = "", max_depth: int = 32) -> None:
        """Start listing every folder below ``start`` in the background (symlinks not followed)."""
        if self._thread is not None or self._bulk is not None:
            return
        with self._lock:
            unlisted = any(e.is_dir and not e.is_link and join(rel, e.name) not in self._cache
                           for rel, lst in self._cache.items() if lst is not None
                           for e in lst.entries.values())
        if not unlisted and start in self._cache:
            return  # every folder is listed already (a flat medium)
        starter = getattr(self.fs, "start_bulk_listing", None) if start == "" else None
        if starter is not None:
            self._bulk = starter(max_depth)
            if self._bulk is not None:
                return

        def work() -> None:
            stack = [(start, 0)]
            while stack and not self._stop.is_set():
                rel, depth = stack.pop()
                raw = self._fetch(rel)
                if depth < max_depth and not isinstance(raw, BaseException):
                    stack.extend((join(rel, e.name), depth + 1) for e in raw
                                 if e.is_dir and not e.is_link)

        self._thread = threading.Thread(target=work, name="medium-listing", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and join the prefetch thread or process (nothing is left running)."""
        with self._lock:
            bulk, self._bulk = self._bulk, None
        if bulk is not None:
            bulk.cancel()
        if self._thread is not None:
            self._stop.set()
            self._thread.join()

    def wait(self) -> None:
        """Wait for the prefetch to finish."""
        self._ingest_bulk()
        if self._thread is not None:
            self._thread.join()


class Resolved(NamedTuple):
    """Where a File ID led: ``path`` (root-relative, real spelling) and its listing entry."""

    path: str | None
    entry: Entry | None = None
    problem: str | None = None  # "outside-root" / "bad-file-id" / "missing-file" / "read-error"
    reason: str = ""


def join(base: str, name: str) -> str:
    """``base/name`` (root-relative; ``base`` may be ``""`` for the root)."""
    return f"{base}/{name}" if base else name


class Resolver:
    """Resolve Referenced File IDs relative to a DICOMDIR's folder, through cached listings."""

    def __init__(self, fs: MediumFS, listings: Listings) -> None:
        self.fs = fs
        self.listings = listings
        self._real_ok: dict[str, str | None] = {}
        self._folders: dict[tuple[str, tuple[str, ...]], str | Resolved] = {}

    def resolve(self, base: str, file_id: Sequence[str] | str | None | FileIdResult) -> Resolved:
        """Find the file a File ID names, relative to folder ``base`` (root-relative)."""
        fid = file_id if isinstance(file_id, FileIdResult) else split_file_id(file_id)
        if not fid.ok:
            return Resolved(None, None, fid.refused, fid.reason)
        comps = fid.components
        folder = self._folder(base, comps[:-1])
        if isinstance(folder, Resolved):
            return folder
        listing = self.listings.get(folder)
        if listing is None:
            return Resolved(None, None, "missing-file",
                            f"folder {folder or '(root)'} cannot be listed")
        entry = listing.find(comps[-1], want_dir=False)
        if entry is None:
            return Resolved(None, None, "missing-file", "referenced file does not exist")
        path = join(folder, entry.name)
        if entry.is_link:
            bad = self.outside_reason(path)
            if bad is not None:
                return Resolved(None, None, "outside-root", bad)
        return Resolved(path, entry)

    def folder(self, base: str, comps: tuple[str, ...]) -> str | Resolved:
        """The real folder that File ID components ``comps`` name below ``base`` (cached), or
        why it cannot be reached."""
        return self._folder(base, comps)

    def _folder(self, base: str, comps: tuple[str, ...]) -> str | Resolved:
        """The real folder the inner components name (cached: thousands of files share one)."""
        key = (base, comps)
        got = self._folders.get(key)
        if got is not None:
            return got
        cur = base
        result: str | Resolved | None = None
        for comp in comps:
            listing = self.listings.get(cur)
            if listing is None:
                result = Resolved(None, None, "missing-file",
                                  f"folder {cur or '(root)'} cannot be listed")
                break
            entry = listing.find(comp, want_dir=True)
            if entry is None:
                result = Resolved(None, None, "missing-file", "referenced file does not exist")
                break
            cur = join(cur, entry.name)
            if entry.is_link:  # check before listing or trusting anything behind it
                bad = self.outside_reason(cur)
                if bad is not None:
                    result = Resolved(None, None, "outside-root", bad)
                    break
        self._folders[key] = result if result is not None else cur
        return self._folders[key]

    def outside_reason(self, rel: str) -> str | None:
        """None when ``rel`` (after following symlinks) stays inside the root, else why not."""
        if rel in self._real_ok:
            return self._real_ok[rel]
        realpath = getattr(self.fs, "realpath", None)
        reason: str | None = None
        if realpath is not None:
            try:
                realpath(rel)
            except UnsafePath:
                reason = "a symlink leads outside the medium"
            except OSError as exc:
                reason = f"cannot follow the symlink ({describe_os_error(exc)})"
        self._real_ok[rel] = reason
        return reason
