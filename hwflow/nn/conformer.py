"""QKeras conformer for keyword spotting, and the conformer layers hls4ml lacks (swish, GLU, depthwise conv1d).

Architecture (Gulati et al. 2020, sized for an FPGA; names are the Keras layer names, which hls4ml
keeps, so they are the keys of ``hls.layer_name`` in a card)::

    input (frames, mels) -> input_q -> feature_norm (per-mel batch norm, folded: QDepthwiseConv1D kernel 1)
    front end: subsample (QConv1D, kernel 3, stride model.subsampling, 'same') -> subsample_act (quantized ReLU)
               -> proj (QDense per frame, to model.embed_dim) -> proj_act
    blocks i = 0..num_blocks-1 (pre-norm modules, each with a residual add, then a block norm):
        ½ FFN:  b{i}_ffn1_norm -> b{i}_ffn1_dense1 -> b{i}_ffn1_hidden -> b{i}_ffn1_swish (QSwish)
                -> b{i}_ffn1_dense2 -> b{i}_ffn1_out -> b{i}_ffn1_add
        MHSA:   b{i}_mha_norm -> b{i}_mha (QMultiHeadAttention) -> b{i}_mha_add
        conv:   b{i}_conv_norm -> b{i}_conv_pw1 (QDense to 2*D) -> b{i}_conv_pw1_act -> b{i}_conv_glu (QGLU)
                -> b{i}_conv_dw (QDepthwiseConv1D, batch norm folded in) -> b{i}_conv_swish (QSwish)
                -> b{i}_conv_pw2 (QDense) -> b{i}_conv_out -> b{i}_conv_add
        ½ FFN:  b{i}_ffn2_... (as above) -> b{i}_ffn2_add
        b{i}_norm (LayerNorm or RMSNorm, model.norm)
    pool (QGlobalAveragePooling1D, hls4ml's fixed-point mean) -> pool_act -> classifier (QDense) -> logits -> softmax

Notes on exactness (what the firmware computes is what this model computes):

- The ½ of each macaron feed-forward module is absorbed into its second projection (a trained
  linear layer; ``0.5 * W`` is just another ``W``), so no extra scaling layer is needed in hardware.
- Batch normalization after the depthwise convolution is folded into it *inside the layer*, as
  QKeras does for ``QConv2DBatchnorm``: training uses batch statistics, the folded kernel and bias
  are quantized, and inference uses the moving statistics; the firmware stores exactly the quantized
  folded kernel and bias, so folding is exact. ``fold_batchnorm=False`` keeps a plain depthwise conv.
- ``QSwish`` and ``QGLU`` evaluate sigmoid with the same look-up table as the C++ kernels
  (``hwflow.reference.conformer.SigmoidTable``), with a straight-through gradient of the true sigmoid,
  and round their outputs in float64 like the fixed-point cast; the float twin uses the exact sigmoid.

Quantizer roles (card ``quant`` section) and fallbacks when a role is not in the card: see
``ROLE_DEFAULTS`` (activations) and ``WEIGHT_ROLES`` (weights, falling back to ``quant.default``).
"""

from __future__ import annotations

import math

from ..util import HwflowError

# activation-role fallbacks (bits, integer, keep_negative); weights fall back to quant.default
ROLE_DEFAULTS = {
    "input": (16, 5, True),
    "frontend": (16, 5, False),  # quantized ReLU after the subsampling conv
    "embed": (16, 5, True),
    "ffn_hidden": (16, 5, True),
    "ffn_act": (16, 5, True),  # swish output (>= -0.279, so signed)
    "ffn_out": (16, 5, True),
    "qkv": (16, 5, True),
    "score": (16, 5, True),
    "softmax": (12, 1, False),
    "context": (16, 5, True),
    "attn_out": (16, 5, True),
    "conv_pw": (16, 5, True),
    "glu": (16, 5, True),
    "conv_dw": (16, 5, True),
    "conv_act": (16, 5, True),
    "conv_out": (16, 5, True),
    "norm": (16, 4, True),
    "norm_gamma": (8, 2, True),
    "pool": (16, 5, True),
    "logits": (16, 5, True),
    # input normalization (folded batch norm): scale ~ 1/std of a log-mel bin, shift ~ -mean/std
    "in_norm_scale": (16, 3, True),
    "in_norm_shift": (16, 5, True),
    "in_norm": (16, 4, True),
    # weights of the depthwise conv with batch norm folded in: gamma/sqrt(var) scales them beyond [-1, 1)
    "dw_kernel": (8, 2, True),
    "dw_bias": (12, 4, True),
}
WEIGHT_ROLES = ("default", "bias")
ROLES = WEIGHT_ROLES + tuple(ROLE_DEFAULTS)


def role_spec(card, role: str) -> dict | None:
    """Return the quantizer spec of a role (card value, else the role's fallback), or None when quantization is off."""
    from .quant import role_spec_with

    return role_spec_with(card, role, ROLE_DEFAULTS)


def _quantizer(card, role: str, quantized: bool, kind: str = "bits"):
    from .quant import builder_quantizer

    return builder_quantizer(card, role, quantized, ROLE_DEFAULTS, kind)


# ----------------------------------------------------------------------------------------------
# Keras layers (TensorFlow is imported lazily so that `import hwflow.nn.conformer` stays cheap)
# ----------------------------------------------------------------------------------------------


def _layers():
    """Return the conformer's Keras layer classes (hwflow.nn.conformer_layers: imported on first use, needs TF)."""
    from .conformer_layers import LAYER_CLASSES

    return LAYER_CLASSES


def __getattr__(name):
    # QSwish / QGLU / QDepthwiseConv1D are created on first access so importing the module needs no TensorFlow
    if name in ("QSwish", "QGLU", "QDepthwiseConv1D"):
        return _layers()[name]
    raise AttributeError(name)


def get_custom_objects() -> dict:
    """Return the custom-object dict of the conformer layers (QSwish, QGLU, QDepthwiseConv1D)."""
    return dict(_layers())


# ----------------------------------------------------------------------------------------------
# builder
# ----------------------------------------------------------------------------------------------


def input_shape_from_card(card) -> tuple[int, int]:
    """Return (n_frames, n_mels) of a kws card."""
    if card["data"]["kind"] != "kws":
        raise HwflowError(
            f"the conformer builder derives its input from data.kws; card '{card.name}' has data.kind "
            f"'{card['data']['kind']}': set data.kind kws or pass input_shape="
        )
    k = card["data"]["kws"]
    return int(k["n_frames"]), int(k["n_mels"])


def n_classes_from_card(card) -> int:
    """Return the number of classes of a kws card (keywords + unknown + silence)."""
    k = card["data"]["kws"]
    return len(k["keywords"]) + int(bool(k["unknown_class"])) + int(bool(k["silence_class"]))


def table_from_card(card) -> dict:
    """Return the swish/GLU sigmoid-table settings (table_size, table_range, table_t) of a card."""
    from ..config import sigmoid_table_defaults

    m, default = card["model"], sigmoid_table_defaults()  # the defaults live in the card schema only
    return {
        "table_size": int(m.get("swish_table_size") or default["table_size"]),
        "table_range": float(m.get("swish_table_range") or default["table_range"]),
        "table_t": str(m.get("swish_table_t") or default["table_t"]),
    }


def frames_after_subsampling(n_frames: int, stride: int) -> int:
    """Return the number of frames after the 'same'-padded strided front-end convolution."""
    return int(math.ceil(n_frames / stride))


def check_model_section(card, input_shape=None) -> None:
    """Raise HwflowError when the card's model section asks for a conformer this builder cannot make."""
    m = card["model"]
    n_frames = (input_shape or input_shape_from_card(card))[0]
    t = frames_after_subsampling(n_frames, m["subsampling"])
    if t > 64:
        raise HwflowError(
            f"model.subsampling {m['subsampling']} leaves {t} frames of {n_frames}: attention over more "
            f"than 64 frames does not fit an FPGA; raise model.subsampling"
        )
    if m["pooling"] not in ("mean", "max"):
        raise HwflowError(f"model.pooling '{m['pooling']}' is not available for the conformer: use mean or max")
    if m["conv_kernel"] > t:
        raise HwflowError(
            f"model.conv_kernel {m['conv_kernel']} is wider than the {t} frames after subsampling: use a kernel <= {t}"
        )
    if m["conv_kernel"] % 2 == 0:
        raise HwflowError(
            f"model.conv_kernel {m['conv_kernel']} is even: use an odd kernel so 'same' padding is centred"
        )


def build_conformer(card, quantized: bool = True, input_shape: tuple | None = None, n_classes: int | None = None):
    """Return the (uncompiled) QKeras conformer classifier of a card, or its float twin when ``quantized`` is False."""
    import tensorflow as tf
    from qkeras import QActivation, QConv1D, QDense

    from .attention import attention_layer
    from .layers import QGlobalAveragePooling1D, QLayerNormalization, QRMSNormalization, QSoftmax
    from .quant import add_type, fixed_type
    from .transformer import table_settings

    layers = _layers()
    QSwish, QGLU, QDepthwiseConv1D = layers["QSwish"], layers["QGLU"], layers["QDepthwiseConv1D"]
    check_model_section(card, input_shape)
    m = card["model"]
    quantized = bool(quantized and card["quant"].get("enabled", True))
    n_frames, n_mels = tuple(input_shape) if input_shape is not None else input_shape_from_card(card)
    n_cls = int(n_classes or n_classes_from_card(card))
    D, dff, K = m["embed_dim"], m["ffn_dim"], m["conv_kernel"]
    table = table_from_card(card)
    fold = bool(m.get("fold_batchnorm", True))
    L = tf.keras.layers

    def q(role, kind="bits"):
        return _quantizer(card, role, quantized, kind)

    def act(role, name, kind="bits"):
        # quantized: QActivation with the role's quantizer; float twin: the same-named Keras Activation
        if quantized:
            return QActivation(q(role, kind), name=name)
        return L.Activation("relu" if kind == "relu" else "linear", name=name)

    def dense(units, name):
        return QDense(units, kernel_quantizer=q("default"), bias_quantizer=q("bias"), name=name)

    def swish(role, name):
        return QSwish(output_quantizer=q(role), use_table=quantized, name=name, **table)

    tables = table_settings(card)

    def t(role):
        # the fixed type a role's quantizer produces (None in the float twin): what hls4ml gives that tensor
        return fixed_type(q(role))

    def residual(x, x_t, f, f_role, name):
        # hls4ml's Add holds the exact sum: one more integer bit than the wider operand
        s_t = add_type(x_t, t(f_role)) if x_t is not None and t(f_role) is not None else None
        return L.Add(name=name)([x, f]), s_t

    def norm(name, input_t):
        exact = {"input_type": input_t, **tables["norm"]}
        if m["norm"] == "rmsnorm":
            return QRMSNormalization(
                epsilon=1e-6, output_quantizer=q("norm"), gamma_quantizer=q("norm_gamma"), name=name, **exact
            )
        return QLayerNormalization(
            epsilon=1e-3,
            output_quantizer=q("norm"),
            gamma_quantizer=q("norm_gamma"),
            beta_quantizer=q("bias"),
            name=name,
            **exact,
        )

    def drop(x, name):
        return L.Dropout(m["dropout"], name=name)(x) if m["dropout"] > 0 else x

    def ffn(x, x_t, p):
        f = norm(f"{p}_norm", x_t)(x)
        f = dense(dff, f"{p}_dense1")(f)
        f = act("ffn_hidden", f"{p}_hidden")(f)
        f = swish("ffn_act", f"{p}_swish")(f)
        f = dense(D, f"{p}_dense2")(f)  # the macaron 1/2 is absorbed into this trained projection
        f = act("ffn_out", f"{p}_out")(f)
        f = drop(f, f"{p}_drop")
        return residual(x, x_t, f, "ffn_out", f"{p}_add")

    def mhsa(x, x_t, p):
        a = norm(f"{p}_norm", x_t)(x)
        # model.attention (hwflow.nn.attention), exact from its input type (the norm's output)
        a = attention_layer(card, q, quantized, int(a.shape[1]), p, input_type=t("norm"))(a, a)
        a = drop(a, f"{p}_drop")
        return residual(x, x_t, a, "attn_out", f"{p}_add")

    def conv_module(x, x_t, p):
        c = norm(f"{p}_norm", x_t)(x)
        c = dense(2 * D, f"{p}_pw1")(c)
        c = act("conv_pw", f"{p}_pw1_act")(c)
        c = QGLU(output_quantizer=q("glu"), use_table=quantized, name=f"{p}_glu", **table)(c)
        c = QDepthwiseConv1D(
            K,
            padding="same",
            depthwise_quantizer=q("dw_kernel" if fold else "default"),
            bias_quantizer=q("dw_bias" if fold else "bias"),
            output_quantizer=q("conv_dw"),
            fold_batchnorm=fold,
            name=f"{p}_dw",
        )(c)
        if not fold:
            c = L.BatchNormalization(name=f"{p}_bn")(c)
        c = swish("conv_act", f"{p}_swish")(c)
        c = dense(D, f"{p}_pw2")(c)
        c = act("conv_out", f"{p}_out")(c)
        c = drop(c, f"{p}_drop")
        return residual(x, x_t, c, "conv_out", f"{p}_add")

    inp = L.Input(shape=(n_frames, n_mels), name="features")
    h = act("input", "input_q")(inp)
    # per-mel feature normalization: a batch norm folded into a kernel-1 depthwise conv, so the firmware
    # applies exactly the quantized scale and shift (log-mel features are not zero-mean or unit-variance)
    h = QDepthwiseConv1D(
        1,
        padding="valid",
        use_bias=False,
        depthwise_quantizer=q("in_norm_scale"),
        bias_quantizer=q("in_norm_shift"),
        output_quantizer=q("in_norm"),
        fold_batchnorm=True,
        depthwise_initializer="ones",
        name="feature_norm",
    )(h)
    h = QConv1D(
        D,
        3,
        strides=m["subsampling"],
        padding="same",
        kernel_quantizer=q("default"),
        bias_quantizer=q("bias"),
        name="subsample",
    )(h)
    h = act("frontend", "subsample_act", kind="relu")(h)
    h = dense(D, "proj")(h)
    h = act("embed", "proj_act")(h)
    h_t = t("embed")  # type of the residual stream, tracked so each norm knows its input type
    for i in range(m["num_blocks"]):
        h, h_t = ffn(h, h_t, f"b{i}_ffn1")
        h, h_t = mhsa(h, h_t, f"b{i}_mha")
        h, h_t = conv_module(h, h_t, f"b{i}_conv")
        h, h_t = ffn(h, h_t, f"b{i}_ffn2")
        h, h_t = norm(f"b{i}_norm", h_t)(h), t("norm")
    if m["pooling"] == "mean":  # hls4ml's fixed-point mean, exact from the last norm's type
        h = QGlobalAveragePooling1D(input_type=h_t, name="pool")(h)
    else:
        h = L.GlobalMaxPooling1D(name="pool")(h)
    h = act("pool", "pool_act")(h)
    h = dense(n_cls, "classifier")(h)
    h = act("logits", "logits")(h)
    # the firmware's softmax (exact) on the logits' type; the float twin keeps the float softmax
    out = QSoftmax(input_type=t("logits"), name="softmax", **tables["softmax"])(h)
    name = f"{card.name if hasattr(card, 'name') else 'model'}_{'qkeras' if quantized else 'float'}"
    return tf.keras.Model(inp, out, name=name.replace("-", "_"))


def parameter_count(card, input_shape: tuple | None = None, n_classes: int | None = None) -> int:
    """Return the number of trainable parameters the builder creates for a card (closed formula)."""
    m = card["model"]
    n_frames, n_mels = tuple(input_shape) if input_shape is not None else input_shape_from_card(card)
    n_cls = int(n_classes or n_classes_from_card(card))
    D, H, dk, dff, K = m["embed_dim"], m["num_heads"], m["key_dim"], m["ffn_dim"], m["conv_kernel"]
    fold = bool(m.get("fold_batchnorm", True))
    norm = D if m["norm"] == "rmsnorm" else 2 * D
    ffn = norm + (D * dff + dff) + (dff * D + D)
    mha = norm + 3 * (D * H * dk + H * dk) + (H * dk * D + D)
    if m.get("attention", "softmax") == "linformer":
        mha += 2 * m["linformer_k"] * frames_after_subsampling(n_frames, m["subsampling"])  # E, F: k x N
    conv = norm + (D * 2 * D + 2 * D) + (K * D + D) + 2 * D + (D * D + D)  # pw1, dw (+bias), BN gamma/beta, pw2
    block = 2 * ffn + mha + conv + norm
    front = 3 * n_mels + (3 * n_mels * D + D) + (D * D + D)  # input norm (kernel, gamma, beta), conv, proj
    total = front + m["num_blocks"] * block + (D * n_cls + n_cls)
    del fold  # folded or not, the BN has gamma and beta trainable (moving stats are not trainable)
    return int(total)
