"""The graph a pooling node sits in: what each context means, when a case may have one, and
what the node then computes on.

Real models rarely hold a lone static pooling node; upstream bugs show up around it
(docs/conformance-space.md, "Contexts and quantized pooling"):

- `single`: the node alone (every case before contexts existed; the default).
- `pad`: an explicit Pad node (constant 0, edge or reflect) supplies the case's `pads`; the
  pool itself has none. An optimizer that folds the Pad into the pool's pads is wrong unless
  the mode is constant and the op ignores the padded values the same way (it never does for
  MaxPool over negative inputs, nor for AveragePool without count_include_pad).
- `dynamic`: the same node, with symbolic N, C and spatial sizes in the declared input and output.
- `unpool`: MaxPool with Indices feeding MaxUnpool (with or without `output_shape`).

This module is pure arithmetic on the case (no framework, no onnx import).
"""

from __future__ import annotations

from typing import cast

import numpy as np

from poolconform import shapes
from poolconform.attributes import CONTEXTS, PAD_MODES, PadMode
from poolconform.case import PoolCase
from poolconform.errors import CaseError

__all__ = ["CONTEXTS", "PAD_MODES", "SINGLE", "check_context", "graph_output_shape", "pool_view",
           "translation_rejects"]

#: What a backend that translates cases into its own API expresses unless it declares more.
SINGLE = frozenset({"single"})
#: First opset with Pad's pads as an input and MaxUnpool's output_shape (Pad-11, MaxUnpool-11).
CONTEXT_OPSET = 11


def check_context(case: PoolCase) -> None:
    """CaseError (with a category a matrix counts drops under) when the context cannot hold the case."""
    if case.context not in CONTEXTS:
        raise CaseError(f"unknown context {case.context!r}; allowed: {', '.join(CONTEXTS)}")
    if case.pad_mode not in PAD_MODES:
        raise CaseError(f"unknown pad_mode {case.pad_mode!r}; allowed: {', '.join(PAD_MODES)}")
    if case.pad_mode != "constant" and case.context != "pad":
        raise CaseError(f"pad_mode={case.pad_mode!r} needs the pad context, not {case.context!r}",
                        category="pad_mode without the pad context")
    if case.unpool_shape and case.context != "unpool":
        raise CaseError(f"unpool_shape needs the unpool context, not {case.context!r}",
                        category="unpool_shape without the unpool context")
    if case.context == "single":
        return
    if case.opset < CONTEXT_OPSET and case.context in ("pad", "unpool"):
        raise CaseError(f"the {case.context} context needs opset >= {CONTEXT_OPSET} (Pad-11 / MaxUnpool-11), "
                        f"got {case.opset}", category=f"{case.context} context before opset {CONTEXT_OPSET}")
    if case.quant and case.context != "single":
        raise CaseError(f"quantized pooling runs in the single context only, not {case.context!r}",
                        category="quantized pooling in a context")
    if case.context == "pad":
        _check_pad(case)
    elif case.context == "unpool":
        _check_unpool(case)


def _check_pad(case: PoolCase) -> None:
    if case.is_global or case.auto_pad != "NOTSET" or not any(case.pads):
        raise CaseError("the pad context moves the case's explicit pads into a Pad node; "
                        f"{case.id if case.is_global else 'this case'} has none",
                        category="pad context without explicit pads")
    if case.count_include_pad:
        raise CaseError("count_include_pad means nothing after a Pad node (the pool has no pads)",
                        category="count_include_pad in the pad context")
    if case.pad_mode == "reflect":
        rank = case.rank
        for a in range(rank):
            if max(case.pads[a], case.pads[a + rank]) >= case.spatial[a]:
                raise CaseError(f"reflect padding {case.pads!r} needs every pad smaller than the input size "
                                f"{case.spatial!r}", category="reflect pad not smaller than the input")


def _check_unpool(case: PoolCase) -> None:
    if case.op != "MaxPool":
        raise CaseError(f"the unpool context is MaxPool -> MaxUnpool, not {case.op}",
                        category="unpool context on an op other than MaxPool")
    if case.with_indices or case.storage_order:
        raise CaseError("the unpool context wires MaxPool's row-major Indices into MaxUnpool; "
                        "with_indices and storage_order stay at their defaults",
                        category="Indices options in the unpool context")
    if case.auto_pad != "NOTSET" or any(d != 1 for d in case.dilations):
        raise CaseError("MaxUnpool has no auto_pad and no dilations", category="auto_pad or dilations with unpool")
    if not case.unpool_shape and unpool_default_shape(case) != case.input_shape:
        raise CaseError(f"without output_shape MaxUnpool gives {unpool_default_shape(case)!r}, not the input's "
                        f"{case.input_shape!r}, so the flat Indices would land elsewhere",
                        category="unpool default shape differs from the input")


def unpool_default_shape(case: PoolCase) -> tuple[int, ...]:
    """MaxUnpool's output shape without `output_shape`: (out - 1) * stride + kernel - pads per axis."""
    rank = case.rank
    out = shapes.spatial_output_shape(case.replace(context="single"))
    return case.input_shape[:2] + tuple(
        (out[a] - 1) * case.strides[a] + case.kernel[a] - case.pads[a] - case.pads[a + rank] for a in range(rank))


def pool_view(case: PoolCase, inputs: list[np.ndarray] | None = None) -> tuple[PoolCase, list[np.ndarray] | None]:
    """The single-node case the pooling node computes, and its input: for `pad`, the pool over
    the padded input with no pads of its own; for the other contexts the node as it is."""
    inner = case.replace(context="single", pad_mode="constant", unpool_shape=False)
    if case.context != "pad":
        return inner, inputs
    rank = case.rank
    width = [(0, 0), (0, 0)] + [(case.pads[a], case.pads[a + rank]) for a in range(rank)]
    padded_shape = case.input_shape[:2] + tuple(
        n + case.pads[a] + case.pads[a + rank] for a, n in enumerate(case.spatial))
    inner = inner.replace(input_shape=padded_shape, pads=(0,) * (2 * rank))
    if inputs is None:
        return inner, None
    x = np.asarray(inputs[0])
    mode = cast(PadMode, case.pad_mode)  # check_context admits PAD_MODES only
    return inner, [np.pad(x, width, mode=mode)]


def judged_view(case: PoolCase, inputs: list[np.ndarray]) -> tuple[PoolCase, list[np.ndarray]]:
    """The case and inputs a verdict's tolerance reads: the pooling node and the input it sees
    (MaxUnpool only moves values, so an unpool case is judged as exactly as its MaxPool)."""
    inner, seen = pool_view(case, inputs)
    assert seen is not None
    return inner, seen


def graph_output_shape(case: PoolCase) -> tuple[int, ...]:
    """Shape of the graph's (first) output: the pool's, or MaxUnpool's in the unpool context."""
    if case.context == "unpool":
        return case.input_shape if case.unpool_shape else unpool_default_shape(case)
    return shapes.output_shape(pool_view(case)[0])


def translation_rejects(case: PoolCase, expressed: frozenset[str] | set[str] = SINGLE) -> str | None:
    """Why a backend that translates the case into its own API (rather than reading the ONNX
    model) cannot run it: a context it does not declare in `contexts`, or a quantized form."""
    if case.context not in expressed:
        return (f"unsupported: the {case.context} context is a graph this backend does not translate "
                f"(it expresses {', '.join(sorted(expressed))}); backends that read ONNX run it")
    if case.quant:
        return "unsupported: quantized pooling (QLinear / QDQ) is an ONNX graph this backend does not translate"
    return None
