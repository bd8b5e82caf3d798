"""da4ml tracers of the conformer's layers: strided Conv1D (the subsampling front end), hwflow's depthwise conv1d
with folded batch norm, swish and GLU (sigmoid table as a ROM lookup).

Runs only in ``.venv-rtl``. Each tracer follows the C++ kernel cast by cast and is checked bit for bit against its
numpy reference (hwflow.reference.conformer) and the C simulation:

- ``conv1d``: hls4ml's conv_1d_latency_cl is im2col + DenseLatency, so each output frame is
  ``trace_graph.dense`` over its zero-padded window of ``filt_width`` frames (tap-major), every product and the
  running sum held in accum_t;
- ``depthwise1d``: ``acc = accum(bias); acc = accum(acc + accum(w[k, c] * x)); result(acc)`` over the taps inside
  the input (constant weights: shift-and-add);
- ``swish`` / ``glu``: index ``k = ap_fixed<log2 N, log2 N, TRN, SAT>(x * 2**log2_scale)`` (a bit slice and a
  clamp), ``s = table[k + N/2]`` (a da4ml lookup table of N entries, as the softmax tracer reads its exp table),
  ``y = result(x * s)`` (one variable x variable product, then one cast).

The frame-window helpers (``window_rows``) are shared with the folded design (hwflow.rtl.fold_conv), which feeds
each frame segment the window of neighbours its convolutions need.
"""

from __future__ import annotations

import numpy as np
from da4ml.trace import FixedVariableArray
from da4ml.trace.fixed_variable import FixedVariable

from . import trace_graph as T


def _arr(vals, like: FixedVariableArray, shape) -> FixedVariableArray:
    out = np.empty(len(vals), dtype=object)
    for n, v in enumerate(vals):
        out[n] = T._as_var(v, like.hwconf)
    return FixedVariableArray(out.reshape(shape), like.solver_options, hwconf=like.hwconf)


def window_rows(x: FixedVariableArray, out_rows: int, width: int, stride: int, pad_left: int) -> FixedVariableArray:
    """Return (out_rows, width * F) windows of the rows of x (rows, F): row t holds x rows t*stride - pad_left + k
    for k < width (tap-major), zero outside x (hls4ml's im2col buffer with 'same'/'valid' padding)."""
    rows, F = x.shape[0], x.shape[-1]
    zero = FixedVariable.from_const(0.0, hwconf=x.hwconf)
    out = np.empty((out_rows, width * F), dtype=object)
    for t in range(out_rows):
        for k in range(width):
            src = t * stride - pad_left + k
            out[t, k * F : (k + 1) * F] = x._vars[src] if 0 <= src < rows else [zero] * F
    return FixedVariableArray(out, x.solver_options, hwconf=x.hwconf)


def op_conv1d(x: FixedVariableArray, layer: dict, arrays: dict, padded: bool = False) -> FixedVariableArray:
    """Return hls4ml's Conv1D (io_parallel Latency) of x (in_width, n_chan); with ``padded`` x already holds the
    zero-padded frames (pad_left + in_width + pad_right rows, as the folded design's window buffer)."""
    a, ty = layer["attrs"], layer["types"]
    K, C, S = int(a["filt_width"]), int(a["n_chan"]), int(a["stride"])
    x = x.reshape((-1, C))
    n_out = (x.shape[0] - K) // S + 1 if padded else int(a["out_width"])
    win = window_rows(x, n_out, K, S, 0 if padded else int(a["pad_left"]))
    W = arrays[layer["arrays"]["weight"]].reshape(K * C, -1)
    b = arrays[layer["arrays"]["bias"]].reshape(-1)
    return T.dense(win, W, b, ty.get("accum", ty["result"]), ty["result"])


def op_depthwise1d(
    x: FixedVariableArray, layer: dict, arrays: dict, slice_bits: int = T.SLICE_BITS, padded: bool = False
) -> FixedVariableArray:
    """Return hwflow's depthwise conv1d (stride 1, batch norm folded) of x (in_width, n_chan); with ``padded``
    x holds pad_left zero frames before the input and enough after it (the folded design's window)."""
    a, ty = layer["attrs"], layer["types"]
    K, C = int(a["filt_width"]), int(a["n_chan"])
    x = x.reshape((-1, C))
    pl = 0 if padded else int(a["pad_left"])
    n_out = x.shape[0] - K + 1 if padded else int(a["out_width"])
    W = arrays[layer["arrays"]["weight"]].reshape(K, C)
    b = arrays[layer["arrays"]["bias"]].reshape(C)
    acc_t, res_t = ty["accum"], ty["result"]
    vals = []
    for t in range(n_out):
        for c in range(C):
            acc = T._cast_const(float(b[c]), acc_t)
            for k in range(K):
                src = t + k - pl
                if not 0 <= src < x.shape[0] or W[k, c] == 0:
                    continue  # padded taps are skipped in C++; a zero weight adds accum(0), the identity
                acc = T.cast_var(T.cast_var(x._vars[src, c] * float(W[k, c]), acc_t) + acc, acc_t)
            vals.append(T.cast_var(acc, res_t))
    return _arr(vals, x, (n_out, C))


def _index_type(layer: dict) -> dict:
    """Return the neutral type of the C++ table index k: ap_fixed<log2 N, log2 N, AP_TRN, AP_SAT>."""
    n = int(layer["attrs"]["log2_size"])
    return {
        "ctype": f"ap_fixed<{n},{n},AP_TRN,AP_SAT>",
        "signed": True,
        "width": n,
        "integer": n,
        "frac": 0,
        "rounding": "TRN",
        "saturation": "SAT",
        "sat_bits": 0,
    }


def sigmoid_lookup(v, layer: dict, arrays: dict):
    """Return table[k + N/2] for k = ap_fixed<log2 N, log2 N, TRN, SAT>(v * 2**log2_scale): a ROM read."""
    a = layer["attrs"]
    table = arrays[layer["arrays"]["table"]]
    half = int(a["table_size"]) // 2
    k = T.cast_var(v * 2.0 ** int(a["log2_scale"]) if isinstance(v, FixedVariable) else float(v), _index_type(layer))
    if not isinstance(k, FixedVariable) or k.low == k.high:
        kk = float(k.low) if isinstance(k, FixedVariable) else float(k)
        return float(table[int(kk) + half])
    return T.lut(k, lambda g: table[np.round(g).astype(np.int64) + half])


def _gate(a, b, layer: dict, arrays: dict, res_t: dict, slice_bits: int):
    """Return res_t(a * sigmoid_table(b)): the swish (a is b) and GLU product."""
    return T.cast_var(T.vmul(a, sigmoid_lookup(b, layer, arrays), slice_bits), res_t)


def op_swish(x: FixedVariableArray, layer: dict, arrays: dict, slice_bits: int = T.SLICE_BITS) -> FixedVariableArray:
    """Return hwflow's swish x * sigmoid_table(x) cast to result, element-wise."""
    res_t = layer["types"]["result"]
    return _arr([_gate(v, v, layer, arrays, res_t, slice_bits) for v in x._vars.ravel()], x, x.shape)


def op_glu(x: FixedVariableArray, layer: dict, arrays: dict, slice_bits: int = T.SLICE_BITS) -> FixedVariableArray:
    """Return hwflow's GLU a * sigmoid_table(b) over the last axis ([a, b] = the two halves), cast to result."""
    res_t = layer["types"]["result"]
    c2 = x.shape[-1]
    rows = x._vars.reshape(-1, c2)
    vals = [_gate(r[c], r[c2 // 2 + c], layer, arrays, res_t, slice_bits) for r in rows for c in range(c2 // 2)]
    return _arr(vals, x, (*x.shape[:-1], c2 // 2))
