"""The conformer through the open RTL route: da4ml tracers of strided Conv1D, depthwise conv1d (folded batch norm),
swish and GLU equal their numpy references bit for bit; a tiny conformer folds frame by frame (frame windows for the
strided front end and the depthwise conv, K/V buffer for attention) and its generated Verilog equals the C
simulation bit for bit, with latency and interval measured in clocks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RTL_PY = Path(os.environ.get("HWFLOW_RTL_PYTHON", ROOT / ".venv-rtl" / "bin" / "python"))
needs_rtl = pytest.mark.skipif(not RTL_PY.exists(), reason=f"RTL environment absent ({RTL_PY}): run `make rtl-env`")
pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


def run_rtl_python(code: str) -> dict:
    """Run code in .venv-rtl (hwflow sources importable); return the JSON it prints last."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONNOUSERSITE="1")
    p = subprocess.run(
        [str(RTL_PY), "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=1800
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


OP_CHECK = """
import json
import numpy as np
from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
from hwflow.rtl import trace_conformer as TC
from hwflow.rtl import trace_graph as T
from hwflow.rtl.emulate import emulate
from hwflow.rtl.export import fixedtype_dict
from hwflow.reference import conformer as R
from hwflow.reference.fixed import parse_type, quantize

def nt(s):
    return fixedtype_dict(parse_type(s))

def run(fn, layer, arrays, in_t, x):
    inp = FixedVariableArrayInput(x.shape[1:], hwconf=HWConfig(1, -1, 18.0))
    y = fn(inp.quantize(*T.kif(nt(in_t))), layer, arrays)
    comb = comb_trace(inp._vars.ravel(), y._vars.ravel())
    return emulate(comb, x.reshape(len(x), -1)).reshape(len(x), *y.shape)

rng = np.random.default_rng(0)
in_t = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
res_t = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
lim = 2.0**5 - 2.0**-10
# random values, the table's clamp edges (|x| = R), the type's extremes and zero
edge = np.array([-lim - 2.0**-10, lim, 0.0, 4.0, -4.0, 4.0 - 2.0**-10, -4.0 - 2.0**-10, 2.0**-10, -2.0**-10])
out = {}
table = R.SigmoidTable(256, 4.0, "ap_ufixed<12,1,AP_RND,AP_SAT>")
lut = {"name": "L", "types": {"result": nt(res_t), "table": nt(table.table_t)}, "arrays": {"table": "t"},
       "attrs": {"table_size": 256, "log2_size": table.log2_size, "log2_scale": table.log2_scale}}
arr = {"t": table.values()}
x = quantize(np.concatenate([rng.normal(0, 6, (400, 6)), np.resize(edge, (3, 6))]), in_t)
out["swish"] = bool(np.array_equal(run(TC.op_swish, lut, arr, in_t, x), R.swish(x, table, res_t)))
out["glu"] = bool(np.array_equal(run(TC.op_glu, lut, arr, in_t, x), R.glu(x, table, res_t)))
# depthwise conv, kernel 3 and 5, 'same' and 'causal', folded-BN-like weights beyond [-1, 1)
for K, pad in ((3, "same"), (5, "causal")):
    w = quantize(rng.uniform(-3, 3, (K, 4)), "ap_fixed<8,3>")
    b = quantize(rng.uniform(-4, 4, 4), "ap_fixed<12,5>")
    acc_t = R.exact_accum_type(in_t, "ap_fixed<8,3>", "ap_fixed<12,5>", K)
    pl = R.depthwise_pads(K, pad)[0]
    layer = {"name": "dw", "types": {"accum": fixedtype_dict(acc_t), "result": nt(res_t)},
             "arrays": {"weight": "w", "bias": "b"},
             "attrs": {"filt_width": K, "n_chan": 4, "pad_left": pl, "in_width": 7, "out_width": 7}}
    x = quantize(np.concatenate([rng.normal(0, 8, (200, 7, 4)), np.resize(edge, (2, 7, 4))]), in_t)
    got = run(TC.op_depthwise1d, layer, {"w": w, "b": b}, in_t, x)
    out[f"dw{K}"] = bool(np.array_equal(got, R.depthwise_conv1d(x, w, b, pad, acc_t, res_t)))
# strided Conv1D (hls4ml im2col + dense), stride 2, kernel 3, 'same' padding of 9 frames, narrow accumulator
acc_t = "ap_fixed<20,8>"
w = quantize(rng.uniform(-1, 1, (3 * 4, 5)), "ap_fixed<8,1>")
b = quantize(rng.uniform(-1, 1, 5), "ap_fixed<8,3>")
layer = {"name": "c", "types": {"accum": nt(acc_t), "result": nt(res_t), "weight": nt("ap_fixed<8,1>")},
         "arrays": {"weight": "w", "bias": "b"},
         "attrs": {"filt_width": 3, "n_chan": 4, "n_filt": 5, "stride": 2, "pad_left": 1, "pad_right": 1,
                   "in_width": 9, "out_width": 5}}
x = quantize(np.concatenate([rng.normal(0, 8, (200, 9, 4)), np.resize(edge, (2, 9, 4))]), in_t)
xp = np.concatenate([np.zeros((len(x), 1, 4)), x, np.zeros((len(x), 1, 4))], axis=1)
win = np.stack([xp[:, 2 * t : 2 * t + 3].reshape(len(x), -1) for t in range(5)], axis=1)
# hls4ml's DenseLatency: each product cast to accum (it truncates here), the running sum wraps in accum
acc = np.broadcast_to(quantize(b, acc_t), win.shape[:2] + (5,)).copy()
for i in range(12):
    acc = quantize(acc + quantize(win[..., i : i + 1] * w[i], acc_t), acc_t)
want = quantize(acc, res_t)
out["conv1d"] = bool(np.array_equal(run(TC.op_conv1d, layer, {"w": w, "b": b}, in_t, x), want))
# mean over 25 frames (a non-power-of-two count) in a wide accumulator: ap_fixed '/=' truncates toward zero; then
# the pool_act cast and a dense, whose widths depend on the bounds the division declares
acc_t = "ap_fixed<32,10>"
pool = {"name": "p", "types": {"accum": nt(acc_t), "result": nt(acc_t)}, "attrs": {"pool": "Average", "n_in": 25}}
act = {"name": "a", "types": {"result": nt(res_t)}, "attrs": {"activation": "linear"}}
w = quantize(rng.uniform(-1, 1, (3, 2)), "ap_fixed<8,1>")
dense = {"name": "d", "types": {"accum": nt("ap_fixed<28,11>"), "result": nt(res_t)},
         "arrays": {"weight": "w", "bias": "b"}}
x = quantize(np.concatenate([rng.normal(0, 12, (300, 25, 3)), np.resize(edge, (2, 25, 3))]), in_t)

def chain(v, layer, arrays):
    return T.op_dense(T.op_activation(T.op_global_pool1d(v, pool), act), dense, arrays)

mean = np.trunc(quantize(x.sum(1), acc_t) * 2**22 / 25) / 2**22
want = quantize(quantize(quantize(mean, res_t) @ w, "ap_fixed<28,11>"), res_t)
out["pool25"] = bool(np.array_equal(run(chain, None, {"w": w, "b": np.zeros(2)}, in_t, x), want))
print(json.dumps(out))
"""


@needs_rtl
@pytest.mark.rtl
def test_conformer_tracers_match_the_references():
    """Swish, GLU (sigmoid table as a ROM), depthwise conv1d (K = 3 'same', K = 5 'causal'), the strided Conv1D and
    the mean over 25 frames: the emulated da4ml logic equals hwflow.reference.conformer (numpy for the mean) bit for
    bit on random, clamp-edge and extreme inputs."""
    r = run_rtl_python(OP_CHECK)
    assert r == {"swish": True, "glu": True, "dw3": True, "dw5": True, "conv1d": True, "pool25": True}


@pytest.fixture(scope="module")
def tiny(tiny_conformer):
    """The tiny conformer of tests/conftest.py (converted once per session, shared with test_rtl_serial)."""
    return tiny_conformer


def test_plan_windows_the_convolutions(tiny):
    """s0 reads 2G+1 input frames (stride 2, kernel 3) and masks the feature norm outside the clip; the depthwise
    conv opens a segment reading G+K-1 frames of the GLU output; attention reads all K/V frames."""
    from hwflow.rtl.fold import FoldError
    from hwflow.rtl.fold_conv import needs_windows, plan

    _, _, graph, _ = tiny
    assert needs_windows(graph)
    p = plan(graph, 1)
    s0, s1, s2, tail = p.segments
    assert p.seq_len == 5 and p.n_groups == 5
    assert s0.window.tensor == "features" and s0.window.frames == 3 and s0.window.masked
    assert [e["name"] for e in s0.window.pre] == ["feature_norm"] and s0.window.conv["name"] == "subsample"
    assert s1.attend["name"] == "b0_mha" and s1.full_in == ["b0_mha:k", "b0_mha:v"]
    assert s2.window.tensor == "b0_conv_glu" and s2.window.frames == 3 and not s2.window.masked
    assert "b0_mha_add" in s2.row_in  # the residual travels with its frame
    assert tail.layers[0]["op"] == "global_pool1d"
    assert plan(graph, 5).segments[0].window.frames == 11
    with pytest.raises(FoldError, match="must divide the number of frames after subsampling, 5"):
        plan(graph, 2)


FOLD = """
import json, numpy as np
from pathlib import Path
from hwflow.rtl.export import load_neutral
from hwflow.rtl import fold, fold_conv
from hwflow.rtl.emulate import emulate
from hwflow.rtl.worker import _flat_io
g, arrays = load_neutral("{neutral}")
p = fold_conv.plan(g, {group})
mods = fold_conv.trace_plan(g, arrays, p, 18.0, 18)
n = {n}
x = _flat_io(g, arrays, n, g["inputs"], "inputs"); want = _flat_io(g, arrays, n, g["outputs"], "csim")
y, bufs = fold_conv.emulate_chain(mods, p, x, emulate)
tr = g["samples"]["trace"]
out = {{"emulated": bool(np.array_equal(y, want)),
        "buffers": all(np.array_equal(v.reshape(n, -1), arrays[tr[t]][:n].reshape(n, -1))
                       for t, v in bufs.items() if t in tr)}}
prj = fold_conv.write_project(mods, p, Path("{tmp}") / "prj", "tcf", 18.0, 5.0, "xcvu13p")
r = fold.simulate(prj, x[:{n_sim}], "iverilog", Path("{tmp}") / "sim", gaps=True)
out.update(icarus=bool(np.array_equal(r["outputs"], want[:{n_sim}])), lat=r["latency_range"], ii=r["interval_range"],
           depths=prj["depths"])
print(json.dumps(out))
"""


@needs_rtl
@pytest.mark.rtl
def test_tiny_conformer_folds_bit_exact_in_icarus(tiny, tmp_path):
    """The frame-serial design (G = 1): chained segments (emulated, all samples) and the generated Verilog in Icarus
    (a few samples offered with gaps on in_valid) equal the C simulation; the latency is the controller's schedule."""
    _, x, _, tmp = tiny
    r = run_rtl_python(FOLD.format(neutral=tmp / "neutral", group=1, n=len(x), n_sim=6, tmp=tmp_path))
    assert r["emulated"] and r["buffers"] and r["icarus"]
    assert r["ii"][0] == 5 and r["lat"][0] == r["lat"][1] == 3 * 5 + sum(r["depths"]) + 3


@needs_rtl
@pytest.mark.rtl
@pytest.mark.slow
def test_tiny_conformer_rtl_report(tiny, tmp_path):
    """(slow: a Verilator build) rtl_from_hls on the tiny conformer: Verilator on all samples and Icarus bit-exact,
    frame-serial architecture in the report, interval = frames per sample."""
    from hwflow.rtl import rtl_from_hls

    hm, x, _, _ = tiny
    cfg = {"latency_cutoff": 5.0, "clock_period": 5.0, "iverilog_samples": 8, "tokens_per_cycle": 1}
    r = rtl_from_hls(hm, x, "tcf", tmp_path / "fw", tmp_path / "rep", cfg, "xcvu13p-flga2577-2-e", yosys=False)
    assert r["bit_exact_fraction_vs_csim"] == 1.0 and r["bit_exact_source"].startswith("verilator simulation")
    assert r["second_simulator"]["bit_exact_fraction"] == 1.0
    assert r["interval"] == 5 and r["architecture"]["kind"].startswith("frame-serial")
    assert all(v["bit_exact_fraction"] == 1.0 for v in r["per_layer"].values())
