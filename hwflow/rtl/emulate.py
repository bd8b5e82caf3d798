"""Vectorized numpy emulation of a da4ml CombLogic (all samples at once), used for the per-layer exactness check.

Why not da4ml's own C++ interpreter (``CombLogic.predict``, DAIS)? In da4ml 0.6.0 it disagreed by one LSB with the
generated Verilog and with da4ml's Python interpreter on a constant division (seen on an average pooling over 3
tokens), while Verilog, the Python interpreter and the C simulation agreed. This module follows the Python
interpreter (``CombLogic.__call__``) op by op, but on arrays of samples, so it is exact (float64 holds every value
up to 52 bits, checked) and fast enough for thousands of samples.
"""
from __future__ import annotations

import numpy as np

from da4ml.types import CombLogic, minimal_kif


def _relu(v, i, f, inv):
    if inv:
        v = -v
    v = np.maximum(v, 0.0)
    sf = 2.0**f
    v = np.floor(v * sf) / sf
    return np.mod(v, 2.0**i)


def _quantize(v, k, i, f):
    b = k + i + f
    bias = 2.0 ** (b - 1) * k
    eps = 2.0**-f
    return eps * (np.mod(np.floor(v / eps) + bias, 2.0**b) - bias)


def _to_int(v, step):
    return np.round(v / step).astype(np.int64)


def _interpret(ints, k, i, f):
    b = k + i + f
    bias = 2 ** (b - 1) * k
    return 2.0**-f * (np.mod(ints + bias, 2**b) - bias)


def max_bits(comb: CombLogic) -> int:
    """Return the widest intermediate value (bits) of a CombLogic."""
    return max(sum(minimal_kif(op.qint)) for op in comb.ops)


def emulate(comb: CombLogic, x: np.ndarray) -> np.ndarray:
    """Return comb's outputs for every row of x (n_samples, n_inputs) as float64 (n_samples, n_outputs)."""
    if max_bits(comb) > 52:
        raise ValueError("a value wider than 52 bits cannot be emulated exactly in float64")
    x = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
    n = x.shape[0]
    buf: list = [None] * len(comb.ops)
    inp = x * (2.0 ** np.array(comb.inp_shifts, dtype=np.float64))
    ops = comb.ops
    for idx, op in enumerate(ops):
        c = op.opcode
        if c == -1:
            buf[idx] = inp[:, op.id0]
        elif c in (0, 1):
            v1 = 2.0**op.data * buf[op.id1]
            buf[idx] = buf[op.id0] + v1 if c == 0 else buf[op.id0] - v1
        elif c in (2, -2):
            _, i, f = minimal_kif(op.qint)
            buf[idx] = _relu(buf[op.id0], i, f, c == -2)
        elif c in (3, -3):
            v = buf[op.id0] if c == 3 else -buf[op.id0]
            k, i, f = minimal_kif(op.qint)
            buf[idx] = _quantize(v, int(k), i, f)
        elif c == 4:
            buf[idx] = buf[op.id0] + op.data * op.qint.step
        elif c == 5:
            buf[idx] = np.full(n, op.data * op.qint.step)
        elif c in (6, -6):
            id_c = op.data & 0xFFFFFFFF
            shift = (op.data >> 32) & 0xFFFFFFFF
            shift = shift if shift < 0x80000000 else shift - 0x100000000
            key, v0, v1 = buf[id_c], buf[op.id0], buf[op.id1]
            if c == -6:
                v1 = -v1
            qk = ops[id_c].qint
            if qk.min < 0:
                cond = key < 0
            else:
                _, ki, _ = minimal_kif(qk)
                cond = key >= 2.0 ** (ki - 1)
            buf[idx] = np.where(cond, v0, v1 * 2.0**shift)
        elif c == 7:
            buf[idx] = buf[op.id0] * buf[op.id1]
        elif c == 8:
            table = comb.lookup_tables[op.data]
            q = ops[op.id0].qint
            index = np.round((buf[op.id0] - q.min) / q.step).astype(np.int64)
            buf[idx] = np.asarray(table.float_table, dtype=np.float64)[index]
        elif c in (9, -9):
            v = buf[op.id0] if c == 9 else -buf[op.id0]
            qf = ops[op.id0].qint
            a = _to_int(v, qf.step)
            if op.data == 0:  # not
                k, i, f = minimal_kif(qf) if (qf.min != 0 or qf.max != 0) else (False, 1, 0)
                b = int(k) + i + f
                kk, ii, ff = minimal_kif(op.qint)
                buf[idx] = _interpret(np.mod(~a, 2**b), int(kk), ii, ff)
            elif op.data == 1:  # any
                buf[idx] = (a != 0).astype(np.float64)
            else:  # all
                full = round(qf.max / qf.step) if qf.min >= 0 else -1
                buf[idx] = (a == full).astype(np.float64)
        elif c == 10:
            v0, v1 = buf[op.id0], buf[op.id1]
            if (op.data >> 32) & 1:
                v0 = -v0
            if (op.data >> 33) & 1:
                v1 = -v1
            shift = ((int(op.data) & 0xFFFFFFFF) + (1 << 31)) % (1 << 32) - (1 << 31)
            sub = (op.data >> 56) & 0xFF
            q0, q1 = ops[op.id0].qint, ops[op.id1].qint
            step = min(q0.step, q1.step * 2.0**shift)
            a, b = _to_int(v0, step), _to_int(v1 * 2.0**shift, step)
            r = a & b if sub == 0 else (a | b if sub == 1 else a ^ b)
            k, i, f = minimal_kif(op.qint)
            buf[idx] = _interpret(r, int(k), i, f)
        else:
            raise ValueError(f"unknown da4ml opcode {c}")
    sf = 2.0 ** np.array(comb.out_shifts, dtype=np.float64)
    sign = np.where(comb.out_negs, -1.0, 1.0)
    out = np.empty((n, len(comb.out_idxs)))
    for j, oi in enumerate(comb.out_idxs):
        out[:, j] = 0.0 if oi < 0 else buf[oi] * sf[j] * sign[j]
    return out
