"""Open RTL flow of the attention variants: a tiny jet transformer per ``model.attention`` converts, exports and runs
through da4ml + Verilator, folded token-serially where the variant allows it, bit-exact against the C simulation."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_rtl_ext import RTL_PY  # noqa: E402

pytestmark = [
    pytest.mark.rtl,
    pytest.mark.skipif(not RTL_PY.exists(), reason=f"RTL environment absent ({RTL_PY}): run `make rtl-env`"),
    pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed"),
]
T = 4


def _tiny(attention, tmp):
    import hwflow.hls as H
    from hwflow.config import validate
    from hwflow.nn import build

    m = {
        "kind": "transformer",
        "embed_dim": 8,
        "key_dim": 4,
        "ffn_dim": 8,
        "attention": attention,
        "linformer_k": 2,
        "attention_group": 2,
    }
    card = validate(
        {
            "name": f"tiny_{attention}",
            "data": {
                "kind": "jets",
                "jets": {"n_constituents": T, "features": ["ptrel", "deta", "dphi"], "classes": ["g", "q", "t"]},
            },
            "model": m,
        }
    )
    model = build(card, quantized=True)
    rng = np.random.default_rng(4)
    x = (rng.normal(0, 1, (260, T, 3)) * rng.choice([0.3, 1, 3], (260, 1, 1))).astype("float32")
    hm = H.convert(card, model, output_dir=str(tmp / "hls"), calibration_data=x[:200])
    return hm, x[200:]


@pytest.mark.parametrize(
    "attention,group",
    [("linformer", 1), ("grouped", 2), ("cosformer", 0), pytest.param("grouped", 0, marks=pytest.mark.slow)],
)
def test_variant_rtl_is_bit_exact_against_csim(attention, group, tmp_path):
    from hwflow.rtl import rtl_from_hls

    hm, x = _tiny(attention, tmp_path)
    cfg = {"latency_cutoff": 5.0, "clock_period": 5.0, "iverilog_samples": 0, "tokens_per_cycle": group}
    r = rtl_from_hls(
        hm,
        x,
        f"tiny_{attention}",
        tmp_path / "fw",
        tmp_path / "rep",
        cfg,
        "xcvu13p-flga2577-2-e",
        yosys=False,
        python=RTL_PY,
    )
    assert r["n_samples"] == len(x) and r["bit_exact_fraction_vs_csim"] == 1.0, r.get("per_layer")
    assert r["var_products"]["count"] > 0 and r["estimated_cost_luts_da4ml"] > 0
    if group:
        assert r["interval"] == T // group


def test_cosformer_and_misaligned_groups_refuse_to_fold(tmp_path):
    from hwflow.rtl.export import export_model, load_neutral
    from hwflow.rtl.fold import FoldError, plan

    for attention, g, msg in (("cosformer", 1, "absolute token position"), ("grouped", 1, "multiple of 2")):
        hm, x = _tiny(attention, tmp_path / attention)
        graph, _ = load_neutral(export_model(hm, x[:8], tmp_path / attention / "n", name=attention, trace=True))
        with pytest.raises(FoldError, match=msg):
            plan(graph, g)
