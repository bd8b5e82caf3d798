"""Conformer extension layers (swish, GLU, depthwise conv1d) through hls4ml: compiled C++ == numpy reference, bit for
bit.

One hls4ml project per (backend, strategy) holds all three layers as separate outputs of one
model, so each combination costs a single compile (module-scoped fixtures).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("hls4ml")
if shutil.which("g++") is None:
    pytest.skip("g++ not found: install build-essential to compile hls4ml C simulations", allow_module_level=True)

from hwflow.reference import conformer as ref  # noqa: E402
from hwflow.reference.fixed import parse_type, quantize  # noqa: E402

T, C, K = 12, 6, 5
IN_T = "ap_fixed<14,6,AP_RND_CONV,AP_SAT>"  # [-32, 32): covers inputs far outside the table's [-8, 8)
SW_OUT = (16, 5)  # quantized_bits(16, 5): ap_fixed<16,6,AP_RND_CONV,AP_SAT>
GLU_OUT = (12, 3)
DW_OUT = (16, 5)
TABLE = {"table_size": 256, "table_range": 8.0, "table_t": "ap_ufixed<10,1,AP_RND,AP_SAT>"}


def _out_t(bits_int):
    b, i = bits_int
    return f"ap_fixed<{b},{i + 1},AP_RND_CONV,AP_SAT>"


def _inputs(n_random=60, seed=0):
    """Return inputs in IN_T: random values plus extremes (zeros, min, max, every table edge region)."""
    t = parse_type(IN_T)
    rng = np.random.default_rng(seed)
    x = quantize(rng.uniform(-12, 12, (n_random, T, 2 * C)), t)
    n = T * 2 * C * 4
    codes = np.unique(np.linspace(0, 2**t.width - 1, n).round())  # evenly spaced codes, both ends included
    grid = (t.min + codes * t.lsb).reshape(4, T, 2 * C)
    ext = np.stack(
        [
            np.zeros((T, 2 * C)),
            np.full((T, 2 * C), t.max),
            np.full((T, 2 * C), t.min),
            np.full((T, 2 * C), 8.0),
            np.full((T, 2 * C), -8.0),
            np.full((T, 2 * C), 8.0 - t.lsb),
        ]
    )
    return np.concatenate([x, grid, ext]).astype(np.float32)


def _model(seed=1):
    import tensorflow as tf
    from qkeras import QActivation, quantized_bits

    from hwflow.nn.conformer import get_custom_objects

    L = get_custom_objects()
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((T, 2 * C), name="x")
    x = QActivation(quantized_bits(14, 5, alpha=1), name="x_q")(inp)
    sw = L["QSwish"](output_quantizer=quantized_bits(*SW_OUT, alpha=1), name="sw", **TABLE)(x)
    gl = L["QGLU"](output_quantizer=quantized_bits(*GLU_OUT, alpha=1), name="glu", **TABLE)(x)
    dw = L["QDepthwiseConv1D"](
        K,
        padding="same",
        depthwise_quantizer=quantized_bits(8, 2, alpha=1),
        bias_quantizer=quantized_bits(12, 4, alpha=1),
        output_quantizer=quantized_bits(*DW_OUT, alpha=1),
        fold_batchnorm=True,
        name="dw",
    )(gl)
    model = tf.keras.Model(inp, [sw, gl, dw])
    # non-trivial batch-norm statistics so the fold matters (gamma/sqrt(var) != 1, mean != 0)
    layer = model.get_layer("dw")
    rng = np.random.default_rng(seed)
    layer.gamma.assign(rng.uniform(0.5, 2.0, C))
    layer.beta.assign(rng.uniform(-1, 1, C))
    layer.moving_mean.assign(rng.uniform(-0.5, 0.5, C))
    layer.moving_variance.assign(rng.uniform(0.3, 3.0, C))
    layer.depthwise_kernel.assign(rng.uniform(-1, 1, (K, C)))
    layer.bias.assign(rng.uniform(-0.5, 0.5, C))
    return model


def _convert(model, tmp_path_factory, backend, strategy, reuse):
    import hls4ml

    from hwflow.hls import register_extensions

    register_extensions()
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend)
    cfg["Model"]["Strategy"] = strategy
    cfg["Model"]["ReuseFactor"] = reuse
    for name in cfg["LayerName"]:
        cfg["LayerName"][name]["ReuseFactor"] = reuse
        cfg["LayerName"][name]["Strategy"] = strategy
    cfg["LayerName"]["x"]["Precision"]["result"] = IN_T
    out = tmp_path_factory.mktemp(f"conformer_ext_{backend}_{strategy}")
    hmodel = hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=str(out), backend=backend, io_type="io_parallel", part="xcvu13p-flga2577-2-e"
    )
    hmodel.compile()
    return hmodel


@pytest.fixture(scope="module")
def keras_model():
    return _model()


@pytest.fixture(
    scope="module",
    params=[("Vitis", "Latency", 1), ("Vivado", "Resource", 4)],
    ids=["vitis-latency", "vivado-resource-rf4"],
)
def compiled(request, keras_model, tmp_path_factory):
    backend, strategy, reuse = request.param
    hmodel = _convert(keras_model, tmp_path_factory, backend, strategy, reuse)
    x = _inputs()
    outs = hmodel.predict(x)
    n = len(x)
    return {
        "hmodel": hmodel,
        "x": x,
        "sw": np.asarray(outs[0]).reshape(n, T, 2 * C),
        "glu": np.asarray(outs[1]).reshape(n, T, C),
        "dw": np.asarray(outs[2]).reshape(n, T, C),
        "strategy": strategy,
        "reuse": reuse,
    }


def _table():
    return ref.SigmoidTable(TABLE["table_size"], TABLE["table_range"], TABLE["table_t"])


def test_swish_bit_exact(compiled):
    expect = ref.swish(compiled["x"], _table(), _out_t(SW_OUT))
    np.testing.assert_array_equal(compiled["sw"], expect)


def test_glu_bit_exact(compiled):
    expect = ref.glu(compiled["x"], _table(), _out_t(GLU_OUT))
    np.testing.assert_array_equal(compiled["glu"], expect)


def test_depthwise_bit_exact_with_folded_batchnorm(compiled, keras_model):
    w = keras_model.get_layer("dw").quantized_weights()
    node = compiled["hmodel"].graph["dw"]
    accum_t = parse_type(node.get_attr("accum_t").precision)
    glu_out = ref.glu(compiled["x"], _table(), _out_t(GLU_OUT))
    expect = ref.depthwise_conv1d(glu_out, w["kernel"], w["bias"], "same", accum_t, _out_t(DW_OUT))
    np.testing.assert_array_equal(compiled["dw"], expect)
    # the firmware stores exactly the quantized folded weights
    np.testing.assert_array_equal(node.get_weights("weight").data.reshape(K, C), w["kernel"])
    np.testing.assert_array_equal(node.get_weights("bias").data.reshape(C), w["bias"])


def test_keras_layers_match_reference(compiled, keras_model):
    # the QKeras layers compute the same numbers as the firmware (same table, same rounding)
    sw, gl, dw = keras_model.predict(compiled["x"], verbose=0)
    np.testing.assert_array_equal(sw, compiled["sw"])
    np.testing.assert_array_equal(gl, compiled["glu"])
    np.testing.assert_array_equal(dw, compiled["dw"])


def test_generated_config_carries_strategy_and_table(compiled):
    hm = compiled["hmodel"]
    params = hm.config.get_output_dir() + "/firmware/parameters.h"
    with open(params) as fh:
        text = fh.read()
    assert "nnet::hwflow_sigmoid_lut_config" in text and "nnet::hwflow_depthwise1d_config" in text
    assert f"static const unsigned reuse_factor = {compiled['reuse']};" in text
    n_mult = T * C * K
    limit = n_mult if compiled["strategy"] == "Latency" else -(-n_mult // compiled["reuse"])
    assert f"static const unsigned multiplier_limit = {limit};" in text
    assert "table[256] = {" in text


def test_activation_swish_converts(tmp_path_factory):
    """A plain Keras Activation('swish') (no C++ in stock hls4ml) converts to the hwflow kernel and compiles."""
    import tensorflow as tf

    inp = tf.keras.Input((8,), name="x")
    out = tf.keras.layers.Activation("swish", name="sw")(inp)
    model = tf.keras.Model(inp, out)
    import hls4ml

    from hwflow.hls import register_extensions

    register_extensions()
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    cfg["LayerName"]["x"]["Precision"]["result"] = "ap_fixed<12,5>"
    cfg["LayerName"]["sw"]["Precision"]["result"] = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
    hm = hls4ml.converters.convert_from_keras_model(
        model,
        hls_config=cfg,
        backend="Vitis",
        io_type="io_parallel",
        output_dir=str(tmp_path_factory.mktemp("act_swish")),
    )
    assert hm.graph["sw"].class_name == "HwflowSwish"
    hm.compile()
    x = quantize(np.linspace(-16, 16, 64).reshape(8, 8), "ap_fixed<12,5>").astype(np.float32)
    got = np.asarray(hm.predict(x)).reshape(8, 8)
    np.testing.assert_array_equal(got, ref.swish(x, ref.SigmoidTable(), "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"))
    assert np.abs(got - x / (1 + np.exp(-x))).max() < 0.02


def test_full_conformer_converts_with_quantizer_types(tmp_path):
    """The whole (untrained) conformer converts through hwflow.hls.convert; quantizer types reach the firmware."""
    pytest.importorskip("hwflow.hls.convert")
    from hwflow.config import validate
    from hwflow.hls.convert import convert
    from hwflow.nn.conformer import build_conformer

    card = validate(
        {
            "name": "cf_conv",
            "data": {"kind": "kws"},
            "model": {
                "kind": "conformer",
                "embed_dim": 16,
                "ffn_dim": 32,
                "key_dim": 8,
                "conv_kernel": 7,
                "swish_table_size": 512,
                "swish_table_range": 4.0,
            },
            "quant": {
                "default": {"bits": 8, "integer": 0},
                "dw_kernel": {"bits": 6, "integer": 1},
                "glu": {"bits": 14, "integer": 4},
            },
        }
    )
    model = build_conformer(card, True)
    x = np.random.default_rng(0).normal(-5, 3, (16, 49, 40)).astype(np.float32)
    hm = convert(card, model, output_dir=tmp_path / "fw", calibration_data=x)
    classes = {name: layer.class_name for name, layer in hm.graph.items()}
    for name in ("b0_ffn1_swish", "b0_conv_swish", "b0_ffn2_swish"):
        assert classes[name] == "HwflowSwish"
    assert classes["b0_conv_glu"] == "HwflowGLU"
    assert classes["b0_conv_dw"] == classes["feature_norm"] == "HwflowDepthwiseConv1D"
    dw = hm.graph["b0_conv_dw"]
    assert parse_type(dw.get_attr("weight_t").precision).width == 6  # the card's dw_kernel role, not a default
    assert parse_type(dw.get_attr("weight_t").precision).integer == 2
    glu_t = parse_type(hm.graph["b0_conv_glu"].get_output_variable().type.precision)
    assert (glu_t.width, glu_t.integer, glu_t.rounding, glu_t.overflow) == (14, 5, "AP_RND_CONV", "AP_SAT")
    # the stored depthwise weights are the Keras layer's quantized folded weights
    w = model.get_layer("b0_conv_dw").quantized_weights()
    np.testing.assert_array_equal(dw.get_weights("weight").data.reshape(w["kernel"].shape), w["kernel"])
    sw = hm.graph["b0_ffn1_swish"]
    # the card's table settings reach both the Keras layer and the firmware
    assert model.get_layer("b0_ffn1_swish").table.table_size == 512
    assert sw.get_attr("table_size") == 512 and sw.get_attr("table_range") == 4.0
    assert hm.graph["b0_conv_glu"].get_attr("table_size") == 512
