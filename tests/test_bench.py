"""Benchmark stage: bookkeeping with a stand-in compiled model (fast), the real conversion (slow)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hwflow.config import validate

pytest.importorskip("tensorflow")
pytest.importorskip("qkeras")


def tiny_card(name="bench_tiny"):
    return validate(
        {
            "name": name,
            "data": {"kind": "jets", "jets": {"n_constituents": 4, "classes": ["g", "t"]}},
            "model": {"kind": "transformer", "embed_dim": 4, "key_dim": 2, "ffn_dim": 4},
        }
    )


class KerasAsHls:
    """Stands in for a compiled hls4ml model: predict() runs the Keras model sample by sample."""

    def __init__(self, model):
        self.model, self.compiled = model, False

    def compile(self):
        self.compiled = True

    def predict(self, x):
        assert self.compiled and x.dtype == np.float64
        return np.concatenate(
            [self.model(x[i : i + 1].astype(np.float32), training=False).numpy() for i in range(len(x))]
        )


def test_bench_writes_entry_and_keeps_others(tmp_path, monkeypatch):
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    from hwflow.bench import bench

    monkeypatch.setenv("HWFLOW_ROOT", str(tmp_path))
    seen = {}

    def converter(card, model, output_dir=None, calibration_data=None):
        seen.update(card=card.name, output_dir=output_dir, calib=calibration_data.shape)
        return KerasAsHls(model)

    (tmp_path / "reports" / "bench").mkdir(parents=True)
    (tmp_path / "reports" / "bench" / "bench.json").write_text(json.dumps({"models": {"other": {"kept": True}}}))
    e = bench(tiny_card(), n_samples=40, repeats=1, converter=converter)
    assert seen["card"] == "bench_tiny" and seen["calib"] == (40, 4, 4)
    assert "untrained" in e["weights"]  # no trained model in this root: timings only, and said so
    assert e["n_samples"] == 40 and e["argmax_agreement_csim_vs_keras"] == 1.0
    assert e["csim_over_keras_throughput"] == pytest.approx(
        e["csim_samples_per_second"] / e["keras_samples_per_second"]
    )
    data = json.loads((tmp_path / "reports" / "bench" / "bench.json").read_text())
    assert data["models"]["other"] == {"kept": True} and "bench_tiny" in data["models"]
    md = (tmp_path / "reports" / "bench" / "bench.md").read_text()
    assert "| bench_tiny |" in md and "C sim / Keras" in md


def test_cli_registered():
    from hwflow.cli import build_parser

    args = build_parser().parse_args(["bench"])
    assert args.model == "jet_transformer" and args.samples == 1000
    args = build_parser().parse_args(["csim", "jet_transformer", "-n", "50", "--no-trace"])
    assert args.samples == 50 and args.no_trace


@pytest.mark.slow
def test_bench_real_conversion(tmp_path, monkeypatch, hls_toolchain):
    from hwflow.bench import bench

    monkeypatch.setenv("HWFLOW_ROOT", str(tmp_path))
    e = bench(tiny_card(), n_samples=100, repeats=1)
    assert e["compile_seconds"] > 0 and e["csim_samples_per_second"] > 0
    assert e["argmax_agreement_csim_vs_keras"] > 0.9
