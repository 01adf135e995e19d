"""poolconform's backend cache: onnx-reference outputs replayed only for the same bytes."""

from __future__ import annotations

import numpy as np
import pytest

from poolconform import backend_cache
from poolconform.backends.onnx_reference import REPLAYED_NOTE, OnnxReference, OutputCache
from poolconform.inputs import make_inputs
from poolconform.onnx_export import model_bytes
from poolconform.validation import make_case

pytest.importorskip("onnx.reference", reason="onnx-reference backend")

CASES = [
    make_case("AveragePool", (2, 3, 7, 7), kernel=3, strides=2, pads=1, ceil_mode=True),  # a known finding
    make_case("MaxPool", (1, 2, 9, 8), kernel=2, strides=1, with_indices=True),
]


def _fresh(monkeypatch, folder, off: str = "") -> OnnxReference:
    monkeypatch.setenv("POOLCONFORM_CACHE_DIR", str(folder))
    monkeypatch.setenv("POOLCONFORM_NO_CACHE", off)
    return OnnxReference()


def _entries(folder) -> list:
    return sorted((folder / "onnx-reference").glob("*/*.bin"))


def test_a_later_run_replays_the_same_outputs_and_says_so(monkeypatch, tmp_path):
    first = _fresh(monkeypatch, tmp_path)
    computed = []
    for case in CASES:
        computed.append(first.run(case, make_inputs(case)))
        assert first.note(case) is None
    assert len(_entries(tmp_path)) == len(CASES)
    later = _fresh(monkeypatch, tmp_path)
    for case, want in zip(CASES, computed):
        got = later.run(case, make_inputs(case))
        assert later.note(case) == REPLAYED_NOTE
        assert [(y.dtype, y.shape) for y in got] == [(y.dtype, y.shape) for y in want]
        assert all(np.array_equal(g, w) for g, w in zip(got, want))


def test_other_input_bytes_or_another_onnx_release_never_replay(monkeypatch, tmp_path):
    import onnx

    case = CASES[0]
    x = make_inputs(case)
    _fresh(monkeypatch, tmp_path).run(case, x)
    other = [x[0].copy()]
    other[0].flat[0] += 1.0
    backend = _fresh(monkeypatch, tmp_path)
    backend.run(case, other)
    assert backend.note(case) is None  # computed: one element differs
    key = OutputCache.key(model_bytes(case), x)
    monkeypatch.setattr(onnx, "__version__", onnx.__version__ + ".other")
    assert OutputCache.key(model_bytes(case), x) != key


def test_an_edited_entry_is_recomputed_never_replayed(monkeypatch, tmp_path):
    case = CASES[0]
    want = _fresh(monkeypatch, tmp_path).run(case, make_inputs(case))
    (entry,) = _entries(tmp_path)
    header, payload = entry.read_bytes().split(b"\n", 1)
    entry.write_bytes(header + b"\n" + np.zeros(len(payload) // 4, np.float32).tobytes())  # "all zeros"
    again = _fresh(monkeypatch, tmp_path)
    got = again.run(case, make_inputs(case))
    assert again.note(case) is None
    assert np.array_equal(got[0], want[0])
    assert entry.read_bytes().split(b"\n", 1)[1] == payload


def test_the_off_switch_and_an_unwritable_cache_mean_no_cache(monkeypatch, tmp_path):
    case = CASES[1]
    off = _fresh(monkeypatch, tmp_path, off="1")
    off.run(case, make_inputs(case))
    off.run(case, make_inputs(case))
    assert off.note(case) is None and not (tmp_path / "onnx-reference").exists()
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    unwritable = _fresh(monkeypatch, blocked)
    assert backend_cache.writable_dir("onnx-reference") is None
    y = unwritable.run(case, make_inputs(case))
    assert y[0].shape == (1, 2, 8, 7) and unwritable.note(case) is None


def test_the_cache_folder_follows_xdg_unless_poolconform_names_one(monkeypatch, tmp_path):
    monkeypatch.delenv("POOLCONFORM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert backend_cache.cache_root() == tmp_path / "poolconform"
    monkeypatch.setenv("POOLCONFORM_CACHE_DIR", str(tmp_path / "mine"))
    assert backend_cache.cache_root() == tmp_path / "mine"
    for value, on in (("", True), ("0", True), ("1", False), ("yes", False)):
        monkeypatch.setenv("POOLCONFORM_NO_CACHE", value)
        assert backend_cache.enabled() is on
