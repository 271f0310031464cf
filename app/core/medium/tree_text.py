"""A medium's tree as indented plain text: what ``discbridge ls`` prints (and ``demo``
without a display)."""

from __future__ import annotations

from app.core.model import Medium


def format_tree(medium: Medium) -> str:
    """Patients → studies → series → instances, one line each, then the problems."""
    lines = [f"{medium.root}  ({medium.source}"
             + (f": {', '.join(medium.dicomdirs)}" if medium.dicomdirs else "") + ")"]
    for pat in medium.patients:
        lines.append(f"  Patient {pat.patient_name or '(no name)'}  ID {pat.patient_id or '-'}"
                     f"  born {pat.birth_date or '-'}  sex {pat.sex or '-'}")
        for st in pat.studies:
            lines.append(f"    Study {st.study_date or '-'} {st.study_time or ''}"
                         f"  {st.description or ''}  ID {st.study_id or '-'}"
                         f"  acc {st.accession or '-'}  {st.study_uid or ''}")
            for se in st.series:
                lines.append(f"      Series {se.series_number or '-'} {se.modality or '-'}"
                             f"  {se.description or ''}  ({len(se.instances)} instances)")
                for inst in se.instances:
                    flag = "" if inst.referenced else "  [unreferenced]"
                    lines.append(f"        {inst.record_type} {inst.instance_number or '-'}"
                                 f"  {inst.path or '(missing)'}{flag}")
    if medium.problems:
        lines.append(f"Problems ({len(medium.problems)}):")
        lines.extend(f"  {p}" for p in medium.problems)
    return "\n".join(lines)
