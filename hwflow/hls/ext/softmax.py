"""hls4ml extension: every Softmax (Keras ``softmax`` activations) -> nnet::hwflow_softmax.

Max-subtracted softmax whose exp tables address every bit of ``x_max - x`` (no argmax ties) and whose
reciprocal works on the sum normalised to [1, 2). Config (LayerName/<layer>): ``Precision: {inp_norm,
exp_table, inv_table, result}``, ``ExpTableSize``, ``InvTableSize``, ``InputRange`` (measured max(x_max - x),
set by hwflow.hls.convert from calibration data), ``ReuseFactor``. ``HwflowSoftmax: false`` keeps stock hls4ml.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.attributes import Attribute, ConfigurableAttribute
from hls4ml.model.layers import Layer
from hls4ml.model.optimizer import OptimizerPass

from ...reference.fixed import FixedType
from ...reference.softmax import SoftmaxSpec, make_spec
from ...util import HwflowError
from .common import input_type, output_type, user_precision
from .softmax_code import softmax_config_cpp, softmax_tables_cpp

HEADER = Path(__file__).resolve().parents[1] / "nnet_utils" / "hwflow_softmax.h"
STOCK_DEFAULT = FixedType(18, 8, True, "AP_RND", "AP_SAT")


class HwflowSoftmax(Layer):
    """hls4ml IR layer of hwflow's softmax over the last axis."""

    _expected_attributes = [
        Attribute("n_in"),
        Attribute("n_rows"),
        ConfigurableAttribute("exp_table_size", default=1024),
        ConfigurableAttribute("inv_table_size", default=1024),
        ConfigurableAttribute("input_range", value_type=float, default=0.0),
    ]

    def initialize(self):
        self.add_output_variable(list(self.get_input_variable().shape))

    def hwflow_spec(self) -> SoftmaxSpec:
        """Return the SoftmaxSpec (types and tables) of this layer."""
        kw = {}
        for k in ("exp_table", "inv_table", "inp_norm"):
            t = user_precision(self, k)
            if t is not None and t == STOCK_DEFAULT:
                # hls4ml's config_from_keras_model writes this stock default for every softmax: not meant for these
                # tables
                continue
            if t is not None:
                kw[k + "_t"] = t
        rng = float(self.get_attr("input_range") or 0.0)
        return make_spec(
            int(self.get_attr("n_in")),
            input_type(self),
            output_type(self),
            n_rows=int(self.get_attr("n_rows")),
            exp_table_size=int(self.get_attr("exp_table_size")),
            inv_table_size=int(self.get_attr("inv_table_size")),
            input_range=rng if rng > 0 else None,
            **kw,
        )


class HwflowReplaceSoftmax(OptimizerPass):
    """Replace stock Softmax nodes (whose default tables flip the argmax) by HwflowSoftmax."""

    def match(self, node):
        if node.class_name != "Softmax":
            return False
        cfg = node.model.config.get_layer_config(node) or {}
        return cfg.get("HwflowSoftmax", True) is not False

    def transform(self, model, node):
        shape = list(node.get_input_variable().shape)
        axis = node.get_attr("axis", -1)
        if axis not in (-1, len(shape)):
            raise HwflowError(f"layer {node.name} (Softmax): only softmax over the last axis converts (axis={axis})")
        attrs = {"n_in": int(shape[-1]), "n_rows": int(np.prod(shape[:-1])) if len(shape) > 1 else 1}
        new = model.make_node("HwflowSoftmax", node.name, attrs, node.inputs.copy(), outputs=node.outputs.copy())
        new.get_output_variable().type.precision = node.get_output_variable().type.precision
        model.replace_node(node, new)
        return True


class HwflowSoftmaxConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(HwflowSoftmax)

    def format(self, node):
        spec = node.hwflow_spec()
        c = f"config{node.index}"
        return softmax_tables_cpp(spec, f"{c}_sm") + softmax_config_cpp(
            spec, c, int(node.get_attr("reuse_factor", 1) or 1)
        )


class HwflowSoftmaxFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(HwflowSoftmax, include_header=["nnet_utils/hwflow_softmax.h"])

    def format(self, node):
        p = self._default_function_params(node)
        c = p["config"]
        return (
            f"nnet::hwflow_softmax<{p['input_t']}, {p['output_t']}, {c}>({p['input']}, {p['output']}, "
            f"{c}_sm_exp_hi, {c}_sm_exp_lo, {c}_sm_inv);"
        )


KERAS_CLASSES = ("QSoftmax",)


def parse_qsoftmax_layer(keras_layer, input_names, input_shapes, data_reader):
    """Keras-2 handler: hwflow.nn.layers.QSoftmax -> a Softmax node (HwflowReplaceSoftmax makes it HwflowSoftmax)."""
    from hls4ml.converters.keras_v2_to_hls import parse_default_keras_layer

    layer = parse_default_keras_layer(keras_layer, input_names)
    layer.update(class_name="Softmax", activation="softmax", axis=-1)
    return layer, list(input_shapes[0])


def register(backends) -> None:
    """Register the layer, the replacement pass, templates and header with hls4ml."""
    import hls4ml
    from hls4ml.converters.keras_v2_to_hls import get_layer_handlers

    for cls in KERAS_CLASSES:
        if cls not in get_layer_handlers():
            hls4ml.converters.register_keras_v2_layer_handler(cls, parse_qsoftmax_layer)
    from hls4ml.model.flow import update_flow
    from hls4ml.model.layers import layer_map
    from hls4ml.model.optimizer import get_available_passes, register_pass

    if "HwflowSoftmax" not in layer_map:
        hls4ml.model.layers.register_layer("HwflowSoftmax", HwflowSoftmax)
    for b in backends:
        b.register_template(HwflowSoftmaxConfigTemplate)
        b.register_template(HwflowSoftmaxFunctionTemplate)
        b.register_source(HEADER)
    if "hwflow_replace_softmax" not in get_available_passes():
        register_pass("hwflow_replace_softmax", HwflowReplaceSoftmax)
        update_flow("convert", add_optimizers=["hwflow_replace_softmax"])
