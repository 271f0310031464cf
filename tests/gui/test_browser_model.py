"""The patient → study → series model: Qt model rules, counts, sorting, search, several media,
laziness, and real media read by the reader (sample disc and defect media)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QModelIndex, Qt

from app.core.model import Series
from app.gui.browser import (
    COL_COUNT,
    COL_DATE,
    COL_ID,
    COL_MODALITY,
    COL_NAME,
    BrowserProxy,
    CountRole,
    KindRole,
    MediumTreeModel,
    NodeRole,
    format_date,
    format_person_name,
)
from tests.media import make_dataset, write_fileset


@pytest.fixture
def model(qapp) -> MediumTreeModel:
    return MediumTreeModel()


def _children(model, parent: QModelIndex | None = None) -> list[QModelIndex]:
    parent = parent or QModelIndex()
    return [model.index(r, 0, parent) for r in range(model.rowCount(parent))]


def test_model_tester_on_built_medium(qtmodeltester, model: MediumTreeModel, build_medium) -> None:
    model.add_medium(build_medium())
    qtmodeltester.check(model, force_py=True)
    proxy = BrowserProxy()
    proxy.setSourceModel(model)
    proxy.sort(COL_NAME)
    qtmodeltester.check(proxy, force_py=True)


def test_rows_and_counts(model: MediumTreeModel, build_medium) -> None:
    medium = build_medium()
    model.add_medium(medium)
    pats = _children(model)
    assert [p.data() for p in pats] == ["Zeta, Anna", "Alpha, Bert", "Müller, Hans"]
    assert [p.siblingAtColumn(COL_ID).data() for p in pats] == ["P1", "P2", "P3"]
    assert [p.siblingAtColumn(COL_COUNT).data() for p in pats] == ["6", "5", "0"]
    studies = _children(model, pats[0])
    assert [s.data(KindRole) for s in studies] == ["study", "study"]
    assert studies[0].siblingAtColumn(COL_DATE).data() == "2024-01-01 10:15"
    assert studies[0].siblingAtColumn(COL_MODALITY).data() == "CT, MR"
    assert [s.data(CountRole) for s in studies] == [5, 1]
    series = _children(model, studies[0])
    assert [s.data() for s in series] == ["1 · SERIES 0", "2 · SERIES 1"]
    assert [s.data(CountRole) for s in series] == [3, 2]
    assert series[1].data(NodeRole) is medium.patients[0].studies[0].series[1]
    assert model.rowCount(series[0]) == 0  # no instance rows
    assert model.totals() == (3, 4, 4, 11)


def test_children_are_built_lazily(model: MediumTreeModel, build_medium) -> None:
    model.add_medium(build_medium())
    top = model._top[0]
    assert top._children is None
    assert model.rowCount(model.index(0, 0)) == 2  # counting builds no nodes
    assert top._children is None
    model.index(0, 0, model.index(0, 0))
    assert top._children is not None and top._children[0]._children is None


def test_search_by_name_or_id_and_sort(qapp, model: MediumTreeModel, build_medium) -> None:
    model.add_medium(build_medium())
    proxy = BrowserProxy()
    proxy.setSourceModel(model)
    proxy.sort(COL_NAME, Qt.SortOrder.AscendingOrder)
    names = [proxy.index(r, 0).data() for r in range(proxy.rowCount())]
    assert names == ["Alpha, Bert", "Müller, Hans", "Zeta, Anna"]
    proxy.set_search("müller")
    assert [proxy.index(r, 0).data() for r in range(proxy.rowCount())] == ["Müller, Hans"]
    proxy.set_search("p1")
    assert proxy.rowCount() == 1 and proxy.index(0, COL_ID).data() == "P1"
    assert proxy.rowCount(proxy.index(0, 0)) == 2  # a match shows all of its studies
    proxy.set_search("Anna Zeta")  # words in any order, as in "Zeta^Anna"
    assert proxy.rowCount() == 1
    proxy.set_search("nobody")
    assert proxy.rowCount() == 0
    proxy.set_search("")
    assert proxy.rowCount() == 3
    proxy.sort(COL_COUNT, Qt.SortOrder.DescendingOrder)  # numbers sort as numbers
    assert [proxy.index(r, COL_COUNT).data() for r in range(3)] == ["6", "5", "0"]


def test_several_media_add_replace_remove(qtmodeltester, model: MediumTreeModel, build_medium) -> None:
    a = build_medium("/media/a")
    b = build_medium("/media/b", {"Q1^Other^One": [[2]]})
    model.add_medium(a)
    qtmodeltester.check(model, force_py=True)  # stays connected: checks every change below
    model.add_medium(b)
    assert model.rowCount() == 4 and model.media == [a, b]
    a2 = build_medium("/media/a", {"R1^Reloaded^Disc": [[1, 1]]})
    model.add_medium(a2)  # same root: replaces
    assert model.media == [b, a2]
    assert [i.data() for i in _children(model)] == ["Other, One", "Reloaded, Disc"]
    model.remove_medium(b)
    assert model.media == [a2] and model.rowCount() == 1
    model.clear()
    assert model.rowCount() == 0 and model.totals() == (0, 0, 0, 0)


def test_index_of_core_object(model: MediumTreeModel, build_medium) -> None:
    medium = build_medium()
    model.add_medium(medium)
    series = medium.patients[1].studies[0].series[0]
    idx = model.index_of(series)
    assert idx.isValid() and idx.data(NodeRole) is series
    assert idx.parent().parent().data(NodeRole) is medium.patients[1]
    assert not model.index_of(Series("not listed")).isValid()


def test_formatting() -> None:
    assert format_person_name("Müller^Hans^^Dr") == "Müller, Hans"
    assert format_person_name("Yamada^Tarou=山田^太郎") == "Yamada, Tarou (山田 太郎)"
    assert format_person_name("SINGLE") == "SINGLE"
    assert format_person_name(None) == ""
    assert format_date("20240102") == "2024-01-02"
    assert format_date("2024") == "2024"


# ----- real media through the reader --------------------------------------------------------

def _fill_all(model) -> int:
    """Visit every row like a view expanding everything; returns the number of rows."""
    n = 0
    stack = [QModelIndex()]
    while stack:
        parent = stack.pop()
        for r in range(model.rowCount(parent)):
            idx = model.index(r, 0, parent)
            assert idx.data() is not None
            n += 1
            stack.append(idx)
    return n


def test_sample_disc_fills_the_model(qtmodeltester, model: MediumTreeModel, sample_root) -> None:
    from app.core.medium.reader import open_medium

    medium = open_medium(sample_root)
    model.add_medium(medium)
    qtmodeltester.check(model, force_py=True)
    expected_series = sum(len(st.series) for p in medium.patients for st in p.studies)
    expected_studies = sum(len(p.studies) for p in medium.patients)
    assert _fill_all(model) == len(medium.patients) + expected_studies + expected_series
    assert model.totals()[3] == sum(1 for _ in medium.instances()) > 0
    ids = {model.index(r, COL_ID).data() for r in range(model.rowCount())}
    assert {p.patient_id for p in medium.patients} == ids


def test_defect_medium_fills_the_model(qtmodeltester, model: MediumTreeModel,
                                       tmp_path: Path) -> None:
    from app.core.medium.reader import open_medium

    root = tmp_path / "disc"
    dss = [make_dataset(PatientName="Defekt^Dora", PatientID="D1") for _ in range(3)]
    write_fileset(root, dss)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    files[0].unlink()  # a referenced file is missing
    shutil.copy(files[1], root / "EXTRA.DCM")  # a file no record references... same UID
    medium = open_medium(root)
    model.add_medium(medium)
    qtmodeltester.check(model, force_py=True)
    codes = {p.code for p in medium.problems}
    assert "missing-file" in codes
    assert model.rowCount() >= 1
    assert model.index(0, COL_NAME).data() == "Defekt, Dora"


def test_closing_a_medium_breaks_node_cycles(model: MediumTreeModel, build_medium) -> None:
    medium = build_medium()
    model.add_medium(medium)
    top = model._top[0]
    study = top.children(model._counts, model._mods)[0]
    study.children(model._counts, model._mods)
    model.remove_medium(medium)
    assert top._children is None and study.parent is None and study._children is None
