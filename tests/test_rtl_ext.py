"""Open RTL route for hwflow's extension layers: the da4ml traces of softmax, layer/RMS norm and multi-head attention
equal the numpy references of the firmware (hwflow.reference.*) bit for bit, on random and extreme inputs."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RTL_PY = Path(os.environ.get("HWFLOW_RTL_PYTHON", ROOT / ".venv-rtl" / "bin" / "python"))

pytestmark = [
    pytest.mark.rtl,
    pytest.mark.skipif(not RTL_PY.exists(), reason=f"RTL environment absent ({RTL_PY}): run `make rtl-env`"),
]

PRELUDE = """
import json
import numpy as np
from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
from hwflow.rtl import trace_graph as T
from hwflow.rtl.emulate import emulate
from hwflow.rtl.export import spec_to_neutral, fixedtype_dict, quantize_np
from hwflow.reference.fixed import quantize, parse_type

def layer_of(spec, weights=None):
    types, attrs, arrays = spec_to_neutral(spec)
    arrays.update(weights or {})
    types = {**types, "result": fixedtype_dict(spec.result_t)}
    return {"name": "L", "types": types, "attrs": attrs, "arrays": {k: k for k in arrays}}, arrays

def run(op, layer, arrays, in_t, x):
    shape = x.shape[1:]
    inp = FixedVariableArrayInput(shape, hwconf=HWConfig(1, -1, 18.0))
    k, i, f = T.kif(fixedtype_dict(parse_type(in_t)))
    y = op(inp.quantize(k, i, f), layer, arrays)
    comb = comb_trace(inp._vars.ravel(), y._vars.ravel())
    return emulate(comb, x.reshape(len(x), -1)).reshape(len(x), *y.shape)
"""


def run_rtl_python(code: str) -> dict:
    """Run PRELUDE + code in .venv-rtl (hwflow sources importable); return the JSON it prints last."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONNOUSERSITE="1")
    p = subprocess.run(
        [str(RTL_PY), "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=600
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_softmax_trace_matches_reference():
    r = run_rtl_python("""
        from hwflow.reference.softmax import make_spec, softmax
        in_t = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
        spec = make_spec(8, in_t, "ap_ufixed<12,1,AP_RND_CONV,AP_SAT>", exp_table_size=256, inv_table_size=256)
        layer, arrays = layer_of(spec)
        rng = np.random.default_rng(0)
        x = quantize(rng.normal(0, 3, (300, 8)), parse_type(in_t))
        t = parse_type(in_t)
        x[0] = 0.0                      # long equal row
        x[1] = t.max; x[2] = t.min      # extremes
        x[3, ::2] = t.max; x[3, 1::2] = t.min
        got = run(T.op_softmax, layer, arrays, in_t, x)
        want = softmax(x, spec)
        print(json.dumps({"exact": float(np.mean(got == want)), "n": int(want.size)}))
    """)
    assert r["exact"] == 1.0 and r["n"] == 2400


@pytest.mark.parametrize("center", [True, False])
def test_norm_trace_matches_reference(center):
    r = run_rtl_python(f"""
        from hwflow.reference.layernorm import make_spec, norm
        in_t = "ap_fixed<16,6>"
        spec = make_spec(8, in_t, "ap_fixed<16,5,AP_RND_CONV,AP_SAT>", center={center}, scale_t="ap_fixed<8,3>",
                         bias_t="ap_fixed<8,3>")
        rng = np.random.default_rng(1)
        gamma = quantize(rng.uniform(0.25, 2, 8), spec.scale_t)
        beta = quantize(rng.normal(0, 0.5, 8), spec.bias_t)
        layer, arrays = layer_of(spec, {{"scale": gamma, "bias": beta}})
        # per-row scales from 1e-3 to 30: variances across the whole 1/sqrt table range
        x = quantize(rng.normal(0, 1, (300, 8)) * np.exp(rng.uniform(-7, 3.4, (300, 1))), parse_type(in_t))
        x[0] = 0.0; x[1] = 1.0; x[2, ::2] = 31.9; x[2, 1::2] = -32.0
        got = run(T.op_layernorm, layer, arrays, in_t, x)
        want = norm(x, spec, gamma, beta)
        print(json.dumps({{"exact": float(np.mean(got == want)), "max_err": float(np.abs(got - want).max())}}))
    """)
    assert r["exact"] == 1.0, r


def test_attention_trace_matches_reference():
    r = run_rtl_python("""
        from hwflow.reference.attention import make_spec, mha
        fx = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
        spec = make_spec(4, 8, 2, 4, 4, 8, fx, "ap_fixed<8,1>", "ap_fixed<8,3>", fx, fx,
                         "ap_ufixed<12,1,AP_RND_CONV,AP_SAT>", fx, fx, exp_table_size=256, inv_table_size=256)
        rng = np.random.default_rng(2)
        W = {}
        for n, shape in (("query", (8, 8)), ("key", (8, 8)), ("value", (8, 8)), ("output", (8, 8))):
            W[n + "_kernel"] = quantize(rng.normal(0, 0.4, shape), spec.weight_t)
            W[n + "_bias"] = quantize(rng.normal(0, 0.3, shape[1]), spec.bias_t)
        arr = {n + "_weight": W[n + "_kernel"] for n in ("query", "key", "value", "output")}
        arr.update({n + "_bias": W[n + "_bias"] for n in ("query", "key", "value", "output")})
        layer, arrays = layer_of(spec, arr)
        x = quantize(rng.normal(0, 2, (200, 4, 8)), parse_type(fx))
        got = run(T.op_mha, layer, arrays, fx, x)
        want = mha(x, spec, W)
        print(json.dumps({"exact": float(np.mean(got == want)), "max_err": float(np.abs(got - want).max())}))
    """)
    assert r["exact"] == 1.0, r
