"""hls4ml extension: every Softmax (Keras ``softmax`` activations, hwflow.nn.layers.QSoftmax) -> nnet::hwflow_softmax.

Max-subtracted softmax whose exp tables address every bit of ``x_max - x`` (no argmax ties) and whose
reciprocal works on the sum normalised to [1, 2). Config (LayerName/<layer>): ``Precision: {inp_norm,
exp_table, inv_table, result}``, ``ExpTableSize``, ``InvTableSize``, ``InputRange`` (measured max(x_max - x),
set by hwflow.hls.convert from calibration data), ``ReuseFactor``. ``HwflowSoftmax: false`` keeps stock hls4ml.
"""

from __future__ import annotations

import functools

import numpy as np
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.attributes import Attribute, ConfigurableAttribute
from hls4ml.model.layers import Layer
from hls4ml.model.optimizer import OptimizerPass

from ...reference.fixed import FixedType
from ...reference.softmax import EXP_TABLE_SIZE, INV_TABLE_SIZE, SoftmaxSpec, calibrate_range, make_spec
from ...util import HwflowError
from .common import flat_layers, input_type, output_type, user_precision
from .softmax_code import softmax_config_cpp, softmax_tables_cpp

SOFTMAX_RESULT = "ap_ufixed<16,0,AP_RND_CONV,AP_SAT>"
STOCK_DEFAULT = FixedType(18, 8, True, "AP_RND", "AP_SAT")


class HwflowSoftmax(Layer):
    """hls4ml IR layer of hwflow's softmax over the last axis."""

    _expected_attributes = [
        Attribute("n_in"),
        Attribute("n_rows"),
        ConfigurableAttribute("exp_table_size", default=EXP_TABLE_SIZE),
        ConfigurableAttribute("inv_table_size", default=INV_TABLE_SIZE),
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


def parse_qsoftmax_layer(keras_layer, input_names, input_shapes, data_reader):
    """Keras-2 handler: hwflow.nn.layers.QSoftmax -> a Softmax node (HwflowReplaceSoftmax makes it HwflowSoftmax)."""
    from hls4ml.converters.keras_v2_to_hls import parse_default_keras_layer

    layer = parse_default_keras_layer(keras_layer, input_names)
    layer.update(class_name="Softmax", activation="softmax", axis=-1)
    return layer, list(input_shapes[0])


def softmax_layers(model) -> dict:
    """Return {hls layer name: (keras layer, 'input'|'preact')} for every softmax of the model (Activation, Softmax,
    QSoftmax or a layer's activation)."""
    import tensorflow as tf

    out = {}
    for layer in flat_layers(model):
        cls = type(layer).__name__
        if cls in ("Softmax", "QSoftmax"):
            out[layer.name] = (layer, "input")
            continue
        act = getattr(layer, "activation", None)
        name = getattr(act, "__name__", str(act)) if act is not None else ""
        if "softmax" in name and not isinstance(act, tf.Module):
            if cls == "Activation":
                out[layer.name] = (layer, "input")
            else:  # Dense(..., activation='softmax') -> hls4ml splits off '<name>_softmax'
                out[f"{layer.name}_softmax"] = (layer, "preact")
    return out


def _input_range(layer, how: str, inp) -> dict:
    """Return the calibration of one softmax from the values reaching it (its logits)."""
    import tensorflow as tf

    logits = inp
    if how == "preact":  # recompute the pre-activation of Dense(..., activation='softmax')
        act = layer.activation
        layer.activation = tf.keras.activations.linear
        try:
            logits = layer(tf.constant(inp)).numpy()
        finally:
            layer.activation = act
    return {"InputRange": calibrate_range(logits)}


def is_exact(layer) -> bool:
    """True for a layer computing the firmware's softmax itself (an exact hwflow.nn layer with its spec built):
    its types and tables are fixed by the layer, so nothing is calibrated for it."""
    return getattr(layer, "spec", None) is not None


def calibration_probes(model) -> list:
    """Return the calibration probes of every softmax that is not exact: (hls name, its Keras input tensor,
    finish(values))."""
    return [
        (hname, layer.input, functools.partial(_input_range, layer, how))
        for hname, (layer, how) in softmax_layers(model).items()
        if not is_exact(layer)
    ]


def apply_table_settings(lc: dict, card_softmax: dict) -> None:
    """Set a layer config's softmax table sizes/types from the card's ``hls.softmax`` section."""
    prec = lc.setdefault("Precision", {})
    for key in ("exp_table", "inv_table"):
        prec.pop(key, None)
        if card_softmax.get(f"{key}_t"):
            prec[key] = card_softmax[f"{key}_t"]
    lc["ExpTableSize"] = card_softmax["table_size"]
    lc["InvTableSize"] = card_softmax["inv_table_size"]


def apply_layer_tables(lc: dict, layer) -> None:
    """Set a layer config's softmax table sizes/types from a Keras layer that holds them (QSoftmax,
    QMultiHeadAttention: built from the card's ``hls.softmax``), so Keras and the C++ share one source."""
    apply_table_settings(
        lc,
        {
            "table_size": layer.exp_table_size,
            "inv_table_size": layer.inv_table_size,
            "exp_table_t": layer.exp_table_t,
            "inv_table_t": layer.inv_table_t,
        },
    )


def configure(layer_configs: dict, model, hls: dict, calibration: dict) -> None:
    """Set the LayerName config of every softmax: unsigned 16-bit probabilities, card tables, measured range; a
    QSoftmax gives its own result type and tables (exact: no calibration)."""
    for hname, (layer, _) in softmax_layers(model).items():
        lc = layer_configs.setdefault(hname, {})
        lc["Trace"] = True
        prec = lc.setdefault("Precision", {})
        # probabilities: unsigned, 16 fractional bits, unless the user chose an unsigned type already
        if not str(prec.get("result", "auto")).startswith("ap_ufixed"):
            prec["result"] = SOFTMAX_RESULT
        if type(layer).__name__ == "QSoftmax":
            prec["result"] = layer.result_type
            apply_layer_tables(lc, layer)
            if is_exact(layer):
                continue
        else:
            apply_table_settings(lc, hls["softmax"])
        if hname in calibration:
            lc["InputRange"] = calibration[hname]["InputRange"]
