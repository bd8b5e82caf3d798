"""Training stage on tiny synthetic data: smoke, saved artefacts, reload, reproducibility, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwflow.config import validate
from hwflow.util import HwflowError, cpu_info

pytest.importorskip("tensorflow")
pytest.importorskip("qkeras")

CLASSES = ["g", "W", "t"]


def tiny_card(name="tiny", **train):
    return validate(
        {
            "name": name,
            "data": {"kind": "jets", "jets": {"n_constituents": 6, "classes": CLASSES}},
            "model": {"kind": "transformer", "embed_dim": 8, "key_dim": 4, "ffn_dim": 8},
            "train": {"epochs": 3, "batch_size": 64, "patience": 2, "seed": 3, "learning_rate": 0.01, **train},
        }
    )


def tiny_dataset(seed=0, n=(480, 160, 160)):
    """Three classes told apart by a shift of the first feature: learnable in a few epochs."""
    from hwflow.data import Dataset

    rng = np.random.default_rng(seed)

    def split(k):
        y = rng.integers(0, 3, k)
        x = rng.normal(size=(k, 6, 4)).astype(np.float32)
        x[:, :, 0] += 1.2 * y[:, None]
        return x, y

    (xt, yt), (xv, yv), (xs, ys) = split(n[0]), split(n[1]), split(n[2])
    return Dataset(xt, yt, xv, yv, xs, ys, CLASSES, {"spec_hash": "synthetic", "content_sha256": "0" * 64})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("root")
    old = os.environ.get("HWFLOW_ROOT")
    os.environ["HWFLOW_ROOT"] = str(root)
    from hwflow.train import train

    card = tiny_card()
    ds = tiny_dataset()
    summary = train(card, ds, verbose=0)
    yield card, ds, summary, root
    if old is None:
        os.environ.pop("HWFLOW_ROOT", None)
    else:
        os.environ["HWFLOW_ROOT"] = old


def test_outputs_written(trained):
    card, ds, s, root = trained
    d = root / "models" / "tiny"
    for f in ("qkeras.h5", "float.h5", "summary.json", "roc.png", "training.png"):
        assert (d / f).stat().st_size > 0, f
    on_disk = json.loads((d / "summary.json").read_text())
    for key in (
        "accuracy",
        "auc",
        "parameters",
        "training_seconds",
        "epochs_run",
        "seeds",
        "dataset",
        "versions",
        "confusion_matrix",
        "history",
        "card_hash",
    ):
        assert key in on_disk, key
    assert set(on_disk["accuracy"]) == {"qkeras", "float"}
    assert set(on_disk["auc"]["qkeras"]) == set(CLASSES)
    assert on_disk["dataset"]["spec_hash"] == "synthetic"
    assert on_disk["versions"]["qkeras"] == "0.9.0"
    # the CPU names the accuracy: deterministic TensorFlow training repeats per instruction set, not across them
    assert on_disk["cpu"] == json.loads(json.dumps(cpu_info()))
    assert not [p for p in (root / "models").iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_learns_something(trained):
    _, _, s, _ = trained
    # separable synthetic classes: both models beat chance (1/3) clearly after 3 epochs
    assert s["accuracy"]["qkeras"] > 0.6 and s["accuracy"]["float"] > 0.6
    assert min(s["auc"]["qkeras"].values()) > 0.7
    assert sum(map(sum, s["confusion_matrix"]["qkeras"])) == 160


def test_load_trained_predicts_like_summary(trained):
    from hwflow import metrics
    from hwflow.train import load_trained

    card, ds, s, _ = trained
    for which in ("qkeras", "float"):
        m = load_trained(card, which)
        acc = metrics.accuracy(m.predict(ds.x_test, verbose=0), ds.y_test)
        assert acc == pytest.approx(s["accuracy"][which], abs=1e-9)
    assert s["reload_max_abs_diff"] == {"qkeras": 0.0, "float": 0.0}


def test_load_trained_errors(trained, tmp_path, monkeypatch):
    from hwflow.train import load_trained

    card, _, _, _ = trained
    changed = tiny_card(epochs=4)
    with pytest.raises(HwflowError, match=r"different card \(train.epochs: 3 -> 4\).*make train MODEL=tiny"):
        load_trained(changed)
    with pytest.raises(HwflowError, match="unknown model variant"):
        load_trained(card, "int8")
    monkeypatch.setenv("HWFLOW_ROOT", str(tmp_path))
    with pytest.raises(HwflowError, match=r"no trained qkeras model.*make train MODEL=tiny"):
        load_trained(card)


def test_card_changes_ignore_new_schema_keys():
    from hwflow.train import card_changes

    card = tiny_card()
    trained = {k: json.loads(json.dumps(card[k])) for k in ("data", "model", "quant", "train")}
    trained["model"].pop("input_norm")  # a key the schema gained after training: not a change
    assert card_changes(trained, card) == []
    trained["model"]["embed_dim"] = 32
    assert card_changes(trained, card) == ["model.embed_dim: 32 -> 8"]


def test_reproducible_from_seed(tmp_path, monkeypatch):
    from hwflow.train import train

    monkeypatch.setenv("HWFLOW_ROOT", str(tmp_path))
    card = tiny_card(name="rep", float_twin=False, epochs=2)
    small = (256, 64, 64)
    a = train(card, tiny_dataset(n=small), verbose=0)
    b = train(card, tiny_dataset(n=small), verbose=0)
    assert a["history"]["qkeras"]["loss"] == pytest.approx(b["history"]["qkeras"]["loss"], rel=1e-6)
    assert a["accuracy"] == b["accuracy"]
    for c in CLASSES:
        assert a["auc"]["qkeras"][c] == pytest.approx(b["auc"]["qkeras"][c], abs=1e-6)
    assert "float" not in a["accuracy"]


def test_empty_split_is_a_clear_error(tmp_path, monkeypatch):
    from hwflow.train import train

    monkeypatch.setenv("HWFLOW_ROOT", str(tmp_path))
    ds = tiny_dataset()
    ds.x_val, ds.y_val = ds.x_val[:0], ds.y_val[:0]
    with pytest.raises(HwflowError, match="empty split"):
        train(tiny_card(), ds, verbose=0)
    assert not (tmp_path / "models" / "tiny").exists()


def test_cli_registered():
    from hwflow.cli import build_parser

    args = build_parser().parse_args(["train", "jet_transformer", "--set", "train.epochs=2"])
    assert args.model == "jet_transformer" and args.overrides == ["train.epochs=2"]
