"""The export layout: ``PA001/ST001/SE001/IM000001`` File IDs (DESIGN.md "Export naming and ordering").

- Patients (one per Patient ID) sorted by name, then ID; studies (one per Study Instance UID) by
  date, time, then UID; series by number (numeric), then UID; instances by number (numeric),
  then SOP Instance UID. Missing numbers sort after present ones.
- Counters restart at 1 under each parent. A level's width is fixed for the whole medium:
  3 digits for PA/ST/SE, 6 for IM, widened (for every component of that level) only when some
  parent has more children than the default width can count; at most 6 digits, so every
  component is ≤ 8 characters of ``A–Z 0–9 _`` (STANDARDS.md §1) and never a Windows device name.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset

from app.core.dicomdir.file_id import is_valid_component

PREFIXES = ("PA", "ST", "SE", "IM")
DEFAULT_WIDTHS = (3, 3, 3, 6)
MAX_WIDTH = 6


@dataclass(frozen=True)
class LayoutItem:
    """What the layout needs to know of one instance; ``key`` is the caller's handle for it."""

    patient_id: str
    patient_name: str
    study_uid: str
    study_date: str
    study_time: str
    series_uid: str
    series_number: str
    sop_instance_uid: str
    instance_number: str
    key: Hashable = None

    @classmethod
    def from_dataset(cls, ds: Dataset, key: Hashable = None) -> LayoutItem:
        """The layout values of an instance header."""
        def s(keyword: str) -> str:
            value = ds.get(keyword)
            return "" if value is None else str(value).strip()
        return cls(s("PatientID"), s("PatientName"), s("StudyInstanceUID"), s("StudyDate"),
                   s("StudyTime"), s("SeriesInstanceUID"), s("SeriesNumber"),
                   s("SOPInstanceUID"), s("InstanceNumber"), key)


@dataclass
class Layout:
    """The plan: ``file_ids`` in medium order, by SOP Instance UID and by caller key."""

    items: list[tuple[tuple[str, ...], LayoutItem]] = field(default_factory=list)
    widths: tuple[int, int, int, int] = DEFAULT_WIDTHS

    @property
    def file_ids(self) -> dict[str, tuple[str, ...]]:
        """File ID per SOP Instance UID."""
        return {item.sop_instance_uid: fid for fid, item in self.items}

    def by_key(self) -> dict[Any, tuple[str, ...]]:
        """File ID per caller key."""
        return {item.key: fid for fid, item in self.items}


def _number(value: str) -> tuple[int, float, str]:
    """Numeric sort key of an IS value; absent or unparsable values sort last."""
    try:
        return (0, float(value.strip()), value)
    except (ValueError, AttributeError):
        return (1, 0.0, value or "")


def _patient_key(item: LayoutItem) -> str:
    # One PATIENT per Patient ID; without an ID (the exporter fills IDs first), group by name.
    return item.patient_id if item.patient_id else "\0" + item.patient_name


def _width(counts: Iterable[int], default: int, level: str) -> int:
    most = max(counts, default=0)
    width = max(default, len(str(most)))
    if width > MAX_WIDTH:
        raise ValueError(f"{most} {level} under one parent: more than a File ID can number "
                         f"({10 ** MAX_WIDTH - 1} at most)")
    return width


def plan_layout(items: Iterable[LayoutItem]) -> Layout:
    """File IDs for ``items`` per DESIGN.md "Export naming and ordering".

    Raises
    ------
    ValueError
        Two items share a SOP Instance UID, or a level has more than 999,999 children.
    """
    patients: dict[str, dict[str, dict[str, list[LayoutItem]]]] = {}
    seen: set[str] = set()
    for item in items:
        if item.sop_instance_uid in seen:
            raise ValueError(f"duplicate SOP Instance UID {item.sop_instance_uid} in the layout")
        seen.add(item.sop_instance_uid)
        studies = patients.setdefault(_patient_key(item), {})
        studies.setdefault(item.study_uid, {}).setdefault(item.series_uid, []).append(item)

    def first(tree: dict[str, Any]) -> LayoutItem:
        node: Any = tree
        while isinstance(node, dict):
            node = next(iter(node.values()))
        return node[0]

    pat_order = sorted(patients, key=lambda p: (first(patients[p]).patient_name.casefold(),
                                                 first(patients[p]).patient_name,
                                                 first(patients[p]).patient_id))
    widths = (
        _width([len(patients)], DEFAULT_WIDTHS[0], "patients"),
        _width((len(s) for s in patients.values()), DEFAULT_WIDTHS[1], "studies"),
        _width((len(se) for s in patients.values() for se in s.values()), DEFAULT_WIDTHS[2],
               "series"),
        _width((len(i) for s in patients.values() for se in s.values() for i in se.values()),
               DEFAULT_WIDTHS[3], "instances"),
    )
    layout = Layout(widths=widths)
    for pa_n, pat in enumerate(pat_order, 1):
        studies = patients[pat]
        st_order = sorted(studies, key=lambda u: (first(studies[u]).study_date,
                                                  first(studies[u]).study_time, u))
        for st_n, st_uid in enumerate(st_order, 1):
            series = studies[st_uid]
            se_order = sorted(series, key=lambda u: (_number(series[u][0].series_number), u))
            for se_n, se_uid in enumerate(se_order, 1):
                insts = sorted(series[se_uid], key=lambda i: (_number(i.instance_number),
                                                              i.sop_instance_uid))
                for im_n, inst in enumerate(insts, 1):
                    fid = tuple(f"{prefix}{n:0{w}d}" for prefix, n, w in
                                zip(PREFIXES, (pa_n, st_n, se_n, im_n), widths, strict=True))
                    assert all(is_valid_component(c) for c in fid), fid
                    layout.items.append((fid, inst))
    return layout
