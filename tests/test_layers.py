"""hwflow.nn.layers: QKeras-style attention/norm layers are drop-in twins of the Keras layers and serialize."""

import numpy as np
import pytest


def _keras_mha_weights_to_ours(km, d):
    ws = km.get_weights()  # q k v kernels (D,H,dk) + biases (H,dk), output (H,dk,D) + (D,)
    return {
        "query_kernel": ws[0].reshape(d, -1),
        "query_bias": ws[1].reshape(-1),
        "key_kernel": ws[2].reshape(d, -1),
        "key_bias": ws[3].reshape(-1),
        "value_kernel": ws[4].reshape(d, -1),
        "value_bias": ws[5].reshape(-1),
        "output_kernel": ws[6].reshape(-1, ws[6].shape[-1]),
        "output_bias": ws[7],
    }


def test_float_mha_equals_keras_multiheadattention():
    import tensorflow as tf

    from hwflow.nn.layers import QMultiHeadAttention

    x = np.random.default_rng(0).normal(size=(3, 5, 6)).astype("float32")
    km = tf.keras.layers.MultiHeadAttention(2, 4)
    ref = km(x, x).numpy()
    ours = QMultiHeadAttention(2, 4)
    ours(x)
    w = _keras_mha_weights_to_ours(km, 6)
    ours.set_weights([w[v.name.split("/")[-1].split(":")[0]] for v in ours.weights])
    np.testing.assert_allclose(ours(x).numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(ours(x, x).numpy(), ref, atol=1e-5)  # layer(query, value) form


def test_quantizers_act_where_the_firmware_stores_values():
    from qkeras import quantized_bits

    from hwflow.nn.layers import QMultiHeadAttention

    x = np.random.default_rng(1).normal(size=(2, 6, 8)).astype("float32")
    layer = QMultiHeadAttention(
        2,
        4,
        kernel_quantizer=quantized_bits(4, 0, alpha=1),
        output_quantizer=quantized_bits(8, 3),
        softmax_quantizer=quantized_bits(8, 0, keep_negative=False),
    )
    y, a = layer(x, return_attention_scores=True)
    assert np.allclose(y.numpy() * 16, np.round(y.numpy() * 16))  # on the 2^-4 grid of quantized_bits(8,3)
    assert np.allclose(a.numpy() * 256, np.round(a.numpy() * 256))
    wq = layer.quantized_weights()["query_kernel"]
    assert np.allclose(wq * 8, np.round(wq * 8)) and np.abs(wq).max() <= 1.0
    assert not np.allclose(layer.query_kernel.numpy() * 8, np.round(layer.query_kernel.numpy() * 8))


def test_norms_match_formulas():
    import tensorflow as tf

    from hwflow.nn.layers import QLayerNormalization, QRMSNormalization

    x = (np.random.default_rng(2).normal(size=(4, 5, 8)) * 3 + 1).astype("float32")
    np.testing.assert_allclose(
        QLayerNormalization()(x).numpy(), tf.keras.layers.LayerNormalization()(x).numpy(), atol=1e-5
    )
    rms = QRMSNormalization(epsilon=1e-6)(x).numpy()
    np.testing.assert_allclose(rms, x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6), rtol=1e-4)


@pytest.mark.parametrize("fmt", ["h5", "keras"])
def test_model_with_hwflow_layers_saves_and_loads(tmp_path, fmt):
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    from hwflow.nn.layers import QLayerNormalization, QMultiHeadAttention, QRMSNormalization, get_custom_objects

    inp = tf.keras.Input((6, 4))
    h = QDense(8, kernel_quantizer=quantized_bits(8, 0, alpha=1))(inp)
    h = QMultiHeadAttention(
        2,
        4,
        kernel_quantizer=quantized_bits(8, 0, alpha=1),
        qkv_quantizer="quantized_bits(16,5)",
        score_quantizer=quantized_bits(16, 5),
    )(h, h)
    h = QLayerNormalization(output_quantizer=quantized_bits(16, 4), gamma_quantizer=quantized_bits(8, 2, alpha=1))(h)
    h = QRMSNormalization(output_quantizer=quantized_bits(16, 4))(h)
    model = tf.keras.Model(inp, h)
    x = np.random.default_rng(3).normal(size=(5, 6, 4)).astype("float32")
    y = model.predict(x, verbose=0)
    path = tmp_path / f"m.{fmt}"
    model.save(path)
    loaded = tf.keras.models.load_model(path, custom_objects=get_custom_objects())
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), y)
    mha = [ly for ly in loaded.layers if type(ly).__name__ == "QMultiHeadAttention"][0]
    assert mha.get_config()["qkv_quantizer"]["config"]["bits"] == 16
    assert "QDense" in get_custom_objects()


def test_attention_kernels_start_distinct_and_reproducible():
    """Each projection gets its own initializer draw (an unseeded Keras-2 initializer repeats itself)."""
    import numpy as np
    import tensorflow as tf

    from hwflow.nn.layers import QMultiHeadAttention

    def kernels():
        tf.keras.utils.set_random_seed(3)
        layer = QMultiHeadAttention(num_heads=2, key_dim=8)
        layer(tf.zeros((1, 4, 16)))
        return [k.numpy() for k in (layer.query_kernel, layer.key_kernel, layer.value_kernel)]

    first, second = kernels(), kernels()
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
