"""The export summary as rich text: the patients first and large (the clerk confirms the disc is
for the right person), then size against capacity, volumes, the disc label, every fix and
transcoding the plan will make; and the plan's failures in the GUI's words."""

from __future__ import annotations

import html
from typing import Any

from app.core.imaging.sr_text import format_date, format_name
from app.gui.wizard.pages import human_size
from app.gui.wizard.state import tr


def files_text(n: int) -> str:
    """"1 file", "3 files"."""
    return tr("1 file") if n == 1 else tr("%1 files").replace("%1", str(n))


def esc(text: Any) -> str:
    return html.escape(str(text or ""))


def summary_html(plan: Any, destination: str) -> str:
    """The summary page's text: the patients first and large, then size, changes, label."""
    out: list[str] = ["<table width='100%' cellpadding='8' bgcolor='#eaf2fb' "
                      "style='font-size:large'><tr><td>"]
    if len(plan.patients) > 1:
        many = tr("This export holds %1 different patients.").replace("%1", str(len(plan.patients)))
        out.append(f"<p style='color:#8a5a00'><b>{esc(many)}</b></p>")
    for p in plan.patients:
        name = format_name(p.name) or tr("(no name)")
        born = format_date(p.birth_date) or tr("unknown")
        out.append(f'<p style="margin:0"><span style="font-size:x-large"><b>{esc(name)}</b></span>'
                   f"&nbsp;&nbsp;{esc(tr('ID'))} <b>{esc(p.patient_id)}</b>"
                   f"&nbsp;&nbsp;{esc(tr('born'))} <b>{esc(born)}</b></p><ul style='margin-top:2px'>")
        for s in p.studies:
            date = format_date(s.date) or tr("no date")
            out.append(f"<li><b>{esc(date)}</b> {esc(s.description or '')} "
                       f"<span style='color:gray'>({esc(files_text(len(s.files)))}, "
                       f"{esc(human_size(s.bytes))})</span></li>")
        out.append("</ul>")
    out.append("</td></tr></table><p></p>")
    rows = [
        (tr("Size"), tr("%1 (the medium holds %2)").replace("%1", human_size(plan.total_bytes))
         .replace("%2", plan.capacity_note)),
        (tr("Files"), str(len(plan.files))),
        (tr("Profile"), plan.profile.name),
        (tr("Disc label (File-set ID)"), f"<b>{esc(plan.disc_label)}</b>"),
        (tr("Destination"), destination),
    ]
    if len(plan.volumes) > 1:
        vols = ", ".join(f"{v.name} ({human_size(v.est_bytes)}, {len(v.studies())} "
                         f"{tr('studies')})" for v in plan.volumes)
        rows.append((tr("Volumes"), tr("%1 discs: %2").replace("%1", str(len(plan.volumes)))
                     .replace("%2", vols)))
    out.append("<table cellspacing='2'>")
    for k, v in rows:
        cell = v if v.startswith("<b>") else esc(v)
        out.append(f"<tr><td style='color:gray;padding-right:12px'>{esc(k)}</td><td>{cell}</td></tr>")
    out.append("</table>")
    if plan.changes:
        groups: dict[tuple[str, str, str, str], int] = {}
        for c in plan.changes:
            key = (c.attribute, c.old or "", c.new, c.reason)
            groups[key] = groups.get(key, 0) + 1
        out.append(f"<p><b>{esc(tr('Filled in the exported copies (originals kept)'))}</b></p><ul>")
        for (attr, old, new, reason), n in groups.items():
            out.append(f"<li>{esc(attr)}: {esc(old or tr('(empty)'))} → <b>{esc(new)}</b> "
                       f"— {esc(reason)} ({esc(files_text(n))})</li>")
        out.append("</ul>")
    if plan.transcodings:
        tgroups: dict[tuple[str, str, str], int] = {}
        for t in plan.transcodings:
            key = (t.from_ts, t.to_ts, t.note)
            tgroups[key] = tgroups.get(key, 0) + 1
        out.append(f"<p><b>{esc(tr('Re-encoded for this profile'))}</b></p><ul>")
        for (a, b, note), n in tgroups.items():
            extra = f" ({esc(note)})" if note else ""
            out.append(f"<li>{esc(a)} → {esc(b)}{extra}: {esc(files_text(n))}</li>")
        out.append("</ul>")
    skipped = list(getattr(plan, "skipped", []) or [])
    if skipped:
        out.append(f"<p style='color:#b00020'><b>{esc(tr('Left out (they cannot go on this medium)'))}"
                   f": {esc(files_text(len(skipped)))}</b></p><ul>")
        out.extend(f"<li>{esc(f)}: {esc(r)}</li>" for f, r in skipped)
        out.append("</ul>")
    notes = list(plan.warnings) + [str(p) for p in plan.problems]
    if notes:
        out.append(f"<p><b>{esc(tr('Notes'))}</b></p><ul>")
        out.extend(f"<li>{esc(n)}</li>" for n in notes)
        out.append("</ul>")
    return "".join(out)


def failure_text(exc: BaseException | None, message: str) -> str:
    """Why the plan failed, in the GUI's words for the failures the user can fix here (the core's
    messages mention command-line flags)."""
    if exc is not None and hasattr(exc, "studies"):
        studies = list(getattr(exc, "studies", []) or [])
        who = "; ".join(f"{format_name(n) or tr('(no name)')} (e.g. {f})" for _u, n, f in studies[:5])
        text = tr("1 study has no date in any of its files (Study, Series, Acquisition or "
                  "Content Date): %2") if len(studies) == 1 else tr(
            "%1 studies have no date in any of their files (Study, Series, Acquisition or "
            "Content Date): %2")
        return text.replace("%1", str(len(studies))).replace("%2", who)
    if exc is not None and hasattr(exc, "needed") and getattr(exc, "needed", 0):
        return tr("Too big: the export needs about %1 but the medium holds %2.").replace(
            "%1", human_size(int(exc.needed))).replace(
            "%2", human_size(int(getattr(exc, "capacity", 0))))
    if exc is not None and hasattr(exc, "clashes"):
        parts = []
        for pid, who in list(getattr(exc, "clashes", []) or [])[:3]:
            names = ", ".join(f"{format_name(n) or tr('(no name)')} ({tr('born')} "
                              f"{format_date(b) or '?'})" for n, b, _f in who)
            parts.append(tr("Patient ID %1 is used by different patients: %2")
                         .replace("%1", str(pid)).replace("%2", names))
        return "\n".join(parts)
    refused = list(getattr(exc, "refused", []) or []) if exc is not None else []
    if refused:
        listed = "\n".join(f"• {f}: {r}" for f, r in refused[:10])
        more = tr("\n… and %1 more").replace("%1", str(len(refused) - 10)) \
            if len(refused) > 10 else ""
        return tr("%1 cannot go on this medium:\n%2%3").replace(
            "%1", files_text(len(refused))).replace("%2", listed).replace("%3", more)
    return tr("This export cannot be written yet: %1").replace("%1", message)
