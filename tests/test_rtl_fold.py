"""Token-serial (folded) RTL of attention models: segment plan, bit-exact Verilator/Icarus simulation of the generated
controller + da4ml pipelines against the hls4ml C simulation, measured latency/interval, refusal of unfoldable
graphs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RTL_PY = Path(os.environ.get("HWFLOW_RTL_PYTHON", ROOT / ".venv-rtl" / "bin" / "python"))
needs_rtl = pytest.mark.skipif(not RTL_PY.exists(), reason=f"RTL environment absent ({RTL_PY}): run `make rtl-env`")
pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")

T = 4  # tokens

# run in .venv-rtl: load a neutral file, plan with G tokens per clock, trace (cutoff = product slice), n samples
FOLD_PRELUDE = """
import json, numpy as np
from pathlib import Path
from hwflow.rtl.export import load_neutral
from hwflow.rtl import fold
from hwflow.rtl.emulate import emulate
from hwflow.rtl.trace_graph import SLICE_BITS
from hwflow.rtl.simulators import _flat_io
g, arrays = load_neutral("{neutral}")
p = fold.plan(g, {group})
mods = fold.trace_plan(g, arrays, p, float(SLICE_BITS), SLICE_BITS)
n = {n}
x = _flat_io(g, arrays, n, g["inputs"], "inputs"); want = _flat_io(g, arrays, n, g["outputs"], "csim")
"""


def run_folded(neutral, group: int, n: int, body: str) -> dict:
    """Run FOLD_PRELUDE + body in the RTL environment; return the JSON the body prints last."""
    import subprocess
    import textwrap

    code = FOLD_PRELUDE.format(neutral=neutral, group=group, n=n) + textwrap.dedent(body)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONNOUSERSITE="1")
    p = subprocess.run([str(RTL_PY), "-c", code], capture_output=True, text=True, env=env, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 4-token transformer (hwflow attention, LayerNorm, RMSNorm, pooling, softmax) converted and exported."""
    import hwflow.hls as H
    from hwflow.config import validate
    from hwflow.rtl.demo import small_transformer
    from hwflow.rtl.export import export_model, load_neutral

    model = small_transformer(seed=2, T=T, F=3, D=8, H=2, DK=4, FFN=8, NCLS=3)
    rng = np.random.default_rng(3)
    x = (rng.normal(0, 1, (260, T, 3)) * rng.choice([0.3, 1, 3], (260, 1, 1))).astype("float32")
    card = validate({"name": "tiny_fold", "data": {"kind": "jets"}, "model": {"kind": "transformer"}, "hls": {}})
    tmp = tmp_path_factory.mktemp("fold")
    hm = H.convert(card, model, output_dir=str(tmp / "hls"), calibration_data=x[:200])
    neutral = export_model(hm, x[200:], tmp / "neutral", name="tiny_fold", trace=True)
    graph, _ = load_neutral(neutral)
    return hm, x[200:], graph, tmp


def test_plan_cuts_the_graph_at_attention(tiny):
    """s0 ends with the Q/K/V projections, s1 attends over all keys/values, the tail starts at the pooling."""
    from hwflow.rtl.fold import plan

    _, _, graph, _ = tiny
    p = plan(graph, 1)
    assert [s.name for s in p.segments] == ["s0", "s1", "tail"] and p.n_groups == T
    s0, s1, tail = p.segments
    assert s0.project["name"] == "mha" and s1.attend["name"] == "mha"
    assert s1.full_in == ["mha:k", "mha:v"] and "mha:q" in s1.row_in
    assert "embed" in s0.live_out and "embed" in s1.row_in  # the residual travels with its token (QActivation folded)
    assert tail.layers[0]["op"] == "global_pool1d" and tail.row_in == s1.live_out
    assert p.widths["mha:q"] == 2 * 4


def test_unfoldable_graphs_are_refused_with_the_fix(tiny, tmp_path):
    from hwflow.rtl.demo import convert_stock, sample_inputs, tiny_qkeras
    from hwflow.rtl.export import export_model, load_neutral
    from hwflow.rtl.fold import FoldError, plan

    _, _, graph, _ = tiny
    with pytest.raises(FoldError, match="must divide the sequence length 4"):
        plan(graph, 3)
    m = tiny_qkeras("seq")
    g, _ = load_neutral(
        export_model(convert_stock(m, str(tmp_path / "h")), sample_inputs(m, 4), tmp_path / "n", name="seq")
    )
    with pytest.raises(FoldError, match="tokens_per_cycle: 0"):
        plan(g, 1)


@needs_rtl
@pytest.mark.rtl
# group 2 (the longest Verilator build of the default run, 14 min at load 30) and Yosys: `make test-slow`; group 1
# keeps the same folding, simulation and measurement path in the default run
@pytest.mark.parametrize(
    "group,yosys",
    [(1, False), pytest.param(2, False, marks=pytest.mark.slow), pytest.param(1, True, marks=pytest.mark.slow)],
)
def test_folded_design_is_bit_exact_and_measured(tiny, tmp_path, group, yosys):
    """Verilator (all samples) and Icarus (a few) run the generated top: outputs equal the C simulation bit for bit,
    a new sample every T/G clocks, latency = the schedule of the controller over the segments' pipeline depths."""
    from hwflow.rtl import rtl_from_hls

    hm, x, _, _ = tiny
    # G = 2 also uses 9-bit product slices (cutoff 9): shallower stages, same bits
    cfg = {
        "latency_cutoff": 5.0,
        "clock_period": 5.0,
        "iverilog_samples": 12,
        "tokens_per_cycle": group,
        "yosys_timeout_s": 900,
        "product_slice_bits": 18 if group == 1 else 9,
    }
    fw, rep = tmp_path / "fw", tmp_path / "rep"
    r = rtl_from_hls(hm, x, f"tiny_fold{group}", fw, rep, cfg, "xcvu13p-flga2577-2-e", yosys=yosys, python=RTL_PY)
    n = x.shape[0]
    assert r["n_samples"] == n and r["n_values"] == n * 3
    assert r["bit_exact_fraction_vs_csim"] == 1.0 and r["bit_exact_source"].startswith("verilator simulation")
    assert r["second_simulator"]["bit_exact_fraction"] == 1.0
    arch = r["architecture"]
    assert arch["tokens_per_cycle"] == group and arch["clocks_per_sample"] == T // group
    stages = [s["pipeline_stages"] for s in arch["segments"]]
    n_tok = len(stages) - 1
    assert r["interval"] == T // group == r["second_simulator"]["interval"]
    assert (
        r["latency_cycles"]
        == n_tok * (T // group) + sum(s + 1 for s in stages) + n_tok
        == r["second_simulator"]["latency_cycles"]
    )
    assert all(v["bit_exact_fraction"] == 1.0 for v in r["per_layer"].values())
    assert all(v["bit_exact_fraction"] == 1.0 for v in r["segment_buffers"].values())
    assert r["latency_cutoff"] == r["product_slice_bits"] == cfg["product_slice_bits"]
    assert (fw / "verilog" / "src" / f"tiny_fold{group}_folded.v").is_file()
    md = (rep / "rtl.md").read_text()
    assert "token-serial" in md and "| s1 |" in md
    if yosys:  # (slow: minutes of Yosys) real cells, variable products on DSPs
        res = r["resources"]
        assert res["LUT"] > 1000 and res["FF"] > 500 and res["DSP"] > 0
        assert "not Vivado" in r["synthesizer"] and json.loads((rep / "rtl.json").read_text())["resources"] == res


@needs_rtl
@pytest.mark.rtl
def test_controller_survives_input_gaps(tiny, tmp_path):
    """Samples offered with in_valid withheld on a pseudo-random pattern still come out in order and bit-exact."""
    _, _, _, tmp = tiny
    r = run_folded(
        tmp / "neutral",
        1,
        20,
        f"""
        prj = fold.write_project(mods, p, Path("{tmp_path}") / "prj", "gap", 5.0, 5.0, "xcvu13p")
        r = fold.simulate(prj, x, "iverilog", Path("{tmp_path}") / "sim", gaps=True)
        print(json.dumps({{"exact": bool(np.array_equal(r["outputs"], want)), "interval": r["interval_range"],
                          "lat": r["latency_range"]}}))
    """,
    )
    assert r["exact"]
    assert r["interval"][0] == T and r["interval"][1] > T  # gaps really happened
    assert r["lat"][0] == r["lat"][1]  # latency does not depend on when a sample arrives


@needs_rtl
@pytest.mark.rtl
def test_worker_reports_a_bad_fold_as_one_line(tiny, tmp_path):
    """rtl.tokens_per_cycle that does not divide the sequence stops the RTL stage with the reason, nothing written."""
    from hwflow.rtl import NotFoldable, run_worker

    _, _, _, tmp = tiny
    cfg = {"latency_cutoff": 5.0, "clock_period": 5.0, "tokens_per_cycle": 3}
    # NotFoldable (an HwflowError): hwflow.explore keeps such a trial's accuracy without hardware figures
    with pytest.raises(NotFoldable, match=r"RTL: rtl.tokens_per_cycle = 3 must divide the sequence length 4"):
        run_worker(
            tmp / "neutral", tmp_path / "v", tmp_path / "r.json", "bad", cfg, "xcvu13p-flga2577-2-e", 10, False, RTL_PY
        )
    assert not (tmp_path / "v").exists()


@needs_rtl
@pytest.mark.rtl
@pytest.mark.parametrize("icarus", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_two_block_pre_norm_transformer_folds(tmp_path, icarus):
    """Two attention blocks (pre-norm, as built by hwflow.nn from a card): three token segments pass K/V, queries and
    residuals through two double buffers; the chained segments (and, slow, the Verilog in Icarus) equal the C sim."""
    import hwflow.hls as H
    from hwflow.config import load_card, parse_overrides
    from hwflow.nn.transformer import build_transformer
    from hwflow.rtl.export import export_model

    card = load_card("jet_transformer", parse_overrides(["model.num_blocks=2", "model.norm_position=pre"]))
    m = build_transformer(card, True, input_shape=(4, 4), n_classes=5)
    x = np.random.default_rng(0).normal(0, 1, (260, 4, 4)).astype("float32")
    hm = H.convert(card, m, output_dir=str(tmp_path / "hls"), calibration_data=x[:200])
    export_model(hm, x[200:], tmp_path / "neutral", name="twoblk", trace=True)
    r = run_folded(
        tmp_path / "neutral",
        2,
        60,
        f"""
        y, bufs = fold.emulate_chain(mods, p, x, emulate)
        out = {{"segments": [m.seg.name for m in mods], "emulated": bool(np.array_equal(y, want))}}
        if {icarus}:
            prj = fold.write_project(mods, p, Path("{tmp_path}") / "prj", "twoblk", float(SLICE_BITS), 5.0, "xcvu13p")
            r = fold.simulate(prj, x[:8], "iverilog", Path("{tmp_path}") / "sim")
            out.update(icarus=bool(np.array_equal(r["outputs"], want[:8])), lat=r["latency_range"],
                       ii=r["interval_range"], expect=3 * 2 + sum(prj["depths"]) + 3)
        print(json.dumps(out))
    """,
    )
    assert r["segments"] == ["s0", "s1", "s2", "tail"] and r["emulated"]
    if icarus:
        assert r["icarus"] and r["ii"] == [2, 2] and r["lat"] == [r["expect"], r["expect"]]


@needs_rtl
@pytest.mark.rtl
def test_unsupported_layer_is_named_not_its_dependents(tiny, tmp_path):
    """A layer without an RTL tracer stops the stage with its name and class; the layers after it are only counted."""
    from hwflow.rtl import run_worker
    from hwflow.util import HwflowError

    _, _, _, tmp = tiny
    shutil.copytree(tmp / "neutral", tmp_path / "neutral")
    g = json.loads((tmp_path / "neutral" / "graph.json").read_text())
    ln = next(e for e in g["layers"] if e["op"] == "layernorm")
    ln["op"], ln["hls_class"] = None, "SomeNewNorm"
    g["unsupported_layers"] = [f"{ln['name']} (SomeNewNorm)"]
    (tmp_path / "neutral" / "graph.json").write_text(json.dumps(g))
    with pytest.raises(
        HwflowError,
        match=rf"unsupported layers: {ln['name']}: no RTL tracer for hls4ml class SomeNewNorm "
        r"\(and \d+ layers downstream",
    ):
        run_worker(
            tmp_path / "neutral",
            tmp_path / "v",
            tmp_path / "r.json",
            "bad",
            {},
            "xcvu13p-flga2577-2-e",
            10,
            False,
            RTL_PY,
        )
