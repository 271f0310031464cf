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

from app.gui.tasks import TaskRunner, live_runners


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


@pytest.fixture
def sample_root() -> Path:
    from app.core.sample import sample_disc_path

    return sample_disc_path()
