"""`poolconform scan`: real models built in code (random weights, nothing downloaded),
exported to ONNX, scanned node by node; and every kind of bad input as one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from conftest import make_model, run_cli
from poolconform.errors import PoolconformError
from poolconform.scan import config_text, parse_input_shapes, scan_model

torch = pytest.importorskip("torch", reason="the architecture tests export torch modules")
nn = torch.nn

FAST = "onnxruntime-cpu,onnx-reference,torch-cpu"


# ----------------------------------------------------------------- architectures, built in code


class ResNetLike(nn.Module):
    """torchvision ResNet's pooling: stem MaxPool k3 s2 p1, AdaptiveAvgPool2d(1) (exported as GlobalAveragePool)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Conv2d(8, 8, 3, 1, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.conv1(x)))
        return self.fc(torch.flatten(self.avgpool(torch.relu(self.layer1(x))), 1))


class Inception(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.branch1 = nn.Conv2d(c, 4, 1)
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), nn.Conv2d(c, 4, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch4(x)], 1)


class GoogLeNetLike(nn.Module):
    """GoogLeNet's pooling: ceil_mode MaxPool k3 s2 between stages, k3 s1 p1 ceil in every
    inception block (3a and 3b see the same shape: one case, two nodes), global average."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3)
        self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception3a = Inception(8)
        self.inception3b = Inception(8)
        self.maxpool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x):
        x = self.maxpool1(torch.relu(self.conv1(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        return torch.flatten(self.avgpool(x), 1)


class DenseNetLike(nn.Module):
    """DenseNet's pooling: stem MaxPool k3 s2 p1, AvgPool k2 s2 in each transition."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 7, 2, 3)
        self.pool0 = nn.MaxPool2d(3, 2, 1)
        self.transition1 = nn.Sequential(nn.Conv2d(8, 8, 1), nn.AvgPool2d(2, 2))
        self.transition2 = nn.Sequential(nn.Conv2d(8, 8, 1), nn.AvgPool2d(2, 2))

    def forward(self, x):
        return self.transition2(self.transition1(self.pool0(torch.relu(self.conv0(x)))))


class SqueezeNetLike(nn.Module):
    """SqueezeNet 1.1's pooling: MaxPool k3 s2 ceil_mode after the stem and fire stages, global average."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(8, 8, 1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        )
        self.classifier = nn.Sequential(nn.Conv2d(8, 10, 1), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


ARCHITECTURES = {"resnet": ResNetLike, "googlenet": GoogLeNetLike, "densenet": DenseNetLike, "squeezenet": SqueezeNetLike}

#: What a scan must find in each: (op, config, input shape) per configuration, in graph order.
EXPECTED = {
    "resnet": [("MaxPool", "MaxPool k3 s2 p1", (1, 8, 16, 16)), ("GlobalAveragePool", "GlobalAveragePool", (1, 8, 8, 8))],
    "googlenet": [("MaxPool", "MaxPool k3 s2 p0 ceil", (1, 8, 16, 16)), ("MaxPool", "MaxPool k3 s1 p1 ceil", (1, 8, 8, 8)),
                  ("MaxPool", "MaxPool k3 s2 p0 ceil", (1, 8, 8, 8)), ("GlobalAveragePool", "GlobalAveragePool", (1, 8, 4, 4))],
    "densenet": [("MaxPool", "MaxPool k3 s2 p1", (1, 8, 16, 16)), ("AveragePool", "AveragePool k2 s2 p0 cip", (1, 8, 8, 8)),
                 ("AveragePool", "AveragePool k2 s2 p0 cip", (1, 8, 4, 4))],
    "squeezenet": [("MaxPool", "MaxPool k3 s2 p0 ceil", (1, 8, 15, 15)), ("MaxPool", "MaxPool k3 s2 p0 ceil", (1, 8, 7, 7)),
                   ("GlobalAveragePool", "GlobalAveragePool", (1, 10, 3, 3))],
}


def export_torch(module: nn.Module, path: Path, dynamic: dict | None = None) -> Path:
    """TorchScript exporter (dynamo=False): the exporter most deployed models came through."""
    torch.manual_seed(0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.randn(1, 3, 32, 32),), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], dynamic_axes=dynamic or {"input": {0: "batch"}})
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    return {name: export_torch(cls(), folder / f"{name}.onnx") for name, cls in ARCHITECTURES.items()}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_scan_finds_each_pooling_node_with_its_exact_configuration(models, name):
    scanned = scan_model(models[name])
    groups = scanned.groups()
    assert [(g.op, g.config, g.case.input_shape) for g in groups] == EXPECTED[name]
    assert all(g.problem is None and g.case.opset == 17 and g.case.dtype == "float32" for g in groups)
    assert scanned.notes == ["input 'input': batch axis 'batch' set to 1 (pass --input-shape input=... to choose another)"]
    model = onnx.load(str(models[name]))
    pools = [n.name for n in model.graph.node if "Pool" in n.op_type]
    assert sorted(n for g in groups for n in g.nodes) == sorted(pools)  # every node named once


def test_identical_nodes_share_one_case_and_keep_both_names(models):
    groups = scan_model(models["googlenet"]).groups()
    branch = [g for g in groups if g.config == "MaxPool k3 s1 p1 ceil"]
    assert len(branch) == 1 and len(branch[0].nodes) == 2
    assert all("inception3" in n for n in branch[0].nodes)
    case = branch[0].case
    assert (case.kernel, case.strides, case.pads, case.ceil_mode) == ((3, 3), (1, 1), (1, 1, 1, 1), True)
    assert case.id == "MaxPool-2d-k3-s1-p1-ceil-f32-n8-b1c8-o17"


def test_input_shape_resolves_symbolic_spatial_axes(models, tmp_path):
    path = export_torch(GoogLeNetLike(), tmp_path / "dyn.onnx", {"input": {0: "n", 2: "h", 3: "w"}})
    with pytest.raises(PoolconformError, match=r"input 'input' \[1, 3, h, w\]; pass its sizes with --input-shape "
                                                r"input=1x3x<h>x<w>"):
        scan_model(path)
    scanned = scan_model(path, parse_input_shapes(["input=2x3x64x48"]))
    assert scanned.groups()[0].case.input_shape == (2, 8, 32, 24)
    assert scanned.notes == []
    with pytest.raises(PoolconformError, match="not a model input; inputs: 'input'"):
        scan_model(path, {"image": (1, 3, 32, 32)})
    with pytest.raises(PoolconformError, match="axis 1 is 4, but the model fixes it at 3"):
        scan_model(path, {"input": (1, 4, 32, 32)})
    for bad in ("input", "input=1x3xax4", "=1x3", "input=1x0x3x3"):
        with pytest.raises(PoolconformError, match="--input-shape"):
            parse_input_shapes([bad])


def test_config_text_is_the_id_without_shape_dtype_or_opset():
    from poolconform.validation import make_case

    case = make_case("AveragePool", (2, 3, 9, 9), kernel=3, strides=2, pads=[0, 0, 1, 1], ceil_mode=True,
                     count_include_pad=True, opset=19)
    assert config_text(case) == "AveragePool k3 s2 p0_0_1_1 ceil cip"


# ----------------------------------------------------------------- the command, as users run it


def test_scan_runs_every_node_and_names_them_in_records_summary_and_terminal(models, tmp_path):
    out = tmp_path / "report"
    proc = run_cli("scan", str(models["googlenet"]), "--backends", FAST, "--out", str(out),
                   env={"POOLCONFORM_SHRINK_SECONDS": "0"})
    assert proc.returncode in (0, 1), proc.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 * 3
    assert {tuple(r["nodes"]) for r in records if r["case"] == "MaxPool-2d-k3-s1-p1-ceil-f32-n8-b1c8-o17"} == {
        ("/inception3a/branch4/branch4.0/MaxPool", "/inception3b/branch4/branch4.0/MaxPool")}
    assert {r["backend"] for r in records} == set(FAST.split(","))
    summary = json.loads((out / "summary.json").read_text())
    assert [e["node"] for e in summary["scan"]["nodes"]][:1] == ["/maxpool1/MaxPool"]
    assert summary["scan"]["opset"] == 17 and summary["scan"]["pooling_nodes"] == 5
    assert "node `/maxpool1/MaxPool` (MaxPool k3 s2 p0 ceil)" in proc.stdout
    assert "nodes `/inception3a/branch4/branch4.0/MaxPool`, `/inception3b/branch4/branch4.0/MaxPool`" in proc.stdout
    failing = [r for r in records if r["status"] in ("mismatch", "shape-mismatch", "error", "crash", "timeout")]
    for r in failing:  # every disagreement is said against the node's name
        assert f"disagrees on {r['backend']}" in proc.stdout
    assert proc.returncode == (1 if failing else 0)
    assert all(r["status"] == "pass" for r in records if r["backend"] == "onnxruntime-cpu")


def test_a_disagreement_names_the_node_and_the_backend(tmp_path):
    """onnx's reference evaluator averages an overhanging ceil_mode window wrongly (a known finding)."""
    class Aux(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.aux_pool = nn.AvgPool2d(3, 3, ceil_mode=True)

        def forward(self, x):
            return self.aux_pool(self.conv(x))

    class Small(nn.Module):  # 4x4 input: the case of the known finding
        def __init__(self) -> None:
            super().__init__()
            self.aux = Aux()

        def forward(self, x):
            return self.aux(x[:, :, :4, :4])

    path = export_torch(Small(), tmp_path / "aux.onnx")
    proc = run_cli("scan", str(path), "--backends", "onnxruntime-cpu,onnx-reference", "--out", str(tmp_path / "r"),
                   env={"POOLCONFORM_SHRINK_SECONDS": "0"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "node `/aux/aux_pool/AveragePool` (AveragePool k3 s3 p0 ceil cip) disagrees on onnx-reference: mismatch" in proc.stdout
    records = [json.loads(line) for line in (tmp_path / "r" / "results.jsonl").read_text().splitlines()]
    bad = [r for r in records if r["status"] == "mismatch"]
    assert [(r["backend"], r["case"], r["nodes"]) for r in bad] == [
        ("onnx-reference", "AveragePool-2d-k3-s3-p0-ceil-cip-f32-n4-b1c3-o17", ["/aux/aux_pool/AveragePool"])]


def test_export_writes_a_suite_that_check_runs(models, tmp_path):
    suite = tmp_path / "suite"
    proc = run_cli("scan", str(models["densenet"]), "--backends", "onnxruntime-cpu", "--out", str(tmp_path / "r"),
                   "--export", str(suite))
    assert proc.returncode == 0, proc.stderr
    dirs = sorted(p.name for p in suite.iterdir() if p.is_dir())
    assert dirs == ["test_AveragePool-2d-k2-s2-p0-cip-f32-n4-b1c8-o17", "test_AveragePool-2d-k2-s2-p0-cip-f32-n8-b1c8-o17",
                    "test_MaxPool-2d-k3-s2-p1-f32-n16-b1c8-o17"]
    nodes = json.loads((suite / "scan.json").read_text())
    assert nodes["dirs"]["test_MaxPool-2d-k3-s2-p1-f32-n16-b1c8-o17"] == ["/pool0/MaxPool"]
    check = run_cli("check", str(suite), "--backends", "onnxruntime-cpu")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "3 models" in check.stdout


# ----------------------------------------------------------------- nodes poolconform cannot express


def _graph_model(nodes, opset: int = 17, inputs=None, extra_opsets=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", inputs or [x], [y])
    model = make_model(graph, opset)
    for domain, version in extra_opsets:
        model.opset_import.append(helper.make_opsetid(domain, version))
    return model


def test_unexpressible_nodes_become_records_with_reasons(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["a"], name="good", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("MaxPool", ["r"], ["b"], name="odd_attr", kernel_shape=[2, 2], foo=3),
        helper.make_node("MaxPool", ["r"], ["c"], name="typed_wrong", kernel_shape=[2, 2], ceil_mode=1.0),
        helper.make_node("QLinearAveragePool", ["r", "s", "z", "s", "z"], ["d"], name="quant", domain="com.microsoft",
                         kernel_shape=[2, 2]),
        helper.make_node("Sum", ["a", "b", "c"], ["y"], name="sum"),
    ]
    path = tmp_path / "odd.onnx"
    onnx.save(_graph_model(nodes, extra_opsets=[("com.microsoft", 1)]), str(path))
    groups = {g.nodes[0]: g for g in scan_model(path).groups()}
    assert groups["good"].problem is None
    assert "attribute foo=3 is not one poolconform knows" in groups["odd_attr"].problem
    assert "ceil_mode" in groups["typed_wrong"].problem and "FLOAT" in groups["typed_wrong"].problem
    assert "quantized pooling is not supported yet" in groups["quant"].problem
    out = tmp_path / "r"
    proc = run_cli("scan", str(path), "--backends", "onnxruntime-cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_node = {r["nodes"][0]: r for r in records}
    assert by_node["good"]["status"] == "pass" and by_node["good"]["backend"] == "onnxruntime-cpu"
    for name in ("odd_attr", "typed_wrong", "quant"):
        assert by_node[name]["status"] == "unsupported" and by_node[name]["backend"] == "scan"
        assert by_node[name]["detail"].startswith("not checked: ")
        assert f"node `{name}`" in proc.stdout and "not checked" in proc.stdout


def test_a_scan_that_verified_nothing_is_not_green(tmp_path):
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], name="odd_attr", kernel_shape=[2, 2], foo=3)]
    path = tmp_path / "odd.onnx"
    onnx.save(_graph_model(nodes), str(path))
    out = tmp_path / "r"
    proc = run_cli("scan", str(path), "--backends", "onnxruntime-cpu", "--out", str(out))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "nothing was verified" in proc.stderr and "Traceback" not in proc.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["unsupported"]  # the reason is still on record


# ----------------------------------------------------------------- bad input: one line, exit 2


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("poolconform: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file, not a model\n")
    _one_line_error(run_cli("scan", str(path)), "notes.onnx", "not an ONNX model")
    _one_line_error(run_cli("scan", str(tmp_path / "missing.onnx")), "missing.onnx", "cannot read")


def test_no_pooling_node(tmp_path):
    path = tmp_path / "relu.onnx"
    onnx.save(_graph_model([helper.make_node("Relu", ["x"], ["y"])]), str(path))
    _one_line_error(run_cli("scan", str(path)), "relu.onnx", "no pooling node", "ops: Relu")


def test_a_spatial_reduction_is_named_as_an_exporter_rewrite(tmp_path):
    path = tmp_path / "gap.onnx"
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    graph = helper.make_graph([helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="gap")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[axes])
    onnx.save(make_model(graph, 18), str(path))
    _one_line_error(run_cli("scan", str(path)), "no pooling node", "'gap' reduce the spatial axes")


def test_symbolic_spatial_size_names_the_input_and_the_flag(tmp_path):
    path = tmp_path / "sym.onnx"
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, "H", "W"])
    onnx.save(_graph_model([helper.make_node("MaxPool", ["pixels"], ["y"], kernel_shape=[2, 2])], inputs=[x]), str(path))
    _one_line_error(run_cli("scan", str(path)), "input 'pixels' [1, 3, H, W]", "--input-shape pixels=1x3x<H>x<W>")


def test_external_data_outside_the_folder_is_refused_unread(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 64)
    folder = tmp_path / "model"
    folder.mkdir()
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[16])
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../secret.bin")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])
    graph = helper.make_graph([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2])], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[weight])
    path = folder / "model.onnx"
    path.write_bytes(make_model(graph, 17).SerializeToString())
    os.chmod(secret, 0)  # reading it would fail loudly; the refusal must come first
    try:
        _one_line_error(run_cli("scan", str(path)), "tensor 'w'", "'../secret.bin' outside its folder")
    finally:
        os.chmod(secret, 0o600)


def test_a_file_too_large_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as f:  # sparse: 3 GiB on paper, nothing on disk
        f.truncate(3 * 2**30)
    _one_line_error(run_cli("scan", str(path)), "huge.onnx", "3221225472 bytes", "external data")


def test_bad_input_shape_flag(models):
    _one_line_error(run_cli("scan", str(models["resnet"]), "--input-shape", "image=1x3x8x8"),
                    "--input-shape names 'image'", "inputs: 'input'")


# ----------------------------------------------------------------- every CPU backend (slow)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_cpu_backend_gives_a_verdict_per_node(models, name, tmp_path):
    out = tmp_path / "r"
    proc = run_cli("scan", str(models[name]), "--out", str(out), "--expectations",
                   str(Path(__file__).resolve().parent.parent / "expectations" / "known-findings.toml"),
                   env={"POOLCONFORM_SHRINK_SECONDS": "0"})
    assert proc.returncode in (0, 1), proc.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    ran = [n for n, b in summary["backends"].items() if not b["unavailable"]]
    assert len(ran) >= 2
    for group in scan_model(models[name]).groups():
        mine = {r["backend"]: r for r in records if r["case"] == group.case_id}
        assert set(mine) == set(ran), (group.case_id, sorted(mine))
        assert all(r["nodes"] == list(group.nodes) for r in mine.values())
        assert f"({group.config})" in proc.stdout


KERAS_EXPORT = r"""
import os, sys
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np, keras
from keras import layers
keras.utils.set_random_seed(0)
x = inp = keras.Input((32, 32, 3), batch_size=1, name="image")
if sys.argv[1] == "mobilenetv2":
    x = layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(layers.ReLU(6.0)(x))
else:  # inceptionv3: valid stem pooling, `same` pooling in the branches
    x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(layers.Conv2D(8, 3, strides=2, name="stem")(x))
    x = layers.Concatenate()([layers.AveragePooling2D(3, strides=1, padding="same", name="branch_pool")(x),
                              layers.MaxPooling2D(3, strides=1, padding="same", name="branch_max")(x)])
model = keras.Model(inp, x)
model(np.zeros((1, 32, 32, 3), "float32"))
model.export(sys.argv[2], format="onnx", verbose=False)
"""


@pytest.mark.slow
def test_keras_models_exported_to_onnx(tmp_path):
    pytest.importorskip("keras", reason="Keras builds the models")
    pytest.importorskip("onnxscript", reason="Keras' ONNX export on torch needs onnxscript")
    paths = {}
    for name in ("mobilenetv2", "inceptionv3"):
        paths[name] = tmp_path / f"{name}.onnx"
        done = subprocess.run([sys.executable, "-c", KERAS_EXPORT, name, str(paths[name])], capture_output=True,
                              text=True, timeout=600, env={**os.environ, "KERAS_BACKEND": "torch"})
        assert done.returncode == 0, done.stderr[-2000:]
    # Keras on torch writes GlobalAveragePooling2D as ReduceMean: no pooling op is left, and scan says so.
    _one_line_error(run_cli("scan", str(paths["mobilenetv2"])), "no pooling node", "ReduceMean",
                    "exporter's rewrite of global pooling")
    groups = scan_model(paths["inceptionv3"]).groups()
    assert [g.config for g in groups] == ["MaxPool k3 s2 p0", "AveragePool k3 s1 p1", "MaxPool k3 s1 p1"]
    assert groups[1].case.count_include_pad is False  # Keras `same` averages exclude the padding
    out = tmp_path / "r"
    proc = run_cli("scan", str(paths["inceptionv3"]), "--backends", FAST, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(AveragePool k3 s1 p1): agrees with the spec on 3 backend(s)" in proc.stdout


# ----------------------------------------------------------------- other sources: torch factories, .keras files

FACTORIES = '''
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(3, 2, 1))
        self.shared = nn.MaxPool2d(2, 1)
        self.lp = nn.LPPool2d(2, 2)
        self.head = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        y = self.shared(self.shared(self.stem(x)))
        return self.head(y) + self.lp(y).mean()


def make_net():
    return Net()


def broken():
    raise RuntimeError("weights missing\\nsecond line")


def nonfactor():
    return nn.Sequential(nn.Conv2d(3, 3, 1), nn.AdaptiveAvgPool2d(3))


not_a_function = 3
'''


@pytest.fixture
def factories(tmp_path) -> Path:
    (tmp_path / "mynets.py").write_text(FACTORIES)
    return tmp_path


def test_torch_factory_is_exported_and_scanned_with_layer_names(factories):
    out = factories / "r"
    proc = run_cli("scan", "mynets:make_net", "--input-shape", "image=1x3x16x16", "--backends", "onnxruntime-cpu",
                   "--out", str(out), cwd=factories, env={"POOLCONFORM_SHRINK_SECONDS": "0"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_node = {tuple(r["nodes"]): r for r in records}
    assert {n: (r["config"], r["layers"], r["status"]) for n, r in by_node.items()} == {
        ("/stem/stem.1/MaxPool",): ("MaxPool k3 s2 p1", ["stem.1"], "pass"),
        ("/shared/MaxPool",): ("MaxPool k2 s1 p0", ["shared"], "pass"),
        ("/shared_1/MaxPool",): ("MaxPool k2 s1 p0", ["shared"], "pass"),
        ("/head/GlobalAveragePool",): ("GlobalAveragePool", ["head"], "pass"),
        ("/lp/AveragePool",): ("AveragePool k2 s2 p0 cip", [], "pass"),  # what LPPool2d became
    }
    # LPPool2d is exported as Pow -> AveragePool -> ... -> Pow: listed as changed, with what it became.
    assert ("layer `lp` (LPPool2d, expected LpPool k2 s2 p0 L2) became AveragePool `/lp/AveragePool` "
            "(AveragePool k2 s2 p0 cip) with Pow") in proc.stdout
    assert "the exporter changed 1 of 5 pooling layer(s)" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [c["layer"] for c in summary["scan"]["source"]["changed"]] == ["lp"]
    assert summary["scan"]["model"] == "mynets:make_net" and summary["scan"]["opset"] == 17
    # every report names the nodes next to the case id
    assert "/stem/stem.1/MaxPool" in (out / "summary.md").read_text()
    assert "exporter changed layer `lp`" in (out / "summary.md").read_text()
    assert "[node /head/GlobalAveragePool]" in (out / "junit.xml").read_text()


def test_torch_factory_opset_flag(factories):
    out = factories / "r"
    proc = run_cli("scan", "mynets:make_net", "--input-shape", "x=1x3x8x8", "--opset", "13", "--backends",
                   "onnxruntime-cpu", "--out", str(out), cwd=factories)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "summary.json").read_text())["scan"]["opset"] == 13


@pytest.mark.parametrize("source, flags, needles", [
    ("mynets:broken", ["--input-shape", "x=1x3x8x8"], ("mynets:broken: calling it raised RuntimeError: weights missing",)),
    ("mynets:not_a_function", ["--input-shape", "x=1x3x8x8"], ("'not_a_function' is a int, not callable",)),
    ("mynets:absent", ["--input-shape", "x=1x3x8x8"], ("module 'mynets' has no attribute 'absent'",)),
    ("nosuchpkg.nets:make", ["--input-shape", "x=1x3x8x8"], ("cannot import 'nosuchpkg.nets'", "ModuleNotFoundError")),
    ("mynets:make_net", [], ("needs an example shape", "--input-shape")),
    ("mynets:make_net", ["--input-shape", "x=1x3x2x2"], ("fails on the example input(s) x=1x3x2x2",)),
    ("mynets:nonfactor", ["--input-shape", "x=1x3x16x16"],
     ("torch.onnx.export (opset 17) failed", "not factor of input size", "layer '1' (AdaptiveAvgPool2d)")),
])
def test_a_bad_torch_factory_is_one_line(factories, source, flags, needles):
    line = _one_line_error(run_cli("scan", source, *flags, cwd=factories), *needles)
    assert "second line" not in line and "Traceback" not in line


KERAS_MODEL = r"""
import os, sys
import numpy as np, keras
from keras import layers
keras.utils.set_random_seed(0)
x = inp = keras.Input((16, 16, 3), name="image")
x = layers.Conv2D(4, 3, name="stem")(x)
x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
x = layers.AveragePooling2D(3, strides=1, padding="same", name="branch_pool")(x)
x = layers.GlobalAveragePooling2D(name="gap")(x)
keras.Model(inp, x).save(sys.argv[1])
"""


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    pytest.importorskip("keras", reason="Keras builds the model")
    path = tmp_path_factory.mktemp("keras") / "net.keras"
    done = subprocess.run([sys.executable, "-c", KERAS_MODEL, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return path


def test_keras_file_on_tensorflow_keeps_every_layer(keras_file, tmp_path):
    pytest.importorskip("tf2onnx", reason="Keras' ONNX export on tensorflow needs tf2onnx")
    out = tmp_path / "r"
    proc = run_cli("scan", str(keras_file), "--keras-backend", "tensorflow", "--backends", "onnxruntime-cpu",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["config"], r["layers"], r["status"]) for r in records] == [
        ("MaxPool k3 s2 p0", ["stem_pool"], "pass"), ("AveragePool k3 s1 p1", ["branch_pool"], "pass"),
        ("GlobalAveragePool", ["gap"], "pass")]
    assert all("/" in r["nodes"][0] for r in records)  # tf2onnx's scoped names, e.g. functional_1/gap_1/Mean
    assert "the exporter changed 0 of 3 pooling layer(s)" in proc.stdout


def test_keras_file_with_dynamic_sizes_is_read_at_the_given_input_shape(tmp_path):
    """A model saved with None spatial sizes: its layers keep None, and every one was listed
    as changed by the exporter ("input shape [1, None, None, 4] is not static"). The layers'
    input shapes are now traced through the model for the --input-shape sizes."""
    pytest.importorskip("tf2onnx", reason="Keras' ONNX export on tensorflow needs tf2onnx")
    path = tmp_path / "dyn.keras"
    script = KERAS_MODEL.replace("keras.Input((16, 16, 3)", "keras.Input((None, None, 3)")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "r"
    proc = run_cli("scan", str(path), "--input-shape", "image=1x16x16x3", "--keras-backend", "tensorflow",
                   "--backends", "onnxruntime-cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the exporter changed 0 of 3 pooling layer(s)" in proc.stdout and "not static" not in proc.stdout
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["config"], r["layers"], r["status"], r["params"]["input_shape"]) for r in records] == [
        ("MaxPool k3 s2 p0", ["stem_pool"], "pass", [1, 4, 14, 14]),
        ("AveragePool k3 s1 p1", ["branch_pool"], "pass", [1, 4, 6, 6]),
        ("GlobalAveragePool", ["gap"], "pass", [1, 4, 6, 6])]


@pytest.mark.slow
def test_keras_file_on_torch_lists_global_pooling_rewritten_as_reducemean(keras_file, tmp_path):
    pytest.importorskip("onnxscript", reason="Keras' ONNX export on torch needs onnxscript")
    out = tmp_path / "r"
    proc = run_cli("scan", str(keras_file), "--keras-backend", "torch", "--backends", "onnxruntime-cpu",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ("layer `gap` (GlobalAveragePooling2D, expected GlobalAveragePool) became no pooling node of that "
            "configuration in the exported graph (not matched to any layer: ReduceMean `node_mean`)") in proc.stdout
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["config"]: r["layers"] for r in records if r["backend"] != "scan"} == {
        "MaxPool k3 s2 p0": ["stem_pool"], "AveragePool k3 s1 p1": ["branch_pool"]}


def test_bad_keras_input(keras_file, tmp_path):
    _one_line_error(run_cli("scan", str(tmp_path / "missing.keras")), "missing.keras: no such Keras file")
    junk = tmp_path / "junk.keras"
    junk.write_text("not a zip")
    _one_line_error(run_cli("scan", str(junk)), "junk.keras: Keras cannot load it")
    _one_line_error(run_cli("scan", str(keras_file), "--input-shape", "a=1x8x8x3", "--input-shape", "b=1x8x8x3"),
                    "--input-shape names 'a', which is not an input")


def _two_pool_model(path, *, repeat_kernel: bool = False, nested: bool = False) -> None:
    """MaxPool `top` on X; optionally a kernel_shape given twice, or a second MaxPool inside an If."""
    import onnx
    from onnx import TensorProto, helper

    from conftest import make_model

    pool = helper.make_node("MaxPool", ["X"], ["Y"], name="top", kernel_shape=[2, 2], strides=[2, 2])
    if repeat_kernel:
        pool.attribute.append(helper.make_attribute("kernel_shape", [3, 3]))
    nodes, outputs = [pool], [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1, 2, 2])]
    if nested:
        branch = helper.make_graph([helper.make_node("MaxPool", ["X"], ["Z"], name="inner", kernel_shape=[2, 2])],
                                   "b", [], [helper.make_tensor_value_info("Z", TensorProto.FLOAT, None)])
        nodes.append(helper.make_node("If", ["C"], ["W"], name="cond", then_branch=branch, else_branch=branch))
        outputs.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, None))
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, 4, 4])]
    if nested:
        inputs.append(helper.make_tensor_value_info("C", TensorProto.BOOL, []))
    onnx.save(make_model(helper.make_graph(nodes, "g", inputs, outputs), 17), path)


def test_a_node_no_backend_verified_is_said_even_with_quiet(tmp_path):
    """A pooling node inside an If is not checked: the run may exit 0 for the other node, but
    never without saying that one node was not verified."""
    _two_pool_model(tmp_path / "m.onnx", nested=True)
    proc = run_cli("scan", str(tmp_path / "m.onnx"), "--backends", "onnxruntime-cpu", "--out", str(tmp_path / "o"),
                   "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "2 of 3 pooling node(s) NOT VERIFIED (inner, inner#2)" in proc.stderr  # the then and else branch


def test_require_verified_fails_a_scan_that_left_a_node_unverified(tmp_path):
    """A gate that must cover every node: the same model exits 2 with --require-verified (its
    records kept), and a model whose every node ran still exits 0."""
    _two_pool_model(tmp_path / "m.onnx", nested=True)
    out = tmp_path / "o"
    proc = run_cli("scan", str(tmp_path / "m.onnx"), "--backends", "onnxruntime-cpu", "--out", str(out),
                   "--quiet", "--require-verified")
    assert proc.returncode == 2, proc.stderr
    line = [x for x in proc.stderr.splitlines() if "NOT VERIFIED" in x]
    assert len(line) == 1 and "error: 2 of 3" in line[0] and "--require-verified fails the scan" in line[0]
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert {(r["backend"], r["status"]) for r in records} == {("onnxruntime-cpu", "pass"), ("scan", "unsupported")}
    _two_pool_model(tmp_path / "flat.onnx")
    proc = run_cli("scan", str(tmp_path / "flat.onnx"), "--backends", "onnxruntime-cpu", "--out", str(tmp_path / "f"),
                   "--quiet", "--require-verified")
    assert proc.returncode == 0, proc.stderr
    assert "NOT VERIFIED" not in proc.stderr


def test_an_attribute_given_twice_is_not_read_as_the_last_one(tmp_path):
    """ONNX Runtime refuses such a node; a dict kept the second kernel_shape and judged it."""
    _two_pool_model(tmp_path / "m.onnx", repeat_kernel=True)
    proc = run_cli("scan", str(tmp_path / "m.onnx"), "--backends", "onnxruntime-cpu", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "'kernel_shape' appears more than once" in proc.stdout + proc.stderr
