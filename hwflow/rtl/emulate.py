"""Exact numpy emulation of a da4ml CombLogic (all samples at once), used for the per-layer exactness check.

Why not da4ml's own C++ interpreter (``CombLogic.predict``, DAIS)? In da4ml 0.6.0 it disagreed by one LSB with the
generated Verilog on a constant division (average pooling over 3 tokens), and it is not exact beyond 64-bit
intermediates (layer normalization reaches 72 bits), while the Verilog matched the C simulation in both cases.
This module follows da4ml's Python interpreter (``CombLogic.__call__``) op by op, but on integer arrays of all
samples: every buffer is an integer count of its op's step (int64 up to 62 bits, Python integers beyond), so it is
exact at any width.
"""

from __future__ import annotations

import math

import numpy as np
from da4ml.types import CombLogic, minimal_kif

WIDE = 62  # beyond this many bits a buffer is held as Python integers (object arrays)


def _lg(step: float) -> int:
    """Return log2 of a power-of-two step."""
    e = math.log2(step)
    r = round(e)
    if abs(e - r) > 1e-9:
        raise ValueError(f"step {step} is not a power of two")
    return r


def _width(q) -> int:
    k, i, f = minimal_kif(q)
    return int(k) + i + f


def _shift(a, s: int):
    """Return a * 2**s for integer arrays (floor for s < 0)."""
    if s >= 0:
        return a << s if a.dtype != object else a * (1 << s)
    return a >> (-s)


def _wrap(a, k, i: int, f: int):
    """Return integer counts a wrapped into a field of k + i + f bits (two's complement when k, else unsigned)."""
    b = int(k) + i + f
    if b <= 0:
        return a * 0
    bias = (1 << (b - 1)) * int(k)
    return np.mod(a + bias, 1 << b) - bias


def _as(a, wide: bool):
    return a.astype(object) if wide and a.dtype != object else a


def max_bits(comb: CombLogic) -> int:
    """Return the widest intermediate value (bits) of a CombLogic."""
    return max(_width(op.qint) for op in comb.ops)


def emulate(comb: CombLogic, x: np.ndarray) -> np.ndarray:
    """Return comb's outputs for every row of x (n_samples, n_inputs) as float64 (n_samples, n_outputs)."""
    x = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
    n = x.shape[0]
    ops = comb.ops
    val: list = [None] * len(ops)  # integer counts of 2**lsb[i]
    lsb: list[int] = [0] * len(ops)
    inp_shift = np.array(comb.inp_shifts)

    def at(idx: int, e: int, wide: bool):
        """Return buffer idx expressed in units of 2**e (floor when coarser)."""
        return _shift(_as(val[idx], wide), lsb[idx] - e)

    for idx, op in enumerate(ops):
        c = op.opcode
        e = _lg(op.qint.step) if op.qint.step > 0 else 0
        wide = _width(op.qint) > WIDE or (c == 7 and _width(ops[op.id0].qint) + _width(ops[op.id1].qint) > WIDE)
        if c == -1:
            v = x[:, op.id0] * 2.0 ** float(inp_shift[op.id0])
            r = np.floor(v * 2.0**-e)
            r = r.astype(np.int64) if not wide else np.array([int(t) for t in r], dtype=object)
        elif c in (0, 1):
            a = at(op.id0, e, wide)
            b = _shift(_as(val[op.id1], wide), lsb[op.id1] + op.data - e)
            r = a + b if c == 0 else a - b
        elif c in (2, -2):
            _, i, f = minimal_kif(op.qint)
            a = val[op.id0] if c == 2 else -val[op.id0]
            a = _shift(_as(a, wide), lsb[op.id0] + f)  # floor at 2**-f
            r = _wrap(np.where(a > 0, a, 0), 0, i, f)
            e = -f
        elif c in (3, -3):
            k, i, f = minimal_kif(op.qint)
            a = val[op.id0] if c == 3 else -val[op.id0]
            r = _wrap(_shift(_as(a, wide), lsb[op.id0] + f), k, i, f)
            e = -f
        elif c == 4:
            r = at(op.id0, e, wide) + op.data
        elif c == 5:
            r = np.full(n, op.data, dtype=object if wide else np.int64)
        elif c in (6, -6):
            id_c = op.data & 0xFFFFFFFF
            sh = (op.data >> 32) & 0xFFFFFFFF
            sh = sh if sh < 0x80000000 else sh - 0x100000000
            qk = ops[id_c].qint
            key = val[id_c]
            if qk.min < 0:
                cond = key < 0
            else:
                _, ki, _ = minimal_kif(qk)
                t = ki - 1 - lsb[id_c]  # key * 2**lsb >= 2**(ki-1), exactly on integers
                cond = key >= ((1 << t) if t >= 0 else 1)
            a = at(op.id0, e, wide)
            b = _shift(_as(val[op.id1], wide), lsb[op.id1] + sh - e)
            if c == -6:
                b = -b
            r = np.where(cond, a, b)
        elif c == 7:
            a, b = _as(val[op.id0], wide), _as(val[op.id1], wide)
            r = _shift(a * b, lsb[op.id0] + lsb[op.id1] - e)
        elif c == 8:
            table = comb.lookup_tables[op.data]
            q = ops[op.id0].qint
            v = val[op.id0].astype(np.float64) * 2.0 ** lsb[op.id0]
            index = np.round((v - q.min) / q.step).astype(np.int64)
            ft = np.asarray(table.float_table, dtype=np.float64)[index]
            r = np.round(ft * 2.0**-e).astype(np.int64)
        elif c in (9, -9):
            qf = ops[op.id0].qint
            a = val[op.id0] if c == 9 else -val[op.id0]
            a = _shift(_as(a, wide), lsb[op.id0] - _lg(qf.step))
            if op.data == 0:
                k, i, f = minimal_kif(qf) if (qf.min != 0 or qf.max != 0) else (False, 1, 0)
                b = int(k) + i + f
                kk, ii, ff = minimal_kif(op.qint)
                r = _wrap(np.mod(~a, 1 << b), kk, ii, ff)
                e = -ff
            elif op.data == 1:
                r = (a != 0).astype(np.int64)
                e = 0
            else:
                full = round(qf.max / qf.step) if qf.min >= 0 else -1
                r = (a == full).astype(np.int64)
                e = 0
        elif c == 10:
            s = ((int(op.data) & 0xFFFFFFFF) + (1 << 31)) % (1 << 32) - (1 << 31)
            sub = (op.data >> 56) & 0xFF
            q0, q1 = ops[op.id0].qint, ops[op.id1].qint
            es = min(_lg(q0.step), _lg(q1.step) + s)
            a = at(op.id0, es, wide)
            b = _shift(_as(val[op.id1], wide), lsb[op.id1] + s - es)
            if (op.data >> 32) & 1:
                a = -a
            if (op.data >> 33) & 1:
                b = -b
            r = a & b if sub == 0 else (a | b if sub == 1 else a ^ b)
            k, i, f = minimal_kif(op.qint)
            r = _wrap(_shift(r, es + f), k, i, f)
            e = -f
        else:
            raise ValueError(f"unknown da4ml opcode {c}")
        val[idx], lsb[idx] = r, e
    out = np.empty((n, len(comb.out_idxs)))
    for j, oi in enumerate(comb.out_idxs):
        if oi < 0:
            out[:, j] = 0.0
            continue
        sgn = -1.0 if comb.out_negs[j] else 1.0
        out[:, j] = (
            sgn
            * np.asarray([float(t) for t in val[oi]] if val[oi].dtype == object else val[oi], dtype=np.float64)
            * 2.0 ** (lsb[oi] + comb.out_shifts[j])
        )
    return out
