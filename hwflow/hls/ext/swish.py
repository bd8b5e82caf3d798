"""hls4ml extension: swish / SiLU (``y = x * sigmoid(x)``) with a look-up-table sigmoid.

Stock hls4ml 1.3.0 has no C++ swish (an ``Activation('swish')`` parses but does not compile). This module holds:

- IR layer ``HwflowSwish`` (attributes: table_size, table_range, table_t, reuse_factor) and its base
  ``HwflowSigmoidLUTLayer`` (shared with GLU);
- Keras-2 handler for ``hwflow.nn.conformer.QSwish`` (output_quantizer -> result type);
- pass ``HwflowReplaceSwishActivation``: a plain ``Activation('swish' | 'silu')`` (exact sigmoid in Keras, the
  default table here) becomes HwflowSwish;
- config/function templates for Vivado and Vitis (io_parallel, Latency and Resource);
- C++ ``nnet::hwflow_swish`` in ``hwflow/hls/nnet_utils/hwflow_swish.h``.

Per-layer settings in the usual hls4ml config: ``LayerName: {<layer>: {TableSize, TableRange,
Precision: {result, table}, ReuseFactor}}``. The table is computed in Python
(``hwflow.reference.conformer.SigmoidTable``) and written into the config as exact literals.
Registered through hwflow/ops/catalog.py.
"""

from __future__ import annotations

from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.attributes import ConfigurableAttribute, TypeAttribute
from hls4ml.model.layers import Layer
from hls4ml.model.optimizer import OptimizerPass
from hls4ml.model.types import NamedType, UnspecifiedPrecisionType

from ...config import sigmoid_table_defaults
from ...reference.conformer import SigmoidTable
from ...reference.fixed import parse_type, quantize_int
from .common import keras_quantizer, mult_limit, result_precision

HEADER = "hwflow_swish.h"
SWISH_ACTIVATIONS = ("swish", "silu")

LUT_CONFIG_BODY = """    static const unsigned table_size = {table_size};
    static const int log2_size = {log2_size};
    static const int log2_scale = {log2_scale};
    static const unsigned reuse_factor = {reuse};
    static const unsigned multiplier_limit = {mult_limit};
    typedef {table_t.name} table_t;
    static const ap_uint<{table_width}> table[{table_size}]; // raw bits of table_t values (a ROM)
"""
LUT_TABLE_DEFINITION = "}};\nconst ap_uint<{table_width}> config{index}::table[{table_size}] = {{{table_values}}};\n"

swish_config_template = (
    "struct config{index} : nnet::hwflow_sigmoid_lut_config {{\n"
    "    static const unsigned n_in = {n_in};\n" + LUT_CONFIG_BODY + LUT_TABLE_DEFINITION
)
swish_function_template = "nnet::hwflow_swish<{input_t}, {output_t}, {config}>({input}, {output});"


def table_of(node) -> SigmoidTable:
    """Return the SigmoidTable of an IR node (from its table_size, table_range and table_t attributes)."""
    return SigmoidTable(
        int(node.get_attr("table_size")),
        float(node.get_attr("table_range")),
        parse_type(node.get_attr("table_t").precision).cpp(),
    )


def lut_params(node, params: dict) -> dict:
    """Fill the sigmoid-table entries of a template's parameters."""
    table = table_of(node)
    params["table_size"] = table.table_size
    params["log2_size"] = table.log2_size
    params["log2_scale"] = table.log2_scale
    t = parse_type(table.table_t)
    params["table_width"] = t.width
    # raw integer literals: g++ compiles them fast (an ap_fixed from a double literal is a heavy inline
    # conversion per entry) and HLS sees a plain ROM; the kernel reinterprets them with .range()
    raw = quantize_int(table.values(), t) & ((1 << t.width) - 1)
    params["table_values"] = ", ".join(f"{int(r)}ULL" for r in raw)
    return params


class HwflowSigmoidLUTLayer(Layer):
    """Base of layers using the hwflow sigmoid table.

    The table settings come from the Keras layer (so firmware and QKeras use the same table); a
    LayerName config (TableSize, TableRange, Precision: table) overrides them. No defaults are
    declared on purpose: hls4ml's config_from_keras_model would otherwise write the defaults into
    the config and silently replace the Keras layer's settings.
    """

    _expected_attributes = [
        ConfigurableAttribute("table_size", value_type=int),
        ConfigurableAttribute("table_range", value_type=float),
        ConfigurableAttribute("reuse_factor", default=1),
        TypeAttribute("table"),
    ]

    def init_table(self):
        """Fill table settings missing from the config with the Keras layer's (or the card defaults)."""
        d = sigmoid_table_defaults()
        if self.get_attr("table_size") is None:
            self.set_attr("table_size", int(self.get_attr("keras_table_size", d["table_size"])))
        rng = self.get_attr("table_range") or self.get_attr("keras_table_range", d["table_range"])
        self.set_attr("table_range", float(rng))
        t = self.get_attr("table_t")
        if t is None or isinstance(getattr(t, "precision", None), UnspecifiedPrecisionType):
            p = self.model.config.backend.convert_precision_string(self.get_attr("keras_table_t", d["table_t"]))
            self.set_attr("table_t", NamedType(self.name + "_table_t", p))
        table_of(self)  # validates: power-of-two size and range


class HwflowSwish(HwflowSigmoidLUTLayer):
    """hls4ml IR layer: swish with a sigmoid look-up table (hwflow extension)."""

    def initialize(self):
        self.init_table()
        self.add_output_variable(self.get_input_variable().shape, precision=result_precision(self))


class HwflowSwishConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(HwflowSwish)
        self.template = swish_config_template

    def format(self, node):
        params = lut_params(node, self._default_config_params(node))
        params["n_in"] = node.get_input_variable().size()
        params["mult_limit"] = mult_limit(node, int(node.get_input_variable().size()))
        return self.template.format(**params)


class HwflowSwishFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(HwflowSwish, include_header=[f"nnet_utils/{HEADER}"])
        self.template = swish_function_template

    def format(self, node):
        return self.template.format(**self._default_function_params(node))


def _hls4ml_type_string(t: str) -> str:
    """Return an ap_fixed string in the form hls4ml's precision parser reads (it wants AP_-prefixed modes)."""
    return parse_type(t).cpp()


def parse_qswish(keras_layer, input_names, input_shapes, data_reader):
    """Keras-2 handler of QSwish: return (layer dict, output shape)."""
    from hls4ml.converters.keras_v2_to_hls import parse_default_keras_layer

    layer = parse_default_keras_layer(keras_layer, input_names)
    layer.pop("activation", None)  # else hls4ml would append a separate activation layer
    cfg = keras_layer["config"]
    layer["class_name"] = "HwflowSwish"
    layer["keras_table_size"] = int(cfg["table_size"])
    layer["keras_table_range"] = float(cfg["table_range"])
    layer["keras_table_t"] = _hls4ml_type_string(cfg["table_t"])
    quantizer = keras_quantizer(keras_layer, "output_quantizer")
    if quantizer is not None:
        layer["result_quantizer"] = quantizer
    return layer, list(input_shapes[0])


class HwflowReplaceSwishActivation(OptimizerPass):
    """Replace a stock ``Activation('swish'|'silu')`` node (no C++ in hls4ml) by HwflowSwish with the default
    table."""

    def match(self, node):
        return node.class_name == "Activation" and str(node.get_attr("activation", "")).lower() in SWISH_ACTIVATIONS

    def transform(self, model, node):
        new = model.make_node("HwflowSwish", node.name, {}, node.inputs.copy(), outputs=node.outputs.copy())
        new.get_output_variable().type.precision = node.get_output_variable().type.precision
        model.replace_node(node, new)
        return True
