"""Export to an ISO image and to a burner (xorriso's ``stdio:`` pseudo-drive writes a real image).

The ISO and burn steps are E2's ``iso``/``burn`` modules; these tests check that the export
pipeline drives them: staging in a temporary folder that is removed, Volume ID = File-set ID,
read-back verification of the image, one image per volume when spanning.
"""

from __future__ import annotations

import os
from pathlib import Path

import pycdlib

from app.core.export.engine import execute, plan_export
from app.core.export.options import ExportOptions
from tests.conftest import require_tool
from tests.export_helpers import listing, medium_of
from tests.media import make_dataset, uid, write_instance


def _source(tmp_path: Path, studies: int = 1, per: int = 3) -> Path:
    src = tmp_path / "src"
    for s in range(studies):
        study = uid()
        for i in range(per):
            write_instance(src / f"s{s}i{i}.dcm",
                           make_dataset(64, 64, StudyInstanceUID=study, StudyDate=f"2024030{s + 1}"))
    return src


def _iso_names(iso: Path) -> tuple[str, list[str]]:
    pc = pycdlib.PyCdlib()
    pc.open(str(iso))
    try:
        volid = pc.pvd.volume_identifier.decode().strip()
        names = []
        for dirname, _dirs, files in pc.walk(iso_path="/"):
            names += [f"{dirname.rstrip('/')}/{f}" for f in files]
        return volid, sorted(names)
    finally:
        pc.close()


def test_iso_without_dest_uses_a_removed_temp_folder(tmp_path: Path) -> None:
    src = _source(tmp_path)
    iso = tmp_path / "out" / "disc.iso"
    iso.parent.mkdir()
    opts = ExportOptions(sources=[src], iso=iso, media="cd", fileset_id="MYDISC")
    report = execute(plan_export(opts, [medium_of(src)]))
    assert report.ok, report.summary_lines()
    assert listing(tmp_path / "out") == ["disc.iso"]  # the staging folder is gone
    volid, names = _iso_names(iso)
    assert volid == "MYDISC"
    assert "/DICOMDIR.;1" in names and "/README.TXT;1" in names
    assert "/PA001/ST001/SE001/IM000001.;1" in names
    assert report.volumes[0].iso == str(iso)
    assert report.verification.iso_failures == []
    assert any(line.startswith("  image verified") for line in report.summary_lines())


def test_iso_with_staging_dest_and_spanning(tmp_path: Path) -> None:
    src = _source(tmp_path, studies=3, per=4)
    iso = tmp_path / "disc.iso"
    opts = ExportOptions(sources=[src], dest=tmp_path / "stage", iso=iso, span=True)
    report = execute(plan_export(opts, [medium_of(src)], capacity=70_000))
    assert report.ok, report.summary_lines()
    assert len(report.volumes) >= 2
    for v in report.volumes:
        assert v.iso is not None and Path(v.iso).is_file()
        volid, names = _iso_names(Path(v.iso))
        assert volid == v.fileset_id and "/DICOMDIR.;1" in names
    assert (tmp_path / "stage" / "VOL01" / "DICOMDIR").is_file()  # the staging folder is kept


def test_burn_to_xorriso_pseudo_drive(tmp_path: Path) -> None:
    require_tool("xorriso")
    src = _source(tmp_path)
    disc = tmp_path / "disc.img"
    opts = ExportOptions(sources=[src], burn=f"stdio:{disc}", media="cd")
    report = execute(plan_export(opts, [medium_of(src)]))
    assert report.ok, report.summary_lines()
    assert disc.is_file() and disc.stat().st_size > 0
    volid, names = _iso_names(disc)
    assert volid == report.fileset_id and "/DICOMDIR.;1" in names
    assert report.verification.burn and report.volumes[0].iso is None
    assert sorted(os.listdir(tmp_path)) == ["disc.img", "src"]


def test_export_from_an_iso_source(tmp_path: Path) -> None:
    """Sources inside an .iso have no local path: bytes are streamed (and rewritten when fixed)."""
    src = _source(tmp_path, per=2)
    iso = tmp_path / "first.iso"
    execute(plan_export(ExportOptions(sources=[src], iso=iso, fileset_id="FIRST"),
                        [medium_of(src)]))
    from app.core.medium.reader import open_medium

    medium = open_medium(iso)
    assert medium.fs is not None and medium.fs.local_path("DICOMDIR") is None
    report = execute(plan_export(ExportOptions(sources=[iso], dest=tmp_path / "again"),
                                 [medium]))
    assert report.ok and report.volumes[0].files == 2
    for p in (tmp_path / "again").rglob("IM*"):
        assert p.read_bytes() == (src / "s0i0.dcm").read_bytes() or \
            p.read_bytes() == (src / "s0i1.dcm").read_bytes()
