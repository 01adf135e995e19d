"""ONNX -> ONNX and ONNX -> framework converters, judged on the case's own model.

`onnxsim->onnxruntime-cpu` runs the model that onnx-simplifier makes of the case's model on
ORT CPU (the note says whether the simplifier changed the graph); `onnx2torch` runs the
torch.nn module that onnx2torch makes of it on PyTorch CPU. Both read the ONNX model, so
they run any case, and both are opt-in (installed by the `onnxsim` / `onnx2torch` extras).
A converter that refuses a model records `unsupported` with its own words; one that
converts it into something wrong is judged by the oracle like any backend.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from poolconform.backends.base import BaseBackend, Unsupported, framework_version
from poolconform.case import PoolCase
from poolconform.onnx_export import model_bytes


def _first_line(exc: BaseException) -> str:
    line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


class _Converter(BaseBackend):
    """Convert each distinct model once; remember what the conversion did for the note."""

    reads_onnx = True
    opt_in = True
    #: The conversion call, as refusals name it.
    converter = ""

    def __init__(self) -> None:
        self._converted = functools.lru_cache(maxsize=256)(self._convert_or_refuse)

    def _convert_or_refuse(self, model: bytes) -> tuple[object, str]:
        try:
            return self._convert(model)
        except Exception as exc:  # noqa: BLE001  the converter refused: its own words, not a crash
            return Unsupported(f"unsupported: {self.converter} refuses: {_first_line(exc)}"), ""

    def _convert(self, model: bytes) -> tuple[object, str]:
        """What runs the model, and one line on what the conversion did."""
        raise NotImplementedError

    def _runnable(self, case: PoolCase) -> object:
        converted, _ = self._converted(model_bytes(case))
        if isinstance(converted, Unsupported):
            raise Unsupported(converted.reason)
        return converted

    def note(self, case: PoolCase) -> str | None:
        converted, note = self._converted(model_bytes(case))
        return None if isinstance(converted, Unsupported) else (note or None)


class OnnxSimOnnxRuntime(_Converter):
    """onnxsim.simplify(model) -> ONNX Runtime CPU (all graph optimizations, ORT's default)."""

    name = "onnxsim->onnxruntime-cpu"
    framework = "onnxsim"
    converter = "onnxsim.simplify"

    def available(self) -> str | None:
        for module in ("onnxsim", "onnxruntime"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install 'poolconform[onnxsim]')"
        return None

    def version(self) -> str:
        return f"{framework_version('onnxsim')} + onnxruntime {framework_version('onnxruntime')}"

    def _convert(self, model: bytes) -> tuple[object, str]:
        import onnx
        import onnxsim

        from poolconform.roundtrip import _session, describe_export

        original = onnx.load_from_string(model)
        simplified, checked = onnxsim.simplify(original)
        before, after = describe_export(original), describe_export(simplified)
        if before == after:
            note = "onnxsim left the graph as it was"
        else:
            note = (f"onnxsim changed the graph: {before.removeprefix('exported ')} -> "
                    f"{after.removeprefix('exported ')}")
        if not checked:
            note += "; onnxsim's own check of the result failed"
        return _session(simplified.SerializeToString()), note

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        session = self._runnable(case)
        feeds = {meta.name: x for meta, x in zip(session.get_inputs(), inputs)}  # type: ignore[attr-defined]
        return [np.asarray(y) for y in session.run(None, feeds)]  # type: ignore[attr-defined]


class Onnx2Torch(_Converter):
    """onnx2torch.convert(model) -> the torch.nn module it builds, run on PyTorch CPU.

    onnx2torch imports torchvision, which must be built for the installed torch: torch
    2.13.0+cpu needs torchvision==0.28.0+cpu (https://download.pytorch.org/whl/cpu); the
    PyPI torchvision 0.28.0 wheel is built against CUDA torch and fails to import on it.
    """

    name = "onnx2torch"
    framework = "onnx2torch"
    converter = "onnx2torch.convert"

    def available(self) -> str | None:
        for module in ("torch", "onnx2torch"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install 'poolconform[onnx2torch]')"
        try:
            import onnx2torch  # noqa: F401  imports torchvision, which must match torch's build
        except Exception as exc:  # noqa: BLE001  a torchvision built for another torch fails here
            return (f"onnx2torch does not import: {_first_line(exc)} (torchvision "
                    f"{framework_version('torchvision') or '?'} must be built for torch "
                    f"{framework_version('torch')})")
        return None

    def version(self) -> str:
        return (f"{framework_version('onnx2torch')} on torch {framework_version('torch')}, "
                f"torchvision {framework_version('torchvision')}")

    def _convert(self, model: bytes) -> tuple[object, str]:
        import onnx
        import onnx2torch

        module = onnx2torch.convert(onnx.load_from_string(model)).eval()
        kinds = sorted({type(m).__name__ for m in module.modules() if m is not module})
        return module, f"converted to {', '.join(kinds) or type(module).__name__}"

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        from poolconform.backends.torch_backend import _to_numpy, _to_torch

        module = self._runnable(case)
        with torch.no_grad():
            result = module(*[_to_torch(x, "cpu") for x in inputs])  # type: ignore[operator]
        return [_to_numpy(t) for t in (result if isinstance(result, (tuple, list)) else (result,))]


#: onnx2tf fetches this file from GitHub for its own shape-estimation inference when every
#: input is a 4-D image batch of 3 channels, unless the current folder holds it. Offline it
#: would fail, so the worker writes one (uniform [0, 1), fixed seed) in its scratch folder:
#: the data feed onnx2tf's checks, not the converted model.
ONNX2TF_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
ONNX2TF_ENV_HINT = ("it pins its own TensorFlow, onnx, onnxruntime and numpy 1.x, so it lives in its own "
                    "environment: poolconform env create onnx2tf onnx2tf==1.29.24, then pass the "
                    "--backend-python 'onnx2tf->litert=...' it prints (README \"Converters\")")


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(N, C, D1..Dk) -> (N, D1..Dk, C): the layout onnx2tf gives tensors of rank 3 and more."""
    return (shape[0], *shape[2:], shape[1]) if len(shape) >= 3 else shape


def _moved(declared: tuple[int, ...], onnx_shape: tuple[int, ...], default: bool) -> bool:
    """Whether a tflite tensor declared as `declared` is the channels-last form of the ONNX
    tensor of `onnx_shape`. Where both read alike (C equal to every spatial size), `default`:
    onnx2tf makes every tensor of rank 3 and more channels-last unless told otherwise."""
    last = _channels_last(onnx_shape)
    if declared == last and declared != onnx_shape:
        return True
    return default and declared == last


def _output_moved(declared: tuple[int, ...], onnx_shape: tuple[int, ...], fed_last: bool) -> bool:
    """`_moved` for an output; also True for a channels-last output of a wrong spatial shape
    (channels last, the input fed channels-last), so the record compares NCHW with NCHW."""
    if _moved(declared, onnx_shape, fed_last):
        return True
    return (fed_last and len(declared) == len(onnx_shape) >= 3 and declared != onnx_shape
            and declared[-1] == onnx_shape[1])


@dataclass
class _LiteRTModel:
    """A converted model and the layout of each tensor, decided once from the declared shapes."""

    interpreter: Any
    inputs: list[tuple[int, bool, Any]]  # (tensor index, fed channels-last, declared dtype) in ONNX input order
    outputs: list[tuple[int, bool]]  # (tensor index, comes out channels-last) in ONNX output order


def _onnx_shapes(values: Any) -> list[tuple[int, ...]]:
    return [tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in values]


def _by_name(details: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """The tflite tensors in the ONNX graph's order (onnx2tf copies the ONNX names when told;
    tflite may suffix them), falling back to tensor order."""
    found = [next((d for d in details if d["name"] == n or d["name"].startswith(n + ":")), None) for n in names]
    if all(found) and len({id(d) for d in found}) == len(found):
        return found  # type: ignore[return-value]
    return sorted(details, key=lambda d: d["index"])


class Onnx2TfLiteRT(_Converter):
    """onnx2tf.convert(model) -> its float32 .tflite flatbuffer, run on the LiteRT interpreter.

    onnx2tf turns NCHW into NHWC: the tflite model takes and gives channels-last tensors,
    so each input is transposed to the layout the model declares and each output back to
    the ONNX layout (decided from the declared shapes against the ONNX model's own); the
    note says so. Conversion (TensorFlow tracing plus the TFLite converter) costs about a
    second per distinct model.
    """

    name = "onnx2tf->litert"
    framework = "onnx2tf"
    converter = "onnx2tf.convert"

    def available(self) -> str | None:
        for module, distribution in (("onnx2tf", "onnx2tf"), ("ai_edge_litert", "ai-edge-litert")):
            if importlib.util.find_spec(module) is None:
                return f"{distribution} is not installed in {sys.executable}: {ONNX2TF_ENV_HINT}"
        return None

    def version(self) -> str:
        return (f"{framework_version('onnx2tf')} on TensorFlow {framework_version('tensorflow')}, "
                f"LiteRT {framework_version('ai-edge-litert')}")

    def _convert(self, model: bytes) -> tuple[object, str]:
        import onnx
        from ai_edge_litert.interpreter import Interpreter

        graph = onnx.shape_inference.infer_shapes(onnx.load_from_string(model)).graph
        interpreter = Interpreter(model_content=_onnx2tf_flatbuffer(model))
        interpreter.allocate_tensors()
        ins = _by_name(interpreter.get_input_details(), [v.name for v in graph.input])
        outs = _by_name(interpreter.get_output_details(), [v.name for v in graph.output])
        declared = [tuple(int(n) for n in d["shape"]) for d in ins]
        inputs = [(d["index"], _moved(s, o, True), np.dtype(d["dtype"]))
                  for d, s, o in zip(ins, declared, _onnx_shapes(graph.input))]
        fed_last = any(moved for _, moved, _ in inputs)
        outputs = [(d["index"], _output_moved(tuple(int(n) for n in d["shape"]), o, fed_last))
                   for d, o in zip(outs, _onnx_shapes(graph.output))]
        moves = [what for what, moved in (("the input to channels-last", fed_last),
                                          ("the output back", any(m for _, m in outputs))) if moved]
        note = ("onnx2tf float32 .tflite on LiteRT (input declared "
                + ", ".join("x".join(map(str, s)) + f" {np.dtype(d['dtype']).name}" for s, d in zip(declared, ins))
                + (f"); poolconform transposed {' and '.join(moves)}" if moves else "); no transpose"))
        onnx_types = [onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type) for v in graph.input]
        cast = sorted({f"{want.name} to {got.name}" for want, (_, _, got) in zip(onnx_types, inputs) if want != got})
        if cast:
            note += f"; poolconform cast the inputs ({', '.join(cast)}) as the .tflite declares"
        return _LiteRTModel(interpreter, inputs, outputs), note

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        converted = self._runnable(case)
        assert isinstance(converted, _LiteRTModel)
        interpreter = converted.interpreter
        for (index, last, dtype), x in zip(converted.inputs, inputs):
            fed = np.ascontiguousarray(np.moveaxis(x, 1, -1) if last else x).astype(dtype, copy=False)
            interpreter.set_tensor(index, fed)
        interpreter.invoke()
        outputs = []
        for index, last in converted.outputs:
            y = np.array(interpreter.get_tensor(index))
            outputs.append(np.ascontiguousarray(np.moveaxis(y, -1, 1)) if last else y)
        return outputs


def _onnx2tf_flatbuffer(model: bytes) -> bytes:
    """The float32 .tflite that onnx2tf writes for `model`, converted as its command line does
    (`onnx2tf -i model.onnx`: from a file, so it runs onnxsim on it three times first) in a
    scratch folder (it writes a SavedModel and both tflite precisions there, and reads its
    sample data from the current folder). A refusal raises with the last error it printed."""
    import contextlib
    import io
    import os
    import tempfile

    import onnx2tf

    said = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="poolconform-onnx2tf-") as scratch:
        np.save(os.path.join(scratch, ONNX2TF_SAMPLE_FILE),
                np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
        source = os.path.join(scratch, "model.onnx")
        with open(source, "wb") as f:
            f.write(model)
        here = os.getcwd()
        os.chdir(scratch)
        try:
            with contextlib.redirect_stdout(said):  # its own command line's path: a file, onnxsim x3
                onnx2tf.convert(input_onnx_file_path=source, output_folder_path=scratch,
                                copy_onnx_input_output_names_to_tflite=True, verbosity="error")
        except SystemExit as exc:  # onnx2tf reports a refusal by printing it and exiting
            raise RuntimeError(_last_error(said.getvalue()) or f"onnx2tf exited with {exc.code}") from None
        finally:
            os.chdir(here)
        flatbuffer = os.path.join(scratch, "model_float32.tflite")
        if not os.path.isfile(flatbuffer):
            raise RuntimeError(_last_error(said.getvalue()) or "onnx2tf wrote no model_float32.tflite")
        with open(flatbuffer, "rb") as f:
            return f.read()


def _last_error(printed: str) -> str:
    """The last line onnx2tf printed as an error (ANSI colours removed), or ''."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in printed.splitlines()]
    errors = [ln for ln in lines if "ERROR" in ln.upper()]
    return errors[-1] if errors else ""
