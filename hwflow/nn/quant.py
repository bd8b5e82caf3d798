"""Card quantizer specs -> QKeras quantizer objects (the one place that maps card roles to quantizers).

A card's ``quant`` section maps role names (``default`` for weights, plus any role a builder asks
for, e.g. ``bias``, ``activation``, ``qkv``, ``attention``, ``norm``) to ``{bits, integer,
keep_negative, alpha}``. A role missing from the card falls back to ``default``. With
``quant.enabled: false`` (or ``quantized=False``, the float twin) every quantizer is None.
"""

from __future__ import annotations

from typing import Any


def bits(spec: dict | None) -> Any:
    """Return a QKeras ``quantized_bits`` for a spec, or None for a float layer."""
    if spec is None:
        return None
    from qkeras import quantized_bits

    return quantized_bits(
        bits=spec["bits"],
        integer=spec["integer"],
        symmetric=0,
        keep_negative=spec.get("keep_negative", True),
        alpha=spec.get("alpha", 1),
    )


def relu(spec: dict | None) -> Any:
    """Return a QKeras ``quantized_relu`` for a spec, or None for a float layer."""
    if spec is None:
        return None
    from qkeras import quantized_relu

    return quantized_relu(bits=spec["bits"], integer=spec["integer"])


def role_spec_with(card, role: str, role_defaults: dict) -> dict | None:
    """Return a role's spec: the card's, else the builder's activation fallback, else ``default`` (None when off)."""
    q = card["quant"]
    if not q.get("enabled", True):
        return None
    if role in q and isinstance(q[role], dict):
        return dict(q[role])
    if role in role_defaults:
        bits_, integer, neg = role_defaults[role]
        return {"bits": bits_, "integer": integer, "keep_negative": neg, "alpha": 1}
    return dict(q["default"])


def builder_quantizer(card, role: str, quantized: bool, role_defaults: dict, kind: str = "bits") -> Any:
    """Return the QKeras quantizer of a builder role (None for the float twin); kind bits, relu, or auto (relu if
    unsigned)."""
    if not quantized:
        return None
    spec = role_spec_with(card, role, role_defaults)
    if kind == "relu" or (kind == "auto" and not spec.get("keep_negative", True)):
        return relu(spec)
    return bits(spec)


def fixed_type(quantizer):
    """Return the FixedType a QKeras quantizer produces (round half to even, saturating: QKeras' tf.round and
    clip), or None for None / quantizers without a fixed binary point. Same mapping as hls.ext.common.quantizer_type.
    """
    from ..reference.fixed import FixedType

    if quantizer is None:
        return None
    name = type(quantizer).__name__
    if name not in ("quantized_bits", "quantized_relu"):
        return None
    alpha = getattr(quantizer, "alpha", None)
    if name == "quantized_bits" and (isinstance(alpha, str) or alpha not in (None, 1, 1.0)):
        return None
    bits, integer = int(quantizer.bits), int(quantizer.integer or 0)
    if name == "quantized_bits" and bool(quantizer.keep_negative):
        return FixedType(bits, integer + 1, True, "AP_RND_CONV", "AP_SAT")
    return FixedType(bits, integer, False, "AP_RND_CONV", "AP_SAT")


def weight_type(quantizer):
    """Return the FixedType that holds a weight quantizer's values (hls4ml's QKerasQuantizer type), or None."""
    from ..reference.fixed import FixedType

    t = fixed_type(quantizer)
    return None if t is None else FixedType(t.width, t.integer, t.signed)


def add_type(a, b):
    """Return the type hls4ml infers for the sum of two fixed types (one more integer bit, the finer LSB)."""
    from ..reference.fixed import FixedType, parse_type

    a, b = parse_type(a), parse_type(b)
    integer = max(a.integer + (0 if a.signed else 1), b.integer + (0 if b.signed else 1)) + 1
    frac = max(a.frac, b.frac)
    return FixedType(integer + frac, integer, True)
