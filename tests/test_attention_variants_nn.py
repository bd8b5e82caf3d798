"""model.attention in both builders: each variant builds (QKeras and float twin, same layer names), runs, serializes,
and its parameter count formula holds; bad settings stop with a one-line error naming the key."""

import numpy as np
import pytest

from hwflow.config import validate
from hwflow.util import HwflowError

pytest.importorskip("qkeras")

JET = {"kind": "jets", "jets": {"n_constituents": 8}}
VARIANTS = [
    {"attention": "linformer", "linformer_k": 3},
    {"attention": "cosformer"},
    {"attention": "cosformer", "cosformer_m": 40},
    {"attention": "grouped", "attention_group": 4},
]


def _jet_card(**m):
    model = {"kind": "transformer", "embed_dim": 8, "key_dim": 4, "ffn_dim": 16, **m}
    return validate({"name": "av_nn", "data": JET, "model": model})


def _kws_card(**m):
    model = {"kind": "conformer", "embed_dim": 16, "ffn_dim": 32, "key_dim": 8, "conv_kernel": 7, **m}
    return validate({"name": "av_cf", "data": {"kind": "kws"}, "model": model})


LAYER = {"linformer": "QLinformerAttention", "cosformer": "QCosformerAttention", "grouped": "QGroupedAttention"}


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_jet_transformer_variant_builds_runs_and_round_trips(variant, tmp_path):
    import tensorflow as tf

    from hwflow.nn import build
    from hwflow.nn.layers import get_custom_objects
    from hwflow.nn.transformer import parameter_count

    card = _jet_card(**variant)
    qm, fm = build(card, quantized=True), build(card, quantized=False)
    assert [ly.name for ly in qm.layers] == [ly.name for ly in fm.layers]
    layer = qm.get_layer("mha0")
    assert type(layer).__name__ == LAYER[variant["attention"]] == type(fm.get_layer("mha0")).__name__
    assert layer.qkv_quantizer is not None and fm.get_layer("mha0").qkv_quantizer is None
    assert qm.count_params() == parameter_count(card) == fm.count_params()
    x = np.random.default_rng(0).normal(0, 1, (4, 8, 4)).astype("float32")
    y = qm.predict(x, verbose=0)
    assert y.shape == (4, 5) and np.allclose(y.sum(-1), 1, atol=1e-3)
    qm.save(tmp_path / "m.h5")
    back = tf.keras.models.load_model(tmp_path / "m.h5", custom_objects=get_custom_objects(), compile=False)
    assert np.array_equal(back.predict(x, verbose=0), y)


@pytest.mark.parametrize(
    "variant",
    [
        {"attention": "linformer", "linformer_k": 5},
        {"attention": "cosformer"},
        {"attention": "grouped", "attention_group": 5},
    ],
    ids=lambda v: v["attention"],
)
def test_conformer_variant_builds_and_runs(variant):
    from hwflow.nn.conformer import build_conformer, parameter_count

    card = _kws_card(**variant)
    qm, fm = build_conformer(card, True), build_conformer(card, False)
    assert type(qm.get_layer("b0_mha")).__name__ == LAYER[variant["attention"]]
    assert [ly.name for ly in qm.layers] == [ly.name for ly in fm.layers]
    # the variant's extra weights, by formula and by Keras, against the softmax conformer of the same card
    base = _kws_card()
    assert qm.count_params() - build_conformer(base, True).count_params() == parameter_count(card) - parameter_count(
        base
    )
    y = qm.predict(np.random.default_rng(1).normal(0, 1, (2, 49, 40)).astype("float32"), verbose=0)
    assert y.shape == (2, 12) and np.isfinite(y).all()


@pytest.mark.parametrize(
    "variant,msg",
    [
        ({"attention": "linformer", "linformer_k": 9}, "linformer_k = 9 exceeds the sequence length 8"),
        ({"attention": "grouped", "attention_group": 3}, "attention_group = 3 does not divide the sequence length 8"),
        ({"attention": "cosformer", "cosformer_m": 4}, "cosformer_m = 4 is below the sequence length 8"),
    ],
)
def test_bad_variant_settings_are_one_line_errors(variant, msg):
    from hwflow.nn import build

    with pytest.raises(HwflowError, match=msg):
        build(_jet_card(**variant), quantized=True)


def test_unknown_attention_is_rejected_by_the_schema():
    with pytest.raises(Exception, match="model.attention"):
        _jet_card(attention="performer")


def test_grouped_layer_equals_attention_over_token_groups():
    """Float QGroupedAttention = plain attention on (N/g, g*dk) rows built from the same per-token projections."""
    import tensorflow as tf

    from hwflow.nn.layers import QGroupedAttention

    layer = QGroupedAttention(2, 4, group=2)
    x = tf.constant(np.random.default_rng(2).normal(0, 1, (3, 8, 8)).astype("float32"))
    y = layer(x, x).numpy()
    w = {n: getattr(layer, f"{n}_kernel").numpy() for n in ("query", "key", "value", "output")}
    b = {n: getattr(layer, f"{n}_bias").numpy() for n in ("query", "key", "value", "output")}
    q, k, v = (x.numpy() @ w[n] + b[n] for n in ("query", "key", "value"))
    ctx = np.zeros((3, 8, 8))
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        qg, kg, vg = (a[..., sl].reshape(3, 4, 8) for a in (q, k, v))
        s = qg @ kg.transpose(0, 2, 1) / np.sqrt(8)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ctx[..., sl] = (a @ vg).reshape(3, 8, 4)
    assert np.abs(ctx @ w["output"] + b["output"] - y).max() < 1e-4


def test_cosformer_layer_equals_quadratic_form():
    """Float QCosformerAttention (linear form) = the quadratic cos-re-weighted ReLU attention it rewrites."""
    import tensorflow as tf

    from hwflow.nn.layers import QCosformerAttention

    tf.keras.utils.set_random_seed(3)
    layer = QCosformerAttention(1, 4, horizon=10)
    x = tf.constant(np.random.default_rng(3).normal(0, 1, (2, 6, 8)).astype("float32"))
    layer(x)  # builds the kernels
    t = {k: v.numpy() for k, v in layer.intermediates(x).items()}
    q, k, v = np.maximum(t["q"], 0), np.maximum(t["k"], 0), t["v"]
    i = np.arange(6)
    sim = (q @ k.transpose(0, 2, 1)) * np.cos(np.pi / 2 * (i[:, None] - i[None, :]) / 10)
    den = sim.sum(-1, keepdims=True)
    # a query whose ReLU features are all zero has a zero normaliser: the layer (like the C++) defines its output as 0
    ctx = np.where(den > 0, (sim @ v) / np.where(den > 0, den, 1.0), 0.0)
    assert (den > 0).mean() > 0.5  # most rows exercise the division
    assert np.abs(ctx - t["context"]).max() < 1e-4


def test_side_by_side_table_counts_conformer_frames(tmp_path, monkeypatch):
    """The attention table's N is the conformer's frames after subsampling (25 of 49), not a jet setting."""
    from pathlib import Path

    from hwflow.attention_table import collect, markdown
    from hwflow.config import load_card
    from hwflow.nn.attention import variable_products

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("HWFLOW_ROOT", str(tmp_path))  # no trained models or reports here: figures show as '–'
    (tmp_path / "models").mkdir()
    for name in ("kws_conformer", "kws_conformer_grouped", "jet_transformer_grouped"):
        (tmp_path / "models" / f"{name}.yaml").write_text((repo / "models" / f"{name}.yaml").read_text())
    rows = collect(["kws_conformer_grouped", "jet_transformer_grouped"])
    card = load_card("kws_conformer_grouped")
    assert [r["seq_len"] for r in rows] == [25, 16]
    assert (
        rows[0]["attn_products"] == variable_products(card, 25) * card["model"]["num_blocks"] == 2 * 5 * 5 * 2 * 5 * 8
    )
    assert "| grouped (g = 5) (`kws_conformer_grouped`) | 25 | 2 x 8, 40, 1 | – / – / – |" in markdown(rows)
