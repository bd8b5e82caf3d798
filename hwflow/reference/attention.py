"""Numpy reference of hwflow_mha.h (quantized multi-head self-attention), bit-exact, and its type derivation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .fixed import FixedType, from_int, parse_type, quantize, quantize_int, quantize_raw
from .softmax import EXP_TABLE_SIZE, INV_TABLE_SIZE, SoftmaxSpec, softmax
from .softmax import make_spec as make_softmax_spec


@dataclass
class AttentionSpec:
    """Everything that fixes the firmware attention arithmetic for one layer."""

    seq_len: int
    embed_dim: int
    num_heads: int
    key_dim: int
    value_dim: int
    out_dim: int
    input_t: FixedType
    weight_t: FixedType
    bias_t: FixedType
    proj_accum_t: FixedType
    q_t: FixedType
    accum_t: FixedType
    scale_t: FixedType
    score_t: FixedType
    attn_t: FixedType
    context_t: FixedType
    out_accum_t: FixedType
    result_t: FixedType
    softmax: SoftmaxSpec
    group: int = 1  # grouped attention: tokens per group (1 = plain attention)

    @property
    def scale(self) -> float:
        """Return 1/sqrt(group * key_dim) as stored in scale_t."""
        return float(quantize(1.0 / math.sqrt(self.group * self.key_dim), self.scale_t))

    @property
    def scale_exact(self) -> bool:
        """Return True when 1/sqrt(group * key_dim) is a power of two (folded exactly)."""
        return self.scale == 1.0 / math.sqrt(self.group * self.key_dim)


def _clog2(n: int) -> int:
    return int(math.ceil(math.log2(n))) if n > 1 else 0


def dense_accum_type(in_t: FixedType, w_t: FixedType, b_t: FixedType, n_in: int) -> FixedType:
    """Return an accumulator type holding sum(x*w) + b exactly."""
    f = max(in_t.frac + w_t.frac, b_t.frac)
    i = max(in_t.integer + w_t.integer, b_t.integer) + _clog2(n_in) + 1
    return FixedType(i + f, i, True)


def scale_type(key_dim: int, text=None) -> FixedType:
    """Return scale_t: one exact bit for 1/sqrt(key_dim) = 2^-k (key_dim a power of 4), else ``text`` or 18
    fractional bits."""
    k = math.log2(key_dim) / 2
    if text is not None:
        return parse_type(text)
    if k == int(k):
        k = int(k)
        return FixedType(1, 1 - k, False)
    return FixedType(18, 0, False, "AP_RND", "AP_SAT")


def make_spec(
    seq_len,
    embed_dim,
    num_heads,
    key_dim,
    value_dim,
    out_dim,
    input_t,
    weight_t,
    bias_t,
    q_t,
    score_t,
    attn_t,
    context_t,
    result_t,
    proj_accum_t=None,
    accum_t=None,
    scale_t=None,
    out_accum_t=None,
    exp_table_size=EXP_TABLE_SIZE,
    inv_table_size=INV_TABLE_SIZE,
    exp_table_t=None,
    inv_table_t=None,
    inp_norm_t=None,
    score_range=None,
    group=1,
) -> AttentionSpec:
    """Return an AttentionSpec; accumulators default to exact widths, the softmax to hwflow defaults.

    ``group`` > 1 is grouped attention: rows of ``group`` tokens (seq_len / group rows of group * key_dim)."""
    from ..util import HwflowError

    if group < 1 or seq_len % group:
        raise HwflowError(f"attention group {group} must divide the sequence length {seq_len}")
    it, wt, bt = parse_type(input_t), parse_type(weight_t), parse_type(bias_t)
    qt, st, at, ct, rt = (parse_type(t) for t in (q_t, score_t, attn_t, context_t, result_t))
    pa = parse_type(proj_accum_t) if proj_accum_t is not None else dense_accum_type(it, wt, bt, embed_dim)
    if accum_t is None:
        f = max(2 * qt.frac, at.frac + qt.frac)
        i = max(2 * qt.integer + _clog2(group * key_dim), at.integer + qt.integer + _clog2(seq_len // group)) + 1
        accum_t = FixedType(i + f, i, True)
    accum_t = parse_type(accum_t)
    oa = parse_type(out_accum_t) if out_accum_t is not None else dense_accum_type(ct, wt, bt, num_heads * value_dim)
    kw = {}
    if exp_table_t is not None:
        kw["exp_table_t"] = exp_table_t
    if inv_table_t is not None:
        kw["inv_table_t"] = inv_table_t
    sm = make_softmax_spec(
        seq_len // group,
        st,
        at,
        exp_table_size=exp_table_size,
        inv_table_size=inv_table_size,
        inp_norm_t=inp_norm_t,
        input_range=score_range,
        **kw,
    )
    return AttentionSpec(
        seq_len,
        embed_dim,
        num_heads,
        key_dim,
        value_dim,
        out_dim,
        it,
        wt,
        bt,
        pa,
        qt,
        accum_t,
        scale_type(group * key_dim, scale_t),
        st,
        at,
        ct,
        oa,
        rt,
        sm,
        int(group),
    )


def dense(x, w, b, accum_t: FixedType, res_t: FixedType) -> np.ndarray:
    """Return nnet::dense_latency of ``x`` (..., n_in) with w (n_in, n_out), b (n_out): per-product and per-add
    casts."""
    mult = quantize(x[..., :, None] * w, accum_t)
    acc = np.broadcast_to(quantize(b, accum_t), x.shape[:-1] + (w.shape[1],)).copy()
    for i in range(w.shape[0]):
        acc = quantize(acc + mult[..., i, :], accum_t)
    return quantize(acc, res_t)


def mha(x, spec: AttentionSpec, weights: dict) -> np.ndarray:
    """Return the firmware attention of ``x`` (batch, seq_len, embed_dim); weights as in
    QMultiHeadAttention.quantized_weights()."""
    s = spec
    x = quantize(np.asarray(x, np.float64), s.input_t)
    W = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    hk, hv = s.num_heads * s.key_dim, s.num_heads * s.value_dim

    def wb(n, width):
        w = quantize(W[f"{n}_kernel"], s.weight_t)
        b = quantize(W.get(f"{n}_bias", np.zeros(width)), s.bias_t)
        return w, b

    q = dense(x, *wb("query", hk), s.proj_accum_t, s.q_t)
    k = dense(x, *wb("key", hk), s.proj_accum_t, s.q_t)
    v = dense(x, *wb("value", hv), s.proj_accum_t, s.q_t)
    ctx = np.zeros(x.shape[:-1] + (hv,))
    g, tg = s.group, s.seq_len // s.group
    lead = x.shape[:-2]
    for h in range(s.num_heads):
        # grouped rows: (..., T/g, g, dim); group row i holds tokens i*g .. i*g+g-1
        qh = q[..., h * s.key_dim : (h + 1) * s.key_dim].reshape(lead + (tg, g, s.key_dim))
        kh = k[..., h * s.key_dim : (h + 1) * s.key_dim].reshape(lead + (tg, g, s.key_dim))
        vh = v[..., h * s.value_dim : (h + 1) * s.value_dim].reshape(lead + (tg, g, s.value_dim))
        acc = np.zeros(lead + (tg, tg))
        for u in range(g):
            for d in range(s.key_dim):
                acc = quantize(acc + qh[..., :, None, u, d] * kh[..., None, :, u, d], s.accum_t)
        ra = quantize_int(acc, s.accum_t).astype(object)
        rs = quantize_int(s.scale, s.scale_t)
        score = from_int(quantize_raw(ra * int(rs), s.accum_t.frac + s.scale_t.frac, s.score_t), s.score_t)
        a = softmax(score, s.softmax)
        acc = np.zeros(lead + (tg, g, s.value_dim))
        for j in range(tg):
            acc = quantize(acc + a[..., :, j, None, None] * vh[..., j, None, :, :], s.accum_t)
        ctx[..., h * s.value_dim : (h + 1) * s.value_dim] = quantize(acc, s.context_t).reshape(
            lead + (s.seq_len, s.value_dim)
        )
    return dense(ctx, *wb("output", s.out_dim), s.out_accum_t, s.result_t)
