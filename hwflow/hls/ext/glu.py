"""hls4ml extension: GLU (gated linear unit) ``a * sigmoid(b)`` over the channel axis, sigmoid from a table.

Keras ``Lambda`` layers (the usual GLU) cannot be parsed by hls4ml, so the conformer uses
``hwflow.nn.conformer.QGLU``; this module converts it:

- IR layer ``HwflowGLU`` (input (T, 2C) or (2C,), output (T, C) or (C,)); attributes as swish
  (TableSize, TableRange, Precision: {result, table}, ReuseFactor);
- Keras-2 handler for ``QGLU``; Vivado/Vitis templates (io_parallel, Latency/Resource);
- C++ ``nnet::hwflow_glu`` in ``hwflow/hls/nnet_utils/hwflow_glu.h`` (uses the swish table index).

Bit-exact reference: ``hwflow.reference.conformer.glu``. Registered through hwflow/ops/catalog.py.
"""

from __future__ import annotations

from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate

from ...util import HwflowError
from .common import mult_limit, result_precision
from .swish import HEADER as SWISH_HEADER
from .swish import LUT_CONFIG_BODY, LUT_TABLE_DEFINITION, HwflowSigmoidLUTLayer, lut_params, parse_qswish

HEADER = "hwflow_glu.h"

glu_config_template = (
    "struct config{index} : nnet::hwflow_sigmoid_lut_config {{\n"
    "    static const unsigned n_tokens = {n_tokens};\n"
    "    static const unsigned n_chan = {n_chan};\n" + LUT_CONFIG_BODY + LUT_TABLE_DEFINITION
)
glu_function_template = "nnet::hwflow_glu<{input_t}, {output_t}, {config}>({input}, {output});"


class HwflowGLU(HwflowSigmoidLUTLayer):
    """hls4ml IR layer: gated linear unit over the last axis (hwflow extension)."""

    def initialize(self):
        self.init_table()
        shape = list(self.get_input_variable().shape)
        if shape[-1] % 2:
            raise HwflowError(f"GLU layer '{self.name}' has {shape[-1]} input channels: it needs an even number")
        shape[-1] //= 2
        self.add_output_variable(shape, precision=result_precision(self))


class HwflowGLUConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(HwflowGLU)
        self.template = glu_config_template

    def format(self, node):
        params = lut_params(node, self._default_config_params(node))
        out = node.get_output_variable()
        params["n_chan"] = out.shape[-1]
        params["n_tokens"] = out.size() // out.shape[-1]
        params["mult_limit"] = mult_limit(node, int(out.size()))
        return self.template.format(**params)


class HwflowGLUFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(HwflowGLU, include_header=[f"nnet_utils/{HEADER}", f"nnet_utils/{SWISH_HEADER}"])
        self.template = glu_function_template

    def format(self, node):
        return self.template.format(**self._default_function_params(node))


def parse_qglu(keras_layer, input_names, input_shapes, data_reader):
    """Keras-2 handler of QGLU: return (layer dict, output shape)."""
    layer, shape = parse_qswish(keras_layer, input_names, input_shapes, data_reader)
    layer["class_name"] = "HwflowGLU"
    shape = list(shape)
    shape[-1] = shape[-1] // 2
    return layer, shape
