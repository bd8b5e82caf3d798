"""Conformer builder (shapes, quantizers, float twin, save/load, folded batch norm) and the numpy references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwflow.config import load_card, validate
from hwflow.reference import conformer as ref
from hwflow.reference.fixed import parse_type, quantize
from hwflow.util import HwflowError


def _card(**model):
    raw = {
        "name": "cf_test",
        "data": {"kind": "kws"},
        "model": {"kind": "conformer", "embed_dim": 16, "ffn_dim": 32, "key_dim": 8, "conv_kernel": 7, **model},
    }
    return validate(raw)


# ------------------------------------------------------------------------------------------ references


def test_sigmoid_table_index_floor_and_clamp():
    t = ref.SigmoidTable(256, 8.0, "ap_ufixed<10,1,AP_RND,AP_SAT>")
    assert t.log2_scale == 8 - 1 - 3  # 256 entries over 16 units: 16 per unit
    x = np.array([-100.0, -8.0, -8.0 + 1 / 16, -1 / 64, 0.0, 1 / 64, 7.99, 8.0, 100.0])
    np.testing.assert_array_equal(t.index(x), [0, 0, 1, 127, 128, 128, 255, 255, 255])
    v = t.values()
    assert v.shape == (256,) and np.all(np.diff(v) >= 0) and v[0] < 0.001 and v[-1] > 0.999
    # each entry is sigmoid at its bin centre, rounded to the 9 fractional bits of the table type
    centre = -8 + (np.arange(256) + 0.5) / 16
    assert np.abs(v - 1 / (1 + np.exp(-centre))).max() <= 2.0**-10 + 1e-12


def test_sigmoid_table_rejects_non_power_of_two():
    with pytest.raises(HwflowError, match="power of two"):
        ref.SigmoidTable(1000, 8.0)
    with pytest.raises(HwflowError, match="power of two"):
        ref.SigmoidTable(1024, 6.0)


def test_swish_and_glu_reference_close_to_float():
    t = ref.SigmoidTable()
    x = quantize(np.linspace(-20, 20, 4001), "ap_fixed<16,6>")
    y = ref.swish(x, t, "ap_fixed<20,6,AP_RND_CONV,AP_SAT>")
    assert np.abs(y - x / (1 + np.exp(-x))).max() < 0.02
    xy = np.stack([x, x[::-1]], axis=-1)
    g = ref.glu(xy, t, "ap_fixed<20,6,AP_RND_CONV,AP_SAT>")
    assert g.shape == (4001, 1)
    assert np.abs(g[:, 0] - x / (1 + np.exp(-x[::-1]))).max() < 0.05
    with pytest.raises(HwflowError, match="even"):
        ref.glu(np.zeros((2, 3)), t, "ap_fixed<16,6>")


@pytest.mark.parametrize("padding", ["same", "causal", "valid"])
def test_depthwise_reference_matches_float_conv_with_exact_accumulator(padding):
    rng = np.random.default_rng(0)
    T, C, K = 11, 4, 5
    x = quantize(rng.uniform(-4, 4, (3, T, C)), "ap_fixed<12,4>")
    w = quantize(rng.uniform(-2, 2, (K, C)), "ap_fixed<8,3>")
    b = quantize(rng.uniform(-1, 1, C), "ap_fixed<10,3>")
    acc = ref.exact_accum_type("ap_fixed<12,4>", "ap_fixed<8,3>", "ap_fixed<10,3>", K)
    y = ref.depthwise_conv1d(x, w, b, padding, acc, "ap_fixed<40,12>")
    pl, pr = ref.depthwise_pads(K, padding)
    xp = np.pad(x, ((0, 0), (pl, pr), (0, 0)))
    expect = sum(w[k] * xp[:, k : k + xp.shape[1] - K + 1] for k in range(K)) + b
    np.testing.assert_array_equal(y, expect)
    # extreme inputs (most negative input times most negative weight everywhere) do not overflow it
    big = np.full((1, T, C), parse_type("ap_fixed<12,4>").min)
    wmin = np.full((K, C), parse_type("ap_fixed<8,3>").min)
    bmax = np.full(C, parse_type("ap_fixed<10,3>").max)
    worst = ref.depthwise_conv1d(big, wmin, bmax, padding, acc, "ap_fixed<40,12>")
    bp = np.pad(big, ((0, 0), (pl, pr), (0, 0)))
    np.testing.assert_array_equal(worst, sum(wmin[k] * bp[:, k : k + bp.shape[1] - K + 1] for k in range(K)) + bmax)


def test_depthwise_reference_narrow_accumulator_wraps_in_order():
    # accum ap_fixed<6,3> wraps: (0.75 * 4) wraps to -1 + ...; the reference applies the cast after every step
    x = np.array([[[3.0], [3.0]]])
    w = np.array([[1.0], [1.0]])
    y = ref.depthwise_conv1d(x, w, np.zeros(1), "valid", "ap_fixed<6,3>", "ap_fixed<8,4>")
    assert y.shape == (1, 1, 1) and y[0, 0, 0] == -2.0  # 3 + 3 = 6 wraps to 6 - 8


# ------------------------------------------------------------------------------------------ builder


@pytest.fixture(scope="module")
def models():
    pytest.importorskip("qkeras")
    from hwflow.nn.conformer import build_conformer

    card = _card()
    return card, build_conformer(card, True), build_conformer(card, False)


def test_shapes_names_and_parameter_count(models):
    from hwflow.nn.conformer import frames_after_subsampling, parameter_count

    card, qm, fm = models
    assert qm.input_shape == (None, 49, 40) and qm.output_shape == (None, 12)
    assert [l.name for l in qm.layers] == [l.name for l in fm.layers]
    assert qm.get_layer("subsample").output_shape == (None, frames_after_subsampling(49, 2), 16) == (None, 25, 16)
    assert qm.get_layer("b0_conv_glu").output_shape == (None, 25, 16)
    assert qm.get_layer("b0_conv_pw1").output_shape == (None, 25, 32)
    trainable = int(sum(np.prod(w.shape) for w in qm.trainable_weights))
    assert trainable == parameter_count(card)
    x = np.random.default_rng(0).normal(-5, 3, (3, 49, 40)).astype(np.float32)
    y = qm.predict(x, verbose=0)
    # the firmware's softmax: 12 probabilities of 16 fractional bits, each within 2^-16 of exact
    assert y.shape == (3, 12) and np.allclose(y.sum(axis=1), 1, atol=12 * 2.0**-16)


def test_quantizers_attached_and_float_twin_has_none(models):
    card, qm, fm = models
    from qkeras import QActivation

    assert qm.get_layer("b0_ffn1_swish").output_quantizer is not None
    assert qm.get_layer("b0_ffn1_swish").use_table and not fm.get_layer("b0_ffn1_swish").use_table
    dw = qm.get_layer("b0_conv_dw")
    assert dw.fold_batchnorm and dw.depthwise_quantizer.bits == 8 and dw.output_quantizer.bits == 16
    assert qm.get_layer("b0_mha").qkv_quantizer is not None
    assert qm.get_layer("classifier").kernel_quantizer_internal is not None
    assert isinstance(qm.get_layer("b0_ffn1_hidden"), QActivation)
    for layer in fm.layers:
        for q in getattr(layer, "get_quantizers", lambda: [])():
            if type(layer).__name__.startswith("Q") and type(layer).__name__ not in (
                "QDense",
                "QConv1D",
                "QActivation",
            ):
                assert q is None, f"float twin layer {layer.name} has a quantizer"
    assert not any(isinstance(layer, QActivation) for layer in fm.layers)


def test_save_and_reload_identical(models, tmp_path):
    import tensorflow as tf

    from hwflow.nn import custom_objects

    _, qm, _ = models
    path = tmp_path / "cf.h5"
    qm.save(path, save_format="h5", include_optimizer=False)
    again = tf.keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
    x = np.random.default_rng(1).normal(-5, 3, (4, 49, 40)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(x, verbose=0), qm.predict(x, verbose=0))


def test_folded_batchnorm_trains_moving_stats_and_quantizes_folded_weights():
    import tensorflow as tf
    from qkeras import quantized_bits

    from hwflow.nn.conformer import get_custom_objects

    layer = get_custom_objects()["QDepthwiseConv1D"](
        3,
        depthwise_quantizer=quantized_bits(8, 2, alpha=1),
        bias_quantizer=quantized_bits(12, 4, alpha=1),
        fold_batchnorm=True,
    )
    x = tf.constant(np.random.default_rng(0).normal(3.0, 2.0, (8, 10, 4)), tf.float32)
    layer(x)
    before = layer.moving_mean.numpy().copy()
    layer(x, training=True)
    assert not np.allclose(layer.moving_mean.numpy(), before)  # training updates the moving statistics
    w = layer.quantized_weights()
    # folded weights are on the quantizer grids (what the firmware stores is exactly representable)
    np.testing.assert_array_equal(w["kernel"], quantize(w["kernel"], "ap_fixed<8,3>"))
    np.testing.assert_array_equal(w["bias"], quantize(w["bias"], "ap_fixed<12,5>"))
    scale = layer.gamma.numpy() / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
    np.testing.assert_allclose(w["kernel"], layer.depthwise_kernel.numpy() * scale, atol=2**-5 / 2 + 1e-6)


def test_rmsnorm_variant_builds():
    from hwflow.nn.conformer import build_conformer

    m = build_conformer(_card(norm="rmsnorm", num_blocks=2), True)
    assert type(m.get_layer("b1_norm")).__name__ == "QRMSNormalization"


@pytest.mark.parametrize(
    "model, match",
    [
        ({"subsampling": 1, "conv_kernel": 7, "pooling": "flatten"}, "pooling"),
        ({"conv_kernel": 6}, "odd"),
        ({"conv_kernel": 31}, "wider"),
    ],
)
def test_bad_model_section_is_a_clear_error(model, match):
    from hwflow.nn.conformer import build_conformer

    with pytest.raises(HwflowError, match=match):
        build_conformer(_card(**model), True)


def test_default_card_is_small_enough():
    from hwflow.nn.conformer import frames_after_subsampling, parameter_count

    card = load_card(Path(__file__).resolve().parents[1] / "models" / "kws_conformer.yaml")
    m = card["model"]
    assert 16 <= m["embed_dim"] <= 32 and 1 <= m["num_blocks"] <= 2
    assert frames_after_subsampling(card["data"]["kws"]["n_frames"], m["subsampling"]) <= 25
    assert parameter_count(card) < 20000
