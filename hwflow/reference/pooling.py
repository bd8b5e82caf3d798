"""Numpy reference of hls4ml's global average pooling (``nnet::global_pooling1d_cl`` with ``Average``).

hls4ml's ``avg`` sums the ``n`` inputs in ``accum_t`` (``y += x[i]``), divides in place (``y /= n``, which
for an ``ap_fixed`` by an unsigned integer keeps ``accum_t``'s fractional bits and truncates the quotient
toward zero) and returns ``accum_t``, which the caller assigns to the result type.

hwflow chooses both types from the pooled input type (:func:`pool_types`) so that the whole average is
exact up to that truncation and fits in a float32 (the Keras graph's dtype) bit for bit:

- ``accum_t`` holds the sum without overflow: ``log2(n)`` more integer bits than the input;
- its fractional bits make a 24-bit mean (``24 - input integer bits``), at least the input's own;
- ``result_t`` is that mean's type (the input's integer bits), so the final assignment is exact.
"""

from __future__ import annotations

import math

import numpy as np

from ..util import HwflowError
from .fixed import FixedType, parse_type, quantize

FLOAT32_BITS = 24  # significant bits of a float32: the pooled mean must survive the Keras graph exactly


def pool_types(input_t, n: int) -> tuple[FixedType, FixedType]:
    """Return (accum_t, result_t) of an exact average of ``n`` values of ``input_t`` (see the module docstring)."""
    t = parse_type(input_t)
    if t.width > FLOAT32_BITS:
        raise HwflowError(
            f"average pooling input {t} is wider than the {FLOAT32_BITS} bits a float32 Keras tensor holds exactly: "
            "narrow the quantizer before the pooling"
        )
    integer = t.integer + (0 if t.signed else 1)  # the mean of unsigned values is carried signed, like hls4ml's sums
    frac = max(FLOAT32_BITS - integer, t.frac)
    grow = max(math.ceil(math.log2(n)), 0)
    return FixedType(integer + grow + frac, integer + grow), FixedType(integer + frac, integer)


def global_average_pool1d(x, accum_t, result_t) -> np.ndarray:
    """Return hls4ml's average over axis -2 of ``x`` (..., n, channels), values representable in the input type."""
    at, rt = parse_type(accum_t), parse_type(result_t)
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-2]
    total = quantize(np.sum(x, axis=-2), at)  # exact: accum_t holds every partial sum
    raw = np.rint(total * 2.0**at.frac).astype(np.int64)
    q = np.sign(raw) * (np.abs(raw) // n)  # '/=' by an unsigned: truncation toward zero on accum_t's grid
    return quantize(quantize(q * 2.0**-at.frac, at), rt)
