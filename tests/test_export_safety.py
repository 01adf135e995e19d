"""`export --out DIR` deletes only what it wrote and can prove: generated names, inside DIR, no links."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import run_cli
from poolconform import testdirs
from poolconform.validation import make_case
from poolconform.errors import PoolconformError

CASES = [make_case("MaxPool", (1, 1, 4, 4), kernel=2, strides=2), make_case("AveragePool", (1, 1, 4, 4), kernel=2)]


def _hostile_manifest(out: Path, dirs: list[object]) -> None:
    # claims to be export's own (a manifest that does not is refused outright): the names must still be checked
    (out / "manifest.json").write_text(json.dumps({"cases": [{"dir": d} for d in dirs], "count": len(dirs),
                                                   "format": testdirs.MANIFEST_FORMAT}))


def test_manifest_naming_the_parent_deletes_nothing_outside(tmp_path: Path) -> None:
    """The issue's attack: {"dir": ".."} made the stale-folder cleanup rmtree the parent of DIR."""
    out = tmp_path / "corpus"
    out.mkdir()
    (tmp_path / "precious.txt").write_text("keep")
    (tmp_path / "sibling").mkdir()
    (tmp_path / "sibling" / "model.onnx").write_text("keep")
    _hostile_manifest(out, ["..", ".", "../sibling", "/", str(tmp_path / "sibling"), "test_x/../..", 7, None])
    proc = run_cli("export", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep"
    assert (tmp_path / "sibling" / "model.onnx").read_text() == "keep"
    assert len(json.loads((out / "manifest.json").read_text())["cases"]) > 0


def test_stale_folder_that_is_a_symlink_is_not_followed(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "corpus", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "model.onnx").write_text("keep")
    testdirs.export_cases(CASES, out)
    (out / "test_stale_link").symlink_to(elsewhere, target_is_directory=True)
    _hostile_manifest(out, ["test_stale_link"])
    testdirs.export_cases(CASES, out)
    assert (elsewhere / "model.onnx").read_text() == "keep"
    assert (out / "test_stale_link").is_symlink()  # not ours to remove either


def test_stale_folder_with_files_export_did_not_write_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    testdirs.export_cases(CASES, out)
    old = out / testdirs.dir_name(CASES[1])
    (old / "notes.txt").write_text("mine")
    testdirs.export_cases(CASES[:1], out)  # CASES[1] is stale now, but holds a user's file
    assert (old / "notes.txt").read_text() == "mine"
    with pytest.raises(PoolconformError, match="notes.txt"):  # re-exporting it would delete the file
        testdirs.export_cases(CASES, out)
    assert (old / "notes.txt").read_text() == "mine"
    fresh = tmp_path / "fresh"
    testdirs.export_cases(CASES, fresh)
    testdirs.export_cases(CASES[1:], fresh)  # CASES[0] is stale and all export's own: removed
    assert sorted(p.name for p in fresh.iterdir()) == sorted(["manifest.json", testdirs.dir_name(CASES[1])])


def test_an_exported_name_that_is_a_symlink_is_refused_before_writing(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "corpus", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    (out / testdirs.dir_name(CASES[0])).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(PoolconformError, match="symlink"):
        testdirs.export_cases(CASES, out)
    assert sorted(os.listdir(elsewhere)) == ["keep.txt"]
    assert not (out / testdirs.dir_name(CASES[1])).exists()  # refused before writing anything


def test_cli_refusal_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "manifest.json").symlink_to(tmp_path / "outside.json")
    proc = run_cli("export", "--out", str(out))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "outside.json").exists()
