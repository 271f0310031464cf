"""``discbridge demo|open PATH --screenshot FILE``: a PNG of the main window of the right size
(1× and 2× scale), exit codes, and a clear message instead of a Qt abort without a display."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtGui import QColor, QImage

from app.gui.application import has_display, run_gui

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "QT_SCALE_FACTOR")}
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(env, XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_STATE_HOME=str(tmp_path / "s"))
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_demo_screenshot_in_process(qapp, tmp_path: Path) -> None:
    out = tmp_path / "shots" / "main.png"
    assert run_gui(None, demo=True, screenshot=out) == 0
    img = QImage(str(out))
    dpr = qapp.devicePixelRatio()
    assert (img.width(), img.height()) == (round(1280 * dpr), round(800 * dpr))
    # Not a blank grab: the window has many distinct colours (text, tree, thumbnails).
    colours = {img.pixel(x, y) for x in range(0, img.width(), 7) for y in range(0, img.height(), 7)}
    assert len(colours) > 20
    assert QColor(img.pixel(5, 5)).alpha() == 255


def test_open_failure_exits_1_with_message(qapp, tmp_path: Path, capsys) -> None:
    out = tmp_path / "never.png"
    assert run_gui([str(tmp_path / "no-such-disc")], demo=False, screenshot=out) == 1
    assert "no-such-disc" in capsys.readouterr().err
    assert not out.exists()


def test_screenshot_at_twice_the_scale(tmp_path: Path) -> None:
    out = tmp_path / "main-2x.png"
    proc = _run(["demo", "--screenshot", str(out)],
                _env(QT_QPA_PLATFORM="offscreen", QT_SCALE_FACTOR="2"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    img = QImage(str(out))
    assert (img.width(), img.height()) == (2560, 1600)
    assert "Traceback" not in proc.stderr


def test_without_display_demo_prints_the_tree(tmp_path: Path) -> None:
    if sys.platform != "linux":
        return
    proc = _run(["demo"], _env(), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "no display found" in proc.stderr
    assert "Patient" in proc.stdout and "CompressedSamples^CT1" in proc.stdout
    proc = _run(["open", str(tmp_path)], _env(), tmp_path)
    assert proc.returncode == 1 and "no display found" in proc.stderr
    # --screenshot needs no screen: it renders offscreen by itself.
    out = tmp_path / "headless.png"
    proc = _run(["open", str(tmp_path / "nothing-here"), "--screenshot", str(out)], _env(),
                tmp_path)
    assert proc.returncode == 1 and "nothing-here" in proc.stderr
    assert "Aborted" not in proc.stderr and proc.returncode != -6


def test_has_display(monkeypatch) -> None:
    for key in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(key, raising=False)
    assert has_display() is (not sys.platform.startswith("linux"))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert has_display()
