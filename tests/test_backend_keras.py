"""Keras 3 backends against the float64 oracle, each Keras backend in its own process.

Keras fixes its backend at the first import, so every backend runs its whole batch of
cases in one subprocess (`python -c`, KERAS_BACKEND set) that prints JSON; the tests
assert on that JSON here.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import subprocess
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import IO

import numpy as np
import pytest
from conftest import SEED_PRINTED

from poolconform.backends.keras_backend import KerasJax, KerasTensorFlow, KerasTorch, translate
from poolconform.validation import make_case

BACKENDS = {"keras-tensorflow": "tensorflow", "keras-jax": "jax", "keras-torch": "torch"}

#: Runs in the child: cases from stdin (make_case kwargs), results as JSON on the last line.
CHILD = r"""
import json, sys
import numpy as np
from poolconform.backends.base import BUILTIN_BACKENDS, BackendSpec
from poolconform.validation import make_case
from poolconform.inputs import make_inputs
from poolconform.oracle import reference_outputs

name = sys.argv[1]
backend = BackendSpec(name, BUILTIN_BACKENDS[name]).load()
out = {"available": backend.available(), "version": backend.version(), "cases": {}}

def replicate_model(case, x):
    # Average of the window over an edge-replicated input (how Keras-on-torch pads an uneven 'same').
    from poolconform import shapes
    pads, r = shapes.resolve_pads(case), case.rank
    widths = [(0, 0), (0, 0)] + [(pads[a], pads[a + r]) for a in range(r)]
    padded = np.pad(x.astype(np.float64), widths, mode="edge")
    valid = make_case(case.op, padded.shape, kernel=case.kernel, strides=case.strides)
    return reference_outputs(valid, [padded])[0]

for spec in json.loads(sys.stdin.read()):
    case = make_case(**spec)
    rec = {"reason": backend.supports(case), "note": backend.note(case)}
    if rec["reason"] is None:
        x = make_inputs(case)
        try:
            y = backend.run(case, x)[0]
        except Exception as exc:
            rec["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        else:
            want = reference_outputs(case, x)[0]
            rec.update(shape=list(y.shape), dtype=str(y.dtype), want_shape=list(want.shape))
            if y.shape == want.shape:
                got = y.astype(np.float64)
                rec["err"] = float(np.max(np.abs(got - want)))
                rec["scale"] = float(np.max(np.abs(want)))
                if y.size <= 16:
                    rec["values"] = got.ravel().tolist()
                if case.op == "AveragePool" and rec["err"] > 0:
                    rec["err_replicate"] = float(np.max(np.abs(got - replicate_model(case, x[0]))))
    out["cases"][case.id] = rec
print(json.dumps(out))
"""


WINDOW_2X2 = {"kernel": 2, "strides": 2}
#: The repository root, so children import this checkout's poolconform.
ROOT = str(Path(__file__).resolve().parents[1])


def golden_specs() -> list[dict]:
    return [
        dict(op=op, input_shape=(1, 1, 4, 4), generator="seed", **({} if op.startswith("Global") else WINDOW_2X2))
        for op in ("MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool")
    ]


def sweep_specs() -> list[dict]:
    """Supported-looking cases: ranks 1-3, valid and same, strides 1-3, kernels 1-4, N/C > 1."""
    specs = []
    sizes = {1: (7,), 2: (6, 5), 3: (4, 5, 3)}
    for op, rank, auto_pad, stride, kernel in itertools.product(
        ("MaxPool", "AveragePool"), (1, 2, 3), ("VALID", "SAME_UPPER"), (1, 2, 3), (1, 2, 3, 4)
    ):
        if kernel > min(sizes[rank]) or (rank == 3 and (stride == 3 or kernel == 1)):
            continue  # 3-D compiles are the slowest on JAX; 1-D and 2-D cover the full grid
        specs.append(dict(op=op, input_shape=(2, 3) + sizes[rank], kernel=kernel, strides=stride, auto_pad=auto_pad))
    for op, rank in itertools.product(("GlobalMaxPool", "GlobalAveragePool"), (1, 2, 3)):
        specs.append(dict(op=op, input_shape=(2, 3) + sizes[rank]))
    # Mapped rather than one to one: explicit SAME_UPPER pads, ceil_mode with the floor shape.
    specs.append(dict(op="AveragePool", input_shape=(2, 3, 6, 6), kernel=3, strides=1, pads=1))
    specs.append(dict(op="MaxPool", input_shape=(1, 2, 7, 7), kernel=3, strides=2, ceil_mode=True))
    return specs


def unsupported_specs() -> dict[str, dict]:
    """One case per thing Keras cannot express, keyed by a word its reason must contain."""
    return {
        "pads": dict(op="MaxPool", input_shape=(1, 1, 6, 6), kernel=3, strides=1, pads=(1, 0, 0, 1)),
        "ceil_mode": dict(op="MaxPool", input_shape=(1, 1, 6, 6), kernel=3, strides=2, ceil_mode=True),
        "dilation": dict(op="MaxPool", input_shape=(1, 1, 7, 7), kernel=2, strides=1, dilations=2),
        "Lp": dict(op="LpPool", input_shape=(1, 1, 6, 6), kernel=2, strides=2),
        "SAME_LOWER": dict(op="MaxPool", input_shape=(1, 1, 6, 6), kernel=2, strides=1, auto_pad="SAME_LOWER"),
        "Indices": dict(op="MaxPool", input_shape=(1, 1, 6, 6), kernel=2, strides=2, with_indices=True),
        "count_include_pad": dict(
            op="AveragePool", input_shape=(1, 1, 6, 6), kernel=3, strides=1, pads=1, count_include_pad=True
        ),
    }


def dtype_specs() -> list[dict]:
    return [
        dict(op=op, input_shape=(2, 3, 6, 6), kernel=2, strides=2, dtype=dtype)
        for op in ("MaxPool", "AveragePool")
        for dtype in ("float64", "float16", "bfloat16")
    ] + [dict(op="MaxPool", input_shape=(2, 3, 6, 6), kernel=3, strides=1, dtype=d) for d in ("int8", "uint8")] + [
        dict(op="GlobalAveragePool", input_shape=(2, 3, 6, 6), dtype="float64")
    ]


def _case_id(spec: dict) -> str:
    return make_case(**spec).id


def _start_child(name: str, specs: list[dict]) -> tuple[subprocess.Popen, IO[str], IO[str]]:
    """The child reads cases from a file and writes to files: no pipe can fill up and block it."""
    env = dict(os.environ, KERAS_BACKEND=BACKENDS[name], TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    stdin = tempfile.TemporaryFile("w+")
    stdin.write(json.dumps(specs, default=list))
    stdin.seek(0)
    stdout, stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, name], stdin=stdin, stdout=stdout, stderr=stderr, env=env)
    return proc, stdout, stderr


@functools.lru_cache(maxsize=1)
def _children() -> dict[str, tuple[subprocess.Popen, IO[str], IO[str]]]:
    """One child per installed Keras backend, all started at once so their imports overlap."""
    specs = golden_specs() + sweep_specs() + list(unsupported_specs().values()) + dtype_specs()
    return {name: _start_child(name, specs) for name, module in BACKENDS.items() if find_spec(module) is not None}


def _child_results(name: str) -> dict:
    proc, stdout, stderr = _children()[name]
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    stdout.seek(0)
    stderr.seek(0)
    assert proc.returncode == 0, stderr.read()[-3000:]
    return json.loads(stdout.read().strip().splitlines()[-1])


@pytest.fixture(scope="module", params=list(BACKENDS))
def results(request) -> tuple[str, dict]:
    name = request.param
    if find_spec(BACKENDS[name]) is None:
        pytest.skip(f"{BACKENDS[name]} is not installed")
    return name, _child_results(name)


def test_backend_is_available_and_versioned(results):
    name, out = results
    assert out["available"] is None
    assert out["version"].startswith("3.") and f"({BACKENDS[name]} " in out["version"]


def test_golden_cases_reproduce_the_tutorial_exactly(results):
    _, out = results
    expected = {op: np.ravel(v).tolist() for op, v in SEED_PRINTED.items()}
    for spec in golden_specs():
        rec = out["cases"][_case_id(spec)]
        assert rec.get("values") == expected[spec["op"]], rec


def _is_uneven_same_average(spec: dict) -> bool:
    from poolconform import shapes

    case = make_case(**spec)
    if case.op != "AveragePool" or case.auto_pad != "SAME_UPPER":
        return False
    pads = shapes.resolve_pads(case)
    return any(pads[a] != pads[a + case.rank] for a in range(case.rank))


def test_sweep_matches_the_oracle(results):
    name, out = results
    specs = sweep_specs()
    assert len(specs) > 100
    replicated = []
    for spec in specs:
        rec = out["cases"][_case_id(spec)]
        assert rec["reason"] is None, rec
        assert "error" not in rec, rec
        assert rec["shape"] == rec["want_shape"], rec
        assert rec["dtype"] == "float32", rec
        if spec["op"] in ("MaxPool", "GlobalMaxPool"):
            assert rec["err"] == 0.0, (spec, rec)
        elif rec["err"] > 1e-6 * max(1.0, rec["scale"]):
            # Finding: Keras on torch pads an uneven 'same' with edge copies and averages them.
            assert name == "keras-torch" and _is_uneven_same_average(spec), (spec, rec)
            assert rec["err_replicate"] < 1e-6, (spec, rec)
            replicated.append(spec)
    if name == "keras-torch":
        assert len(replicated) >= 5, "the keras-torch 'same' average finding no longer shows"


def test_mapped_cases_say_how_they_were_mapped(results):
    _, out = results
    pads_case = out["cases"][make_case("AveragePool", (2, 3, 6, 6), kernel=3, strides=1, pads=1).id]
    assert "SAME_UPPER" in pads_case["note"] and "channels_last" in pads_case["note"]
    ceil_case = out["cases"][make_case("MaxPool", (1, 2, 7, 7), kernel=3, strides=2, ceil_mode=True).id]
    assert "ceil_mode" in ceil_case["note"]


def test_unsupported_cases_give_reasons(results):
    _, out = results
    for word, spec in unsupported_specs().items():
        reason = out["cases"][_case_id(spec)]["reason"]
        assert reason is not None and reason.startswith("unsupported: ") and word in reason, (word, reason)


def test_dtypes_run_in_the_case_dtype(results):
    """float dtypes keep their type (no autocast to float32); known framework gaps are errors."""
    name, out = results
    for spec in dtype_specs():
        rec = out["cases"][_case_id(spec)]
        if "error" in rec:
            # torch has no CPU max_pool2d kernel for int8/uint8 in some versions: a real gap, kept visible.
            assert name == "keras-torch" and spec["dtype"] in ("int8", "uint8"), rec
            continue
        assert rec["dtype"] == spec["dtype"], rec
        if spec["op"] == "MaxPool":
            assert rec["err"] == 0.0, rec
        if spec["dtype"] == "float64" and spec["op"] != "MaxPool":
            if spec["op"] == "GlobalAveragePool" and name != "keras-tensorflow":
                # Finding: keras.ops.mean on JAX and torch computes in result_type(float64, "float32"),
                # which Keras makes float32: the float64 mean comes back with float32 error.
                assert 1e-12 < rec["err"] < 1e-6, rec
            else:
                assert rec["err"] < 1e-14, rec


def test_translation_without_keras():
    """The mapping itself, checked in this process (no keras import needed)."""
    assert translate(make_case("MaxPool", (1, 1, 5, 5), kernel=2, strides=1, auto_pad="SAME_UPPER")).padding == "same"
    assert translate(make_case("MaxPool", (1, 1, 5, 5), kernel=2, strides=1)).padding == "valid"
    # SAME_LOWER with an even total pad is SAME_UPPER.
    plan = translate(make_case("MaxPool", (1, 1, 5, 5), kernel=3, strides=1, auto_pad="SAME_LOWER"))
    assert plan.padding == "same" and "SAME_LOWER" in plan.remark
    assert translate(make_case("GlobalAveragePool", (1, 2, 3))).layer == "GlobalAveragePooling1D"
    # Strides always explicit: Keras would default them to pool_size.
    assert translate(make_case("AveragePool", (1, 1, 9), kernel=3)).kwargs()["strides"] == (1,)


def test_available_reports_a_keras_loaded_with_another_backend():
    code = (
        "import os; os.environ['KERAS_BACKEND'] = 'jax'; import keras\n"
        "from poolconform.backends.keras_backend import KerasTensorFlow, KerasTorch, KerasJax\n"
        "print(KerasTensorFlow().available()); print(KerasTorch().available()); print(KerasJax().available())"
    )
    if find_spec("jax") is None:
        pytest.skip("jax is not installed")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()[-3:]
    assert lines[0] == "keras already loaded with backend 'jax' in this process (needs 'tensorflow')"
    assert lines[1] == "keras already loaded with backend 'jax' in this process (needs 'torch')"
    assert lines[2] == "None"


def test_backend_classes_have_their_registered_names():
    assert (KerasTensorFlow.name, KerasJax.name, KerasTorch.name) == ("keras-tensorflow", "keras-jax", "keras-torch")
    assert {KerasTensorFlow.framework, KerasJax.framework, KerasTorch.framework} == {"keras"}


def test_the_worker_pools_the_inputs_the_parent_judges_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The parent ships each case's inputs (docs/speed.md): a worker that regenerated them from
    the case id would pool other values than the oracle's, and the run would not pass."""
    for module in ("keras", "tensorflow"):
        pytest.importorskip(module, reason="keras-tensorflow needs keras and tensorflow")
    from poolconform import inputs as inputs_module
    from poolconform.backends.base import registry
    from poolconform.job import oracle_job
    from poolconform.runner import RunOptions, run_jobs, start_workers

    def ramp(case):  # not what the case id generates: only the parent knows these values
        return [np.arange(np.prod(case.input_shape), dtype=np.float32).reshape(case.input_shape)[..., ::-1].copy()]

    monkeypatch.setattr(inputs_module, "generate_inputs", ramp)
    inputs_module.clear_cache()
    try:
        jobs = [oracle_job(make_case("MaxPool", (1, 1, n, n), kernel=2, strides=1)) for n in (4, 131, 260)]
        assert np.array_equal(jobs[2].task(2).inputs[0], ramp(jobs[2].case)[0])
        options = RunOptions(timeout=120, jobs=1, batch_size=2, log_dir=tmp_path)
        workers = start_workers([registry()["keras-tensorflow"]], options)
        records: list[dict] = []
        run_jobs(jobs, workers, options, records.extend)
    finally:
        inputs_module.clear_cache()
    assert sorted(r["case"] for r in records) == sorted(j.case.id for j in jobs)
    assert [r["status"] for r in records] == ["pass"] * 3, records
