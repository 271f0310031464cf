"""``discbridge ls`` / ``check``: exact JSON trees and exit codes (DESIGN.md CLI contract)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from tests import dicomdir_bytes as db
from tests.defect_media import conformant, expected_tree, hostile, leaves, make_iso
from tests.media import dicomdirtests_root

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[int, Any, str]:
    """``python -m app ARGS`` in a subprocess: (exit code, parsed JSON or text, stderr)."""
    p = subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    out: Any = p.stdout
    if "--json" in args and p.stdout.strip():
        out = json.loads(p.stdout)
    return p.returncode, out, p.stderr


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(list(args))
    cap = capsys.readouterr()
    out: Any = cap.out
    if "--json" in args and cap.out.strip():
        out = json.loads(cap.out)
    return code, out, cap.err


def filled_from_files(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What check shows: values the records leave empty come from the files' headers
    (tests.media.make_dataset defaults: birth date 19700101, sex O, series AXIAL)."""
    for p in tree:
        p["birth_date"] = p["birth_date"] or "19700101"
        p["sex"] = p["sex"] or "O"
        for st in p["studies"]:
            for se in st["series"]:
                se["description"] = se["description"] or "AXIAL"
    return tree


def _counts(tree: list[dict[str, Any]]) -> list[tuple[str, list[tuple[str, int]]]]:
    return [(p["patient_id"], [(se["series_uid"], len(se["instances"]))
                               for st in p["studies"] for se in st["series"]]) for p in tree]


def test_ls_json_sample_subprocess() -> None:
    root = dicomdirtests_root()
    code, out, err = run("ls", str(root), "--json")
    assert code == 0, err
    assert err == ""
    assert set(out) == {"root", "source", "dicomdirs", "patients", "problems"}
    assert out["root"] == str(root.resolve())
    assert out["source"] == "dicomdir"
    assert out["dicomdirs"] == ["DICOMDIR", "TINY_ALPHA/DICOMDIR"]
    assert out["problems"] == []
    assert [p["patient_id"] for p in out["patients"]] == ["77654033", "98890234", "12345678"]
    # the records' values, read independently with pydicom's FileSet
    from pydicom.fileset import FileSet

    ref: dict[str, str] = {}
    for sub in ("", "TINY_ALPHA"):
        fs = FileSet(root / sub / "DICOMDIR")
        for inst in fs:
            ref[inst.SOPInstanceUID] = Path(inst.path).resolve().relative_to(
                root.resolve()).as_posix()
    got = {i["sop_instance_uid"]: i["path"] for p in out["patients"] for st in p["studies"]
           for se in st["series"] for i in se["instances"]}
    assert got == ref
    keys = set(out["patients"][0]["studies"][0]["series"][0]["instances"][0])
    assert keys == {"sop_instance_uid", "sop_class_uid", "record_type", "instance_number",
                    "path", "has_icon", "referenced"}


@pytest.mark.parametrize("variant", ["DICOMDIR-bigEnd", "DICOMDIR-implicit", "DICOMDIR-nooffset",
                                     "DICOMDIR-reordered", "DICOMDIR-nopatient"])
def test_ls_sample_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            variant: str) -> None:
    src = dicomdirtests_root()
    root = tmp_path / "m"
    shutil.copytree(src, root, ignore=shutil.ignore_patterns("DICOMDIR*", "TINY_ALPHA"))
    shutil.copy(src / variant, root / "DICOMDIR")
    code, out, _ = cli(capsys, "ls", str(root), "--json")
    assert code == 0
    code, ref, _ = cli(capsys, "ls", str(src / "DICOMDIR"), "--json")
    ref_paths = sorted(i["path"] for p in ref["patients"] for st in p["studies"]
                       for se in st["series"] for i in se["instances"]
                       if not i["path"].startswith("TINY_ALPHA"))
    paths = sorted(i["path"] for p in out["patients"] for st in p["studies"]
                   for se in st["series"] for i in se["instances"])
    assert paths == ref_paths
    assert all(p["code"] in ("dicomdir-recovered",) for p in out["problems"])


def test_ls_and_check_defect_medium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = conformant(tmp_path / "m", patients=1)
    gone = leaves(b.roots)[0]
    b.root.joinpath(*gone.file_id).unlink()  # type: ignore[misc]
    gone_path = "/".join(gone.file_id)  # type: ignore[arg-type]
    code, out, _ = cli(capsys, "ls", str(b.root), "--json")
    assert code == 0  # ls: the medium was read, problems listed
    assert out == {"root": str(b.root.resolve()), "source": "dicomdir",
                   "dicomdirs": ["DICOMDIR"],
                   "patients": expected_tree(b.roots, lambda r: None if r is gone
                                             else "/".join(r.file_id)),  # type: ignore[arg-type]
                   "problems": [{"severity": "error", "code": "missing-file", "path": gone_path,
                                 "message": out["problems"][0]["message"]}]}
    code, out, _ = cli(capsys, "check", str(b.root), "--json")
    assert code == 1  # check: an error
    assert out["profile"] is None
    assert [(p["code"], p["path"]) for p in out["problems"]] == [("missing-file", gone_path)]
    code, text, _ = cli(capsys, "check", str(b.root))
    assert code == 1 and "missing-file" in text


def test_check_conformant_and_profiles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = conformant(tmp_path / "m")
    code, out, _ = cli(capsys, "check", str(b.root), "--json", "--profile", "STD-GEN-CD")
    assert code == 0
    assert out["problems"] == [] and out["profile"] == "STD-GEN-CD"
    assert out["patients"] == filled_from_files(expected_tree(b.roots))
    code, out, _ = cli(capsys, "check", str(b.root), "--json", "--profile", "STD-GEN-DVD-JPEG")
    assert code == 1
    assert {p["code"] for p in out["problems"]} == {"missing-key"}
    code, _, err = cli(capsys, "check", str(b.root), "--profile", "NO-SUCH-PROFILE")
    assert code == 2
    assert "NO-SUCH-PROFILE" in err and len(err.strip().splitlines()) == 1


def test_exit_codes_subprocess(tmp_path: Path) -> None:
    code, _, err = run("ls", str(tmp_path / "absent"), "--json")
    assert code == 1
    assert str(tmp_path / "absent") in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    code, _, err = run("check", str(tmp_path / "empty"))
    assert code == 1 and "no DICOM" in err
    code, _, _ = run("ls", str(tmp_path), "--bogus-flag")
    assert code == 2


def test_check_subprocess_conformant(tmp_path: Path) -> None:
    b = conformant(tmp_path / "m")
    code, out, err = run("check", str(b.root), "--json")
    assert code == 0, err
    assert out["problems"] == []
    assert out["patients"] == filled_from_files(expected_tree(b.roots))


def test_ls_iso_and_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = conformant(tmp_path / "staging", patients=1)
    iso = make_iso(b.root, tmp_path / "disc.iso")
    code, out, _ = cli(capsys, "ls", str(iso), "--json")
    assert code == 0
    assert out["root"] == str(iso.resolve()) and out["patients"] == expected_tree(b.roots)
    code, text, _ = cli(capsys, "ls", str(iso))
    assert code == 0 and "Test^Patient" in text and "PA1/ST1/SE1/IM1" in text
    code, out, _ = cli(capsys, "check", str(iso), "--json")
    assert code == 0 and out["problems"] == []


def test_ls_hostile_medium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = hostile(tmp_path / "m")
    code, out, _ = cli(capsys, "ls", str(b.root), "--json")
    assert code == 0
    paths = [i["path"] for p in out["patients"] for st in p["studies"] for se in st["series"]
             for i in se["instances"]]
    assert paths == ["PA1/IM1"] + [None] * len(b.notes["bad"])
    assert {p["code"] for p in out["problems"] if p["severity"] == "error"} <= {
        "outside-root", "missing-file"}
    code, _, _ = cli(capsys, "check", str(b.root), "--json")
    assert code == 1


def test_ls_scan_medium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roots = db.simple_tree(patients=1, images=2)
    db.write_medium(tmp_path / "m", roots)
    (tmp_path / "m" / "DICOMDIR").unlink()
    code, out, _ = cli(capsys, "ls", str(tmp_path / "m"), "--json")
    assert code == 0
    assert out["source"] == "scan" and out["dicomdirs"] == []
    assert [(p["severity"], p["code"]) for p in out["problems"]] == [("warning", "no-dicomdir")]
    assert _counts(out["patients"]) == _counts(expected_tree(roots))
    code, _, _ = cli(capsys, "check", str(tmp_path / "m"))
    assert code == 1  # a medium without DICOMDIR is not conformant
