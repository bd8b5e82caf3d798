"""QKeras-style quantized attention and normalization layers (drop-in twins of the Keras layers).

Each layer takes QKeras quantizer objects (or their string / config forms, or None = float) exactly
like ``QDense`` does, and applies them at the points where the hls4ml firmware stores a value in
fixed point.

Exact forward pass: when every quantizer of a layer has a fixed binary point, the layer builds the
same Spec object the C++ template and the numpy reference are generated from
(``hwflow.reference.*.make_spec``: types, look-up tables) and computes its output with
``hwflow.nn.exact`` — the firmware's tables, interpolations, shifts and roundings in TensorFlow ops —
so ``model.predict`` equals the C simulation bit for bit. Training uses the same exact forward pass
with the float layer's gradient (``y_float + stop_gradient(y_exact - y_float)``): the exact function
is piecewise constant (tables, integer shifts), so it has no useful gradient of its own, while the
float softmax / rsqrt it approximates within a few LSB has the right one; the model therefore trains
against the function the FPGA runs. Norms and the softmax need their input type (``input_type``,
set by the builders from the upstream quantizers, as hls4ml infers it), and the table settings are
constructor arguments that hls.convert copies into the hls4ml config, so Keras and C++ share them.

- :class:`QMultiHeadAttention` — self-attention (or ``layer(query, value)`` cross-attention) with
  quantized Q/K/V/output projections and quantized intermediates (projections, scores, softmax
  weights, context, output).
- :class:`QLinformerAttention`, :class:`QCosformerAttention`, :class:`QGroupedAttention` — its
  hardware-friendly variants (issue 13), each exact like it (``exact.linformer``, ``exact.cosformer``,
  ``exact.mha`` with ``group`` > 1) when every quantizer it uses is fixed point.
- :class:`QLayerNormalization` — layer normalization over the last axis.
- :class:`QRMSNormalization` — RMS normalization over the last axis (no centring, no beta).
- :class:`QSoftmax` — softmax over the last axis, exactly the firmware's (hwflow_softmax.h) when quantized.
- :class:`QGlobalAveragePooling1D` — mean over the sequence, exactly hls4ml's fixed-point average when quantized.

QDense on a 3-D (batch, tokens, features) input is fine in QKeras; the hls4ml conversion of that
case (it becomes a pointwise Conv1D that drops the weight quantizer) is fixed in ``hwflow.hls``,
so models simply use ``QDense`` per token.

TensorFlow/QKeras are imported when this module is imported (it *is* the model code); nothing runs
at import time besides class definitions.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from qkeras.quantizers import get_quantizer

from ..reference.fixed import parse_type
from . import exact
from .fixed import straight_through
from .quant import fixed_type, weight_type

__all__ = [
    "QMultiHeadAttention",
    "QLinformerAttention",
    "QCosformerAttention",
    "QGroupedAttention",
    "QLayerNormalization",
    "QRMSNormalization",
    "QSoftmax",
    "QGlobalAveragePooling1D",
    "get_custom_objects",
]

SOFTMAX_RESULT = "ap_ufixed<16,0,AP_RND_CONV,AP_SAT>"  # probabilities: unsigned, 16 fractional bits
# type the exact attention assumes for its input when none is given: its projections are exact sums, so
# any type holding the input values gives the same result
NOMINAL_INPUT = "ap_fixed<32,16>"


def _training(training) -> bool:
    if training is not None and not isinstance(training, (bool, int)):
        training = tf.get_static_value(training)
    return bool(training)


def _exact_out(y_float, y_exact, training):
    """Return the exact value, with the float path's gradient while training (straight-through)."""
    if _training(training):
        return straight_through(y_float, y_exact)
    return tf.cast(y_exact, tf.float32)


def _type_str(t):
    return None if t is None else str(parse_type(t))


def _q(quantizer, x):
    """Apply a QKeras quantizer (None = identity)."""
    return x if quantizer is None else quantizer(x)


def _ser(quantizer):
    """Serialize a quantizer the way QKeras layers do (None stays None)."""
    return None if quantizer is None else tf.keras.constraints.serialize(quantizer)


class QMultiHeadAttention(tf.keras.layers.Layer):
    """Quantized multi-head attention: a drop-in twin of ``keras.layers.MultiHeadAttention``.

    ``layer(x)`` is self-attention on ``x`` of shape (batch, T, D); ``layer(query, value)`` attends
    from ``query`` (batch, Tq, D) to ``value`` (batch, Tv, Dv) (keys = values). Output shape is
    (batch, Tq, output_dim or D).

    Arithmetic (and where each quantizer acts, mirroring the firmware):

    - ``q = qkv_quantizer(x @ Wq + bq)``, same for ``k`` and ``v`` (weights through
      ``kernel_quantizer``, biases through ``bias_quantizer``); heads are contiguous slices of
      ``key_dim`` (``value_dim``) columns.
    - ``s = score_quantizer((q_h @ k_h^T) * scale)`` with ``scale = 1/sqrt(key_dim)``.
    - ``a = softmax_quantizer(softmax(s, axis=keys))``.
    - ``c = context_quantizer(a @ v_h)``, heads concatenated.
    - ``y = output_quantizer(c @ Wo + bo)``.

    Weights: ``query_kernel`` (D, H*key_dim), ``key_kernel`` (Dv, H*key_dim), ``value_kernel``
    (Dv, H*value_dim), ``output_kernel`` (H*value_dim, output_dim) and matching biases.

    Exact forward pass (every quantizer fixed point): the firmware's attention (hwflow_mha.h) with its
    softmax tables: ``exp_table_size``, ``inv_table_size``, ``exp_table_t``, ``inv_table_t`` (None =
    hwflow's defaults) are the hls4ml ``ExpTableSize``/``InvTableSize``/``Precision`` of the layer;
    ``input_type`` is the input's fixed-point type (None: the values are taken as they come, which is
    exact because the projections are exact sums).
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        output_dim=None,
        use_bias=True,
        kernel_quantizer=None,
        bias_quantizer=None,
        qkv_quantizer=None,
        score_quantizer=None,
        softmax_quantizer=None,
        context_quantizer=None,
        output_quantizer=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        exp_table_size=1024,
        inv_table_size=1024,
        exp_table_t=None,
        inv_table_t=None,
        input_type=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.exp_table_size, self.inv_table_size = int(exp_table_size), int(inv_table_size)
        self.exp_table_t, self.inv_table_t = _type_str(exp_table_t), _type_str(inv_table_t)
        self.input_type = _type_str(input_type)
        self.spec = None  # the firmware's AttentionSpec, set in build() when every quantizer is fixed point
        if int(num_heads) <= 0 or int(key_dim) <= 0:
            raise ValueError(f"QMultiHeadAttention: num_heads and key_dim must be > 0, got {num_heads}, {key_dim}")
        self.num_heads = int(num_heads)
        self.key_dim = int(key_dim)
        self.value_dim = int(value_dim) if value_dim else self.key_dim
        self.output_dim = int(output_dim) if output_dim else None
        self.use_bias = bool(use_bias)
        self.kernel_quantizer = get_quantizer(kernel_quantizer)
        self.bias_quantizer = get_quantizer(bias_quantizer)
        self.qkv_quantizer = get_quantizer(qkv_quantizer)
        self.score_quantizer = get_quantizer(score_quantizer)
        self.softmax_quantizer = get_quantizer(softmax_quantizer)
        self.context_quantizer = get_quantizer(context_quantizer)
        self.output_quantizer = get_quantizer(output_quantizer)
        self.kernel_initializer = tf.keras.initializers.get(kernel_initializer)
        self.bias_initializer = tf.keras.initializers.get(bias_initializer)
        self.kernel_regularizer = tf.keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = tf.keras.regularizers.get(bias_regularizer)
        self.supports_masking = False

    # names of the quantizers, in the order the data meets them
    QUANTIZER_NAMES = (
        "kernel_quantizer",
        "bias_quantizer",
        "qkv_quantizer",
        "score_quantizer",
        "softmax_quantizer",
        "context_quantizer",
        "output_quantizer",
    )

    @property
    def scale(self) -> float:
        """Return the score scale 1/sqrt(key_dim)."""
        return 1.0 / math.sqrt(self.key_dim)

    def build(self, input_shape):
        if (
            isinstance(input_shape, (list, tuple))
            and input_shape
            and isinstance(input_shape[0], (list, tuple, tf.TensorShape))
        ):
            q_shape = tf.TensorShape(input_shape[0])
            v_shape = tf.TensorShape(input_shape[1]) if len(input_shape) > 1 else q_shape
        else:
            q_shape = v_shape = tf.TensorShape(input_shape)
        d_q, d_v = int(q_shape[-1]), int(v_shape[-1])
        hk, hv = self.num_heads * self.key_dim, self.num_heads * self.value_dim
        out = self.output_dim or d_q
        self._out_dim = out

        def w(name, shape, init, reg):
            # a fresh initializer per weight (as keras MultiHeadAttention does): one unseeded Keras-2
            # initializer instance returns the same values on every call, so Q, K, V would start equal
            init = init.__class__.from_config(init.get_config())
            return self.add_weight(name=name, shape=shape, initializer=init, regularizer=reg, trainable=True)

        self.query_kernel = w("query_kernel", (d_q, hk), self.kernel_initializer, self.kernel_regularizer)
        self.key_kernel = w("key_kernel", (d_v, hk), self.kernel_initializer, self.kernel_regularizer)
        self.value_kernel = w("value_kernel", (d_v, hv), self.kernel_initializer, self.kernel_regularizer)
        self.output_kernel = w("output_kernel", (hv, out), self.kernel_initializer, self.kernel_regularizer)
        if self.use_bias:
            self.query_bias = w("query_bias", (hk,), self.bias_initializer, self.bias_regularizer)
            self.key_bias = w("key_bias", (hk,), self.bias_initializer, self.bias_regularizer)
            self.value_bias = w("value_bias", (hv,), self.bias_initializer, self.bias_regularizer)
            self.output_bias = w("output_bias", (out,), self.bias_initializer, self.bias_regularizer)
        # the softmax runs over the keys: its length sizes the sum of exponentials
        self.spec = self.make_spec(int(v_shape[1]) if v_shape[1] is not None else None, d_q)
        super().build(input_shape)

    # quantizers whose fixed-point type the exact forward pass needs (the rest: unused by this kind of attention)
    EXACT_ROLES = ("qkv_quantizer", "score_quantizer", "softmax_quantizer", "context_quantizer", "output_quantizer")

    def _spec_types(self, seq_len):
        """Return ({quantizer name: FixedType}, weight type, bias type), or None when the exact forward pass cannot
        run: a quantizer without a fixed binary point (the float twin) or an unknown sequence length."""
        types = {n: fixed_type(getattr(self, n)) for n in self.EXACT_ROLES}
        wt, bt = weight_type(self.kernel_quantizer), weight_type(self.bias_quantizer)
        if seq_len is None or wt is None or (self.use_bias and bt is None) or any(t is None for t in types.values()):
            return None
        return types, wt, bt or wt

    def _attention_args(self, embed_dim, types, wt, bt) -> dict:
        """Return reference.attention.make_spec's arguments (all but seq_len) from the quantizers and table settings,
        as hls.ext.mha derives them for the C++ from the same quantizers and the layer's LayerName tables."""
        return {
            "embed_dim": embed_dim,
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "out_dim": self._out_dim,
            "input_t": self.input_type or NOMINAL_INPUT,
            "weight_t": wt,
            "bias_t": bt,
            "q_t": types["qkv_quantizer"],
            "score_t": types["score_quantizer"],
            "attn_t": types["softmax_quantizer"],
            "context_t": types["context_quantizer"],
            "result_t": types["output_quantizer"],
            "exp_table_size": self.exp_table_size,
            "inv_table_size": self.inv_table_size,
            "exp_table_t": self.exp_table_t,
            "inv_table_t": self.inv_table_t,
        }

    def make_spec(self, seq_len, embed_dim):
        """Return the AttentionSpec the firmware will use (None when a quantizer is float or seq_len unknown)."""
        from ..reference.attention import make_spec

        t = self._spec_types(seq_len)
        return None if t is None else make_spec(seq_len, **self._attention_args(embed_dim, *t))

    def exact_forward(self, x, weights: dict, cast_input: bool, value=None) -> tf.Tensor:
        """Return the firmware's output (float64) for ``x``; ``weights`` float64 after their quantizers."""
        return exact.mha(x, self.spec, weights, cast_input=cast_input, value=value)

    def _proj(self, x, kernel, bias):
        y = tf.tensordot(x, _q(self.kernel_quantizer, kernel), axes=[[-1], [0]])
        if self.use_bias:
            y = y + _q(self.bias_quantizer, bias)
        return y

    def _heads(self, x, dim):
        # (B, T, H*dim) -> (B, H, T, dim); head h is columns [h*dim, (h+1)*dim)
        shape = tf.shape(x)
        x = tf.reshape(x, (shape[0], shape[1], self.num_heads, dim))
        return tf.transpose(x, (0, 2, 1, 3))

    def _qkv(self, query, value=None, key=None):
        """Return the quantized Q, K, V projections (value defaults to query, key to value), as every variant uses."""
        if value is None:
            value = query
        if key is None:
            key = value
        q = _q(self.qkv_quantizer, self._proj(query, self.query_kernel, getattr(self, "query_bias", None)))
        k = _q(self.qkv_quantizer, self._proj(key, self.key_kernel, getattr(self, "key_bias", None)))
        v = _q(self.qkv_quantizer, self._proj(value, self.value_kernel, getattr(self, "value_bias", None)))
        return q, k, v

    def intermediates(self, query, value=None, key=None) -> dict:
        """Return the quantized intermediates q, k, v, scores, attn (per head) and context (heads concatenated)."""
        q, k, v = self._qkv(query, value, key)
        qh, kh, vh = self._heads(q, self.key_dim), self._heads(k, self.key_dim), self._heads(v, self.value_dim)
        scores = _q(self.score_quantizer, tf.matmul(qh, kh, transpose_b=True) * self.scale)
        attn = _q(self.softmax_quantizer, tf.nn.softmax(scores, axis=-1))
        ctx = _q(self.context_quantizer, tf.matmul(attn, vh))  # (B, H, Tq, dv)
        shape = tf.shape(ctx)
        ctx = tf.reshape(tf.transpose(ctx, (0, 2, 1, 3)), (shape[0], shape[2], self.num_heads * self.value_dim))
        return {"q": q, "k": k, "v": v, "scores": scores, "attn": attn, "context": ctx}

    def call(self, query, value=None, key=None, training=None, return_attention_scores=False):
        if isinstance(query, (list, tuple)):
            query, value = query[0], (query[1] if len(query) > 1 else None)
        if self.spec is not None and key is None and not return_attention_scores:
            return self._exact_call(query, value, training)
        t = self.intermediates(query, value, key)
        out = _q(
            self.output_quantizer, self._proj(t["context"], self.output_kernel, getattr(self, "output_bias", None))
        )
        return (out, t["attn"]) if return_attention_scores else out

    def _float_call(self, query, value=None):
        t = self.intermediates(query, value)
        return _q(
            self.output_quantizer, self._proj(t["context"], self.output_kernel, getattr(self, "output_bias", None))
        )

    def _quantized_weight_tensors(self) -> dict:
        """Return the weights after their quantizers as float64 tensors (names as in quantized_weights())."""
        weights = {}
        for n in ("query", "key", "value", "output"):
            weights[f"{n}_kernel"] = tf.cast(_q(self.kernel_quantizer, getattr(self, f"{n}_kernel")), tf.float64)
            if self.use_bias:
                weights[f"{n}_bias"] = tf.cast(_q(self.bias_quantizer, getattr(self, f"{n}_bias")), tf.float64)
        return weights

    def _exact_call(self, query, value, training):
        cast = self.input_type is not None
        y = self.exact_forward(tf.cast(query, tf.float64), self._quantized_weight_tensors(), cast, value)
        if not _training(training):
            return tf.cast(y, tf.float32)
        return straight_through(self._float_call(query, value), y)

    def compute_output_shape(self, input_shape):
        if (
            isinstance(input_shape, (list, tuple))
            and input_shape
            and isinstance(input_shape[0], (list, tuple, tf.TensorShape))
        ):
            input_shape = input_shape[0]
        shape = tf.TensorShape(input_shape).as_list()
        return tf.TensorShape(shape[:-1] + [self.output_dim or shape[-1]])

    def quantized_weights(self) -> dict:
        """Return the weights as numpy arrays after their quantizers (what the firmware stores)."""
        names = ["query", "key", "value", "output"]
        out = {}
        for n in names:
            out[f"{n}_kernel"] = np.asarray(_q(self.kernel_quantizer, getattr(self, f"{n}_kernel")))
            if self.use_bias:
                out[f"{n}_bias"] = np.asarray(_q(self.bias_quantizer, getattr(self, f"{n}_bias")))
        return out

    def get_quantizers(self):
        """Return the list of quantizers (None for float), in QUANTIZER_NAMES order."""
        return [getattr(self, n) for n in self.QUANTIZER_NAMES]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "output_dim": self.output_dim,
                "use_bias": self.use_bias,
                "kernel_initializer": tf.keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": tf.keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": tf.keras.regularizers.serialize(self.kernel_regularizer)
                if self.kernel_regularizer
                else None,
                "bias_regularizer": tf.keras.regularizers.serialize(self.bias_regularizer)
                if self.bias_regularizer
                else None,
                "exp_table_size": self.exp_table_size,
                "inv_table_size": self.inv_table_size,
                "exp_table_t": self.exp_table_t,
                "inv_table_t": self.inv_table_t,
                "input_type": self.input_type,
            }
        )
        for n in self.QUANTIZER_NAMES:
            config[n] = _ser(getattr(self, n))
        return config


class QLinformerAttention(QMultiHeadAttention):
    """Quantized Linformer self-attention (Wang et al. 2020): QMultiHeadAttention over sequence-compressed keys/values.

    Keys and values are projected along the sequence, N -> ``proj_k``, by two learned (proj_k, N) matrices
    ``key_seq_kernel`` (E) and ``value_seq_kernel`` (F) shared by the heads (weights through
    ``kernel_quantizer``): ``k' = kv_proj_quantizer(E @ k)``, ``v' = kv_proj_quantizer(F @ v)``; then the
    scores (N x proj_k), softmax over proj_k entries, context and output projection are QMultiHeadAttention's.
    The sequence length N is fixed at build time (the keys' length).
    """

    QUANTIZER_NAMES = QMultiHeadAttention.QUANTIZER_NAMES + ("kv_proj_quantizer",)

    def __init__(self, num_heads, key_dim, proj_k=4, kv_proj_quantizer=None, **kwargs):
        super().__init__(num_heads, key_dim, **kwargs)
        if int(proj_k) <= 0:
            raise ValueError(f"QLinformerAttention: proj_k must be > 0, got {proj_k}")
        self.proj_k = int(proj_k)
        self.kv_proj_quantizer = get_quantizer(kv_proj_quantizer)

    def build(self, input_shape):
        super().build(input_shape)
        shape = (
            input_shape[-1]
            if isinstance(input_shape, (list, tuple))
            and input_shape
            and isinstance(input_shape[0], (list, tuple, tf.TensorShape))
            else input_shape
        )
        n = tf.TensorShape(shape)[1]
        if n is None:
            raise ValueError("QLinformerAttention needs a fixed sequence length (the E/F projections are k x N)")
        init = self.kernel_initializer
        for name in ("key_seq_kernel", "value_seq_kernel"):
            fresh = init.__class__.from_config(init.get_config())
            setattr(
                self,
                name,
                self.add_weight(
                    name=name,
                    shape=(self.proj_k, int(n)),
                    initializer=fresh,
                    regularizer=self.kernel_regularizer,
                    trainable=True,
                ),
            )

    EXACT_ROLES = QMultiHeadAttention.EXACT_ROLES + ("kv_proj_quantizer",)

    def make_spec(self, seq_len, embed_dim):
        """Return the LinformerSpec the firmware will use (None when a quantizer is float or seq_len unknown)."""
        from ..reference.linformer import make_spec

        t = self._spec_types(seq_len)
        if t is None:
            return None
        types, wt, bt = t
        return make_spec(seq_len, self.proj_k, wt, types["kv_proj_quantizer"], **self._attention_args(embed_dim, *t))

    def exact_forward(self, x, weights: dict, cast_input: bool, value=None) -> tf.Tensor:
        return exact.linformer(x, self.spec, weights, cast_input=cast_input, value=value)

    def _quantized_weight_tensors(self) -> dict:
        weights = super()._quantized_weight_tensors()
        for n in ("key_seq_kernel", "value_seq_kernel"):
            weights[n] = tf.cast(_q(self.kernel_quantizer, getattr(self, n)), tf.float64)
        return weights

    def _seq(self, x, kernel):
        # (B, N, C) -> (B, k, C): the same k x N matrix for every feature column (and head)
        return _q(self.kv_proj_quantizer, tf.einsum("mt,btc->bmc", _q(self.kernel_quantizer, kernel), x))

    def intermediates(self, query, value=None, key=None) -> dict:
        """Return q, k, v, the compressed k_proj/v_proj, scores (B, H, N, proj_k), attn and context."""
        q, k, v = self._qkv(query, value, key)
        kp, vp = self._seq(k, self.key_seq_kernel), self._seq(v, self.value_seq_kernel)
        qh, kh, vh = self._heads(q, self.key_dim), self._heads(kp, self.key_dim), self._heads(vp, self.value_dim)
        scores = _q(self.score_quantizer, tf.matmul(qh, kh, transpose_b=True) * self.scale)
        attn = _q(self.softmax_quantizer, tf.nn.softmax(scores, axis=-1))
        ctx = _q(self.context_quantizer, tf.matmul(attn, vh))
        shape = tf.shape(ctx)
        ctx = tf.reshape(tf.transpose(ctx, (0, 2, 1, 3)), (shape[0], shape[2], self.num_heads * self.value_dim))
        return {"q": q, "k": k, "v": v, "k_proj": kp, "v_proj": vp, "scores": scores, "attn": attn, "context": ctx}

    def quantized_weights(self) -> dict:
        """Return the weights (incl. the two sequence projections) after their quantizers."""
        out = super().quantized_weights()
        for n in ("key_seq_kernel", "value_seq_kernel"):
            out[n] = np.asarray(_q(self.kernel_quantizer, getattr(self, n)))
        return out

    def get_config(self):
        config = super().get_config()
        config["proj_k"] = self.proj_k
        return config


class QCosformerAttention(QMultiHeadAttention):
    """Quantized cosFormer self-attention (Qin et al. 2022): softmax-free linear attention with cos re-weighting.

    ``sim(i, j) = relu(q_i) . relu(k_j) cos(pi/2 (i - j) / M)`` normalised per query, computed in linear form
    through ``cos(a - b) = cos a cos b + sin a sin b`` (M = ``horizon``, 0 = the sequence length):

    - ``q, k, v`` as in QMultiHeadAttention (``qkv_quantizer``); ``qc_i = feat_quantizer(relu(q_i) cos_i)``,
      ``qs_i = feat_quantizer(relu(q_i) sin_i)``, same for keys (``cos_i = cos(pi i / 2M)``);
    - per head: ``KVc = kv_quantizer(sum_j kc_j^T v_j)``, ``Kc = ksum_quantizer(sum_j kc_j)`` and the sin twins;
    - ``num_i = num_quantizer(qc_i KVc + qs_i KVs)``, ``den_i = den_quantizer(qc_i . Kc + qs_i . Ks)``;
    - ``c_i = context_quantizer(num_i / den_i)`` (0 where den_i = 0), heads concatenated, output projection.

    ``score_quantizer`` and ``softmax_quantizer`` are unused (no scores, no softmax).
    """

    QUANTIZER_NAMES = QMultiHeadAttention.QUANTIZER_NAMES + (
        "feat_quantizer",
        "kv_quantizer",
        "ksum_quantizer",
        "num_quantizer",
        "den_quantizer",
    )

    def __init__(
        self,
        num_heads,
        key_dim,
        horizon=0,
        feat_quantizer=None,
        kv_quantizer=None,
        ksum_quantizer=None,
        num_quantizer=None,
        den_quantizer=None,
        **kwargs,
    ):
        super().__init__(num_heads, key_dim, **kwargs)
        self.horizon = int(horizon)
        self.feat_quantizer = get_quantizer(feat_quantizer)
        self.kv_quantizer = get_quantizer(kv_quantizer)
        self.ksum_quantizer = get_quantizer(ksum_quantizer)
        self.num_quantizer = get_quantizer(num_quantizer)
        self.den_quantizer = get_quantizer(den_quantizer)

    EXACT_ROLES = (
        "qkv_quantizer",
        "context_quantizer",
        "output_quantizer",
        "feat_quantizer",
        "kv_quantizer",
        "ksum_quantizer",
        "num_quantizer",
        "den_quantizer",
    )

    def make_spec(self, seq_len, embed_dim):
        """Return the CosformerSpec the firmware will use (None when a quantizer is float or seq_len unknown): the
        reciprocal table is the layer's inv_table_size / inv_table_t (hls.convert copies them into InvTableSize /
        Precision inv_table), the cos/sin table type hls.ext.cosformer's default."""
        from ..reference.cosformer import DEFAULT_INV_TABLE, make_spec

        t = self._spec_types(seq_len)
        if t is None:
            return None
        types, wt, bt = t
        q = [types[n] for n in self.EXACT_ROLES]
        qt, ct, rt, ft, kvt, kst, nt, dt = q
        return make_spec(
            seq_len,
            embed_dim,
            self.num_heads,
            self.key_dim,
            self.value_dim,
            self._out_dim,
            self.input_type or NOMINAL_INPUT,
            wt,
            bt,
            qt,
            ft,
            kvt,
            kst,
            nt,
            dt,
            ct,
            rt,
            horizon=self.horizon,
            inv_table_t=self.inv_table_t or DEFAULT_INV_TABLE,
            inv_table_size=self.inv_table_size,
        )

    def exact_forward(self, x, weights: dict, cast_input: bool, value=None) -> tf.Tensor:
        return exact.cosformer(x, self.spec, weights, cast_input=cast_input, value=value)

    def _trig(self, n):
        m = self.horizon or n
        if m < n:
            raise ValueError(f"QCosformerAttention: horizon {m} < sequence length {n} (cos would turn negative)")
        ang = np.pi / 2 * np.arange(n) / m
        return tf.constant(np.cos(ang)[:, None], tf.float32), tf.constant(np.sin(ang)[:, None], tf.float32)

    def intermediates(self, query, value=None, key=None) -> dict:
        """Return q, k, v, the re-weighted features, the per-head state, num, den and context."""
        q, k, v = self._qkv(query, value, key)
        if q.shape[1] is None or q.shape[1] != k.shape[1]:
            raise ValueError("QCosformerAttention: self-attention over a fixed sequence length only")
        cos, sin = self._trig(int(q.shape[1]))
        qr, kr = tf.nn.relu(q), tf.nn.relu(k)  # the ReLU feature map
        qc, qs = _q(self.feat_quantizer, qr * cos), _q(self.feat_quantizer, qr * sin)
        kc, ks = _q(self.feat_quantizer, kr * cos), _q(self.feat_quantizer, kr * sin)
        qch, qsh = self._heads(qc, self.key_dim), self._heads(qs, self.key_dim)
        kch, ksh = self._heads(kc, self.key_dim), self._heads(ks, self.key_dim)
        vh = self._heads(v, self.value_dim)
        kvc = _q(self.kv_quantizer, tf.einsum("bhjd,bhje->bhde", kch, vh))
        kvs = _q(self.kv_quantizer, tf.einsum("bhjd,bhje->bhde", ksh, vh))
        kc_sum, ks_sum = _q(self.ksum_quantizer, tf.reduce_sum(kch, 2)), _q(self.ksum_quantizer, tf.reduce_sum(ksh, 2))
        num = _q(self.num_quantizer, tf.einsum("bhid,bhde->bhie", qch, kvc) + tf.einsum("bhid,bhde->bhie", qsh, kvs))
        den = _q(self.den_quantizer, tf.einsum("bhid,bhd->bhi", qch, kc_sum) + tf.einsum("bhid,bhd->bhi", qsh, ks_sum))
        ctx = _q(self.context_quantizer, tf.math.divide_no_nan(num, den[..., None]))
        shape = tf.shape(ctx)
        ctx = tf.reshape(tf.transpose(ctx, (0, 2, 1, 3)), (shape[0], shape[2], self.num_heads * self.value_dim))
        return {
            "q": q,
            "k": k,
            "v": v,
            "feat": tf.concat([qc, qs, kc, ks], -1),
            "kv": tf.concat([kvc, kvs], -1),
            "ksum": tf.concat([kc_sum, ks_sum], -1),
            "num": num,
            "den": den,
            "context": ctx,
        }

    def call(self, query, value=None, key=None, training=None, return_attention_scores=False):
        if return_attention_scores:
            raise ValueError("QCosformerAttention has no attention matrix (linear form): return_attention_scores")
        return super().call(query, value, key, training=training)

    def get_config(self):
        config = super().get_config()
        config["horizon"] = self.horizon
        return config


class QGroupedAttention(QMultiHeadAttention):
    """Quantized grouped multi-head self-attention (Efficient Conformer, Burchi & Vielzeuf 2021).

    QMultiHeadAttention whose per-token Q/K/V (same projections, same quantizers) are regrouped before attention:
    for each head, ``group`` neighbouring tokens form one row of ``group * key_dim`` features, so the scores are
    (N/g x N/g) with ``scale = 1/sqrt(group * key_dim)``, the softmax runs over N/g entries and each context row is
    split back into its g tokens (ungrouped) before the output projection. ``group`` must divide N.
    """

    def __init__(self, num_heads, key_dim, group=2, **kwargs):
        super().__init__(num_heads, key_dim, **kwargs)
        if int(group) <= 0:
            raise ValueError(f"QGroupedAttention: group must be > 0, got {group}")
        self.group = int(group)

    @property
    def scale(self) -> float:
        """Return the score scale 1/sqrt(group * key_dim) (the grouped dot product has g * key_dim terms)."""
        return 1.0 / math.sqrt(self.group * self.key_dim)

    def make_spec(self, seq_len, embed_dim):
        """Return the AttentionSpec (group > 1: hwflow_mha's grouped rows) the firmware will use, or None."""
        from ..reference.attention import make_spec

        t = self._spec_types(seq_len)
        return None if t is None else make_spec(seq_len, **self._attention_args(embed_dim, *t), group=self.group)

    def _grouped(self, x, dim):
        # (B, T, H*dim) -> (B, H, T/g, g*dim): row i of head h = head-h slices of tokens i*g .. i*g+g-1
        n = int(x.shape[1])
        if n % self.group:
            raise ValueError(f"QGroupedAttention: group {self.group} does not divide the sequence length {n}")
        x = tf.reshape(x, (-1, n // self.group, self.group, self.num_heads, dim))
        x = tf.transpose(x, (0, 3, 1, 2, 4))
        return tf.reshape(x, (-1, self.num_heads, n // self.group, self.group * dim))

    def intermediates(self, query, value=None, key=None) -> dict:
        """Return q, k, v (per token), grouped scores (B, H, N/g, N/g), attn and the ungrouped context."""
        q, k, v = self._qkv(query, value, key)
        qg, kg, vg = self._grouped(q, self.key_dim), self._grouped(k, self.key_dim), self._grouped(v, self.value_dim)
        scores = _q(self.score_quantizer, tf.matmul(qg, kg, transpose_b=True) * self.scale)
        attn = _q(self.softmax_quantizer, tf.nn.softmax(scores, axis=-1))
        ctx = _q(self.context_quantizer, tf.matmul(attn, vg))  # (B, H, N/g, g*dv)
        n = int(q.shape[1])
        ctx = tf.reshape(ctx, (-1, self.num_heads, n // self.group, self.group, self.value_dim))
        ctx = tf.reshape(tf.transpose(ctx, (0, 2, 3, 1, 4)), (-1, n, self.num_heads * self.value_dim))
        return {"q": q, "k": k, "v": v, "scores": scores, "attn": attn, "context": ctx}

    def get_config(self):
        config = super().get_config()
        config["group"] = self.group
        return config


class _QNormBase(tf.keras.layers.Layer):
    """Shared plumbing of the normalization layers (last axis only, like the firmware)."""

    QUANTIZER_NAMES: tuple = ()
    CENTER = True

    def _init_exact(self, input_type, table_size, table_t):
        self.input_type = _type_str(input_type)
        self.table_size = int(table_size)
        self.table_t = _type_str(table_t)
        self.spec = None  # the firmware's NormSpec, set in build() when the types are known

    def make_spec(self, n_in, input_shape):
        """Return the NormSpec the firmware will use (None without an input type or with a float quantizer)."""
        from ..reference.layernorm import make_spec

        center = self.CENTER and self.center
        out_t = fixed_type(self.output_quantizer)
        scale_t = weight_type(self.gamma_quantizer) if self.scale else None
        bias_t = weight_type(self.beta_quantizer) if center else None
        if self.input_type is None or out_t is None or (self.scale and scale_t is None) or (center and bias_t is None):
            return None
        if not self.scale or (self.CENTER and not center):
            return None  # hls4ml derives the type of constant ones/zeros from the data: not modelled here
        kw = {"table_t": self.table_t} if self.table_t else {}
        seq = int(np.prod(input_shape[1:-1])) if len(input_shape) > 2 and None not in input_shape[1:-1] else 1
        return make_spec(
            n_in,
            self.input_type,
            out_t,
            center=center,
            epsilon=self.epsilon,
            scale_t=scale_t,
            bias_t=bias_t or scale_t,
            table_size=self.table_size,
            seq_len=seq,
            **kw,
        )

    def _exact(self, inputs, gamma, beta):
        g = None if gamma is None else tf.cast(gamma, tf.float64)
        b = None if beta is None else tf.cast(beta, tf.float64)
        return exact.norm(tf.cast(inputs, tf.float64), self.spec, g, b)

    def _exact_config(self) -> dict:
        return {"input_type": self.input_type, "table_size": self.table_size, "table_t": self.table_t}

    def get_quantizers(self):
        """Return the list of quantizers (None for float), in QUANTIZER_NAMES order."""
        return [getattr(self, n) for n in self.QUANTIZER_NAMES]

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)


class QLayerNormalization(_QNormBase):
    """Quantized layer normalization over the last axis: a drop-in twin of ``keras.layers.LayerNormalization``.

    ``y = output_quantizer((x - mean) / sqrt(var + epsilon) * gamma_q + beta_q)`` where mean and
    (biased) variance are taken over the last axis, ``gamma_q = gamma_quantizer(gamma)`` and
    ``beta_q = beta_quantizer(beta)``. Weights: ``gamma`` and ``beta`` of shape (D,).

    Exact forward pass: with ``input_type`` (the fixed-point type of the input, which sizes the mean,
    variance and 1/sqrt types) and fixed-point quantizers, the firmware's norm (hwflow_layernorm.h) with a
    1/sqrt table of ``table_size`` entries per octave in ``table_t`` (None: ap_ufixed<18,1,AP_RND,AP_SAT>).
    """

    QUANTIZER_NAMES = ("gamma_quantizer", "beta_quantizer", "output_quantizer")

    def __init__(
        self,
        epsilon=1e-3,
        center=True,
        scale=True,
        output_quantizer=None,
        gamma_quantizer=None,
        beta_quantizer=None,
        axis=-1,
        beta_initializer="zeros",
        gamma_initializer="ones",
        input_type=None,
        table_size=1024,
        table_t=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._init_exact(input_type, table_size, table_t)
        if axis not in (-1,) and not isinstance(axis, int):
            raise ValueError("QLayerNormalization normalizes over the last axis only (axis=-1)")
        self.axis = axis
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.output_quantizer = get_quantizer(output_quantizer)
        self.gamma_quantizer = get_quantizer(gamma_quantizer)
        self.beta_quantizer = get_quantizer(beta_quantizer)
        self.beta_initializer = tf.keras.initializers.get(beta_initializer)
        self.gamma_initializer = tf.keras.initializers.get(gamma_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        d = int(tf.TensorShape(input_shape)[-1])
        if self.axis not in (-1, len(tf.TensorShape(input_shape)) - 1):
            raise ValueError("QLayerNormalization normalizes over the last axis only (axis=-1)")
        self._dim = d
        self.gamma = (
            self.add_weight(name="gamma", shape=(d,), initializer=self.gamma_initializer) if self.scale else None
        )
        self.beta = self.add_weight(name="beta", shape=(d,), initializer=self.beta_initializer) if self.center else None
        self.spec = self.make_spec(d, tf.TensorShape(input_shape))
        super().build(input_shape)

    def call(self, inputs, training=None):
        y = self._float_call(inputs)
        if self.spec is None:
            return y
        gamma = _q(self.gamma_quantizer, self.gamma) if self.scale else None
        beta = _q(self.beta_quantizer, self.beta) if self.center else None
        return _exact_out(y, self._exact(inputs, gamma, beta), training)

    def _float_call(self, inputs):
        mean = tf.reduce_mean(inputs, axis=-1, keepdims=True)
        diff = inputs - mean
        var = tf.reduce_mean(tf.square(diff), axis=-1, keepdims=True)
        y = diff * tf.math.rsqrt(var + self.epsilon)
        if self.scale:
            y = y * _q(self.gamma_quantizer, self.gamma)
        if self.center:
            y = y + _q(self.beta_quantizer, self.beta)
        return _q(self.output_quantizer, y)

    def quantized_weights(self) -> dict:
        """Return gamma/beta as numpy arrays after their quantizers (ones/zeros when disabled)."""
        d = self._dim
        gamma = np.asarray(_q(self.gamma_quantizer, self.gamma)) if self.scale else None
        beta = np.asarray(_q(self.beta_quantizer, self.beta)) if self.center else None
        n = len(gamma) if gamma is not None else len(beta) if beta is not None else d
        return {
            "gamma": gamma if gamma is not None else np.ones(n, np.float32),
            "beta": beta if beta is not None else np.zeros(n, np.float32),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "axis": self.axis,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "beta_initializer": tf.keras.initializers.serialize(self.beta_initializer),
                "gamma_initializer": tf.keras.initializers.serialize(self.gamma_initializer),
                **self._exact_config(),
            }
        )
        for n in self.QUANTIZER_NAMES:
            config[n] = _ser(getattr(self, n))
        return config


class QRMSNormalization(_QNormBase):
    """Quantized RMS normalization over the last axis (Pre-RMSNorm transformers).

    ``y = output_quantizer(x / sqrt(mean(x^2) + epsilon) * gamma_q)`` with
    ``gamma_q = gamma_quantizer(gamma)``; weight ``gamma`` of shape (D,). ``input_type``, ``table_size``,
    ``table_t``: as for :class:`QLayerNormalization` (exact forward pass).
    """

    QUANTIZER_NAMES = ("gamma_quantizer", "output_quantizer")
    CENTER = False
    beta_quantizer = None

    def __init__(
        self,
        epsilon=1e-6,
        scale=True,
        output_quantizer=None,
        gamma_quantizer=None,
        axis=-1,
        gamma_initializer="ones",
        input_type=None,
        table_size=1024,
        table_t=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._init_exact(input_type, table_size, table_t)
        self.axis = axis
        self.epsilon = float(epsilon)
        self.scale = bool(scale)
        self.center = False
        self.output_quantizer = get_quantizer(output_quantizer)
        self.gamma_quantizer = get_quantizer(gamma_quantizer)
        self.gamma_initializer = tf.keras.initializers.get(gamma_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        d = int(tf.TensorShape(input_shape)[-1])
        if self.axis not in (-1, len(tf.TensorShape(input_shape)) - 1):
            raise ValueError("QRMSNormalization normalizes over the last axis only (axis=-1)")
        self._dim = d
        self.gamma = (
            self.add_weight(name="gamma", shape=(d,), initializer=self.gamma_initializer) if self.scale else None
        )
        self.spec = self.make_spec(d, tf.TensorShape(input_shape))
        super().build(input_shape)

    def call(self, inputs, training=None):
        y = self._float_call(inputs)
        if self.spec is None:
            return y
        gamma = _q(self.gamma_quantizer, self.gamma) if self.scale else None
        return _exact_out(y, self._exact(inputs, gamma, None), training)

    def _float_call(self, inputs):
        ms = tf.reduce_mean(tf.square(inputs), axis=-1, keepdims=True)
        y = inputs * tf.math.rsqrt(ms + self.epsilon)
        if self.scale:
            y = y * _q(self.gamma_quantizer, self.gamma)
        return _q(self.output_quantizer, y)

    def quantized_weights(self) -> dict:
        """Return gamma as a numpy array after its quantizer (ones when disabled)."""
        if self.scale:
            return {"gamma": np.asarray(_q(self.gamma_quantizer, self.gamma))}
        return {"gamma": np.ones(self._dim, np.float32)}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "axis": self.axis,
                "epsilon": self.epsilon,
                "scale": self.scale,
                "gamma_initializer": tf.keras.initializers.serialize(self.gamma_initializer),
                **self._exact_config(),
            }
        )
        for n in self.QUANTIZER_NAMES:
            config[n] = _ser(getattr(self, n))
        return config


class QSoftmax(tf.keras.layers.Layer):
    """Softmax over the last axis: the firmware's (hwflow_softmax.h) when ``input_type`` is given, else float.

    A drop-in for ``Activation("softmax")`` at the end of a classifier: with ``input_type`` (the type of
    the logits, e.g. the preceding QActivation's) the output is the fixed-point softmax of the C++,
    ``result_type`` (unsigned, 16 fractional bits by default) with the same exp and reciprocal tables.
    """

    def __init__(
        self,
        input_type=None,
        result_type=SOFTMAX_RESULT,
        exp_table_size=1024,
        inv_table_size=1024,
        exp_table_t=None,
        inv_table_t=None,
        axis=-1,
        **kwargs,
    ):
        kwargs.pop("activation", None)  # written by get_config for hls4ml's activation parser
        super().__init__(**kwargs)
        if axis != -1:
            raise ValueError("QSoftmax works over the last axis only (axis=-1), like the firmware")
        self.axis = -1
        self.input_type, self.result_type = _type_str(input_type), _type_str(result_type)
        self.exp_table_size, self.inv_table_size = int(exp_table_size), int(inv_table_size)
        self.exp_table_t, self.inv_table_t = _type_str(exp_table_t), _type_str(inv_table_t)
        self.spec = None

    def build(self, input_shape):
        from ..reference.softmax import make_spec

        shape = tf.TensorShape(input_shape)
        if self.input_type is not None:
            kw = {k: v for k, v in (("exp_table_t", self.exp_table_t), ("inv_table_t", self.inv_table_t)) if v}
            rows = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
            self.spec = make_spec(
                int(shape[-1]),
                self.input_type,
                self.result_type,
                n_rows=rows,
                exp_table_size=self.exp_table_size,
                inv_table_size=self.inv_table_size,
                **kw,
            )
        super().build(input_shape)

    def call(self, inputs, training=None):
        y = tf.nn.softmax(inputs, axis=-1)
        if self.spec is None:
            return y
        return _exact_out(y, exact.softmax(tf.cast(inputs, tf.float64), self.spec), training)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "activation": "softmax",
                "input_type": self.input_type,
                "result_type": self.result_type,
                "exp_table_size": self.exp_table_size,
                "inv_table_size": self.inv_table_size,
                "exp_table_t": self.exp_table_t,
                "inv_table_t": self.inv_table_t,
                "axis": self.axis,
            }
        )
        return config


class QGlobalAveragePooling1D(tf.keras.layers.GlobalAveragePooling1D):
    """Mean over the sequence axis: hls4ml's average pooling (``nnet::global_pooling1d_cl``) when ``input_type``
    is given, else the float mean.

    With ``input_type`` (the pooled tensor's type, as hls4ml infers it from the upstream quantizer) the
    output is the firmware's: the sum in ``accum_type``, the quotient truncated toward zero on its grid,
    in ``result_type``; both default to hwflow.reference.pooling.pool_types (a 24-bit mean, exact in the
    float32 graph), and hls.convert gives the hls4ml layer the same types. A stock GlobalAveragePooling1D
    averages in float32, which the fixed-point sum and division cannot reproduce for a token count that is
    not a power of two.
    """

    def __init__(self, input_type=None, accum_type=None, result_type=None, **kwargs):
        super().__init__(**kwargs)
        self.input_type = _type_str(input_type)
        self.accum_type, self.result_type = _type_str(accum_type), _type_str(result_type)

    def build(self, input_shape):
        from ..reference.pooling import pool_types

        if self.input_type is not None and (self.accum_type is None or self.result_type is None):
            accum_t, result_t = pool_types(self.input_type, int(tf.TensorShape(input_shape)[1]))
            self.accum_type = self.accum_type or str(accum_t)
            self.result_type = self.result_type or str(result_t)
        super().build(input_shape)

    def call(self, inputs, mask=None, training=None):
        y = super().call(inputs, mask=mask)
        if self.input_type is None or mask is not None or self.keepdims or self.data_format != "channels_last":
            return y
        return _exact_out(y, exact.global_average_pool1d(inputs, self.accum_type, self.result_type), training)

    def get_config(self):
        config = super().get_config()
        config.update({"input_type": self.input_type, "accum_type": self.accum_type, "result_type": self.result_type})
        return config


def get_custom_objects() -> dict:
    """Return the custom-object dict (hwflow layers + all QKeras objects) for keras.models.load_model."""
    from qkeras.utils import _add_supported_quantized_objects

    objs: dict = {}
    _add_supported_quantized_objects(objs)
    objs.update(
        {
            "QMultiHeadAttention": QMultiHeadAttention,
            "QLayerNormalization": QLayerNormalization,
            "QRMSNormalization": QRMSNormalization,
            "QLinformerAttention": QLinformerAttention,
            "QCosformerAttention": QCosformerAttention,
            "QGroupedAttention": QGroupedAttention,
            "QSoftmax": QSoftmax,
            "QGlobalAveragePooling1D": QGlobalAveragePooling1D,
        }
    )
    return objs
