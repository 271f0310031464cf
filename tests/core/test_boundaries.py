"""Architecture rules that must hold mechanically: the core never imports Qt."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import app.core

ROOT = Path(__file__).resolve().parents[2]


def test_every_core_module_imports_without_qt() -> None:
    names = sorted(m.name for m in pkgutil.iter_modules(app.core.__path__, "app.core."))
    assert len(names) > 30
    code = (
        "import importlib, sys\n"
        f"names = {names!r}\n"
        "for n in names:  # the Windows/macOS backends too: their OS imports are lazy\n"
        "    importlib.import_module(n)\n"
        "qt = sorted(m for m in sys.modules if m.startswith(('PySide6', 'shiboken6')))\n"
        "print(','.join(qt))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"app.core pulled in Qt: {out.stdout.strip()}"


def test_no_core_source_mentions_a_qt_import() -> None:
    offenders = [p.name for p in (ROOT / "app" / "core").glob("*.py")
                 if any(line.lstrip().startswith(("import PySide6", "from PySide6"))
                        for line in p.read_text(encoding="utf-8").splitlines())]
    assert offenders == []
