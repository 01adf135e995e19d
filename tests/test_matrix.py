"""Matrix files: expansion, what the numbers mean, drop counting, clear errors."""

import pytest

from poolconform.errors import MatrixError
from poolconform.matrix import expand, load_matrix, load_toml


def test_default_matrix_is_broad_and_holds_the_golden_cases():
    expansion = load_matrix()
    cases = expansion.cases
    assert len(cases) >= 300
    ops = {c.op for c in cases}
    assert ops == {"MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"}
    assert {c.kernel[0] for c in cases if c.kernel} == {1, 2, 3, 4, 5}
    assert {c.strides[0] for c in cases if c.strides} == {1, 2, 3}
    assert len({c.spatial[0] for c in cases}) >= 6
    assert {c.pads[0] for c in cases if c.pads} == {0, 1}
    assert sum(c.generator == "seed" for c in cases) == 4
    assert len(set(cases)) == len(cases)  # no duplicates
    assert sum(expansion.dropped.values()) > 0


def test_numbers_broadcast_and_nested_lists_are_one_value():
    e = expand({"ops": ["MaxPool"], "kernel": [[2, 3]], "input_size": [[6, 7]], "pads": [[0, 0, 1, 1]]})
    (case,) = e.cases
    assert case.kernel == (2, 3) and case.spatial == (6, 7) and case.pads == (0, 0, 1, 1)
    e = expand({"ops": ["MaxPool"], "kernel": 3, "pads": [0, 1], "input_size": 8})
    assert sorted(c.pads for c in e.cases) == [(0, 0, 0, 0), (1, 1, 1, 1)]
    assert all(c.kernel == (3, 3) for c in e.cases)


def test_impossible_combinations_are_dropped_and_counted():
    e = expand({"ops": ["MaxPool"], "kernel": [1, 3, 9], "input_size": 5, "pads": [0, 1]})
    assert len(e.cases) == 3  # k1p0, k3p0, k3p1
    assert e.dropped["pad not smaller than the window"] == 1
    assert e.dropped["kernel larger than padded input"] == 2
    assert "dropped 3 combinations" in e.dropped_summary()


def test_attributes_an_op_ignores_collapse():
    e = expand({"ops": ["GlobalMaxPool", "MaxPool"], "kernel": [1, 2, 3], "input_size": 6,
                "count_include_pad": [False, True]})
    assert sum(c.op == "GlobalMaxPool" for c in e.cases) == 1
    assert sum(c.op == "MaxPool" for c in e.cases) == 3


@pytest.mark.parametrize(
    "table, message",
    [
        ({"kernal": 3}, "unknown matrix key 'kernal'; did you mean 'kernel'?"),
        ({"ops": ["MaxPool", "MinPool"]}, "unknown op 'MinPool'"),
        ({"kernel": 0}, "must be >= 1"),
        ({"stride": -1}, "must be >= 1"),
        ({"kernel": "3"}, "must be an integer"),
        ({"ceil_mode": 1}, "must be true or false"),
        ({"dtype": "float8"}, "unknown dtype 'float8'"),
        ({"rank": 4}, "rank must be 1, 2 or 3"),
        ({"kernel": []}, "empty list"),
    ],
)
def test_bad_values_are_one_clear_error(table, message):
    with pytest.raises(MatrixError, match=message.replace("?", r"\?")):
        expand(table)


def test_toml_and_pyproject_sources(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text("[matrix]\nops = 'MaxPool'\nkernel = [2, 3]\n")
    assert len(expand(load_toml(f)).cases) == 2
    py = tmp_path / "pyproject.toml"
    py.write_text("[project]\nname='x'\n[tool.poolconform.matrix]\nops = ['AveragePool']\nkernel = 2\n")
    assert [c.op for c in expand(load_toml(py)).cases] == ["AveragePool"]
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(MatrixError, match="is not valid TOML"):
        load_toml(bad)
    nomatrix = tmp_path / "nomatrix.toml"
    nomatrix.write_text("[other]\na = 1\n")
    with pytest.raises(MatrixError, match=r"has no \[matrix\] table"):
        load_toml(nomatrix)


def test_every_shipped_matrix_file_expands_within_the_limits():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parent.parent / "matrices").glob("*.toml"))
    assert len(files) >= 5
    for path in files:
        expansion = expand(load_toml(path))
        assert 0 < len(expansion.cases) <= 3000, (path.name, len(expansion.cases))
