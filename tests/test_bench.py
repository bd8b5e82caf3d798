"""Benchmark stage: bookkeeping with a stand-in C simulation (fast); the real one runs in test_one_design."""

from __future__ import annotations

import json

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


class KerasAsSim:
    """Stands in for hwflow.hls.CSim: the batch call, the trace and the library's per-sample entry run Keras."""

    def __init__(self, model):
        from types import SimpleNamespace

        self.model, self.path, self.firmware_sha256 = model, "firmware/bench_tiny", "f" * 64
        self.rebuilt, self.firmware_seconds, self.compile_seconds = None, 0.0, 0.0
        self.n_out = [int(model.output_shape[-1])]

        def one(x, y):  # <project>_double(x, y): writes the outputs in place
            y[:] = self.predict(x[None])[0]

        self.lib = SimpleNamespace(myproject_double=one)

    def predict(self, x):
        assert x.dtype == np.float64
        return self.model(x.astype(np.float32).reshape(len(x), *self.model.input_shape[1:]), training=False).numpy()

    def trace(self, x):
        return self.predict(x), {}


def test_bench_writes_entry_and_keeps_others(tmp_path, monkeypatch):
    import hwflow.data
    import hwflow.train
    from hwflow.bench import bench
    from hwflow.data import Dataset
    from hwflow.nn import build

    monkeypatch.setenv("HWFLOW_ROOT", str(tmp_path))
    card = tiny_card()
    model = build(card, quantized=True)
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)  # ordered by class: a head slice would see one class only
    x = rng.normal(size=(60, 4, 4)).astype(np.float32)
    ds = Dataset(x, y, x, y, x, y, ["g", "t"], {"content_sha256": "0" * 64})
    monkeypatch.setattr(hwflow.train, "load_trained", lambda card, which="qkeras": model)
    monkeypatch.setattr(hwflow.data, "get_dataset", lambda card, **kw: ds)
    seen = {}

    def prepare(card, model, dataset):
        seen.update(card=card.name, dataset=dataset)
        return KerasAsSim(model)

    (tmp_path / "reports" / "bench").mkdir(parents=True)
    (tmp_path / "reports" / "bench" / "bench.json").write_text(json.dumps({"models": {"other": {"kept": True}}}))
    e = bench(card, n_samples=40, repeats=1, prepare=prepare)
    assert seen["card"] == "bench_tiny" and seen["dataset"] is ds
    assert e["n_samples"] == 40 and e["classes_in_sample"] == 2 and e["argmax_agreement_csim_vs_keras"] == 1.0
    assert e["firmware_sha256"] == "f" * 64 and e["batch_equals_per_sample"]
    assert e["csim_over_keras_throughput"] == pytest.approx(
        e["csim_samples_per_second"] / e["keras_samples_per_second"]
    )
    t = e["time_split"]
    assert t["per_sample_calls_samples_per_second"] > 0 and 0 <= t["overhead_share_of_per_sample_time"] <= 1
    data = json.loads((tmp_path / "reports" / "bench" / "bench.json").read_text())
    assert data["models"]["other"] == {"kept": True} and "bench_tiny" in data["models"]
    md = (tmp_path / "reports" / "bench" / "bench.md").read_text()
    assert "| bench_tiny |" in md and "C sim / Keras" in md and "Where the C simulation's time goes" in md


def test_cli_registered():
    from hwflow.cli import build_parser

    args = build_parser().parse_args(["bench"])
    assert args.model == "jet_transformer" and args.samples == 1000
    args = build_parser().parse_args(["csim", "jet_transformer", "-n", "50", "--no-trace"])
    assert args.samples == 50 and args.no_trace
