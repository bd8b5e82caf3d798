"""hls4ml extension: hwflow.nn.layers.QMultiHeadAttention -> nnet::hwflow_mha (Vivado/Vitis, io_parallel).

Config (LayerName/<layer>): ``Precision: {weight, bias, proj_accum, q, accum, scale, score, inp_norm, exp_table,
inv_table, attn, context, out_accum, result}``, ``ExpTableSize``, ``InvTableSize``, ``ScoreRange`` (measured
max(x_max - x) of the scores, set by hwflow.hls.convert from calibration data), ``ReuseFactor``, ``Strategy``.
Unset precisions come from the layer's QKeras quantizers (q <- qkv_quantizer, score <- score_quantizer,
attn <- softmax_quantizer, context <- context_quantizer, result <- output_quantizer), accumulators are exact.
"""

from __future__ import annotations

import functools

import numpy as np
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.attributes import Attribute, ConfigurableAttribute
from hls4ml.model.layers import Layer
from hls4ml.model.optimizer import OptimizerPass

from ...reference.attention import AttentionSpec, make_spec
from ...reference.softmax import EXP_TABLE_SIZE, INV_TABLE_SIZE, calibrate_range
from ...util import HwflowError
from .common import (
    default_precision,
    flat_layers,
    input_type,
    output_type,
    quantizer_type,
    range_type,
    strategy,
    to_precision,
    user_precision,
    weight_quantizer,
)
from .mha_code import PROJECTIONS, closest_reuse_factor, mha_config_cpp, proj_shapes

KERAS_CLASSES = ("QMultiHeadAttention", "QGroupedAttention")  # grouped: the same kernel with config group > 1
# every attention layer sharing MHA's card keys, calibration and LayerName defaults (configure, calibration_probes)
ATTENTION_CLASSES = KERAS_CLASSES + ("QLinformerAttention", "QCosformerAttention")
PRECISION_KEYS = (
    "weight",
    "bias",
    "proj_accum",
    "q",
    "accum",
    "scale",
    "score",
    "inp_norm",
    "exp_table",
    "inv_table",
    "attn",
    "context",
    "out_accum",
    "result",
)
QUANTIZER_OF = {
    "q": "qkv_quantizer",
    "score": "score_quantizer",
    "attn": "softmax_quantizer",
    "context": "context_quantizer",
    "result": "output_quantizer",
}


class HwflowMultiHeadAttention(Layer):
    """hls4ml IR layer of hwflow's quantized multi-head self-attention."""

    _expected_attributes = [
        Attribute("seq_len"),
        Attribute("embed_dim"),
        Attribute("num_heads"),
        Attribute("key_dim"),
        Attribute("value_dim"),
        Attribute("out_dim"),
        ConfigurableAttribute("exp_table_size", default=EXP_TABLE_SIZE),
        ConfigurableAttribute("inv_table_size", default=INV_TABLE_SIZE),
        ConfigurableAttribute("score_range", value_type=float, default=0.0),
    ]

    def initialize(self):
        shape = [self.get_attr("seq_len"), self.get_attr("out_dim")]
        out_t = None if user_precision(self, "result") is not None else self._type("result")
        self.add_output_variable(shape, precision=None if out_t is None else to_precision(self, out_t))
        wq = weight_quantizer(self.get_attr("hwq_kernel_quantizer"), self.name)
        bq = weight_quantizer(self.get_attr("hwq_bias_quantizer"), self.name)
        shapes = proj_shapes(self._shape_spec())
        for p, n in PROJECTIONS:
            kernel = np.asarray(self.get_attr(f"{n}_kernel_data"), np.float64)
            bias = self.get_attr(f"{n}_bias_data")
            bias = np.zeros(shapes[p][1]) if bias is None else np.asarray(bias, np.float64)
            self._add_w(f"{n}_weight", f"w{p}{{index}}", kernel, wq, "weight")
            self._add_w(f"{n}_bias", f"b{p}{{index}}", bias, bq, "bias")

    def _add_w(self, name, var_name, data, quantizer, key):
        user = user_precision(self, key)
        if user is not None:  # the user's precision wins; data quantized by the QKeras quantizer first
            if quantizer is not None:
                data = quantizer(data)
            self.add_weights_variable(
                name=name,
                var_name=var_name,
                data=data,
                precision=to_precision(self, user),
                type_name=f"{name}{{index}}_t",
            )
        elif quantizer is not None:
            self.add_weights_variable(name=name, var_name=var_name, data=data, quantizer=quantizer)
        else:
            self.add_weights_variable(
                name=name,
                var_name=var_name,
                data=data,
                precision=to_precision(self, default_precision(self)),
                type_name=f"{name}{{index}}_t",
            )

    def _shape_spec(self):
        class _S:  # just the shapes, for proj_shapes()
            pass

        s = _S()
        for k in ("seq_len", "embed_dim", "num_heads", "key_dim", "value_dim", "out_dim"):
            setattr(s, k, self.get_attr(k))
        return s

    def _type(self, key):
        """Return the type of intermediate ``key``: user config, else the QKeras quantizer, else None (derived)."""
        user = user_precision(self, key)
        if user is not None:
            return user
        q = QUANTIZER_OF.get(key)
        if q is not None:
            t = quantizer_type(self.get_attr("hwq_" + q), f"layer {self.name} {q}")
            if t is not None:
                return t
        return None

    def hwflow_spec(self) -> AttentionSpec:
        """Return the AttentionSpec (all final types and tables) of this layer."""
        dflt = default_precision(self).with_modes("AP_RND_CONV", "AP_SAT")
        t = {k: self._type(k) for k in PRECISION_KEYS}
        w = self.weights
        rng = float(self.get_attr("score_range") or 0.0)
        return make_spec(
            self.get_attr("seq_len"),
            self.get_attr("embed_dim"),
            self.get_attr("num_heads"),
            self.get_attr("key_dim"),
            self.get_attr("value_dim"),
            self.get_attr("out_dim"),
            input_type(self),
            _ptype(w["query_weight"]),
            _ptype(w["query_bias"]),
            t["q"] or dflt,
            t["score"] or dflt,
            t["attn"] or "ap_ufixed<16,0,AP_RND_CONV,AP_SAT>",
            t["context"] or dflt,
            output_type(self),
            proj_accum_t=t["proj_accum"],
            accum_t=t["accum"],
            scale_t=t["scale"],
            out_accum_t=t["out_accum"],
            exp_table_size=int(self.get_attr("exp_table_size")),
            inv_table_size=int(self.get_attr("inv_table_size")),
            exp_table_t=t["exp_table"],
            inv_table_t=t["inv_table"],
            inp_norm_t=t["inp_norm"],
            score_range=rng if rng > 0 else None,
            group=int(self.get_attr("group", 1) or 1),
        )


def _ptype(weight_var):
    from ...reference.fixed import parse_type

    return parse_type(weight_var.type.precision)


def parse_qmha_layer(keras_layer, input_names, input_shapes, data_reader):
    """Keras-2 handler: QMultiHeadAttention config + weights -> hwflow IR attributes."""
    from hls4ml.converters.keras_v2_to_hls import get_weights_data, parse_default_keras_layer

    cfg = keras_layer["config"]
    name = cfg["name"]
    # layer(x) and layer(x, x) are both self-attention; distinct query/value tensors are not supported
    if input_names and len(set(input_names)) != 1:
        raise HwflowError(
            f"layer {name} (QMultiHeadAttention): only self-attention layer(x) or layer(x, x) converts to "
            f"HLS, got inputs {input_names}"
        )
    # Keras records layer(q, value) as one inbound tensor plus a 'value' (and 'key') keyword: check those too
    for node in keras_layer.get("inbound_nodes") or []:
        for inbound in node if isinstance(node, list) else []:
            if not isinstance(inbound, (list, tuple)) or not inbound:
                continue
            kwargs = inbound[3] if len(inbound) > 3 and isinstance(inbound[3], dict) else {}
            for kw in ("value", "key"):
                ref = kwargs.get(kw)
                if isinstance(ref, (list, tuple)) and ref and list(ref[:3]) != list(inbound[:3]):
                    raise HwflowError(
                        f"layer {name} (QMultiHeadAttention): only self-attention layer(x) or layer(x, x) "
                        f"converts to HLS, but its {kw} is {ref[0]} and its query {inbound[0]}"
                    )
    input_names = list(input_names[:1]) if input_names else input_names
    group = int(cfg.get("group") or 1)  # QGroupedAttention (grouped attention, same kernel with config group)
    shape = input_shapes[0]
    if len(shape) != 3:
        raise HwflowError(
            f"layer {name} (QMultiHeadAttention): expected a (batch, tokens, features) input, got {shape}"
        )
    layer = parse_default_keras_layer(keras_layer, input_names)
    layer["class_name"] = "HwflowMultiHeadAttention"
    seq_len, embed_dim = int(shape[1]), int(shape[2])
    out_dim = int(cfg.get("output_dim") or embed_dim)
    layer.update(
        seq_len=seq_len,
        embed_dim=embed_dim,
        num_heads=int(cfg["num_heads"]),
        key_dim=int(cfg["key_dim"]),
        value_dim=int(cfg.get("value_dim") or cfg["key_dim"]),
        out_dim=out_dim,
        group=group,
    )
    for q in (
        "kernel_quantizer",
        "bias_quantizer",
        "qkv_quantizer",
        "score_quantizer",
        "softmax_quantizer",
        "context_quantizer",
        "output_quantizer",
    ):
        layer["hwq_" + q] = cfg.get(q)  # not '*_quantizer': hls4ml's config_from_keras_model would misread them
    for n in ("query", "key", "value", "output"):
        layer[f"{n}_kernel_data"] = get_weights_data(data_reader, name, f"{n}_kernel")
        layer[f"{n}_bias_data"] = (
            get_weights_data(data_reader, name, f"{n}_bias") if cfg.get("use_bias", True) else None
        )
    return layer, [shape[0], seq_len, out_dim]


class HwflowMHAResourceLayout(OptimizerPass):
    """Transpose the four projection kernels for the Resource strategy (nnet::dense_resource memory order)."""

    def match(self, node):
        return (
            isinstance(node, HwflowMultiHeadAttention)
            and strategy(node) == "Resource"
            and not node.get_attr("_weights_transposed", False)
        )

    def transform(self, model, node):
        for _, n in PROJECTIONS:
            node.weights[f"{n}_weight"].data = np.transpose(node.weights[f"{n}_weight"].data)
        node.set_attr("_weights_transposed", True)
        return False


def projection_settings(node, spec) -> tuple[str, int, dict, dict, dict]:
    """Return (strategy, reuse factor, weight types, bias types, nonzero weights) of an attention node's Q/K/V/O
    projections (shapes from ``spec``, an AttentionSpec); with Resource, an invalid ReuseFactor is reported per
    projection and zeros are not skipped (dense_resource ignores them)."""
    strat = strategy(node)
    rf = int(node.get_attr("reuse_factor", 1) or 1)
    wt = {p: node.weights[f"{n}_weight"].type.name for p, n in PROJECTIONS}
    bt = {p: node.weights[f"{n}_bias"].type.name for p, n in PROJECTIONS}
    nz = {p: int(node.weights[f"{n}_weight"].nzeros) for p, n in PROJECTIONS}
    if strat == "Resource":
        for p, (n_in, n_out) in proj_shapes(spec).items():
            if closest_reuse_factor(n_in, n_out, rf) != rf:
                print(
                    f"WARNING: layer {node.name} projection {p}: ReuseFactor={rf} invalid for {n_in}x{n_out}; "
                    f"using {closest_reuse_factor(n_in, n_out, rf)}"
                )
        nz = dict.fromkeys(nz, 0)
    return strat, rf, wt, bt, nz


class HwflowMHAConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(HwflowMultiHeadAttention)

    def format(self, node):
        spec = node.hwflow_spec()
        strat, rf, wt, bt, nz = projection_settings(node, spec)
        return mha_config_cpp(spec, f"config{node.index}", strat, rf, wt, bt, nz)


class HwflowMHAFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(HwflowMultiHeadAttention, include_header=["nnet_utils/hwflow_mha.h"])

    def format(self, node):
        p = self._default_function_params(node)
        w = ", ".join(node.weights[f"{n}_{k}"].name for _, n in PROJECTIONS for k in ("weight", "bias"))
        c = p["config"]
        return (
            f"nnet::hwflow_mha<{p['input_t']}, {p['output_t']}, {c}>({p['input']}, {p['output']}, {w}, "
            f"{c}_sm_exp_hi, {c}_sm_exp_lo, {c}_sm_inv);"
        )


def is_exact(layer) -> bool:
    """True when the Keras layer computes the firmware's attention itself (hwflow.nn.layers builds its spec)."""
    return getattr(layer, "spec", None) is not None


def _intermediate_ranges(layer, inp) -> dict:
    """Return the calibration of one attention layer: score range and max |value| of q/k/v, scores, context."""
    import tensorflow as tf

    t = {k: np.asarray(v) for k, v in layer.intermediates(tf.constant(inp)).items()}
    max_abs = {"q": float(max(np.abs(t[k]).max() for k in ("q", "k", "v")))}
    max_abs["context"] = float(np.abs(t["context"]).max())
    out = {"_max_abs": max_abs}
    if "scores" in t:  # softmax-free variants (cosFormer) have no scores
        out["ScoreRange"] = calibrate_range(t["scores"])
        max_abs["score"] = float(np.abs(t["scores"]).max())
    return out


def calibration_probes(model) -> list:
    """Return the calibration probes of every attention layer: (name, its Keras input tensor, finish(values))."""
    return [
        (layer.name, layer.input, functools.partial(_intermediate_ranges, layer))
        for layer in flat_layers(model)
        if type(layer).__name__ in ATTENTION_CLASSES and not is_exact(layer)
    ]


def configure(layer_configs: dict, model, hls: dict, calibration: dict) -> None:
    """Set the LayerName config of every attention layer: result from the output quantizer, card softmax tables,
    measured score range, and data-sized types where a quantizer is None. An exact layer (its AttentionSpec built:
    every quantizer fixed point) gives its own table sizes/types and is not calibrated: Keras computes with them."""
    from .softmax import apply_layer_tables, apply_table_settings

    for layer in flat_layers(model):
        lc = layer_configs.get(layer.name)
        if lc is None or type(layer).__name__ not in ATTENTION_CLASSES:
            continue
        prec = lc.setdefault("Precision", {})
        for key in list(prec):
            if key != "result":
                prec.pop(key)
        oq = quantizer_type(layer.output_quantizer, layer.name)
        prec["result"] = oq.cpp() if oq else hls["default_precision"]
        if is_exact(layer):
            apply_layer_tables(lc, layer)
            continue
        apply_table_settings(lc, hls["softmax"])
        c = calibration.get(layer.name)
        if c:
            if "ScoreRange" in c:
                lc["ScoreRange"] = c["ScoreRange"]
            for key, qname in (("q", "qkv_quantizer"), ("score", "score_quantizer"), ("context", "context_quantizer")):
                if getattr(layer, qname) is None and key in c["_max_abs"]:  # no quantizer: size from the data
                    prec[key] = range_type(c["_max_abs"][key])
