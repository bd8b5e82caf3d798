"""Shared plumbing of the conformer extension layers (swish, GLU, depthwise conv1d) for hls4ml 1.3.0.

Each extension module defines an hls4ml IR layer, a Keras-2 parser handler for the hwflow QKeras
layer, config/function templates for the Vivado and Vitis backends, and ``register()`` which adds
them through hls4ml's public extension API (idempotent: a second call does nothing).
"""

from __future__ import annotations

from pathlib import Path

NNET_UTILS = Path(__file__).resolve().parents[1] / "nnet_utils"
BACKENDS = ("Vivado", "Vitis")


def result_precision(layer):
    """Return the output precision of an IR layer: explicit config wins, else the layer's result_quantizer, else
    default."""
    from hls4ml.model.types import UnspecifiedPrecisionType

    config = layer.model.config
    explicit = config.layer_name_precision.get(layer.name.lower() + "_result")
    precision, _ = config.get_precision(layer, "result")
    quantizer = layer.get_attr("result_quantizer")
    if quantizer is not None and (explicit is None or isinstance(precision, UnspecifiedPrecisionType)):
        return activation_precision(quantizer)
    if isinstance(precision, UnspecifiedPrecisionType):
        return config.backend.convert_precision_string(config.model_precision["default"])
    return precision


def activation_precision(quantizer_config: dict):
    """Return the hls4ml precision of an activation quantizer config ({class_name, config}).

    Activation outputs round half to even and saturate like QKeras (AP_RND_CONV, AP_SAT) — the
    hls4ml rule for QActivation; a QKerasQuantizer object's hls_type is TRN/WRAP (meant for weights).
    """
    from hls4ml.utils.config import _get_precision_from_quantizer

    return _get_precision_from_quantizer(dict(quantizer_config))


def activation_quantizer(keras_layer, name: str):
    """Return the {class_name, config} dict of an activation quantizer in a Keras layer config, or None.

    hls4ml's config_from_keras_model turns a dict stored under ``result_quantizer`` into the
    layer's ``result`` precision with activation semantics (AP_RND_CONV, AP_SAT).
    """
    cfg = keras_layer["config"].get(name)
    if cfg is None:
        return None
    return {"class_name": cfg["class_name"], "config": dict(cfg["config"])}


def qkeras_quantizer(keras_layer, name: str):
    """Return the hls4ml QKerasQuantizer for ``<name>`` in a Keras layer config, or None."""
    from hls4ml.model.quantizers import QKerasQuantizer

    cfg = keras_layer["config"].get(name)
    if cfg is None:
        return None
    return QKerasQuantizer(cfg)


def mult_limit(layer, n_mult: int) -> int:
    """Return the multiplier limit: all multipliers for Latency, ceil(n_mult / reuse_factor) for Resource."""
    if layer.model.config.is_resource_strategy(layer):
        rf = max(1, int(layer.get_attr("reuse_factor", 1)))
        return max(1, -(-n_mult // rf))
    return max(1, n_mult)


def register_for_backends(templates, headers, backends=None) -> None:
    """Register template classes and header files with the given backends (default: Vivado and Vitis)."""
    import hls4ml

    if backends is None:
        backends = []
        for name in BACKENDS:
            try:
                backends.append(hls4ml.backends.get_backend(name))
            except Exception:  # a backend missing from this hls4ml build
                continue
    for backend in backends:
        for t in templates:
            try:
                backend.register_template(t)
            except Exception as e:  # already registered by an earlier call
                if "already registered" not in str(e):
                    raise
        for h in headers:
            backend.register_source(NNET_UTILS / h)


def register_handler(keras_class: str, handler) -> None:
    """Register a Keras-2 parser handler unless one is already registered for the class."""
    from hls4ml.converters.keras_v2_to_hls import get_layer_handlers, register_keras_v2_layer_handler

    if keras_class not in get_layer_handlers():
        register_keras_v2_layer_handler(keras_class, handler)
