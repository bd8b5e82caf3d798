"""The whole conformer through hwflow: espeak-ng data -> QKeras training -> hwflow.hls.convert -> C simulation.

Slow (data generation, training, a ~2-3 minute g++ compile of the full model): run with ``make test-slow``.
Checks C-simulation argmax agreement with the QKeras model, and that every conformer extension layer
(swish, GLU, depthwise conv with folded batch norm) computes bit for bit what its QKeras layer
computes when fed the C simulation's own input to that layer (hls4ml trace).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pytest.importorskip("hls4ml")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    import os

    import tensorflow as tf

    from hwflow.config import load_card
    from hwflow.data import get_dataset
    from hwflow.hls.convert import compile_model, convert
    from hwflow.nn import build

    root = tmp_path_factory.mktemp("cf_e2e")
    old = os.environ.get("HWFLOW_ROOT")
    os.environ["HWFLOW_ROOT"] = str(root)
    try:
        (root / "models").mkdir()
        src = Path(__file__).resolve().parents[1] / "models" / "kws_conformer.yaml"
        (root / "models" / "kws_conformer.yaml").write_text(src.read_text())
        card = load_card("kws_conformer", {"data": {"kws": {"clips_per_class": 40}}})
        ds = get_dataset(card)
    finally:
        if old is None:
            os.environ.pop("HWFLOW_ROOT", None)
        else:
            os.environ["HWFLOW_ROOT"] = old
    tf.keras.utils.set_random_seed(1)
    model = build(card, quantized=True)
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(ds.x_train, ds.y_train, epochs=6, batch_size=32, verbose=0)
    hm = convert(card, model, output_dir=root / "fw", calibration_data=ds.x_train[:300])
    hm = compile_model(hm)
    x = np.concatenate([ds.x_test, ds.x_val]).astype(np.float32)
    y_hls, trace = hm.trace(x)
    return {"model": model, "hm": hm, "x": x, "y_hls": np.asarray(y_hls).reshape(len(x), -1), "trace": trace}


def test_csim_argmax_agrees_with_qkeras(run):
    y_k = run["model"].predict(run["x"], verbose=0)
    agree = float(np.mean(y_k.argmax(1) == run["y_hls"].argmax(1)))
    assert agree >= 0.99, f"C-sim vs QKeras argmax agreement {agree:.4f} < 0.99"


@pytest.mark.parametrize(
    "layer", ["b0_ffn1_swish", "b0_conv_glu", "b0_conv_dw", "b0_conv_swish", "b0_ffn2_swish", "feature_norm"]
)
def test_extension_layer_bit_exact_in_the_full_model(run, layer):
    model, hm, trace = run["model"], run["hm"], run["trace"]
    klayer = model.get_layer(layer)
    parent = hm.graph[layer].get_input_node().name
    n = len(run["x"])
    if parent in trace:
        inp = np.asarray(trace[parent]).reshape((n,) + tuple(klayer.input_shape[1:]))
    else:  # the input layer itself: the C simulation's input type applied to x
        pytest.skip(f"no trace of {parent}")
    expect = klayer(inp.astype(np.float32)).numpy()
    got = np.asarray(trace[layer]).reshape(expect.shape)
    np.testing.assert_array_equal(got, expect)
