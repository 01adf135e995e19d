"""Matrix files: expansion, what the numbers mean, drop counting, clear errors."""

from pathlib import Path

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
        ({"rank": 4}, "rank must be 1, 2 or 3, got 4"),
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
        expansion = load_matrix(path)
        assert 0 < len(expansion.cases) <= 3000, (path.name, len(expansion.cases))


@pytest.mark.parametrize(
    "table, message",
    [
        ({"generator": "nromal"}, "unknown generator 'nromal' (did you mean 'normal'?); allowed: "),
        ({"generator": ["normal", "NaN"]}, "unknown generator 'NaN' (did you mean 'nan'?)"),
        ({"storage_order": 2}, "storage_order must be 0 or 1, got 2"),
        ({"p": -1, "ops": "LpPool"}, "p must be >= 1, got -1"),
        ({"p": 0}, "p must be >= 1, got 0"),  # refused even where no op reads p: it is a typo
        ({"ops": "MaxPol"}, "unknown op 'MaxPol' (did you mean 'MaxPool'?)"),
        ({"auto_pad": "same_upper"}, "unknown auto_pad 'same_upper' (did you mean 'SAME_UPPER'?)"),
        ({"opset": 2}, "opset must be one the exporter can write (1, 5-"),
        ({"opset": [22, 99]}, "got 99"),
        ({"opset": 0}, "got 0"),
    ],
)
def test_typos_in_fixed_vocabularies_are_refused_not_dropped(table, message):
    """A typo'd name or out-of-range number is an error, not an 'impossible combination'."""
    with pytest.raises(MatrixError) as info:
        expand(table)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_matrix_accepts_exactly_the_opsets_the_exporter_writes():
    """One source of truth: every accepted opset exports a checked model, every other is refused."""
    from poolconform.onnx_export import build_model, exportable_opsets

    accepted = exportable_opsets()
    assert 1 in accepted and 22 in accepted and not {2, 3, 4} & set(accepted)
    for opset in range(0, max(accepted) + 3):
        table = {"ops": "MaxPool", "opset": opset}
        if opset in accepted:
            cases = expand(table).cases
            model = build_model(cases[0])  # raises if the exporter cannot write it
            assert model.opset_import[0].version == opset
        else:
            with pytest.raises(MatrixError, match=f"got {opset}"):
                expand(table)


def test_impossible_combinations_of_valid_values_are_still_dropped_and_counted():
    expansion = expand({"ops": "MaxPool", "dtype": ["float32", "bfloat16"], "opset": [12, 22]})
    assert len(expansion.cases) == 3  # bfloat16 MaxPool arrives at opset 22
    assert expansion.dropped == {"dtype not allowed by the op at this opset": 1}


@pytest.mark.parametrize("depth", [200, 5000])  # 200 parses on tomllib and on 3.10's tomli
def test_deeply_nested_arrays_are_one_line(tmp_path, depth):
    """tomllib recurses per level (RecursionError); a shallower one parses but must not
    become a huge message either."""
    path = tmp_path / "deep.toml"
    path.write_text("[matrix]\nkernel = " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(MatrixError) as info:
        expand(load_toml(path))
    text = str(info.value)
    assert "\n" not in text and len(text) < 300
    assert ("nested too deeply" in text) if depth == 5000 else ("must be a list of integers" in text)


def test_several_matrix_tables_expand_to_the_union_of_their_cases(tmp_path):
    from poolconform.matrix import load_matrix

    path = tmp_path / "m.toml"
    path.write_text('[[matrix]]\nops = "MaxPool"\nkernel = [2, 3]\ninput_size = 6\n'
                    '[[matrix]]\nops = "MaxPool"\nkernel = 3\ninput_size = 6\n'  # a duplicate of table 1's k3
                    '[[matrix]]\nops = "AveragePool"\nkernel = 2\ninput_size = 6\n')
    ids = [c.id for c in load_matrix(path).cases]
    assert ids == ["MaxPool-2d-k2-s1-p0-f32-n6", "MaxPool-2d-k3-s1-p0-f32-n6", "AveragePool-2d-k2-s1-p0-f32-n6"]


def test_an_error_in_one_of_several_tables_names_the_table(tmp_path):
    from poolconform.errors import PoolconformError
    from poolconform.matrix import load_matrix

    path = tmp_path / "m.toml"
    path.write_text('[[matrix]]\nops = "MaxPool"\nkernel = 2\n[[matrix]]\nops = "MaxPol"\nkernel = 2\n')
    with pytest.raises(PoolconformError, match=r"\[\[matrix\]\] table 2: .*MaxPol"):
        load_matrix(path)


def test_full_matrix_reaches_every_axis_including_contexts_and_quantization():
    from poolconform.matrix import load_matrix

    cases = load_matrix(Path(__file__).resolve().parent.parent / "matrices" / "full.toml").cases
    contexts = {c.context for c in cases}
    assert {"single", "pad", "dynamic", "unpool"} <= contexts
    assert any(c.quant for c in cases) and {"uint8", "int8"} <= {c.dtype for c in cases if c.quant}
    assert {c.op for c in cases} >= {"MaxPool", "AveragePool", "LpPool", "GlobalMaxPool", "GlobalAveragePool",
                                     "GlobalLpPool", "AdaptiveAveragePool", "AdaptiveMaxPool"}


def test_repeated_combinations_are_validated_once_with_the_same_outcome(monkeypatch):
    """Expansion answers a repeated make_case call from memory (full.toml: 16,204 calls, 2,954
    distinct): the cases, their order and every drop category must be what validating each
    call gives."""
    from pathlib import Path

    from poolconform import matrix as matrix_module

    tables = matrix_module.load_tables(Path(__file__).parent.parent / "matrices" / "full.toml")
    fast = matrix_module.expand_all(tables)
    calls = []

    def every_time():
        def make(op, shape, **kwargs):
            calls.append(op)
            return matrix_module.make_case(op, shape, **kwargs)
        return make

    monkeypatch.setattr(matrix_module, "_memoized_make_case", every_time)
    slow = matrix_module.expand_all(tables)
    assert len(calls) > 5 * len(fast.cases)  # the file does repeat itself
    assert [c.id for c in fast.cases] == [c.id for c in slow.cases] and len(fast.cases) == 2389
    assert fast.dropped == slow.dropped and fast.combinations == slow.combinations


def test_the_expansion_memo_forgets_when_full_and_still_gives_the_same_cases(monkeypatch):
    """A memo of at most MEMO_ENTRIES: when full it is cleared, so a large matrix that
    repeats nothing does not hold a key per combination; what comes out is unchanged."""
    from pathlib import Path

    from poolconform import matrix as matrix_module

    tables = matrix_module.load_tables(Path(__file__).parent.parent / "matrices" / "full.toml")
    whole = matrix_module.expand_all(tables)
    real, made = matrix_module.make_case, []

    def counting(op, shape, **kwargs):
        made.append(op)
        return real(op, shape, **kwargs)

    monkeypatch.setattr(matrix_module, "make_case", counting)
    monkeypatch.setattr(matrix_module, "MEMO_ENTRIES", 50)
    small = matrix_module.expand_all(tables)
    assert [c.id for c in small.cases] == [c.id for c in whole.cases]
    assert small.dropped == whole.dropped and small.combinations == whole.combinations
    assert len(made) > 2954  # forgotten entries are validated again
    assert len(made) < small.combinations  # repeats within the memory's reach are still answered from it
