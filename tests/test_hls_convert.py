"""hwflow.hls: a small QKeras transformer converts, compiles and agrees with QKeras; per-layer bit-exactness
of the compiled hls4ml project against the numpy references (through hls4ml's trace)."""

import shutil
import time

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")

T, F, D, H, DK, FFN, NCLS = 8, 4, 8, 2, 4, 16, 5


def build_small_transformer(seed=0, norm2="rms"):
    from hwflow.rtl.demo import small_transformer

    return small_transformer(seed, norm2, T, F, D, H, DK, FFN, NCLS)


def small_card(**hls):
    from hwflow.config import validate

    raw = {"name": "unit_hls", "data": {"kind": "jets"}, "model": {"kind": "transformer"}, "hls": hls}
    return validate(raw)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    import hwflow.hls as H

    model = build_small_transformer()
    rng = np.random.default_rng(0)
    x = (rng.normal(0, 1, (1200, T, F)) * rng.choice([0.3, 1, 3], (1200, 1, 1))).astype("float32")
    card = small_card()
    t0 = time.time()
    hm = H.convert(card, model, output_dir=tmp_path_factory.mktemp("prj"), calibration_data=x[:300])
    t_conv = time.time() - t0
    hm = H.compile_model(hm)
    print(f"\nconvert {t_conv:.1f} s, compile {hm.compile_seconds:.1f} s")
    return model, hm, x[300:]


def test_small_transformer_agrees_with_qkeras(compiled):
    model, hm, x = compiled
    yq = model.predict(x, verbose=0)
    yh = np.asarray(hm.predict(np.ascontiguousarray(x))).reshape(yq.shape)
    agree = float(np.mean(yq.argmax(-1) == yh.argmax(-1)))
    err = float(np.abs(yq - yh).max())
    print(f"\nargmax agreement {agree:.4f}, max abs error {err:.5f} on {len(x)} samples")
    assert agree >= 0.99
    assert err < 0.02


def test_extension_layers_bit_exact_inside_the_compiled_project(compiled):
    """Each hwflow layer's C-simulation output equals the numpy reference applied to its C-simulation input."""
    from hwflow.reference.attention import mha
    from hwflow.reference.layernorm import norm
    from hwflow.reference.softmax import softmax

    model, hm, x = compiled
    from hwflow.hls import trace as hw_trace

    x = np.ascontiguousarray(x[:200])
    t0 = time.time()
    _, trace = hw_trace(hm, x)
    assert time.time() - t0 < 20  # no recompile: compile_model built the traced library
    y1, t1 = hm.trace(x[:5])  # the same library, a smaller batch: the same values
    assert np.array_equal(t1["mha"], np.asarray(trace["mha"])[:5])
    layers = {ly.name: ly for ly in hm.get_layers()}
    n = len(x)

    def inp(name):
        return np.asarray(trace[layers[name].get_input_node().name], np.float64).reshape(n, -1)

    # attention
    node = layers["mha"]
    spec = node.hwflow_spec()
    w = {
        f"{p}_{k}": node.weights[f"{p}_{'weight' if k == 'kernel' else 'bias'}"].data
        for p in ("query", "key", "value", "output")
        for k in ("kernel", "bias")
    }
    w = {
        k: (np.transpose(v) if k.endswith("kernel") and node.get_attr("_weights_transposed") else v).reshape(
            (-1, v.shape[-1]) if k.endswith("kernel") else (-1,)
        )
        for k, v in w.items()
    }
    got = np.asarray(trace["mha"], np.float64).reshape(n, T, D)
    assert np.array_equal(got, mha(inp("mha").reshape(n, T, D), spec, w))
    # layer norm and RMS norm
    for name in ("ln1", "ln2"):
        node = layers[name]
        spec = node.hwflow_spec()
        ref = norm(inp(name).reshape(n, T, D), spec, node.weights["scale"].data, node.weights["bias"].data)
        assert np.array_equal(np.asarray(trace[name], np.float64).reshape(n, T, D), ref), name
    # classifier softmax
    node = layers["softmax"]
    ref = softmax(inp("softmax"), node.hwflow_spec())
    assert np.array_equal(np.asarray(trace["softmax"], np.float64).reshape(n, -1), ref)


def test_quantizer_precisions_reach_the_generated_hls(compiled):
    """QDense on 3-D input keeps its weight quantizer; QActivation(quantized_bits) types survive; intermediates
    typed."""
    model, hm, _ = compiled
    layers = {ly.name: ly for ly in hm.get_layers()}
    out = hm.config.get_output_dir()
    from pathlib import Path

    defines = (Path(out) / "firmware" / "defines.h").read_text()
    params = (Path(out) / "firmware" / "parameters.h").read_text()
    for name in ("embed", "ffn1", "ffn2"):
        node = layers[name]
        assert node.class_name.startswith("PointwiseConv1D") or node.class_name == "Conv1D"
        w = node.weights["weight"]
        assert "fixed<8,1" in str(w.type.precision)
        qk = model.get_layer(name)
        expected = qk.kernel_quantizer_internal(qk.kernel).numpy()
        assert np.array_equal(np.asarray(w.data).reshape(expected.shape), expected), name  # rounded, not truncated
        assert f"ap_fixed<8,1> {w.type.name}" in defines.replace("typedef ", "") or w.type.name in params
    # QActivation(quantized_bits(16,5)) after the 3-D QDense: its type is the QDense output (merged, not dropped)
    assert str(layers["embed"].get_output_variable().type.precision).startswith("fixed<16,6,RND_CONV,SAT")
    assert f"ap_fixed<16,6,AP_RND_CONV,AP_SAT,0> {layers['embed'].get_output_variable().type.name};" in defines
    # the attention intermediates carry the QKeras precisions
    assert "typedef ap_ufixed<12,1,AP_RND_CONV,AP_SAT> attn_t;" in params
    assert "typedef ap_fixed<16,6,AP_RND_CONV,AP_SAT> score_t;" in params
    assert "nnet::hwflow_mha<" in (Path(out) / "firmware" / "myproject.cpp").read_text()


@pytest.mark.slow
def test_resource_strategy_vivado_backend_compiles_and_stays_bit_exact(tmp_path):
    """Vivado backend, Resource strategy, ReuseFactor 4: same agreement; attention still equals the reference."""
    import hwflow.hls as H
    from hwflow.reference.attention import mha

    model = build_small_transformer(seed=1, norm2="layer")
    x = np.random.default_rng(1).normal(0, 1, (400, T, F)).astype("float32")
    card = small_card(backend="Vivado", strategy="Resource", reuse_factor=4)
    hm = H.compile_model(H.convert(card, model, output_dir=tmp_path / "prj", calibration_data=x[:100]))
    yq = model.predict(x, verbose=0)
    yh, trace = H.trace(hm, x)
    yh = np.asarray(yh).reshape(yq.shape)
    assert np.mean(yq.argmax(-1) == yh.argmax(-1)) >= 0.99
    node = [ly for ly in hm.get_layers() if ly.name == "mha"][0]
    assert node.get_attr("_weights_transposed")
    w = {}
    for p in ("query", "key", "value", "output"):
        w[f"{p}_kernel"] = np.transpose(node.weights[f"{p}_weight"].data)
        w[f"{p}_bias"] = node.weights[f"{p}_bias"].data
    src = np.asarray(trace[node.get_input_node().name], np.float64).reshape(len(x), T, D)
    assert np.array_equal(np.asarray(trace["mha"], np.float64).reshape(len(x), T, D), mha(src, node.hwflow_spec(), w))


@pytest.mark.slow
def test_hwflow_softmax_removes_the_argmax_flips_of_stock_hls4ml(tmp_path):
    """Same logits, same model: stock hls4ml softmax flips argmaxes, hwflow's (calibrated, default sizes) does not."""
    import tensorflow as tf

    import hwflow.hls as H

    inp = tf.keras.Input((5,))
    model = tf.keras.Model(inp, tf.keras.layers.Activation("softmax", name="sm")(inp))
    rng = np.random.default_rng(0)
    logits = (np.round(rng.normal(0, 3, (20000, 5)) * 1024) / 1024).astype("float32")  # exact in ap_fixed<16,6>
    flips = {}
    for ours in (False, True):
        card = small_card(layer_name={"sm": {"HwflowSoftmax": ours}})
        hm = H.compile_model(H.convert(card, model, output_dir=tmp_path / str(ours), calibration_data=logits[:1000]))
        y = np.asarray(hm.predict(np.ascontiguousarray(logits))).reshape(logits.shape)
        flips[ours] = int(np.sum(y.argmax(-1) != logits.argmax(-1)))
    print(f"\nsoftmax argmax flips on 20000 rows: stock {flips[False]}, hwflow {flips[True]}")
    assert flips[True] == 0 and flips[False] > 0
