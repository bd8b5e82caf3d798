"""End to end on a tiny transformer: train on synthetic jets-shaped data, convert with hwflow.hls, C-simulate,
report."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("hls4ml")


@pytest.mark.slow
def test_csim_end_to_end_tiny_transformer(tmp_path, monkeypatch, hls_toolchain):
    from test_train import tiny_card, tiny_dataset

    from hwflow.train import train
    from hwflow.verify import REQUIRED_KEYS, csim

    monkeypatch.setenv("HWFLOW_ROOT", str(tmp_path))
    card = tiny_card(name="e2e", epochs=3)
    ds = tiny_dataset()
    train(card, ds, verbose=0)
    r = csim(card, n_samples=100, dataset=ds)
    on_disk = json.loads((tmp_path / "reports" / "e2e" / "csim.json").read_text())
    assert set(REQUIRED_KEYS) <= set(on_disk)
    assert on_disk["n_samples"] == 100
    # the tiny QKeras model and its C++ agree on the class of nearly every sample
    assert r["argmax_agreement_vs_qkeras"] >= 0.95
    assert r["softmax_argmax_flips"] == 0
    names = {l["layer"] for l in r["layers"]}
    assert "mha0" in names and "norm0a" in names
    for f in ("csim.md", "roc.png", "layer_errors.png", "ranges.png", "scatter.png"):
        assert (tmp_path / "reports" / "e2e" / f).exists(), f
    assert np.isfinite(r["auc_drop_max_vs_float"])
