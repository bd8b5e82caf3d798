"""Attention variants through the whole hls4ml flow: a small jet transformer per ``model.attention`` builds (QKeras
and float twin), converts, compiles, agrees with QKeras, and its attention layer's C simulation equals the numpy
reference and the (exact) Keras layer bit for bit on the traced input (Latency and Resource with ReuseFactor)."""

import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")

T, NF = 8, 4


def variant_card(attention, **model):
    from hwflow.config import validate

    m = {
        "kind": "transformer",
        "embed_dim": 8,
        "key_dim": 4,
        "ffn_dim": 16,
        "attention": attention,
        "linformer_k": 3,
        "attention_group": 2,
        **model,
    }
    raw = {"name": f"unit_{attention}", "data": {"kind": "jets", "jets": {"n_constituents": T}}, "model": m}
    return validate(raw)


def _weights(node, names):
    """Return the node's stored weights in the reference's (n_in, n_out) layout."""
    out = {}
    for p in names:
        for k in ("kernel", "bias"):
            v = np.asarray(node.weights[f"{p}_{'weight' if k == 'kernel' else 'bias'}"].data, np.float64)
            if k == "kernel" and node.get_attr("_weights_transposed") and p in ("query", "key", "value", "output"):
                v = np.transpose(v)
            out[f"{p}_{k}"] = v.reshape((-1, v.shape[-1]) if k == "kernel" else (-1,))
    return out


def _reference(node, x):
    from hwflow.reference.attention import mha
    from hwflow.reference.cosformer import cosformer
    from hwflow.reference.linformer import linformer

    w = _weights(node, ("query", "key", "value", "output"))
    if node.class_name == "HwflowLinformer":
        for n in ("key_seq", "value_seq"):
            w[f"{n}_kernel"] = np.asarray(node.weights[f"{n}_weight"].data, np.float64).reshape(
                int(node.get_attr("proj_k")), -1
            )
        return linformer(x, node.hwflow_spec(), w)
    if node.class_name == "HwflowCosformer":
        return cosformer(x, node.hwflow_spec(), w)
    if node.class_name == "HwflowMultiHeadAttention":
        assert node.hwflow_spec().group == 2  # the card's attention_group reached the kernel
        return mha(x, node.hwflow_spec(), w)
    raise AssertionError(node.class_name)


@pytest.mark.parametrize(
    "attention,strategy,rf,cls",
    [
        ("linformer", "Latency", 1, "HwflowLinformer"),
        pytest.param("linformer", "Resource", 2, "HwflowLinformer", marks=pytest.mark.slow),
        pytest.param("cosformer", "Latency", 1, "HwflowCosformer", marks=pytest.mark.slow),
        pytest.param("cosformer", "Resource", 2, "HwflowCosformer", marks=pytest.mark.slow),
        pytest.param("grouped", "Latency", 1, "HwflowMultiHeadAttention", marks=pytest.mark.slow),
        pytest.param("grouped", "Resource", 2, "HwflowMultiHeadAttention", marks=pytest.mark.slow),
    ],
)
def test_variant_converts_and_is_bit_exact_in_the_project(attention, strategy, rf, cls, tmp_path):
    import hwflow.hls as H
    from hwflow.nn import build
    from hwflow.nn.transformer import set_input_norm

    card = variant_card(attention)
    card["hls"]["strategy"], card["hls"]["reuse_factor"] = strategy, rf
    model = build(card, quantized=True)
    fmodel = build(card, quantized=False)
    assert [ly.name for ly in model.layers] == [ly.name for ly in fmodel.layers]  # float twin: same layers
    assert type(model.get_layer("mha0")).__name__ == type(fmodel.get_layer("mha0")).__name__
    rng = np.random.default_rng(1)
    x = (rng.normal(0, 1, (500, T, NF)) * rng.choice([0.3, 1, 3], (500, 1, 1))).astype("float32")
    set_input_norm(model, x[:200])  # as training does: the frozen standardization is a power-of-two scaler
    hm = H.convert(card, model, output_dir=tmp_path / "prj", calibration_data=x[:200])
    hm = H.compile_model(hm)
    node = {ly.name: ly for ly in hm.get_layers()}["mha0"]
    assert node.class_name == cls
    xs = np.ascontiguousarray(x[200:])
    yh, trace = H.trace(hm, xs)
    yq = model.predict(xs, verbose=0)
    # every layer is exact (the frozen input_norm gets its exact type from hwflow.hls.convert): same outputs
    assert np.array_equal(np.asarray(yh, np.float64).reshape(yq.shape), yq.astype(np.float64))
    n = len(xs)
    got = np.asarray(trace["mha0"], np.float64).reshape(n, T, -1)
    inp = np.asarray(trace[node.get_input_node().name], np.float64).reshape(n, T, -1)
    ref = _reference(node, inp)
    assert np.array_equal(got, ref), f"{np.count_nonzero(got != ref)} mismatches"
    # the variant's Keras layer computes the firmware arithmetic (hwflow.nn.exact): on the C++ layer's own input
    # it gives the C simulation's output bit for bit
    layer = model.get_layer("mha0")
    assert layer.spec is not None
    keras = layer(inp.astype(np.float32), inp.astype(np.float32)).numpy()
    assert np.array_equal(keras, got), f"{np.count_nonzero(keras != got)} mismatches between Keras and C simulation"
    assert np.count_nonzero(got) > got.size // 2
