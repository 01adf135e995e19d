"""The exporter side of `scan` for Keras files and torch factories, run in a child process.

A `.keras` file or a `package.module:factory` is turned into ONNX here, and its pooling
layers are listed with the ONNX pooling each should have become (input shape in NCHW,
attributes in ONNX terms). It runs as `python -m poolconform.scan_export REQUEST.json`:
Keras fixes its backend at import and a user's factory runs arbitrary code, so neither
touches the parent process. The answer is a JSON file: {"layers": [...]} or {"error": line}.
Frameworks are imported inside the export functions only.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from typing import Any

Layer = dict[str, Any]


class ExportFailure(Exception):
    """One line for the user; the parent raises it as a PoolconformError."""


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


def _tuple(value: Any, n: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * n


# ----------------------------------------------------------------- torch


def _torch_layer(qualname: str, module: Any, shape: tuple[int, ...]) -> Layer:
    """The ONNX pooling a torch pooling module should become, from its own attributes."""
    kind = type(module).__name__
    n = int(kind[-2])
    layer: Layer = {"name": qualname, "kind": kind, "input_shape": list(shape), "expected": None, "why": None}
    config = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"}
    layer["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()
                       if isinstance(v, (int, float, bool, tuple, list, type(None)))}
    if len(shape) != n + 2:
        layer["why"] = f"input of rank {len(shape)} (unbatched?): ONNX pooling needs (N, C, spatial...)"
        return layer
    if kind.startswith("Adaptive"):
        spatial = shape[2:]
        out = tuple(s if o is None else int(o) for s, o in zip(spatial, _tuple_or_none(module.output_size, n)))
        op = "AveragePool" if "Avg" in kind else "MaxPool"
        if all(o == 1 for o in out):
            layer["expected"] = {"op": "Global" + op}
        elif all(o > 0 and s % o == 0 for s, o in zip(spatial, out)):
            k = tuple(s // o for s, o in zip(spatial, out))
            layer["expected"] = {"op": op, "kernel": k, "strides": k}
        else:
            layer["why"] = (f"output size {list(out)} is not a factor of the input size {list(spatial)}: "
                            f"no ONNX {op} computes it")
        return layer
    kernel = _tuple(module.kernel_size, n)
    strides = _tuple(module.stride or module.kernel_size, n)
    if kind.startswith("LPPool"):
        p = float(module.norm_type)
        if p != int(p):
            layer["why"] = f"norm_type={p}: ONNX LpPool takes an integer p"
        else:
            layer["expected"] = {"op": "LpPool", "kernel": kernel, "strides": strides, "p": int(p),
                                 "ceil_mode": bool(module.ceil_mode)}
        return layer
    pads = _tuple(module.padding, n) * 2
    if kind.startswith("MaxPool"):
        layer["expected"] = {"op": "MaxPool", "kernel": kernel, "strides": strides, "pads": pads,
                             "dilations": _tuple(module.dilation, n), "ceil_mode": bool(module.ceil_mode),
                             "with_indices": bool(module.return_indices)}
    elif getattr(module, "divisor_override", None):
        layer["why"] = f"divisor_override={module.divisor_override}: ONNX AveragePool has no such divisor"
    else:
        layer["expected"] = {"op": "AveragePool", "kernel": kernel, "strides": strides, "pads": pads,
                             "ceil_mode": bool(module.ceil_mode),
                             "count_include_pad": bool(module.count_include_pad)}
    return layer


def _tuple_or_none(value: Any, n: int) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


TORCH_POOLS = tuple(f"{p}{n}d" for p in ("MaxPool", "AvgPool", "LPPool", "AdaptiveAvgPool", "AdaptiveMaxPool")
                    for n in (1, 2, 3))


def export_torch(factory: str, inputs: list[tuple[str, list[int]]], opset: int, out: str) -> list[Layer]:
    """Build the module, run it once on random inputs to see each pooling layer's input
    shape, then torch.onnx.export(dynamo=False) it."""
    import torch

    module_name, _, attr = factory.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may raise anything while importing
        raise ExportFailure(f"{factory}: cannot import {module_name!r} ({first_line(exc)})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ExportFailure(f"{factory}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ExportFailure(f"{factory}: {attr!r} is a {type(obj).__name__}, not callable")
    try:
        net = obj()
    except Exception as exc:
        raise ExportFailure(f"{factory}: calling it raised {first_line(exc)}") from None
    if not isinstance(net, torch.nn.Module):
        raise ExportFailure(f"{factory}: returned a {type(net).__name__}, not a torch.nn.Module")
    net.eval()
    torch.manual_seed(0)
    tensors = tuple(torch.randn(*dims) for _, dims in inputs)
    layers: list[Layer] = []
    hooks = [m.register_forward_pre_hook(lambda mod, args, q=q: layers.append(
                 _torch_layer(q, mod, tuple(args[0].shape))))
             for q, m in net.named_modules() if type(m).__name__ in TORCH_POOLS]
    try:
        with torch.no_grad():
            net(*tensors)
    except Exception as exc:
        shown = ", ".join(f"{n}={'x'.join(map(str, d))}" for n, d in inputs)
        raise ExportFailure(f"{factory}: the module fails on the example input(s) {shown} ({first_line(exc)})") from None
    finally:
        for h in hooks:
            h.remove()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, tensors, out, dynamo=False, opset_version=opset,
                              input_names=[n for n, _ in inputs])
    except Exception as exc:
        odd = "; ".join(f"layer {l['name']!r} ({l['kind']}): {l['why']}" for l in layers if l["why"])
        raise ExportFailure(f"torch.onnx.export (opset {opset}) failed: {first_line(exc).split(' [Caused by')[0]}"
                            + (f"; pooling layers without an ONNX equivalent: {odd}" if odd else "")) from None
    return layers


# ----------------------------------------------------------------- keras


def _keras_layer(layer: Any, batch: int, traced: tuple | None = None) -> Layer:
    kind = type(layer).__name__
    config = layer.get_config()
    shape = list(traced if traced is not None else layer.input.shape)
    shape[0] = batch if shape[0] is None else shape[0]
    shown = {k: v for k, v in config.items() if k not in ("name", "trainable", "dtype")}
    entry: Layer = {"name": layer.name, "kind": kind, "config": shown, "expected": None, "why": None}
    if None in shape:
        entry["why"] = f"input shape {shape} is not static"
        entry["input_shape"] = None
        return entry
    nchw = config.get("data_format", "channels_last") == "channels_last"
    entry["input_shape"] = [shape[0], shape[-1], *shape[1:-1]] if nchw else shape
    n = len(shape) - 2
    if kind.startswith("Global"):
        entry["expected"] = {"op": "GlobalAveragePool" if "Average" in kind else "GlobalMaxPool"}
        return entry
    kernel = _tuple(config["pool_size"], n)
    strides = _tuple(config.get("strides") or config["pool_size"], n)
    auto_pad = "SAME_UPPER" if config.get("padding", "valid").lower() == "same" else "VALID"
    entry["expected"] = {"op": "MaxPool" if kind.startswith("Max") else "AveragePool", "kernel": kernel,
                         "strides": strides, "auto_pad": auto_pad}
    return entry


KERAS_POOLS = tuple(f"{p}{n}D" for p in ("MaxPooling", "AveragePooling", "GlobalAveragePooling", "GlobalMaxPooling")
                    for n in (1, 2, 3))


def _traced_input_shapes(keras: Any, model: Any, pools: list[Any], specs: list[Any]) -> list[tuple | None]:
    """Each pooling layer's input shape for the --input-shape sizes: a saved model may declare
    None spatial sizes, which its layers keep. Traced through the model's own graph (a model
    of the layers' inputs, its output spec for the given input shapes); None for a layer the
    trace cannot reach (inside a nested model), which then keeps its saved shape."""
    given = [keras.KerasTensor(tuple(s.shape)) for s in specs]
    out: list[tuple | None] = []
    for layer in pools:
        try:
            probe = keras.Model(model.inputs, layer.input)
            spec = probe.compute_output_spec(given if len(given) > 1 else given[0])
            out.append(tuple(spec.shape))
        except Exception:  # noqa: BLE001  a layer outside the top graph: its saved shape stands
            out.append(None)
    return out


def _keras_pool_layers(model: Any) -> list[Any]:
    found = []
    for layer in model.layers:
        if type(layer).__name__ in KERAS_POOLS:
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(_keras_pool_layers(layer))
    return found


def export_keras(path: str, inputs: list[tuple[str, list[int]]], opset: int | None, backend: str | None,
                 out: str) -> list[Layer]:
    """Load the .keras file on the chosen Keras backend and `model.export(format="onnx")` it."""
    if backend:
        os.environ["KERAS_BACKEND"] = backend
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise ExportFailure(f"{path}: Keras cannot load it ({first_line(exc)})") from None
    given = dict(inputs)
    names = [getattr(t, "name", None) or f"input_{i}" for i, t in enumerate(model.inputs)]
    positional = len(inputs) == 1 and len(names) == 1  # one input: its --input-shape may use any name
    unknown = [n for n in given if n not in names]
    if unknown and not positional:
        raise ExportFailure(f"--input-shape names {unknown[0]!r}, which is not an input of {path}; "
                            f"inputs: {', '.join(repr(n) for n in names)}")
    specs = []
    for tensor, name in zip(model.inputs, names):
        dims = given.get(name) or (inputs[0][1] if positional else None)
        if dims is None:
            dims = [1 if (d is None and axis == 0) else d for axis, d in enumerate(tensor.shape)]
            if None in dims:
                example = "x".join("<?>" if d is None else str(d) for d in dims)
                raise ExportFailure(f"{path}: input {name!r} has shape {list(tensor.shape)}; pass its sizes with "
                                    f"--input-shape {name}={example}")
        specs.append(keras.InputSpec(shape=tuple(dims), dtype="float32", name=name))
    try:
        pools = _keras_pool_layers(model)
        traced = _traced_input_shapes(keras, model, pools, specs)
        layers = [_keras_layer(layer, specs[0].shape[0], shape) for layer, shape in zip(pools, traced)]
    except Exception as exc:  # a layer used twice has no single input shape
        raise ExportFailure(f"{path}: cannot read its pooling layers ({first_line(exc)})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.export(out, format="onnx", verbose=False, opset_version=opset,
                         input_signature=specs if len(specs) == 1 else [specs])
    except Exception as exc:
        raise ExportFailure(f"keras model.export(format='onnx') on the {keras.config.backend()} backend "
                            f"failed: {first_line(exc)}") from None
    return layers


def main(request_path: str) -> int:
    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)
    inputs = [(name, list(dims)) for name, dims in request["inputs"]]
    try:
        if request["kind"] == "torch":
            layers = export_torch(request["source"], inputs, request["opset"], request["out"])
        else:
            layers = export_keras(request["source"], inputs, request["opset"], request["backend"], request["out"])
        answer: dict[str, Any] = {"layers": layers}
    except ExportFailure as exc:
        answer = {"error": str(exc)}
    with open(request["answer"], "w", encoding="utf-8") as f:
        json.dump(answer, f, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
