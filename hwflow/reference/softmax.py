"""Numpy reference of hwflow_softmax.h: the exact fixed-point arithmetic of the firmware softmax.

Also builds the look-up tables (the firmware receives the very same values as literals) and
chooses the table configuration from calibration data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..config import schema_default
from ..util import HwflowError
from .fixed import FixedType, from_int, parse_type, quantize, quantize_int, quantize_raw

# table sizes: the card's hls.softmax defaults (hwflow.config)
EXP_TABLE_SIZE = schema_default("hls.softmax.table_size")
INV_TABLE_SIZE = schema_default("hls.softmax.inv_table_size")
DEFAULT_EXP_TABLE = "ap_ufixed<18,1,AP_RND,AP_SAT>"
DEFAULT_INV_TABLE = "ap_ufixed<18,1,AP_RND,AP_SAT>"


@dataclass
class SoftmaxSpec:
    """Everything that fixes the firmware softmax arithmetic (types, table sizes) for one layer."""

    n_in: int
    input_t: FixedType
    result_t: FixedType
    inp_norm_t: FixedType
    exp_table_t: FixedType
    inv_table_t: FixedType
    sum_t: FixedType
    lo_bits: int
    inv_bits: int
    n_rows: int = 1
    tables: dict = field(default_factory=dict, repr=False)

    @property
    def exp_hi_size(self) -> int:
        """Return the number of entries of the coarse exp table."""
        return 2 ** (self.inp_norm_t.width - self.lo_bits)

    @property
    def exp_lo_size(self) -> int:
        """Return the number of entries of the fine exp table (1 when unused)."""
        return 2**self.lo_bits

    @property
    def inv_table_size(self) -> int:
        """Return the number of entries of the reciprocal table."""
        return 2**self.inv_bits + 1


def make_spec(
    n_in: int,
    input_t,
    result_t,
    n_rows: int = 1,
    exp_table_size: int = EXP_TABLE_SIZE,
    inv_table_size: int = INV_TABLE_SIZE,
    exp_table_t=DEFAULT_EXP_TABLE,
    inv_table_t=DEFAULT_INV_TABLE,
    inp_norm_t=None,
    input_range: float | None = None,
    max_lo_bits: int = 6,
) -> SoftmaxSpec:
    """Return a SoftmaxSpec with derived defaults.

    ``exp_table_size`` is the coarse exp table (power of two); the normalised input ``x_max - x``
    keeps the input's fractional bits (capped so the fine table has at most 2**max_lo_bits
    entries) and covers ``input_range`` (measured max of ``x_max - x``; default: up to where
    exp() falls below the table's resolution).
    """
    input_t, result_t = parse_type(input_t), parse_type(result_t)
    exp_t, inv_t = parse_type(exp_table_t), parse_type(inv_table_t)
    for name, size in (("exp_table_size", exp_table_size), ("inv_table_size", inv_table_size)):
        if size < 2 or size & (size - 1):
            raise HwflowError(f"softmax {name}={size} must be a power of two >= 2 (e.g. 1024)")
    if exp_t.integer < 1 or exp_t.signed:
        raise HwflowError(
            f"softmax exp_table type {exp_t} must be unsigned with >= 1 integer bit (it stores exp(0) = 1)"
        )
    if inv_t.integer < 1 or inv_t.signed:
        raise HwflowError(f"softmax inv_table type {inv_t} must be unsigned with >= 1 integer bit (it stores 1/1 = 1)")
    if inp_norm_t is None:
        # beyond ln(2^frac) the exponential is below one LSB of the table: no need to represent it
        useful = exp_t.frac * math.log(2.0)
        rng = useful if input_range is None else min(max(float(input_range) * 1.25, 2.0 * input_t.lsb), useful)
        integer = max(int(math.ceil(math.log2(rng))), 1 - input_t.frac) if rng > 0 else 1
        n_hi = int(math.log2(exp_table_size))
        frac = min(input_t.frac, n_hi + max_lo_bits - integer)
        width = max(integer + frac, 1)
        norm = FixedType(width, integer, False, "AP_RND", "AP_SAT")
    else:
        norm = parse_type(inp_norm_t)
        if norm.signed:
            raise HwflowError(f"softmax inp_norm type {norm} must be unsigned (it holds x_max - x >= 0)")
    n_hi = int(math.log2(exp_table_size))
    lo_bits = max(norm.width - n_hi, 0)
    s_int = int(math.ceil(math.log2(n_in))) + 1 + (exp_t.integer - 1)
    sum_t = FixedType(s_int + exp_t.frac, s_int, False)
    spec = SoftmaxSpec(
        n_in, input_t, result_t, norm, exp_t, inv_t, sum_t, lo_bits, int(math.log2(inv_table_size)), n_rows
    )
    spec.tables = build_tables(spec)
    return spec


def build_tables(spec: SoftmaxSpec) -> dict:
    """Return the exp_hi, exp_lo and inv tables (float64 values exactly representable in their types)."""
    nf = spec.inp_norm_t.frac
    hi = np.arange(spec.exp_hi_size, dtype=np.float64) * 2.0 ** (spec.lo_bits - nf)
    lo = np.arange(spec.exp_lo_size, dtype=np.float64) * 2.0 ** (-nf)
    j = np.arange(spec.inv_table_size, dtype=np.float64)
    return {
        "exp_hi": quantize(np.exp(-hi), spec.exp_table_t),
        "exp_lo": quantize(np.exp(-lo), spec.exp_table_t),
        "inv": quantize(1.0 / (1.0 + j / 2**spec.inv_bits), spec.inv_table_t),
    }


def softmax(x, spec: SoftmaxSpec) -> np.ndarray:
    """Return the firmware softmax over the last axis of ``x`` (values in spec.input_t), bit-exact."""
    x = quantize(x, spec.input_t)
    t = spec.tables
    d = quantize(x.max(axis=-1, keepdims=True) - x, spec.inp_norm_t)
    raw = quantize_int(d, spec.inp_norm_t)  # already representable: exact
    if spec.lo_bits > 0:
        e = quantize(t["exp_hi"][raw >> spec.lo_bits] * t["exp_lo"][raw & (spec.exp_lo_size - 1)], spec.exp_table_t)
    else:
        e = t["exp_hi"][raw]
    s = quantize(e.sum(axis=-1, keepdims=True), spec.sum_t)
    sraw = quantize_int(s, spec.sum_t)
    sf = spec.sum_t.frac
    # p = position of the leading one above the binary point (0 when s < 2)
    p = np.zeros_like(sraw)
    for b in range(1, spec.sum_t.integer):
        p = np.where((sraw >> (sf + b)) & 1, b, p)
    m = sraw >> p
    mfrac = m & ((1 << sf) - 1)
    k = sf - spec.inv_bits
    if k > 0:
        idx, rem = mfrac >> k, mfrac & ((1 << k) - 1)
    else:
        idx, rem, k = mfrac << -k, np.zeros_like(mfrac), 0
    traw = quantize_int(t["inv"], spec.inv_table_t).astype(object)
    t0, t1 = traw[idx], traw[idx + 1]
    # T[j] + (T[j+1] - T[j]) * rem / 2^k, exact, then one rounding into inv_table_t
    inv_raw = quantize_raw(t0 * (1 << k) + (t1 - t0) * rem.astype(object), spec.inv_table_t.frac + k, spec.inv_table_t)
    inv = from_int(inv_raw, spec.inv_table_t)
    e_raw = quantize_int(e, spec.exp_table_t)
    inv_raw = quantize_int(inv, spec.inv_table_t)
    praw = (e_raw * inv_raw) >> p
    prod = from_int(
        praw,
        FixedType(
            spec.exp_table_t.width + spec.inv_table_t.width, spec.exp_table_t.integer + spec.inv_table_t.integer, False
        ),
    )
    return quantize(prod, spec.result_t)


def calibrate_range(scores) -> float:
    """Return the measured input range max(x_max - x) over the last axis of sample inputs ``scores``."""
    s = np.asarray(scores, np.float64)
    return float((s.max(axis=-1, keepdims=True) - s).max()) if s.size else 0.0
