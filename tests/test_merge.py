"""`poolconform merge`: shards 1..N joined equal the unsharded run (records and summary)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poolconform.cli import main
from poolconform.results import read_records

pytest.importorskip("onnxruntime", reason="the runs use onnxruntime-cpu")

MATRIX = """[matrix]
ops = ["AveragePool", "MaxPool", "GlobalMaxPool"]
kernel = [2, 3]
stride = 3
input_size = 7
ceil_mode = [false, true]
"""
#: Fields that measure time, or say where a summary came from, not what was found.
TIMING = ("seconds",)
PROVENANCE = ("seconds", "shard", "merged")


def content(out: Path) -> tuple[list[dict], dict]:
    records = sorted(({k: v for k, v in r.items() if k not in TIMING} for r in read_records(out / "results.jsonl")),
                     key=lambda r: (r["case"], r["backend"]))
    summary = json.loads((out / "summary.json").read_text())
    return records, {k: v for k, v in summary.items() if k not in PROVENANCE}


def test_merged_shards_equal_the_full_run(tmp_path: Path) -> None:
    matrix = tmp_path / "m.toml"
    matrix.write_text(MATRIX)
    common = ["run", "--matrix", str(matrix), "--backends", "onnxruntime-cpu,onnx-reference", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "full")]) == 1
    for k in (1, 2, 3):
        main([*common, "--out", str(tmp_path / f"shard{k}"), "--shard", f"{k}/3"])
    sizes = [len(read_records(tmp_path / f"shard{k}" / "results.jsonl")) for k in (1, 2, 3)]
    assert all(sizes) and sum(sizes) == len(read_records(tmp_path / "full" / "results.jsonl"))
    # a shard given twice is deduplicated by (case, backend)
    dirs = [str(tmp_path / f"shard{k}") for k in (3, 1, 2, 1)]
    assert main(["merge", *dirs, "--out", str(tmp_path / "merged"), "--quiet"]) == 1
    full_records, full_summary = content(tmp_path / "full")
    merged_records, merged_summary = content(tmp_path / "merged")
    assert merged_records == full_records
    assert merged_summary == full_summary
    lines = [json.loads(line) for line in (tmp_path / "merged" / "results.jsonl").read_text().splitlines()]
    assert [(r["case"], r["backend"]) for r in lines] == sorted((r["case"], r["backend"]) for r in lines)
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())["merged"]
    assert sorted(merged["shards"]) == ["1/3", "1/3", "2/3", "3/3"]
    for name in ("report.html", "junit.xml", "summary.md"):
        assert (tmp_path / "merged" / name).stat().st_size > 0


def test_merge_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from poolconform.cli import main as cli

    assert cli(["merge", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and "missing" in err
    (tmp_path / "empty").mkdir()
    assert cli(["merge", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no results.jsonl" in err
