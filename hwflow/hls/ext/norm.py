"""hls4ml extension: QLayerNormalization / QRMSNormalization (and Keras LayerNormalization) -> nnet::hwflow_norm.

Correct for any variance: the 1/sqrt look-up works on the variance normalised by a power of two
(see hwflow_layernorm.h). Config (LayerName/<layer>): ``Precision: {scale, bias, accum, mean, var, table,
inv_std, norm, result}``, ``TableSize`` (entries per octave, power of two), ``ReuseFactor``.
Unset precisions: scale/bias from the gamma/beta quantizers (else exact for the trained values),
result from output_quantizer, the rest exact or derived (hwflow.reference.layernorm.make_spec).
"""

from __future__ import annotations

import numpy as np
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.attributes import Attribute, ConfigurableAttribute
from hls4ml.model.layers import Layer
from hls4ml.model.optimizer import OptimizerPass

from ...reference.fixed import exact_type, parse_type
from ...reference.layernorm import NormSpec, make_spec
from ...util import HwflowError
from .common import flat_layers, input_type, output_type, quantizer_type, to_precision, user_precision, weight_quantizer
from .norm_code import norm_config_cpp, norm_table_cpp

KERAS_CLASSES = ("QLayerNormalization", "QRMSNormalization")
PRECISION_KEYS = ("scale", "bias", "accum", "mean", "var", "table", "inv_std", "norm", "result")


class HwflowNorm(Layer):
    """hls4ml IR layer of hwflow's LayerNorm (center=True) / RMSNorm (center=False) over the last axis."""

    _expected_attributes = [
        Attribute("n_in"),
        Attribute("seq_len"),
        Attribute("center", value_type=bool),
        Attribute("epsilon", value_type=float),
        ConfigurableAttribute("table_size", default=1024),
    ]

    def initialize(self):
        shape = list(self.get_input_variable().shape)
        out_t = None
        if user_precision(self, "result") is None and self.get_attr("hwq_output") is not None:
            out_t = to_precision(
                self, quantizer_type(self.get_attr("hwq_output"), f"layer {self.name} output_quantizer")
            )
        self.add_output_variable(shape, precision=out_t)
        n = self.get_attr("n_in")
        gamma = self.get_attr("gamma_data")
        beta = self.get_attr("beta_data")
        gamma = np.ones(n) if gamma is None else np.asarray(gamma, np.float64)
        beta = np.zeros(n) if beta is None else np.asarray(beta, np.float64)
        self._add_w("scale", "s{index}", gamma, self.get_attr("hwq_gamma"))
        self._add_w("bias", "b{index}", beta, self.get_attr("hwq_beta"))

    def _add_w(self, key, var_name, data, qconf):
        q = weight_quantizer(qconf, self.name)
        user = user_precision(self, key)
        if q is not None:
            data = q(data)
        if user is None:
            user = q_type(q) if q is not None else exact_type(data, signed=True, max_width=18)
        self.add_weights_variable(
            name=key, var_name=var_name, data=data, precision=to_precision(self, user), type_name=f"{key}{{index}}_t"
        )

    def hwflow_spec(self) -> NormSpec:
        """Return the NormSpec (all final types and the table) of this layer."""
        t = {k: user_precision(self, k) for k in PRECISION_KEYS}
        kw = {k + "_t": t[k] for k in ("accum", "mean", "var", "inv_std", "norm") if t[k] is not None}
        if t["table"] is not None:
            kw["table_t"] = t["table"]
        return make_spec(
            self.get_attr("n_in"),
            input_type(self),
            output_type(self),
            center=bool(self.get_attr("center")),
            epsilon=float(self.get_attr("epsilon")),
            scale_t=parse_type(self.weights["scale"].type.precision),
            bias_t=parse_type(self.weights["bias"].type.precision),
            table_size=int(self.get_attr("table_size")),
            seq_len=self.get_attr("seq_len"),
            **kw,
        )


def q_type(q):
    """Return the FixedType of an hls4ml QKerasQuantizer."""
    return parse_type(q.hls_type)


def parse_qnorm_layer(keras_layer, input_names, input_shapes, data_reader):
    """Keras-2 handler: QLayerNormalization/QRMSNormalization -> HwflowNorm attributes."""
    from hls4ml.converters.keras_v2_to_hls import get_weights_data, parse_default_keras_layer

    cfg = keras_layer["config"]
    name, cls = cfg["name"], keras_layer["class_name"]
    shape = input_shapes[0]
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if axis not in (-1, len(shape) - 1):
        raise HwflowError(f"layer {name} ({cls}): only normalization over the last axis converts to HLS (axis={axis})")
    layer = parse_default_keras_layer(keras_layer, input_names)
    layer["class_name"] = "HwflowNorm"
    center = cls != "QRMSNormalization" and bool(cfg.get("center", True))
    layer.update(
        n_in=int(shape[-1]),
        seq_len=int(np.prod(shape[1:-1])) if len(shape) > 2 else 1,
        center=cls != "QRMSNormalization",
        epsilon=float(cfg.get("epsilon", 1e-3)),
    )
    layer["gamma_data"] = get_weights_data(data_reader, name, "gamma") if cfg.get("scale", True) else None
    layer["beta_data"] = get_weights_data(data_reader, name, "beta") if center else None
    # not '*_quantizer' keys: hls4ml's config_from_keras_model would misread them
    layer["hwq_gamma"] = cfg.get("gamma_quantizer")
    layer["hwq_beta"] = cfg.get("beta_quantizer")
    layer["hwq_output"] = cfg.get("output_quantizer")
    return layer, list(shape)


# hls4ml's config_from_keras_model writes these for a stock LayerNormalization; they mean other things here
STOCK_KEYS = ("TableSize", "table_size", "TableRangePower2", "table_range_power2")
STOCK_PRECISIONS = ("table", "accum")


def _drop_stock_defaults(model, name: str) -> None:
    """Remove stock-LayerNormalization table/accumulator defaults from a layer's config (hwflow derives its own)."""
    lc = model.config.config.get("HLSConfig", {}).get("LayerName", {}).get(name)
    if not isinstance(lc, dict):
        return
    for k in STOCK_KEYS:
        lc.pop(k, None)
    prec = lc.get("Precision")
    if isinstance(prec, dict):
        for k in STOCK_PRECISIONS:
            prec.pop(k, None)


class HwflowReplaceLayerNorm(OptimizerPass):
    """Replace stock hls4ml LayerNormalization nodes by HwflowNorm (stock tables stop at variance 1)."""

    def match(self, node):
        return node.class_name == "LayerNormalization" and node.get_attr("hwflow_replace", True)

    def transform(self, model, node):
        _drop_stock_defaults(model, node.name)
        shape = node.get_input_variable().shape
        attrs = {
            "n_in": int(shape[-1]),
            "seq_len": int(np.prod(shape[:-1])) if len(shape) > 1 else 1,
            "center": True,
            "epsilon": float(node.get_attr("epsilon", 1e-3)),
            "gamma_data": node.get_attr("gamma_data"),
            "beta_data": node.get_attr("beta_data"),
        }
        new = model.make_node("HwflowNorm", node.name, attrs, node.inputs.copy(), outputs=node.outputs.copy())
        new.get_output_variable().type.precision = node.get_output_variable().type.precision
        model.replace_node(node, new)
        return True


class HwflowNormConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(HwflowNorm)

    def format(self, node):
        spec = node.hwflow_spec()
        c = f"config{node.index}"
        return norm_table_cpp(spec, f"{c}_table") + norm_config_cpp(spec, c, int(node.get_attr("reuse_factor", 1) or 1))


class HwflowNormFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(HwflowNorm, include_header=["nnet_utils/hwflow_layernorm.h"])

    def format(self, node):
        p = self._default_function_params(node)
        return (
            f"nnet::hwflow_norm<{p['input_t']}, {p['output_t']}, {p['config']}>({p['input']}, {p['output']}, "
            f"{node.weights['scale'].name}, {node.weights['bias'].name}, {p['config']}_table);"
        )


def configure(layer_configs: dict, model, hls: dict, calibration: dict) -> None:
    """Set the result type of every normalization (the output quantizer's type, else the card's default) and, for
    hwflow's norms, the 1/sqrt table size/type of the Keras layer."""
    for layer in flat_layers(model):
        cls = type(layer).__name__
        lc = layer_configs.get(layer.name)
        if lc is None or cls not in KERAS_CLASSES + ("LayerNormalization",):
            continue
        prec = lc.setdefault("Precision", {})
        if cls == "LayerNormalization":
            if prec.get("result") in (None, "auto"):
                prec["result"] = hls["default_precision"]
            continue
        oq = quantizer_type(layer.output_quantizer, layer.name)
        prec["result"] = oq.cpp() if oq else hls["default_precision"]
        # the layer holds its 1/sqrt table settings (its exact forward pass uses them): one source for Keras and C++
        lc["TableSize"] = getattr(layer, "table_size", 1024)
        if getattr(layer, "table_t", None):
            prec["table"] = layer.table_t
