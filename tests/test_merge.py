"""`poolconform merge`: shards 1..N joined equal the unsharded run (records and summary)."""

from __future__ import annotations

import json
import shutil
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
    # the same folder given twice is one shard
    dirs = [str(tmp_path / f"shard{k}") for k in (3, 1, 2, 1)]
    assert main(["merge", *dirs, "--out", str(tmp_path / "merged"), "--quiet"]) == 1
    full_records, full_summary = content(tmp_path / "full")
    merged_records, merged_summary = content(tmp_path / "merged")
    assert merged_records == full_records
    assert merged_summary == full_summary
    lines = [json.loads(line) for line in (tmp_path / "merged" / "results.jsonl").read_text().splitlines()]
    assert [(r["case"], r["backend"]) for r in lines] == sorted((r["case"], r["backend"]) for r in lines)
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())["merged"]
    assert sorted(merged["shards"]) == ["1/3", "2/3", "3/3"]
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


# --------------------------------------------------------------------------- completeness
# A merge must prove it holds one whole run: every K of one N, one matrix, every case of
# each shard on every backend that ran. Anything less is exit 2 naming what is missing.

SMALL = """[matrix]
ops = ["MaxPool"]
kernel = [2, 3]
stride = 1
input_size = 5
"""
OTHER = SMALL.replace("input_size = 5", "input_size = 6")
N = 4


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("poolconform: error: ")
    return proc.stderr


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Shards 1..4 of SMALL (2 cases, so at least two are empty), the full run, and shard 1/2 of OTHER."""
    root = tmp_path_factory.mktemp("shards")
    (root / "small.toml").write_text(SMALL)
    (root / "other.toml").write_text(OTHER)
    common = ["--backends", "onnxruntime-cpu", "--quiet"]
    found = {}
    for k in range(1, N + 1):
        out = root / f"s{k}"
        assert main(["run", "--matrix", str(root / "small.toml"), *common, "--shard", f"{k}/{N}", "--out", str(out)]) == 0
        found[f"{k}"] = out
    assert main(["run", "--matrix", str(root / "small.toml"), *common, "--out", str(root / "full")]) == 0
    found["full"] = root / "full"
    assert main(["run", "--matrix", str(root / "other.toml"), *common, "--shard", "1/2", "--out", str(root / "o1")]) in (0, 1)
    found["other"] = root / "o1"
    return found


def _sizes(shards: dict[str, Path]) -> dict[int, int]:
    return {k: len(read_records(shards[str(k)] / "results.jsonl")) for k in range(1, N + 1)}


def test_complete_set_with_empty_shards_equals_the_full_run(shards: dict[str, Path], tmp_path: Path) -> None:
    from conftest import run_cli

    sizes = _sizes(shards)
    assert sum(sizes.values()) == 2 and 0 in sizes.values()  # the set has empty shards
    proc = run_cli("merge", *(str(shards[str(k)]) for k in range(1, N + 1)), "--out", str(tmp_path / "m"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert content(tmp_path / "m") == content(shards["full"])
    assert "partial" not in json.loads((tmp_path / "m" / "summary.json").read_text())


def test_one_shard_of_four_exits_2_naming_the_missing_shards(shards: dict[str, Path], tmp_path: Path) -> None:
    from conftest import run_cli

    nonempty = next(k for k, n in _sizes(shards).items() if n)
    err = _one_line_error(run_cli("merge", str(shards[str(nonempty)]), "--out", str(tmp_path / "m")))
    missing = ", ".join(f"{k}/{N}" for k in range(1, N + 1) if k != nonempty)
    assert f"missing shards {missing}" in err
    assert not (tmp_path / "m").exists()  # nothing written


def test_an_empty_shard_alone_is_refused(shards: dict[str, Path], tmp_path: Path) -> None:
    from conftest import run_cli

    empty = next(k for k, n in _sizes(shards).items() if not n)
    assert "missing shards" in _one_line_error(run_cli("merge", str(shards[str(empty)]), "--out", str(tmp_path / "m")))


def test_shards_of_different_matrices_exit_2(shards: dict[str, Path], tmp_path: Path) -> None:
    from conftest import run_cli

    dirs = [str(shards[str(k)]) for k in range(1, N + 1)] + [str(shards["other"])]
    err = _one_line_error(run_cli("merge", *dirs, "--out", str(tmp_path / "m")))
    assert "different runs" in err and "matrices" in err


def test_a_shard_that_lost_records_is_refused(shards: dict[str, Path], tmp_path: Path) -> None:
    from conftest import run_cli

    dirs = []
    for k, size in _sizes(shards).items():
        folder = tmp_path / f"s{k}"
        shutil.copytree(shards[str(k)], folder)
        if size:
            cut = k
            lines = (folder / "results.jsonl").read_text().splitlines(keepends=True)
            (folder / "results.jsonl").write_text("".join(lines[:-1]))  # an interrupted or truncated shard
        dirs.append(str(folder))
    err = _one_line_error(run_cli("merge", *dirs, "--out", str(tmp_path / "m")))
    assert f"shard {cut}/{N} holds" in err and "onnxruntime-cpu" in err


def test_a_shard_relabelled_as_another_is_refused(shards: dict[str, Path], tmp_path: Path) -> None:
    """Copying shard K over a missing shard J (and editing its K) must not fill the hole."""
    from conftest import run_cli

    sizes = _sizes(shards)
    full, empty = next(k for k, n in sizes.items() if n), next(k for k, n in sizes.items() if not n)
    dirs = []
    for k in range(1, N + 1):
        folder = tmp_path / f"s{k}"
        shutil.copytree(shards[str(full if k == empty else k)], folder)
        if k == empty:
            summary = json.loads((folder / "summary.json").read_text())
            summary["sharding"]["k"] = k
            (folder / "summary.json").write_text(json.dumps(summary))
        dirs.append(str(folder))
    err = _one_line_error(run_cli("merge", *dirs, "--out", str(tmp_path / "m")))
    assert "different cases" in err or "of other shards" in err or "add up" in err


def test_allow_partial_writes_a_partial_report_that_never_exits_0(shards: dict[str, Path], tmp_path: Path) -> None:
    from conftest import run_cli

    nonempty = next(k for k, n in _sizes(shards).items() if n)
    out = tmp_path / "m"
    proc = run_cli("merge", str(shards[str(nonempty)]), "--out", str(out), "--allow-partial", "--quiet")
    assert proc.returncode == 1, proc.stderr  # every record passes, yet a partial report is not a green
    assert "PARTIAL" in proc.stderr and "missing shards" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unexpected"] == 0 and summary["exit_status"] == 1
    assert any("missing shards" in m for m in summary["partial"]["missing"])
    assert "PARTIAL" in (out / "summary.md").read_text().splitlines()[2]
    assert "PARTIAL" in (out / "report.html").read_text()
    loud = run_cli("merge", str(shards[str(nonempty)]), "--out", str(tmp_path / "m2"), "--allow-partial")
    assert loud.returncode == 1 and "PARTIAL" in loud.stdout and "exit 0" not in loud.stdout


def test_allow_partial_does_not_mix_matrices(shards: dict[str, Path], tmp_path: Path) -> None:
    from conftest import run_cli

    dirs = [str(shards["1"]), str(shards["other"])]
    assert "different runs" in _one_line_error(run_cli("merge", *dirs, "--out", str(tmp_path / "m"), "--allow-partial"))


def test_an_unsharded_run_is_not_a_shard(shards: dict[str, Path], tmp_path: Path) -> None:
    from conftest import run_cli

    assert "no shard identity" in _one_line_error(run_cli("merge", str(shards["full"]), "--out", str(tmp_path / "m")))


@pytest.mark.parametrize("edit, words", [
    (lambda s: [s], "must hold a JSON object"),
    (lambda s: s | {"backends": ["onnxruntime-cpu"]}, "'backends' must be an object"),
    (lambda s: s | {"backends": {"onnxruntime-cpu": {"restarts": "2"}}}, "restarts must be an integer"),
    (lambda s: s | {"dropped": {"x": "1"}}, "'dropped' must be an object of integers"),
    (lambda s: s | {"seconds": "fast"}, "'seconds' must be a number"),
    (lambda s: s | {"sharding": {**s["sharding"], "k": "1"}}, "is not a shard identity"),
    (lambda s: s | {"sharding": {**s["sharding"], "k": 9}}, "is not a shard identity"),
    (lambda s: s | {"sharding": "1/4"}, "is not a shard identity"),
])
def test_a_summary_with_a_wrong_type_is_one_line(shards: dict[str, Path], tmp_path: Path, edit, words) -> None:
    from conftest import run_cli

    folder = tmp_path / "s1"
    shutil.copytree(shards["1"], folder)
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps(edit(summary)))
    assert words in _one_line_error(run_cli("merge", str(folder), "--out", str(tmp_path / "m")))


def test_a_deeply_nested_summary_is_one_line(shards: dict[str, Path], tmp_path: Path) -> None:
    from conftest import run_cli

    folder = tmp_path / "s1"
    shutil.copytree(shards["1"], folder)
    (folder / "summary.json").write_text("[" * 5000 + "]" * 5000)
    assert "summary.json" in _one_line_error(run_cli("merge", str(folder), "--out", str(tmp_path / "m")))


def test_out_must_be_a_new_folder(shards: dict[str, Path], tmp_path: Path) -> None:
    from conftest import run_cli

    dirs = [str(shards[str(k)]) for k in range(1, N + 1)]
    (tmp_path / "file").write_text("keep me")
    assert "is a file" in _one_line_error(run_cli("merge", *dirs, "--out", str(tmp_path / "file")))
    assert (tmp_path / "file").read_text() == "keep me"
    before = (shards["1"] / "results.jsonl").read_bytes()
    assert "one of the shard folders" in _one_line_error(run_cli("merge", *dirs, "--out", dirs[0]))
    assert (shards["1"] / "results.jsonl").read_bytes() == before


def test_forged_empty_identities_do_not_make_a_green(shards: dict[str, Path], tmp_path: Path) -> None:
    """Every shard edited to claim no case and hold no record: the cases no longer add up."""
    from conftest import run_cli

    dirs = []
    for k in range(1, N + 1):
        folder = tmp_path / f"s{k}"
        shutil.copytree(shards[str(k)], folder)
        summary = json.loads((folder / "summary.json").read_text())
        summary["sharding"].update(cases=0, cases_digest=json.loads(
            (shards[str(next(j for j, n in _sizes(shards).items() if not n))] / "summary.json").read_text()
        )["sharding"]["cases_digest"])
        (folder / "summary.json").write_text(json.dumps(summary))
        (folder / "results.jsonl").write_text("")
        dirs.append(str(folder))
    assert "add up" in _one_line_error(run_cli("merge", *dirs, "--out", str(tmp_path / "m")))


# --------------------------------------------------------------------------- the --out folder
# merge writes --out under the same protection as `run` (README "Safe --out folders"):
# an exclusive lock naming its holder, no writes through symlinked names.

def test_merge_into_a_locked_out_exits_2_naming_the_holder(shards: dict[str, Path], tmp_path: Path) -> None:
    import os

    from conftest import run_cli
    from poolconform.outdir import OutLock

    dirs = [str(shards[str(k)]) for k in range(1, N + 1)]
    out = tmp_path / "busy"
    out.mkdir()
    lock = OutLock(out)  # this test process plays a run (or merge) still writing there
    try:
        err = _one_line_error(run_cli("merge", *dirs, "--out", str(out), "--quiet"))
        assert "in use by another poolconform run" in err and f"pid {os.getpid()}" in err
        assert sorted(p.name for p in out.iterdir()) == [".poolconform.lock"]  # it wrote nothing
    finally:
        lock.release()
    proc = run_cli("merge", *dirs, "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr  # the lock went with its holder
    assert content(out) == content(shards["full"])


def test_a_shard_a_run_is_still_writing_is_refused(shards: dict[str, Path], tmp_path: Path) -> None:
    """A `run --resume` still appending to a shard's results.jsonl holds that folder's lock:
    merge refuses in one line naming it (it would read a half-written shard), and merges
    once the run is gone. While merge reads, the shard is locked against a run in turn."""
    import os

    from conftest import run_cli
    from poolconform import outdir
    from poolconform.errors import PoolconformError

    dirs = [str(shards[str(k)]) for k in range(1, N + 1)]
    lock = outdir.OutLock(shards["2"])  # this process plays the run resuming shard 2
    try:
        err = _one_line_error(run_cli("merge", *dirs, "--out", str(tmp_path / "m"), "--quiet"))
        assert "is being written by a poolconform run" in err and f"pid {os.getpid()}" in err
        assert not (tmp_path / "m").exists()  # refused before writing anything
    finally:
        lock.release()
    with outdir.reading(shards["2"]):
        with pytest.raises(PoolconformError, match="in use by another poolconform run"):
            outdir.OutLock(shards["2"])
    proc = run_cli("merge", *dirs, "--out", str(tmp_path / "m"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert content(tmp_path / "m") == content(shards["full"])


def test_merge_holds_the_lock_a_run_respects(shards: dict[str, Path], tmp_path: Path) -> None:
    """The lock file names the merge: while it writes, a run into the same --out is refused."""
    from conftest import run_cli

    dirs = [str(shards[str(k)]) for k in range(1, N + 1)]
    assert run_cli("merge", *dirs, "--out", str(tmp_path / "m"), "--quiet").returncode == 0
    assert " merge " in (tmp_path / "m" / ".poolconform.lock").read_text()


@pytest.mark.parametrize("name", ["results.jsonl", "summary.json", "report.html"])
def test_merge_refuses_symlinked_names_in_out(shards: dict[str, Path], tmp_path: Path, name: str) -> None:
    from conftest import run_cli

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "m"
    out.mkdir()
    (out / name).symlink_to(victim)
    dirs = [str(shards[str(k)]) for k in range(1, N + 1)]
    assert "is a symlink" in _one_line_error(run_cli("merge", *dirs, "--out", str(out)))
    assert victim.read_text() == "precious\n" and (out / name).is_symlink()


def test_two_folders_of_one_shard_are_refused_whichever_comes_first(tmp_path: Path) -> None:
    """A re-run shard's folder beside the first: merging both would let the later folder's
    records win, so a copy whose record says pass could hide the other's mismatch."""
    matrix = tmp_path / "m.toml"
    matrix.write_text(MATRIX)
    common = ["run", "--matrix", str(matrix), "--backends", "onnx-reference", "--quiet"]
    for k in (1, 2):
        main([*common, "--out", str(tmp_path / f"s{k}"), "--shard", f"{k}/2"])
    shutil.copytree(tmp_path / "s1", tmp_path / "s1-again")
    lines = (tmp_path / "s1-again" / "results.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace('"status": "pass"', '"status": "mismatch"')
    (tmp_path / "s1-again" / "results.jsonl").write_text("\n".join(lines) + "\n")
    for order in (("s1", "s1-again", "s2"), ("s1-again", "s1", "s2")):
        assert main(["merge", *(str(tmp_path / d) for d in order), "--out", str(tmp_path / "m"), "--quiet"]) == 2
    assert not (tmp_path / "m").exists()


def test_merge_writes_the_records_without_the_expectations_marks(tmp_path: Path) -> None:
    """`merge --expectations` marks records for its reports; its results.jsonl holds what an
    unsharded run's does, so a later `diff` cannot read the marks as declared."""
    matrix = tmp_path / "m.toml"
    matrix.write_text(MATRIX)
    expectations = tmp_path / "e.toml"
    expectations.write_text('[[expect]]\ncase = "*"\nbackend = "onnx-reference"\nreason = "known"\n')
    common = ["run", "--matrix", str(matrix), "--backends", "onnx-reference", "--quiet"]
    for k in (1, 2):
        main([*common, "--out", str(tmp_path / f"s{k}"), "--shard", f"{k}/2"])
    status = main(["merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "m"),
                   "--expectations", str(expectations), "--quiet"])
    assert status == 0  # onnx-reference's ceil_mode disagreement is declared
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["counts"]["mismatch"] >= 1 and summary["unexpected"] == 0
    text = (tmp_path / "m" / "results.jsonl").read_text()
    assert '"status": "mismatch"' in text and '"expected"' not in text
