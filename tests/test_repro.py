"""`poolconform repro`: a script that runs alone and shows the disagreement."""

import subprocess
import sys

import pytest

from conftest import run_cli

DISAGREEING = "AveragePool-2d-k3-s3-p0-ceil-f32-n4-b2c3"  # onnx-reference averages shifted windows here


def _run_script(path):
    """Run the script as a user would: isolated mode, from another folder."""
    return subprocess.run([sys.executable, "-I", str(path)], cwd=path.parent, capture_output=True, text=True,
                          timeout=300)


def test_repro_script_for_a_real_disagreement_runs_alone_and_shows_it(tmp_path):
    pytest.importorskip("onnx", reason="the script runs onnx-reference")
    script = tmp_path / "repro.py"
    proc = run_cli("repro", DISAGREEING, "--backend", "onnx-reference", "-o", str(script))
    assert proc.returncode == 0, proc.stderr
    text = script.read_text()
    assert "import poolconform" not in text and "from poolconform" not in text
    out = _run_script(script)
    assert out.returncode == 1, out.stderr
    assert "=> Y: 24 of 24 element(s) differ" in out.stdout
    assert "expected (ONNX spec)" in out.stdout


def test_repro_on_a_backend_that_agrees_exits_0(tmp_path):
    pytest.importorskip("onnxruntime", reason="the script runs onnxruntime-cpu")
    script = tmp_path / "repro.py"
    assert run_cli("repro", DISAGREEING, "--backend", "onnxruntime-cpu", "-o", str(script)).returncode == 0
    out = _run_script(script)
    assert out.returncode == 0 and "=> Y: agrees" in out.stdout


def test_torch_repro_converts_indices_like_the_backend(tmp_path):
    pytest.importorskip("torch", reason="the script runs torch-cpu")
    matrix = tmp_path / "m.toml"
    matrix.write_text("[matrix]\nops = 'MaxPool'\nkernel = 2\nstride = 2\ninput_size = 6\npads = 1\n"
                      "indices = true\nstorage_order = 1\nbatch = 2\nchannels = 3\n")
    script = tmp_path / "repro.py"
    proc = run_cli("repro", "MaxPool-2d-k2-s2-p1-idxcol-f32-n6-b2c3", "--backend", "torch-cpu",
                   "--matrix", str(matrix), "-o", str(script))
    assert proc.returncode == 0, proc.stderr
    out = _run_script(script)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "=> Y: agrees" in out.stdout and "=> Indices: agrees" in out.stdout


def test_repro_refuses_what_it_cannot_reproduce():
    proc = run_cli("repro", "MaxPool-2d-k2-s2-p1-f32-n7-b2c3", "--backend", "keras-jax")
    assert proc.returncode == 2 and "Keras pooling has no explicit pads" in proc.stderr
    proc = run_cli("repro", "MaxPool-2d-k2-s2-p1-f32-n7-b2c3x", "--backend", "onnxruntime-cpu")
    assert proc.returncode == 2 and "token 'b2c3x'" in proc.stderr and "did you mean" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_repro_takes_an_id_that_no_matrix_holds(tmp_path):
    """Any valid id is a whole case: the script runs it and agrees on onnxruntime."""
    script = tmp_path / "r.py"
    proc = run_cli("repro", "LpPool-1d-k3-s2-p1-L3-f32-n9-b2c1", "--backend", "onnxruntime-cpu", "-o", str(script))
    assert proc.returncode == 0, proc.stderr
    out = _run_script(script)
    assert out.returncode == 0 and "=> Y: agrees" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("where", ["afile/repro.py", "afile/deeper/repro.py", "."])
def test_repro_output_that_cannot_be_a_file_is_one_line(tmp_path, where):
    (tmp_path / "afile").write_text("keep")
    proc = run_cli("repro", DISAGREEING, "--backend", "onnxruntime-cpu", "-o", str(tmp_path / where))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and "-o" in proc.stderr
    assert (tmp_path / "afile").read_text() == "keep"


def test_the_script_judges_each_element_by_its_own_tolerance(tmp_path):
    """The script compared every element with the largest tolerance of the output, so an
    answer poolconform calls a mismatch printed "agrees": one element moved by more than its
    own bound (but less than the largest) must make the script fail, as the verdict does."""
    pytest.importorskip("onnxruntime", reason="the script runs onnxruntime-cpu")
    import numpy as np

    from poolconform.case_ids import parse_case_id
    from poolconform.compare import compare_outputs, element_tolerance
    from poolconform.inputs import make_inputs
    from poolconform.oracle import reference_outputs

    case_id = "AveragePool-2d-k3-s1-p1-f32-n7-b2c3"  # border windows hold fewer elements: bounds differ
    case = parse_case_id(case_id)
    x = make_inputs(case)
    exact = reference_outputs(case, x)
    bound = element_tolerance(case, exact[0], x)
    where = np.unravel_index(np.argmin(bound), bound.shape)
    delta = (bound[where] + bound.max()) / 2
    wrong = exact[0].copy()
    wrong[where] += delta
    assert compare_outputs(case, exact, [wrong.astype(np.float32)], x).status == "mismatch"
    script = tmp_path / "repro.py"
    assert run_cli("repro", case_id, "--backend", "onnxruntime-cpu", "-o", str(script)).returncode == 0
    text = script.read_text()
    nudge = (f"actual = [np.asarray(actual[0]).copy()]\nactual[0][{tuple(int(i) for i in where)}] "
             f"= EXACT[{tuple(int(i) for i in where)}] + {float(delta)!r}\n")
    script.write_text(text.replace("np.set_printoptions(", nudge + "np.set_printoptions(", 1))
    out = _run_script(script)
    assert out.returncode == 1 and "=> Y: 1 of 294 element(s) differ" in out.stdout, out.stdout[-800:]
