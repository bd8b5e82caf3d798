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

from ..config import schema_default
from .export import sub_layer

# default width of the slices variable x variable products are built from (card rtl.product_slice_bits; see vmul)
SLICE_BITS = schema_default("rtl.product_slice_bits")


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


def _fits(step: float, f: int) -> bool:  # noqa: D103
    return step >= 2.0**-f


def op_dense(x: FixedVariableArray, layer: dict, arrays: dict) -> FixedVariableArray:
    """Return result(accum(bias) + sum accum(x*W)) over the last axis (hls4ml DenseLatency / pointwise Conv1D)."""
    W = arrays[layer["arrays"]["weight"]]
    b = arrays[layer["arrays"]["bias"]]
    ty = layer["types"]
    return dense(x, W.reshape(x.shape[-1], -1), b.reshape(-1), ty.get("accum", ty["result"]), ty["result"])


def dense(x: FixedVariableArray, W: np.ndarray, b: np.ndarray, acc_t: dict, res_t: dict) -> FixedVariableArray:
    """Return res_t(acc_t(b) + sum acc_t(x*W)) over the last axis, every product and partial sum held in acc_t."""
    ty = {"result": res_t}
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
        # in integer counts (steps >= 1): da4ml keeps a product's step no finer than ~2**-54, so u * (m / 2**s) on
        # the fractional grid lost the low bits (off by one LSB at exact multiples of n)
        counts = u * 2.0**f
        q = _trn(counts * float(m) * 2.0**-s, 0) * 2.0**-f
        # |q| <= |v| / n < 2**ii: declare that range (free wiring), since the bounds da4ml derives in float64 for
        # the ~2**66 product can come out too narrow and later casts would then skip a needed saturation or width
        return q.quantize(0, ii, f, "WRAP", "TRN")

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


def _ext_tracer(op: str):
    """Return the RTL tracer of a hwflow extension op from the hwflow.ops registry (None: no RTL route)."""
    from ..ops import all_ops, resolve

    for o in all_ops():
        if o.name == op:
            return resolve(o.tracer) if o.tracer else None
    return None


def apply_layer(
    layer: dict, xs: list[FixedVariableArray], arrays: dict, out_shape: tuple, slice_bits: int = SLICE_BITS
) -> FixedVariableArray:
    """Return the traced output of one neutral-graph layer on its traced inputs (row-wise ops accept any number of
    rows); variable x variable products are built from slices of at most ``slice_bits`` bits."""
    op = layer["op"]
    if op == "dense":
        return op_dense(xs[0], layer, arrays)
    if op == "activation":
        return op_activation(xs[0], layer)
    if op == "batchnorm":
        return op_batchnorm(xs[0], layer, arrays)
    if op == "merge":
        return op_merge(xs, layer)
    if op == "global_pool1d":
        return op_global_pool1d(xs[0], layer)
    if op == "reshape":
        return xs[0].reshape(out_shape)
    if op == "transpose":
        return xs[0].transpose(layer["attrs"]["perm"])
    if op == "conv1d":  # stock hls4ml Conv1D (the conformer's strided front end)
        from .trace_conformer import op_conv1d

        return op_conv1d(xs[0], layer, arrays)
    if op is None:
        raise UnsupportedOp(f"no RTL tracer for hls4ml class {layer['hls_class']}")
    tracer = _ext_tracer(op)
    if tracer is not None:
        return tracer(xs[0], layer, arrays, slice_bits=slice_bits)
    raise UnsupportedOp(f"op '{op}' (hls4ml class {layer['hls_class']})")


def build(
    graph: dict, arrays: dict, latency_cutoff: float, slice_bits: int = SLICE_BITS
) -> tuple[list[FixedVariableArrayInput], dict[str, FixedVariableArray], list[dict]]:
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
            y = apply_layer(layer, [tensors[i] for i in layer["inputs"]], arrays, shapes[out], slice_bits)
            tensors[out] = y.reshape(shapes[out])
        except UnsupportedOp as e:
            problems.append({"layer": name, "hls_class": layer["hls_class"], "reason": str(e)})
    return inputs, tensors, problems


# ------------------------------------------------------------------ hwflow extension layers (hwflow.reference.*)
# Variable x variable products: da4ml's vmul is one atomic operation whose delay (in adder levels) is the wider
# operand's bit count, and it must fit in one pipeline stage. Operands wider than ``slice_bits`` are split into
# bit slices (free wiring) and the partial products added, so the pipeline cutoff can stay small.


def _slices(v: FixedVariable, chunk: int) -> list[FixedVariable]:
    """Return bit slices of v whose sum is v: an unsigned low part per ``chunk`` bits and a signed/unsigned top part."""
    k, i, f = v.kif
    width = int(k) + i + f
    if width <= chunk:
        return [v]
    parts = []
    lo_f = f
    rest = v
    while int(k) + i + lo_f > chunk:
        cut = lo_f - chunk  # bits with weight below 2**-cut go to this slice
        low = rest.quantize(0, -cut, lo_f, "WRAP", "TRN")  # unsigned slice of `chunk` bits
        parts.append(low)
        rest = _trn(rest, cut)
        lo_f = cut
    parts.append(rest)
    return parts


def vmul(a: FixedVariable | float, b: FixedVariable | float, slice_bits: int) -> FixedVariable | float:
    """Return the exact product a*b; wide variable operands are multiplied slice by slice."""
    if not isinstance(a, FixedVariable) or not isinstance(b, FixedVariable) or a.low == a.high or b.low == b.high:
        return a * b
    pa, pb = _slices(a, slice_bits), _slices(b, slice_bits)
    terms = [x * y for x in pa for y in pb]
    acc = terms[0]
    for t in terms[1:]:
        acc = acc + t
    return acc


def _grid(v: FixedVariable) -> np.ndarray:
    n = round((float(v.high) - float(v.low)) / float(v.step)) + 1
    return float(v.low) + np.arange(n) * float(v.step)


def lut(v: FixedVariable, fn) -> FixedVariable | float:
    """Return a lookup table mapping every possible value of v through ``fn`` (numpy values -> exact table values)."""
    if v.low == v.high:
        return float(fn(np.array([float(v.low)]))[0])
    return v.lookup(np.asarray(fn(_grid(v)), dtype=np.float64))


def _sum(vals: list) -> FixedVariable | float:
    """Return the sum of values as a balanced adder tree."""
    vals = list(vals)
    while len(vals) > 1:
        nxt = [vals[i] + vals[i + 1] for i in range(0, len(vals) - 1, 2)]
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
    return vals[0]


def _max(vals: list) -> FixedVariable:
    """Return the maximum of values as a comparator tree."""
    vals = list(vals)
    while len(vals) > 1:
        nxt = [
            vals[i].max_of(vals[i + 1]) if isinstance(vals[i], FixedVariable) else vals[i + 1].max_of(vals[i])
            for i in range(0, len(vals) - 1, 2)
        ]
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
    return vals[0]


def _bit(v: FixedVariable, w: int) -> FixedVariable | float:
    """Return the bit of weight 2**w of unsigned v as a 1-bit variable (values {0, 2**w}) usable as a mux key."""
    return v.quantize(0, w + 1, -w, "WRAP", "TRN")


def _mux(key, a, b):
    """Return a when the key bit is set, else b (constant keys fold)."""
    if not isinstance(key, FixedVariable) or key.low == key.high:
        val = float(key.low) if isinstance(key, FixedVariable) else float(key)
        return a if val != 0 else b
    if not isinstance(a, FixedVariable) and not isinstance(b, FixedVariable) and a == b:
        return a
    return key.msb_mux(a, b)


def _as_var(v, hw):
    return v if isinstance(v, FixedVariable) else FixedVariable.from_const(float(v), hwconf=hw)


def _interp_lookup(u, table: np.ndarray, bits: int, out_t: dict, slice_bits: int):
    """Return out_t(T[j] + (T[j+1] - T[j]) * phi) for u in [0, 1): j = floor(u * 2**bits), phi its fraction.

    The linearly interpolated table read of hwflow's reciprocal and 1/sqrt (one rounding into the table type).
    """
    if not isinstance(u, FixedVariable) or u.low == u.high:
        v = float(u if not isinstance(u, FixedVariable) else u.low) * 2.0**bits
        j = int(math.floor(v))
        return _cast_const(float(table[j]) + (float(table[j + 1]) - float(table[j])) * (v - j), out_t)
    w = u * 2.0**bits  # free shift
    j = _trn(w, 0)
    phi = w.quantize(0, 0, max(w.kif[2], 0), "WRAP", "TRN") if w.kif[2] > 0 else 0.0
    t0 = lut(j, lambda g: table[np.round(g).astype(np.int64)])
    if isinstance(phi, FixedVariable) and phi.low != phi.high:
        dt = lut(j, lambda g: table[np.round(g).astype(np.int64) + 1] - table[np.round(g).astype(np.int64)])
        val = t0 + vmul(dt, phi, slice_bits) if isinstance(dt, FixedVariable) else t0 + phi * float(dt)
    else:
        val = t0
    return cast_var(val, out_t)


def softmax_row(xs: list, ty: dict, at: dict, arr: dict, pre: str, res_t: dict, hw, slice_bits: int) -> list:
    """Return hwflow_softmax of one row (hwflow.reference.softmax.softmax): exp tables on x_max - x, normalised
    reciprocal."""
    norm_t, exp_t, inv_t, sum_t = ty[pre + "inp_norm"], ty[pre + "exp_table"], ty[pre + "inv_table"], ty[pre + "sum"]
    lo_bits, inv_bits = int(at[pre + "lo_bits"]), int(at[pre + "inv_bits"])
    exp_hi, exp_lo, inv_tab = (arr[pre + "tables." + k] for k in ("exp_hi", "exp_lo", "inv"))
    nf = kif(norm_t)[2]
    ef, if_ = kif(exp_t)[2], kif(inv_t)[2]
    sf, si = kif(sum_t)[2], int(sum_t["integer"])
    m = _max(xs)
    es = []
    for x in xs:
        d = cast_var(m - x, norm_t)
        if not isinstance(d, FixedVariable) or d.low == d.high:
            raw = int(round(float(d if not isinstance(d, FixedVariable) else d.low) * 2**nf))
            e = float(exp_hi[raw >> lo_bits]) * (float(exp_lo[raw & ((1 << lo_bits) - 1)]) if lo_bits else 1.0)
            es.append(_cast_const(e, exp_t) if lo_bits else e)
            continue
        if lo_bits > 0:
            hi = _trn(d, nf - lo_bits)  # raw >> lo_bits, kept at its weight
            lo = d.quantize(0, lo_bits - nf, nf, "WRAP", "TRN")  # raw & (2**lo_bits - 1)
            e_hi = lut(hi, lambda g: exp_hi[np.round(g * 2.0 ** (nf - lo_bits)).astype(np.int64)])
            e_lo = lut(lo, lambda g: exp_lo[np.round(g * 2.0**nf).astype(np.int64)])
            e = cast_var(vmul(e_hi, e_lo, slice_bits), exp_t)
        else:
            e = lut(d, lambda g: exp_hi[np.round(g * 2.0**nf).astype(np.int64)])
        es.append(e)
    s = cast_var(_sum(es), sum_t)
    s = _as_var(s, hw)
    # p = leading one above the binary point (bits 1..si-1 of the integer part); the mux chain lets the highest win
    keys = [(b, _bit(s, b)) for b in range(1, si)]
    mf = s.quantize(0, 0, sf, "WRAP", "TRN")  # p = 0: fractional bits of s
    for b, key in keys:
        mf = _mux(key, (s * 2.0**-b).quantize(0, 0, sf, "WRAP", "TRN"), mf)
    inv = _interp_lookup(mf, inv_tab, inv_bits, inv_t, slice_bits)
    out = []
    for e in es:
        prod = vmul(e, inv, slice_bits)  # e_raw * inv_raw, exact
        q = prod
        for b, key in keys:
            q = _mux(key, _trn(_as_var(prod, hw) * 2.0**-b, ef + if_), q)
        out.append(cast_var(q, res_t))
    return out


def op_softmax(x: FixedVariableArray, layer: dict, arrays: dict, slice_bits: int = SLICE_BITS) -> FixedVariableArray:
    """Return hwflow's softmax over the last axis of x."""
    ty, at = layer["types"], layer["attrs"]
    arr = {k: arrays[v] for k, v in layer["arrays"].items()}
    rows = x._vars.reshape(-1, x.shape[-1])
    out = np.empty(rows.shape, dtype=object)
    for r in range(rows.shape[0]):
        vals = softmax_row(list(rows[r]), ty, at, arr, "", ty["result"], x.hwconf, slice_bits)
        out[r] = [_as_var(v, x.hwconf) for v in vals]
    return FixedVariableArray(out.reshape(x.shape), x.solver_options, hwconf=x.hwconf)


def norm_row(
    xs: list, ty: dict, at: dict, table: np.ndarray, gamma: np.ndarray, beta: np.ndarray, hw, slice_bits: int
) -> list:
    """Return hwflow_layernorm of one row (hwflow.reference.layernorm.norm), LayerNorm or RMSNorm (center=False)."""
    acc_t, mean_t, diff_t, var_t = ty["accum"], ty["mean"], ty["diff"], ty["var"]
    it, nt, res_t = ty["inv_std"], ty["norm"], ty["result"]
    inv_n, eps_q, tb = float(at["inv_n"]), float(at["eps_q"]), int(at["table_bits"])
    if at["center"]:
        s = 0.0
        for x in xs:
            s = cast_var(x + s, acc_t)
        mean = cast_var(s * inv_n, mean_t)
        d = [cast_var(x - mean, diff_t) for x in xs]
    else:
        d = [cast_var(x, diff_t) for x in xs]
    sq = 0.0
    for v in d:
        sq = cast_var(vmul(v, v, slice_bits) + sq, acc_t)
    var = cast_var(cast_var(sq * inv_n, var_t) + eps_q, var_t)
    var = _as_var(var, hw)
    vw, vf = int(var_t["width"]), kif(var_t)[2]
    n1 = 2**tb + 1
    t_even, t_odd = table[:n1], table[n1:]

    def jv(k: int):  # (raw & (2**k - 1)) / 2**k in [0, 1): mantissa bits below the leading one
        if k == 0:
            return 0.0
        low = var.quantize(0, k - vf, vf, "WRAP", "TRN")
        return low * 2.0 ** (vf - k) if isinstance(low, FixedVariable) else float(low) * 2.0 ** (vf - k)

    def shifted(r, k: int):  # table value >> e (or << -e, wrapping) in inv_std_t
        b = k - vf
        e = (b - (b & 1)) // 2
        return cast_var(r * 2.0**-e, it) if isinstance(r, FixedVariable) else _cast_const(float(r) * 2.0**-e, it)

    keys = [(k, _bit(var, k - vf)) for k in range(1, vw)]
    j = jv(0)
    for k, key in keys:
        j = _mux(key, jv(k), j)
    r_even = _interp_lookup(j, t_even, tb, ty["table"], slice_bits)
    r_odd = _interp_lookup(j, t_odd, tb, ty["table"], slice_bits)
    rr = shifted(r_odd if (0 - vf) & 1 else r_even, 0)
    for k, key in keys:
        rr = _mux(key, shifted(r_odd if (k - vf) & 1 else r_even, k), rr)
    out = []
    for n, v in enumerate(d):
        nrm = cast_var(vmul(v, rr, slice_bits), nt)
        out.append(cast_var(nrm * float(gamma[n]) + float(beta[n]), res_t))
    return out


def op_layernorm(x: FixedVariableArray, layer: dict, arrays: dict, slice_bits: int = SLICE_BITS) -> FixedVariableArray:
    """Return hwflow's LayerNorm/RMSNorm over the last axis of x."""
    ty, at = layer["types"], layer["attrs"]
    n = x.shape[-1]
    table = arrays[layer["arrays"]["table"]]
    gamma = arrays[layer["arrays"]["scale"]].reshape(-1) if "scale" in layer["arrays"] else np.ones(n)
    beta = arrays[layer["arrays"]["bias"]].reshape(-1) if "bias" in layer["arrays"] else np.zeros(n)
    rows = x._vars.reshape(-1, n)
    out = np.empty(rows.shape, dtype=object)
    for r in range(rows.shape[0]):
        out[r] = [
            _as_var(v, x.hwconf) for v in norm_row(list(rows[r]), ty, at, table, gamma, beta, x.hwconf, slice_bits)
        ]
    return FixedVariableArray(out.reshape(x.shape), x.solver_options, hwconf=x.hwconf)


def mha_project(x: FixedVariableArray, layer: dict, arrays: dict) -> tuple[FixedVariableArray, ...]:
    """Return the Q, K, V projections (rows, heads * key_dim) of token rows x: the token-wise part of attention."""
    ty, at = layer["types"], layer["attrs"]
    E, H = int(at["embed_dim"]), int(at["num_heads"])
    dk, dv = int(at["key_dim"]), int(at["value_dim"])
    out = []
    for n, width in (("query", H * dk), ("key", H * dk), ("value", H * dv)):
        W = arrays[layer["arrays"][f"{n}_weight"]].reshape(E, -1)
        b = arrays[layer["arrays"][f"{n}_bias"]].reshape(-1) if f"{n}_bias" in layer["arrays"] else np.zeros(width)
        out.append(dense(x, W, b, ty["proj_accum"], ty["q"]))
    return tuple(out)


def mha_attend(
    q: FixedVariableArray,
    k: FixedVariableArray,
    v: FixedVariableArray,
    layer: dict,
    arrays: dict,
    slice_bits: int = SLICE_BITS,
) -> FixedVariableArray:
    """Return attention of the query rows q over all key/value rows k, v, after the output projection (rows of q,
    out_dim). Grouped attention (attrs group = g > 1): rows of g tokens, their head slices concatenated."""
    ty, at = layer["types"], layer["attrs"]
    arr = {n: arrays[a] for n, a in layer["arrays"].items()}
    H, dk, dv = int(at["num_heads"]), int(at["key_dim"]), int(at["value_dim"])
    g = int(at.get("group", 1) or 1)
    acc_t, score_t, ctx_t = ty["accum"], ty["score"], ty["context"]
    scale = float(at["scale"])
    hw = q.hwconf
    if q.shape[0] % g or k.shape[0] % g:
        raise UnsupportedOp(f"grouped attention {layer['name']}: {q.shape[0]} query rows not whole groups of {g}")
    n_q, n_k = q.shape[0] // g, k.shape[0] // g
    ctx_vars = np.empty((q.shape[0], H * dv), dtype=object)
    for h in range(H):
        qh = q._vars[:, h * dk : (h + 1) * dk]
        kh = k._vars[:, h * dk : (h + 1) * dk]
        vh = v._vars[:, h * dv : (h + 1) * dv]
        for i in range(n_q):
            scores = []
            for j in range(n_k):
                acc = 0.0
                for u in range(g):
                    for d in range(dk):
                        acc = cast_var(vmul(qh[i * g + u, d], kh[j * g + u, d], slice_bits) + acc, acc_t)
                scores.append(cast_var(acc * scale, score_t))
            a = softmax_row(scores, ty, at, arr, "softmax.", ty["softmax.result"], hw, slice_bits)
            for u in range(g):
                for c in range(dv):
                    acc = 0.0
                    for j in range(n_k):
                        acc = cast_var(vmul(a[j], vh[j * g + u, c], slice_bits) + acc, acc_t)
                    ctx_vars[i * g + u, h * dv + c] = _as_var(cast_var(acc, ctx_t), hw)
    ctx = FixedVariableArray(ctx_vars, q.solver_options, hwconf=hw)
    W = arr["output_weight"].reshape(H * dv, -1)
    b = arr.get("output_bias", np.zeros(int(at["out_dim"]))).reshape(-1)
    return dense(ctx, W, b, ty["out_accum"], ty["result"])


def op_mha(x: FixedVariableArray, layer: dict, arrays: dict, slice_bits: int = SLICE_BITS) -> FixedVariableArray:
    """Return hwflow's multi-head self-attention (hwflow.reference.attention.mha) of x (seq_len, embed_dim)."""
    x = x.reshape((int(layer["attrs"]["seq_len"]), -1))
    q, k, v = mha_project(x, layer, arrays)
    return mha_attend(q, k, v, layer, arrays, slice_bits)


# ------------------------------------------------------------------------------ attention variants (issue 13)
def seq_project(x: FixedVariableArray, w: np.ndarray, acc_t: dict, res_t: dict) -> FixedVariableArray:
    """Return res_t(sum_t w[m, t] * x[t, :]) for every m (Linformer's N -> k projection, constant weights)."""
    y = dense(x.transpose((1, 0)), np.asarray(w, np.float64).T, np.zeros(w.shape[0]), acc_t, res_t)
    return y.transpose((1, 0))


def attention_project(x: FixedVariableArray, layer: dict, arrays: dict) -> tuple[FixedVariableArray, ...]:
    """Return the token-wise Q, K, V projections of any attention op (mha, linformer, cosformer)."""
    return mha_project(x, sub_layer(layer, "attn.") if layer["op"] == "linformer" else layer, arrays)


def linformer_attend(
    q: FixedVariableArray,
    k: FixedVariableArray,
    v: FixedVariableArray,
    layer: dict,
    arrays: dict,
    slice_bits: int = SLICE_BITS,
) -> FixedVariableArray:
    """Return hwflow.reference.linformer: keys/values compressed N -> k by E, F, then attention over k entries."""
    ty, at = layer["types"], layer["attrs"]
    kk = int(at["proj_k"])
    E = arrays[layer["arrays"]["key_seq_weight"]].reshape(kk, -1)
    F = arrays[layer["arrays"]["value_seq_weight"]].reshape(kk, -1)
    kp = seq_project(k, E, ty["seq_accum"], ty["kv"])
    vp = seq_project(v, F, ty["seq_accum"], ty["kv"])
    return mha_attend(q, kp, vp, sub_layer(layer, "attn."), arrays, slice_bits)


def _relu(v):
    if isinstance(v, FixedVariable) and v.low != v.high:
        return v.max_of(0.0) if v.low < 0 else v
    return max(float(v.low if isinstance(v, FixedVariable) else v), 0.0)


def cosformer_normalise(num: list, den, ty: dict, at: dict, inv_tab: np.ndarray, hw, slice_bits: int) -> list:
    """Return context_t(num * 1/den) the hwflow_cosformer way (leading one of den, interpolated 1/m, one rounding)."""
    den_t, inv_t, ctx_t = ty["den"], ty["inv_table"], ty["context"]
    W, F = int(den_t["width"]), int(den_t["frac"])
    if not isinstance(den, FixedVariable) or den.low == den.high:
        from ..reference.fixed import parse_type

        raise UnsupportedOp(f"constant cosFormer normaliser ({den}, {parse_type(den_t['ctype'])})")
    keys = [(b, _bit(den, b - F)) for b in range(W)]
    mf = 0.0  # p = 0 (and den = 0): the mantissa fraction is 0
    for b, key in keys[1:]:
        mf = _mux(key, (den * 2.0 ** (F - b)).quantize(0, 0, W - 1, "WRAP", "TRN"), mf)
    inv = _interp_lookup(mf, inv_tab, int(at["inv_bits"]), inv_t, slice_bits)
    out = []
    for n in num:
        prod = _as_var(vmul(n, inv, slice_bits), hw)  # exact
        y = 0.0  # den = 0: no active feature -> 0
        for b, key in keys:
            y = _mux(key, prod * 2.0 ** (F - b), y)  # the exact product shifted by the leading one
        out.append(cast_var(y, ctx_t))  # rounded once, as the C++ does
    return out


def cosformer_attend(
    q: FixedVariableArray,
    k: FixedVariableArray,
    v: FixedVariableArray,
    layer: dict,
    arrays: dict,
    slice_bits: int = SLICE_BITS,
) -> FixedVariableArray:
    """Return hwflow.reference.cosformer of the whole sequence (rows = positions 0..N-1), output projection."""
    ty, at = layer["types"], layer["attrs"]
    arr = {n: arrays[a] for n, a in layer["arrays"].items()}
    H, dk, dv = int(at["num_heads"]), int(at["key_dim"]), int(at["value_dim"])
    feat_t, acc_t = ty["feat"], ty["accum"]
    cos, sin = arr["tables.cos"], arr["tables.sin"]
    hw = q.hwconf
    N = q.shape[0]
    if k.shape[0] != N or int(at["seq_len"]) != N:
        raise UnsupportedOp(f"cosFormer {layer['name']}: all {at['seq_len']} positions are needed at once")

    def feats(x):
        # relu(x[i]) * table[i] as one constant (diagonal) matrix product per position: da4ml's CMVM keeps the
        # operands' scale at 1 (a CSD product per element would carry a 2^-frac scale into every later sum)
        d = x.shape[1]
        out = []
        for tab in (cos, sin):
            rows = []
            for i in range(N):
                r = FixedVariableArray(
                    np.array([[_as_var(_relu(v), hw) for v in x._vars[i]]], dtype=object), x.solver_options, hwconf=hw
                )
                y = r @ (np.eye(d) * float(tab[i]))
                rows.append([cast_var(v, feat_t) for v in y._vars[0]])
            out.append(rows)
        return out

    (qc, qs), (kc, ks) = feats(q), feats(k)
    ctx_vars = np.empty((N, H * dv), dtype=object)
    for h in range(H):
        kd, vd = range(h * dk, (h + 1) * dk), range(h * dv, (h + 1) * dv)
        state = {}
        for name, kf in (("c", kc), ("s", ks)):
            kv, ksum = [], []
            for d in kd:
                row = []
                for e in vd:
                    acc = 0.0
                    for j in range(N):
                        acc = cast_var(vmul(kf[j][d], v._vars[j, e], slice_bits) + acc, acc_t)
                    row.append(cast_var(acc, ty["kv"]))
                kv.append(row)
                acc = 0.0
                for j in range(N):
                    acc = cast_var(kf[j][d] + acc, acc_t)
                ksum.append(cast_var(acc, ty["ksum"]))
            state[name] = (kv, ksum)
        for i in range(N):
            nacc = [0.0] * dv
            dacc = 0.0
            for di, d in enumerate(kd):
                for name, qf in (("c", qc), ("s", qs)):
                    kv, ksum = state[name]
                    for e in range(dv):
                        nacc[e] = cast_var(vmul(qf[i][d], kv[di][e], slice_bits) + nacc[e], acc_t)
                    dacc = cast_var(vmul(qf[i][d], ksum[di], slice_bits) + dacc, acc_t)
            num = [cast_var(a, ty["num"]) for a in nacc]
            den = _as_var(cast_var(dacc, ty["den"]), hw)
            for e, c in enumerate(cosformer_normalise(num, den, ty, at, arr["tables.inv"], hw, slice_bits)):
                ctx_vars[i, h * dv + e] = _as_var(c, hw)
    ctx = FixedVariableArray(ctx_vars, q.solver_options, hwconf=hw)
    W = arr["output_weight"].reshape(H * dv, -1)
    b = arr.get("output_bias", np.zeros(int(at["out_dim"]))).reshape(-1)
    return dense(ctx, W, b, ty["out_accum"], ty["result"])


ATTEND = {"mha": mha_attend, "linformer": linformer_attend, "cosformer": cosformer_attend}


def attend(q, k, v, layer: dict, arrays: dict, slice_bits: int = SLICE_BITS) -> FixedVariableArray:
    """Return the sequence-mixing part of any attention op (query rows q over all keys/values)."""
    return ATTEND[layer["op"]](q, k, v, layer, arrays, slice_bits)


def op_attention(x: FixedVariableArray, layer: dict, arrays: dict, slice_bits: int = SLICE_BITS) -> FixedVariableArray:
    """Return any attention op (mha incl. grouped, linformer, cosformer) of x (seq_len, embed_dim)."""
    x = x.reshape((int(layer["attrs"]["seq_len"]), -1))
    q, k, v = attention_project(x, layer, arrays)
    return attend(q, k, v, layer, arrays, slice_bits)
