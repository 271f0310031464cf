"""The reader's file-reading steps (a mixin of :class:`app.core.medium.reader._Reader`): the
header-only scan of a medium without a usable DICOMDIR, the files no record references, and the
records placed from their files' headers (DESIGN.md "Data flow"; issue 2: no image on the
medium is lost, none is filed under another patient).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.core.files import Entry, MediumFS
from app.core.jobs import CancelToken
from app.core.medium.paths import Listings
from app.core.medium.reader_problems import duplicate_problem
from app.core.medium.scan import (
    FileRef,
    HeaderResult,
    TreeBuilder,
    instance_from_header,
    is_dicomdir_name,
    read_headers,
    read_one,
    valid_uid,
    walk_files,
)
from app.core.model import Instance, Problem, Series


class ReadSteps:
    """Steps that read files (header only). The reader provides the state below."""

    fs: MediumFS
    listings: Listings
    problems: list[Problem]
    cancel: CancelToken | None
    builder: TreeBuilder
    seen: dict[str, Instance]
    referenced_paths: set[str]
    _report: Callable[..., None]
    _add_instance: Callable[[Series, Instance], None]

    def _place_by_header(self, series: Series, inst: Instance, why: str) -> None:
        """A leaf whose parents or UID the DICOMDIR cannot vouch for: its file's header decides
        where it goes and what its UIDs are (``ls`` opens such files only). When the file
        cannot be read it stays under the records' (unnamed) parents, and an invalid SOP
        Instance UID is dropped rather than listed: a wrong UID is worse than none."""
        r = None
        if inst.path is not None and inst.size:
            r = read_one(self.fs, FileRef(inst.path, Entry(inst.path.rsplit("/", 1)[-1], False,
                                                           inst.size)))
        if r is None or r.info is None or r.info.is_dicomdir:
            if r is not None and r.problem is not None:
                self.problems.append(r.problem)
            if inst.sop_instance_uid is not None and not valid_uid(inst.sop_instance_uid):
                self.problems.append(Problem(
                    "warning", "dicomdir-recovered", inst.path or inst.dicomdir,
                    f"record's SOP Instance UID {inst.sop_instance_uid!r} is not a valid UID "
                    "and the file cannot tell the real one; listed without it"))
                inst.sop_instance_uid = None
            self._add_instance(series, inst)
            return
        v = r.info.values
        inst.sop_instance_uid = v.get("SOPInstanceUID")
        inst.sop_class_uid = v.get("SOPClassUID") or inst.sop_class_uid
        inst.instance_number = v.get("InstanceNumber") or inst.instance_number
        inst.transfer_syntax_uid = r.info.transfer_syntax or inst.transfer_syntax_uid
        self.problems.append(Problem("warning", "dicomdir-recovered", inst.path,
                                     f"{why}: placed from the file's header"))
        self._header_problems(r)
        self._add_instance(self.builder.place(v), inst)

    # -- 3./4. scanning -----------------------------------------------------------------------
    def _candidates(self, skip: set[str]) -> list[FileRef]:
        files = walk_files(self.listings, "", problems=self.problems, cancel=self.cancel,
                           skip=skip)
        return [f for f in files if not is_dicomdir_name(f.path.rsplit("/", 1)[-1])]

    def _read(self, refs: list[FileRef], phase: str) -> list[HeaderResult]:
        total = len(refs)

        def on_file(i: int, ref: FileRef) -> None:
            self._report(phase, i, total, ref.path)

        return read_headers(self.fs, refs, on_file=on_file, cancel=self.cancel)

    def _scan(self, had_dicomdir: bool, results: list[HeaderResult] | None) -> bool:
        """Header-only scan of the whole medium. True when any DICOM instance was found."""
        if results is None:
            self._report("scan", message="scanning every file", force=True)
            results = self._read(self._candidates(set()), "scan")
        found = 0
        for r in results:
            if r.problem is not None:
                self.problems.append(r.problem)
            if r.info is None or r.info.is_dicomdir:
                continue
            inst = instance_from_header(r.info, r.ref, referenced=False)
            self._add_instance(self.builder.place(r.info.values), inst)
            self._header_problems(r)
            found += 1
        if found:
            why = ("no usable DICOMDIR" if had_dicomdir else "no DICOMDIR found")
            self.problems.append(Problem(
                "info" if had_dicomdir else "warning", "no-dicomdir", None,
                f"{why}: listed {found} file(s) by reading their headers"))
        return found > 0

    def _unreferenced(self, usable: list[Any], scanned: list[HeaderResult] | None) -> None:
        skip = set(self.referenced_paths) | {f.rel for f in usable}
        if scanned is not None:
            results = [r for r in scanned if r.ref.path not in skip]
        else:
            refs = self._candidates(skip)
            if not refs:
                return
            self._report("scan", 0, len(refs), "reading files no record references", force=True)
            results = self._read(refs, "scan")
        for r in results:
            if r.problem is not None:
                self.problems.append(r.problem)
            if r.info is None or r.info.is_dicomdir:
                continue
            inst = instance_from_header(r.info, r.ref, referenced=False)
            uid = inst.sop_instance_uid
            first = self.seen.get(uid) if uid else None
            if first is not None and first.path is None:
                first.path, first.size = inst.path, inst.size
                self.problems.append(Problem(
                    "warning", "unreferenced-file", inst.path,
                    f"the record of SOP Instance {uid} names a file that cannot be used; "
                    "this file has that SOP Instance UID and is listed in its place"))
                continue
            if first is not None:
                self.problems.append(duplicate_problem(first, inst))
                continue
            self.problems.append(Problem("warning", "unreferenced-file", inst.path,
                                         "DICOM file not referenced by any DICOMDIR record; "
                                         "listed from its header"))
            self._add_instance(self.builder.place(r.info.values), inst)
            self._header_problems(r)

    def _header_problems(self, r: HeaderResult) -> None:
        """Problems a listed file's header shows: undecodable text, pixel data cut short."""
        if r.info is not None and r.info.charset_problem:
            self.problems.append(Problem("warning", "bad-charset", r.ref.path,
                                         r.info.charset_problem))
        if r.info is not None and r.info.truncated:
            self.problems.append(Problem("error", "truncated-file", r.ref.path,
                                         "file ends inside its Pixel Data"))
