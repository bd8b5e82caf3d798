"""Small models for the RTL route's tests and smoke runs: stock-hls4ml QDense + quantized_relu MLPs (2-D and 3-D
inputs) and a small transformer built from hwflow's attention/norm layers (converted by hwflow.hls).

Used by tests/test_rtl*.py and by ``python -m hwflow.rtl.demo OUT_DIR [--kind seq|flat]`` (the whole flow without a
trained card).
"""

from __future__ import annotations

import numpy as np


def tiny_qkeras(kind: str = "seq", seed: int = 0):
    """Return a small QKeras model: 'seq' = (tokens, features) input with pointwise QDense, Add and average pooling;
    'flat' = 2-D input MLP with a BatchNormalization and a RND/SAT quantized_bits activation."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    tf.random.set_seed(seed)
    q = {"kernel_quantizer": quantized_bits(6, 0, alpha=1), "bias_quantizer": quantized_bits(6, 0, alpha=1)}
    if kind == "seq":
        inp = tf.keras.Input((3, 4), name="x")
        h = QDense(6, name="d1", **q)(inp)
        h = QActivation(quantized_relu(8, 3), name="r1")(h)
        g = QDense(6, name="d2", **q)(h)
        g = QActivation(quantized_relu(8, 3), name="r2")(g)
        h = tf.keras.layers.Add(name="res")([h, g])
        h = tf.keras.layers.GlobalAveragePooling1D(name="pool")(h)
        out = QDense(3, name="head", **q)(h)
    elif kind == "flat":
        inp = tf.keras.Input((5,), name="x")
        h = QDense(8, name="d1", **q)(inp)
        h = tf.keras.layers.BatchNormalization(name="bn")(h)
        h = QActivation(quantized_relu(6, 2), name="r1")(h)
        h = QDense(4, name="d2", **q)(h)
        h = QActivation(quantized_bits(8, 2, alpha=1), name="q2")(h)
        out = QDense(3, name="head", **q)(h)
    else:
        raise ValueError(f"unknown demo kind {kind!r}: use 'seq' or 'flat'")
    model = tf.keras.Model(inp, out)
    if kind == "flat":
        # non-trivial BatchNorm statistics so the scale/bias path is exercised
        bn = model.get_layer("bn")
        rng = np.random.default_rng(seed)
        bn.set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.3, 8), rng.normal(0, 0.5, 8), rng.uniform(0.5, 2, 8)])
    return model


def convert_stock(model, output_dir: str, part: str = "xcvu13p-flga2577-2-e"):
    """Return the hls4ml ModelGraph (Vitis, io_parallel, Latency) of a QKeras model with per-layer config."""
    import hls4ml

    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    return hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=output_dir, backend="Vitis", io_type="io_parallel", part=part
    )


def sample_inputs(model, n: int, seed: int = 1, scale: float = 2.0) -> np.ndarray:
    """Return n float32 random inputs of the model's input shape (wide enough to hit rounding and saturation)."""
    shape = tuple(int(d) for d in model.input_shape[1:])
    return np.random.default_rng(seed).normal(0, scale, (n, *shape)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    """Run the open RTL flow on a tiny stock model into OUT_DIR (firmware/, reports/); return the exit code."""
    import argparse
    from pathlib import Path

    from . import rtl_from_hls

    ap = argparse.ArgumentParser(prog="python -m hwflow.rtl.demo", description="open RTL flow on a tiny stock model")
    ap.add_argument("out_dir")
    ap.add_argument("--kind", choices=("seq", "flat"), default="seq")
    ap.add_argument("-n", "--samples", type=int, default=200)
    ap.add_argument("--no-yosys", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out_dir).resolve()
    model = tiny_qkeras(args.kind)
    hls_model = convert_stock(model, str(out / "hls"))
    cfg = {"iverilog_samples": 32, "yosys_timeout_s": 900}  # the rest: the card schema's rtl defaults
    r = rtl_from_hls(
        hls_model,
        sample_inputs(model, args.samples),
        f"tiny_{args.kind}",
        out / "firmware" / "rtl",
        out / "reports",
        cfg,
        "xcvu13p-flga2577-2-e",
        yosys=not args.no_yosys,
    )
    print(
        f"bit-exact vs C sim {r['bit_exact_fraction_vs_csim']}, latency {r['latency_cycles']} cycles, II "
        f"{r['interval']}, "
        f"resources {r['resources']}; report {out / 'reports' / 'rtl.md'}"
    )
    return 0


def small_transformer(
    seed: int = 0,
    norm2: str = "rms",
    T: int = 8,
    F: int = 4,
    D: int = 8,
    H: int = 2,
    DK: int = 4,
    FFN: int = 16,
    NCLS: int = 5,
):
    """Return a small QKeras transformer with hwflow's layers: embedding QDense -> MHA(x, x) + residual + LayerNorm ->
    FFN + residual + RMSNorm (or LayerNorm) -> mean pool -> classifier -> softmax; T tokens of F features."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    from hwflow.nn.layers import QLayerNormalization, QMultiHeadAttention, QRMSNormalization

    tf.keras.utils.set_random_seed(seed)
    w, b, a = quantized_bits(8, 0, alpha=1), quantized_bits(8, 2, alpha=1), quantized_bits(16, 5)
    x_in = tf.keras.Input((T, F), name="x")
    h = QDense(D, kernel_quantizer=w, bias_quantizer=b, name="embed")(x_in)
    h = QActivation(a, name="embed_q")(h)
    m = QMultiHeadAttention(
        H,
        DK,
        kernel_quantizer=w,
        bias_quantizer=b,
        qkv_quantizer=a,
        score_quantizer=a,
        softmax_quantizer=quantized_bits(12, 1, keep_negative=False),
        context_quantizer=a,
        output_quantizer=a,
        name="mha",
    )(h, h)
    h = tf.keras.layers.Add(name="res1")([h, m])
    h = QLayerNormalization(
        output_quantizer=quantized_bits(16, 4),
        gamma_quantizer=quantized_bits(8, 2, alpha=1),
        beta_quantizer=b,
        name="ln1",
    )(h)
    f = QDense(FFN, kernel_quantizer=w, bias_quantizer=b, name="ffn1")(h)
    f = QActivation(quantized_relu(16, 5), name="ffn1_relu")(f)
    f = QDense(D, kernel_quantizer=w, bias_quantizer=b, name="ffn2")(f)
    f = QActivation(a, name="ffn2_q")(f)
    h = tf.keras.layers.Add(name="res2")([h, f])
    if norm2 == "rms":
        h = QRMSNormalization(
            output_quantizer=quantized_bits(16, 4), gamma_quantizer=quantized_bits(8, 2, alpha=1), name="ln2"
        )(h)
    else:
        h = QLayerNormalization(output_quantizer=quantized_bits(16, 4), name="ln2")(h)
    h = tf.keras.layers.GlobalAveragePooling1D(name="pool")(h)
    h = QActivation(a, name="pool_q")(h)
    o = QDense(NCLS, kernel_quantizer=w, bias_quantizer=b, name="cls")(h)
    o = QActivation(a, name="logits")(o)
    o = tf.keras.layers.Activation("softmax", name="softmax")(o)
    model = tf.keras.Model(x_in, o)
    # distinct Q/K/V kernels and gamma != 1 so the test exercises every path
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if hasattr(layer, "query_kernel"):
            for n in ("query", "key", "value", "output"):
                k = getattr(layer, f"{n}_kernel")
                k.assign(rng.uniform(-0.6, 0.6, k.shape).astype("float32"))
        if hasattr(layer, "gamma") and layer.gamma is not None:
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype("float32"))
    return model


if __name__ == "__main__":
    import sys

    sys.exit(main())


def small_conformer(
    seed: int = 0,
    n_frames: int = 9,
    n_mels: int = 6,
    D: int = 8,
    H: int = 2,
    DK: int = 4,
    FFN: int = 8,
    K: int = 3,
    attention: dict | None = None,
):
    """Return (card, QKeras model) of a small conformer built by hwflow.nn.conformer (strided Conv1D front end,
    feature norm, FFN/swish, attention, GLU + depthwise conv with folded batch norm, mean pool, 3 classes) with
    non-trivial batch-norm statistics, for the RTL route's tests. ``attention``: model keys of another attention
    kind, e.g. {"attention": "grouped", "attention_group": 3}."""
    import tensorflow as tf

    from hwflow.config import validate
    from hwflow.nn.conformer import build_conformer

    card = validate(
        {
            "name": "tiny_conformer",
            "data": {"kind": "kws", "kws": {"n_frames": n_frames, "n_mels": n_mels}},
            "model": {
                "kind": "conformer",
                "embed_dim": D,
                "num_heads": H,
                "key_dim": DK,
                "ffn_dim": FFN,
                "conv_kernel": K,
                "subsampling": 2,
                "swish_table_size": 256,
                "swish_table_range": 4.0,
                **(attention or {}),
            },
            "quant": {"default": {"bits": 8, "integer": 0}},
        }
    )
    tf.keras.utils.set_random_seed(seed)
    model = build_conformer(card, True, n_classes=3)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if hasattr(layer, "moving_variance"):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c))
            layer.moving_mean.assign(rng.normal(0, 0.5, c))
            layer.moving_variance.assign(rng.uniform(0.5, 2, c))
    return card, model
