"""``open_medium``: whatever the user points at (folder, mount point, DICOMDIR file, .iso image)
becomes a :class:`app.core.model.Medium`, with every problem found listed, never a crash.

Steps (DESIGN.md "Data flow"; STANDARDS.md §7):

1. Find the DICOMDIR(s): by name in any case (``DICOMDIR``, ``DICOMDIR.``, ``DICOMDIR;1``) at the
   root and one or two levels down, one per folder; if there is none, by SOP Class (a renamed
   DICOMDIR, found by :func:`app.core.dicomdir.parse.is_dicomdir` on the first KBs of each file).
2. Parse each (:func:`app.core.dicomdir.parse.parse_dicomdir`), resolve each Referenced File ID against
   the directory listings relative to that DICOMDIR's folder (:mod:`app.core.medium.paths`), merge the
   file-sets (patients by ID + name, studies and series by UID) and drop duplicate instances.
3. A DICOMDIR that cannot be parsed or references nothing that exists is not used; with none
   usable the whole medium is scanned, header only (:mod:`app.core.medium.scan`).
4. DICOM files that no active record references are read (header only) and listed under their
   own patient/study/series with ``referenced=False``, so no image on the medium is lost.
5. Records the DICOMDIR cannot vouch for (parents lost in a damaged DICOMDIR and replaced by
   unnamed placeholders, invalid or missing UIDs: :func:`app.core.medium.scan.untrusted_leaves`) are
   placed from their files' headers the same way, so no image is filed under another patient
   and no wrong UID is listed.

``ls`` opens no referenced file except those of step 5: existence and size come from the
directory listings.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from app.core.errors import DicomdirUnreadable, UnreadableMedium, UnsafePath
from app.core.jobs import CancelToken, Progress, ProgressCallback, Throttle
from app.core.medium.fs import Entry, MediumFS, open_fs
from app.core.medium.paths import (
    CONFORMANT_ID_RE,
    FileIdResult,
    Listings,
    Resolved,
    Resolver,
    describe_os_error,
    join,
    retry_once,
    split_file_id,
)
from app.core.medium.reader_problems import (
    REFUSED,
    duplicate_problem,
    refused_problem,
    resolution_problems,
    unused_dicomdir_problems,
)
from app.core.medium.reader_read import ReadSteps
from app.core.medium.scan import (
    HeaderResult,
    TreeBuilder,
    is_dicomdir_name,
    plausible_head,
    renamed_dicomdirs,
    untrusted_leaves,
)
from app.core.model import Instance, Medium, Problem, Series

DICOMDIR_HEAD = 4096  # bytes read to recognise a renamed DICOMDIR by its SOP Class
MAX_DICOMDIR_SIZE = 1 << 30  # 1 GiB: far above any real DICOMDIR (20,000 records ≈ 10 MB)
DISCOVERY_DEPTH = 2  # the root, and one or two levels down


def open_medium(path: str | os.PathLike[str], progress: ProgressCallback | None = None,
                cancel: CancelToken | None = None) -> Medium:
    """Read the medium at ``path``: a folder or mount point, a DICOMDIR file, or an .iso image.

    Parameters
    ----------
    path
        What the user opened. For a DICOMDIR file the medium root is its folder; for an .iso the
        root is the image itself (read directly, never mounted).
    progress, cancel
        The job protocol of :mod:`app.core.jobs` (phases ``dicomdir``, ``resolve``, ``scan``).

    Returns
    -------
    Medium
        The tree, the problems found, and ``fs`` to open any listed instance.

    Raises
    ------
    UnreadableMedium
        Nothing readable: the path does not exist, cannot be read, or holds no DICOM data.
    app.core.jobs.Cancelled
        The token was cancelled.
    """
    fs, start = open_fs(path)
    return read_medium(fs, start, progress=progress, cancel=cancel)


def read_medium(fs: MediumFS, start: str = "", *, progress: ProgressCallback | None = None,
                cancel: CancelToken | None = None) -> Medium:
    """:func:`open_medium` on an already opened :class:`app.core.medium.fs.MediumFS`.

    ``start`` is ``""`` for the whole medium, or the root-relative name of the file the user
    picked (a DICOMDIR, possibly renamed). Tests use this to inject faulty filesystems.
    """
    with _gc_paused():
        return _Reader(fs, progress, cancel).run(start)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the tree is built.

    Reading a large DICOMDIR creates hundreds of thousands of small objects and no cycles
    worth collecting; the collector's repeated full passes over them cost about a fifth of
    the time. It is re-enabled (if it was enabled) however the read ends.

    Re-enabled as is, the collector's next young-generation pass would still traverse every
    object made meanwhile (≈ 40 ms for 20,000 records) just to find them alive. ``freeze()`` +
    ``unfreeze()`` moves them straight to the oldest generation instead (both O(1)): nothing
    is lost, any cycle among them is found by the next full collection.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


@dataclass
class _FileSet:
    rel: str  # the DICOMDIR, root-relative
    parse: object  # app.core.dicomdir.parse.DicomdirParse
    resolved: list[tuple[Instance, FileIdResult, Resolved]] = field(default_factory=list)
    existing: int = 0
    records: int = 0
    refused_others: int = 0  # refused File IDs of records outside the tree (other_records)


class _Reader(ReadSteps):
    def __init__(self, fs: MediumFS, progress: ProgressCallback | None,
                 cancel: CancelToken | None) -> None:
        self.fs = fs
        self.cancel = cancel
        self.progress = Throttle(progress) if progress is not None else None
        self.problems: list[Problem] = []
        self.listings = Listings(fs, on_error=self._listing_error)
        self.resolver = Resolver(fs, self.listings)
        self.builder = TreeBuilder()
        self.seen: dict[str, Instance] = {}
        self.referenced_paths: set[str] = set()

    # -- plumbing -----------------------------------------------------------------------------
    def _report(self, phase: str, done: int = 0, total: int = 0, message: str = "",
                force: bool = False) -> None:
        if self.progress is not None:
            self.progress(Progress(phase, done, total, message=message), force=force)

    def _check_cancel(self) -> None:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()

    def _listing_error(self, rel: str, exc: BaseException) -> None:
        where = rel or "(root)"
        if isinstance(exc, UnsafePath):
            self.problems.append(Problem("warning", "outside-root", rel or None,
                                         f"folder {where} leads outside the medium; not read"))
        else:
            self.problems.append(Problem("error", "read-error", rel or None,
                                         f"cannot list folder {where} (tried twice): "
                                         f"{describe_os_error(exc)}"))

    # -- main ---------------------------------------------------------------------------------
    def run(self, start: str) -> Medium:
        try:
            return self._run(start)
        finally:
            self.listings.stop()
            # Break the reader ↔ listings cycle (a bound method as error sink): otherwise the
            # reader, and through it the whole tree, waits for a full GC pass to be freed.
            self.listings.on_error = None

    def _run(self, start: str) -> Medium:
        self._check_cancel()
        if self.listings.get("") is None:
            raise UnreadableMedium(f"{self.fs.label}: the medium cannot be listed"
                                   + (f" ({self.problems[0].message})" if self.problems else ""))
        fallback = getattr(self.fs, "fallback", None)  # IsoFS: pycdlib refused the image
        if fallback:
            self.problems.append(Problem(
                "warning", "read-error", None,
                f"the disc image's directory structure is damaged ({fallback}); its ISO 9660 "
                "folders are read one by one and what cannot be read is reported"))
        self._report("dicomdir", message="looking for DICOMDIR", force=True)
        names = self._find_dicomdirs(start)
        # List the rest of the tree on a second thread while the DICOMDIR is parsed: the
        # listings are needed to resolve File IDs and to find unreferenced files.
        self.listings.prefetch("")
        scanned: list[HeaderResult] | None = None
        if not names:
            # None by name: read every header once; a renamed DICOMDIR (one or two levels
            # down at most) is recognised by its SOP Class among them, and the same results
            # serve the unreferenced-file pass or the scan, so no file is read twice.
            self._report("scan", message="scanning every file", force=True)
            scanned = self._read(self._candidates(set()), "scan")
            names = renamed_dicomdirs(scanned, DISCOVERY_DEPTH)
        filesets = [fs for fs in (self._parse(rel) for rel in names) if fs is not None]
        for fset in filesets:
            self._resolve(fset)
        usable = [f for f in filesets if f.existing > 0]
        for fset in filesets:
            if fset.existing == 0:
                self.problems.extend(unused_dicomdir_problems(
                    fset.rel, ((i, r) for i, _f, r in fset.resolved), fset.records,
                    fset.refused_others))
        if usable:
            for fset in usable:
                self._merge(fset)
            self._unreferenced(usable, scanned)
            return self._medium("dicomdir", [f.rel for f in usable])
        found = self._scan(bool(names), scanned)
        if found:
            return self._medium("scan", [])
        with_records = [f for f in filesets if f.records]
        if with_records:  # nothing on the medium but the DICOMDIR: show what it promised
            self.problems = [p for p in self.problems if p.code != "no-dicomdir"]
            for fset in with_records:
                self._merge(fset)
            return self._medium("dicomdir", [f.rel for f in with_records])
        if any(p.code in ("read-error", "truncated-file") for p in self.problems):
            # files are there but none could be read (a disc image cut short, a scratched
            # disc): an empty tree with every failure named beats "nothing found"
            return self._medium("scan", [])
        raise UnreadableMedium(f"{self.fs.label}: no DICOM data found"
                               + ("" if not self.problems else f" ({self.problems[-1]})"))

    def _medium(self, source: str, dicomdirs: list[str]) -> Medium:
        self.builder.prune()
        self._report("done", message="medium read", force=True)
        return Medium(root=self.fs.label, source=source,  # type: ignore[arg-type]
                      dicomdirs=dicomdirs, patients=self.builder.patients,
                      problems=self.problems, fs=self.fs)

    # -- 1. finding DICOMDIRs -----------------------------------------------------------------
    def _find_dicomdirs(self, start: str) -> list[str]:
        """DICOMDIRs to use, root first (one per folder), as root-relative paths."""
        from app.core.dicomdir.parse import is_dicomdir

        given_folder: str | None = None
        chosen: list[str] = []
        if start:
            name = start.rsplit("/", 1)[-1]
            head = self._head(start, DICOMDIR_HEAD)
            if is_dicomdir_name(name) or (head is not None and is_dicomdir(head)):
                chosen.append(start)
                given_folder = start.rsplit("/", 1)[0] if "/" in start else ""
            elif head is None or not plausible_head(head):
                raise UnreadableMedium(f"{self.fs.label}/{start}: not a DICOMDIR, a DICOM file, "
                                       "a folder or an .iso image")
            # a plain DICOM file: open its folder as the medium
        folders = self._folders_to_depth(DISCOVERY_DEPTH)
        for folder in folders:
            if folder == given_folder:
                continue
            listing = self.listings.get(folder)
            if listing is None:
                continue
            names = sorted((n for n, e in listing.entries.items()
                            if not e.is_dir and is_dicomdir_name(n)),
                           key=lambda n: (n != "DICOMDIR", n))
            if names:
                chosen.append(join(folder, names[0]))
        return chosen

    def _folders_to_depth(self, depth: int) -> list[str]:
        out = [""]
        level = [""]
        for _ in range(depth):
            nxt: list[str] = []
            for folder in level:
                listing = self.listings.get(folder)
                if listing is None:
                    continue
                for n in sorted(listing.entries):
                    e = listing.entries[n]
                    if e.is_dir and not (e.is_link and self.resolver.outside_reason(join(folder, n))):
                        nxt.append(join(folder, n))
            out.extend(nxt)
            level = nxt
        return out

    def _head(self, rel: str, n: int) -> bytes | None:
        def attempt() -> bytes:
            with self.fs.open(rel) as fp:
                return fp.read(n)

        try:
            return retry_once(attempt)
        except (OSError, UnsafePath):
            return None

    # -- 2. parsing and resolving -------------------------------------------------------------
    def _parse(self, rel: str) -> _FileSet | None:
        from app.core.dicomdir.parse import parse_dicomdir

        self._check_cancel()
        self._report("dicomdir", message=f"reading {rel}", force=True)

        def attempt() -> bytes:
            if self.fs.size(rel) > MAX_DICOMDIR_SIZE:
                raise DicomdirUnreadable(f"{rel}: larger than {MAX_DICOMDIR_SIZE >> 20} MB")
            with self.fs.open(rel) as fp:
                return fp.read()

        try:
            data = retry_once(attempt)
        except DicomdirUnreadable as exc:
            self.problems.append(Problem("warning", "dicomdir-unreadable", rel, str(exc)))
            return None
        except (OSError, UnsafePath) as exc:
            self.problems.append(Problem("error", "read-error", rel,
                                         f"cannot read {rel} (tried twice): "
                                         f"{describe_os_error(exc)}"))
            return None
        try:
            parse = parse_dicomdir(data, rel)
        except DicomdirUnreadable as exc:
            self.problems.append(Problem("warning", "dicomdir-unreadable", rel,
                                         f"{rel} cannot be read: {exc}"))
            return None
        except Exception as exc:  # noqa: BLE001 - hostile bytes must never crash the reader
            self.problems.append(Problem("warning", "dicomdir-unreadable", rel,
                                         f"{rel} cannot be read ({type(exc).__name__}: {exc})"))
            return None
        self.problems.extend(parse.problems)
        return _FileSet(rel, parse)

    def _resolve(self, fset: _FileSet) -> None:
        base = fset.rel.rsplit("/", 1)[0] if "/" in fset.rel else ""
        parse = fset.parse
        leaves = [inst for p in parse.patients for inst in p.instances()]  # type: ignore[attr-defined]
        others = list(getattr(parse, "other_records", []) or [])
        total = len(leaves) + len(others)
        slow = self._resolve_fast(fset, base, leaves, total)
        for i, inst in enumerate(slow):
            if i % 512 == 0:
                self._check_cancel()
            self._resolve_one(fset, base, inst, other=False)
        for inst in others:
            if inst.file_id is not None:  # else a root record without a file (PRIVATE, ...)
                self._resolve_one(fset, base, inst, other=True)

    def _resolve_fast(self, fset: _FileSet, base: str, leaves: list[Instance],
                      total: int) -> list[Instance]:
        """Resolve what needs no care (every record of a conformant medium): a conformant File
        ID whose file is listed, non-empty, under its exact name, in a folder reached without
        symlinks. Returns the other leaves, for :meth:`_resolve_one`."""
        conformant = CONFORMANT_ID_RE.fullmatch
        referenced = self.referenced_paths
        slow: list[Instance] = []
        last_key: object = None
        entries: dict[str, Entry] | None = None
        prefix = ""
        done = 0
        for i, inst in enumerate(leaves):
            if i % 2048 == 0:
                self._check_cancel()
                self._report("resolve", i, total, f"resolving {fset.rel}")
            file_id = inst.file_id
            if file_id.__class__ is not tuple or not conformant("\x00".join(file_id)):
                slow.append(inst)
                continue
            key = file_id[:-1]
            if key != last_key:
                last_key = key
                folder = self.resolver.folder(base, key)
                listing = self.listings.get(folder) if isinstance(folder, str) else None
                entries = listing.entries if listing is not None else None
                prefix = f"{listing.rel}/" if listing is not None and listing.rel else ""
            e = entries.get(file_id[-1]) if entries is not None else None
            if e is None or not e.size or e.is_dir or e.is_link:
                slow.append(inst)
                continue
            inst.path = path = prefix + e.name
            inst.size = e.size
            referenced.add(path)
            done += 1
        fset.records += done
        fset.existing += done
        return slow

    def _resolve_one(self, fset: _FileSet, base: str, inst: Instance, *, other: bool) -> None:
        fid = split_file_id(inst.file_id)
        res = self.resolver.resolve(base, fid)
        if inst.file_id is not None:
            fset.records += 1
        if res.path is not None:
            fset.existing += 1
            self.referenced_paths.add(res.path)
        elif other and res.problem in REFUSED:
            fset.refused_others += 1
            self.problems.append(refused_problem(inst, res, fset.rel))
        if not other:
            fset.resolved.append((inst, fid, res))

    def _merge(self, fset: _FileSet) -> None:
        """Add a usable file-set's records to the tree, with their problems."""
        base = fset.rel.rsplit("/", 1)[0] if "/" in fset.rel else ""
        where = {id(inst): (fid, res) for inst, fid, res in fset.resolved}
        untrusted = untrusted_leaves(fset.parse.patients)  # type: ignore[attr-defined]
        for inst in getattr(fset.parse, "orphans", None) or ():  # the parser's own list
            untrusted.setdefault(id(inst), "its PATIENT, STUDY or SERIES record was lost to "
                                 "damage in the DICOMDIR")
        for series, inst in self.builder.add_tree(fset.parse.patients):  # type: ignore[attr-defined]
            inst.dicomdir = inst.dicomdir or fset.rel
            inst.referenced = True
            if inst.path is None:  # not resolved on the fast path: the problems it shows
                got = where.get(id(inst))
                fid, res = got if got is not None else (split_file_id(inst.file_id),
                                                        Resolved(None))
                self.problems.extend(resolution_problems(inst, fid, res, base, fset.rel))
            why = untrusted.get(id(inst)) if untrusted else None
            if why is None:
                self._add_instance(series, inst)
            else:
                self._place_by_header(series, inst, why)

    def _add_instance(self, series: Series, inst: Instance) -> None:
        uid = inst.sop_instance_uid
        if uid:
            first = self.seen.get(uid)
            if first is not None:
                if first.path is None and inst.path is not None:
                    first.path, first.size = inst.path, inst.size  # the copy that exists wins
                self.problems.append(duplicate_problem(first, inst))
                return
            self.seen[uid] = inst
        series.instances.append(inst)
