"""Numpy reference of hwflow_linformer.h (Linformer self-attention, Wang et al. 2020), bit-exact.

Keys and values are projected along the sequence, N -> k, by two learned k x N matrices E and F shared by the
heads ("headwise sharing" of the paper); attention then runs over k compressed tokens instead of N, so the
variable x variable products drop from N*N*d to N*k*d (plus the two N*k*d sequence projections, which multiply
variables by constants). The rest (Q/K/V/output projections, scaled scores, softmax, context) is exactly
hwflow_mha's arithmetic, reused through an AttentionSpec whose sequence length is k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .attention import AttentionSpec, dense
from .attention import make_spec as make_attention_spec
from .fixed import FixedType, from_int, parse_type, quantize, quantize_int, quantize_raw
from .softmax import softmax


@dataclass
class LinformerSpec:
    """Everything that fixes the firmware Linformer arithmetic: the inner attention over k tokens plus the
    sequence projection (its weight type, exact accumulator and the compressed key/value type)."""

    seq_len: int
    proj_k: int
    seq_weight_t: FixedType
    seq_accum_t: FixedType
    kv_t: FixedType
    attn: AttentionSpec  # seq_len == proj_k: the softmax rows and the context sums run over k entries


def _clog2(n: int) -> int:
    return int(math.ceil(math.log2(n))) if n > 1 else 0


def make_spec(seq_len: int, proj_k: int, seq_weight_t, kv_t, seq_accum_t=None, **attention) -> LinformerSpec:
    """Return a LinformerSpec; ``attention`` are hwflow.reference.attention.make_spec's arguments without seq_len.

    The sequence accumulator defaults to the exact width of sum_t E[m,t] * k[t].
    """
    q_t = parse_type(attention["q_t"])
    wt, kt = parse_type(seq_weight_t), parse_type(kv_t)
    if seq_accum_t is None:
        i = wt.integer + q_t.integer + _clog2(seq_len) + 1
        f = wt.frac + q_t.frac
        seq_accum_t = FixedType(i + f, i, True)
    # the inner attention sees k-entry rows of kv_t keys/values: size its accumulators for those operands
    inner = dict(attention)
    if inner.get("accum_t") is None:
        at = parse_type(inner["attn_t"])
        f = max(q_t.frac + kt.frac, at.frac + kt.frac)
        i = max(q_t.integer + kt.integer + _clog2(inner["key_dim"]), at.integer + kt.integer + _clog2(proj_k)) + 1
        inner["accum_t"] = FixedType(i + f, i, True)
    attn = make_attention_spec(proj_k, **inner)
    return LinformerSpec(int(seq_len), int(proj_k), wt, parse_type(seq_accum_t), kt, attn)


def seq_project(x, w, accum_t: FixedType, res_t: FixedType) -> np.ndarray:
    """Return (res_t) sum_t w[m, t] * x[..., t, c] for every m: the Linformer N -> k projection (per-add casts)."""
    acc = np.zeros(x.shape[:-2] + (w.shape[0], x.shape[-1]))
    for t in range(w.shape[1]):
        acc = quantize(acc + w[:, t, None] * x[..., None, t, :], accum_t)
    return quantize(acc, res_t)


def linformer(x, spec: LinformerSpec, weights: dict) -> np.ndarray:
    """Return the firmware Linformer attention of ``x`` (batch, seq_len, embed_dim); weights as in
    QLinformerAttention.quantized_weights()."""
    s = spec.attn
    x = quantize(np.asarray(x, np.float64), s.input_t)
    W = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    hk, hv = s.num_heads * s.key_dim, s.num_heads * s.value_dim

    def wb(n, width):
        return quantize(W[f"{n}_kernel"], s.weight_t), quantize(W.get(f"{n}_bias", np.zeros(width)), s.bias_t)

    q = dense(x, *wb("query", hk), s.proj_accum_t, s.q_t)
    k = dense(x, *wb("key", hk), s.proj_accum_t, s.q_t)
    v = dense(x, *wb("value", hv), s.proj_accum_t, s.q_t)
    kp = seq_project(k, quantize(W["key_seq_kernel"], spec.seq_weight_t), spec.seq_accum_t, spec.kv_t)
    vp = seq_project(v, quantize(W["value_seq_kernel"], spec.seq_weight_t), spec.seq_accum_t, spec.kv_t)
    ctx = np.zeros(x.shape[:-1] + (hv,))
    rs = int(quantize_int(s.scale, s.scale_t))
    for h in range(s.num_heads):
        qh, kh = q[..., h * s.key_dim : (h + 1) * s.key_dim], kp[..., h * s.key_dim : (h + 1) * s.key_dim]
        vh = vp[..., h * s.value_dim : (h + 1) * s.value_dim]
        acc = np.zeros(x.shape[:-2] + (spec.seq_len, spec.proj_k))
        for d in range(s.key_dim):
            acc = quantize(acc + qh[..., :, None, d] * kh[..., None, :, d], s.accum_t)
        ra = quantize_int(acc, s.accum_t).astype(object)
        score = from_int(quantize_raw(ra * rs, s.accum_t.frac + s.scale_t.frac, s.score_t), s.score_t)
        a = softmax(score, s.softmax)
        acc = np.zeros(x.shape[:-2] + (spec.seq_len, s.value_dim))
        for j in range(spec.proj_k):
            acc = quantize(acc + a[..., :, j, None] * vh[..., j, None, :], s.accum_t)
        ctx[..., h * s.value_dim : (h + 1) * s.value_dim] = quantize(acc, s.context_t)
    return dense(ctx, *wb("output", s.out_dim), s.out_accum_t, s.result_t)
