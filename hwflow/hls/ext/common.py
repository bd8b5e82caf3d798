"""Helpers shared by hwflow's hls4ml extension layers: quantizer -> fixed type, per-layer precision lookup,
multiplier limits, and the Keras-model walks the conversion hooks share."""

from __future__ import annotations

import math

from ...reference.fixed import FixedType, parse_type
from ...util import HwflowError


def quantizer_config(q) -> dict | None:
    """Return a QKeras quantizer as a {'class_name', 'config'} dict (None stays None)."""
    if q is None:
        return None
    if isinstance(q, dict):
        return q
    if isinstance(q, str):
        from qkeras.quantizers import get_quantizer

        q = get_quantizer(q)
    return {"class_name": type(q).__name__, "config": q.get_config()}


def quantizer_type(q, where: str = "") -> FixedType | None:
    """Return the ap_fixed type a QKeras activation quantizer produces (round-half-even, saturating, like QKeras)."""
    q = quantizer_config(q)
    if q is None:
        return None
    cls, cfg = q["class_name"], q.get("config", {})
    bits = int(cfg.get("bits", 8))
    integer = int(cfg.get("integer", 0) or 0)
    if cls == "quantized_bits":
        alpha = cfg.get("alpha")
        if alpha not in (None, 1, 1.0):
            raise HwflowError(
                f"{where}: quantized_bits(alpha={alpha!r}) has no fixed binary point; use alpha=1 for "
                "activations/intermediates"
            )
        if cfg.get("keep_negative", True):
            return FixedType(bits, integer + 1, True, "AP_RND_CONV", "AP_SAT")
        return FixedType(bits, integer, False, "AP_RND_CONV", "AP_SAT")
    if cls == "quantized_relu":
        return FixedType(bits, integer, False, "AP_RND_CONV", "AP_SAT")
    raise HwflowError(f"{where}: quantizer {cls} is not supported here; use quantized_bits or quantized_relu")


def weight_quantizer(q, where: str = ""):
    """Return hls4ml's QKerasQuantizer for a weight quantizer config (None when float)."""
    q = quantizer_config(q)
    if q is None:
        return None
    if q["class_name"] != "quantized_bits":
        raise HwflowError(f"{where}: weight quantizer {q['class_name']} is not supported; use quantized_bits(alpha=1)")
    if q.get("config", {}).get("alpha") not in (None, 1, 1.0):
        raise HwflowError(f"{where}: weight quantizer alpha={q['config'].get('alpha')!r} is not supported; use alpha=1")
    from hls4ml.model.quantizers import QKerasQuantizer

    return QKerasQuantizer(q)


def user_precision(node, key: str) -> FixedType | None:
    """Return the precision the user set for ``key`` in LayerName/<layer>/Precision (None if absent or 'auto')."""
    cfg = node.model.config.get_layer_config(node) or {}
    prec = cfg.get("Precision", {})
    if isinstance(prec, str):
        return None if key != "result" or prec == "auto" else parse_type(prec)
    val = prec.get(key)
    if val is None or str(val).strip() == "auto":
        return None
    return parse_type(val)


def default_precision(node) -> FixedType:
    """Return the model's default precision as a FixedType."""
    return parse_type(node.model.config.get_precision(node, "default")[0])


def to_precision(node, ft: FixedType):
    """Return an hls4ml precision object for a FixedType."""
    return node.model.config.backend.convert_precision_string(ft.cpp())


def input_type(node) -> FixedType:
    """Return the (final) fixed-point type of a node's first input."""
    return parse_type(node.get_input_variable().type.precision)


def output_type(node) -> FixedType:
    """Return the fixed-point type of a node's output."""
    return parse_type(node.get_output_variable().type.precision)


def strategy(node) -> str:
    """Return 'Latency' or 'Resource' for a node."""
    s = str(node.get_attr("strategy", node.model.config.get_strategy(node)) or "Latency")
    return "Resource" if s.lower().startswith("resource") else "Latency"


def mult_limit(layer, n_mult: int) -> int:
    """Return the multiplier limit: all multipliers for Latency, ceil(n_mult / reuse_factor) for Resource."""
    if layer.model.config.is_resource_strategy(layer):
        rf = max(1, int(layer.get_attr("reuse_factor", 1)))
        return max(1, -(-n_mult // rf))
    return max(1, n_mult)


def result_precision(layer):
    """Return the output precision of an IR layer: explicit config wins, else the layer's result_quantizer, else
    the model default."""
    from hls4ml.model.types import UnspecifiedPrecisionType

    config = layer.model.config
    explicit = config.layer_name_precision.get(layer.name.lower() + "_result")
    precision, _ = config.get_precision(layer, "result")
    quantizer = layer.get_attr("result_quantizer")
    if quantizer is not None and (explicit is None or isinstance(precision, UnspecifiedPrecisionType)):
        # activation semantics (round half to even, saturate) like QKeras, as hls4ml does for QActivation
        return to_precision(layer, quantizer_type(quantizer, f"layer {layer.name} output_quantizer"))
    if isinstance(precision, UnspecifiedPrecisionType):
        return config.backend.convert_precision_string(config.model_precision["default"])
    return precision


def keras_quantizer(keras_layer: dict, name: str) -> dict | None:
    """Return the {class_name, config} dict of quantizer ``name`` in a Keras layer config, or None."""
    cfg = keras_layer["config"].get(name)
    if cfg is None:
        return None
    return {"class_name": cfg["class_name"], "config": dict(cfg["config"])}


def flat_layers(model) -> list:
    """Return the layers of a Keras model with nested Functional/Sequential models expanded."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and type(layer).__name__ in ("Functional", "Sequential", "Model"):
            out.extend(flat_layers(layer))
        else:
            out.append(layer)
    return out


def range_type(max_abs: float, width: int = 16) -> str:
    """Return a signed rounding/saturating type of ``width`` bits whose range covers max_abs (with margin)."""
    integer = max(int(math.ceil(math.log2(max_abs * 1.25 + 1e-12))), 0) + 1 if max_abs > 0 else 1
    return f"ap_fixed<{width},{integer},AP_RND_CONV,AP_SAT>"
