"""Fixes for the QKeras pitfalls on sequence (3-D) inputs in stock hls4ml 1.3.0 Keras-2 conversion.

1. A QDense on a (batch, tokens, features) input is rewritten by hls4ml into a pointwise Conv1D that
   drops the weight/bias quantizers: the float weights get *truncated* into the default type instead of
   rounded by the QKeras quantizer. ``HwflowQuantizedMultiDimDense`` does the same rewrite but carries the
   quantizers, so weights are exactly the QKeras values and their type is the quantizer's.
2. A ``QActivation(quantized_bits(...))`` becomes a 'linear' activation; when its parent's output type is
   'auto', hls4ml merges it away *without* transferring its precision. ``HwflowKeepLinearQuantizer`` attaches
   the activation's own type as a quantizer so the merge gives the parent exactly that type.
Both passes run in the first flow (before hls4ml's own 'convert' passes see the nodes).
"""

from __future__ import annotations

import numpy as np
from hls4ml.model.layers import Activation, Dense
from hls4ml.model.optimizer import OptimizerPass
from hls4ml.model.quantizers import Quantizer
from hls4ml.model.types import UnspecifiedPrecisionType


class _TypeQuantizer(Quantizer):
    """An hls4ml quantizer that only carries a fixed-point type (used to transfer a precision)."""

    def __init__(self, hls_type):
        super().__init__(getattr(hls_type, "width", 16), hls_type)

    def __call__(self, data):
        from ...reference.fixed import parse_type, quantize

        return quantize(data, parse_type(self.hls_type))


class HwflowQuantizedMultiDimDense(OptimizerPass):
    """Dense on an N-D input -> Conv1D/Conv2D with the QKeras weight/bias quantizers kept."""

    def match(self, node):
        return (
            isinstance(node, Dense)
            and len(node.get_input_variable().shape) > 1
            and (node.get_attr("weight_quantizer") is not None or node.get_attr("bias_quantizer") is not None)
        )

    def transform(self, model, node):
        dim = len(node.get_input_variable().shape) - 1
        shape = node.get_input_variable().shape
        if dim > 2:
            return False  # leave it to hls4ml (it raises a clear error)
        attrs = {
            "data_format": "channels_last",
            "n_chan": shape[-1],
            "n_filt": node.get_attr("n_out"),
            "weight_data": np.expand_dims(node.get_attr("weight_data"), axis=tuple(range(dim))),
            "bias_data": node.get_attr("bias_data"),
            "weight_quantizer": node.get_attr("weight_quantizer"),
            "bias_quantizer": node.get_attr("bias_quantizer"),
            "hwflow_from_dense": True,
        }
        if dim == 1:
            attrs.update(in_width=shape[0], out_width=shape[0], filt_width=1, stride_width=1, pad_left=0, pad_right=0)
        else:
            attrs.update(
                in_height=shape[0],
                in_width=shape[1],
                out_height=shape[0],
                out_width=shape[1],
                filt_height=1,
                filt_width=1,
                stride_height=1,
                stride_width=1,
                pad_top=0,
                pad_bottom=0,
                pad_left=0,
                pad_right=0,
            )
        new = model.make_node(f"Conv{dim}D", node.name, attrs, node.inputs.copy())
        model.replace_node(node, new)
        return True


class HwflowKeepLinearQuantizer(OptimizerPass):
    """Give a QActivation(quantized_bits) 'linear' node its own type as quantizer so merging keeps the precision."""

    def match(self, node):
        return (
            isinstance(node, Activation)
            and node.get_attr("activation") == "linear"
            and node.get_attr("activation_quantizer") is not None
            and node.get_attr("quantizer") is None
            and not isinstance(node.get_output_variable().type.precision, UnspecifiedPrecisionType)
        )

    def transform(self, model, node):
        node.set_attr("quantizer", _TypeQuantizer(node.get_output_variable().type.precision))
        return False


PASSES = {
    "hwflow_quantized_multidim_dense": HwflowQuantizedMultiDimDense,
    "hwflow_keep_linear_quantizer": HwflowKeepLinearQuantizer,
}


def register(backends) -> None:
    """Register both passes in the first flow hls4ml runs ('parse_qonnx', required by 'convert')."""
    from hls4ml.model.flow import update_flow
    from hls4ml.model.optimizer import get_available_passes, register_pass

    for name, cls in PASSES.items():
        if name not in get_available_passes():
            register_pass(name, cls)
            update_flow("parse_qonnx", add_optimizers=[name])
