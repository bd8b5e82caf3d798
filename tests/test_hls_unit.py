"""hwflow.hls without C compilation: extension registration, errors, config keys, generated code, firmware project."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_hls_convert import D, T, build_small_transformer, small_card  # noqa: E402

from hwflow.util import HwflowError  # noqa: E402


def test_register_extensions_is_idempotent():
    import hwflow.hls as H

    first = H.register_extensions()
    assert H.register_extensions() == first
    assert {"softmax", "layernorm", "mha", "swish", "glu", "depthwise_conv1d"} <= set(first)


def test_unsupported_layer_names_layer_type_and_supported():
    import tensorflow as tf

    import hwflow.hls as H

    inp = tf.keras.Input((4, 3))
    out = tf.keras.layers.MultiHeadAttention(2, 2, name="plain_mha")(inp, inp)
    model = tf.keras.Model(inp, out)
    with pytest.raises(HwflowError) as e:
        H.convert(small_card(), model, output_dir="/tmp/never_written")
    msg = str(e.value)
    assert "plain_mha" in msg and "MultiHeadAttention" in msg and "QMultiHeadAttention" in msg


def test_missing_compiler_is_a_clear_error(monkeypatch):
    import hwflow.hls as H
    from hwflow.hls import harness

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(harness.shutil, "which", lambda name: None)
    with pytest.raises(HwflowError, match="g\\+\\+ not found"):
        H.compile_model(object())


def test_cross_attention_is_rejected_with_the_layer_name():
    import tensorflow as tf

    import hwflow.hls as H
    from hwflow.nn.layers import QMultiHeadAttention

    a, b = tf.keras.Input((4, 8)), tf.keras.Input((4, 8))
    model = tf.keras.Model([a, b], QMultiHeadAttention(2, 4, name="xatt")(a, b))
    with pytest.raises(HwflowError, match="xatt"):
        H.convert(small_card(), model, output_dir="/tmp/never_written")


def test_config_keys_override_intermediate_precisions_and_resource_strategy(tmp_path):
    import hwflow.hls as H

    model = build_small_transformer()
    card = small_card(
        backend="Vivado",
        strategy="Resource",
        reuse_factor=4,
        layer_name={
            "mha": {
                "Precision": {
                    "score": "ap_fixed<18,7,AP_RND,AP_SAT>",
                    "accum": "ap_fixed<40,14>",
                    "exp_table": "ap_ufixed<16,1,AP_RND,AP_SAT>",
                },
                "ExpTableSize": 512,
            },
            "ln1": {"Precision": {"var": "ap_ufixed<30,12,AP_RND,AP_SAT>"}, "TableSize": 256},
        },
    )
    hm = H.convert(card, model, output_dir=tmp_path / "prj")
    hm.write()
    params = (tmp_path / "prj" / "firmware" / "parameters.h").read_text()
    assert "typedef ap_fixed<18,7,AP_RND,AP_SAT> score_t;" in params
    assert "typedef ap_fixed<40,14> accum_t;" in params
    assert "typedef ap_ufixed<16,1,AP_RND,AP_SAT> exp_table_t;" in params
    assert "typedef ap_ufixed<30,12,AP_RND,AP_SAT> var_t;" in params
    assert "static const unsigned table_bits = 8;" in params
    assert "nnet::DenseResource_rf_leq_nin" in params and "static const unsigned reuse_factor = 4;" in params
    # Resource: projection kernels stored transposed
    mha = [ly for ly in hm.get_layers() if ly.name == "mha"][0]
    kq = model.get_layer("mha").quantized_weights()["query_kernel"]
    assert np.array_equal(np.asarray(mha.weights["query_weight"].data).reshape(kq.T.shape), kq.T)
    assert (tmp_path / "prj" / "build_prj.tcl").exists()


def test_calibration_sets_table_ranges_and_softmax_defaults():
    import hwflow.hls as H

    model = build_small_transformer()
    x = np.random.default_rng(0).normal(size=(200, T, 4)).astype("float32")
    cfg = H.hls_config(small_card(), model, calibration_data=x)
    ln = cfg["LayerName"]
    # every quantizer of the attention is fixed point: it is exact (issue 11), its tables are the layer's and its
    # softmax is not calibrated (Keras computes with the full-range spec); the stock softmax is calibrated
    mha = model.get_layer("mha")
    assert mha.spec is not None and not ln["mha"].get("ScoreRange")
    assert (ln["mha"]["ExpTableSize"], ln["mha"]["InvTableSize"]) == (mha.exp_table_size, mha.inv_table_size)
    assert ln["softmax"]["InputRange"] > 0
    assert ln["softmax"]["Precision"]["result"].startswith("ap_ufixed<16,0")
    assert all(lc.get("Trace") for lc in ln.values())
    assert ln["ln1"]["Precision"]["result"] == "ap_fixed<16,5,AP_RND_CONV,AP_SAT>"


def test_calibration_of_an_attention_with_float_intermediates():
    """An attention that is not exact (float scores/projections) gets a measured ScoreRange and data-sized types."""
    import tensorflow as tf
    from qkeras import quantized_bits

    import hwflow.hls as H
    from hwflow.nn.layers import QMultiHeadAttention

    inp = tf.keras.Input((T, 4), name="x")
    w = quantized_bits(8, 0, alpha=1)
    y = QMultiHeadAttention(2, 4, kernel_quantizer=w, bias_quantizer=w, softmax_quantizer=None, name="mha")(inp, inp)
    model = tf.keras.Model(inp, y)
    x = np.random.default_rng(0).normal(size=(200, T, 4)).astype("float32")
    ln = H.hls_config(small_card(), model, calibration_data=x)["LayerName"]
    assert model.get_layer("mha").spec is None
    assert ln["mha"]["ScoreRange"] > 0
    assert all(ln["mha"]["Precision"][k].startswith("ap_fixed<16,") for k in ("q", "score", "context"))


def test_stock_layernormalization_is_replaced_by_the_any_variance_version(tmp_path):
    import tensorflow as tf

    import hwflow.hls as H

    inp = tf.keras.Input((T, D))
    model = tf.keras.Model(inp, tf.keras.layers.LayerNormalization(name="kln")(inp))
    hm = H.convert(small_card(), model, output_dir=tmp_path / "p")
    node = list(hm.get_layers())[-1]
    assert node.class_name == "HwflowNorm"
    spec = node.hwflow_spec()  # stock table/accum defaults (ap_ufixed<8,5>, 4096 entries) are not taken over
    assert str(spec.table_t) == "ap_ufixed<18,1,AP_RND,AP_SAT>" and spec.table_bits == 10
    # wide variance: the reference (bit-exact with the C++) stays within 0.01 of float where stock hls4ml errs by > 1
    from hwflow.reference.layernorm import norm

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (200, T, D)) * np.sqrt(rng.uniform(2, 8, (200, T, 1)))
    ref = norm(x, spec, node.weights["scale"].data, node.weights["bias"].data)
    xq = norm.__globals__["quantize"](x, spec.input_t)
    f = (xq - xq.mean(-1, keepdims=True)) / np.sqrt(xq.var(-1, keepdims=True) + 1e-3)
    assert np.abs(ref - f).max() < 0.01


def test_firmware_writes_a_complete_project(tmp_path, monkeypatch):
    import hwflow.hls as H

    monkeypatch.setenv("HWFLOW_ROOT", str(tmp_path))
    model = build_small_transformer()
    x = np.random.default_rng(0).normal(size=(20, T, 4)).astype("float32")
    card = small_card()
    path = H.firmware(card, model=model, calibration_data=x, test_inputs=x)
    assert path == card.firmware_dir() and path.is_dir()
    for rel in (
        "build_prj.tcl",
        "firmware/myproject.cpp",
        "firmware/parameters.h",
        "firmware/defines.h",
        "firmware/nnet_utils/hwflow_mha.h",
        "firmware/nnet_utils/hwflow_softmax.h",
        "firmware/nnet_utils/hwflow_layernorm.h",
        "myproject_test.cpp",
        "tb_data/tb_input_features.dat",
        "tb_data/tb_output_predictions.dat",
        "hwflow_firmware.json",
    ):
        assert (path / rel).exists(), rel
    assert list((path / "firmware" / "weights").glob("wq*")), "attention weights written"
    assert np.loadtxt(path / "tb_data" / "tb_input_features.dat").shape == (20, T * 4)
    assert not list(path.parent.glob(".unit_hls.*")), "no temporary folders left behind"


def test_plain_hls4ml_flow_uses_hwflow_layers_after_registration(tmp_path):
    """A user calling hls4ml directly (after register_extensions) gets the hwflow layers with sane defaults."""
    import hls4ml

    import hwflow.hls as H

    H.register_extensions()
    model = build_small_transformer()
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    hm = hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, backend="Vitis", output_dir=str(tmp_path / "p"), io_type="io_parallel"
    )
    by = {ly.name: ly for ly in hm.get_layers()}
    assert by["mha"].class_name == "HwflowMultiHeadAttention" and by["softmax"].class_name == "HwflowSoftmax"
    assert str(by["softmax"].hwflow_spec().exp_table_t) == "ap_ufixed<18,1,AP_RND,AP_SAT>"
    # the attention output type comes from its output_quantizer, the norms' from theirs
    assert str(by["mha"].get_output_variable().type.precision).startswith("fixed<16,6,RND_CONV,SAT")
    assert str(by["ln1"].get_output_variable().type.precision).startswith("fixed<16,5,RND_CONV,SAT")


def test_cli_firmware_uses_the_trained_model(tmp_path, monkeypatch, capsys):
    import hwflow.data
    import hwflow.train
    from hwflow.cli import main

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "unit_cli.yaml").write_text(
        "name: unit_cli\ndata: {kind: jets}\nmodel: {kind: transformer}\nhls: {backend: Vivado}\n"
    )
    monkeypatch.setenv("HWFLOW_ROOT", str(tmp_path))
    model = build_small_transformer()
    monkeypatch.setattr(hwflow.train, "load_trained", lambda card, which="qkeras": model)

    def no_data(card, **kw):
        raise FileNotFoundError("no dataset in this test")

    monkeypatch.setattr(hwflow.data, "get_dataset", no_data)
    # no silent uncalibrated fallback: a one-line error naming the fix, and nothing written
    assert main(["firmware", "unit_cli"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no dataset to calibrate firmware/unit_cli/" in err and "--no-calibration" in err and "\n" not in err
    assert not (tmp_path / "firmware" / "unit_cli").exists()
    assert main(["firmware", "unit_cli", "--no-calibration"]) == 0
    assert (tmp_path / "firmware" / "unit_cli" / "build_prj.tcl").exists()
    assert "Vivado" in (tmp_path / "firmware" / "unit_cli" / "hwflow_firmware.json").read_text()


def test_input_type_follows_the_input_quantizer_or_the_data():
    """The firmware input rounds raw inputs like the QKeras input quantizer; without one it rounds, sized from data."""
    import numpy as np
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    from hwflow.config import validate
    from hwflow.hls.convert import hls_config

    card = validate({"name": "t", "data": {"kind": "jets"}, "model": {"kind": "transformer"}})
    inp = tf.keras.Input((8,), name="x_in")
    h = QActivation(quantized_bits(12, 3, alpha=1), name="in_q")(inp)
    out = QDense(
        4, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 0, alpha=1), name="d"
    )(h)
    cfg = hls_config(card, tf.keras.Model(inp, out))
    assert cfg["LayerName"]["x_in"]["Precision"]["result"] == "ap_fixed<12,4,AP_RND_CONV,AP_SAT>"

    inp2 = tf.keras.Input((8,), name="raw_in")
    out2 = QDense(
        4, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 0, alpha=1), name="d2"
    )(inp2)
    x = np.full((4, 8), 5.0, np.float32)
    cfg2 = hls_config(card, tf.keras.Model(inp2, out2), calibration_data=x)
    assert cfg2["LayerName"]["raw_in"]["Precision"]["result"] == "ap_fixed<18,4,AP_RND_CONV,AP_SAT>"
