"""Bit-exactness: compiled hwflow C++ (standalone g++ harness against hls4ml's ap_types) vs the numpy references."""

import shutil

import numpy as np
import pytest

from hwflow.reference.fixed import parse_type, quantize

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


def _extremes(t, n, rng, k=300):
    t = parse_type(t)
    return np.concatenate(
        [
            np.zeros((1, n)),
            np.full((1, n), t.max),
            np.full((1, n), t.min),
            np.where(np.arange(n) % 2, t.max, t.min)[None],
            np.eye(n) * t.lsb,
            np.eye(n) * t.max,
            quantize(rng.uniform(t.min, t.max, (k, n)), t),
        ]
    )


@pytest.mark.parametrize(
    "n,it,rt,rng_",
    [
        (5, "ap_fixed<16,6>", "ap_ufixed<16,0,AP_RND,AP_SAT>", None),
        (16, "ap_fixed<12,5,AP_RND_CONV,AP_SAT>", "ap_ufixed<10,0,AP_RND_CONV,AP_SAT>", 3.0),
    ],
)
def test_softmax_cpp_matches_reference_bit_for_bit(n, it, rt, rng_):
    from hwflow.hls import harness
    from hwflow.hls.ext.softmax_code import softmax_config_cpp, softmax_tables_cpp
    from hwflow.reference.softmax import make_spec, softmax

    spec = make_spec(n, it, rt, input_range=rng_)
    pre = softmax_tables_cpp(spec, "sm") + softmax_config_cpp(spec, "cfg")
    exe = harness.build(
        ["nnet_utils/hwflow_softmax.h"],
        pre,
        f"nnet::hwflow_softmax<{it}, {rt}, cfg>(in, out, sm_exp_hi, sm_exp_lo, sm_inv);",
        it,
        rt,
        n,
        n,
    )
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [quantize(rng.normal(0, 3, (1000, n)), it), _extremes(it, n, rng), np.full((1, n), 1.5)]
    )  # a long equal row
    c, r = harness.run(exe, x), softmax(x, spec)
    assert np.array_equal(c, r), f"{np.count_nonzero(c != r)} mismatches"
    # equal rows give equal outputs; with the default range and a 16-bit output no argmax flips
    assert np.all(r[-1] == r[-1][0])
    if rng_ is not None:
        return
    e = np.exp(x - x.max(-1, keepdims=True))
    f = e / e.sum(-1, keepdims=True)
    flips = np.count_nonzero((r.argmax(-1) != f.argmax(-1)) & (x.max(-1) != np.sort(x, -1)[:, -2]))
    assert flips == 0


@pytest.mark.parametrize(
    "n,it,rt,center,eps",
    [
        (16, "ap_fixed<16,6>", "ap_fixed<16,6,AP_RND_CONV,AP_SAT>", True, 1e-3),
        (12, "ap_fixed<14,5,AP_RND_CONV,AP_SAT>", "ap_fixed<12,4>", True, 1e-5),
        (16, "ap_fixed<16,6>", "ap_fixed<16,6>", False, 1e-6),
    ],
)
def test_norm_cpp_matches_reference_bit_for_bit_for_any_variance(n, it, rt, center, eps):
    from hwflow.hls import harness
    from hwflow.hls.codegen import cpp_array
    from hwflow.hls.ext.norm_code import norm_config_cpp, norm_table_cpp
    from hwflow.reference.layernorm import make_spec, norm

    spec = make_spec(n, it, rt, center=center, epsilon=eps, scale_t="ap_fixed<8,3>", bias_t="ap_fixed<8,3>")
    rng = np.random.default_rng(1)
    g, b = quantize(rng.normal(1, 0.5, n), spec.scale_t), quantize(rng.normal(0, 0.5, n), spec.bias_t)
    pre = (
        norm_table_cpp(spec, "tbl")
        + cpp_array("g", spec.scale_t.cpp(), g)
        + cpp_array("b", spec.bias_t.cpp(), b)
        + norm_config_cpp(spec, "cfg")
    )
    exe = harness.build(
        ["nnet_utils/hwflow_layernorm.h"], pre, f"nnet::hwflow_norm<{it}, {rt}, cfg>(in, out, g, b, tbl);", it, rt, n, n
    )
    # per-token scales from 0.01 to 10: variances from 1e-4 to 100 (stock hls4ml stops at 1)
    x = quantize(
        rng.normal(0, 1, (600, n)) * rng.choice([0.01, 0.1, 1, 3, 10], (600, 1)) + rng.normal(0, 2, (600, 1)), it
    )
    x = np.concatenate([x, _extremes(it, n, rng)])
    c, r = harness.run(exe, x), norm(x, spec, g, b)
    assert np.array_equal(c, r), f"{np.count_nonzero(c != r)} mismatches"
    mu = x.mean(-1, keepdims=True) if center else 0
    f = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b
    ok = (np.abs(f).max(-1) < parse_type(rt).max) & (np.arange(len(x)) < 600)
    assert np.abs(r - f)[ok].max() < 0.01


@pytest.mark.parametrize("strategy,rf", [("Latency", 1), ("Resource", 4)])
def test_mha_cpp_matches_reference_bit_for_bit(strategy, rf):
    from hwflow.hls import harness
    from hwflow.hls.codegen import cpp_array
    from hwflow.hls.ext.mha_code import mha_config_cpp, weight_layout
    from hwflow.reference.attention import make_spec, mha

    rng = np.random.default_rng(0)
    T, D, H, DK = 8, 8, 2, 4
    it, rt = "ap_fixed<16,6>", "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
    a16 = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
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
        a16,
        a16,
        "ap_ufixed<16,0,AP_RND_CONV,AP_SAT>",
        a16,
        rt,
    )
    assert spec.scale_exact  # 1/sqrt(4) folded as one exact bit
    W, pre = {}, ""
    for n, p, shp in [
        ("query", "q", (D, H * DK)),
        ("key", "k", (D, H * DK)),
        ("value", "v", (D, H * DK)),
        ("output", "o", (H * DK, D)),
    ]:
        W[n + "_kernel"] = quantize(rng.normal(0, 0.5, shp), spec.weight_t)
        W[n + "_bias"] = quantize(rng.normal(0, 0.3, shp[1]), spec.bias_t)
        pre += cpp_array("w" + p, spec.weight_t.cpp(), weight_layout(W[n + "_kernel"], strategy))
        pre += cpp_array("b" + p, spec.bias_t.cpp(), W[n + "_bias"])
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
    t = parse_type(it)
    x = quantize(rng.normal(0, 1.5, (300, T, D)), it)
    x = np.concatenate([x, np.zeros((1, T, D)), np.full((1, T, D), t.max), np.full((1, T, D), t.min)])
    c = harness.run(exe, x.reshape(len(x), -1)).reshape(x.shape)
    r = mha(x, spec, W)
    assert np.array_equal(c, r), f"{np.count_nonzero(c != r)} mismatches"
