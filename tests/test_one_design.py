"""One design: every stage runs firmware/<m>/ itself, calibrated and tested on one seeded class-balanced pick."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hwflow.config import validate

pytest.importorskip("tensorflow")
pytest.importorskip("hls4ml")
if shutil.which("g++") is None:
    pytest.skip("g++ not installed", allow_module_level=True)

CLASSES = ["g", "q", "t"]
N_CAL = 40


def card(name="one"):
    return validate(
        {
            "name": name,
            "data": {"kind": "jets", "jets": {"n_constituents": 4, "classes": CLASSES}},
            "model": {"kind": "transformer", "embed_dim": 4, "key_dim": 2, "ffn_dim": 4},
            "hls": {"calibration_samples": N_CAL, "csim_samples": 60},
            "rtl": {"samples": 30},
        }
    )


def dataset():
    """Splits ordered by class (a head slice sees one class) and one training row far out of range.

    The outlier is not among the calibration rows the seeded pick takes, so the old csim/rtl path (calibrate on
    all of x_train) would size the softmax input range and the input type differently from `hwflow firmware`.
    """
    from hwflow.data import Dataset, pick_rows

    rng = np.random.default_rng(0)

    def split(k):
        y = np.repeat(np.arange(3), k // 3)
        x = rng.normal(size=(len(y), 4, 4)).astype(np.float32)
        x[:, :, 0] += 1.5 * y[:, None]
        return x, y

    (xt, yt), (xv, yv), (xs, ys) = split(300), split(60), split(90)
    outlier = next(i for i in range(len(yt)) if i not in set(pick_rows(yt, N_CAL, card()["data"]["seed"])))
    xt[outlier] *= 40.0
    return Dataset(xt, yt, xv, yv, xs, ys, CLASSES, {"spec_hash": "synthetic", "content_sha256": "1" * 64})


def small_model(seed=0):
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((4, 4), name="x")
    h = tf.keras.layers.Flatten(name="flat")(inp)
    q = quantized_bits(8, 2, alpha=1)
    h = QDense(8, kernel_quantizer=q, bias_quantizer=q, name="d1")(h)
    h = QActivation("quantized_relu(10,4)", name="r1")(h)
    h = QDense(3, kernel_quantizer=q, bias_quantizer=q, name="d2")(h)
    out = tf.keras.layers.Activation("softmax", name="softmax")(h)
    return tf.keras.Model(inp, out)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    import os

    import hwflow.train

    root = tmp_path_factory.mktemp("root")
    old_root, old_load = os.environ.get("HWFLOW_ROOT"), hwflow.train.load_trained
    os.environ["HWFLOW_ROOT"] = str(root)
    models = {"current": small_model(0)}
    hwflow.train.load_trained = lambda card, which="qkeras": models["current"]
    c = card()
    c.model_dir().mkdir(parents=True)
    (c.model_dir() / "qkeras.h5").write_bytes(b"model v1")  # the file whose hash marks the trained model
    yield root, models
    hwflow.train.load_trained = old_load
    if old_root is None:
        os.environ.pop("HWFLOW_ROOT", None)
    else:
        os.environ["HWFLOW_ROOT"] = old_root


def test_csim_compiles_exactly_the_firmware_project(root, tmp_path):
    import hwflow.hls as H
    from hwflow.hls.convert import hls_config
    from hwflow.hls.project import source_files, source_sha256
    from hwflow.verify import csim

    _, models = root
    c, ds = card(), dataset()
    r = csim(c, dataset=ds, trace=True)
    fw = c.firmware_dir()
    man = json.loads((fw / "hwflow_firmware.json").read_text())
    assert r["project_dir"] == str(fw) and r["firmware_sha256"] == man["firmware_sha256"] == source_sha256(fw)
    assert r["firmware_rebuilt"] and man["n_calibration_rows"] == N_CAL
    # the graph csim reads its layer types from, written again, is byte-identical to firmware/<m>/
    sim = H.design(c, models["current"], ds)
    assert sim.rebuilt is None and sim.compile_seconds == 0.0  # fresh project, cached library
    again = H.convert(c, models["current"], output_dir=tmp_path / "again", config=man["hls_config"])
    again.write()
    H.project.write_batch_bridge(again, tmp_path / "again")
    ours = {p.relative_to(fw): p.read_bytes() for p in source_files(fw)}
    theirs = {p.relative_to(tmp_path / "again"): p.read_bytes() for p in source_files(tmp_path / "again")}
    assert ours == theirs
    # and the old csim path (calibration on all of x_train) would have made another design
    old = hls_config(c, models["current"], ds.x_train)["LayerName"]
    new = man["hls_config"]["LayerName"]
    assert old["softmax"]["InputRange"] != new["softmax"]["InputRange"]
    assert old["x"]["Precision"]["result"] != new["x"]["Precision"]["result"]
    # every class is in the C-simulation sample although the test split is ordered by class
    assert all(sum(row) > 0 for row in r["confusion_matrix_csim"])  # rows: true classes
    assert r["argmax_agreement_vs_qkeras"] >= 0.9


def test_batch_and_trace_calls_match_per_sample_calls(root):
    import hwflow.hls as H
    from hwflow.bench import _per_sample

    _, models = root
    c, ds = card(), dataset()
    sim = H.design(c, models["current"], ds)
    x = np.ascontiguousarray(ds.x_test[:25], np.float64)
    y = sim.predict(x)
    assert np.array_equal(y, _per_sample(sim, x))
    big = np.ascontiguousarray(np.resize(ds.x_test, (300, 4, 4)), np.float64)  # split over two threads
    assert np.array_equal(sim.predict(big, workers=2), sim.predict(big, workers=1))
    y2, tr = sim.trace(x)
    assert np.array_equal(y, y2) and {"d1", "softmax"} <= set(tr)
    assert tr["d1"].shape == (25, 8)


def test_stale_firmware_is_rebuilt(root, capsys):
    import hwflow.hls as H

    _, models = root
    c, ds = card(), dataset()
    H.design(c, models["current"], ds)  # fresh (built by the test above or here)
    assert H.stale_reason(c, ds) is None
    before = json.loads((c.firmware_dir() / "hwflow_firmware.json").read_text())
    models["current"] = small_model(1)
    (c.model_dir() / "qkeras.h5").write_bytes(b"model v2")  # retrained
    assert "trained model changed" in H.stale_reason(c, ds)
    sim = H.design(c, models["current"], ds)
    assert "trained model changed" in sim.rebuilt and "writing firmware/one/" in capsys.readouterr().out
    after = json.loads((c.firmware_dir() / "hwflow_firmware.json").read_text())
    assert after["inputs"]["model_sha256"] != before["inputs"]["model_sha256"]
    assert after["firmware_sha256"] != before["firmware_sha256"]  # new weights, new sources
    assert H.stale_reason(c, ds) is None
    # a changed card setting makes it stale too
    c2 = validate({**card(), "hls": {**card()["hls"], "reuse_factor": 2}})
    assert "card's hls/model settings changed" in H.stale_reason(c2, ds)


def test_bench_and_rtl_samples_cover_every_class(root, monkeypatch):
    import hwflow.data
    import hwflow.rtl as R
    from hwflow.bench import bench

    _, models = root
    c, ds = card(), dataset()
    monkeypatch.setattr(hwflow.data, "get_dataset", lambda card, **kw: ds)
    e = bench(c, n_samples=30, repeats=1, flag_split=False)
    assert e["classes_in_sample"] == 3 and e["batch_equals_per_sample"]
    assert e["firmware_sha256"] and e["csim_samples_per_second"] > 0 and "time_split" in e
    seen = {}

    def fake_rtl_from_hls(sim, x, *a, extra=None, **kw):
        seen.update(x=x, extra=extra)
        return {}

    monkeypatch.setattr(R, "rtl_python", lambda: "python")
    monkeypatch.setattr(R, "rtl_from_hls", fake_rtl_from_hls)
    R.rtl(c)
    picked = [i for i in range(len(ds.x_test)) if any(np.array_equal(ds.x_test[i], v) for v in seen["x"])]
    assert len(picked) == 30 and sorted(set(ds.y_test[picked])) == [0, 1, 2]
    assert seen["extra"]["firmware_sha256"] == e["firmware_sha256"]


def test_missing_dataset_is_a_one_line_error(root, monkeypatch):
    import hwflow.data
    import hwflow.hls as H
    from hwflow.util import HwflowError

    _, models = root

    def no_data(card, **kw):
        raise FileNotFoundError("no shards")

    monkeypatch.setattr(hwflow.data, "get_dataset", no_data)
    with pytest.raises(HwflowError, match=r"no dataset to calibrate firmware/one/ .*--no-calibration") as e:
        H.firmware(card(), models["current"])
    assert "\n" not in str(e.value)
