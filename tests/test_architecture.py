"""tools/check_architecture.py: the real tree passes, and each planted violation fails it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "tools" / "check_architecture.py"


def run(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), "--root", str(root)], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """A copy of app/ and the README: what the check reads."""
    shutil.copytree(ROOT / "app", tmp_path / "app",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    return tmp_path


def add_line(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n" + line + "\n", encoding="utf-8")


def test_the_repository_passes() -> None:
    out = run(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no cycle" in out.stdout


def test_the_copy_passes(tree: Path) -> None:
    out = run(tree)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_cycle_inside_functions_fails(tree: Path) -> None:
    # files.py is imported by medium/fs.py; an import back from inside a function closes a circle
    add_line(tree / "app/core/medium/fs.py", "def _x() -> None:\n    import app.core.medium.isofs")
    add_line(tree / "app/core/medium/isofs.py",
             "def _y() -> None:\n    from app.core.medium import fs  # noqa: F401")
    out = run(tree)
    assert out.returncode == 1
    assert "import cycle: app.core.medium.fs, app.core.medium.isofs" in out.stdout


def test_a_cycle_within_one_layer_fails(tree: Path) -> None:
    add_line(tree / "app/core/dicomdir/raw.py", "from app.core.dicomdir import scan  # noqa")
    out = run(tree)
    assert out.returncode == 1
    assert "import cycle" in out.stdout and "app.core.dicomdir.raw" in out.stdout


def test_an_upward_import_fails(tree: Path) -> None:
    add_line(tree / "app/core/dicom/charsets.py",
             "def _z() -> None:\n    from app.core.export.engine import run_export  # noqa")
    out = run(tree)
    assert out.returncode == 1
    assert "app/core/dicom/charsets.py" in out.stdout and "a layer above its own" in out.stdout


def test_the_gui_importing_the_cli_fails(tree: Path) -> None:
    add_line(tree / "app/gui/welcome.py", "from app.cli import main  # noqa")
    out = run(tree)
    assert out.returncode == 1
    assert "app/gui/welcome.py" in out.stdout and "imports app.cli" in out.stdout


def test_the_layer_order_is_read_from_the_readme(tree: Path) -> None:
    """Swapping two rows of the README's table makes today's imports go against it."""
    readme = tree / "README.md"
    text = readme.read_text(encoding="utf-8")
    dicom_row = next(line for line in text.splitlines() if line.startswith("| `app/core/dicom/`"))
    medium_row = next(line for line in text.splitlines()
                      if line.startswith("| `app/core/medium/`"))
    swapped = text.replace(dicom_row, "\0").replace(medium_row, dicom_row).replace("\0",
                                                                                     medium_row)
    readme.write_text(swapped, encoding="utf-8")
    out = run(tree)
    assert out.returncode == 1
    assert "app/core/medium/" in out.stdout and "a layer above its own" in out.stdout


def test_qt_under_core_fails(tree: Path) -> None:
    add_line(tree / "app/core/jobs.py",
             "def _q() -> None:\n    from PySide6.QtCore import QObject  # noqa: F401")
    out = run(tree)
    assert out.returncode == 1
    assert "app/core/jobs.py" in out.stdout and "Qt belongs in app/gui/ only" in out.stdout


def test_qt_through_import_module_fails(tree: Path) -> None:
    add_line(tree / "app/core/errors.py",
             "def _q() -> None:\n    import importlib\n    importlib.import_module('PySide6.QtGui')")
    out = run(tree)
    assert out.returncode == 1
    assert "app/core/errors.py" in out.stdout


def test_a_long_module_fails(tree: Path) -> None:
    path = tree / "app/core/appdirs.py"
    add_line(path, "\n".join(f"_PAD_{i} = {i}" for i in range(600)))
    out = run(tree)
    assert out.returncode == 1
    assert "app/core/appdirs.py:" in out.stdout and "(at most 600)" in out.stdout


def test_a_module_the_table_does_not_name_fails(tree: Path) -> None:
    (tree / "app/tools").mkdir()
    (tree / "app/tools/__init__.py").write_text("")
    out = run(tree)
    assert out.returncode == 1
    assert "app/tools/__init__.py: not named by any row" in out.stdout
