"""The compact record table that results.jsonl is read into: it must give back exactly what
was written (values, types, key order), keep marks written into disagreeing records, and
cost a fraction of the parsed dicts' memory."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from poolconform.expectations import Expectation, apply_expectations
from poolconform.record_table import RecordTable
from poolconform.results import make_record, read_records


def _params(i: int) -> dict:
    return {"op": "MaxPool", "rank": 2, "input_shape": [1, 1, 4 + i, 4 + i], "dtype": "float32", "opset": 22,
            "kernel": [2, 2], "strides": [1, 1], "auto_pad": "NOTSET", "pads": [0, 0, 0, 0], "ceil_mode": False}


def _record(i: int, backend: str, status: str = "pass", **extra: object) -> dict:
    record = make_record(f"case-{i}", backend, status, expected_shape=[1, 1, 3 + i, 3 + i],
                         actual_shape=[1, 1, 3 + i, 3 + i], max_abs_err=0.0, max_rel_err=0.0,
                         max_ulp=float(i % 3), detail="", atol=1e-6 * (i + 1), digest=f"{i:016x}",
                         op="MaxPool", dtype="float32", opset=22, params=_params(i), seconds=0.001 * i)
    record.update(extra)
    return json.loads(json.dumps(record))  # as read back: fresh objects of JSON's types


ODD = [  # what a results.jsonl may hold that the compact form must not change
    {"case": "odd-1", "backend": "a", "status": "pass", "max_ulp": 0, "max_abs_err": -0.0, "note": None},
    {"case": "odd-2", "backend": "a", "status": "pass", "flag": True, "count": 1, "max_ulp": "inf"},
    {"case": "odd-3", "backend": "a", "status": "unsupported", "detail": "x" * 500, "nested": [[1, 2], [3]]},
    {"case": "odd-4", "backend": "a", "status": "pass", "max_rel_err": float("nan"), "shape": [True, 1]},
    {"case": "odd-5", "backend": "a", "status": "pass", "expected": True, "expected_reason": "r"},
    {"case": "odd-6", "backend": "a", "status": "pass", "params": {"op": "MaxPool", "pads": [0, 0.5]}},
    {"case": "odd-7", "backend": "a", "status": "pass", "max_ulp": 1.5},
    {"case": "odd-7", "backend": "b", "status": "pass", "max_ulp": "nan"},  # a string where a figure was
]


def _same(a: dict, b: dict) -> bool:
    """Equal values, the same types (1 is not True, 0 is not 0.0), the same key order."""
    return json.dumps(a) == json.dumps(b) and list(a) == list(b) and repr(a) == repr(b)


def test_records_come_back_exactly_as_written(tmp_path: Path):
    rows = [_record(i, b, s) for i in range(30) for b, s in (("a", "pass"), ("b", "unsupported"),
                                                            ("c", "mismatch"), ("d", "error"))] + ODD
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = read_records(path)
    assert len(table) == len(rows)
    # as written, but for an expectation's marks: reading a file drops them (results.iter_records)
    written = json.loads("[" + ",".join(json.dumps(r) for r in rows) + "]")
    for got, want in zip(table, written):
        want = {k: v for k, v in want.items() if k not in ("expected", "expected_reason")}
        assert _same(got, want), (got, want)
    assert [_same(table[i], table[i]) for i in (0, -1)] == [True, True]
    assert table[-1]["max_ulp"] == "nan" and table[-2]["max_ulp"] == 1.5
    assert table[:120] == rows[:120] and table[2:5] == rows[2:5]  # (odd-4 holds a NaN, unequal to itself)
    assert RecordTable(rows[:120]) == table[:120] and table != rows[:-1]
    with pytest.raises(IndexError):
        table[len(rows)]


def test_a_later_record_replaces_the_earlier_one_in_its_place():
    table = RecordTable([_record(1, "a"), _record(2, "a"), _record(1, "b")])
    table.add(_record(1, "a", "mismatch"))  # compact -> whole
    table.add(_record(2, "a", "pass", max_ulp=7.0))
    table.add(_record(2, "a", "unsupported", detail="again"))  # compact -> compact, other values
    assert [(r["case"], r["backend"], r["status"]) for r in table] == [
        ("case-1", "a", "mismatch"), ("case-2", "a", "unsupported"), ("case-1", "b", "pass")]
    assert table[1]["detail"] == "again" and table[1]["max_ulp"] == 2.0
    table.add(_record(1, "a", "pass", max_ulp=None))  # whole -> compact: the mark of a figure's None
    assert table[0]["status"] == "pass" and table[0]["max_ulp"] is None and len(table) == 3


def test_marks_on_disagreeing_records_stick_and_compact_ones_are_fresh_dicts():
    table = RecordTable([_record(i, "a", "mismatch" if i % 2 else "pass") for i in range(6)])
    fixed = apply_expectations(table, [Expectation("case-1", "a", ("mismatch",), "known", "e.toml", 0, ""),
                                       Expectation("case-2", "a", ("mismatch",), "fixed now", "e.toml", 1, "")])
    assert [r.get("expected") for r in table] == [None, True, None, None, None, None]
    assert table[1]["expected_reason"] == "known" and fixed == [{"case": "case-2", "backend": "a",
                                                                  "reason": "fixed now"}]
    compact = table[0]
    compact["status"] = "mismatch"
    assert table[0]["status"] == "pass" and table[0] is not table[0]
    assert table[1] is table[1]
    assert table[0]["params"] is table[0]["params"]  # shared, as documented: not to be mutated


def test_sorting_orders_by_case_then_backend():
    table = RecordTable([_record(i, b) for i in (3, 1, 2) for b in ("z", "b", "a")])
    table.sort_by_key()
    keys = [(r["case"], r["backend"]) for r in table]
    assert keys == sorted(keys) and len(keys) == 9
    table.add(_record(1, "0"))
    assert [(r["case"], r["backend"]) for r in table][-1] == ("case-1", "0")


def test_a_final_table_keys_pairs_by_hash_and_still_replaces_and_sorts_by_name():
    """A final table keeps no table of case names (its keys hash the pair): a repeat still
    replaces in place, sorting orders by the names, and two pairs whose hashes are made
    equal are both kept (equal hashes are checked on the names)."""
    table = RecordTable([_record(i, b) for i in (3, 1, 2) for b in ("z", "a")], final=True)
    assert table._cases == {} and len(table) == 6
    table.add(_record(1, "z", "mismatch"))
    assert [(r["case"], r["backend"], r["status"]) for r in table][2:4] == [
        ("case-1", "z", "mismatch"), ("case-1", "a", "pass")] and len(table) == 6
    table.sort_by_key()
    keys = [(r["case"], r["backend"]) for r in table]
    assert keys == sorted(keys) and table[0]["status"] == "pass" and table[1]["status"] == "mismatch"
    collided = RecordTable([_record(1, "a"), _record(2, "a")], final=True)
    collided._keys[1] = collided._keys[0]
    collided._settled = False
    assert [r["case"] for r in collided] == ["case-1", "case-2"]


def test_a_case_whose_backends_disagree_on_params_keeps_each_ones_own():
    a, b = _record(1, "a"), _record(1, "b")
    b["params"]["kernel"] = [3, 3]
    table = RecordTable([a, b])
    assert table[0]["params"]["kernel"] == [2, 2] and table[1]["params"]["kernel"] == [3, 3]


def test_the_table_costs_a_fraction_of_the_parsed_records():
    """8 backends of 2,000 cases: the reason the table exists (docs/speed.md)."""
    lines = [json.dumps(_record(i, b)) for i in range(2000) for b in "abcdefgh"]
    tracemalloc.start()
    try:
        parsed = [json.loads(line) for line in lines]
        as_dicts = tracemalloc.get_traced_memory()[0]
        del parsed
        start = tracemalloc.get_traced_memory()[0]
        table = RecordTable(json.loads(line) for line in lines)
        as_table = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert len(table) == 16000
    assert as_table < as_dicts / 3, (as_table / 16000, as_dicts / 16000)


def _spilling(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rows: list[dict], every: int = 7) -> RecordTable:
    """A table that writes a chunk every `every` compact rows to a file in tmp_path."""
    monkeypatch.setattr("poolconform.record_table.SPILL_ROWS", every)
    return RecordTable(rows, spill=tmp_path)


def test_a_spilled_table_gives_back_what_an_in_memory_one_does(monkeypatch, tmp_path: Path):
    rows = [_record(i, b, "mismatch" if i % 5 == 0 and b == "c" else "pass") for i in range(20) for b in "abc"] + ODD
    spilled, kept = _spilling(monkeypatch, tmp_path, rows), RecordTable(rows)
    assert len(spilled._chunks) == len(rows) // 7 and len(spilled._rows) == len(rows) % 7
    assert len(spilled) == len(kept) == len(rows)
    assert all(_same(a, b) for a, b in zip(spilled, kept))
    assert all(_same(spilled[i], kept[i]) for i in [*range(len(rows)), -1, -len(rows)])
    assert all(_same(a, b) for a, b in zip(spilled[3:50:4], kept[3:50:4]))
    with pytest.raises(IndexError):
        spilled[len(rows)]
    # two loops over the same table at once (reads by position: they do not move each other)
    pairs = sum(1 for a in spilled for b in spilled if a["case"] == b["case"])
    assert pairs == sum(1 for a in kept for b in kept if a["case"] == b["case"])
    assert list(tmp_path.iterdir()) == []  # the file has no name: nothing is left behind, even by a crash


def test_marks_stick_on_spilled_disagreements_and_a_repeat_replaces_in_place(monkeypatch, tmp_path: Path):
    rows = [_record(i, "a", "mismatch" if i in (1, 30) else "pass") for i in range(40)]
    table = _spilling(monkeypatch, tmp_path, rows)
    apply_expectations(table, [Expectation("case-1", "a", ("mismatch",), "known", "e.toml", 0, "")])
    assert [r["case"] for r in table if r.get("expected")] == ["case-1"]
    assert table[1] is table[1] and table[1]["expected_reason"] == "known"
    table.add(_record(3, "a", "unsupported", detail="again"))  # a spilled row, repeated
    table.add(_record(40, "a"))
    assert len(table) == 41 and table[3]["status"] == "unsupported" and table[3]["detail"] == "again"
    assert [r["case"] for r in table] == [f"case-{i}" for i in range(41)]
    assert table[1].get("expected") is True  # the mark survived reading the chunks back


def test_a_final_table_marks_as_it_reads_and_spills_disagreements_too(monkeypatch, tmp_path: Path):
    """A run's reports: the marks are applied as records are read (expectations.Marking), so a
    broken backend's disagreements need not stay in memory; the records and marks come back
    the same as marking a kept table in place."""
    from poolconform.expectations import Marking

    rows = [_record(i, b, "mismatch" if b == "c" or i % 9 == 0 else "pass") for i in range(30) for b in "abc"]
    known = [Expectation("case-1", "c", ("mismatch",), "known", "e.toml", 1, "l")]
    kept = RecordTable(json.loads(json.dumps(r)) for r in rows)
    fixed_kept = apply_expectations(kept, known)
    marking = Marking(known)
    monkeypatch.setattr("poolconform.record_table.SPILL_ROWS", 7)
    final = RecordTable((marking.mark(json.loads(json.dumps(r))) for r in rows), spill=tmp_path, final=True)
    assert marking.fixed() == fixed_kept == []
    assert final._wholes == [] and len(final._rows) < 7  # every disagreement went to the file
    assert all(_same(a, b) for a, b in zip(final, kept))
    assert [(r["case"], r["expected_reason"], r["expected_link"]) for r in final if r.get("expected")] == [
        ("case-1", "known", "l")]


def test_sorting_a_spilled_table_reads_it_back(monkeypatch, tmp_path: Path):
    table = _spilling(monkeypatch, tmp_path, [_record(i, b) for i in (3, 1, 2, 5, 4) for b in ("z", "b", "a")])
    table.sort_by_key()
    keys = [(r["case"], r["backend"]) for r in table]
    assert keys == sorted(keys) and len(keys) == 15


def test_a_folder_that_cannot_hold_the_file_keeps_every_record_in_memory(monkeypatch, tmp_path: Path):
    rows = [_record(i, "a") for i in range(30)]
    table = _spilling(monkeypatch, tmp_path / "gone", rows)
    assert table._chunks == [] and len(table) == 30 and list(table) == rows
    # spill=True: the system's temporary folder (a run without --out), here one that is gone
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "no-tmp"))
    table = RecordTable(rows, spill=True)
    assert table._chunks == [] and list(table) == rows
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    table = RecordTable(rows, spill=True)
    assert len(table._chunks) == 4 and list(table) == rows


_MEASURE = r"""
import json, sys, tracemalloc
from pathlib import Path
sys.path[:0] = [sys.argv[2], sys.argv[3]]
import poolconform.record_table as record_table
from test_record_table import _record
record_table.SPILL_ROWS = 2000
lines = [json.dumps(_record(i, b)) for i in range(4000) for b in "abcdefgh"]
warm = record_table.RecordTable((json.loads(line) for line in lines[:4100]), spill=Path(sys.argv[1]))
del warm  # first uses (a temporary file, pickle) are not what a record costs
tracemalloc.start()
start = tracemalloc.get_traced_memory()[0]
held = record_table.RecordTable((json.loads(line) for line in lines), spill=Path(sys.argv[1]))
spilled = tracemalloc.get_traced_memory()[0] - start
start = tracemalloc.get_traced_memory()[0]
final = record_table.RecordTable((json.loads(line) for line in lines), spill=Path(sys.argv[1]), final=True)
spilled_final = tracemalloc.get_traced_memory()[0] - start
start = tracemalloc.get_traced_memory()[0]
kept = record_table.RecordTable(json.loads(line) for line in lines)
in_memory = tracemalloc.get_traced_memory()[0] - start
assert len(held) == len(kept) == len(final) == 32000 and held[31999] == kept[31999] == final[31999]
print(spilled, spilled_final, in_memory)
"""


def test_a_spilled_table_holds_a_bounded_part_of_its_records(tmp_path: Path):
    """What a run's reports read back stays in a file: memory for 8 bytes of key a record,
    a case's number (none in a final table, as a run's is), and at most SPILL_ROWS rows
    (docs/speed.md). Measured in a fresh
    interpreter: in a long test session, what earlier tests left (caches filled lazily,
    garbage) moved the figure by a few MB on Python 3.13."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path), str(root), str(root / "tests")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    spilled, spilled_final, in_memory = (int(v) for v in done.stdout.split())
    print(spilled, spilled_final, in_memory)
    assert spilled < in_memory / 5, (spilled / 32000, in_memory / 32000)
    assert spilled_final < spilled, (spilled_final / 32000, spilled / 32000)


def test_a_chunk_that_cannot_be_read_back_is_one_line_not_a_traceback(monkeypatch, tmp_path: Path):
    from poolconform.errors import PoolconformError

    table = _spilling(monkeypatch, tmp_path, [_record(i, "a") for i in range(20)])

    def failing(*_: object) -> bytes:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("poolconform.record_table.os.pread", failing)
    with pytest.raises(PoolconformError, match="cannot read back the records .* results.jsonl holds every record"):
        list(table)
    monkeypatch.setattr("poolconform.record_table.os.pread", lambda fd, size, offset: b"\x80")  # a short read
    with pytest.raises(PoolconformError, match="read 1 of"):
        table[0]
