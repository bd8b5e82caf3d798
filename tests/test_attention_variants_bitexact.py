"""Bit-exactness of the attention variants (Linformer, cosFormer, grouped): compiled C++ vs numpy references."""

import shutil

import numpy as np
import pytest

from hwflow.reference.fixed import parse_type, quantize

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")

A16 = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
ATTN = "ap_ufixed<16,0,AP_RND_CONV,AP_SAT>"


def _inputs(rng, t, shape, n=200, scale=1.5):
    """Random rows plus the extreme rows (zeros, all max, all min, alternating) of input type t."""
    t = parse_type(t)
    x = quantize(rng.normal(0, scale, (n,) + shape), t)
    alt = np.where(np.arange(int(np.prod(shape))).reshape(shape) % 2, t.max, t.min)
    return np.concatenate(
        [x, np.zeros((1,) + shape), np.full((1,) + shape, t.max), np.full((1,) + shape, t.min), alt[None]]
    )


def _projection_weights(rng, spec, strategy):
    from hwflow.hls.codegen import cpp_array
    from hwflow.hls.ext.mha_code import weight_layout

    D, H, DK, DV, O = spec.embed_dim, spec.num_heads, spec.key_dim, spec.value_dim, spec.out_dim
    W, pre = {}, ""
    for n, p, shp in [
        ("query", "q", (D, H * DK)),
        ("key", "k", (D, H * DK)),
        ("value", "v", (D, H * DV)),
        ("output", "o", (H * DV, O)),
    ]:
        W[n + "_kernel"] = quantize(rng.normal(0, 0.5, shp), spec.weight_t)
        W[n + "_bias"] = quantize(rng.normal(0, 0.3, shp[1]), spec.bias_t)
        pre += cpp_array("w" + p, spec.weight_t.cpp(), weight_layout(W[n + "_kernel"], strategy))
        pre += cpp_array("b" + p, spec.bias_t.cpp(), W[n + "_bias"])
    return W, pre


@pytest.mark.parametrize(
    "strategy,rf,T,K,score_range",
    [("Latency", 1, 8, 3, None), ("Resource", 4, 8, 4, 6.0), ("Latency", 1, 32, 8, None)],
)
def test_linformer_cpp_matches_reference_bit_for_bit(strategy, rf, T, K, score_range):
    from hwflow.hls import harness
    from hwflow.hls.codegen import cpp_array
    from hwflow.hls.ext.linformer_code import linformer_config_cpp
    from hwflow.reference.linformer import linformer, make_spec

    rng = np.random.default_rng(T * 10 + K)
    D, H, DK = 8, 2, 4
    it, rt = "ap_fixed<16,6>", A16
    spec = make_spec(
        T,
        K,
        "ap_fixed<8,1>",
        "ap_fixed<16,7,AP_RND_CONV,AP_SAT>",
        embed_dim=D,
        num_heads=H,
        key_dim=DK,
        value_dim=DK,
        out_dim=D,
        input_t=it,
        weight_t="ap_fixed<8,1>",
        bias_t="ap_fixed<8,1>",
        q_t=A16,
        score_t=A16,
        attn_t=ATTN,
        context_t=A16,
        result_t=rt,
        score_range=score_range,
    )
    W, pre = _projection_weights(rng, spec.attn, strategy)
    for n, w in (("key_seq_kernel", "we"), ("value_seq_kernel", "wf")):
        W[n] = quantize(rng.normal(0, 0.5, (K, T)), spec.seq_weight_t)
        pre += cpp_array(w, spec.seq_weight_t.cpp(), W[n])
    pre = pre.replace("static const", "static") + linformer_config_cpp(spec, "cfg", strategy, rf)
    exe = harness.build(
        ["nnet_utils/hwflow_linformer.h"],
        pre,
        f"nnet::hwflow_linformer<{it}, {rt}, cfg>(in, out, wq, bq, wk, bk, wv, bv, wo, bo, we, wf, "
        "cfg_sm_exp_hi, cfg_sm_exp_lo, cfg_sm_inv);",
        it,
        rt,
        T * D,
        T * D,
    )
    x = _inputs(rng, it, (T, D))
    c = harness.run(exe, x.reshape(len(x), -1)).reshape(x.shape)
    r = linformer(x, spec, W)
    assert np.array_equal(c, r), f"{np.count_nonzero(c != r)} mismatches"
    assert np.count_nonzero(r) > r.size // 2  # not a trivially saturated/zero output


@pytest.mark.parametrize(
    "strategy,rf,T,horizon,den",
    [
        ("Latency", 1, 8, 0, "ap_ufixed<20,10,AP_RND_CONV,AP_SAT>"),
        ("Resource", 4, 8, 12, "ap_ufixed<14,6>"),
        ("Latency", 1, 32, 0, "ap_ufixed<24,12,AP_RND_CONV,AP_SAT>"),
    ],
)
def test_cosformer_cpp_matches_reference_bit_for_bit(strategy, rf, T, horizon, den):
    from hwflow.hls import harness
    from hwflow.hls.ext.cosformer_code import cosformer_config_cpp
    from hwflow.reference.cosformer import cosformer, make_spec

    rng = np.random.default_rng(T + horizon)
    D, H, DK = 8, 2, 4
    it, rt = "ap_fixed<16,6>", A16
    spec = make_spec(
        T,
        D,
        H,
        DK,
        DK,
        D,
        it,
        "ap_fixed<8,1>",
        "ap_fixed<8,1>",
        A16,
        "ap_ufixed<16,5,AP_RND_CONV,AP_SAT>",
        "ap_fixed<18,10,AP_RND_CONV,AP_SAT>",
        "ap_ufixed<16,8,AP_RND_CONV,AP_SAT>",
        "ap_fixed<20,13,AP_RND_CONV,AP_SAT>",
        den,
        A16,
        rt,
        horizon=horizon,
    )
    W, pre = _projection_weights(rng, spec, strategy)
    pre = pre.replace("static const", "static") + cosformer_config_cpp(spec, "cfg", strategy, rf)
    exe = harness.build(
        ["nnet_utils/hwflow_cosformer.h"],
        pre,
        f"nnet::hwflow_cosformer<{it}, {rt}, cfg>(in, out, wq, bq, wk, bk, wv, bv, wo, bo, "
        "cfg_cf_cos, cfg_cf_sin, cfg_cf_inv);",
        it,
        rt,
        T * D,
        T * D,
    )
    x = _inputs(rng, it, (T, D))
    c = harness.run(exe, x.reshape(len(x), -1)).reshape(x.shape)
    r = cosformer(x, spec, W)
    assert np.array_equal(c, r), f"{np.count_nonzero(c != r)} mismatches"
    assert np.count_nonzero(r) > r.size // 2


def test_cosformer_normaliser_is_close_to_division():
    """The reciprocal path (leading one, interpolated table, one rounding) is num/den within a few LSBs."""
    from hwflow.reference.cosformer import make_spec, normalise

    spec = make_spec(
        8,
        8,
        1,
        4,
        4,
        8,
        "ap_fixed<16,6>",
        "ap_fixed<8,1>",
        "ap_fixed<8,1>",
        A16,
        "ap_ufixed<16,5>",
        "ap_fixed<18,10>",
        "ap_ufixed<16,8>",
        "ap_fixed<20,13>",
        "ap_ufixed<20,10>",
        "ap_fixed<24,12,AP_RND_CONV,AP_SAT>",
        A16,
    )
    rng = np.random.default_rng(3)
    den = quantize(rng.uniform(0, 50, (2000,)) ** rng.choice([1, 0.5, 2], 2000) / 10, spec.den_t)
    num = quantize(den[:, None] * rng.uniform(-8, 8, (2000, 4)), spec.num_t)
    got = normalise(num, den, spec)
    ok = den > 2.0**-4
    want = num[ok] / den[ok, None]
    rel = np.abs(got[ok] - want) / np.maximum(np.abs(want), 1)
    assert rel.max() < 2.0**-8
    assert np.all(got[den == 0] == 0)


@pytest.mark.parametrize("strategy,rf,T,group", [("Latency", 1, 8, 2), ("Resource", 4, 8, 4), ("Latency", 1, 32, 4)])
def test_grouped_attention_cpp_matches_reference_bit_for_bit(strategy, rf, T, group):
    from hwflow.hls import harness
    from hwflow.hls.ext.mha_code import mha_config_cpp
    from hwflow.reference.attention import make_spec, mha

    rng = np.random.default_rng(T * group)
    D, H, DK = 8, 2, 4
    it, rt = "ap_fixed<16,6>", A16
    spec = make_spec(T, D, H, DK, DK, D, it, "ap_fixed<8,1>", "ap_fixed<8,1>", A16, A16, ATTN, A16, rt, group=group)
    assert spec.softmax.n_in == T // group and spec.scale == 1 / np.sqrt(group * DK) or not spec.scale_exact
    W, pre = _projection_weights(rng, spec, strategy)
    pre = pre.replace("static const", "static") + mha_config_cpp(spec, "cfg", strategy, rf)
    exe = harness.build(
        ["nnet_utils/hwflow_mha.h"],
        pre,
        f"nnet::hwflow_mha<{it}, {rt}, cfg>(in, out, wq, bq, wk, bk, wv, bv, wo, bo, "
        "cfg_sm_exp_hi, cfg_sm_exp_lo, cfg_sm_inv);",
        it,
        rt,
        T * D,
        T * D,
    )
    x = _inputs(rng, it, (T, D))
    c = harness.run(exe, x.reshape(len(x), -1)).reshape(x.shape)
    r = mha(x, spec, W)
    assert np.array_equal(c, r), f"{np.count_nonzero(c != r)} mismatches"
    assert np.count_nonzero(r) > r.size // 2


def test_grouped_reference_is_attention_over_token_groups():
    """Group g of the reference = float attention over (N/g, g*dk) rows, within quantization (independent check)."""
    from hwflow.reference.attention import make_spec, mha

    rng = np.random.default_rng(5)
    T, D, H, DK, g = 8, 8, 2, 4, 2
    wide = "ap_fixed<24,8,AP_RND_CONV,AP_SAT>"
    spec = make_spec(
        T,
        D,
        H,
        DK,
        DK,
        D,
        wide,
        "ap_fixed<16,1>",
        "ap_fixed<16,1>",
        wide,
        wide,
        "ap_ufixed<20,0,AP_RND_CONV,AP_SAT>",
        wide,
        wide,
        group=g,
        exp_table_size=4096,
        inv_table_size=4096,
        exp_table_t="ap_ufixed<26,1,AP_RND,AP_SAT>",
        inv_table_t="ap_ufixed<26,1,AP_RND,AP_SAT>",
    )
    W = {}
    for n, shp in [("query", (D, H * DK)), ("key", (D, H * DK)), ("value", (D, H * DK)), ("output", (H * DK, D))]:
        W[n + "_kernel"] = quantize(rng.normal(0, 0.5, shp), spec.weight_t)
        W[n + "_bias"] = np.zeros(shp[1])
    x = quantize(rng.normal(0, 1, (20, T, D)), spec.input_t)
    r = mha(x, spec, W)
    q, k, v = (x @ W[f"{n}_kernel"] for n in ("query", "key", "value"))
    ctx = np.zeros((20, T, H * DK))
    for h in range(H):
        sl = slice(h * DK, (h + 1) * DK)
        qg, kg, vg = (a[..., sl].reshape(20, T // g, g * DK) for a in (q, k, v))
        s = qg @ kg.transpose(0, 2, 1) / np.sqrt(g * DK)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ctx[..., sl] = (a @ vg).reshape(20, T, DK)
    f = ctx @ W["output_kernel"]
    assert np.abs(r - f).max() < 2e-3
