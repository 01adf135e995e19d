"""The seed's four worked examples on every CPU backend installed here, through real workers."""

import importlib.util
import json

from conftest import run_cli

CPU_BACKENDS = {
    "onnxruntime-cpu": "onnxruntime",
    "onnx-reference": "onnx",
    "torch-cpu": "torch",
    "keras-tensorflow": "tensorflow",
    "keras-jax": "jax",
    "keras-torch": "torch",
    "tensorflow": "tensorflow",
    "openvino-cpu": "openvino",
}


def test_golden_cases_pass_exactly_on_every_installed_cpu_backend(tmp_path):
    matrix = tmp_path / "golden.toml"
    matrix.write_text(
        "[matrix]\n"
        'ops = ["MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"]\n'
        'kernel = 2\nstride = 2\ninput_size = 4\ngenerator = "seed"\n'
    )
    installed = [n for n, module in CPU_BACKENDS.items()
                 if importlib.util.find_spec(module) is not None
                 and (not n.startswith("keras") or importlib.util.find_spec("keras") is not None)]
    out = tmp_path / "out"
    proc = run_cli("run", "--matrix", str(matrix), "--backends", ",".join(installed), "--out", str(out), "--quiet")
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_backend = {}
    for r in records:
        by_backend.setdefault(r["backend"], []).append(r)
    assert sorted(by_backend) == sorted(installed), proc.stderr
    for name, rs in by_backend.items():
        assert len(rs) == 4, name
        for r in rs:
            assert r["status"] == "pass" and r["max_abs_err"] == 0.0, (name, r["case"], r["detail"])
    assert proc.returncode == 0
