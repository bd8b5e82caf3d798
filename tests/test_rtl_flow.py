"""Open RTL route end to end in .venv-rtl: da4ml trace, Verilator + Icarus bit-exactness vs C sim, Yosys counts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RTL_PY = Path(os.environ.get("HWFLOW_RTL_PYTHON", ROOT / ".venv-rtl" / "bin" / "python"))

pytestmark = [
    pytest.mark.rtl,
    pytest.mark.skipif(not RTL_PY.exists(), reason=f"RTL environment absent ({RTL_PY}): run `make rtl-env`"),
]


def run_rtl_python(code: str) -> str:
    """Run code in the RTL environment with the hwflow sources importable; return its stdout."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONNOUSERSITE="1")
    p = subprocess.run([str(RTL_PY), "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def test_traced_casts_match_ap_fixed_for_every_mode():
    """Every rounding x overflow mode built from da4ml ops equals the numpy ap_fixed cast on all inputs of a 12-bit
    grid."""
    out = run_rtl_python("""
        import itertools, json
        import numpy as np
        from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
        from hwflow.rtl.trace_graph import cast
        from hwflow.rtl.emulate import emulate
        from hwflow.rtl.export import quantize_np
        X = np.arange(-2**11, 2**11) * 2.0**-6            # every value of ap_fixed<12,6>
        bad = {}
        for rnd, sat, signed in itertools.product(
                ["TRN", "RND", "RND_CONV", "TRN_ZERO", "RND_ZERO", "RND_INF", "RND_MIN_INF"],
                ["WRAP", "SAT", "SAT_SYM"], [True, False]):
            t = {"ctype": "t", "signed": signed, "width": 7, "integer": 4, "frac": 3, "rounding": rnd,
                 "saturation": sat, "sat_bits": 0}
            inp = FixedVariableArrayInput((1,), hwconf=HWConfig(1, -1, 5.0))
            y = cast(inp.quantize(1, 5, 6), t)
            comb = comb_trace(inp._vars.ravel(), y._vars.ravel())
            got = emulate(comb, X.reshape(-1, 1))[:, 0]
            want = quantize_np(X, t)
            if not np.array_equal(got, want):
                bad[f"{rnd}/{sat}/{signed}"] = int(np.count_nonzero(got != want))
        print(json.dumps(bad))
    """)
    assert json.loads(out.strip().splitlines()[-1]) == {}


def test_emulator_matches_verilog_semantics_on_division():
    """Average pooling over a non power of two divides by a magic constant; the emulator must agree with exact
    integers."""
    out = run_rtl_python("""
        import numpy as np
        from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
        from hwflow.rtl.trace_graph import _div_trunc_zero
        from hwflow.rtl.emulate import emulate
        inp = FixedVariableArrayInput((1,), hwconf=HWConfig(1, -1, 5.0))
        v = inp.quantize(1, 5, 5)._vars[0]
        X = np.arange(-2**10, 2**10)
        errs = []
        for n in (3, 5, 7, 16):
            comb = comb_trace(inp._vars.ravel(), [_div_trunc_zero(v, n, 10)])
            got = emulate(comb, (X * 2.0**-5).reshape(-1, 1))[:, 0] * 2**10
            errs.append(int(np.count_nonzero(got != np.trunc(X * 32 / n))))
        print(errs)
    """)
    assert out.strip().splitlines()[-1] == "[0, 0, 0, 0]"


# the Yosys + ECP5 place-and-route run takes minutes: `make test-slow`; by default the same path without them
@pytest.mark.parametrize("kind,yosys", [("seq", False), pytest.param("seq", True, marks=pytest.mark.slow)])
def test_small_model_end_to_end(tmp_path, kind, yosys):
    """QKeras -> hls4ml -> neutral file -> da4ml Verilog -> Verilator/Icarus bit-exact vs C sim -> Yosys counts ->
    reports."""
    from hwflow.rtl import rtl_from_hls
    from hwflow.rtl.demo import convert_stock, sample_inputs, tiny_qkeras

    model = tiny_qkeras(kind)
    hls_model = convert_stock(model, str(tmp_path / "hls"))
    x = sample_inputs(model, 200)
    cfg = {"latency_cutoff": 5.0, "clock_period": 5.0, "iverilog_samples": 32, "yosys_timeout_s": 600}
    fw, rep = tmp_path / "firmware" / "rtl", tmp_path / "reports"
    r = rtl_from_hls(hls_model, x, f"tiny_{kind}", fw, rep, cfg, "xcvu13p-flga2577-2-e", yosys=yosys, python=RTL_PY)

    assert r["n_samples"] == 200 and r["n_values"] == 200 * 3
    assert r["bit_exact_fraction_vs_csim"] == 1.0, r["non_exact_layers"]
    assert r["non_exact_layers"] == {} and r["unsupported"] == []
    assert set(r["per_layer"]) >= {"d1", "r1", "d2", "r2", "res", "pool", "head"}
    assert all(v["bit_exact_fraction"] == 1.0 for v in r["per_layer"].values())
    # latency measured by Icarus equals the da4ml pipeline depth, one new sample per clock
    assert r["second_simulator"]["bit_exact_fraction"] == 1.0
    assert r["latency_cycles"] == r["pipeline_stages"] >= 1 and r["interval"] == 1
    src = fw / "verilog" / "src"
    assert (src / f"tiny_{kind}.v").is_file() and list(src.glob(f"tiny_{kind}_stage*.v"))
    assert (fw / "neutral" / "graph.json").is_file()
    if not yosys:
        assert not r.get("resources") and "not Vivado" in (rep / "rtl.md").read_text()
        return
    # Yosys counted real cells; constant multiplications need no DSPs
    res = r["resources"]
    assert res["LUT"] > 100 and res["FF"] > 50 and res["DSP"] == 0 and res["CARRY"] > 0
    assert 0 < r["utilization_pct"]["LUT"] < 1
    assert r["synthesizer"].startswith("open RTL: yosys") and "not Vivado" in r["synthesizer"]
    # post-route Fmax on an ECP5 (nextpnr, out of context): a real number, labelled as a proxy
    ec = r["ecp5"]
    assert ec["placed"] == [f"tiny_{kind}"] and 20 < ec["fmax_mhz_min"] < 1000, ec
    assert ec["runs"][f"tiny_{kind}"]["utilization"]["TRELLIS_COMB"] > 100 and "proxy" in ec["meaning"]
    # outputs on disk: reports
    saved = json.loads((rep / "rtl.json").read_text())
    for key in (
        "n_samples",
        "bit_exact_fraction_vs_csim",
        "latency_cycles",
        "interval",
        "resources",
        "utilization_pct",
        "synthesizer",
        "simulator",
        "part",
        "clock_period_ns",
        "per_layer",
        "timings",
    ):
        assert key in saved
    md = (rep / "rtl.md").read_text()
    assert "not Vivado" in md and "bit-exact" in md and "ECP5 post-route Fmax (proxy)" in md


def test_corrupted_weight_is_caught(tmp_path, capfd):
    """A neutral file whose weight differs from the C++ one must not pass as bit-exact (the check can fail); the
    worker's step lines (step, samples simulated, elapsed time) reach the caller's stderr as it runs."""
    from hwflow.rtl import run_worker
    from hwflow.rtl.demo import convert_stock, sample_inputs, tiny_qkeras
    from hwflow.rtl.export import export_model

    model = tiny_qkeras("flat")
    hls_model = convert_stock(model, str(tmp_path / "hls"))
    x = sample_inputs(model, 100)
    neutral = export_model(hls_model, x, tmp_path / "neutral", name="flat_bad")
    z = dict(np.load(neutral / "data.npz"))
    z["d2.weight"] = z["d2.weight"].copy()
    z["d2.weight"][0, 0] += 2.0**-5  # one LSB of the weight type
    np.savez(neutral / "data.npz", **z)
    cfg = {"latency_cutoff": 5.0, "clock_period": 5.0, "iverilog_samples": 16}
    r = run_worker(
        neutral, tmp_path / "v", tmp_path / "r.json", "flat_bad", cfg, "xcvu13p-flga2577-2-e", 100, False, RTL_PY
    )
    assert r["per_layer"]["d1"]["bit_exact_fraction"] == 1.0
    assert r["per_layer"]["d2"]["n_mismatch"] > 0 and r["per_layer"]["d2"]["max_abs_error"] > 0
    assert r["bit_exact_fraction_vs_csim"] < 1.0
    err = capfd.readouterr().err
    for step in (r"trace \d+ layers with da4ml", r"Verilator simulation, 100 samples at II=1", r"finished: ok"):
        assert re.search(r"hwflow rtl \[ *[0-9.]+ s\] " + step, err), (step, err[-2000:])


def test_big_design_path_is_labelled(tmp_path):
    """Above rtl.sim_max_cost / yosys_max_cost the simulators and Yosys are skipped and the report says what ran
    instead."""
    from hwflow.rtl import rtl_from_hls
    from hwflow.rtl.demo import convert_stock, sample_inputs, tiny_qkeras

    model = tiny_qkeras("flat")
    hls_model = convert_stock(model, str(tmp_path / "hls"))
    cfg = {"latency_cutoff": 5.0, "clock_period": 5.0, "iverilog_samples": 16, "sim_max_cost": 1, "yosys_max_cost": 1}
    r = rtl_from_hls(
        hls_model,
        sample_inputs(model, 50),
        "flat_big",
        tmp_path / "fw",
        tmp_path / "rep",
        cfg,
        "xcvu13p-flga2577-2-e",
        yosys=True,
        python=RTL_PY,
    )
    assert r["bit_exact_fraction_vs_csim"] == 1.0
    assert r["bit_exact_source"].startswith("emulated") and "not simulated" in r["simulator"]
    assert r["latency_cycles"] == r["pipeline_stages"] and "not measured" in r["latency_source"]
    assert r["resources"] is None and r["synthesizer"].startswith("not run: skipped")
    md = (tmp_path / "rep" / "rtl.md").read_text()
    assert "not synthesized" in md and "emulated" in md
