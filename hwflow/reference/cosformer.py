"""Numpy reference of hwflow_cosformer.h (cosFormer self-attention, Qin et al. 2022), bit-exact.

Softmax is replaced by a ReLU feature map and a cos re-weighting of token distances,
``sim(i, j) = relu(q_i) . relu(k_j) * cos(pi/2 * (i - j) / M)``, computed in linear form through
``cos(a - b) = cos a cos b + sin a sin b``:

- per-position table: ``c_i = cos(pi i / 2M)``, ``s_i = sin(pi i / 2M)`` (``trig_t``, i < N; M >= N keeps every
  angle in [0, pi/2], so both are in [0, 1]);
- re-weighted features: ``qc_i = (feat_t)(relu(q_i) c_i)``, ``qs_i = (feat_t)(relu(q_i) s_i)``, same for keys;
- state (one per head, shared by all queries): ``KVc = (kv_t) sum_j kc_j^T v_j`` (d x d), ``Kc = (ksum_t) sum_j
  kc_j`` (d), and the sin twins;
- per query: ``num_i = (num_t)(qc_i KVc + qs_i KVs)`` (d), ``den_i = (den_t)(qc_i . Kc + qs_i . Ks)`` (unsigned);
- one normaliser reciprocal per query, the softmax's interpolated table style: ``den = m 2^p`` with m in [1, 2)
  (leading-one detection), ``1/m`` from the table T[j] = 1/(1 + j/2^inv_bits) by linear interpolation (inv_t);
  ``ctx_i = (context_t)(num_i * inv * 2^-p)`` rounded once (an exact shift of the exact product);
  ``den == 0`` (all re-weighted features zero) gives ``ctx_i = 0``.

No exponentials, and O(N d^2) variable x variable products instead of O(N^2 d).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..util import HwflowError
from .attention import dense, dense_accum_type
from .fixed import FixedType, from_int, parse_type, quantize, quantize_int, quantize_raw

DEFAULT_TRIG_TABLE = "ap_ufixed<18,1,AP_RND_CONV,AP_SAT>"
DEFAULT_INV_TABLE = "ap_ufixed<18,1,AP_RND,AP_SAT>"


@dataclass
class CosformerSpec:
    """Everything that fixes the firmware cosFormer arithmetic for one layer."""

    seq_len: int
    embed_dim: int
    num_heads: int
    key_dim: int
    value_dim: int
    out_dim: int
    horizon: int  # M of cos(pi/2 (i - j) / M)
    input_t: FixedType
    weight_t: FixedType
    bias_t: FixedType
    proj_accum_t: FixedType
    q_t: FixedType
    trig_t: FixedType
    feat_t: FixedType
    accum_t: FixedType
    kv_t: FixedType
    ksum_t: FixedType
    num_t: FixedType
    den_t: FixedType
    inv_table_t: FixedType
    inv_bits: int
    context_t: FixedType
    out_accum_t: FixedType
    result_t: FixedType
    tables: dict = field(default_factory=dict, repr=False)

    @property
    def inv_table_size(self) -> int:
        """Return the number of entries of the reciprocal table."""
        return 2**self.inv_bits + 1


def _clog2(n: int) -> int:
    return int(math.ceil(math.log2(n))) if n > 1 else 0


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
    feat_t,
    kv_t,
    ksum_t,
    num_t,
    den_t,
    context_t,
    result_t,
    horizon=0,
    proj_accum_t=None,
    accum_t=None,
    out_accum_t=None,
    trig_table_t=DEFAULT_TRIG_TABLE,
    inv_table_t=DEFAULT_INV_TABLE,
    inv_table_size=1024,
) -> CosformerSpec:
    """Return a CosformerSpec; the accumulator defaults to the exact width of every sum it carries."""
    it, wt, bt = parse_type(input_t), parse_type(weight_t), parse_type(bias_t)
    qt, ft, kvt, kst = parse_type(q_t), parse_type(feat_t), parse_type(kv_t), parse_type(ksum_t)
    nt, dt, ct, rt = parse_type(num_t), parse_type(den_t), parse_type(context_t), parse_type(result_t)
    trig, inv = parse_type(trig_table_t), parse_type(inv_table_t)
    horizon = int(horizon) or int(seq_len)
    if horizon < seq_len:
        raise HwflowError(
            f"cosFormer horizon M={horizon} < sequence length {seq_len}: cos(pi/2 (i-j)/M) would turn negative; "
            f"set model.cosformer_m >= {seq_len} (0 = sequence length)"
        )
    if dt.signed:
        raise HwflowError(f"cosFormer den type {dt} must be unsigned (the normaliser is a sum of non-negative terms)")
    if trig.signed or trig.integer < 1 or inv.signed or inv.integer < 1:
        raise HwflowError(
            f"cosFormer tables {trig} / {inv} must be unsigned with >= 1 integer bit (they store cos 0 = 1 and 1/1)"
        )
    if inv_table_size < 2 or inv_table_size & (inv_table_size - 1):
        raise HwflowError(f"cosFormer inv_table_size={inv_table_size} must be a power of two >= 2 (e.g. 1024)")
    pa = parse_type(proj_accum_t) if proj_accum_t is not None else dense_accum_type(it, wt, bt, embed_dim)
    if accum_t is None:
        # state sums over N tokens of feat x v (or feat), row sums over 2 dk of feat x kv (or feat x ksum)
        f = max(ft.frac + qt.frac, ft.frac, ft.frac + kvt.frac, ft.frac + kst.frac)
        i = (
            max(
                ft.integer + qt.integer + _clog2(seq_len),
                ft.integer + _clog2(seq_len),
                ft.integer + kvt.integer + _clog2(2 * key_dim),
                ft.integer + kst.integer + _clog2(2 * key_dim),
            )
            + 2
        )
        accum_t = FixedType(i + f, i, True)
    oa = parse_type(out_accum_t) if out_accum_t is not None else dense_accum_type(ct, wt, bt, num_heads * value_dim)
    spec = CosformerSpec(
        int(seq_len),
        int(embed_dim),
        int(num_heads),
        int(key_dim),
        int(value_dim),
        int(out_dim),
        horizon,
        it,
        wt,
        bt,
        pa,
        qt,
        trig,
        ft,
        parse_type(accum_t),
        kvt,
        kst,
        nt,
        dt,
        inv,
        int(math.log2(inv_table_size)),
        ct,
        oa,
        rt,
    )
    spec.tables = build_tables(spec)
    return spec


def build_tables(spec: CosformerSpec) -> dict:
    """Return the per-position cos/sin tables and the reciprocal table (values exact in their types)."""
    i = np.arange(spec.seq_len, dtype=np.float64)
    ang = np.pi / 2 * i / spec.horizon
    j = np.arange(spec.inv_table_size, dtype=np.float64)
    return {
        "cos": quantize(np.cos(ang), spec.trig_t),
        "sin": quantize(np.sin(ang), spec.trig_t),
        "inv": quantize(1.0 / (1.0 + j / 2**spec.inv_bits), spec.inv_table_t),
    }


def normalise(num, den, spec: CosformerSpec) -> np.ndarray:
    """Return (context_t)(num / den) the firmware way: den = m 2^p, 1/m by the interpolated table, one rounding.

    ``num`` (..., d) in num_t, ``den`` (...) in den_t.
    """
    W, F = spec.den_t.width, spec.den_t.frac
    draw = quantize_int(den, spec.den_t).astype(object)
    p = np.zeros(draw.shape, dtype=object)  # position of the leading one (0 when den == 0)
    for b in range(1, W):
        p = np.where((draw >> b) & 1, b, p)
    m = np.asarray(draw << (W - 1 - p), dtype=object)  # leading one at bit W - 1
    mfrac = m & ((1 << (W - 1)) - 1)
    k = W - 1 - spec.inv_bits
    if k > 0:
        idx, rem = mfrac >> k, mfrac & ((1 << k) - 1)
    else:
        idx, rem, k = mfrac << -k, mfrac * 0, 0
    traw = quantize_int(spec.tables["inv"], spec.inv_table_t).astype(object)
    idx = idx.astype(np.int64)
    t0, t1 = traw[idx], traw[idx + 1]
    inv_raw = quantize_raw(t0 * (1 << k) + (t1 - t0) * rem, spec.inv_table_t.frac + k, spec.inv_table_t)
    nraw = quantize_int(num, spec.num_t).astype(object)
    # num * inv * 2^(F - p) = (num_raw * inv_raw << (W - 1 - p)) * 2^-(num_f + inv_f + W - 1 - F)
    prod = nraw * np.asarray(inv_raw, dtype=object)[..., None] << (W - 1 - p)[..., None]
    frac = spec.num_t.frac + spec.inv_table_t.frac + W - 1 - F
    out = from_int(quantize_raw(prod, frac, spec.context_t), spec.context_t)
    return np.where((draw == 0)[..., None], 0.0, out)


def cosformer(x, spec: CosformerSpec, weights: dict) -> np.ndarray:
    """Return the firmware cosFormer attention of ``x`` (batch, seq_len, embed_dim); weights as in
    QCosformerAttention.quantized_weights()."""
    s = spec
    x = quantize(np.asarray(x, np.float64), s.input_t)
    W = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    hk, hv = s.num_heads * s.key_dim, s.num_heads * s.value_dim

    def wb(n, width):
        return quantize(W[f"{n}_kernel"], s.weight_t), quantize(W.get(f"{n}_bias", np.zeros(width)), s.bias_t)

    q = np.maximum(dense(x, *wb("query", hk), s.proj_accum_t, s.q_t), 0.0)
    k = np.maximum(dense(x, *wb("key", hk), s.proj_accum_t, s.q_t), 0.0)
    v = dense(x, *wb("value", hv), s.proj_accum_t, s.q_t)
    c, sn = s.tables["cos"][:, None], s.tables["sin"][:, None]
    qc, qs = quantize(q * c, s.feat_t), quantize(q * sn, s.feat_t)
    kc, ks = quantize(k * c, s.feat_t), quantize(k * sn, s.feat_t)
    ctx = np.zeros(x.shape[:-1] + (hv,))
    dk, dv = s.key_dim, s.value_dim
    for h in range(s.num_heads):
        sk, sv = slice(h * dk, (h + 1) * dk), slice(h * dv, (h + 1) * dv)
        vh = v[..., sv]
        state = {}
        for name, kf in (("c", kc[..., sk]), ("s", ks[..., sk])):
            acc = np.zeros(x.shape[:-2] + (dk, dv))
            ksum = np.zeros(x.shape[:-2] + (dk,))
            for j in range(s.seq_len):
                acc = quantize(acc + kf[..., j, :, None] * vh[..., j, None, :], s.accum_t)
                ksum = quantize(ksum + kf[..., j, :], s.accum_t)
            state[name] = (quantize(acc, s.kv_t), quantize(ksum, s.ksum_t))
        num = np.zeros(x.shape[:-2] + (s.seq_len, dv))
        den = np.zeros(x.shape[:-2] + (s.seq_len,))
        for d in range(dk):
            for name, qf in (("c", qc[..., sk]), ("s", qs[..., sk])):
                kv, ksum = state[name]
                num = quantize(num + qf[..., :, d, None] * kv[..., None, d, :], s.accum_t)
                den = quantize(den + qf[..., :, d] * ksum[..., None, d], s.accum_t)
        ctx[..., sv] = normalise(quantize(num, s.num_t), quantize(den, s.den_t), s)
    return dense(ctx, *wb("output", s.out_dim), s.out_accum_t, s.result_t)
