"""hwflow.explore: spaces, Optuna ask/tell on a 2-process Dask LocalCluster (a failing trial, a killed worker),
caching by effective-card hash, the front as runnable cards; one real tiny trial end to end (slow)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from hwflow.cluster import ClusterSettings, client
from hwflow.config import load_card
from hwflow.explore import effective_card, explore, is_trial_name, load_space
from hwflow.util import HwflowError

TINY = {
    "name": "tiny",
    "data": {"kind": "jets", "jets": {"classes": ["g", "W", "t"], "n_constituents": 4, "jets_per_class": 30}},
    "model": {"kind": "transformer", "embed_dim": 4, "num_heads": 1, "key_dim": 2, "ffn_dim": 4},
    "quant": {
        "default": {"bits": 8, "integer": 0},
        "qkv": {"bits": 16, "integer": 5},
        "score": {"bits": 16, "integer": 5},
    },
    "train": {"epochs": 2, "batch_size": 32, "patience": 2, "float_twin": False},
    "hls": {"csim_samples": 20},
    "rtl": {"tokens_per_cycle": 0},
}
SPACE = {
    "model": "tiny",
    "sampler": "random",
    "trials": 6,
    "seed": 3,
    "population": 3,
    "fixed": {"train.epochs": 1},
    "params": {
        "quant.default.bits": [2, 4, 8],
        "quant.qkv.bits+quant.score.bits": [8, 16],
        "rtl.tokens_per_cycle": [0, 1, 2],
    },
}


def fake_trial(card, task):
    """Stand-in for the stages: figures derived from the card; 2-bit weights raise; the very first call kills its
    worker process (a marker file remembers it), so that trial is retried on a fresh worker."""
    bits = card["quant"]["default"]["bits"]
    calls = Path(task["root"]) / "calls"
    with open(calls, "a") as f:
        f.write(card.name + "\n")
    marker = Path(task["root"]) / "died"
    if not marker.exists():
        marker.touch()
        os._exit(1)
    if bits == 2:
        raise ValueError(f"{bits}-bit weights\nsecond line")
    act = card["quant"]["qkv"]["bits"]
    g = card["rtl"]["tokens_per_cycle"]
    return {
        "name": card.name,
        "status": "ok",
        "tools": {"accuracy": "fake", "lut_da4ml": "fake"},
        "accuracy": 0.5 + 0.02 * bits + 0.001 * act,
        "accuracy_stat_error": 0.01,
        "lut_da4ml": 100 * bits * act * max(g, 1),
        "var_products": 10 * max(g, 1),
        "pipeline_stages": 5,
        "interval": 4 // max(g, 1) if g else 1,
        "latency_cycles": None,
    }


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("HWFLOW_ROOT", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (tmp_path / "models" / "tiny.explore.yaml").write_text(yaml.safe_dump(SPACE))
    return tmp_path


@pytest.fixture(scope="module")
def cluster():
    with client(ClusterSettings(n_workers=2, retries=2)) as c:
        yield c


def test_space_is_validated_against_the_card(project):
    s = load_space("tiny")
    assert [p.keys for p in s.params][1] == ["quant.qkv.bits", "quant.score.bits"]
    card = effective_card(s, {"quant.default.bits": 4, "quant.qkv.bits+quant.score.bits": 8, "rtl.tokens_per_cycle": 2})
    assert is_trial_name(card.name) and card["quant"]["score"]["bits"] == 8 and card["train"]["epochs"] == 1
    # the name is the hash of the effective card: the same values give the same trial, other values another
    again = effective_card(
        s, {"quant.default.bits": 4, "quant.qkv.bits+quant.score.bits": 8, "rtl.tokens_per_cycle": 2}
    )
    other = effective_card(
        s, {"quant.default.bits": 8, "quant.qkv.bits+quant.score.bits": 8, "rtl.tokens_per_cycle": 2}
    )
    assert card.name == again.name != other.name
    # the space file is not mistaken for a model card
    with pytest.raises(HwflowError, match=r"known: tiny$"):
        load_card("nope")
    bad = dict(SPACE, params={"quant.default.bitz": [4]})
    (project / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(HwflowError, match=r"unknown key 'quant.default.bitz'"):
        load_space("tiny", project / "bad.yaml")
    (project / "bad.yaml").write_text(yaml.safe_dump(dict(SPACE, params={"hls.reuse_factor": {"low": 0, "high": 2}})))
    with pytest.raises(HwflowError, match=r"hls.reuse_factor' = 0: must be > 0"):
        load_space("tiny", project / "bad.yaml")
    (project / "bad.yaml").write_text(yaml.safe_dump(dict(SPACE, samplr="grid")))
    with pytest.raises(HwflowError, match=r"unknown key\(s\) samplr"):
        load_space("tiny", project / "bad.yaml")


def test_study_on_dask_with_failure_killed_worker_and_cache(project, cluster):
    addr = cluster.scheduler.address
    s = explore("tiny", scheduler=addr, trial_fn=fake_trial, progress=False)
    recs = [json.loads(line) for line in (project / "reports/tiny/explore/trials.jsonl").read_text().splitlines()]
    assert len(recs) == 6 == s["trials"]
    assert [r["trial"] for r in recs] == list(range(6))
    # the default design is trial 0 (enqueued), marked
    assert recs[0]["is_default"] and recs[0]["params"]["quant.default.bits"] == 8
    failed = [r for r in recs if r["status"] != "ok"]
    assert failed and all(r["error"] == "ValueError: 2-bit weights" for r in failed)
    assert all(r["params"]["quant.default.bits"] == 2 for r in failed)
    # the killed worker's trial was retried and finished
    assert (project / "died").exists()
    assert all(r["status"] == "ok" for r in recs if r["params"]["quant.default.bits"] != 2)
    # outputs: the front with the default marked, plots, one runnable card per front point
    md = (project / "reports/tiny/explore/pareto.md").read_text()
    assert "(default)" in md and "## Failed trials" in md and "ValueError: 2-bit weights" in md
    for p in ("accuracy_vs_lut.png", "accuracy_vs_dsp.png", "accuracy_vs_latency_ii.png", "study.json"):
        assert (project / "reports/tiny/explore" / p).stat().st_size > 0, p
    assert s["front"] and s["ok"] + s["failed"] == 6
    for f in s["front"]:
        card = load_card(f["card"])  # a front card validates as is and names the trial's own outputs
        assert card.name == f["name"] and is_trial_name(card.name)
        assert (project / "reports" / card.name / "trial.json").is_file()
    # `hwflow report` shows the front, not every trial as a model of its own
    from hwflow.report.collect import collect, to_markdown

    (project / "reports" / "tiny" / "csim.json").write_text("{}")
    summary = collect(project)
    assert [r["model"] for r in summary["models"]] == ["tiny"]
    assert [p["card"] for p in summary["explore"][0]["points"]] == [f["card"] for f in s["front"]]
    assert "## Design-space exploration fronts" in to_markdown(summary)
    # rerun: the same seed asks the same trials; finished ones come from their cache, failed ones run again
    calls = (project / "calls").read_text().splitlines()
    s2 = explore("tiny", scheduler=addr, trial_fn=fake_trial, progress=False)
    recs2 = [json.loads(line) for line in (project / "reports/tiny/explore/trials.jsonl").read_text().splitlines()]
    assert [r["params"] for r in recs2] == [r["params"] for r in recs]
    again = (project / "calls").read_text().splitlines()[len(calls) :]
    assert set(again) == {r["name"] for r in failed}
    assert s2["cached"] == sum(r["status"] == "ok" for r in recs)
    assert [f["name"] for f in s2["front"]] == [f["name"] for f in s["front"]]


def test_nsga2_and_grid_are_seeded(project, cluster):
    addr = cluster.scheduler.address
    runs = []
    for _ in range(2):
        shutil.rmtree(project / "reports", ignore_errors=True)
        explore("tiny", sampler="nsga2", seed=7, trials=6, scheduler=addr, trial_fn=fake_trial, progress=False)
        runs.append((project / "reports/tiny/explore/trials.jsonl").read_text())
    params = [[json.loads(line)["params"] for line in r.splitlines()] for r in runs]
    assert params[0] == params[1] and len(params[0]) == 6
    s = explore("tiny", sampler="grid", trials=100, scheduler=addr, trial_fn=fake_trial, progress=False)
    recs = [json.loads(line) for line in (project / "reports/tiny/explore/trials.jsonl").read_text().splitlines()]
    # the grid is visited whole, once per point
    assert s["trials"] == 18 and len({json.dumps(r["params"], sort_keys=True) for r in recs}) == 18


def test_null_choice_is_the_default_of_an_unset_key(project):
    """A key the base card leaves unset (here the softmax table types, hwflow's 18-bit default) has a default trial
    only when the space lists null: then the default's card is the base card's, hash included."""
    from hwflow.explore import default_values

    key = "hls.softmax.exp_table_t+hls.softmax.inv_table_t"
    narrow = "ap_ufixed<10,1,AP_RND,AP_SAT>"
    base = effective_card(load_space("tiny"), default_values(load_space("tiny")))
    for choices, has_default in (([narrow], False), ([None, narrow], True)):
        (project / "t.yaml").write_text(yaml.safe_dump(dict(SPACE, params={**SPACE["params"], key: choices})))
        s = load_space("tiny", project / "t.yaml")
        d = default_values(s)
        assert (d is not None) == has_default
    assert effective_card(s, d).name == base.name  # null = the unset key: the same design, the same trial
    card = effective_card(s, {**d, key: narrow})
    assert card.name != base.name and card["hls"]["softmax"]["inv_table_t"] == narrow


def test_a_fixed_key_that_is_also_searched_defaults_to_its_fixed_value(project):
    """fixed train.epochs = 1 and a dimension train.epochs: [1, 3]: the default trial is the base card under the fixed
    overrides (epochs 1, the card's own 2 is outside the choices), and a point may move it."""
    from hwflow.explore import default_values

    (project / "t.yaml").write_text(yaml.safe_dump(dict(SPACE, params={**SPACE["params"], "train.epochs": [1, 3]})))
    s = load_space("tiny", project / "t.yaml")
    d = default_values(s)
    assert d is not None and d["train.epochs"] == 1
    assert effective_card(s, d).name == effective_card(load_space("tiny"), default_values(load_space("tiny"))).name
    assert effective_card(s, {**d, "train.epochs": 3})["train"]["epochs"] == 3


def test_start_points_run_first_and_are_validated(project, cluster):
    (project / "died").touch()  # fake_trial's worker kill is tested above
    start = [
        {"quant.default.bits": 2, "quant.qkv.bits+quant.score.bits": 8, "rtl.tokens_per_cycle": 2},
        {"quant.default.bits": 4, "quant.qkv.bits+quant.score.bits": 16, "rtl.tokens_per_cycle": 0},
    ]
    # a second space file of the model is its own study: outputs in explore-<study>/ and pareto-<study>/
    space = project / "models" / "tiny.starts.explore.yaml"
    space.write_text(yaml.safe_dump(dict(SPACE, start=start, trials=4)))
    explore("tiny", space, scheduler=cluster.scheduler.address, trial_fn=fake_trial, progress=False)
    out = project / "reports/tiny/explore-starts"
    recs = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert not (project / "reports/tiny/explore").exists() and list((project / "models/tiny/pareto-starts").iterdir())
    from hwflow.explore import front_summaries

    assert [f["study"] for f in front_summaries(project, "tiny")] == ["starts"]
    default = {"quant.default.bits": 8, "quant.qkv.bits+quant.score.bits": 16, "rtl.tokens_per_cycle": 0}
    assert [r["params"] for r in recs[:3]] == [default, *start] and len(recs) == 4  # the default, then the starts
    for bad, match in (
        ([{"quant.default.bits": 4}], r"start point 0 must give exactly the params' names"),
        ([dict(start[0], **{"rtl.tokens_per_cycle": 3})], r"rtl.tokens_per_cycle = 3 is outside"),
    ):
        (project / "bad.yaml").write_text(yaml.safe_dump(dict(SPACE, start=bad)))
        with pytest.raises(HwflowError, match=match):
            load_space("tiny", project / "bad.yaml")
    (project / "bad.yaml").write_text(yaml.safe_dump(dict(SPACE, start=start, sampler="grid")))
    with pytest.raises(HwflowError, match=r"need sampler nsga2 or random"):
        load_space("tiny", project / "bad.yaml")


@pytest.mark.slow
def test_one_real_trial_end_to_end(project, cluster):
    """Real stages on a tiny Pythia card: train, firmware, C simulation, da4ml estimate, on a Dask worker."""
    pytest.importorskip("hls4ml")
    from hwflow.rtl import rtl_python

    repo_rtl = Path(__file__).resolve().parents[1] / ".venv-rtl"
    if repo_rtl.exists():  # the workers find the RTL environment under the (temporary) project root
        (project / ".venv-rtl").symlink_to(repo_rtl.resolve())
    try:
        rtl_python()
    except HwflowError as e:
        pytest.skip(str(e))
    space = dict(SPACE, trials=1, sampler="grid", params={"quant.default.bits": [4]})
    space["fixed"] = {"train.epochs": 2}
    (project / "models" / "tiny.explore.yaml").write_text(yaml.safe_dump(space))
    s = explore("tiny", scheduler=cluster.scheduler.address, progress=False)
    rec = json.loads((project / "reports/tiny/explore/trials.jsonl").read_text().splitlines()[0])
    assert rec["status"] == "ok", rec.get("error")
    assert 0 <= rec["accuracy"] <= 1 and rec["n_csim"] == 18 and rec["accuracy_stat_error"] > 0
    assert rec["lut_da4ml"] > 0 and rec["interval"] == 1 and rec["tools"]["lut"].startswith("da4ml estimate")
    assert rec["bit_exact_samples"] == rec["n_csim"]  # the space's 200 capped by the test rows
    assert set(rec["auc"]) == {"g", "W", "t"} and rec["argmax_agreement"] > 0.8
    name = rec["name"]
    for sub in (
        f"models/{name}/qkeras.h5",
        f"firmware/{name}",
        f"reports/{name}/csim.json",
        f"reports/{name}/rtl.json",
    ):
        assert (project / sub).exists(), sub
    assert s["front"][0]["name"] == name


def test_warm_start_copies_layers_of_equal_name_and_shape(project):
    pytest.importorskip("tensorflow")
    from test_train import tiny_card, tiny_dataset

    from hwflow.nn import build
    from hwflow.train import load_trained, train, warm_start

    ds = tiny_dataset()
    base = tiny_card(name="base", epochs=1)
    train(base, ds, verbose=0)
    saved = load_trained(base)
    kw = {"input_shape": ds.x_train.shape[1:], "n_classes": ds.n_classes}
    same = build(tiny_card(name="same"), quantized=True, **kw)
    n_same = warm_start(same, "base")
    copied = [l.name for l in same.layers if l.trainable_weights]
    assert n_same == len(copied) > 3
    for name in copied:
        for a, b in zip(same.get_layer(name).get_weights(), saved.get_layer(name).get_weights()):
            assert (a == b).all(), name
    # a wider feed-forward block keeps its own initialization there, the rest is copied
    wider = tiny_card(name="wider")
    wider["model"]["ffn_dim"] = 16
    assert 0 < warm_start(build(wider, quantized=True, **kw), "base") < n_same
    with pytest.raises(HwflowError, match=r"train.warm_start = 'nothing'.*make train MODEL=nothing"):
        warm_start(same, "nothing")


def test_trials_share_a_training_when_only_hardware_settings_differ(project, monkeypatch):
    """A trial reuses its own trained model on a rerun, and copies one of a trial trained from the same data, model,
    quant and train sections and softmax tables (here: only rtl.tokens_per_cycle differs); a trial with other
    quantizers or other softmax table types trains."""
    import hwflow.train as T
    from hwflow.explore import _train_step
    from hwflow.train import card_model_hash

    space = load_space("tiny")
    a, b, c = (
        effective_card(
            space, {"quant.default.bits": 4, "quant.qkv.bits+quant.score.bits": 16, "rtl.tokens_per_cycle": g}
        )
        for g in (1, 2, 2)
    )
    c["quant"]["default"]["bits"] = 2
    summary = {"card_hash": card_model_hash(a), "files": {"qkeras": "qkeras.h5"}, "parameters": 7, "n_test": 9}
    summary.update(accuracy={"qkeras": 0.6}, epochs_run={"qkeras": 1})
    a.model_dir().mkdir(parents=True)
    (a.model_dir() / "qkeras.h5").write_bytes(b"weights")
    (a.model_dir() / "summary.json").write_text(json.dumps(summary))
    trained = []
    monkeypatch.setattr(T, "train", lambda card, verbose=0: trained.append(card.name) or dict(summary, parameters=5))
    assert _train_step(a, {"seconds": {}, "tools": {}})["parameters"] == 7  # its own model
    assert _train_step(b, {"seconds": {}, "tools": {}})["parameters"] == 7  # a's model, copied
    assert (b.model_dir() / "qkeras.h5").read_bytes() == b"weights" and not trained
    assert _train_step(c, {"seconds": {}, "tools": {}})["parameters"] == 5 and trained == [c.name]
    # the softmax table types are firmware settings the exact Keras layers compute with too: their own training
    d = effective_card(
        space, {"quant.default.bits": 4, "quant.qkv.bits+quant.score.bits": 16, "rtl.tokens_per_cycle": 2}
    )
    d["hls"]["softmax"]["exp_table_t"] = "ap_ufixed<10,1,AP_RND,AP_SAT>"
    assert _train_step(d, {"seconds": {}, "tools": {}})["parameters"] == 5 and trained == [c.name, d.name]


def test_a_trial_without_a_token_serial_design_keeps_its_accuracy(project, monkeypatch):
    """The open-RTL stage saying the design does not fold at its tokens_per_cycle (cosFormer, a group that does not
    divide G) leaves the trial's accuracy in place with the reason and no hardware figures, so Optuna is told it
    failed; any other RTL error still fails the trial."""
    import hwflow.rtl as R
    from hwflow.explore import _estimate_step, _objectives

    card = effective_card(
        load_space("tiny"), {"quant.default.bits": 4, "quant.qkv.bits+quant.score.bits": 16, "rtl.tokens_per_cycle": 1}
    )
    why = "RTL: cosFormer layer mha0 re-weights by absolute token position; set rtl.tokens_per_cycle: 0"

    def not_foldable(*a, **k):
        raise R.NotFoldable(why)

    monkeypatch.setattr(R, "rtl", not_foldable)
    rec = {"name": card.name, "status": "ok", "seconds": {}, "tools": {}, "accuracy": 0.61}
    rec.update(_estimate_step(card, rec, 10))
    _objectives(rec)
    assert rec["rtl_skipped"] == why and rec["tokens_per_cycle"] == 1 and rec["accuracy"] == 0.61
    assert rec["lut"] is None and rec["latency_x_ii"] is None

    def broken(*a, **k):
        raise HwflowError("RTL worker failed (exit 1)")

    monkeypatch.setattr(R, "rtl", broken)
    with pytest.raises(HwflowError, match="worker failed"):
        _estimate_step(card, {"seconds": {}, "tools": {}}, 10)


def test_attention_table_of_a_study_has_one_row_per_training(project):
    """``python -m hwflow.attention_table --study``: the trials of one training (here G = 1 and 2) are one row with
    each trial's own RTL report under its G; a trial without a token-serial design keeps its accuracy and its
    reason; the binomial error is shown with the C-sim accuracy."""
    from hwflow.attention_table import collect_study, markdown

    space = load_space("tiny")
    study = project / "reports" / "tiny" / "explore"
    study.mkdir(parents=True)
    (study / "study.json").write_text(json.dumps({"model": "tiny", "space": str(space.path)}))
    trials = []
    for bits, g, lut in ((4, 1, 100), (4, 2, 180), (8, 1, None)):
        params = {"quant.default.bits": bits, "quant.qkv.bits+quant.score.bits": 16, "rtl.tokens_per_cycle": g}
        card = effective_card(space, params)
        rep = card.report_dir()
        rep.mkdir(parents=True)
        acc = 0.6 if bits == 4 else 0.5
        (rep / "csim.json").write_text(json.dumps({"accuracy_csim": acc, "n_samples": 10000}))
        rec = {"name": card.name, "status": "ok", "params": params}
        if lut is None:
            rec["rtl_skipped"] = "RTL: does not fold"
        else:
            rec.update(lut_da4ml=lut, interval=4 // g, pipeline_stages=7)
            if g == 2:  # the check's own sample count; older records (G = 1 here) fall back to the space's
                rec["bit_exact_samples"] = 37
            # a later `hwflow rtl <trial card> --set ...` rewrites rtl.json: the study's figures are the records'
            (rep / "rtl.json").write_text(json.dumps({"estimated_cost_luts_da4ml": 1, "interval": 1}))
        trials.append(json.dumps(rec))
    (study / "trials.jsonl").write_text("\n".join(trials) + "\n")
    rows = collect_study(study)
    assert len(rows) == 2
    assert {g: x["luts"] for g, x in rows[0]["rtl"].items()} == {1: 100, 2: 180}
    assert {g: x["n"] for g, x in rows[0]["rtl"].items()} == {1: space.rtl_samples, 2: 37}
    assert rows[1]["rtl"] == {} and rows[1]["acc_csim"] == 0.5
    text = markdown(rows)
    assert "60.00 % ± 0.49" in text and "at G = 1: no token-serial design: RTL: does not fold" in text
    assert f"(`{rows[0]['model']}`) | 2 | – | 180 | ≥ 7 (da4ml stages) / 2 |" in text


def test_seed_table_averages_models_that_differ_only_in_the_seed():
    """Seed replicas become one entry: mean, sample standard deviation, s / sqrt(n) and the difference to softmax
    attention of the same N, heads and epochs; a model trained with one seed only gets no entry."""
    from hwflow.attention_table import markdown, seed_table

    def row(kind, seed, acc, epochs=20):
        fields = {"model": f"m_{kind}_{seed}_{epochs}", "attention": kind, "seq_len": 16, "heads": "2 x 4"}
        fields.update(epochs=epochs, seed=seed, acc_float=None, acc_qkeras=acc, acc_csim=acc, agreement=1.0)
        return {**fields, "n_test": 20000, "attn_products": None, "rtl": {}}

    rows = [row("softmax", 1, 0.62), row("softmax", 2, 0.60), row("grouped (g = 2)", 1, 0.60)]
    rows += [row("grouped (g = 2)", 2, 0.59), row("softmax", 1, 0.61, epochs=10)]
    text = seed_table(rows)
    # softmax: 62 and 60 -> mean 61, s = sqrt(2), s/sqrt(2) = 1; grouped: 60, 59 -> 59.5, s = 0.71, 0.5
    assert "| softmax | 16 | 2 x 4, 20 | 1, 2 | 62.00 / 60.00 % | 61.00 ± 1.00 % | 1.41 | – |" in text
    assert (
        "| grouped (g = 2) | 16 | 2 x 4, 20 | 1, 2 | 60.00 / 59.00 % | 59.50 ± 0.50 % | 0.71 | -1.50 ± 1.12 |" in text
    )
    assert "2 x 4, 10" not in text  # one seed: no average
    assert "Seed averages" in markdown(rows) and "| 2 x 4, 20, 2 |" in markdown(rows)
    assert seed_table(rows[:1] + rows[2:3]) == ""
