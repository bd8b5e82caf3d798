"""The serial engine (hwflow.rtl.serial): its cast unit and table units equal hwflow/reference bit for bit, a tiny
conformer's program equals the C simulation (every layer), and the generated Verilog does too in Icarus (gaps on
in_valid) and Verilator, with the latency the controller's schedule predicts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hwflow.reference import conformer as RC
from hwflow.reference import cosformer as RCF
from hwflow.reference import layernorm as RL
from hwflow.reference import softmax as RS
from hwflow.reference.fixed import FixedType, parse_type, quantize, quantize_raw
from hwflow.rtl import serial as S
from hwflow.rtl.export import fixedtype_dict, spec_to_neutral
from hwflow.util import HwflowError

ROOT = Path(__file__).resolve().parents[1]
RTL_PY = Path(os.environ.get("HWFLOW_RTL_PYTHON", ROOT / ".venv-rtl" / "bin" / "python"))
needs_rtl = pytest.mark.skipif(not RTL_PY.exists(), reason=f"RTL environment absent ({RTL_PY}): run `make rtl-env`")
ROUNDINGS = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV")
OVERFLOWS = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")


def test_cast_unit_equals_quantize_raw():
    """Every ap_fixed rounding and overflow mode, left and right shifts, signed and unsigned results, ties and
    extremes: the cast unit equals hwflow.reference.fixed.quantize_raw."""
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.integers(-(2**40), 2**40, 3000), np.arange(-40, 41), [2**45 - 1, -(2**45)]])
    for rnd in ROUNDINGS:
        for ovf in OVERFLOWS:
            for sh in (-3, 0, 1, 2, 5, 17):
                for width, signed in ((8, True), (12, False), (30, True), (1, False)):
                    t = FixedType(width, width - 4, signed, "AP_" + rnd, "AP_" + ovf)
                    want = np.asarray(quantize_raw(v, 4 + sh, t), dtype=np.int64)
                    got = S.cast(v, sh, S.ROUNDING[rnd], S.OVERFLOW[ovf], width, int(signed))
                    assert np.array_equal(got, want), (rnd, ovf, sh, width, signed)


def _graph(layer: dict, in_t, out_t, in_shape, out_shape) -> dict:
    it, ot = fixedtype_dict(parse_type(in_t)), fixedtype_dict(parse_type(out_t))
    layer = {"name": "op", "hls_class": "test", "inputs": ["x"], "output": "y", **layer}
    layer["types"] = {**layer.get("types", {}), "result": ot}
    return {
        "model": "unit",
        "inputs": ["x"],
        "outputs": ["y"],
        "tensors": {"x": {"shape": list(in_shape), "type": it}, "y": {"shape": list(out_shape), "type": ot}},
        "layers": [
            {"name": "x", "op": "input", "hls_class": "Input", "inputs": [], "output": "x", "types": {"result": it}},
            layer,
        ],
    }


def _run(graph: dict, arrays: dict, x: np.ndarray) -> np.ndarray:
    """Return the emulated program's outputs (float values) on float inputs x (samples, ...)."""
    prog = S.compile_graph(graph, arrays)
    it = graph["tensors"]["x"]["type"]
    ot = graph["tensors"]["y"]["type"]
    y, _ = S.emulate(prog, S.to_raw(x.reshape(len(x), -1), it))
    return y * 2.0 ** -int(ot["frac"])


def _spec_layer(op: str, spec, arrays: dict) -> tuple[dict, dict]:
    types, attrs, arr = spec_to_neutral(spec)
    arr.update(arrays)
    return {"op": op, "types": types, "attrs": attrs, "arrays": {k: k for k in arr}}, arr


def test_norm_unit_equals_reference():
    """LayerNorm and RMSNorm (1/sqrt table, leading one, interpolation, octave shift) on random rows, constant rows
    (variance = epsilon) and saturating inputs."""
    rng = np.random.default_rng(1)
    in_t, out_t = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>", "ap_fixed<16,5,AP_RND_CONV,AP_SAT>"
    x = np.concatenate([rng.normal(0, 4, (300, 5, 12)), np.full((2, 5, 12), 3.0), rng.normal(0, 40, (20, 5, 12))])
    x = quantize(x, in_t)
    for center in (True, False):
        spec = RL.make_spec(12, in_t, out_t, center=center, scale_t="ap_fixed<8,3>", bias_t="ap_fixed<8,3>")
        gamma = quantize(rng.uniform(-2, 2, 12), spec.scale_t)
        beta = quantize(rng.uniform(-2, 2, 12), spec.bias_t)
        layer, arrays = _spec_layer("layernorm" if center else "rmsnorm", spec, {"scale": gamma, "bias": beta})
        got = _run(_graph(layer, in_t, out_t, (5, 12), (5, 12)), arrays, x)
        assert np.array_equal(got, RL.norm(x, spec, gamma, beta).reshape(len(x), -1)), center


def test_softmax_unit_equals_reference():
    """hwflow softmax (max, exp table pair, sum, reciprocal with leading one and interpolation, shifted product)."""
    rng = np.random.default_rng(2)
    in_t = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
    spec = RS.make_spec(12, in_t, "ap_ufixed<16,0,AP_RND_CONV,AP_SAT>")
    x = quantize(np.concatenate([rng.normal(0, 5, (400, 12)), np.zeros((1, 12)), np.full((1, 12), 31.99)]), in_t)
    layer, arrays = _spec_layer("softmax", spec, {})
    got = _run(_graph(layer, in_t, spec.result_t.cpp(), (12,), (12,)), arrays, x)
    assert np.array_equal(got, RS.softmax(x, spec))


def test_sigmoid_units_equal_reference():
    """Swish and GLU: sigmoid-table index (floor, clamp at the table edges), product, cast."""
    rng = np.random.default_rng(3)
    in_t, res_t = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>", "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
    table = RC.SigmoidTable(256, 4.0, "ap_ufixed<12,1,AP_RND,AP_SAT>")
    x = quantize(
        np.concatenate([rng.normal(0, 6, (400, 3, 6)), np.full((1, 3, 6), 4.0), np.full((1, 3, 6), -4.0)]), in_t
    )
    tt = fixedtype_dict(parse_type(table.table_t))
    attrs = {"table_size": 256, "log2_size": table.log2_size, "log2_scale": table.log2_scale}
    for op, out_c, ref in (("swish", 6, RC.swish), ("glu", 3, RC.glu)):
        layer = {"op": op, "types": {"table": tt}, "attrs": attrs, "arrays": {"table": "t"}}
        got = _run(_graph(layer, in_t, res_t, (3, 6), (3, out_c)), {"t": table.values()}, x)
        assert np.array_equal(got, ref(x, table, res_t).reshape(len(x), -1)), op


def test_cosformer_unit_equals_reference():
    """cosFormer (two heads): ReLU features times the cos/sin ROM, state, num/den, the normaliser reciprocal at den's
    leading one, one rounding, the output projection. Tiny inputs make den round to 0 while num does not: the zero
    guard must give 0 there (the same program with the guard's table entry for den = 0 set to 1 must differ)."""
    rng = np.random.default_rng(4)
    T, E, H, dk = 6, 8, 2, 4
    in_t = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
    spec = RCF.make_spec(
        T, E, H, dk, dk, E, in_t, "ap_fixed<8,1>", "ap_fixed<8,3>", "ap_fixed<14,5,AP_RND_CONV,AP_SAT>",
        "ap_ufixed<12,3,AP_RND_CONV,AP_SAT>", "ap_fixed<18,7,AP_RND_CONV,AP_SAT>", "ap_ufixed<14,6,AP_RND_CONV,AP_SAT>",
        "ap_fixed<18,7,AP_RND_CONV,AP_SAT>", "ap_ufixed<12,8,AP_RND_CONV,AP_SAT>", "ap_fixed<16,6,AP_RND_CONV,AP_SAT>",
        "ap_fixed<16,6,AP_RND_CONV,AP_SAT>", inv_table_size=256,
    )  # fmt: skip
    hk = H * dk
    w = {f"{n}_kernel": rng.uniform(-1, 1, (E, hk)) for n in ("query", "key", "value")}
    w.update({f"{n}_bias": rng.uniform(-0.5, 0.5, hk) for n in ("query", "key", "value")})
    w["output_kernel"], w["output_bias"] = rng.uniform(-1, 1, (hk, E)), rng.uniform(-0.5, 0.5, E)
    wq = {k: quantize(v, spec.weight_t if k.endswith("kernel") else spec.bias_t) for k, v in w.items()}
    arr = {k.replace("kernel", "weight"): v for k, v in wq.items()}
    layer, arrays = _spec_layer("cosformer", spec, arr)
    for k in arr:
        layer["types"][k] = layer["types"]["weight" if k.endswith("weight") else "bias"]
    x = np.concatenate([rng.normal(0, 3, (200, T, E)), rng.normal(0, 0.02, (200, T, E)), np.zeros((1, T, E))])
    x = quantize(x, in_t)
    g = _graph(layer, in_t, spec.result_t.cpp(), (T, E), (T, E))
    want = RCF.cosformer(x, spec, w).reshape(len(x), -1)
    prog = S.compile_graph(g, arrays)
    it, ot = g["tensors"]["x"]["type"], g["tensors"]["y"]["type"]
    got = S.emulate(prog, S.to_raw(x.reshape(len(x), -1), it))[0] * 2.0 ** -int(ot["frac"])
    assert np.array_equal(got, want)
    guard = next(i.f["tb"] for i in prog.instrs if i.f["op"] == S.SIGMUL and i.f["ix_half"] == 2)
    prog.tab[guard + 2] = 1  # den = 0 now passes 1/1 through
    broken = S.emulate(prog, S.to_raw(x.reshape(len(x), -1), it))[0] * 2.0 ** -int(ot["frac"])
    assert not np.array_equal(broken, want)


def test_unlowerable_layer_is_named():
    """A layer the engine cannot lower gets a one-line error naming it and the fix."""
    layer = {"op": "merge", "attrs": {"op": "maximum"}}
    g = _graph(layer, "ap_fixed<8,3>", "ap_fixed<8,3>", (4,), (4,))
    g["layers"][1]["inputs"] = ["x", "x"]
    with pytest.raises(HwflowError, match="merge 'maximum' of layer 'op'"):
        S.compile_graph(g, {})
    g["layers"][1]["op"] = "batchnorm"  # unfolded: the conformer folds its BatchNorm into the depthwise conv
    with pytest.raises(HwflowError, match=r"layer 'op' \(test, op batchnorm\) has no lowering: use rtl.macs_per_cycle"):
        S.compile_graph(g, {})


def test_read_after_own_write_is_refused():
    """An instruction whose later elements read a word an earlier element wrote would read it before the pipeline
    writes it (and emulate reads every operand first): the compiler refuses it, naming the layer."""
    prog = S.Program("unit", ram_size=8)
    ok = dict.fromkeys(S.FIELDS, 0)
    ok.update(op=S.ADD, n0=4, n1=1, n2=1, a0=0, a_s0=1, b_src=S.B_IMM, d0=4, d_s0=1)  # y[i] = x[i]: no hazard
    prog.instrs = [S.Instr("fine", ok, 8), S.Instr("shift", {**ok, "a0": 1, "d0": 0}, 8)]  # x[i] = x[i + 1]: fine
    S._check_hazards(prog)
    prog.instrs.append(S.Instr("prefix", {**ok, "a0": 0, "d0": 1}, 8))  # x[i + 1] = x[i]: reads its own result
    with pytest.raises(HwflowError, match="layer 'prefix' reads RAM word 1 after writing it"):
        S._check_hazards(prog)


def test_zu3eg_share_counts_ramb18_as_half_a_block():
    """The share of a ZU3EG counts block RAM in 36 Kb blocks: 71 RAMB18E2 + 3 RAMB36E2 are 38.5 of its 216."""
    from hwflow.rtl.serial_flow import bram36, small_parts

    cells = {"RAMB18E2": 71, "RAMB36E2": 3, "LUT6": 5}
    assert bram36(cells) == 38.5 and bram36({}, 7) == 7
    res = {
        "resources": {"LUT": 10357, "FF": 5284, "DSP": 18},
        "resources_extra": {"BRAM": 74},
        "yosys": {"cells": cells},
    }
    pct = small_parts(res)["ZU3EG (xczu3eg)"]["pct"]  # the worker's result, which keeps the cells under yosys
    assert pct["BRAM"] == 17.82 and pct["LUT"] == 14.68 and pct["DSP"] == 5.0


def run_rtl_python(code: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONNOUSERSITE="1")
    p = subprocess.run(
        [str(RTL_PY), "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=1800
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny(tiny_conformer):
    """The neutral folder of the tiny conformer of tests/conftest.py (9 frames -> 5, 6 mels, width 8)."""
    return tiny_conformer[3] / "neutral"


SERIAL = """
import json, numpy as np
from pathlib import Path
from hwflow.rtl.export import load_neutral
from hwflow.rtl import serial as S
from hwflow.rtl.simulators import _flat_io
g, arrays = load_neutral("{neutral}")
n = g["samples"]["n"]
it, ot = (g["tensors"][g[k][0]]["type"] for k in ("inputs", "outputs"))
x = S.to_raw(_flat_io(g, arrays, n, g["inputs"], "inputs"), it)
want = S.to_raw(_flat_io(g, arrays, n, g["outputs"], "csim"), ot)
prog = S.compile_graph(g, arrays)
y, snap = S.emulate(prog, x)
tr = g["samples"]["trace"]
layers = {{t: bool(np.array_equal(v, S.to_raw(arrays[tr[t]].reshape(n, -1), g["tensors"][t]["type"])))
          for t, v in snap.items() if t in tr}}
out = {{"emulated": bool(np.array_equal(y, want)), "layers": layers, "clocks": prog.clocks(),
        "ops": sorted(prog.summary()["ops"])}}
sims = {sims}
d = S.write_verilog(prog, Path("{tmp}") / "v", "tcf") if sims else None
for sim, m, gaps in sims:
    r = S.simulate(prog, d, x[:m], sim, Path("{tmp}") / sim, gaps=gaps)
    out[sim] = {{"exact": bool(np.array_equal(r["outputs"], want[:m])), "lat": r["latency_range"],
                "ii": r["interval_range"]}}
print(json.dumps(out))
"""


@needs_rtl
@pytest.mark.rtl
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed")
def test_tiny_conformer_serial_engine_bit_exact(tiny, tmp_path):
    """The program equals the C simulation on every layer and output (40 samples); the generated engine equals it in
    Icarus (3 samples, gaps on in_valid) and Verilator (8 samples back to back); latency = the schedule."""
    r = run_rtl_python(SERIAL.format(neutral=tiny, tmp=tmp_path, sims=(("iverilog", 3, True), ("verilator", 8, False))))
    assert r["emulated"] and len(r["layers"]) >= 20 and all(r["layers"].values()), r["layers"]
    assert {"dot", "rsqrt", "recip", "exp", "softout", "sigmul", "max", "add"} <= set(r["ops"])
    for sim in ("iverilog", "verilator"):
        assert r[sim]["exact"], sim
    assert r["verilator"]["lat"] == [r["clocks"], r["clocks"]]
    assert r["verilator"]["ii"][0] == r["verilator"]["ii"][1] == r["clocks"]  # one clip after the other
    assert r["iverilog"]["lat"][0] >= r["clocks"]  # gaps on in_valid stretch the load only


# cosFormer also runs its Verilog: its normaliser is the only user of RECIPN and of SOFTOUT's static left shift
COS_SIMS = (("verilator", 6, False),)  # Icarus with gaps on in_valid: the softmax engine's test above
VARIANTS = [
    (2, {"attention": "grouped", "attention_group": 3}, "mha", ()),
    (2, {"attention": "linformer", "linformer_k": 4}, "linformer", ()),
    (2, {"attention": "cosformer"}, "cosformer", COS_SIMS),
    pytest.param(1, {"attention": "grouped", "attention_group": 2}, "mha", (), marks=pytest.mark.slow),
]


@needs_rtl
@pytest.mark.rtl
@pytest.mark.parametrize(
    "heads,attention,op,sims", VARIANTS, ids=["grouped-2heads", "linformer", "cosformer", "grouped-1head"]
)
def test_attention_variant_program_equals_csim(hls_toolchain, heads, attention, op, sims, tmp_path):
    """Attention variants of issue 13 in the serial engine, on a tiny conformer of 6 frames: grouped attention (rows of
    g frames; two heads: each head's Q/K/V copied out head-major and the context copied back; one head: read in
    place), Linformer (keys/values compressed 6 -> 4 by constant matrices) and cosFormer (ReLU features times the
    cos/sin ROM, state K'^T V, normaliser reciprocal at den's leading one with a zero guard) compile to programs
    equal to the C simulation on every layer. Grouped and Linformer use the engine's usual instructions, whose
    Verilog the test above checks; cosFormer's Verilog runs here too (Verilator)."""
    from hwflow.rtl.demo import small_conformer
    from hwflow.rtl.export import export_model

    card, model = small_conformer(n_frames=12, H=heads, attention=attention)
    x = np.random.default_rng(1).normal(-2, 3, (230, 12, 6)).astype("float32")
    hm = hls_toolchain.convert(card, model, output_dir=str(tmp_path / "hls"), calibration_data=x[:200])
    neutral = export_model(hm, x[200:], tmp_path / "neutral", name="tiny_variant", trace=True)
    r = run_rtl_python(SERIAL.format(neutral=neutral, tmp=tmp_path, sims=sims))
    assert r["emulated"] and len(r["layers"]) >= 20 and all(r["layers"].values()), r["layers"]
    for sim, _, _ in sims:
        assert r[sim]["exact"], sim
    if sims:
        assert "recipn" in r["ops"] and r["verilator"]["lat"] == [r["clocks"], r["clocks"]]
    layers = json.loads((neutral / "graph.json").read_text())["layers"]
    att = [e["attrs"] for e in layers if e["op"] == op]
    assert len(att) == 1 and int(att[0]["seq_len"]) == 6
    assert int(att[0].get("group", 1)) == attention.get("attention_group", 1)
    assert int(att[0].get("proj_k", 6)) == attention.get("linformer_k", 6)


@needs_rtl
@pytest.mark.rtl
@pytest.mark.slow
def test_tiny_conformer_serial_report(tiny, tmp_path):
    """The worker's serial flow (rtl.macs_per_cycle: 1): Verilator on all 40 samples and Icarus on 2 bit-exact,
    Yosys UltraScale+ counts with the share of a ZU3EG, and a report that names the serial engine."""
    from hwflow.rtl import make_report, markdown, run_worker

    cfg = {"macs_per_cycle": 1, "iverilog_samples": 2, "ecp5": False}
    res = run_worker(tiny, tmp_path / "v", tmp_path / "r.json", "tcf", cfg, "xczu3eg-sbva484-1-e", 40, True)
    assert res["bit_exact_fraction_vs_csim"] == 1.0 and res["iverilog"]["bit_exact_fraction"] == 1.0
    assert res["latency_cycles"] == res["architecture"]["clocks_per_sample"] == res["interval"]
    assert all(v["bit_exact_fraction"] == 1.0 for v in res["per_layer"].values())
    assert res["resources"]["LUT"] > 0 and res["resources"]["DSP"] > 0
    assert "ZU3EG (xczu3eg)" in res["small_parts"]
    rep = make_report(res, "tcf", "xczu3eg", cfg, tmp_path, {}, None)
    assert rep["source"].startswith("open RTL (hwflow serial engine") and "share of a ZU3EG" in markdown(rep)
