"""The oracle for a pooling node in a context (poolconform.contexts) or in quantized form.

Each context is computed exactly from the single-node oracle (poolconform.oracle):
- `pad`: np.pad with the Pad node's mode (constant 0, edge, reflect), then the pool with no
  pads of its own: a MaxPool after a constant-0 pad of negative inputs sees the zeros;
- `dynamic`: the node itself (symbolic shapes change nothing the spec computes);
- `unpool`: MaxPool's values scattered to their flat row-major Indices in a zero tensor of
  MaxUnpool's output shape, as the MaxUnpool text says (a later window writing the same
  index writes the same maximum);
- quantized: dequantize, the float oracle, requantize (poolconform.quantized).
"""

from __future__ import annotations

import numpy as np

from poolconform import contexts, quantized
from poolconform.case import PoolCase
from poolconform.quantized import FloatOracle


def reference_outputs(case: PoolCase, inputs: list[np.ndarray], single: FloatOracle) -> list[np.ndarray]:
    """The expected outputs of the whole graph in float64; `single` is the single-node oracle
    (poolconform.oracle.reference_outputs, which calls this: it is passed in, not imported)."""
    if case.quant:
        return quantized.reference_outputs(case, inputs, single)
    inner, pool_inputs = contexts.pool_view(case, inputs)
    assert pool_inputs is not None
    if case.context != "unpool":
        return single(inner, pool_inputs)
    values, indices = single(inner.replace(with_indices=True, storage_order=0), pool_inputs)
    shape = contexts.graph_output_shape(case)
    out = np.zeros(int(np.prod(shape)), dtype=np.float64)
    out[indices.ravel()] = values.ravel()
    return [out.reshape(shape)]
