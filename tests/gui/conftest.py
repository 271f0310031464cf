"""GUI test setup: offscreen Qt (tests/conftest.py), leak guards and factory fixtures.

Every GUI test is checked for leaks: after it, each TaskRunner's pools and Qt's global pool must
be idle and no Python thread started during the test may still be alive (a MediaWatcher, a
worker). Factory fixtures own their cleanup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, QThreadPool

from app.core.model import Instance, Medium, Patient, Problem, Series, Study
from app.gui.tasks import TaskRunner, live_runners


def build_medium(root: str = "/media/cd", spec: dict[str, list[list[int]]] | None = None,
                 problems: list[Problem] | None = None) -> Medium:
    """A Medium in code: ``spec`` maps "ID^Name" to studies, each a list of series sizes."""
    spec = spec or {"P1^Zeta^Anna": [[3, 2], [1]], "P2^Alpha^Bert": [[5]], "P3^Müller^Hans": [[]]}
    medium = Medium(root=root, source="dicomdir", dicomdirs=["DICOMDIR"],
                    problems=list(problems or []))
    for p_i, (key, studies) in enumerate(spec.items()):
        pid, name = key.split("^", 1)
        pat = Patient(pid, name, f"19{50 + p_i}0101", "O")
        for s_i, sizes in enumerate(studies):
            st = Study(f"1.2.{p_i}.{s_i}", f"2024010{s_i + 1}", "101500", str(s_i + 1),
                       f"ACC{p_i}{s_i}", f"STUDY {s_i}")
            for se_i, n in enumerate(sizes):
                se = Series(f"1.2.{p_i}.{s_i}.{se_i}", "MR" if se_i else "CT", str(se_i + 1),
                            f"SERIES {se_i}")
                se.instances = [Instance(f"1.2.{p_i}.{s_i}.{se_i}.{k}", instance_number=str(k))
                                for k in range(n)]
                st.series.append(se)
            pat.studies.append(st)
        medium.patients.append(pat)
    return medium


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/gui/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gui)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """QSettings go to a throw-away folder: tests never read or write the user's settings."""
    folder = tmp_path_factory.mktemp("settings")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    yield


@pytest.fixture(autouse=True)
def _no_threads_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a pool busy or a thread running."""
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 2.0
    while True:
        busy = [r for r in live_runners() if r.busy_threads()]
        global_busy = QThreadPool.globalInstance().activeThreadCount()
        # Qt's pool threads appear as threading._DummyThread once Python ran on them; the
        # pools' busy counts above cover those. Real Python threads must all be gone.
        extra = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()
                 and not isinstance(t, threading._DummyThread)]
        if not busy and not global_busy and not extra:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    pytest.fail(f"{request.node.name} left threads running: pools={len(busy)} "
                f"global={global_busy} threads={[t.name for t in extra]}")


@pytest.fixture
def runner(qapp: object) -> Iterator[TaskRunner]:
    """A TaskRunner that is shut down after the test."""
    r = TaskRunner()
    yield r
    assert r.shutdown(5000)
    r.deleteLater()


@pytest.fixture(name="build_medium")
def _build_medium_fixture() -> object:
    """The :func:`build_medium` factory (a Medium built in code, no files)."""
    return build_medium


@pytest.fixture
def sample_root() -> Path:
    from app.core.sample import sample_disc_path

    return sample_disc_path()
