"""The conformer layers hls4ml lacks, as Keras layers: QSwish, QGLU (sigmoid look-up table) and QDepthwiseConv1D.

Each computes exactly what its C++ kernel (hwflow/hls/nnet_utils/hwflow_{swish,glu,depthwise1d}.h) and numpy
reference (hwflow.reference.conformer) compute: the same sigmoid table (``SigmoidTable``, built once from the
card's ``model.swish_table_*``), products and sums in float64 (exact: every operand is a short dyadic number),
one rounding into the output quantizer's type (round half to even, saturating, like the ap_fixed cast of the
firmware and QKeras' own rounding). Training: table value forward, the true sigmoid's gradient
(straight-through), so the model trains against the function the FPGA runs.

Imported by hwflow.nn.conformer on first use (this module imports TensorFlow, the builder module does not).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from qkeras.quantizers import get_quantizer

from ..reference.conformer import SigmoidTable, depthwise_pads

__all__ = ["QSwish", "QGLU", "QDepthwiseConv1D", "quantize_exact"]


def _fixed_grid(quantizer):
    """Return (frac_bits, lo, hi) of a quantized_bits quantizer with a power-of-two-free scale, else None."""
    if quantizer is None or type(quantizer).__name__ != "quantized_bits":
        return None
    alpha = getattr(quantizer, "alpha", None)
    if isinstance(alpha, str) or (alpha not in (None, 1, 1.0)):
        return None
    bits, integer = int(quantizer.bits), int(quantizer.integer)
    neg = bool(quantizer.keep_negative)
    frac = bits - integer - (1 if neg else 0)
    n = 2 ** (bits - (1 if neg else 0))
    lo = -n + (1 if getattr(quantizer, "symmetric", False) else 0) if neg else 0
    return frac, lo, n - 1


def quantize_exact(quantizer, y):
    """Return quantizer(y) computed in float64 for quantized_bits (round half to even, saturate), float32 out.

    QKeras quantizers cast to float32 first; for a product of a 16-bit activation and a 12-bit table
    value that cast can move a value across a rounding tie, so the layers here round the exact
    float64 value like the ap_fixed cast does. Gradient: straight through. Other quantizers are
    applied as they are.
    """
    if quantizer is None:
        return tf.cast(y, tf.float32)
    grid = _fixed_grid(quantizer)
    if grid is None:
        return quantizer(tf.cast(y, tf.float32))
    frac, lo, hi = grid
    y = tf.cast(y, tf.float64)
    q = tf.clip_by_value(tf.round(y * (2.0**frac)), float(lo), float(hi)) * (2.0**-frac)
    return tf.cast(y + tf.stop_gradient(q - y), tf.float32)


def ser(q):
    """Serialize a quantizer the way QKeras layers do (None stays None)."""
    return None if q is None else tf.keras.constraints.serialize(q)


class _SigmoidLUT(tf.keras.layers.Layer):
    """Shared plumbing of QSwish/QGLU: the sigmoid table and the output quantizer."""

    def __init__(
        self,
        output_quantizer=None,
        use_table=None,
        table_size=1024,
        table_range=8.0,
        table_t="ap_ufixed<12,1,AP_RND,AP_SAT>",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_quantizer = get_quantizer(output_quantizer)
        # by default the table is used exactly when the layer is quantized (the float twin is exact)
        self.use_table = bool(self.output_quantizer is not None) if use_table is None else bool(use_table)
        self.table = SigmoidTable(int(table_size), float(table_range), str(table_t))
        self._table_values = tf.constant(self.table.values(), dtype=tf.float64)

    def sigmoid(self, x):
        """Return sigmoid(x) in float64: table value forward, exact sigmoid gradient (straight through)."""
        x = tf.cast(x, tf.float64)
        exact = tf.sigmoid(x)
        if not self.use_table:
            return exact
        half = self.table.table_size // 2
        k = tf.floor(x * (2.0**self.table.log2_scale))
        idx = tf.cast(tf.clip_by_value(k, -half, half - 1) + half, tf.int32)
        return exact + tf.stop_gradient(tf.gather(self._table_values, idx) - exact)

    def get_quantizers(self):
        """Return [output_quantizer]."""
        return [self.output_quantizer]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_quantizer": ser(self.output_quantizer),
                "use_table": self.use_table,
                "table_size": self.table.table_size,
                "table_range": self.table.table_range,
                "table_t": self.table.table_t,
            }
        )
        return config


class QSwish(_SigmoidLUT):
    """Quantized swish / SiLU, ``y = output_quantizer(x * sigmoid(x))``, sigmoid from the firmware's table."""

    def call(self, inputs):
        x = tf.cast(inputs, tf.float64)
        return quantize_exact(self.output_quantizer, x * self.sigmoid(x))

    def compute_output_shape(self, input_shape):
        return input_shape


class QGLU(_SigmoidLUT):
    """Quantized gated linear unit over the last axis: ``a * sigmoid(b)`` with ``[a, b] = split(x, 2)``."""

    def build(self, input_shape):
        c = int(input_shape[-1])
        if c % 2:
            raise ValueError(f"QGLU needs an even number of input channels, got {c}")
        super().build(input_shape)

    def call(self, inputs):
        x = tf.cast(inputs, tf.float64)
        a, b = tf.split(x, 2, axis=-1)
        return quantize_exact(self.output_quantizer, a * self.sigmoid(b))

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        return tf.TensorShape(shape[:-1] + [shape[-1] // 2])


class QDepthwiseConv1D(tf.keras.layers.Layer):
    """Quantized depthwise 1-D convolution (stride 1, depth multiplier 1) with optional folded batch norm.

    ``kernel`` has shape (kernel_size, channels). With ``fold_batchnorm`` the layer owns the batch-norm
    parameters; the folded kernel ``k * gamma / sqrt(var + eps)`` and bias ``(b - mean) * gamma /
    sqrt(var + eps) + beta`` are quantized by ``depthwise_quantizer`` / ``bias_quantizer`` (training:
    batch statistics, moving averages updated; inference: moving statistics). The sum is computed in
    float64 and cast by ``output_quantizer``, like the firmware's accumulator and result cast.
    """

    def __init__(
        self,
        kernel_size,
        padding="same",
        use_bias=True,
        depthwise_quantizer=None,
        bias_quantizer=None,
        output_quantizer=None,
        fold_batchnorm=False,
        momentum=0.99,
        epsilon=1e-3,
        depthwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_size = int(kernel_size[0] if isinstance(kernel_size, (list, tuple)) else kernel_size)
        depthwise_pads(self.kernel_size, padding)  # validates padding
        self.padding = padding
        self.use_bias = bool(use_bias)
        self.depthwise_quantizer = get_quantizer(depthwise_quantizer)
        self.bias_quantizer = get_quantizer(bias_quantizer)
        self.output_quantizer = get_quantizer(output_quantizer)
        self.fold_batchnorm = bool(fold_batchnorm)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.depthwise_initializer = tf.keras.initializers.get(depthwise_initializer)
        self.bias_initializer = tf.keras.initializers.get(bias_initializer)

    QUANTIZER_NAMES = ("depthwise_quantizer", "bias_quantizer", "output_quantizer")

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel",
            shape=(self.kernel_size, c),
            initializer=self.depthwise_initializer,
            trainable=True,
        )
        if self.use_bias or self.fold_batchnorm:
            self.bias = self.add_weight(
                name="bias", shape=(c,), initializer=self.bias_initializer, trainable=self.use_bias
            )
        if self.fold_batchnorm:
            self.gamma = self.add_weight(name="gamma", shape=(c,), initializer="ones", trainable=True)
            self.beta = self.add_weight(name="beta", shape=(c,), initializer="zeros", trainable=True)
            self.moving_mean = self.add_weight(name="moving_mean", shape=(c,), initializer="zeros", trainable=False)
            self.moving_variance = self.add_weight(
                name="moving_variance", shape=(c,), initializer="ones", trainable=False
            )
        super().build(input_shape)

    def _conv(self, x, kernel, bias):
        pl, pr = depthwise_pads(self.kernel_size, self.padding)
        x = tf.pad(x, [[0, 0], [pl, pr], [0, 0]])
        t_out = tf.shape(x)[1] - self.kernel_size + 1
        y = 0.0
        for k in range(self.kernel_size):
            y = y + x[:, k : k + t_out, :] * kernel[k]
        return y if bias is None else y + bias

    def batch_statistics(self, training=False, x=None):
        """Return (mean, variance) of the batch norm: of this batch while training (moving averages updated, as
        QConv2DBatchnorm does, on the unfolded float conv output), else the moving statistics."""
        if not (training and x is not None):
            return self.moving_mean, self.moving_variance
        y = self._conv(x, self.depthwise_kernel, self.bias)
        mean, var = tf.nn.moments(y, axes=[0, 1])
        self.moving_mean.assign(self.momentum * self.moving_mean + (1 - self.momentum) * mean)
        self.moving_variance.assign(self.momentum * self.moving_variance + (1 - self.momentum) * var)
        return mean, var

    def quantize_weights(self, kernel, bias):
        """Return (kernel, bias) through their quantizers (what the firmware stores)."""
        if self.depthwise_quantizer is not None:
            kernel = self.depthwise_quantizer(kernel)
        if bias is not None and self.bias_quantizer is not None:
            bias = self.bias_quantizer(bias)
        return kernel, bias

    def folded(self, training=False, x=None):
        """Return (kernel, bias) as float32 tensors after folding the batch norm and quantizing."""
        kernel = self.depthwise_kernel
        bias = self.bias if (self.use_bias or self.fold_batchnorm) else None
        if self.fold_batchnorm:
            mean, var = self.batch_statistics(training, x)
            scale = self.gamma * tf.math.rsqrt(var + self.epsilon)
            kernel = kernel * scale
            bias = (bias - mean) * scale + self.beta
        return self.quantize_weights(kernel, bias)

    def call(self, inputs, training=None):
        if training is not None and not isinstance(training, (bool, int)):
            training = tf.get_static_value(training)  # a symbolic flag: use its value when known, else inference
        kernel, bias = self.folded(training=bool(training), x=inputs)
        x = tf.cast(inputs, tf.float64)
        y = self._conv(x, tf.cast(kernel, tf.float64), None if bias is None else tf.cast(bias, tf.float64))
        return quantize_exact(self.output_quantizer, y)

    def quantized_weights(self) -> dict:
        """Return {'kernel': (K, C), 'bias': (C,)} numpy arrays as the firmware stores them (inference folding)."""
        kernel, bias = self.folded(training=False)
        c = int(self.depthwise_kernel.shape[-1])
        return {
            "kernel": np.asarray(kernel, dtype=np.float64),
            "bias": np.zeros(c) if bias is None else np.asarray(bias, dtype=np.float64),
        }

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        pl, pr = depthwise_pads(self.kernel_size, self.padding)
        t = None if shape[1] is None else shape[1] + pl + pr - self.kernel_size + 1
        return tf.TensorShape([shape[0], t, shape[2]])

    def get_quantizers(self):
        """Return the quantizers (None for float), in QUANTIZER_NAMES order."""
        return [getattr(self, n) for n in self.QUANTIZER_NAMES]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "padding": self.padding,
                "use_bias": self.use_bias,
                "fold_batchnorm": self.fold_batchnorm,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "depthwise_initializer": tf.keras.initializers.serialize(self.depthwise_initializer),
                "bias_initializer": tf.keras.initializers.serialize(self.bias_initializer),
            }
        )
        for n in self.QUANTIZER_NAMES:
            config[n] = ser(getattr(self, n))
        return config


LAYER_CLASSES = {"QSwish": QSwish, "QGLU": QGLU, "QDepthwiseConv1D": QDepthwiseConv1D}
