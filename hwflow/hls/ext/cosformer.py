"""hls4ml extension: hwflow.nn.layers.QCosformerAttention -> nnet::hwflow_cosformer (Vivado/Vitis, io_parallel).

Config (LayerName/<layer>): ``Precision: {weight, bias, proj_accum, q, trig_table, feat, accum, kv, ksum, num, den,
inv_table, context, out_accum, result}``, ``InvTableSize``, ``ReuseFactor``, ``Strategy``. Unset precisions come
from the layer's QKeras quantizers (q <- qkv, feat/kv/ksum/num/den <- their quantizers, context, result <- output);
the accumulator is exact; the cos/sin table defaults to ap_ufixed<18,1,AP_RND_CONV,AP_SAT>, the reciprocal table to
the softmax's ap_ufixed<18,1,AP_RND,AP_SAT>. ReuseFactor sets the II of the projection dense kernels (Resource), of
the state rows and of the query rows.
"""

from __future__ import annotations

from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.attributes import Attribute

from ...reference.cosformer import DEFAULT_INV_TABLE, DEFAULT_TRIG_TABLE, CosformerSpec, make_spec
from .common import default_precision, input_type, output_type, quantizer_type, user_precision
from .mha import HwflowMultiHeadAttention, _ptype, parse_qmha_layer, projection_settings
from .mha_code import PROJECTIONS

EXTRA_QUANTIZERS = {
    "feat": "feat_quantizer",
    "kv": "kv_quantizer",
    "ksum": "ksum_quantizer",
    "num": "num_quantizer",
    "den": "den_quantizer",
}


class HwflowCosformer(HwflowMultiHeadAttention):
    """hls4ml IR layer of hwflow's quantized cosFormer self-attention (ReLU features, cos re-weighting, linear)."""

    _expected_attributes = HwflowMultiHeadAttention._expected_attributes + [Attribute("horizon")]

    def _type(self, key):
        q = EXTRA_QUANTIZERS.get(key)
        if q is None:
            return super()._type(key)
        user = user_precision(self, key)
        return user if user is not None else quantizer_type(self.get_attr("hwq_" + q), f"layer {self.name} {q}")

    def hwflow_spec(self) -> CosformerSpec:
        """Return the CosformerSpec (all final types and tables) of this layer."""
        dflt = default_precision(self).with_modes("AP_RND_CONV", "AP_SAT")
        keys = ("q", "feat", "kv", "ksum", "num", "den", "context", "proj_accum", "accum", "out_accum")
        t = {k: self._type(k) for k in keys}
        unsigned = dflt.__class__(dflt.width, dflt.integer - 1, False, dflt.rounding, dflt.overflow)
        w = self.weights
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
            t["feat"] or unsigned,
            t["kv"] or dflt,
            t["ksum"] or unsigned,
            t["num"] or dflt,
            t["den"] or unsigned,
            t["context"] or dflt,
            output_type(self),
            horizon=int(self.get_attr("horizon") or 0),
            proj_accum_t=t["proj_accum"],
            accum_t=t["accum"],
            out_accum_t=t["out_accum"],
            trig_table_t=user_precision(self, "trig_table") or DEFAULT_TRIG_TABLE,
            inv_table_t=user_precision(self, "inv_table") or DEFAULT_INV_TABLE,
            inv_table_size=int(self.get_attr("inv_table_size")),
        )


def parse_cosformer_layer(keras_layer, input_names, input_shapes, data_reader):
    """Keras-2 handler: QCosformerAttention config + weights -> hwflow IR attributes (MHA's plus the horizon)."""
    layer, shape = parse_qmha_layer(keras_layer, input_names, input_shapes, data_reader)
    cfg = keras_layer["config"]
    layer["class_name"] = "HwflowCosformer"
    layer["horizon"] = int(cfg.get("horizon") or 0)
    for q in EXTRA_QUANTIZERS.values():
        layer["hwq_" + q] = cfg.get(q)
    return layer, shape


class HwflowCosformerConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(HwflowCosformer)

    def format(self, node):
        from .cosformer_code import cosformer_config_cpp

        spec = node.hwflow_spec()
        strat, rf, wt, bt, nz = projection_settings(node, spec)
        return cosformer_config_cpp(spec, f"config{node.index}", strat, rf, wt, bt, nz)


class HwflowCosformerFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(HwflowCosformer, include_header=["nnet_utils/hwflow_cosformer.h"])

    def format(self, node):
        p = self._default_function_params(node)
        w = ", ".join(node.weights[f"{n}_{k}"].name for _, n in PROJECTIONS for k in ("weight", "bias"))
        c = p["config"]
        return (
            f"nnet::hwflow_cosformer<{p['input_t']}, {p['output_t']}, {c}>({p['input']}, {p['output']}, {w}, "
            f"{c}_cf_cos, {c}_cf_sin, {c}_cf_inv);"
        )
