"""Small C++ code-generation helpers shared by the extension layers and the standalone harness."""

from __future__ import annotations

import numpy as np


def literal(v: float) -> str:
    """Return a C++ literal that parses to exactly the double ``v`` (all our constants are dyadic)."""
    r = repr(float(v))
    return r if ("e" in r or "." in r or "inf" in r or "nan" in r) else r + ".0"


def cpp_array(name: str, ctype: str, values, per_line: int = 16) -> str:
    """Return a ``static const`` C++ array definition holding ``values`` exactly."""
    vals = [literal(v) for v in np.asarray(values, np.float64).ravel()]
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(vals)}] = {{\n    {body}}};\n"


def cpp_raw_array(name: str, ftype, values, per_line: int = 16) -> str:
    """Return a ``static const ap_uint<W>`` ROM holding the raw bits of ``values`` in fixed type ``ftype``.

    Raw integer literals keep g++ fast (an ap_fixed built from a double literal inlines a heavy
    conversion per element) and are a plain ROM for HLS; the C++ reinterprets them with ``.range()``.
    """
    from ..reference.fixed import parse_type, quantize_int

    t = parse_type(ftype)
    raw = quantize_int(np.asarray(values, np.float64).ravel(), t)
    mask = (1 << t.width) - 1
    vals = [f"{int(r) & mask}ULL" for r in raw]
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    body = ",\n    ".join(lines)
    return f"static const ap_uint<{t.width}> {name}[{len(vals)}] = {{\n    {body}}};\n"
