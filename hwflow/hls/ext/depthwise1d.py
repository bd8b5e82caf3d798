"""hls4ml extension: depthwise 1-D convolution (stride 1) with batch norm folded in, Latency and Resource.

Stock hls4ml 1.3.0 parses Keras ``DepthwiseConv1D`` but (a) QKeras has no quantized twin, so the
weight quantizer cannot reach the firmware, (b) its io_parallel kernel asserts for the Resource
strategy, and (c) a BatchNormalization after a quantized conv is not fused (hls4ml only fuses
unquantized weights). This module converts ``hwflow.nn.conformer.QDepthwiseConv1D``:

- the weights are the layer's own quantized, batch-norm-folded kernel and bias (computed by the
  Keras layer itself from the saved variables, so folding is exact by construction);
- weight/bias types from the depthwise/bias quantizers, result type from the output quantizer,
  accumulator exact (``accum: auto``) unless the config sets it;
- IR layer ``HwflowDepthwiseConv1D``; Vivado/Vitis templates; C++ ``nnet::hwflow_depthwise_conv1d``
  in ``hwflow/hls/nnet_utils/hwflow_depthwise1d.h``; Latency fully unrolled, Resource with II =
  ReuseFactor and ceil(T*C*K / ReuseFactor) multipliers.

Bit-exact reference: ``hwflow.reference.conformer.depthwise_conv1d``. Registered through hwflow/ops/catalog.py.
"""

from __future__ import annotations

import copy

import numpy as np
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.attributes import Attribute, ConfigurableAttribute, TypeAttribute, WeightAttribute
from hls4ml.model.layers import Layer
from hls4ml.model.quantizers import QKerasQuantizer
from hls4ml.model.types import UnspecifiedPrecisionType

from ...reference.conformer import depthwise_pads, exact_accum_type
from ...reference.fixed import parse_type
from ...util import HwflowError
from .common import keras_quantizer, mult_limit, result_precision

HEADER = "hwflow_depthwise1d.h"

dw_config_template = """struct config{index} : nnet::hwflow_depthwise1d_config {{
    static const unsigned in_width = {in_width};
    static const unsigned out_width = {out_width};
    static const unsigned n_chan = {n_chan};
    static const unsigned filt_width = {filt_width};
    static const unsigned pad_left = {pad_left};
    static const unsigned reuse_factor = {reuse};
    static const unsigned multiplier_limit = {mult_limit};
    typedef {accum_t.name} accum_t;
    typedef {weight_t.name} weight_t;
    typedef {bias_t.name} bias_t;
}};\n"""
dw_function_template = "nnet::hwflow_depthwise_conv1d<{input_t}, {output_t}, {config}>({input}, {output}, {w}, {b});"


class HwflowDepthwiseConv1D(Layer):
    """hls4ml IR layer: depthwise conv1d, stride 1, depth multiplier 1, BN folded (hwflow extension)."""

    _expected_attributes = [
        Attribute("in_width"),
        Attribute("out_width"),
        Attribute("n_chan"),
        Attribute("filt_width"),
        Attribute("pad_left"),
        Attribute("pad_right"),
        ConfigurableAttribute("reuse_factor", default=1),
        WeightAttribute("weight"),
        WeightAttribute("bias"),
        TypeAttribute("weight"),
        TypeAttribute("bias"),
        TypeAttribute("accum"),
    ]

    def initialize(self):
        # 'auto' accumulator: remembered here because hls4ml's infer_precision pass would otherwise set
        # the model default for this (to it unknown) layer class; the exact type is set at template time
        acc = self.get_attr("accum_t")
        self.set_attr("accum_auto", acc is None or isinstance(acc.precision, UnspecifiedPrecisionType))
        self.add_output_variable(
            [self.get_attr("out_width"), self.get_attr("n_chan")], precision=result_precision(self)
        )
        self.add_weights(quantizer=self.get_attr("weight_quantizer"))
        self.add_bias(quantizer=self.get_attr("bias_quantizer"))

    def resolve_accum(self):
        """Set accum_t to the exact accumulator type when the config leaves it 'auto'."""
        acc = self.get_attr("accum_t")
        if self.get_attr("accum_auto") or isinstance(acc.precision, UnspecifiedPrecisionType):
            t = exact_accum_type(
                parse_type(self.get_input_variable().type.precision),
                parse_type(self.get_attr("weight_t").precision),
                parse_type(self.get_attr("bias_t").precision),
                int(self.get_attr("filt_width")),
            )
            # at template time types are already backend types: copy the converted precision, then resize
            new = copy.copy(acc.precision)
            new.width, new.integer, new.signed = t.width, t.integer, True
            new.rounding_mode, new.saturation_mode = "TRN", "WRAP"
            acc.precision = new


class HwflowDepthwiseConv1DConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(HwflowDepthwiseConv1D)
        self.template = dw_config_template

    def format(self, node):
        node.resolve_accum()
        params = self._default_config_params(node)
        n_mult = int(node.get_attr("out_width")) * int(node.get_attr("n_chan")) * int(node.get_attr("filt_width"))
        params["mult_limit"] = mult_limit(node, n_mult)
        return self.template.format(**params)


class HwflowDepthwiseConv1DFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(HwflowDepthwiseConv1D, include_header=[f"nnet_utils/{HEADER}"])
        self.template = dw_function_template

    def format(self, node):
        params = self._default_function_params(node)
        params["w"] = node.get_weights("weight").name
        params["b"] = node.get_weights("bias").name
        return self.template.format(**params)


def folded_weights(keras_layer: dict, data_reader, n_chan: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the (kernel (K, C), bias (C,)) the firmware stores, computed by the Keras layer itself from its
    variables."""
    from ...nn.conformer import get_custom_objects

    cls = get_custom_objects()["QDepthwiseConv1D"]
    layer = cls.from_config(dict(keras_layer["config"]))
    layer.build((None, None, n_chan))
    names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
    values = []
    for n in names:
        v = data_reader.get_weights_data(keras_layer["config"]["name"], n)
        if v is None:
            raise HwflowError(
                f"depthwise layer '{keras_layer['config']['name']}': weight '{n}' not found in the model; "
                f"re-save the model with hwflow"
            )
        values.append(v)
    layer.set_weights(values)
    w = layer.quantized_weights()
    return w["kernel"], w["bias"]


def parse_qdepthwise_conv1d(keras_layer, input_names, input_shapes, data_reader):
    """Keras-2 handler of QDepthwiseConv1D: return (layer dict, output shape)."""
    from hls4ml.converters.keras_v2_to_hls import parse_default_keras_layer

    cfg = keras_layer["config"]
    layer = parse_default_keras_layer(keras_layer, input_names)
    layer.pop("activation", None)
    layer["class_name"] = "HwflowDepthwiseConv1D"
    _, in_width, n_chan = input_shapes[0]
    k = int(cfg["kernel_size"])
    pl, pr = depthwise_pads(k, cfg.get("padding", "same"))
    layer.update(
        in_width=int(in_width),
        n_chan=int(n_chan),
        filt_width=k,
        pad_left=pl,
        pad_right=pr,
        out_width=int(in_width) + pl + pr - k + 1,
    )
    kernel, bias = folded_weights(keras_layer, data_reader, int(n_chan))
    layer["weight_data"] = kernel.reshape(k, int(n_chan))
    layer["bias_data"] = bias.reshape(int(n_chan))
    for name, key in (("weight_quantizer", "depthwise_quantizer"), ("bias_quantizer", "bias_quantizer")):
        q = keras_quantizer(keras_layer, key)
        if q is not None:
            layer[name] = QKerasQuantizer(q)
    q = keras_quantizer(keras_layer, "output_quantizer")
    if q is not None:
        layer["result_quantizer"] = q
    return layer, [input_shapes[0][0], layer["out_width"], int(n_chan)]
