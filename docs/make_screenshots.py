"""Regenerate the README's window screenshots with ``discbridge … --screenshot`` (offscreen).

    .venv/bin/python docs/make_screenshots.py

main-window.png / main-window-2x.png: ``discbridge demo`` at 1× and 2× scale.
damaged-disc.png: a copy of the sample disc damaged the way real discs are (names lower-cased
as Linux shows plain ISO 9660 names, one image missing, one stray image no record lists, one
file cut short), opened with ``discbridge open``.
export-summary.png: the export wizard's summary page for the sample disc (``--wizard``, the
same classes the app uses, offscreen; nothing is written).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"


def run(args: list[str], **env: str) -> None:
    e = dict(os.environ, QT_QPA_PLATFORM="offscreen", **env)
    subprocess.run([sys.executable, "-m", "app", *args], check=True, cwd=ROOT, env=e)


def damaged_copy(dest: Path) -> Path:
    from app.core.sample import sample_disc_path

    shutil.copytree(sample_disc_path(), dest)
    for path in sorted(dest.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.rename(path.with_name(path.name.lower()))
    images = sorted(p for p in dest.rglob("im*") if p.is_file())
    images[0].unlink()  # a referenced file that is not on the disc
    data = images[1].read_bytes()
    images[1].write_bytes(data[: len(data) // 2])  # a file cut short (a bad burn)
    shutil.copyfile(images[2], dest / "pa001" / "extra")  # an image no record lists
    return dest


def wizard_summary(out: Path) -> None:
    """Grab the export wizard's summary page (runs in this process, offscreen)."""
    import time

    from PySide6.QtWidgets import QApplication

    from app.core.medium.reader import open_medium
    from app.core.sample import sample_disc_path
    from app.gui.application import make_application
    from app.gui.tasks import TaskRunner
    from app.gui.wizard.state import PAGE_SUMMARY
    from app.gui.wizard.wizard import ExportWizard

    app = make_application([])
    runner = TaskRunner()

    def wait(cond: object, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while not cond() and time.monotonic() < end:  # type: ignore[operator]
            QApplication.processEvents()
            time.sleep(0.01)

    wiz = ExportWizard([open_medium(sample_disc_path())], None, runner)
    wiz.resize(900, 720)
    wiz.show()
    wiz.next()
    page = wiz.options_page
    page.media_box.setCurrentIndex(page.media_box.findData("cd"))
    page.fileset_id.setText("PATIENT_CD")
    page.institution.setText("St. Elsewhere Radiology")
    page.contact.setText("+1 555 0100")
    wiz.next()
    dest = wiz.destination_page
    dest.radios["folder"].setChecked(True)
    dest.folder.setText(str(Path(tempfile.gettempdir()) / "discbridge-screenshot-dest"))
    wait(lambda: dest._pending == 0)
    wiz.next()
    wait(lambda: wiz.currentId() == PAGE_SUMMARY and not wiz.summary_page.busy())
    for _ in range(20):
        QApplication.processEvents()
    wiz.grab().save(str(out))
    wiz.close()
    runner.shutdown()
    app.processEvents()


def main() -> int:
    if sys.argv[1:] == ["--wizard"]:
        wizard_summary(OUT / "export-summary.png")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    run(["demo", "--screenshot", str(OUT / "main-window.png")])
    run(["demo", "--screenshot", str(OUT / "main-window-2x.png")], QT_SCALE_FACTOR="2")
    with tempfile.TemporaryDirectory() as tmp:
        disc = damaged_copy(Path(tmp) / "patient-cd")
        run(["open", str(disc), "--screenshot", str(OUT / "damaged-disc.png")])
    subprocess.run([sys.executable, __file__, "--wizard"], check=True, cwd=ROOT,
                   env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    print(f"screenshots written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
