"""TensorFlow twins of ``hwflow.reference.fixed``: ap_fixed assignment (rounding, then overflow) in TF ops.

Two carriers, chosen per step so every value stays exact:

- float64 tensors holding dyadic values with < 53 significant bits (products and sums of the
  firmware's operands): :func:`quantize` scales by a power of two (exact), rounds and saturates;
- int64 tensors holding integer representations (value * 2^frac) when a product is wider than a
  double's 53 bits: :func:`quantize_raw` shifts with the ap_fixed rounding modes, like
  ``reference.fixed.quantize_raw`` does with Python integers.

Every mode of ``reference.fixed`` is supported, and the tests compare both bit for bit. Gradients are
not defined here: the exact layers wrap these forward passes in a straight-through estimator.
"""

from __future__ import annotations

import tensorflow as tf

from ..reference.fixed import FixedType, parse_type
from ..util import HwflowError

INT64_BITS = 62  # integer representations must stay below 2^62 (sums of two and a sign bit fit in int64)


def _bounds(t: FixedType) -> tuple[int, int]:
    lo = -(2 ** (t.width - 1)) if t.signed else 0
    hi = 2 ** (t.width - 1) - 1 if t.signed else 2**t.width - 1
    return lo, hi


def _overflow(r, t: FixedType):
    """Return integer representations ``r`` (float64 or int64 tensor) after the overflow mode of ``t``."""
    lo, hi = _bounds(t)
    dt = r.dtype
    if dt == tf.int64 and t.width >= 63:
        return r  # every int64 value is inside the type: nothing wraps or saturates
    c = (lambda v: tf.constant(v, dt)) if dt == tf.int64 else (lambda v: tf.constant(float(v), dt))
    if t.overflow == "AP_WRAP":
        return tf.math.floormod(r - c(lo), c(2**t.width)) + c(lo)
    if t.overflow == "AP_SAT":
        return tf.minimum(tf.maximum(r, c(lo)), c(hi))
    if t.overflow == "AP_SAT_SYM":
        return tf.minimum(tf.maximum(r, c(-hi if t.signed else 0)), c(hi))
    if t.overflow == "AP_SAT_ZERO":
        return tf.where((r < c(lo)) | (r > c(hi)), tf.zeros_like(r), r)
    raise HwflowError(f"unknown overflow mode {t.overflow!r}")


def _round_float(s, mode: str):
    """Return float64 scaled values ``s`` rounded to integers with ap_fixed quantization mode ``mode``."""
    if mode == "AP_TRN":
        return tf.floor(s)
    if mode == "AP_TRN_ZERO":
        return tf.where(s < 0, tf.math.ceil(s), tf.floor(s))
    fl = tf.floor(s)
    up = fl + 1.0
    frac = s - fl  # exact: s and fl are close doubles
    r = tf.where(frac > 0.5, up, fl)
    tie = {
        "AP_RND": lambda: up,
        "AP_RND_ZERO": lambda: tf.where(s > 0, fl, up),
        "AP_RND_MIN_INF": lambda: fl,
        "AP_RND_INF": lambda: tf.where(s > 0, up, fl),
        "AP_RND_CONV": lambda: tf.where(tf.math.floormod(fl, 2.0) == 0, fl, up),
    }
    if mode not in tie:
        raise HwflowError(f"unknown rounding mode {mode!r}")
    return tf.where(frac == 0.5, tie[mode](), r)


def quantize_int(x, t) -> tf.Tensor:
    """Return the integer representation (float64 tensor) of exact float64 values ``x`` assigned to ``t``."""
    t = parse_type(t)
    s = tf.cast(x, tf.float64) * (2.0**t.frac)
    return _overflow(_round_float(s, t.rounding), t)


def quantize(x, t) -> tf.Tensor:
    """Return float64 values ``x`` (exact dyadic numbers) assigned to fixed-point type ``t``, bit for bit."""
    t = parse_type(t)
    return quantize_int(x, t) * (2.0**-t.frac)


def to_raw(x, t) -> tf.Tensor:
    """Return the int64 representation of float64 values already in type ``t`` (exact)."""
    t = parse_type(t)
    return tf.cast(tf.round(tf.cast(x, tf.float64) * (2.0**t.frac)), tf.int64)


def from_raw(r, t) -> tf.Tensor:
    """Return the float64 values of int64 representations ``r`` of type ``t``."""
    t = parse_type(t)
    return tf.cast(r, tf.float64) * (2.0**-t.frac)


def _round_floor(fl, gt, eq, inexact, positive, mode: str) -> tf.Tensor:
    """Return int64 floors ``fl`` rounded with ap_fixed quantization mode ``mode``, given where the dropped remainder
    is above half an LSB (``gt``), exactly half (``eq``), not zero (``inexact``) and where the value is > 0."""
    one = tf.constant(1, tf.int64)
    if mode == "AP_TRN":
        return fl
    if mode == "AP_TRN_ZERO":
        return tf.where(~positive & inexact, fl + one, fl)
    tie = {
        "AP_RND": lambda: fl + one,
        "AP_RND_ZERO": lambda: tf.where(positive, fl, fl + one),
        "AP_RND_MIN_INF": lambda: fl,
        "AP_RND_INF": lambda: tf.where(positive, fl + one, fl),
        "AP_RND_CONV": lambda: tf.where(tf.math.floormod(fl, 2) == 0, fl, fl + one),
    }
    if mode not in tie:
        raise HwflowError(f"unknown rounding mode {mode!r}")
    return tf.where(gt, fl + one, tf.where(eq, tie[mode](), fl))


def quantize_raw(raw, frac: int, t) -> tf.Tensor:
    """Return the int64 representation in ``t`` of exact int64 integers ``raw`` with ``frac`` fractional bits."""
    t = parse_type(t)
    raw = tf.cast(raw, tf.int64)
    sh = frac - t.frac
    if sh <= 0:
        if sh < 0:
            # saturate before the left shift so the shifted value cannot leave int64
            lim = tf.constant(2 ** (INT64_BITS + sh), tf.int64)
            big = tf.abs(raw) >= lim
            raw = tf.where(big, tf.sign(raw) * lim, raw) * (2**-sh)
        return _overflow(raw, t)
    fl = tf.bitwise.right_shift(raw, tf.constant(sh, tf.int64))  # arithmetic shift: floor
    rem = raw - fl * (2**sh)
    half = tf.constant(2 ** (sh - 1), tf.int64)
    return _overflow(_round_floor(fl, rem > half, rem == half, rem != 0, raw > 0, t.rounding), t)


def round_shift(base, delta, sh, t) -> tf.Tensor:
    """Return the int64 representation in ``t`` of ``base + delta / 2^sh`` (int64 tensors, ``sh`` >= 0 per element),
    rounded with the mode of ``t`` (the sign is that of the whole value), then its overflow mode.

    Equal to ``quantize_raw(base * 2^sh + delta, frac + sh, t)`` without forming ``base * 2^sh``, which may not
    fit in 64 bits."""
    t = parse_type(t)
    base, delta, sh = tf.cast(base, tf.int64), tf.cast(delta, tf.int64), tf.cast(sh, tf.int64)
    one = tf.constant(1, tf.int64)
    q = tf.bitwise.right_shift(delta, sh)  # floor
    rem = delta - tf.bitwise.left_shift(q, sh)  # in [0, 2^sh)
    fl = base + q
    half = tf.bitwise.right_shift(tf.bitwise.left_shift(one, sh), 1)
    inexact = (sh > 0) & (rem != 0)
    positive = (fl > 0) | ((fl == 0) & (rem > 0))
    gt = inexact & (rem > half)
    eq = inexact & (rem == half)
    return _overflow(_round_floor(fl, gt, eq, inexact, positive, t.rounding), t)


LIMB = 31


def wide_mul(a, b, a_bits: int, where: str):
    """Return the exact product of int64 tensors ``a`` (|a| < 2^a_bits, a_bits <= 31) and ``b`` (|b| < 2^62) as
    two limbs ``(H, L)`` with value ``H * 2^31 + L`` and 0 <= L < 2^31 (up to 93 bits)."""
    if a_bits > LIMB:
        raise HwflowError(f"{where}: a {a_bits}-bit factor is wider than the 31-bit limb of the exact Keras layer")
    a, b = tf.cast(a, tf.int64), tf.cast(b, tf.int64)
    mask = tf.constant(2**LIMB - 1, tf.int64)
    bh = tf.bitwise.right_shift(b, tf.constant(LIMB, tf.int64))
    q = a * tf.bitwise.bitwise_and(b, mask)
    return a * bh + tf.bitwise.right_shift(q, tf.constant(LIMB, tf.int64)), tf.bitwise.bitwise_and(q, mask)


def wide_sum(h, low, axis: int = -1):
    """Return the two-limb sum over ``axis`` (keepdims) of two-limb values ``(h, low)``."""
    mask = tf.constant(2**LIMB - 1, tf.int64)
    hs, ls = tf.reduce_sum(h, axis=axis, keepdims=True), tf.reduce_sum(low, axis=axis, keepdims=True)
    return hs + tf.bitwise.right_shift(ls, tf.constant(LIMB, tf.int64)), tf.bitwise.bitwise_and(ls, mask)


def wide_mul_const(h, low, c: int, where: str):
    """Return two-limb ``(h, low) * c`` for an integer constant 0 <= c < 2^31 (|h * c| must stay below 2^62)."""
    if not 0 <= c < 2**LIMB:
        raise HwflowError(f"{where}: constant {c} is outside [0, 2^31): the exact product needs another limb")
    mask = tf.constant(2**LIMB - 1, tf.int64)
    q = low * c
    return h * c + tf.bitwise.right_shift(q, tf.constant(LIMB, tf.int64)), tf.bitwise.bitwise_and(q, mask)


def wide_quantize(h, low, frac: int, t) -> tf.Tensor:
    """Return the int64 representation in ``t`` of the two-limb integer ``H * 2^31 + L`` with ``frac`` fractional
    bits, rounded and then overflowed exactly like ``reference.fixed.quantize_raw``."""
    t = parse_type(t)
    positive = (h > 0) | ((h == 0) & (low > 0))
    sh = frac - t.frac
    if sh >= LIMB:
        k = sh - LIMB
        fl = tf.bitwise.right_shift(h, tf.constant(k, tf.int64))
        if k >= 1:
            hrem = h - fl * (2**k)
            half = 2 ** (k - 1)
            gt = (hrem > half) | ((hrem == half) & (low > 0))
            eq = (hrem == half) & (low == 0)
            nonzero = (hrem != 0) | (low != 0)
        else:
            gt, eq, nonzero = low > 2 ** (LIMB - 1), low == 2 ** (LIMB - 1), low != 0
    else:
        # H beyond the target's range saturates (or wraps) anyway: clip it so the shifted value stays in int64
        lim = 2 ** max(INT64_BITS - 1 - (LIMB - sh), 0)
        hs = tf.clip_by_value(h, -lim, lim)
        if sh <= 0:
            return _overflow(hs * (2 ** (LIMB - sh)) + low * (2**-sh), t)
        fl = hs * (2 ** (LIMB - sh)) + tf.bitwise.right_shift(low, tf.constant(sh, tf.int64))
        rem = tf.bitwise.bitwise_and(low, tf.constant(2**sh - 1, tf.int64))
        half = 2 ** (sh - 1)
        gt, eq, nonzero = rem > half, rem == half, rem != 0
    return _overflow(_round_floor(fl, gt, eq, nonzero, positive, t.rounding), t)


def mul_const_raw(a, c: int, frac: int, t) -> tf.Tensor:
    """Return the int64 representation in ``t`` of ``a * c`` (int64 ``a`` with |a| < 2^62, integer constant
    0 <= c < 2^31) with ``frac`` fractional bits, rounded and saturated like ``quantize_raw`` although the
    product may be up to 93 bits wide (two limbs, :func:`wide_quantize`)."""
    a = tf.cast(a, tf.int64)
    mask = tf.constant(2**LIMB - 1, tf.int64)
    h = tf.bitwise.right_shift(a, tf.constant(LIMB, tf.int64))
    return wide_quantize(*wide_mul_const(h, tf.bitwise.bitwise_and(a, mask), c, "constant product"), frac, t)


def mul_raw(a_raw, b_raw, a_bits: int, b_bits: int, where: str) -> tf.Tensor:
    """Return the exact int64 product of two integer representations, after checking it fits in int64."""
    if a_bits + b_bits > INT64_BITS:
        raise HwflowError(
            f"{where}: an exact product of {a_bits} x {b_bits} bits does not fit the 62-bit integers the exact "
            "Keras layer computes with; narrow the types of this layer (hls.layer_name Precision)"
        )
    return tf.cast(a_raw, tf.int64) * tf.cast(b_raw, tf.int64)


def straight_through(x, exact):
    """Return ``exact`` in the forward pass with the gradient of ``x`` (the straight-through estimator)."""
    exact = tf.cast(exact, x.dtype)
    return x + tf.stop_gradient(exact - x)
