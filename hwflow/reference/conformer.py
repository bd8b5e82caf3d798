"""Numpy fixed-point references of the conformer extension kernels (swish, GLU, depthwise conv1d).

Each function computes exactly what the C++ in ``hwflow/hls/nnet_utils/hwflow_{swish,glu,depthwise1d}.h``
computes: same look-up table, same index arithmetic, same order of casts, same rounding and
saturation. Inputs are float arrays whose values are representable in the input type (the C
simulation receives the same values); every intermediate is a dyadic rational with < 53
significant bits, so float64 holds it exactly and the comparison with the compiled C++ is bit for bit.

Sigmoid look-up table shared by swish and GLU (the same numbers are written into the generated
HLS config, so the table is never recomputed in C++ with a different libm):

- ``table_size`` N (power of two) entries cover ``[-R, R)`` (``R = table_range``, power of two);
  entry i holds sigmoid at the centre of its bin, ``-R + (i + 0.5) * 2R / N``, rounded to nearest
  in ``table_t`` (saturating);
- index of x: ``clip(floor(x * N / 2R), -N/2, N/2 - 1) + N/2`` — a floor and a clamp, which the
  C++ gets from one cast to ``ap_fixed<log2 N, log2 N, AP_TRN, AP_SAT>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import sigmoid_table_defaults
from ..util import HwflowError
from .fixed import FixedType, parse_type, quantize


def _log2_exact(v: float, what: str) -> int:
    e = math.log2(v) if v > 0 else float("nan")
    if not (e == e and float(e).is_integer()):
        raise HwflowError(
            f"{what} = {v} must be a power of two (the table index is then a bit slice): use e.g. 4, 8 or 16"
        )
    return int(e)


@dataclass(frozen=True)
class SigmoidTable:
    """The sigmoid look-up table of swish/GLU: N entries over [-R, R) in table_t."""

    table_size: int = sigmoid_table_defaults()["table_size"]
    table_range: float = sigmoid_table_defaults()["table_range"]
    table_t: str = sigmoid_table_defaults()["table_t"]

    def __post_init__(self):
        _log2_exact(self.table_size, "table_size")
        _log2_exact(self.table_range, "table_range")
        if self.table_size < 2:
            raise HwflowError(f"table_size = {self.table_size}: use at least 2 entries")

    @property
    def log2_size(self) -> int:
        """Return log2(table_size) (bits of the index)."""
        return _log2_exact(self.table_size, "table_size")

    @property
    def log2_scale(self) -> int:
        """Return log2(N / 2R): the index is floor(x * 2**log2_scale) + N/2."""
        return self.log2_size - 1 - _log2_exact(self.table_range, "table_range")

    def values(self) -> np.ndarray:
        """Return the N table entries (sigmoid at bin centres, cast to table_t)."""
        n, r = self.table_size, float(self.table_range)
        centres = -r + (np.arange(n) + 0.5) * (2 * r / n)
        return quantize(1.0 / (1.0 + np.exp(-centres)), self.table_t)

    def index(self, x) -> np.ndarray:
        """Return the table index of each x (floor, clamp, offset), as int64."""
        half = self.table_size // 2
        k = np.floor(np.asarray(x, dtype=np.float64) * 2.0**self.log2_scale)
        return (np.clip(k, -half, half - 1) + half).astype(np.int64)

    def lookup(self, x) -> np.ndarray:
        """Return the table value (approximate sigmoid) for each x."""
        return self.values()[self.index(x)]


def swish(x, table: SigmoidTable, res_t) -> np.ndarray:
    """Return res_t(x * sigmoid_table[index(x)]) elementwise: the hwflow swish kernel."""
    x = np.asarray(x, dtype=np.float64)
    return quantize(x * table.lookup(x), res_t)


def glu(x, table: SigmoidTable, res_t) -> np.ndarray:
    """Return res_t(a * sigmoid_table[index(b)]) with (a, b) the two halves of the last axis: the hwflow GLU kernel."""
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[-1]
    if c % 2:
        raise HwflowError(f"GLU needs an even number of channels, got {c}: make the preceding layer 2*C wide")
    a, b = x[..., : c // 2], x[..., c // 2 :]
    return quantize(a * table.lookup(b), res_t)


def depthwise_pads(kernel_size: int, padding: str) -> tuple[int, int]:
    """Return (pad_left, pad_right) of a stride-1 1-D convolution for Keras padding 'same', 'causal' or 'valid'."""
    total = kernel_size - 1
    if padding == "same":
        return total // 2, total - total // 2
    if padding == "causal":
        return total, 0
    if padding == "valid":
        return 0, 0
    raise HwflowError(f"depthwise conv1d padding '{padding}' is not supported: use same, causal or valid")


def depthwise_conv1d(x, weights, bias, padding: str, accum_t, res_t) -> np.ndarray:
    """Return the hwflow depthwise conv1d of x (..., T, C) with weights (K, C), bias (C,), in the C++ order of casts.

    Per output (t, c): acc = accum_t(bias[c]); for k = 0..K-1 (taps inside the input):
    acc = accum_t(acc + accum_t(w[k, c] * x[t + k - pad_left, c])); out = res_t(acc).
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    b = np.asarray(bias, dtype=np.float64)
    k_size, c = w.shape
    if x.shape[-1] != c:
        raise HwflowError(f"depthwise conv1d: input has {x.shape[-1]} channels, weights have {c}")
    pl, pr = depthwise_pads(k_size, padding)
    t_in = x.shape[-2]
    t_out = t_in + pl + pr - k_size + 1
    acc = np.broadcast_to(quantize(b, accum_t), x.shape[:-2] + (t_out, c)).copy()
    xp = np.zeros(x.shape[:-2] + (t_in + pl + pr, c))
    xp[..., pl : pl + t_in, :] = x
    for k in range(k_size):
        # padded taps are skipped in C++ (no multiply); adding accum_t(0) is the identity, so both agree
        prod = quantize(w[k] * xp[..., k : k + t_out, :], accum_t)
        acc = quantize(acc + prod, accum_t)
    return quantize(acc, res_t)


def exact_accum_type(in_t, w_t, b_t, n_terms: int) -> FixedType:
    """Return the smallest ap_fixed that holds sum(n_terms products in_t*w_t) + b_t without loss."""
    in_t, w_t, b_t = parse_type(in_t), parse_type(w_t), parse_type(b_t)
    frac = max(in_t.frac + w_t.frac, b_t.frac)
    # integer bits of one product (signed result), then growth for the sum of n_terms products plus the bias
    p_int = in_t.integer + w_t.integer + (0 if (in_t.signed or w_t.signed) else 1)
    integer = max(p_int, b_t.integer + (0 if b_t.signed else 1)) + int(math.ceil(math.log2(n_terms + 1)))
    return FixedType(integer + frac, integer, True)
