"""Core ap_fixed arithmetic in numpy: types, quantization (rounding) and overflow (saturation/wrap).

Values are carried as float64 arrays that hold exact dyadic numbers (every ap_fixed value up to
53 significant bits is exact in a double), so products and sums of the firmware's operands are
exact and a cast reproduces the C++ ``ap_fixed`` assignment bit for bit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..util import HwflowError

ROUNDING = ("AP_TRN", "AP_TRN_ZERO", "AP_RND", "AP_RND_ZERO", "AP_RND_MIN_INF", "AP_RND_INF", "AP_RND_CONV")
OVERFLOW = ("AP_WRAP", "AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM")


@dataclass(frozen=True)
class FixedType:
    """An ap_fixed/ap_ufixed type: total width, integer bits (incl. sign), signedness and modes."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "AP_TRN"
    overflow: str = "AP_WRAP"

    @property
    def frac(self) -> int:
        """Return the number of fractional bits."""
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        """Return the value of one least-significant bit."""
        return 2.0**-self.frac

    @property
    def max(self) -> float:
        """Return the largest representable value."""
        return (2.0 ** (self.width - 1 if self.signed else self.width) - 1) * self.lsb

    @property
    def min(self) -> float:
        """Return the smallest representable value."""
        return -(2.0 ** (self.width - 1)) * self.lsb if self.signed else 0.0

    def cpp(self) -> str:
        """Return the C++ type string, e.g. ``ap_fixed<16,6,AP_RND,AP_SAT>``."""
        base = "ap_fixed" if self.signed else "ap_ufixed"
        if self.rounding == "AP_TRN" and self.overflow == "AP_WRAP":
            return f"{base}<{self.width},{self.integer}>"
        return f"{base}<{self.width},{self.integer},{self.rounding},{self.overflow}>"

    def __str__(self) -> str:
        return self.cpp()

    def with_modes(self, rounding: str | None = None, overflow: str | None = None) -> FixedType:
        """Return the same type with other rounding/overflow modes."""
        return FixedType(self.width, self.integer, self.signed, rounding or self.rounding, overflow or self.overflow)


_TYPE_RE = re.compile(r"^\s*(ap_)?(u?)(fixed|int)\s*<\s*([^>]*)>\s*$")


def parse_type(text) -> FixedType:
    """Return the FixedType for an ap_fixed/ap_ufixed/ap_int/ap_uint (or hls4ml 'fixed<..>') string or hls4ml
    precision."""
    if isinstance(text, FixedType):
        return text
    if not isinstance(text, str):  # an hls4ml precision object
        text = _from_hls4ml(text)
        if isinstance(text, FixedType):
            return text
    m = _TYPE_RE.match(text)
    if not m:
        raise HwflowError(
            f"cannot parse fixed-point type {text!r}: use e.g. 'ap_fixed<16,6>' or 'ap_ufixed<18,1,AP_RND,AP_SAT>'"
        )
    unsigned, kind = m.group(2) == "u", m.group(3)
    args = [a.strip() for a in m.group(4).split(",") if a.strip()]
    try:
        width = int(args[0])
        integer = width if kind == "int" else int(args[1])
    except (IndexError, ValueError):
        raise HwflowError(f"cannot parse fixed-point type {text!r}: width and integer bits must be integers") from None
    modes = args[1:] if kind == "int" else args[2:]
    rnd, ovf = "AP_TRN", "AP_WRAP"
    for a in modes:
        a = a if a.startswith("AP_") else "AP_" + a
        if a in ROUNDING:
            rnd = a
        elif a in OVERFLOW:
            ovf = a
        elif a.lstrip("AP_").isdigit() or a.isdigit():
            continue  # saturation bits (unused)
        else:
            raise HwflowError(f"unknown rounding/overflow mode {a!r} in {text!r}: use one of {ROUNDING + OVERFLOW}")
    return FixedType(width, integer, not unsigned, rnd, ovf)


def _from_hls4ml(p):
    """Convert an hls4ml FixedPrecisionType/IntegerPrecisionType to a FixedType."""
    width, integer, signed = p.width, getattr(p, "integer", p.width), p.signed
    rnd = getattr(p, "rounding_mode", None)
    sat = getattr(p, "saturation_mode", None)
    rnd = "AP_" + rnd.name if rnd is not None else "AP_TRN"
    sat = "AP_" + sat.name if sat is not None else "AP_WRAP"
    return FixedType(width, integer, signed, rnd, sat)


def to_int(x, t: FixedType) -> np.ndarray:
    """Return the integer representation (value * 2^frac) of values already in type ``t``."""
    return np.round(np.asarray(x, np.float64) * 2.0**t.frac).astype(np.int64)


def from_int(r, t: FixedType) -> np.ndarray:
    """Return the values of integer representations ``r`` of type ``t``."""
    return np.asarray(r, np.float64) * 2.0**-t.frac


def _round(s: np.ndarray, mode: str) -> np.ndarray:
    """Round scaled values ``s`` to integers the way ap_fixed quantization mode ``mode`` does."""
    if mode == "AP_TRN":
        return np.floor(s)
    if mode == "AP_TRN_ZERO":
        return np.trunc(s)
    fl = np.floor(s)
    frac = s - fl
    half = frac == 0.5
    up = fl + 1
    r = np.where(frac > 0.5, up, fl)
    if mode == "AP_RND":  # ties toward +inf
        tie = up
    elif mode == "AP_RND_ZERO":
        tie = np.where(s > 0, fl, up)
    elif mode == "AP_RND_MIN_INF":
        tie = fl
    elif mode == "AP_RND_INF":  # ties away from zero
        tie = np.where(s > 0, up, fl)
    elif mode == "AP_RND_CONV":  # ties to even
        tie = np.where(np.mod(fl, 2) == 0, fl, up)
    else:
        raise HwflowError(f"unknown rounding mode {mode!r}")
    return np.where(half, tie, r)


def quantize_int(x, t: FixedType) -> np.ndarray:
    """Return the integer representation of ``x`` after assignment to type ``t`` (rounding, then overflow)."""
    s = np.asarray(x, np.float64) * 2.0**t.frac
    return _overflow(_round(s, t.rounding), t)


def quantize_raw(raw, frac: int, t) -> np.ndarray:
    """Return the integer representation in ``t`` of exact integers ``raw`` with ``frac`` fractional bits.

    Pure int64 arithmetic: use it when an exact product is wider than the 53 bits of a double.
    """
    t = parse_type(t)
    raw = np.asarray(raw, dtype=object)  # Python integers: exact at any width
    sh = frac - t.frac
    if sh <= 0:
        return _overflow(raw * (1 << -sh), t)
    fl = raw >> sh
    rem = raw & ((1 << sh) - 1)
    half = 1 << (sh - 1)
    if t.rounding == "AP_TRN":
        r = fl
    elif t.rounding == "AP_TRN_ZERO":
        r = np.where((raw < 0) & (rem != 0), fl + 1, fl)
    else:
        tie = {
            "AP_RND": fl + 1,
            "AP_RND_ZERO": np.where(raw > 0, fl, fl + 1),
            "AP_RND_MIN_INF": fl,
            "AP_RND_INF": np.where(raw > 0, fl + 1, fl),
            "AP_RND_CONV": np.where(fl % 2 == 0, fl, fl + 1),
        }[t.rounding]
        r = np.where(rem > half, fl + 1, np.where(rem < half, fl, tie))
    return _overflow(r, t)


def _overflow(r, t: FixedType) -> np.ndarray:
    """Apply the overflow mode of ``t`` to integer representations ``r``."""
    lo = -(2 ** (t.width - 1)) if t.signed else 0
    hi = (2 ** (t.width - 1) - 1) if t.signed else 2**t.width - 1
    if t.overflow == "AP_WRAP":
        mod = 2**t.width
        r = np.mod(r - lo, mod) + lo
    elif t.overflow == "AP_SAT":
        r = np.minimum(np.maximum(r, lo), hi)
    elif t.overflow == "AP_SAT_SYM":
        r = np.minimum(np.maximum(r, -hi if t.signed else 0), hi)
    elif t.overflow == "AP_SAT_ZERO":
        r = np.where((r < lo) | (r > hi), 0, r)
    # wider types: exact Python integers (a float carrier would break the integer shifts of the callers)
    return r.astype(np.int64) if t.width < 63 else np.vectorize(int, otypes=[object])(r)


def quantize(x, t) -> np.ndarray:
    """Return ``x`` assigned to fixed-point type ``t`` (float64 values, bit-exact ap_fixed semantics)."""
    t = parse_type(t)
    return from_int(quantize_int(x, t), t)


def overflows(x, t) -> int:
    """Return how many values of ``x`` fall outside the representable range of ``t``."""
    t = parse_type(t)
    x = np.asarray(x, np.float64)
    return int(np.count_nonzero((x > t.max) | (x < t.min)))


def exact_type(values, signed: bool | None = None, max_width: int = 32, frac: int | None = None) -> FixedType:
    """Return the narrowest FixedType that holds every value of ``values`` exactly (frac capped by max_width)."""
    v = np.asarray(values, np.float64).ravel()
    signed = bool((v < 0).any()) if signed is None else signed
    if frac is None:
        frac = 0
        while frac < max_width and not np.all(np.floor(v * 2.0**frac) == v * 2.0**frac):
            frac += 1
    mag = float(np.max(np.abs(v))) if v.size else 0.0
    integer = int(np.floor(np.log2(mag))) + 1 if mag > 0 else 0
    integer = max(integer, -frac + 1)
    # the max positive value needs one more bit when it is an exact power of two with signed types
    if signed:
        integer += 1
    width = integer + frac
    if width > max_width:
        frac -= width - max_width
        width = max_width
    return FixedType(max(width, 1), integer, signed)
