"""Export layout (DESIGN.md "Export naming and ordering")."""

from __future__ import annotations

import pytest

from app.core.dicomdir.file_id import WINDOWS_DEVICE_NAMES, is_valid_component
from app.core.export.layout import LayoutItem, plan_layout
from tests.media import make_dataset


def item(pid: str = "P1", name: str = "A^B", study: str = "1.1", date: str = "20240101",
         time: str = "1000", series: str = "1.1.1", sn: str = "1", sop: str = "1.1.1.1",
         inum: str = "1") -> LayoutItem:
    return LayoutItem(pid, name, study, date, time, series, sn, sop, inum, key=sop)


def test_ordering_at_every_level() -> None:
    items = [
        # patients: by name then ID
        item(pid="Z9", name="Zeta^A", study="9.1", series="9.1.1", sop="9.1.1.1"),
        item(pid="B2", name="Alpha^A", study="2.1", series="2.1.1", sop="2.1.1.1"),
        item(pid="B1", name="Alpha^A", study="1.1", series="1.1.1", sop="1.1.1.1"),
        # studies of B1: by date, time, UID
        item(pid="B1", name="Alpha^A", study="1.3", date="20230101", series="1.3.1",
             sop="1.3.1.1"),
        item(pid="B1", name="Alpha^A", study="1.2", date="20240101", time="0900",
             series="1.2.1", sop="1.2.1.1"),
        # series of study 1.1: numeric order (10 after 2), then UID
        item(pid="B1", name="Alpha^A", study="1.1", series="1.1.10", sn="10", sop="1.1.10.1"),
        item(pid="B1", name="Alpha^A", study="1.1", series="1.1.2", sn="2", sop="1.1.2.1"),
        item(pid="B1", name="Alpha^A", study="1.1", series="1.1.0", sn="2", sop="1.1.0.1"),
        # instances of series 1.1.1: numeric, then UID; missing numbers last
        item(pid="B1", name="Alpha^A", study="1.1", series="1.1.1", sop="1.1.1.3", inum="10"),
        item(pid="B1", name="Alpha^A", study="1.1", series="1.1.1", sop="1.1.1.2", inum="2"),
        item(pid="B1", name="Alpha^A", study="1.1", series="1.1.1", sop="1.1.1.0", inum="2"),
        item(pid="B1", name="Alpha^A", study="1.1", series="1.1.1", sop="1.1.1.9", inum=""),
    ]
    got = {sop: "/".join(fid) for sop, fid in plan_layout(items).file_ids.items()}
    assert got["1.3.1.1"] == "PA001/ST001/SE001/IM000001"  # 2023 study first
    assert got["1.2.1.1"] == "PA001/ST002/SE001/IM000001"  # 20240101 0900
    assert got["1.1.1.1"] == "PA001/ST003/SE001/IM000001"  # Instance Number 1
    assert got["1.1.1.0"] == "PA001/ST003/SE001/IM000002"  # Instance Number 2, UID ...0
    assert got["1.1.1.2"] == "PA001/ST003/SE001/IM000003"  # Instance Number 2, UID ...2
    assert got["1.1.1.3"] == "PA001/ST003/SE001/IM000004"  # 10 after 2 (numeric)
    assert got["2.1.1.1"].startswith("PA002/")
    assert got["9.1.1.1"].startswith("PA003/")
    assert got["1.1.0.1"] == "PA001/ST003/SE002/IM000001"
    assert got["1.1.2.1"] == "PA001/ST003/SE003/IM000001"
    assert got["1.1.10.1"] == "PA001/ST003/SE004/IM000001"
    assert got["1.1.1.9"] == "PA001/ST003/SE001/IM000005"


def test_file_ids_are_in_medium_order_and_valid() -> None:
    items = [item(sop=f"1.1.1.{n}", inum=str(n)) for n in (3, 1, 2)]
    layout = plan_layout(items)
    fids = [fid for fid, _ in layout.items]
    assert fids == sorted(fids)
    assert [i.sop_instance_uid for _, i in layout.items] == ["1.1.1.1", "1.1.1.2", "1.1.1.3"]
    assert layout.by_key()["1.1.1.2"] == ("PA001", "ST001", "SE001", "IM000002")
    assert all(is_valid_component(c) for fid in fids for c in fid)


def test_width_widened_for_all_siblings_only_when_needed() -> None:
    # 1000 series in one study -> SE width 4 for every series component on the medium,
    # while PA/ST/IM keep their default widths.
    items = [item(series=f"2.{n}", sn=str(n), sop=f"3.{n}") for n in range(1, 1001)]
    items.append(item(pid="P2", name="B^B", study="5", series="5.1", sop="5.1.1"))
    layout = plan_layout(items)
    assert layout.widths == (3, 3, 4, 6)
    ids = layout.file_ids
    assert ids["3.1"] == ("PA001", "ST001", "SE0001", "IM000001")
    assert ids["3.1000"] == ("PA001", "ST001", "SE1000", "IM000001")
    assert ids["5.1.1"] == ("PA002", "ST001", "SE0001", "IM000001")
    assert plan_layout(items[:999]).widths == (3, 3, 3, 6)


def test_too_many_children_refused() -> None:
    from app.core.export import layout as layout_mod

    with pytest.raises(ValueError, match="instances under one parent"):
        layout_mod._width([1_000_000], 6, "instances")


def test_duplicate_sop_instance_refused() -> None:
    with pytest.raises(ValueError, match="duplicate SOP Instance UID"):
        plan_layout([item(), item()])


def test_patients_grouped_by_id_and_empty_ids_by_name() -> None:
    items = [item(pid="", name="X^Y", study="1", sop="1"), item(pid="", name="W^V", study="2",
                                                                 sop="2"),
             item(pid="ID", name="A^A", study="3", sop="3"),
             item(pid="ID", name="A^A", study="4", sop="4")]
    ids = plan_layout(items).file_ids
    assert ids["3"][:2] == ("PA001", "ST001") and ids["4"][:2] == ("PA001", "ST002")
    assert ids["2"][0] == "PA002" and ids["1"][0] == "PA003"


def test_from_dataset() -> None:
    ds = make_dataset(InstanceNumber="7", SeriesNumber="3")
    li = LayoutItem.from_dataset(ds, key="k")
    assert (li.patient_id, li.instance_number, li.series_number, li.key) == ("PID001", "7",
                                                                             "3", "k")
    assert li.study_uid == ds.StudyInstanceUID


def test_device_names_and_component_rules() -> None:
    for name in ("CON", "NUL", "AUX", "PRN", "COM1", "LPT9"):
        assert name in WINDOWS_DEVICE_NAMES
        assert not is_valid_component(name)
    for bad in ("", "pa001", "PA 01", "IM0000001", "A.B", "README.TXT"):
        assert not is_valid_component(bad)
    for good in ("PA001", "IM000001", "SE_1", "COM0", "DICOMDIR"):
        assert is_valid_component(good)
