"""Trace a neutral-file graph through da4ml: every op as exact fixed-point operations on FixedVariableArrays.

Runs only in ``.venv-rtl`` (numpy >= 2, da4ml). The semantics follow hls4ml's io_parallel C++ kernels op by
op (see hwflow/rtl/export.py for the format). Constant-weight products go through da4ml's CMVM (distributed
arithmetic: shift-and-add, no DSPs); casts implement every ap_fixed rounding mode (da4ml itself offers only
TRN and RND, so RND_CONV, TRN_ZERO, RND_ZERO, RND_INF and RND_MIN_INF are built here from its adders, bit
slices and MSB muxes) and the WRAP/SAT/SAT_SYM overflow modes (SAT_ZERO is refused by name).
"""
from __future__ import annotations

import math

import numpy as np

from da4ml.trace import FixedVariableArray, FixedVariableArrayInput, HWConfig
from da4ml.trace.fixed_variable import FixedVariable


class UnsupportedOp(Exception):
    """A layer/op/mode the RTL tracer does not implement; the message names it."""


def kif(t: dict) -> tuple[int, int, int]:
    """Return da4ml's (keep_negative, integer bits without sign, fractional bits) of a neutral type."""
    k = 1 if t["signed"] else 0
    return k, int(t["integer"]) - k, int(t["frac"])


def _trn(v: FixedVariable, f: int) -> FixedVariable:
    """Truncate (floor) to f fractional bits without any overflow handling."""
    k, i, _ = v.kif
    return v.quantize(k, i + 1, f, "WRAP", "TRN")


def _lsb(v: FixedVariable, f: int) -> FixedVariable:
    """Return the bit of weight 2**-f of v as a value in {0, 2**-f} (pure wiring)."""
    return v.quantize(0, 1 - f, f, "WRAP", "TRN")


def _round(v: FixedVariable, f: int, mode: str) -> FixedVariable:
    """Return v rounded to f fractional bits with an ap_fixed quantization mode (no overflow handling)."""
    if v.low == v.high:
        return v  # constants are folded by the caller
    s = 2.0**-f
    sv = float(v.step)
    if sv >= s:
        return v  # already on the grid: no rounding in any mode
    if mode == "TRN":
        return _trn(v, f)
    if mode == "RND":
        return _trn(v + s / 2, f)
    if mode == "RND_MIN_INF":
        return _trn(v + (s / 2 - sv), f)
    if mode == "RND_CONV":
        # half to even: ties go down when the truncated value is even, up when odd
        p = _lsb(_trn(v, f), f) * (sv / s)  # {0, sv}
        return _trn(v + (s / 2 - sv) + p, f)
    if mode in ("TRN_ZERO", "RND_ZERO", "RND_INF"):
        bias = {"TRN_ZERO": 0.0, "RND_ZERO": s / 2 - sv, "RND_INF": s / 2}[mode]
        pos = _trn(v + bias, f) if bias else _trn(v, f)
        if v.low >= 0:
            return pos
        mv = -v
        neg = -(_trn(mv + bias, f) if bias else _trn(mv, f))
        if v.high < 0:
            return neg
        return v.msb_mux(neg, pos)  # sign bit selects the mirrored rounding
    raise UnsupportedOp(f"rounding mode {mode}")


def cast_var(v: FixedVariable | float, t: dict) -> FixedVariable | float:
    """Return one value cast to the neutral type ``t`` exactly as an ap_fixed assignment does."""
    k, i, f = kif(t)
    mode, ovf = t["rounding"], t["saturation"]
    if t.get("sat_bits", 0):
        raise UnsupportedOp(f"saturation bits N={t['sat_bits']} in {t['ctype']}")
    if not isinstance(v, FixedVariable) or v.low == v.high:
        val = float(v if not isinstance(v, FixedVariable) else v.low)
        return _cast_const(val, t)
    r = _round(v, f, mode)
    s = 2.0**-f
    hi = 2.0**i - s
    lo = -(2.0**i) * k
    if ovf == "WRAP":
        return r.quantize(k, i, f, "WRAP", "TRN")
    if ovf in ("SAT", "SAT_SYM"):
        if ovf == "SAT_SYM" and k:
            lo = -hi
        if r.low >= lo and r.high <= hi:
            return r.quantize(k, i, f, "WRAP", "TRN")
        return r.max_of(lo).min_of(hi).quantize(k, i, f, "WRAP", "TRN")
    raise UnsupportedOp(f"overflow mode {ovf} ({t['ctype']})")


def _cast_const(val: float, t: dict) -> float:
    """Return a constant cast to ``t`` (same arithmetic as hwflow.rtl.export.quantize_np)."""
    from .export import quantize_np

    return float(quantize_np(np.array([val]), t)[0])


def cast(x: FixedVariableArray, t: dict) -> FixedVariableArray:
    """Return an array cast element-wise to the neutral type ``t``."""
    flat = x._vars.ravel()
    out = np.empty(flat.size, dtype=object)
    for n, v in enumerate(flat):
        c = cast_var(v, t)
        out[n] = c if isinstance(c, FixedVariable) else FixedVariable.from_const(c, hwconf=x.hwconf)
    return FixedVariableArray(out.reshape(x.shape), x.solver_options, hwconf=x.hwconf)


def _fits(step: float, f: int) -> bool:
    return step >= 2.0**-f


def op_dense(x: FixedVariableArray, layer: dict, arrays: dict) -> FixedVariableArray:
    """Return result(accum(bias) + sum accum(x*W)) over the last axis (hls4ml DenseLatency / pointwise Conv1D)."""
    W = arrays[layer["arrays"]["weight"]]
    b = arrays[layer["arrays"]["bias"]]
    ty = layer["types"]
    acc_t = ty.get("accum", ty["result"])
    _, _, fa = kif(acc_t)
    bias_acc = np.array([_cast_const(float(v), acc_t) for v in b])
    steps = np.array([float(v.step) for v in x._vars.ravel() if v.low != v.high] or [1.0])
    w_nz = W[W != 0]
    wf = max([_frac_bits(float(w)) for w in w_nz] or [0])
    if _fits(float(steps.min()) * 2.0**-wf, fa):
        # every product and partial sum is exact in accum: one constant matrix-vector product (CMVM, DA)
        y = x @ W
        y = y + bias_acc
    else:
        # accum truncates each product: trace them one by one (the C++ casts every mult[] to accum_t)
        y = _dense_per_product(x, W, bias_acc, acc_t)
    y = cast(y, {**acc_t})  # running sum held in accum_t (wraps/saturates as the type says)
    return cast(y, ty["result"])


def _frac_bits(c: float) -> int:
    f = 0
    while c != math.floor(c) and f < 64:
        c *= 2
        f += 1
    return f


def _dense_per_product(x: FixedVariableArray, W: np.ndarray, bias_acc: np.ndarray, acc_t: dict) -> FixedVariableArray:
    lead = x.shape[:-1]
    xf = x.reshape((-1, x.shape[-1]))
    rows = []
    for r in range(xf.shape[0]):
        outs = []
        for j in range(W.shape[1]):
            acc = float(bias_acc[j])
            terms = []
            for i in range(W.shape[0]):
                if W[i, j] == 0:
                    continue
                terms.append(cast_var(xf._vars[r, i] * float(W[i, j]), acc_t))
            s = acc
            for tt in terms:
                s = tt + s
            if not isinstance(s, FixedVariable):
                s = FixedVariable.from_const(s, hwconf=x.hwconf)
            outs.append(s)
        rows.append(outs)
    arr = np.array(rows, dtype=object).reshape(*lead, W.shape[1])
    return FixedVariableArray(arr, x.solver_options, hwconf=x.hwconf)


def op_activation(x: FixedVariableArray, layer: dict) -> FixedVariableArray:
    """Return relu/linear followed by the cast to the result type (hls4ml nnet::relu / linear)."""
    act = layer["attrs"].get("activation", "linear")
    if act == "relu":
        x = x.relu()
    elif act != "linear":
        raise UnsupportedOp(f"activation '{act}' of layer {layer['name']}")
    return cast(x, layer["types"]["result"])


def op_batchnorm(x: FixedVariableArray, layer: dict, arrays: dict) -> FixedVariableArray:
    """Return result(x * scale + bias) per last-axis channel (constants: shift-and-add)."""
    sc = arrays[layer["arrays"]["scale"]]
    bi = arrays[layer["arrays"]["bias"]]
    return cast(x * sc + bi, layer["types"]["result"])


def op_merge(xs: list[FixedVariableArray], layer: dict) -> FixedVariableArray:
    """Return the element-wise merge (add/subtract/multiply/maximum/minimum) or concatenation, cast to result."""
    op = layer["attrs"]["op"]
    a = xs[0]
    if op == "concatenate":
        axis = layer["attrs"].get("axis", -1)
        y = np.concatenate([v._vars for v in xs], axis=axis)
        return cast(FixedVariableArray(y, a.solver_options, hwconf=a.hwconf), layer["types"]["result"])
    b = xs[1]
    if op == "add":
        y = a + b
    elif op == "subtract":
        y = a - b
    elif op == "multiply":
        y = a * b
    elif op == "maximum":
        y = np.maximum(a, b)
    elif op == "minimum":
        y = np.minimum(a, b)
    else:
        raise UnsupportedOp(f"merge op '{op}' of layer {layer['name']}")
    return cast(y, layer["types"]["result"])


def _div_trunc_zero(v: FixedVariable | float, n: int, f: int):
    """Return trunc_toward_zero(v / n) on the 2**-f grid (ap_fixed '/=' by an unsigned int)."""
    if not isinstance(v, FixedVariable) or v.low == v.high:
        val = float(v if not isinstance(v, FixedVariable) else v.low)
        q = math.trunc(val * 2.0**f / n) * 2.0**-f
        return q
    if n & (n - 1) == 0:
        # exact shift, then truncation toward zero
        return _round(v * (1.0 / n), f, "TRN_ZERO")
    # non power of two: |X| < 2**b integers; floor(|X| * m / 2**s) == floor(|X| / n) for m = ceil(2**s / n)
    kk, ii, ff = v.kif
    b = ii + max(ff, f) + 1  # |X| < 2**b for X = v on the 2**-f grid the quotient lives on
    s = b + math.ceil(math.log2(n)) + 1
    m = math.ceil(2.0**s / n)

    def mag_div(u: FixedVariable) -> FixedVariable:
        return _trn(u * (m * 2.0**-s), f)

    if v.low >= 0:
        return mag_div(v)
    neg = -mag_div(-v)
    if v.high < 0:
        return neg
    return v.msb_mux(neg, mag_div(v))


def op_global_pool1d(x: FixedVariableArray, layer: dict) -> FixedVariableArray:
    """Return global average/max pooling over axis 0 (hls4ml global_pooling1d_cl), cast to result."""
    a = layer["attrs"]
    ty = layer["types"]
    acc_t = ty.get("accum", ty["result"])
    n_in = int(a["n_in"])
    xr = x.reshape((n_in, -1))
    if a["pool"] == "Max":
        y = xr[0]
        for r in range(1, n_in):
            y = np.maximum(y, xr[r])
        return cast(cast(y, acc_t), ty["result"])
    if a["pool"] != "Average":
        raise UnsupportedOp(f"pooling '{a['pool']}' of layer {layer['name']}")
    # y accumulates in accum_t from 0 (each += is cast to accum_t)
    s = cast(xr[0], acc_t)
    for r in range(1, n_in):
        s = cast(s + xr[r], acc_t)
    _, _, fa = kif(acc_t)
    out = np.empty(s.size, dtype=object)
    for n, v in enumerate(s._vars.ravel()):
        d = _div_trunc_zero(v, n_in, fa)
        out[n] = d if isinstance(d, FixedVariable) else FixedVariable.from_const(d, hwconf=x.hwconf)
    y = FixedVariableArray(out.reshape(s.shape), x.solver_options, hwconf=x.hwconf)
    return cast(cast(y, acc_t), ty["result"])


def build(graph: dict, arrays: dict, latency_cutoff: float) -> tuple[list[FixedVariableArrayInput], dict[str, FixedVariableArray], list[dict]]:
    """Return (input arrays, tensor name -> traced array, list of unsupported-layer records) for a neutral graph."""
    hw = HWConfig(1, -1, float(latency_cutoff))
    tensors: dict[str, FixedVariableArray] = {}
    inputs = []
    problems: list[dict] = []
    shapes = {k: tuple(v["shape"]) for k, v in graph["tensors"].items()}
    for layer in graph["layers"]:
        op = layer["op"]
        name, out = layer["name"], layer["output"]
        try:
            if op == "input":
                inp = FixedVariableArrayInput(shapes[out], hwconf=hw)
                k, i, f = kif(layer["types"]["result"])
                inputs.append(inp)
                tensors[out] = inp.quantize(k, i, f)
                continue
            missing = [i for i in layer["inputs"] if i not in tensors]
            if missing:
                raise UnsupportedOp(f"inputs {missing} come from unsupported layers")
            xs = [tensors[i] for i in layer["inputs"]]
            if op == "dense":
                y = op_dense(xs[0], layer, arrays)
            elif op == "activation":
                y = op_activation(xs[0], layer)
            elif op == "batchnorm":
                y = op_batchnorm(xs[0], layer, arrays)
            elif op == "merge":
                y = op_merge(xs, layer)
            elif op == "global_pool1d":
                y = op_global_pool1d(xs[0], layer)
            elif op == "reshape":
                y = xs[0].reshape(shapes[out])
            elif op == "transpose":
                y = xs[0].transpose(layer["attrs"]["perm"])
            else:
                raise UnsupportedOp(f"op '{op}' (hls4ml class {layer['hls_class']})")
            tensors[out] = y.reshape(shapes[out])
        except UnsupportedOp as e:
            problems.append({"layer": name, "hls_class": layer["hls_class"], "reason": str(e)})
    return inputs, tensors, problems
