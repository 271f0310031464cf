"""The reader's problem wording: File ID resolutions, unused DICOMDIRs, duplicates.

Codes and severities follow DESIGN.md ("ls --json"): refused references are ``outside-root`` /
``bad-file-id`` errors naming the File ID as recorded (STANDARDS.md §7 "Security"), absent files
``missing-file`` errors, non-conformant but resolved File IDs ``bad-file-id`` warnings
(PS3.10 §8.2).
"""

from __future__ import annotations

from collections.abc import Iterable

from app.core.medium.paths import FileIdResult, Resolved, file_id_text, file_id_violations, join
from app.core.model import Instance, Problem

REFUSED = ("outside-root", "bad-file-id")


def refused_problem(inst: Instance, res: Resolved, dicomdir: str) -> Problem:
    """A File ID that was not followed (it leaves the medium, or is malformed)."""
    text = file_id_text(inst.file_id)
    return Problem("error", res.problem or "bad-file-id", text.replace("\\", "/") or None,
                   f"File ID '{text}' in {dicomdir}: {res.reason}; not opened")


def resolution_problems(inst: Instance, fid: FileIdResult, res: Resolved, base: str,
                        dicomdir: str) -> list[Problem]:
    """Set the instance's path and size from a resolution; the problems it shows."""
    text = file_id_text(inst.file_id)
    inst.path = res.path
    if res.path is not None:
        assert res.entry is not None
        inst.size = res.entry.size
        out = []
        if res.entry.size == 0:
            out.append(Problem("error", "empty-file", res.path,
                               "referenced file is empty (0 bytes)"))
        bad = file_id_violations(inst.file_id or ())
        if bad:
            out.append(Problem("warning", "bad-file-id", res.path,
                               f"File ID '{text}' is not conformant (PS3.10 §8.2): "
                               f"{'; '.join(bad)}"))
        return out
    if res.problem in REFUSED:
        return [refused_problem(inst, res, dicomdir)]
    shown = (join(base, "/".join(fid.components)) if fid.components else text) or None
    return [Problem("error", "missing-file", shown,
                    f"{res.reason or 'referenced file does not exist'} "
                    f"(File ID '{text}' in {dicomdir})")]


def unused_dicomdir_problems(rel: str, resolved: Iterable[tuple[Instance, Resolved]],
                             records: int, refused_others: int) -> list[Problem]:
    """A DICOMDIR that leads to no file, and every File ID it had refused (QA-9).

    The refusals (``..``, absolute, drive, UNC) are reported one by one even though the
    DICOMDIR is not used: the user and the security log must see "refused", never "missing",
    for a reference that tried to leave the medium.
    """
    out: list[Problem] = []
    refused = refused_others
    missing = 0
    for inst, res in resolved:
        if inst.file_id is None:
            continue
        if res.problem in REFUSED:
            refused += 1
            out.append(refused_problem(inst, res, rel))
        else:
            missing += 1
    missing += max(0, records - refused - missing)
    if not records:
        what = "references no file"
    elif refused and missing:
        what = f"references {records} file(s): {refused} File ID(s) refused, {missing} not found"
    elif refused:
        what = (f"references {records} file(s), every File ID refused "
                "(outside the medium or malformed)")
    else:
        what = f"references {records} file(s), none of which exists"
    out.append(Problem("warning", "no-dicomdir", rel, f"{rel} {what}; not used"))
    return out


def duplicate_problem(first: Instance, other: Instance) -> Problem:
    """``other`` has the SOP Instance UID of the already listed ``first``."""
    if other.path is None or other.path == first.path:
        where = other.dicomdir or "the medium"
        return Problem("info", "duplicate-instance", other.path or first.path,
                       f"SOP Instance {other.sop_instance_uid} is listed again by {where}; "
                       "listed once")
    return Problem("warning", "duplicate-instance", other.path,
                   f"same SOP Instance UID {other.sop_instance_uid} as "
                   f"{first.path or '(missing file)'}; listed once")
