"""TensorFlow forward passes of the firmware arithmetic: twins of ``hwflow.reference`` (softmax, norms, attention
and its variants: grouped, Linformer, cosFormer).

Each function takes the same Spec object the C++ template and the numpy reference are generated from
(``reference.softmax.make_spec``, ``reference.layernorm.make_spec``, ``reference.attention.make_spec``,
``reference.linformer.make_spec``, ``reference.cosformer.make_spec``),
uses its tables (``tf.gather`` on the very arrays written into the HLS project) and repeats every
cast of the reference in the same order, so the Keras layers compute the C simulation's values bit
for bit (tests/test_exact_keras.py checks each against its reference on random and extreme inputs).

Dot products run in float64: the accumulators the specs derive are exact, and the operands' products
and sums stay below 53 significant bits, so any summation order gives the exact sum. Products that may
be wider (score scaling, 1/n, 1/sqrt interpolation, x * inv_std) run on int64 representations.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..reference.fixed import FixedType, to_int
from ..util import HwflowError
from .fixed import (
    INT64_BITS,
    from_raw,
    mul_const_raw,
    mul_raw,
    quantize,
    quantize_raw,
    round_shift,
    to_raw,
    wide_mul,
    wide_mul_const,
    wide_quantize,
    wide_sum,
)


def _table(values) -> tf.Tensor:
    return tf.constant(values, tf.float64)


def _interp_reciprocal(mfrac, frac_bits: int, inv_bits: int, table, it: FixedType) -> tf.Tensor:
    """Return the raw inv_t value of 1/m for mantissas m = 1 + mfrac / 2^frac_bits (int64 ``mfrac``): the table entry
    of the top ``inv_bits`` bits and its neighbour, linearly interpolated on the remaining bits, rounded once
    (the reciprocal of the softmax sum and of the cosFormer normaliser)."""
    k = frac_bits - inv_bits
    if k > 0:
        idx = tf.bitwise.right_shift(mfrac, tf.constant(k, tf.int64))
        rem = tf.bitwise.bitwise_and(mfrac, tf.constant((1 << k) - 1, tf.int64))
    else:
        idx, rem, k = mfrac * (2**-k), tf.zeros_like(mfrac), 0
    traw = tf.constant(to_int(table, it), tf.int64)
    t0, t1 = tf.gather(traw, idx), tf.gather(traw, idx + 1)
    return quantize_raw(t0 * (2**k) + (t1 - t0) * rem, it.frac + k, it)


def softmax(x, spec) -> tf.Tensor:
    """Return the firmware softmax (hwflow_softmax.h) over the last axis of ``x`` as float64, bit-exact."""
    s = spec
    t = s.tables
    x = quantize(x, s.input_t)
    d = quantize(tf.reduce_max(x, axis=-1, keepdims=True) - x, s.inp_norm_t)
    raw = to_raw(d, s.inp_norm_t)
    if s.lo_bits > 0:
        hi = tf.gather(_table(t["exp_hi"]), tf.bitwise.right_shift(raw, tf.constant(s.lo_bits, tf.int64)))
        lo = tf.gather(_table(t["exp_lo"]), tf.bitwise.bitwise_and(raw, tf.constant(s.exp_lo_size - 1, tf.int64)))
        e = quantize(hi * lo, s.exp_table_t)
    else:
        e = tf.gather(_table(t["exp_hi"]), raw)
    total = quantize(tf.reduce_sum(e, axis=-1, keepdims=True), s.sum_t)
    sraw = to_raw(total, s.sum_t)
    sf = s.sum_t.frac
    # p = position of the leading one above the binary point (0 when the sum is < 2)
    p = tf.zeros_like(sraw)
    for b in range(1, s.sum_t.integer):
        bit = tf.bitwise.bitwise_and(tf.bitwise.right_shift(sraw, tf.constant(sf + b, tf.int64)), 1)
        p = tf.where(bit == 1, tf.constant(b, tf.int64), p)
    m = tf.bitwise.right_shift(sraw, p)
    mfrac = tf.bitwise.bitwise_and(m, tf.constant((1 << sf) - 1, tf.int64))
    it = s.inv_table_t
    inv_raw = _interp_reciprocal(mfrac, sf, s.inv_bits, t["inv"], it)
    e_raw = to_raw(e, s.exp_table_t)
    praw = tf.bitwise.right_shift(mul_raw(e_raw, inv_raw, s.exp_table_t.width, it.width, "softmax"), p)
    prod_t = FixedType(s.exp_table_t.width + it.width, s.exp_table_t.integer + it.integer, False)
    return quantize(from_raw(praw, prod_t), s.result_t)


def _mul_const(ra, a_frac: int, a_bits: int, c: float, ct: FixedType, rt: FixedType, where: str) -> tf.Tensor:
    """Return a * c assigned to rt (reference ``_mul``): ``ra`` int64 integers with ``a_frac`` fractional bits
    and at most ``a_bits`` significant bits, ``c`` a constant of type ``ct``; the product is exact (two limbs)."""
    c_raw, c_frac = int(round(c * 2.0**ct.frac)), ct.frac
    while c_raw and c_raw % 2 == 0 and c_frac > -64:  # a power-of-two factor of the constant is a shift, not bits
        c_raw, c_frac = c_raw // 2, c_frac - 1
    if a_bits > INT64_BITS:
        raise HwflowError(f"{where}: {a_bits}-bit values do not fit the 62-bit integers of the exact Keras layer")
    return from_raw(mul_const_raw(ra, c_raw, a_frac + c_frac, rt), rt)


def norm(x, spec, gamma=None, beta=None) -> tf.Tensor:
    """Return the firmware LayerNorm/RMSNorm (hwflow_layernorm.h) of ``x`` over its last axis as float64, bit-exact."""
    s = spec
    n = s.n_in
    x = quantize(x, s.input_t)
    gamma = quantize(tf.ones([n], tf.float64) if gamma is None else gamma, s.scale_t)
    beta = quantize(tf.zeros([n], tf.float64) if beta is None else beta, s.bias_t)
    if s.center:
        # the exact accumulator holds every partial sum, so one reduction equals the C++ loop
        total = quantize(tf.reduce_sum(x, axis=-1, keepdims=True), s.accum_t)
        # the sum of n inputs has the input's fractional bits and log2(n) more integer bits
        lg = max(n - 1, 1).bit_length()
        mean = _mul_const(
            to_raw(total, s.input_t), s.input_t.frac, s.input_t.width + lg, s.inv_n, s.inv_n_t, s.mean_t, "norm mean"
        )
        d = quantize(x - mean, s.diff_t)
    else:
        d = quantize(x, s.diff_t)
    draw = to_raw(d, s.diff_t)
    # sum of d^2 (exact accumulator) and its product with 1/n: up to ~90 bits, carried as two int64 limbs
    sq = wide_sum(*wide_mul(draw, draw, s.diff_t.width, "norm square"))
    c_raw = int(round(s.inv_n * 2.0**s.inv_n_t.frac))
    mean_sq = from_raw(
        wide_quantize(*wide_mul_const(*sq, c_raw, "norm variance"), 2 * s.diff_t.frac + s.inv_n_t.frac, s.var_t),
        s.var_t,
    )
    var = quantize(mean_sq + s.eps_q, s.var_t)
    raw = to_raw(var, s.var_t)
    vw, vf, tb = s.var_t.width, s.var_t.frac, s.table_bits
    pos = tf.zeros_like(raw)
    for k in range(1, vw):
        bit = tf.bitwise.bitwise_and(tf.bitwise.right_shift(raw, tf.constant(k, tf.int64)), 1)
        pos = tf.where(bit == 1, tf.constant(k, tf.int64), pos)
    one = tf.constant(1, tf.int64)
    mfrac = tf.bitwise.bitwise_and(raw, tf.bitwise.left_shift(one, pos) - 1)
    sh = pos - tb
    shp, shn = tf.maximum(sh, 0), tf.maximum(-sh, 0)
    j = tf.where(sh > 0, tf.bitwise.right_shift(mfrac, shp), tf.bitwise.left_shift(mfrac, shn))
    rem = tf.where(sh > 0, tf.bitwise.bitwise_and(mfrac, tf.bitwise.left_shift(one, shp) - 1), tf.zeros_like(mfrac))
    b = pos - vf
    odd = tf.bitwise.bitwise_and(b, 1)
    e = tf.math.floordiv(b - odd, 2)
    tt = s.table_t
    traw = tf.constant(to_int(s.table, tt), tf.int64)
    base = odd * (2**tb + 1) + j
    t0, t1 = tf.gather(traw, base), tf.gather(traw, base + 1)
    # T0 + (T1 - T0) * rem / 2^sh, one rounding into table_t (the reference forms it at 2^vw resolution with
    # Python integers; the same rational value rounds identically). Adjacent entries differ by few bits.
    steps = np.abs(np.diff(to_int(s.table, tt).reshape(2, -1), axis=1))
    mul_raw(t0, rem, int(steps.max()).bit_length() + 1, max(vw - tb, 1), "norm table interpolation")
    r = from_raw(round_shift(t0, (t1 - t0) * rem, shp, tt), tt)
    it = s.inv_std_t
    rr = to_raw(quantize(r, it), it)
    rr = tf.where(e >= 0, tf.bitwise.right_shift(rr, tf.maximum(e, 0)), tf.bitwise.left_shift(rr, tf.maximum(-e, 0)))
    rr = tf.math.floormod(rr, tf.constant(2**it.width, tf.int64))  # operator<< keeps the width (wraps)
    nrm = from_raw(
        wide_quantize(*wide_mul(draw, rr, s.diff_t.width, "norm scale"), s.diff_t.frac + it.frac, s.norm_t), s.norm_t
    )
    return quantize(nrm * gamma + beta, s.result_t)


def _float_exact(t: FixedType, where: str) -> None:
    """Raise unless values of type ``t`` (an exact accumulator) are exact in a double."""
    if t.width > 53:
        raise HwflowError(
            f"{where}: accumulator {t} is wider than the 53 bits a double holds exactly; narrow the operand types"
        )


def dense(x, w, b, accum_t: FixedType, res_t: FixedType, where: str = "dense") -> tf.Tensor:
    """Return nnet::dense_latency (reference ``attention.dense``) of float64 ``x`` (..., n_in), w (n_in, n_out)."""
    _float_exact(accum_t, where)
    acc = tf.tensordot(x, w, axes=[[-1], [0]]) + b
    return quantize(quantize(acc, accum_t), res_t)


def _weights(weights: dict, n: str, width: int, weight_t, bias_t):
    """Return (kernel, bias) ``n`` of an attention layer cast to the firmware's weight/bias types (bias 0 if absent)."""
    w = quantize(weights[f"{n}_kernel"], weight_t)
    b = weights.get(f"{n}_bias")
    return w, quantize(tf.zeros([width], tf.float64) if b is None else b, bias_t)


def _project(x, xv, s, weights: dict):
    """Return the Q, K, V projections (hwflow_mha.h's three dense kernels) of queries ``x`` and keys/values ``xv``."""
    hk, hv = s.num_heads * s.key_dim, s.num_heads * s.value_dim
    q = dense(x, *_weights(weights, "query", hk, s.weight_t, s.bias_t), s.proj_accum_t, s.q_t, "attention projection")
    k = dense(xv, *_weights(weights, "key", hk, s.weight_t, s.bias_t), s.proj_accum_t, s.q_t, "attention projection")
    v = dense(xv, *_weights(weights, "value", hv, s.weight_t, s.bias_t), s.proj_accum_t, s.q_t, "attention projection")
    return q, k, v


def _heads(t, num_heads: int, dim: int, group: int = 1) -> tf.Tensor:
    """Return (B, T, H*dim) as (B, H, T/group, group*dim): head h is columns [h*dim, (h+1)*dim), and row i of a
    grouped head holds the head's slices of tokens i*group .. i*group+group-1 (reference.attention.mha)."""
    shape = tf.shape(t)
    t = tf.reshape(t, (shape[0], shape[1] // group, group, num_heads, dim))
    return tf.reshape(tf.transpose(t, (0, 3, 1, 2, 4)), (shape[0], num_heads, shape[1] // group, group * dim))


def _merge_heads(t, num_heads: int, dim: int, group: int = 1) -> tf.Tensor:
    """Return the inverse of :func:`_heads`: (B, H, T/group, group*dim) -> (B, T, H*dim)."""
    shape = tf.shape(t)
    t = tf.reshape(t, (shape[0], num_heads, shape[2], group, dim))
    return tf.reshape(tf.transpose(t, (0, 2, 3, 1, 4)), (shape[0], shape[2] * group, num_heads * dim))


def attend(qh, kh, vh, spec) -> tf.Tensor:
    """Return the firmware's per-head context (hwflow_mha.h's rows): scores ``qh kh^T`` in the exact accumulator,
    scaled into score_t, the firmware softmax over the keys, ``a vh`` in the accumulator, cast to context_t.

    ``qh`` (B, H, Tq, d), ``kh`` (B, H, Tk, d), ``vh`` (B, H, Tk, dv) float64 in their firmware types; shared by
    softmax, grouped (rows of group tokens) and Linformer (Tk = k compressed tokens) attention."""
    s = spec
    _float_exact(s.accum_t, "attention accumulator")
    acc = quantize(tf.matmul(qh, kh, transpose_b=True), s.accum_t)
    scale_raw = int(round(s.scale * 2.0**s.scale_t.frac))
    score = from_raw(
        mul_const_raw(to_raw(acc, s.accum_t), scale_raw, s.accum_t.frac + s.scale_t.frac, s.score_t), s.score_t
    )
    a = softmax(score, s.softmax)
    return quantize(quantize(tf.matmul(a, vh), s.accum_t), s.context_t)


def _output(ctx, s, weights: dict) -> tf.Tensor:
    """Return the output projection of the concatenated context (B, T, H*dv)."""
    w = _weights(weights, "output", s.out_dim, s.weight_t, s.bias_t)
    return dense(ctx, *w, s.out_accum_t, s.result_t, "attention output projection")


def _inputs(x, value, s, cast_input: bool):
    x = quantize(x, s.input_t) if cast_input else tf.cast(x, tf.float64)
    if value is None:
        return x, x
    return x, (quantize(value, s.input_t) if cast_input else tf.cast(value, tf.float64))


def mha(x, spec, weights: dict, cast_input: bool = True, value=None) -> tf.Tensor:
    """Return the firmware attention (hwflow_mha.h) of ``x`` (batch, seq_len, embed_dim) as float64, bit-exact;
    ``weights`` as float64 tensors named like QMultiHeadAttention.quantized_weights(). ``cast_input=False``
    skips the input cast (the values are already in the firmware's input type); ``value`` (keys = values)
    defaults to ``x`` (self-attention, what the firmware implements). ``spec.group`` > 1 is grouped attention
    (reference.attention.mha): rows of ``group`` neighbouring tokens, ungrouped after."""
    s = spec
    x, xv = _inputs(x, value, s, cast_input)
    q, k, v = _project(x, xv, s, weights)
    g, h = s.group, s.num_heads
    ctx = attend(_heads(q, h, s.key_dim, g), _heads(k, h, s.key_dim, g), _heads(v, h, s.value_dim, g), s)
    return _output(_merge_heads(ctx, h, s.value_dim, g), s, weights)


def linformer(x, spec, weights: dict, cast_input: bool = True, value=None) -> tf.Tensor:
    """Return the firmware Linformer attention (hwflow_linformer.h, reference.linformer.linformer) of ``x``
    (batch, seq_len, embed_dim) as float64, bit-exact; ``weights`` as QLinformerAttention.quantized_weights()
    (keys/values from ``value``, default ``x``: self-attention, what the firmware implements)."""
    s = spec.attn
    x, xv = _inputs(x, value, s, cast_input)
    q, k, v = _project(x, xv, s, weights)
    _float_exact(spec.seq_accum_t, "Linformer sequence accumulator")

    def seq_project(t, name):  # (B, N, C) -> (B, k, C): sum_t E[m, t] t[t, c] in the exact accumulator
        e = quantize(weights[f"{name}_seq_kernel"], spec.seq_weight_t)
        return quantize(quantize(tf.einsum("mt,btc->bmc", e, t), spec.seq_accum_t), spec.kv_t)

    kp, vp = seq_project(k, "key"), seq_project(v, "value")
    h = s.num_heads
    ctx = attend(_heads(q, h, s.key_dim), _heads(kp, h, s.key_dim), _heads(vp, h, s.value_dim), s)
    return _output(_merge_heads(ctx, h, s.value_dim), s, weights)


def _cos_normalise(num, den, spec) -> tf.Tensor:
    """Return (context_t)(num / den) like reference.cosformer.normalise: den = m 2^p (leading one), 1/m from the
    interpolated table, one rounding of the exact product; 0 where den == 0. ``num`` (..., d), ``den`` (...)."""
    s = spec
    W = s.den_t.width
    draw = to_raw(den, s.den_t)
    p = tf.zeros_like(draw)
    for b in range(1, W):
        bit = tf.bitwise.bitwise_and(tf.bitwise.right_shift(draw, tf.constant(b, tf.int64)), 1)
        p = tf.where(bit == 1, tf.constant(b, tf.int64), p)
    up = tf.bitwise.left_shift(tf.constant(1, tf.int64), W - 1 - p)  # 2^(W-1-p): the leading one to bit W-1
    mfrac = tf.bitwise.bitwise_and(draw * up, tf.constant((1 << (W - 1)) - 1, tf.int64))
    it = s.inv_table_t
    inv_raw = _interp_reciprocal(mfrac, W - 1, s.inv_bits, s.tables["inv"], it)
    nraw = to_raw(num, s.num_t)
    # num * inv << (W - 1 - p): at most num + inv + W - 1 bits, checked against int64
    prod = mul_raw(nraw, inv_raw[..., None], s.num_t.width, it.width + W - 1, "cosFormer normaliser") * up[..., None]
    frac = s.num_t.frac + it.frac + W - 1 - s.den_t.frac
    out = from_raw(quantize_raw(prod, frac, s.context_t), s.context_t)
    return tf.where((draw == 0)[..., None], tf.zeros_like(out), out)


def cosformer(x, spec, weights: dict, cast_input: bool = True, value=None) -> tf.Tensor:
    """Return the firmware cosFormer attention (hwflow_cosformer.h, reference.cosformer.cosformer) of ``x``
    (batch, seq_len, embed_dim) as float64, bit-exact; ``weights`` as QCosformerAttention.quantized_weights()
    (keys/values from ``value`` of the same length, default ``x``).

    The cos/sin position tables are the very arrays of reference.cosformer.build_tables (spec.tables); every sum
    (state, key sums, numerators, normalisers) is exact in spec.accum_t, so one reduction equals the C++ loops."""
    s = spec
    x, xv = _inputs(x, value, s, cast_input)
    q, k, v = _project(x, xv, s, weights)
    q, k = tf.nn.relu(q), tf.nn.relu(k)  # the ReLU feature map (exact: a sign test)
    _float_exact(s.accum_t, "cosFormer accumulator")
    pos = tf.range(tf.shape(x)[1])
    cos = tf.gather(_table(s.tables["cos"]), pos)[:, None]
    sin = tf.gather(_table(s.tables["sin"]), pos)[:, None]
    h, dk, dv = s.num_heads, s.key_dim, s.value_dim
    qc, qs = _heads(quantize(q * cos, s.feat_t), h, dk), _heads(quantize(q * sin, s.feat_t), h, dk)
    kc, ks = _heads(quantize(k * cos, s.feat_t), h, dk), _heads(quantize(k * sin, s.feat_t), h, dk)
    vh = _heads(v, h, dv)

    def acc(t, out_t):
        return quantize(quantize(t, s.accum_t), out_t)

    kvc, kvs = acc(tf.einsum("bhjd,bhje->bhde", kc, vh), s.kv_t), acc(tf.einsum("bhjd,bhje->bhde", ks, vh), s.kv_t)
    kcs, kss = acc(tf.reduce_sum(kc, 2), s.ksum_t), acc(tf.reduce_sum(ks, 2), s.ksum_t)
    num = acc(tf.einsum("bhid,bhde->bhie", qc, kvc) + tf.einsum("bhid,bhde->bhie", qs, kvs), s.num_t)
    den = acc(tf.einsum("bhid,bhd->bhi", qc, kcs) + tf.einsum("bhid,bhd->bhi", qs, kss), s.den_t)
    ctx = _cos_normalise(num, den, s)
    return _output(_merge_heads(ctx, h, dv), s, weights)


def global_average_pool1d(x, accum_t, result_t) -> tf.Tensor:
    """Return hls4ml's global average pooling (reference ``pooling.global_average_pool1d``) over axis -2 of ``x``,
    values representable in the input type, as float64, bit-exact."""
    x = tf.cast(x, tf.float64)
    n = tf.cast(tf.shape(x)[-2], tf.int64)
    raw = to_raw(quantize(tf.reduce_sum(x, axis=-2), accum_t), accum_t)  # exact sum in accum_t
    q = tf.sign(raw) * tf.math.floordiv(tf.abs(raw), n)  # '/=' by an unsigned: truncation toward zero
    return quantize(from_raw(q, accum_t), result_t)
