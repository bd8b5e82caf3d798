"""Verification: metrics on known inputs, fixed-point ranges and overflow counting, and the csim report end to end."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from hwflow import metrics
from hwflow.verify import REQUIRED_KEYS, count_at_limit, count_overflow, type_range


# ------------------------------------------------------------------------------------------- metrics
def test_auc_perfect_reversed_random():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 4000)
    onehot = np.eye(3)[y]
    assert metrics.auc_per_class(onehot, y, "abc") == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert all(v == 0.0 for v in metrics.auc_per_class(1 - onehot, y, "abc").values())
    rand = metrics.auc_per_class(rng.random((4000, 3)), y, "abc")
    assert all(abs(v - 0.5) < 0.05 for v in rand.values())


def test_auc_undefined_for_missing_class():
    y = np.array([0, 0, 1, 1])
    auc = metrics.auc_per_class(np.eye(3)[[0, 0, 1, 1]], y, ["a", "b", "c"])
    assert auc["a"] == 1.0 and np.isnan(auc["c"])
    assert np.isfinite(metrics.summary(np.eye(3)[[0, 0, 1, 1]], y, ["a", "b", "c"])["auc_mean"])


def test_accuracy_confusion_agreement():
    s = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 1, 1])
    assert metrics.accuracy(s, y) == 0.75
    assert metrics.confusion_matrix(s, y).tolist() == [[1, 0], [1, 2]]
    assert metrics.argmax_agreement(s, s[:, ::-1]) == 0.0
    with pytest.raises(ValueError):
        metrics.accuracy(s, y[:3])


def test_roc_plot_written(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    s = np.eye(3)[y] * 0.5 + rng.random((300, 3))
    p = metrics.plot_roc(tmp_path / "roc.png", y, {"float": s, "qkeras": s * 0.9, "csim": s * 0.8}, "abc")
    assert p.read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------------------- fixed point
def prec(width, integer, signed=True, rounding=None, saturation=None):
    from hls4ml.model.types import FixedPrecisionType

    return FixedPrecisionType(width, integer, signed, rounding, saturation)


def test_type_range_signed_unsigned():
    pytest.importorskip("hls4ml")
    r = type_range(prec(16, 6))
    assert (r["lo"], r["hi"], r["lsb"]) == (-32.0, 32.0 - 2**-10, 2**-10)
    assert r["type"] == "ap_fixed<16,6>"
    u = type_range(prec(8, 0, signed=False))
    assert (u["lo"], u["hi"], u["lsb"]) == (0.0, 1 - 2**-8, 2**-8)


def test_overflow_counting_crafted():
    pytest.importorskip("hls4ml")
    r = type_range(prec(8, 3))  # [-4, 4 - 1/32], lsb 1/32, truncation
    lsb = 2**-5
    vals = np.array([0.0, 3.99, 4 - lsb / 2, 4.0, 100.0, -4.0, -4.0 - 1e-6, -1000.0])
    # truncation: anything below hi + lsb still lands on hi; below lo wraps
    assert count_overflow(vals, r) == 4  # 4.0, 100, -4-eps, -1000
    rr = type_range(prec(8, 3, rounding="AP_RND"))
    assert count_overflow(np.array([4 - lsb / 2 - 1e-9, 4 - lsb / 2, -4 - lsb / 2 - 1e-9]), rr) == 2
    assert count_overflow(vals, None) == 0
    assert count_at_limit(np.array([4 - lsb, -4.0, 0.0, 1.0]), r) == 2
    assert count_at_limit(np.array([0.0, 0.0]), type_range(prec(8, 0, signed=False))) == 0


def test_keras_reference_follows_folded_activations():
    tf = pytest.importorskip("tensorflow")
    from qkeras import QActivation, QDense, quantized_bits

    from hwflow.verify import keras_reference_layer

    inp = tf.keras.Input((4,), name="x")
    h = QDense(3, name="d")(inp)
    h = QActivation(quantized_bits(8, 2), name="q")(h)
    out = tf.keras.layers.Activation("softmax", name="sm")(h)
    m = tf.keras.Model(inp, out)
    assert keras_reference_layer(m, "d", {"x", "d", "sm"}) == "q"  # q folded into d by hls4ml
    assert keras_reference_layer(m, "d", {"x", "d", "q", "sm"}) == "d"  # q kept as its own layer
    assert keras_reference_layer(m, "nope", {"x"}) is None


# ------------------------------------------------------------------------------------------- csim report
@pytest.fixture(scope="module")
def tiny_csim(tmp_path_factory):
    """A small QKeras MLP through a plain hls4ml conversion, with one deliberately narrow layer type."""
    tf = pytest.importorskip("tensorflow")
    hls4ml = pytest.importorskip("hls4ml")
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    from hwflow.verify import run_csim

    tf.keras.utils.set_random_seed(0)
    q = {"kernel_quantizer": quantized_bits(8, 0, alpha=1), "bias_quantizer": quantized_bits(8, 2, alpha=1)}
    inp = tf.keras.Input((6,), name="x")
    h = QActivation(quantized_bits(12, 3), name="input_q")(inp)
    h = QDense(12, name="d1", **q)(h)
    h = QActivation(quantized_relu(10, 3), name="relu1")(h)
    h = QDense(3, name="d2", **q)(h)
    out = tf.keras.layers.Activation("softmax", name="softmax")(h)
    m = tf.keras.Model(inp, out)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)) * 2
    y = np.argmax(m.predict(x, verbose=0), 1)
    y[:10] = (y[:10] + 1) % 3  # not a perfect classifier
    cfg = hls4ml.utils.config_from_keras_model(m, granularity="name", backend="Vitis")
    cfg["Model"]["Precision"] = "ap_fixed<18,6>"
    cfg["LayerName"]["x"]["Precision"]["result"] = "ap_fixed<18,6>"
    cfg["LayerName"]["d2"]["Precision"]["result"] = "ap_fixed<8,1>"  # |logits| > 1 overflow on purpose
    cfg["LayerName"]["d2"]["Precision"]["accum"] = "ap_fixed<12,2>"  # and its accumulator too
    out_dir = tmp_path_factory.mktemp("csim")
    hm = hls4ml.converters.convert_from_keras_model(
        m, hls_config=cfg, output_dir=str(out_dir / "prj"), backend="Vitis", io_type="io_parallel"
    )
    with pytest.warns(UserWarning, match="layer d2.*outside"):
        r = run_csim(m, m, hm, x, y, ["a", "b", "c"], out_dir / "report", title="tiny")
    return SimpleNamespace(report=r, dir=out_dir / "report", model=m, x=x, y=y)


def test_csim_report_keys_and_files(tiny_csim):
    d = tiny_csim.dir
    on_disk = json.loads((d / "csim.json").read_text())
    for k in REQUIRED_KEYS:
        assert k in on_disk, k
    assert on_disk["n_samples"] == 120
    assert set(on_disk["auc_csim"]) == {"a", "b", "c"}
    for f in ("csim.md", "roc.png", "layer_errors.png", "ranges.png", "scatter.png"):
        assert (d / f).stat().st_size > 0, f
    md = (d / "csim.md").read_text()
    assert "argmax agreement C sim vs QKeras" in md and "Per-layer trace" in md and "d2" in md


def test_csim_numbers_consistent(tiny_csim):
    r, m, x, y = tiny_csim.report, tiny_csim.model, tiny_csim.x, tiny_csim.y
    assert 0 <= r["argmax_agreement_vs_qkeras"] <= 1
    assert r["accuracy_qkeras"] == pytest.approx(metrics.accuracy(m.predict(x, verbose=0), y))
    assert r["accuracy_float"] == r["accuracy_qkeras"]  # float model passed = the QKeras one here
    assert r["max_abs_error_vs_qkeras"] >= r["mean_abs_error_vs_qkeras"] >= 0
    assert r["auc_drop_max_vs_float"] == pytest.approx(max(r["auc_float"][c] - r["auc_csim"][c] for c in "abc"))
    assert set(r["per_output"]) == {"a", "b", "c"}


def test_csim_overflow_detected_where_it_is(tiny_csim):
    r = tiny_csim.report
    assert r["overflow_counts"]["d2"] > 0  # the narrow ap_fixed<8,1> logits
    assert r["overflow_counts"]["d1"] == 0 and r["overflow_counts"]["relu1"] == 0
    layers = {l["layer"]: l for l in r["layers"]}
    assert layers["d2"]["hls_type"].startswith("ap_fixed<8,1")
    assert layers["d2"]["accum_type"].startswith("ap_fixed<12,2") and layers["d2"]["accum_overflow"] > 0
    assert layers["d1"]["accum_overflow"] == 0 and layers["d1"]["accum_range"][1] > 0
    # a wide accumulator matches QKeras to well under one input LSB; the wrapped layer does not
    assert layers["d1"]["max_abs_error"] < 2**-6
    assert layers["d2"]["max_abs_error"] > 0.5
    assert layers["relu1"]["local_max_abs_error"] == 0  # fed the C++ d1 values, the quantized relu is bit exact
    assert layers["d1"]["local_max_abs_error"] < layers["d1"]["max_abs_error"] or layers["d1"]["max_abs_error"] == 0
    # the quantized relu is the same ap_ufixed<10,3> in both: exact except where d1's own rounding moved it
    assert layers["relu1"]["exact_fraction"] > 0.5
    assert r["softmax_flips_detail"]["input_layer"] in ("d2", "d2_linear")
    assert all("max_abs_error" in l for l in r["layers"] if l["class"] != "Input")  # every layer compared
    assert isinstance(r["softmax_argmax_flips"], int)


def test_auc_standard_error_shrinks_with_samples():
    se_small = metrics.auc_standard_error(0.85, 200, 800)
    se_big = metrics.auc_standard_error(0.85, 2000, 8000)
    assert 0.01 < se_small < 0.03 and se_big == pytest.approx(se_small / np.sqrt(10), rel=0.05)
    assert metrics.auc_standard_error(1.0, 10, 10) == 0.0 and np.isnan(metrics.auc_standard_error(0.8, 0, 5))


def test_markdown_without_float_twin(tiny_csim):
    from hwflow.verify import markdown

    r = dict(tiny_csim.report)
    for k in (
        "auc_float",
        "accuracy_float",
        "argmax_agreement_vs_float",
        "max_abs_error_vs_float",
        "mean_abs_error_vs_float",
        "auc_drop_max_vs_float",
    ):
        r[k] = None
    r["per_output"] = {
        c: {**e, "max_abs_error_vs_float": None, "mean_abs_error_vs_float": None} for c, e in r["per_output"].items()
    }
    md = markdown(r, "nofloat")
    assert "| AUC a | – |" in md and "max AUC drop C sim vs float | – |" in md
