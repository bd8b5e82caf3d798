"""QKeras transformer encoder for jet tagging (and any (tokens, features) classification input).

Architecture (names are the Keras layer names, which hls4ml keeps as its layer names, so they are
also the keys users put under ``hls.layer_name`` in a card)::

    input (N, F) -> input_q -> input_norm -> embed (QDense per constituent) -> embed_act
    blocks i = 0..num_blocks-1, post-norm (default):
        mha{i} -> mha{i}_add (residual) -> norm{i}a
        ffn{i}_dense1 -> ffn{i}_relu -> ffn{i}_dense2 -> ffn{i}_act -> ffn{i}_add (residual) -> norm{i}b
    pre-norm: norm{i}a -> mha{i} -> mha{i}_add; norm{i}b -> ffn... -> ffn{i}_add; then norm_final
    pool (mean/max over constituents, or flatten) -> pool_act -> classifier (QDense) -> logits -> softmax

Quantizer roles (card ``quant`` section; each ``{bits, integer, keep_negative, alpha}``):

============  ====================================================  ==========================
role          where                                                 fallback when not in card
============  ====================================================  ==========================
default       every kernel (QDense, attention projections)          (required by the schema)
bias          every bias, layer-norm beta                           default
input         input_q: raw features = the firmware input type       16 bits, 3 integer
embed_kernel  embedding kernel (only 4 x embed_dim weights)          default
embed         embed_act: embedding output                           16 bits, 5 integer
qkv           Q/K/V projections inside attention                    16 bits, 5 integer
score         scaled QK^T scores                                    16 bits, 5 integer
softmax       attention weights                                     12 bits, 1 integer, unsigned
context       attention-weighted values (per head)                  16 bits, 5 integer
attn_out      attention output projection                           16 bits, 5 integer
norm          layer/RMS norm output                                 16 bits, 4 integer
norm_gamma    layer/RMS norm gamma (1.0 at init, so not [-1, 1))    8 bits, 2 integer
ffn_act       quantized ReLU in the feed-forward block              16 bits, 5 integer
ffn_out       feed-forward output                                   16 bits, 5 integer
pool          pooled features                                       16 bits, 5 integer
logits        classifier output before the softmax                  16 bits, 5 integer
============  ====================================================  ==========================

Activation roles do not fall back to the *weight* default (8 bits in [-1, 1) would clip
activations); they fall back to the table above. The float twin (``quantized=False``) has the same
layers and names with every quantizer None (QActivation -> linear/relu Activation).

Input standardization (``model.input_norm: standard``, the default): after ``input_q`` (the raw
features quantized to the firmware's input type), ``input_norm`` is a frozen Keras
``BatchNormalization`` that subtracts the training-set mean (rounded to 1/1024) and multiplies by a
power of two close to 1/std (set by :func:`set_input_norm` before training). The firmware takes the
raw physics features; hls4ml implements the standardization as its native scale-and-shift, and
because the scale is a power of two and the mean sits on a coarse grid, TensorFlow and the fixed-point
C++ compute it exactly (give ``input_norm`` a result type with enough fractional bits, see the card). Without it,
features such as ptrel (std 0.05) and logpt (mean 3.5) sit far from the
quantizer ranges and quantization-aware training stalls near chance (measured: 30 % accuracy on 5
jet classes against 57 % with standardization).

Masking: zero-padded constituents are not masked in attention or pooling, because hls4ml has no
mask tensor; padded tokens are ordinary (all-zero) inputs that the network learns to discount. The
float, QKeras and firmware models therefore compute exactly the same function.
"""

from __future__ import annotations

from ..util import HwflowError

# activation-role fallbacks (bits, integer, keep_negative); weights fall back to quant.default
ROLE_DEFAULTS = {
    "input": (16, 3, True),
    "embed": (16, 5, True),
    "qkv": (16, 5, True),
    "score": (16, 5, True),
    "softmax": (12, 1, False),
    "context": (16, 5, True),
    "attn_out": (16, 5, True),
    "norm": (16, 4, True),
    "norm_gamma": (8, 2, True),
    "ffn_act": (16, 5, False),
    "ffn_out": (16, 5, True),
    "pool": (16, 5, True),
    "logits": (16, 5, True),
}
WEIGHT_ROLES = ("default", "bias", "embed_kernel")
NORM_EPS = 2.0**-20  # input_norm epsilon: with variance 1 - eps the BatchNormalization scale is exactly gamma
ROLES = WEIGHT_ROLES + tuple(ROLE_DEFAULTS)


def role_spec(card, role: str) -> dict | None:
    """Return the quantizer spec of a role (card value, else the role's fallback), or None when quantization is off."""
    from .quant import role_spec_with

    return role_spec_with(card, role, ROLE_DEFAULTS)


def _quantizer(card, role: str, quantized: bool, kind: str = "bits"):
    from .quant import builder_quantizer

    return builder_quantizer(card, role, quantized, ROLE_DEFAULTS, kind)


def input_shape_from_card(card) -> tuple[int, int]:
    """Return (n_constituents, n_features) of a jets card."""
    if card["data"]["kind"] != "jets":
        raise HwflowError(
            f"the transformer builder derives its input from data.jets; card '{card.name}' has data.kind "
            f"'{card['data']['kind']}': pass input_shape= or use model.kind conformer"
        )
    j = card["data"]["jets"]
    return int(j["n_constituents"]), len(j["features"])


def n_classes_from_card(card) -> int:
    """Return the number of classes of a jets card."""
    return len(card["data"]["jets"]["classes"])


def check_model_section(card) -> None:
    """Raise HwflowError when the card's model section asks for something this builder cannot make."""
    m = card["model"]
    if m["activation"] != "relu":
        raise HwflowError(
            f"model.activation '{m['activation']}' is not available for the transformer (hls4ml has no "
            f"quantized {m['activation']} kernel): use relu"
        )
    if m["pooling"] == "cls":
        raise HwflowError(
            "model.pooling 'cls' needs a learned class token, which hls4ml cannot prepend: use mean, max or flatten"
        )


def table_settings(card) -> dict:
    """Return the look-up-table settings of the exact layers from the card's hls section (one source for Keras and
    the hls4ml config): {'softmax': QSoftmax/QMultiHeadAttention kwargs, 'norm': norm kwargs}."""
    sm = card["hls"].get("softmax") or {}
    softmax = {
        "exp_table_size": int(sm.get("table_size") or 1024),
        "inv_table_size": int(sm.get("inv_table_size") or 1024),
        "exp_table_t": sm.get("exp_table_t"),
        "inv_table_t": sm.get("inv_table_t"),
    }
    return {"softmax": softmax, "norm": {}}


def build_transformer(card, quantized: bool = True, input_shape: tuple | None = None, n_classes: int | None = None):
    """Return the (uncompiled) QKeras transformer classifier of a card, or its float twin when ``quantized`` is
    False."""
    import tensorflow as tf
    from qkeras import QActivation, QDense

    from .attention import attention_layer
    from .layers import QGlobalAveragePooling1D, QLayerNormalization, QRMSNormalization, QSoftmax
    from .quant import add_type, fixed_type

    check_model_section(card)
    m = card["model"]
    quantized = bool(quantized and card["quant"].get("enabled", True))
    n_tok, n_feat = tuple(input_shape) if input_shape is not None else input_shape_from_card(card)
    n_cls = int(n_classes or n_classes_from_card(card))
    E, dff = m["embed_dim"], m["ffn_dim"]
    L = tf.keras.layers

    def q(role, kind="bits"):
        return _quantizer(card, role, quantized, kind)

    def act(role, name, kind="bits"):
        # quantized model: QActivation with the role's quantizer; float twin: the same-named Keras Activation
        if quantized:
            return QActivation(q(role, kind), name=name)
        return L.Activation("relu" if kind == "relu" else "linear", name=name)

    def dense(units, name, kernel_role="default"):
        return QDense(units, kernel_quantizer=q(kernel_role), bias_quantizer=q("bias"), name=name)

    def t(role, kind="bits"):
        # the fixed type a role's quantizer produces (None in the float twin): what hls4ml gives that tensor
        return fixed_type(q(role, kind))

    def plus(a, b):
        return add_type(a, b) if a is not None and b is not None else None

    def norm(name, input_t):
        exact = {"input_type": input_t, **table_settings(card)["norm"]}
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

    pre = m["norm_position"] == "pre"
    inp = L.Input(shape=(n_tok, n_feat), name="constituents")
    h = act("input", "input_q")(inp)  # the firmware's input type: raw features as the FPGA receives them
    if m.get("input_norm", "standard") == "standard":
        # frozen: its statistics come from the training set (set_input_norm), not from gradient steps
        h = L.BatchNormalization(epsilon=NORM_EPS, trainable=False, name="input_norm")(h)
    h = dense(E, "embed", kernel_role="embed_kernel")(h)
    h = act("embed", "embed_act")(h)
    h_t = t("embed")  # type of the residual stream, tracked so each norm knows its input type
    for i in range(m["num_blocks"]):
        # attention sub-block
        a, a_t = (norm(f"norm{i}a", h_t)(h), t("norm")) if pre else (h, h_t)
        # model.attention (hwflow.nn.attention), exact from its input type
        a = attention_layer(card, q, quantized, n_tok, f"mha{i}", input_type=a_t)(a, a)
        a = drop(a, f"mha{i}_drop")
        h, h_t = L.Add(name=f"mha{i}_add")([h, a]), plus(h_t, t("attn_out"))
        if not pre:
            h, h_t = norm(f"norm{i}a", h_t)(h), t("norm")
        # feed-forward sub-block
        f = norm(f"norm{i}b", h_t)(h) if pre else h
        f = dense(dff, f"ffn{i}_dense1")(f)
        f = act("ffn_act", f"ffn{i}_relu", kind="relu")(f)
        f = dense(E, f"ffn{i}_dense2")(f)
        f = act("ffn_out", f"ffn{i}_act")(f)
        f = drop(f, f"ffn{i}_drop")
        h, h_t = L.Add(name=f"ffn{i}_add")([h, f]), plus(h_t, t("ffn_out"))
        if not pre:
            h, h_t = norm(f"norm{i}b", h_t)(h), t("norm")
    if pre:
        h, h_t = norm("norm_final", h_t)(h), t("norm")
    if m["pooling"] == "mean":  # hls4ml's fixed-point mean, exact from the residual stream's type
        h = QGlobalAveragePooling1D(input_type=h_t, name="pool")(h)
    else:
        h = {"max": L.GlobalMaxPooling1D, "flatten": L.Flatten}[m["pooling"]](name="pool")(h)
    h = act("pool", "pool_act")(h)
    h = dense(n_cls, "classifier")(h)
    h = act("logits", "logits")(h)
    # the firmware's softmax (exact) on the logits' type; the float twin keeps the float softmax
    out = QSoftmax(input_type=t("logits"), name="softmax", **table_settings(card)["softmax"])(h)
    name = f"{card.name if hasattr(card, 'name') else 'model'}_{'qkeras' if quantized else 'float'}"
    model = tf.keras.Model(inp, out, name=name.replace("-", "_"))
    return model


def parameter_count(card, input_shape: tuple | None = None, n_classes: int | None = None) -> int:
    """Return the number of trainable parameters the builder creates for a card (closed formula)."""
    m = card["model"]
    n_tok, n_feat = tuple(input_shape) if input_shape is not None else input_shape_from_card(card)
    n_cls = int(n_classes or n_classes_from_card(card))
    E, H, dk, dff = m["embed_dim"], m["num_heads"], m["key_dim"], m["ffn_dim"]
    norm = E if m["norm"] == "rmsnorm" else 2 * E
    mha = 2 * (E * H * dk + H * dk) + (E * H * dk + H * dk) + (H * dk * E + E)  # Q, K; V (value_dim = key_dim); output
    ffn = (E * dff + dff) + (dff * E + E)
    if m.get("attention", "softmax") == "linformer":
        mha += 2 * m["linformer_k"] * n_tok  # E and F: k x N sequence projections
    block = mha + ffn + 2 * norm
    pooled = n_tok * E if m["pooling"] == "flatten" else E
    total = (n_feat * E + E) + m["num_blocks"] * block + (pooled * n_cls + n_cls)
    if m["norm_position"] == "pre":
        total += norm
    if m.get("input_norm", "standard") == "standard":
        total += 4 * n_feat  # gamma, beta, moving mean, moving variance (all frozen)
    return int(total)


def set_input_norm(model, x) -> dict | None:
    """Set the frozen ``input_norm`` layer to the per-feature mean/variance of ``x``; return the statistics (None if
    absent)."""
    import numpy as np

    try:
        layer = model.get_layer("input_norm")
    except ValueError:
        return None
    flat = np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1])
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant feature passes through unscaled instead of dividing by zero
    # exact in float32 and in fixed point: (x - mean_q) * 2**k; var + eps == 1 exactly, so gamma is the scale
    k = np.clip(np.round(np.log2(1.0 / std)), -8, 8)
    mean_q = np.round(mean * 1024.0) / 1024.0
    gamma, beta = 2.0**k, np.zeros_like(mean)
    var = np.full_like(mean, 1.0 - NORM_EPS)
    layer.set_weights([w.astype(np.float32) for w in (gamma, beta, mean_q, var)])
    return {"mean": mean.tolist(), "std": std.tolist(), "mean_q": mean_q.tolist(), "scale": gamma.tolist()}
