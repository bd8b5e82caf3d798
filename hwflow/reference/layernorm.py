"""Numpy reference of hwflow_layernorm.h (LayerNorm and RMSNorm), bit-exact, plus its type/table derivation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..util import HwflowError
from .fixed import FixedType, from_int, parse_type, quantize, quantize_int, quantize_raw

DEFAULT_TABLE = "ap_ufixed<18,1,AP_RND,AP_SAT>"


@dataclass
class NormSpec:
    """Everything that fixes the firmware normalization arithmetic for one layer."""

    n_in: int
    center: bool
    epsilon: float
    input_t: FixedType
    result_t: FixedType
    accum_t: FixedType
    mean_t: FixedType
    diff_t: FixedType
    var_t: FixedType
    table_t: FixedType
    inv_std_t: FixedType
    norm_t: FixedType
    scale_t: FixedType
    bias_t: FixedType
    inv_n_t: FixedType
    table_bits: int = 10
    seq_len: int = 1
    table: np.ndarray = field(default=None, repr=False)

    @property
    def table_size(self) -> int:
        """Return the number of entries of the 1/sqrt table (two octaves of 2^table_bits + 1)."""
        return 2 * (2**self.table_bits + 1)

    @property
    def inv_n(self) -> float:
        """Return 1/n_in as stored in inv_n_t."""
        return float(quantize(1.0 / self.n_in, self.inv_n_t))

    @property
    def eps_q(self) -> float:
        """Return epsilon as stored in var_t."""
        return float(quantize(self.epsilon, self.var_t))


def _ilog2(x: float) -> int:
    return int(math.ceil(math.log2(x))) if x > 1 else 0


def make_spec(
    n_in: int,
    input_t,
    result_t,
    center: bool = True,
    epsilon: float = 1e-3,
    scale_t="ap_fixed<16,6>",
    bias_t="ap_fixed<16,6>",
    table_size: int = 1024,
    table_t=DEFAULT_TABLE,
    var_t=None,
    accum_t=None,
    mean_t=None,
    inv_std_t=None,
    norm_t=None,
    seq_len: int = 1,
) -> NormSpec:
    """Return a NormSpec with exact/derived defaults for every type not given."""
    it, rt = parse_type(input_t), parse_type(result_t)
    if table_size < 2 or table_size & (table_size - 1):
        raise HwflowError(f"normalization table_size={table_size} must be a power of two (e.g. 1024)")
    tt = parse_type(table_t)
    if tt.signed or tt.integer < 1:
        raise HwflowError(
            f"normalization table type {tt} must be unsigned with >= 1 integer bit (it stores 1/sqrt(1) = 1)"
        )
    lg = _ilog2(n_in)
    pow2 = n_in & (n_in - 1) == 0
    inv_n_t = FixedType(24, -int(math.floor(math.log2(n_in))), False, "AP_RND", "AP_SAT")
    if mean_t is None:
        mf = it.frac + (lg if pow2 else 8)
        mean_t = FixedType(it.integer + mf, it.integer, it.signed or center, "AP_RND", "AP_SAT")
    mean_t = parse_type(mean_t)
    df = max(it.frac, mean_t.frac) if center else it.frac
    di = max(it.integer, mean_t.integer) + 1 if center else it.integer
    diff_t = FixedType(di + df, di, True)
    if accum_t is None:
        ai = max(2 * di, it.integer) + lg + 1
        accum_t = FixedType(ai + 2 * df, ai, True)
    accum_t = parse_type(accum_t)
    if var_t is None:
        # variance needs 2*di integer bits; keep enough fractional bits for small variances and epsilon
        vf = max(2 * df if pow2 else 2 * df + 8, int(math.ceil(-math.log2(epsilon))) + 8 if epsilon > 0 else 0)
        vf = min(vf, 40)
        var_t = FixedType(2 * di + vf, 2 * di, False, "AP_RND", "AP_SAT")
    var_t = parse_type(var_t)
    if inv_std_t is None:
        # 1/sqrt(var) lies in (2^(-vi/2), 2^(vf/2)]: integer and fractional bits to hold every shift exactly;
        # var >= epsilon (when epsilon survives in var_t) caps it at 1/sqrt(epsilon), which saves integer bits
        ii = (var_t.frac + 1) // 2 + 1
        eps_q = float(quantize(epsilon, var_t))
        if eps_q > 0:
            ii = min(ii, int(math.floor(math.log2(1.0 / math.sqrt(eps_q)))) + 2)
        ff = tt.frac + (var_t.integer + 1) // 2 + 1
        inv_std_t = FixedType(ii + ff, ii, False)
    inv_std_t = parse_type(inv_std_t)
    if norm_t is None:
        ni = _ilog2(math.sqrt(n_in)) + 2
        norm_t = FixedType(ni + 16, ni, True, "AP_RND", "AP_SAT")
    norm_t = parse_type(norm_t)
    spec = NormSpec(
        n_in,
        center,
        float(epsilon),
        it,
        rt,
        accum_t,
        mean_t,
        diff_t,
        var_t,
        tt,
        inv_std_t,
        norm_t,
        parse_type(scale_t),
        parse_type(bias_t),
        inv_n_t,
        int(math.log2(table_size)),
        seq_len,
    )
    spec.table = build_table(spec)
    return spec


def build_table(spec: NormSpec) -> np.ndarray:
    """Return the 1/sqrt table: [1/sqrt(1 + j/N) for j in 0..N] + [1/sqrt(2 (1 + j/N))], in table_t."""
    n = 2**spec.table_bits
    m = 1.0 + np.arange(n + 1, dtype=np.float64) / n
    return quantize(np.concatenate([1.0 / np.sqrt(m), 1.0 / np.sqrt(2.0 * m)]), spec.table_t)


def _mul(a, at: FixedType, b, bt: FixedType, rt: FixedType) -> np.ndarray:
    """Return a*b (values of types at, bt) assigned to rt, via an exact integer product of any width."""
    ra = quantize_int(a, at).astype(object)
    rb = quantize_int(np.broadcast_to(b, np.shape(a)), bt).astype(object)
    return from_int(quantize_raw(ra * rb, at.frac + bt.frac, rt), rt)


def norm(x, spec: NormSpec, gamma=None, beta=None) -> np.ndarray:
    """Return the firmware LayerNorm/RMSNorm of ``x`` over its last axis (bit-exact); gamma/beta in their types."""
    x = quantize(np.asarray(x, np.float64), spec.input_t)
    n = spec.n_in
    gamma = quantize(np.ones(n) if gamma is None else gamma, spec.scale_t)
    beta = quantize(np.zeros(n) if beta is None else beta, spec.bias_t)
    inv_n = spec.inv_n
    if spec.center:
        s = np.zeros(x.shape[:-1] + (1,))
        for i in range(n):  # accumulate in accum_t, like the C++ loop
            s = quantize(s + x[..., i : i + 1], spec.accum_t)
        mean = _mul(s, spec.accum_t, inv_n, spec.inv_n_t, spec.mean_t)
        d = quantize(x - mean, spec.diff_t)
    else:
        d = quantize(x, spec.diff_t)
    sq = np.zeros(x.shape[:-1] + (1,))
    for i in range(n):
        sq = quantize(sq + d[..., i : i + 1] * d[..., i : i + 1], spec.accum_t)
    var = quantize(_mul(sq, spec.accum_t, inv_n, spec.inv_n_t, spec.var_t) + spec.eps_q, spec.var_t)
    raw = quantize_int(var, spec.var_t)
    vw, vf, tb = spec.var_t.width, spec.var_t.frac, spec.table_bits
    pos = np.zeros_like(raw)
    for k in range(1, vw):
        pos = np.where((raw >> k) & 1, k, pos)
    mfrac = raw & ((np.int64(1) << pos) - 1)
    sh = pos - tb
    j = np.where(sh > 0, mfrac >> np.maximum(sh, 0), mfrac << np.maximum(-sh, 0))
    rem = np.where(sh > 0, mfrac & ((np.int64(1) << np.maximum(sh, 0)) - 1), 0)
    f_raw = rem.astype(object) * (2**vw) // (2 ** np.maximum(sh, 0)).astype(object)  # rem << (vw - sh), exact
    b = pos - vf
    odd = b & 1
    e = (b - odd) // 2
    tt = spec.table_t
    traw = quantize_int(spec.table, tt).astype(object)
    base = odd * (2**tb + 1) + j
    t0, t1 = traw[base], traw[base + 1]
    r = from_int(quantize_raw(t0 * (2**vw) + (t1 - t0) * f_raw, tt.frac + vw, tt), tt)
    it = spec.inv_std_t
    rr = quantize_int(r, it)
    rr = np.where(e >= 0, rr >> np.maximum(e, 0), rr << np.maximum(-e, 0))
    rr = np.mod(rr, 2**it.width)  # operator<< keeps the width (wraps)
    # d * inv_std can exceed 53 bits: exact integer product, then round into norm_t
    nrm = _mul(d, spec.diff_t, from_int(rr, it), it, spec.norm_t)
    return quantize(nrm * gamma + beta, spec.result_t)
