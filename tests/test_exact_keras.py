"""The Keras model is the firmware (issue 11): TF forward passes == numpy references == C simulation, bit for bit.

- hwflow.nn.fixed (TF ap_fixed casts) against hwflow.reference.fixed for every rounding/overflow mode;
- hwflow.nn.exact softmax / norms / attention / average pooling against the numpy references on random and extreme
  inputs, over several precisions, table sizes and widths (including widths that are not powers of two);
- the Keras layers (inference) against the references built from their own spec, and their config round trip;
- random small cards (widths, heads, norms, pooling, table sizes, precisions, attention kind: softmax, Linformer,
  cosFormer or grouped): Keras == C simulation on every output value and every layer's own output (one card in the
  default suite, more in the slow suite).
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from hwflow.nn import exact, fixed  # noqa: E402
from hwflow.reference import attention as ref_attention  # noqa: E402
from hwflow.reference import layernorm as ref_norm  # noqa: E402
from hwflow.reference import softmax as ref_softmax  # noqa: E402
from hwflow.reference.fixed import OVERFLOW, ROUNDING, FixedType, parse_type, quantize, quantize_raw  # noqa: E402


def _same(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    bad = np.flatnonzero(a.ravel() != b.ravel())
    assert bad.size == 0, f"{bad.size} of {a.size} values differ, e.g. {a.ravel()[bad[:3]]} vs {b.ravel()[bad[:3]]}"


@pytest.mark.parametrize("rounding", ROUNDING)
@pytest.mark.parametrize("overflow", OVERFLOW)
def test_tf_quantize_matches_reference_every_mode(rounding, overflow):
    rng = np.random.default_rng(0)
    t = FixedType(8, 3, True, rounding, overflow)
    # ties, values just off ties, out of range both ways, and zero
    x = np.concatenate([np.arange(-40, 40) / 8.0 + 1 / 64, np.arange(-40, 40) / 16.0, rng.normal(0, 6, 200), [0.0]])
    _same(fixed.quantize(tf.constant(x), t), quantize(x, t))
    u = FixedType(6, 2, False, rounding, overflow)
    _same(fixed.quantize(tf.constant(x), u), quantize(x, u))
    raw = rng.integers(-(2**40), 2**40, 300)
    _same(fixed.quantize_raw(tf.constant(raw), 20, t), quantize_raw(raw, 20, t))
    # the two-limb product of a wide integer and a constant rounds like the Python-integer reference
    c = 12345677
    _same(fixed.mul_const_raw(tf.constant(raw), c, 45, t), quantize_raw(raw.astype(object) * c, 45, t))
    _same(fixed.mul_const_raw(tf.constant(raw), c, 25, t), quantize_raw(raw.astype(object) * c, 25, t))
    # two-limb products of per-element factors, summed: up to 93 bits
    a, b = rng.integers(-(2**30), 2**30, (50, 7)), rng.integers(-(2**55), 2**55, (50, 7))
    wide = fixed.wide_sum(*fixed.wide_mul(tf.constant(a), tf.constant(b), 31, "test"))
    exact_sum = (a.astype(object) * b.astype(object)).sum(axis=-1, keepdims=True)
    for frac in (20, 31, 40, 70):
        _same(fixed.wide_quantize(*wide, frac, t), quantize_raw(exact_sum, frac, t))


def _inputs(rng, shape, t, scale):
    """Random values in type t plus extremes: the type's min/max, zeros, equal rows (ties everywhere)."""
    x = quantize(rng.normal(0, scale, shape), t)
    x[0] = t.max
    x[1] = t.min
    x[2] = 0.0
    x[3] = x[3, ..., :1]
    return x


SOFTMAX_CASES = [
    (16, "ap_fixed<16,6,AP_RND_CONV,AP_SAT>", "ap_ufixed<12,1,AP_RND_CONV,AP_SAT>", 1024, 1024, None),
    (25, "ap_fixed<16,6,AP_RND_CONV,AP_SAT>", "ap_ufixed<16,0,AP_RND_CONV,AP_SAT>", 256, 64, None),
    (
        5,
        "ap_fixed<12,4,AP_RND_CONV,AP_SAT>",
        "ap_ufixed<16,0,AP_RND_CONV,AP_SAT>",
        64,
        256,
        "ap_ufixed<14,1,AP_RND,AP_SAT>",
    ),
    (12, "ap_fixed<18,8>", "ap_ufixed<10,1,AP_RND_CONV,AP_SAT>", 2048, 512, None),
]


@pytest.mark.parametrize("n,in_t,out_t,exp_size,inv_size,table_t", SOFTMAX_CASES)
def test_tf_softmax_matches_reference(n, in_t, out_t, exp_size, inv_size, table_t):
    kw = {"exp_table_t": table_t, "inv_table_t": table_t} if table_t else {}
    spec = ref_softmax.make_spec(n, in_t, out_t, exp_table_size=exp_size, inv_table_size=inv_size, **kw)
    x = _inputs(np.random.default_rng(n), (300, n), spec.input_t, 4.0)
    _same(exact.softmax(tf.constant(x), spec), ref_softmax.softmax(x, spec))


NORM_CASES = [
    (16, "ap_fixed<17,7>", True, 1e-3, 1024),
    (16, "ap_fixed<18,7>", False, 1e-6, 1024),
    (12, "ap_fixed<16,6>", True, 1e-3, 256),
    (24, "ap_fixed<17,7>", True, 1e-3, 64),
    (12, "ap_fixed<20,10>", True, 1e-3, 1024),  # a pre-norm stream after two blocks: ~90-bit variance products
    (10, "ap_fixed<12,5>", False, 1e-6, 2048),
]


@pytest.mark.parametrize("n,in_t,center,eps,table_size", NORM_CASES)
def test_tf_norm_matches_reference(n, in_t, center, eps, table_size):
    rng = np.random.default_rng(n)
    spec = ref_norm.make_spec(
        n,
        in_t,
        "ap_fixed<16,5,AP_RND_CONV,AP_SAT>",
        center=center,
        epsilon=eps,
        scale_t="ap_fixed<8,3>",
        bias_t="ap_fixed<8,3>",
        table_size=table_size,
    )
    x = _inputs(rng, (300, n), spec.input_t, 3.0)
    x[4] = spec.input_t.lsb * np.arange(n)  # tiny variance: epsilon and the lowest octaves of the table
    gamma = quantize(rng.normal(1, 0.5, n), "ap_fixed<8,3>")
    beta = quantize(rng.normal(0, 0.5, n), "ap_fixed<8,3>")
    got = exact.norm(tf.constant(x), spec, tf.constant(gamma), tf.constant(beta) if center else None)
    _same(got, ref_norm.norm(x, spec, gamma, beta if center else None))


ATTENTION_CASES = [(16, 16, 2, 8, 1024), (25, 16, 2, 8, 256), (6, 12, 3, 4, 64), (9, 8, 1, 16, 1024)]


@pytest.mark.parametrize("seq,embed,heads,key_dim,table", ATTENTION_CASES)
def test_tf_attention_matches_reference(seq, embed, heads, key_dim, table):
    rng = np.random.default_rng(seq * embed)
    act = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
    spec = ref_attention.make_spec(
        seq, embed, heads, key_dim, key_dim, embed, "ap_fixed<16,6>", "ap_fixed<8,1>", "ap_fixed<8,3>",
        act, act, "ap_ufixed<12,1,AP_RND_CONV,AP_SAT>", act, act, exp_table_size=table, inv_table_size=table,
    )  # fmt: skip
    hk = heads * key_dim
    w = {}
    for n, shape in (("query", (embed, hk)), ("key", (embed, hk)), ("value", (embed, hk)), ("output", (hk, embed))):
        w[f"{n}_kernel"] = quantize(rng.normal(0, 0.5, shape), "ap_fixed<8,1>")
        w[f"{n}_bias"] = quantize(rng.normal(0, 0.5, shape[1]), "ap_fixed<8,3>")
    x = _inputs(rng, (40, seq, embed), spec.input_t, 4.0)
    got = exact.mha(tf.constant(x), spec, {k: tf.constant(v) for k, v in w.items()})
    _same(got, ref_attention.mha(x, spec, w))


def _attention_weights(rng, embed, hk, extra=()):
    """Random quantized Q/K/V/output weights (and ``extra`` named kernels: (name, shape)) of an attention layer."""
    w = {}
    for n, shape in (("query", (embed, hk)), ("key", (embed, hk)), ("value", (embed, hk)), ("output", (hk, embed))):
        w[f"{n}_kernel"] = quantize(rng.normal(0, 0.5, shape), "ap_fixed<8,1>")
        w[f"{n}_bias"] = quantize(rng.normal(0, 0.5, shape[1]), "ap_fixed<8,3>")
    for n, shape in extra:
        w[n] = quantize(rng.normal(0, 0.5, shape), "ap_fixed<8,1>")
    return w


ACT = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
ATTENTION_ARGS = {
    "input_t": "ap_fixed<16,6>", "weight_t": "ap_fixed<8,1>", "bias_t": "ap_fixed<8,3>", "q_t": ACT, "score_t": ACT,
    "attn_t": "ap_ufixed<12,1,AP_RND_CONV,AP_SAT>", "context_t": ACT, "result_t": ACT,
}  # fmt: skip


@pytest.mark.parametrize("seq,embed,heads,key_dim,group,table", [(16, 16, 2, 8, 4, 1024), (12, 12, 3, 4, 3, 64)])
def test_tf_grouped_attention_matches_reference(seq, embed, heads, key_dim, group, table):
    rng = np.random.default_rng(seq + group)
    spec = ref_attention.make_spec(
        seq, embed, heads, key_dim, key_dim, embed, **ATTENTION_ARGS, group=group, exp_table_size=table
    )
    w = _attention_weights(rng, embed, heads * key_dim)
    x = _inputs(rng, (30, seq, embed), spec.input_t, 4.0)
    _same(exact.mha(tf.constant(x), spec, {k: tf.constant(v) for k, v in w.items()}), ref_attention.mha(x, spec, w))


@pytest.mark.parametrize(
    "seq,embed,heads,key_dim,proj_k,kv_t",
    [(16, 16, 2, 8, 4, "ap_fixed<16,7>"), (9, 12, 3, 4, 3, "ap_fixed<14,5,AP_TRN,AP_WRAP>")],
)
def test_tf_linformer_matches_reference(seq, embed, heads, key_dim, proj_k, kv_t):
    from hwflow.reference import linformer as ref_linformer

    rng = np.random.default_rng(seq * proj_k)
    spec = ref_linformer.make_spec(
        seq, proj_k, "ap_fixed<8,1>", kv_t, embed_dim=embed, num_heads=heads, key_dim=key_dim, value_dim=key_dim,
        out_dim=embed, **ATTENTION_ARGS,
    )  # fmt: skip
    hk = heads * key_dim
    w = _attention_weights(rng, embed, hk, (("key_seq_kernel", (proj_k, seq)), ("value_seq_kernel", (proj_k, seq))))
    x = _inputs(rng, (30, seq, embed), spec.attn.input_t, 4.0)
    got = exact.linformer(tf.constant(x), spec, {k: tf.constant(v) for k, v in w.items()})
    _same(got, ref_linformer.linformer(x, spec, w))


COS_CASES = [
    (16, 16, 2, 8, 0, 1024, ("ap_ufixed<16,6>", "ap_fixed<18,10>", "ap_ufixed<16,9>", "ap_fixed<20,13>",
                             "ap_ufixed<20,10>")),
    (12, 12, 3, 4, 20, 64, ("ap_ufixed<12,4,AP_RND_CONV,AP_SAT>", "ap_fixed<14,8,AP_RND,AP_SAT>", "ap_ufixed<12,7>",
                            "ap_fixed<16,10,AP_RND_CONV,AP_SAT>", "ap_ufixed<14,6>")),
]  # fmt: skip


@pytest.mark.parametrize("seq,embed,heads,key_dim,horizon,inv_size,types", COS_CASES)
def test_tf_cosformer_matches_reference(seq, embed, heads, key_dim, horizon, inv_size, types):
    from hwflow.reference import cosformer as ref_cosformer

    rng = np.random.default_rng(seq + horizon)
    a = ATTENTION_ARGS
    feat_t, kv_t, ksum_t, num_t, den_t = types
    spec = ref_cosformer.make_spec(
        seq, embed, heads, key_dim, key_dim, embed, a["input_t"], a["weight_t"], a["bias_t"], a["q_t"], feat_t, kv_t,
        ksum_t, num_t, den_t, a["context_t"], a["result_t"], horizon=horizon, inv_table_size=inv_size,
    )  # fmt: skip
    w = _attention_weights(rng, embed, heads * key_dim)
    x = _inputs(rng, (40, seq, embed), spec.input_t, 4.0)
    x[5] = -x[5] * 0 - 1.0  # all-equal negative tokens: many zero ReLU features, den == 0 rows
    got = exact.cosformer(tf.constant(x), spec, {k: tf.constant(v) for k, v in w.items()})
    want = ref_cosformer.cosformer(x, spec, w)
    _same(got, want)


def test_keras_layers_infer_exactly_and_round_trip():
    from qkeras import quantized_bits

    from hwflow.nn.layers import QLayerNormalization, QMultiHeadAttention, QRMSNormalization, QSoftmax

    rng = np.random.default_rng(5)
    q16 = quantized_bits(16, 5, alpha=1)
    x = quantize(rng.normal(0, 3, (20, 10, 16)), "ap_fixed<17,7>").astype(np.float32)
    layers = [
        QLayerNormalization(output_quantizer=q16, gamma_quantizer=quantized_bits(8, 2, alpha=1),
                            beta_quantizer=quantized_bits(8, 2, alpha=1), input_type="ap_fixed<17,7>",
                            table_size=256),
        QRMSNormalization(output_quantizer=q16, gamma_quantizer=quantized_bits(8, 2, alpha=1),
                          input_type="ap_fixed<17,7>"),
        QMultiHeadAttention(2, 8, kernel_quantizer=quantized_bits(8, 0, alpha=1),
                            bias_quantizer=quantized_bits(8, 2, alpha=1), qkv_quantizer=q16, score_quantizer=q16,
                            softmax_quantizer=quantized_bits(12, 1, keep_negative=False, alpha=1),
                            context_quantizer=q16, output_quantizer=q16, exp_table_size=256),
        QSoftmax(input_type="ap_fixed<17,7>", exp_table_size=512, inv_table_size=256),
    ]  # fmt: skip
    for layer in layers:
        y = layer(tf.constant(x)).numpy()
        s = layer.spec
        assert s is not None, layer.name
        if isinstance(layer, QSoftmax):
            want = ref_softmax.softmax(x, s)
        elif isinstance(layer, QMultiHeadAttention):
            want = ref_attention.mha(x, s, layer.quantized_weights())
        else:
            w = layer.quantized_weights()
            want = ref_norm.norm(x, s, w["gamma"], w.get("beta") if s.center else None)
        _same(y, want)
        # serializable: the same layer from its config computes the same values
        again = type(layer).from_config(layer.get_config())
        again(tf.constant(x))
        again.set_weights(layer.get_weights())
        _same(again(tf.constant(x)).numpy(), y)
        # training: exact forward, gradient of the float twin (straight through), never zero everywhere
        with tf.GradientTape() as tape:
            xv = tf.Variable(x)
            out = layer(xv, training=True)
            loss = tf.reduce_sum(out * tf.constant(rng.normal(size=out.shape), tf.float32))
        _same(out.numpy(), y)
        grad = tape.gradient(loss, xv)
        assert grad is not None and np.any(grad.numpy() != 0), layer.name


def _variant_layer(kind):
    from qkeras import quantized_bits

    from hwflow.nn.layers import QCosformerAttention, QGroupedAttention, QLinformerAttention

    q16 = quantized_bits(16, 5, alpha=1)
    common = {
        "kernel_quantizer": quantized_bits(8, 0, alpha=1),
        "bias_quantizer": quantized_bits(8, 2, alpha=1),
        "qkv_quantizer": q16,
        "context_quantizer": q16,
        "output_quantizer": q16,
        "input_type": "ap_fixed<17,7>",
        "inv_table_size": 256,
    }
    sm = {"score_quantizer": q16, "softmax_quantizer": quantized_bits(12, 1, keep_negative=False, alpha=1)}
    if kind == "grouped":
        return QGroupedAttention(2, 4, group=5, exp_table_size=256, **sm, **common)
    if kind == "linformer":
        return QLinformerAttention(2, 4, proj_k=3, kv_proj_quantizer=quantized_bits(16, 6, alpha=1), **sm, **common)
    u = {"keep_negative": False, "alpha": 1}
    return QCosformerAttention(
        2, 4, horizon=12, feat_quantizer=quantized_bits(16, 5, **u), kv_quantizer=quantized_bits(18, 9, alpha=1),
        ksum_quantizer=quantized_bits(16, 8, **u), num_quantizer=quantized_bits(20, 12, alpha=1),
        den_quantizer=quantized_bits(20, 10, **u), **common,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["grouped", "linformer", "cosformer"])
def test_keras_attention_variants_infer_exactly_and_round_trip(kind):
    """Each attention variant computes its firmware arithmetic (its reference from its own spec) in inference and
    in training (straight-through: exact forward, the float variant's gradient), also after a config round trip;
    its float twin (no quantizers) stays float."""
    from hwflow.reference import cosformer as ref_cosformer
    from hwflow.reference import linformer as ref_linformer

    rng = np.random.default_rng(7)
    x = quantize(rng.normal(0, 3, (20, 10, 8)), "ap_fixed<17,7>").astype(np.float32)
    layer = _variant_layer(kind)
    y = layer(tf.constant(x)).numpy()
    s = layer.spec
    assert s is not None
    w = layer.quantized_weights()
    ref = {"grouped": ref_attention.mha, "linformer": ref_linformer.linformer, "cosformer": ref_cosformer.cosformer}
    want = ref[kind](x, s, w)
    _same(y, want)
    assert np.unique(want).size > 50  # a real function of the input, not a saturated constant
    again = type(layer).from_config(layer.get_config())
    again(tf.constant(x))
    again.set_weights(layer.get_weights())
    _same(again(tf.constant(x)).numpy(), y)
    with tf.GradientTape() as tape:
        xv = tf.Variable(x)
        out = layer(xv, training=True)
        loss = tf.reduce_sum(out * tf.constant(rng.normal(size=out.shape), tf.float32))
    _same(out.numpy(), y)
    grads = tape.gradient(loss, [xv] + layer.trainable_weights)
    assert all(g is not None for g in grads) and np.any(grads[0].numpy() != 0)
    names = [v.name for v, g in zip(layer.trainable_weights, grads[1:]) if not np.any(g.numpy() != 0)]
    assert not names, f"no gradient reaches {names}"
    twin = type(layer)(2, 4, **{k: v for k, v in layer.get_config().items() if k in ("proj_k", "horizon", "group")})
    twin(tf.constant(x))
    assert twin.spec is None


POOL_CASES = [
    (25, "ap_fixed<16,5,AP_RND_CONV,AP_SAT>"),
    (7, "ap_ufixed<12,3>"),
    (16, "ap_fixed<20,9>"),
    (1, "ap_fixed<8,2>"),
]


@pytest.mark.parametrize("n,in_t", POOL_CASES)
def test_tf_average_pool_matches_reference(n, in_t):
    from hwflow.reference import pooling as ref_pool

    accum_t, result_t = ref_pool.pool_types(in_t, n)
    assert result_t.width <= 24 and accum_t.integer - result_t.integer == max(n - 1, 0).bit_length()
    t = parse_type(in_t)
    x = _inputs(np.random.default_rng(n), (200, n, 6), t, 8.0)  # rows 0, 1: the extremes, n of them summed
    want = ref_pool.global_average_pool1d(x, accum_t, result_t)
    _same(exact.global_average_pool1d(tf.constant(x), accum_t, result_t), want)
    # the quotient is truncated toward zero on accum_t's grid, then assigned exactly to result_t
    lsb = 2.0**-accum_t.frac
    mean = x.mean(axis=1)
    assert np.all(np.abs(want) <= np.abs(mean) + 1e-12) and np.all(np.abs(mean - want) < lsb)
    _same(want[:2], np.stack([np.full(6, t.max), np.full(6, t.min)]))


def test_keras_average_pool_infers_exactly_and_round_trips():
    from hwflow.nn.layers import QGlobalAveragePooling1D
    from hwflow.reference import pooling as ref_pool

    in_t = "ap_fixed<16,5,AP_RND_CONV,AP_SAT>"
    x = quantize(np.random.default_rng(3).normal(0, 3, (30, 25, 8)), in_t).astype(np.float32)
    layer = QGlobalAveragePooling1D(input_type=in_t)
    y = layer(tf.constant(x)).numpy()
    _same(y, ref_pool.global_average_pool1d(x, layer.accum_type, layer.result_type))
    assert np.any(y != np.float32(x.mean(axis=1)))  # a float32 mean is not the firmware's value here
    again = QGlobalAveragePooling1D.from_config(layer.get_config())
    _same(again(tf.constant(x)).numpy(), y)
    with tf.GradientTape() as tape:
        xv = tf.Variable(x)
        loss = tf.reduce_sum(layer(xv, training=True))
    _same(layer(xv, training=True).numpy(), y)
    np.testing.assert_allclose(tape.gradient(loss, xv).numpy(), 1 / 25, rtol=1e-6)  # the mean's gradient
    float_twin = QGlobalAveragePooling1D()
    np.testing.assert_allclose(float_twin(tf.constant(x)).numpy(), x.mean(axis=1), rtol=1e-6)


def test_average_pool_csim_equals_reference(tmp_path, hls_toolchain):
    """The hls4ml C++ average (stock nnet::global_pooling1d_cl with hwflow's types) == the reference, bit for bit,
    on random values and on the extremes of the input type, for a token count that is not a power of two."""
    from qkeras import QActivation, quantized_bits
    from test_train import tiny_card

    from hwflow.config import validate
    from hwflow.hls import compile_model, convert, csim_outputs
    from hwflow.nn.layers import QGlobalAveragePooling1D
    from hwflow.reference import pooling as ref_pool

    n, in_t = 25, "ap_fixed<16,5,AP_RND_CONV,AP_SAT>"
    inp = tf.keras.layers.Input((n, 6))
    h = QActivation(quantized_bits(16, 4, alpha=1), name="input_q")(inp)
    out = QGlobalAveragePooling1D(input_type=in_t, name="pool")(h)
    model = tf.keras.Model(inp, out)
    t = FixedType(16, 5, True)
    x = _inputs(np.random.default_rng(9), (64, n, 6), t, 8.0)
    x[0], x[1] = t.max, t.min
    x[2, :, :3], x[2, :, 3:] = t.max, t.min
    card = validate(dict(tiny_card(name="pool", epochs=1)))
    hm = compile_model(convert(card, model, output_dir=tmp_path / "pool", calibration_data=x))
    y, _ = csim_outputs(hm, x)
    layer = model.get_layer("pool")
    want = ref_pool.global_average_pool1d(x, layer.accum_type, layer.result_type)
    _same(np.asarray(y).reshape(want.shape), want)
    _same(model.predict(x, verbose=0), want)


def test_float_layers_stay_float():
    from hwflow.nn.layers import QLayerNormalization, QMultiHeadAttention, QSoftmax

    x = tf.constant(np.random.default_rng(1).normal(size=(3, 5, 8)).astype(np.float32))
    for layer in (QLayerNormalization(), QMultiHeadAttention(2, 4), QSoftmax()):
        layer(x)
        assert layer.spec is None
    np.testing.assert_allclose(QSoftmax()(x).numpy(), tf.nn.softmax(x).numpy(), rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# random small cards: Keras == C simulation, bit for bit
# ---------------------------------------------------------------------------------------------------------


def random_card(seed: int):
    """Return a small random transformer or conformer card (widths, heads, norms, pooling, tables, precisions,
    attention kind and its parameters)."""
    from test_train import tiny_card

    from hwflow.config import validate

    rng = np.random.default_rng(seed)
    heads = int(rng.choice([1, 2, 3]))
    key_dim = int(rng.choice([2, 4, 6]))
    bits = int(rng.choice([12, 14, 16]))
    card = dict(tiny_card(name=f"rnd{seed}", epochs=1))
    conformer = bool(seed % 2)
    model = dict(card["model"])
    model.update(
        embed_dim=int(heads * key_dim),
        num_heads=heads,
        key_dim=key_dim,
        ffn_dim=int(rng.choice([4, 8, 12])),
        norm=str(rng.choice(["layernorm", "rmsnorm"])),
        pooling=str(rng.choice(["mean", "max"])),
    )
    if not conformer:
        model.update(norm_position=str(rng.choice(["pre", "post"])), num_blocks=int(rng.choice([1, 2])))
    hls = dict(card["hls"])
    hls["softmax"] = {"table_size": int(rng.choice([64, 256, 1024])), "inv_table_size": int(rng.choice([64, 512]))}
    quant = dict(card["quant"])
    for role in ("qkv", "score", "context", "attn_out", "ffn_out", "embed", "logits"):
        quant[role] = {"bits": bits, "integer": int(rng.choice([3, 4, 5]))}
    quant["norm"] = {"bits": bits, "integer": 3}
    quant["softmax"] = {"bits": int(rng.choice([8, 10, 12])), "integer": 1, "keep_negative": False}
    raw = {**card, "model": model, "hls": hls, "quant": quant}
    if conformer:
        raw = conformer_card(raw, rng)
    raw["model"] = {**raw["model"], **random_attention(rng, raw["quant"], bits, seq_len=9 if conformer else 6)}
    return validate(raw)


def random_attention(rng, quant: dict, bits: int, seq_len: int) -> dict:
    """Return the model keys of a random attention kind (softmax | linformer | cosformer | grouped) and its
    parameters for ``seq_len`` tokens; adds the variant's quantizer roles to ``quant``."""
    kind = str(rng.choice(["softmax", "linformer", "cosformer", "grouped"]))
    if kind == "linformer":
        quant["lin_kv"] = {"bits": bits, "integer": int(rng.choice([4, 5, 6]))}
        return {"attention": kind, "linformer_k": int(rng.choice([2, 3, 4]))}
    if kind == "cosformer":
        unsigned = {"keep_negative": False}
        quant["cos_feat"] = {"bits": bits, "integer": int(rng.choice([3, 4, 5])), **unsigned}
        quant["cos_kv"] = {"bits": bits + 2, "integer": int(rng.choice([7, 9]))}
        quant["cos_ksum"] = {"bits": bits, "integer": int(rng.choice([6, 8])), **unsigned}
        quant["cos_num"] = {"bits": bits + 4, "integer": int(rng.choice([10, 12]))}
        quant["cos_den"] = {"bits": bits + 4, "integer": int(rng.choice([8, 10])), **unsigned}
        return {"attention": kind, "cosformer_m": int(rng.choice([0, seq_len + 3]))}
    if kind == "grouped":
        return {"attention": kind, "attention_group": int(rng.choice([g for g in (2, 3) if seq_len % g == 0]))}
    return {"attention": kind}


def conformer_card(raw: dict, rng) -> dict:
    """Return a tiny kws conformer variant of a tiny transformer card."""
    from hwflow.config import validate

    base = validate({"name": "x", "data": {"kind": "kws"}, "model": {"kind": "conformer"}})
    model = {**base["model"], **{k: raw["model"][k] for k in ("embed_dim", "num_heads", "key_dim", "ffn_dim", "norm")}}
    model.update(
        pooling=raw["model"]["pooling"],
        conv_kernel=int(rng.choice([3, 5])),
        subsampling=2,
        swish_table_size=int(rng.choice([256, 1024])),
    )
    quant = {**raw["quant"], "input": {"bits": 16, "integer": 5}}
    return {**raw, "data": base["data"], "model": model, "quant": quant, "train": raw["train"]}


def _card_exactness(card, tmp_path, shape=None, n_cls=3) -> dict:
    """Return {'outputs': fraction identical, 'layers': {layer: own exact fraction}} for a briefly trained card."""
    from hwflow.hls import compile_model, convert, csim_outputs
    from hwflow.nn import build
    from hwflow.nn.transformer import set_input_norm
    from hwflow.train import set_seed
    from hwflow.verify import layer_trace

    set_seed(1)
    rng = np.random.default_rng(2)
    conformer = card["model"]["kind"] == "conformer"
    shape = shape or ((18, 8) if conformer else (6, 4))
    # log-mel-like inputs for the conformer, standardized-feature-like for the transformer
    x = (rng.normal(-4, 3, (64, *shape)) if conformer else rng.normal(0, 1, (64, *shape))).astype(np.float32)
    model = build(card, True, input_shape=shape, n_classes=n_cls)
    set_input_norm(model, x)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, rng.integers(0, n_cls, len(x)), epochs=2, batch_size=16, verbose=0)  # non-trivial weights
    hm = compile_model(convert(card, model, output_dir=tmp_path / card.name, calibration_data=x))
    y, traced = csim_outputs(hm, x.astype(np.float64))
    yq = model.predict(x, verbose=0)
    records = layer_trace(model, hm, x.astype(np.float64), traced)
    own = {r["layer"]: r.get("local_exact_fraction", r.get("exact_fraction")) for r in records if "_hls" in r}
    return {"outputs": float(np.mean(np.asarray(y).reshape(yq.shape) == yq)), "layers": own}


def _not_exact(r: dict) -> dict:
    """Return {layer: own exact fraction} of the layers whose own output differs from Keras (none may)."""
    return {k: v for k, v in r["layers"].items() if v is not None and v != 1.0}


def _check_card(seed, tmp_path):
    card = random_card(seed)
    r = _card_exactness(card, tmp_path)
    off = _not_exact(r)
    assert r["outputs"] == 1.0 and not off, f"card {seed}: outputs {r['outputs']}, layers not exact: {off}"


def test_random_card_keras_equals_csim(tmp_path, hls_toolchain):
    _check_card(0, tmp_path)


# seed 0 (default suite): transformer + cosFormer; the slow seeds add softmax (1-5), Linformer (6: transformer,
# 15: conformer), grouped (9: conformer, 14: transformer) and cosFormer (45: conformer) cards
@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6, 9, 14, 15, 45])
def test_random_cards_keras_equals_csim(seed, tmp_path, hls_toolchain):
    _check_card(seed, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name,shape,n_cls", [("jet_transformer", (16, 4), 5), ("kws_conformer", (49, 40), 12)])
def test_default_architectures_keras_equals_csim(name, shape, n_cls, tmp_path, hls_toolchain):
    from hwflow.config import load_card

    r = _card_exactness(load_card(name), tmp_path, shape, n_cls)
    off = _not_exact(r)
    assert r["outputs"] == 1.0 and not off, f"{name}: outputs {r['outputs']}, layers not exact: {off}"
