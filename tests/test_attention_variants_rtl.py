"""Open RTL route for the attention variants: the da4ml traces of Linformer, cosFormer and grouped attention equal
the numpy references (hwflow.reference.*) bit for bit, on random and extreme inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_rtl_ext import RTL_PY, run_rtl_python  # noqa: E402

pytestmark = [
    pytest.mark.rtl,
    pytest.mark.skipif(not RTL_PY.exists(), reason=f"RTL environment absent ({RTL_PY}): run `make rtl-env`"),
]

WEIGHTS = """
rng = np.random.default_rng(2)
W = {}
for n, shape in (("query", (8, 8)), ("key", (8, 8)), ("value", (8, 8)), ("output", (8, 8))):
    W[n + "_kernel"] = quantize(rng.normal(0, 0.4, shape), parse_type("ap_fixed<8,1>"))
    W[n + "_bias"] = quantize(rng.normal(0, 0.3, shape[1]), parse_type("ap_fixed<8,3>"))
arr = {n + "_weight": W[n + "_kernel"] for n in ("query", "key", "value", "output")}
arr.update({n + "_bias": W[n + "_bias"] for n in ("query", "key", "value", "output")})
fx = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
t = parse_type(fx)

def inputs(T):
    x = quantize(rng.normal(0, 2, (150, T, 8)), t)
    x[0] = t.max; x[1] = t.min; x[2, :, ::2] = t.max; x[2, :, 1::2] = t.min; x[3] = 0
    return x
"""


def test_grouped_attention_trace_matches_reference():
    r = run_rtl_python(
        WEIGHTS
        + """
from hwflow.reference.attention import make_spec, mha
spec = make_spec(8, 8, 2, 4, 4, 8, fx, "ap_fixed<8,1>", "ap_fixed<8,3>", fx, fx,
                 "ap_ufixed<12,1,AP_RND_CONV,AP_SAT>", fx, fx, exp_table_size=256, inv_table_size=256, group=2)
layer, arrays = layer_of(spec, arr)
layer["op"] = "mha"
x = inputs(8)
got = run(T.op_attention, layer, arrays, fx, x)
want = mha(x, spec, W)
print(json.dumps({"exact": float(np.mean(got == want)), "nonzero": float(np.mean(want != 0))}))
"""
    )
    assert r["exact"] == 1.0 and r["nonzero"] > 0.5, r


def test_linformer_trace_matches_reference():
    r = run_rtl_python(
        WEIGHTS
        + """
from hwflow.reference.linformer import linformer, make_spec
spec = make_spec(8, 3, "ap_fixed<8,1>", "ap_fixed<16,7,AP_RND_CONV,AP_SAT>", embed_dim=8, num_heads=2, key_dim=4,
                 value_dim=4, out_dim=8, input_t=fx, weight_t="ap_fixed<8,1>", bias_t="ap_fixed<8,3>", q_t=fx,
                 score_t=fx, attn_t="ap_ufixed<12,1,AP_RND_CONV,AP_SAT>", context_t=fx, result_t=fx,
                 exp_table_size=256, inv_table_size=256)
for n in ("key_seq", "value_seq"):
    W[n + "_kernel"] = quantize(rng.normal(0, 0.5, (3, 8)), spec.seq_weight_t)
    arr[n + "_weight"] = W[n + "_kernel"]
types, attrs, arrays = spec_to_neutral(spec)
arrays.update(arr)
layer = {"name": "L", "op": "linformer", "types": {**types, "result": fixedtype_dict(spec.attn.result_t)},
         "attrs": attrs, "arrays": {k: k for k in arrays}}
x = inputs(8)
got = run(T.op_attention, layer, arrays, fx, x)
want = linformer(x, spec, W)
print(json.dumps({"exact": float(np.mean(got == want)), "nonzero": float(np.mean(want != 0))}))
"""
    )
    assert r["exact"] == 1.0 and r["nonzero"] > 0.5, r


def test_cosformer_trace_matches_reference():
    r = run_rtl_python(
        WEIGHTS
        + """
from hwflow.reference.cosformer import cosformer, make_spec
spec = make_spec(6, 8, 2, 4, 4, 8, fx, "ap_fixed<8,1>", "ap_fixed<8,3>", fx, "ap_ufixed<12,4,AP_RND_CONV,AP_SAT>",
                 "ap_fixed<14,8,AP_RND_CONV,AP_SAT>", "ap_ufixed<12,6,AP_RND_CONV,AP_SAT>",
                 "ap_fixed<16,10,AP_RND_CONV,AP_SAT>", "ap_ufixed<14,8,AP_RND_CONV,AP_SAT>", fx, fx,
                 inv_table_size=256)
layer, arrays = layer_of(spec, arr)
layer["op"] = "cosformer"
x = inputs(6)
got = run(T.op_attention, layer, arrays, fx, x)
want = cosformer(x, spec, W)
print(json.dumps({"exact": float(np.mean(got == want)), "nonzero": float(np.mean(want != 0)),
                  "max_err": float(np.abs(got - want).max())}))
"""
    )
    assert r["exact"] == 1.0 and r["nonzero"] > 0.5, r
