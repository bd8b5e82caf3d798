"""Sweep variants: naming, trained-model reuse, refusal of keys that need retraining, table rendering."""

import pytest

from hwflow import sweep
from hwflow.util import HwflowError


def test_variants_reuse_base_training(monkeypatch, tmp_path):
    cards = sweep.variants("models/jet_transformer.yaml", "hls.reuse_factor", [1, 4])
    assert [c.name for c in cards] == ["jet_transformer_rf1", "jet_transformer_rf4"]
    assert [c["hls"]["reuse_factor"] for c in cards] == [1, 4]
    # trained weights come from the base card, firmware/reports go to the variant's own folders
    assert all(c.model_dir().name == "jet_transformer" for c in cards)
    assert cards[1].firmware_dir().name == "jet_transformer_rf4"
    assert cards[1].report_dir().name == "jet_transformer_rf4"


def test_variant_values_are_validated():
    with pytest.raises(HwflowError, match="hls.strategy"):
        sweep.variants("models/jet_transformer.yaml", "hls.strategy", ["Fast"])


def test_sweep_refuses_keys_that_need_retraining():
    with pytest.raises(HwflowError, match="without retraining"):
        sweep.variants("models/jet_transformer.yaml", "quant.default.bits", [6, 8])
    with pytest.raises(HwflowError, match="empty sweep"):
        sweep.variants("models/jet_transformer.yaml", "hls.reuse_factor", [])


def test_markdown_never_invents_synthesis_numbers():
    table = {
        "model": "m",
        "key": "hls.reuse_factor",
        "values": [1, 2],
        "points": [
            {
                "name": "m_rf1",
                "hls.reuse_factor": 1,
                "accuracy_csim": 0.71,
                "argmax_agreement_vs_qkeras": 1.0,
                "auc_drop_max_vs_float": 0.002,
                "overflow_total": 0,
                "synth": {"status": "not run", "reason": "Vitis HLS not found on PATH"},
            },
            {
                "name": "m_rf2",
                "hls.reuse_factor": 2,
                "accuracy_csim": 0.71,
                "argmax_agreement_vs_qkeras": 1.0,
                "auc_drop_max_vs_float": 0.002,
                "overflow_total": 0,
                "synth": {
                    "status": "ok",
                    "latency_worst_cycles": 57,
                    "interval_max": 2,
                    "resources": {"LUT": 1000, "DSP": 3},
                },
            },
        ],
    }
    md = sweep.markdown(table)
    assert "Vitis HLS not found on PATH" in md
    assert "57 cycles, II 2, LUT 1000, DSP 3" in md
    assert md.count("cycles") == 1
