"""Transformer builder: shapes, quantizers on every layer, parameter-count formula, float twin, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from hwflow.config import validate
from hwflow.util import HwflowError

tf = pytest.importorskip("tensorflow")
qkeras = pytest.importorskip("qkeras")


def card(**model):
    return validate(
        {
            "name": "t",
            "data": {"kind": "jets", "jets": {"n_constituents": 8, "classes": ["g", "q", "t"]}},
            "model": {"kind": "transformer", **model},
            "quant": {
                "default": {"bits": 6, "integer": 0},
                "qkv": {"bits": 10, "integer": 3},
                "softmax": {"bits": 9, "integer": 0, "keep_negative": False},
            },
        }
    )


@pytest.fixture(scope="module")
def models():
    from hwflow.nn import build

    c = card()
    return c, build(c), build(c, quantized=False)


def test_shapes_and_softmax_output(models):
    c, q, f = models
    assert q.input_shape == (None, 8, 4) and q.output_shape == (None, 3)
    x = np.random.default_rng(0).normal(size=(5, 8, 4)).astype(np.float32)
    for m in (q, f):
        y = m.predict(x, verbose=0)
        # the quantized model ends in the firmware's softmax: 3 probabilities of 16 fractional bits
        assert y.shape == (5, 3) and np.allclose(y.sum(axis=1), 1, atol=3 * 2.0**-16)


def test_quantizers_attached_everywhere(models):
    from hwflow.nn.layers import QMultiHeadAttention

    c, q, _ = models
    dense = [l for l in q.layers if isinstance(l, qkeras.QDense)]
    assert {l.name for l in dense} == {"embed", "ffn0_dense1", "ffn0_dense2", "classifier"}
    for l in dense:
        assert l.kernel_quantizer_internal.bits == 6 and l.bias_quantizer_internal is not None, l.name
    mha = [l for l in q.layers if isinstance(l, QMultiHeadAttention)]
    assert len(mha) == 1
    for name in QMultiHeadAttention.QUANTIZER_NAMES:
        assert getattr(mha[0], name) is not None, name
    assert mha[0].kernel_quantizer.bits == 6 and mha[0].qkv_quantizer.bits == 10
    assert mha[0].softmax_quantizer.keep_negative is False or mha[0].softmax_quantizer.keep_negative == 0
    acts = {l.name: l for l in q.layers if isinstance(l, qkeras.QActivation)}
    assert set(acts) == {"input_q", "embed_act", "ffn0_relu", "ffn0_act", "pool_act", "logits"}
    assert "quantized_relu" in str(acts["ffn0_relu"].quantizer)
    for n in ("norm0a", "norm0b"):
        assert q.get_layer(n).output_quantizer is not None and q.get_layer(n).gamma_quantizer is not None


def test_float_twin_same_layers_no_quantizers(models):
    from hwflow.nn.layers import QMultiHeadAttention

    _, q, f = models
    assert [l.name for l in q.layers] == [l.name for l in f.layers]
    assert q.count_params() == f.count_params()
    for l in f.layers:
        assert not isinstance(l, qkeras.QActivation)
        if isinstance(l, qkeras.QDense):
            assert l.kernel_quantizer is None and l.bias_quantizer is None
        if isinstance(l, QMultiHeadAttention):
            assert all(qz is None for qz in l.get_quantizers())


@pytest.mark.parametrize(
    "model",
    [
        {},
        {"pooling": "flatten"},
        {"pooling": "max", "norm": "rmsnorm"},
        {"norm_position": "pre", "num_blocks": 2, "embed_dim": 12, "num_heads": 3, "key_dim": 4, "ffn_dim": 20},
    ],
)
def test_parameter_count_formula(model):
    from hwflow.nn import build
    from hwflow.nn.transformer import parameter_count

    c = card(**model)
    m = build(c)
    assert m.count_params() == parameter_count(c)
    # closed form written out for the default: input_norm 4*4 (frozen), embed 4*16+16, MHA 3*(16*16+16)+(16*16+16),
    # FFN 16*32+32+32*16+16, two layer norms 2*2*16, classifier 16*3+3
    if not model:
        assert m.count_params() == 16 + 80 + 1088 + 1072 + 64 + 51


def test_input_norm_standardizes_exactly(models):
    from hwflow.nn.transformer import set_input_norm

    c, q, f = models
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(400, 8, 4)) * [0.05, 0.1, 0.1, 0.9] + [0.05, 0, 0, 3.5]).astype(np.float32)
    stats = set_input_norm(q, x)
    assert stats["std"][0] == pytest.approx(x[..., 0].std(), rel=1e-4)
    scale = np.array(stats["scale"])
    assert np.all(np.log2(scale) == np.round(np.log2(scale)))  # powers of two: exact in fixed point
    sub = tf.keras.Model(q.inputs, [q.get_layer("input_q").output, q.get_layer("input_norm").output])
    xq, z = sub.predict(x, verbose=0)
    # TensorFlow computes (x_q - mean_q) * 2**k without any rounding, like the C++ scale-and-shift
    np.testing.assert_array_equal(z.astype(np.float64), (xq.astype(np.float64) - stats["mean_q"]) * scale)
    zs = z.reshape(-1, 4)
    assert np.all(np.abs(zs.mean(0)) < 0.02) and np.all((zs.std(0) > 0.7) & (zs.std(0) < 1.42))
    assert not q.get_layer("input_norm").trainable
    c2 = card(input_norm="none")
    from hwflow.nn import build

    m = build(c2)
    assert "input_norm" not in [l.name for l in m.layers] and set_input_norm(m, x) is None


def test_attention_kernels_start_distinct(models):
    _, q, _ = models
    l = q.get_layer("mha0")
    assert not np.array_equal(l.query_kernel.numpy(), l.key_kernel.numpy())
    assert not np.array_equal(l.key_kernel.numpy(), l.value_kernel.numpy())


def test_unsupported_choices_are_clear_errors():
    from hwflow.nn import build

    with pytest.raises(HwflowError, match="pooling 'cls'.*mean, max or flatten"):
        build(card(pooling="cls"))
    with pytest.raises(HwflowError, match="activation 'gelu'.*use relu"):
        build(card(activation="gelu"))


def test_quant_disabled_builds_float(models):
    from hwflow.nn import build

    c = card()
    c["quant"]["enabled"] = False
    m = build(c)
    assert not any(isinstance(l, qkeras.QActivation) for l in m.layers)


def test_role_fallbacks_do_not_use_weight_default():
    from hwflow.nn.transformer import role_spec

    c = card()
    assert role_spec(c, "qkv")["bits"] == 10  # from the card
    assert role_spec(c, "embed")["integer"] == 5  # activation role: builder table, not the [-1, 1) weight default
    assert role_spec(c, "bias")["bits"] == 6  # weight role: falls back to quant.default


def test_h5_round_trip_predicts_identically(models, tmp_path):
    from hwflow.nn import custom_objects

    _, q, f = models
    x = np.random.default_rng(1).normal(size=(16, 8, 4)).astype(np.float32)
    for m in (q, f):
        p = tmp_path / f"{m.name}.h5"
        m.save(p, save_format="h5", include_optimizer=False)
        again = tf.keras.models.load_model(p, custom_objects=custom_objects(), compile=False)
        assert [l.name for l in again.layers] == [l.name for l in m.layers]
        np.testing.assert_array_equal(again.predict(x, verbose=0), m.predict(x, verbose=0))


def test_build_dispatch_unknown_kind():
    from hwflow.nn import build

    c = card()
    c["model"]["kind"] = "mlp"
    with pytest.raises(HwflowError, match="unknown model.kind 'mlp'"):
        build(c)
