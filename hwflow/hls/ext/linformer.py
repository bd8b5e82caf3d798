"""hls4ml extension: hwflow.nn.layers.QLinformerAttention -> nnet::hwflow_linformer (Vivado/Vitis, io_parallel).

Config (LayerName/<layer>): MHA's keys (``Precision: {weight, bias, proj_accum, q, accum, scale, score, inp_norm,
exp_table, inv_table, attn, context, out_accum, result}``, ``ExpTableSize``, ``InvTableSize``, ``ScoreRange``,
``ReuseFactor``, ``Strategy``) plus ``Precision: {seq_accum, kv}`` for the sequence projection N -> k (its
weights E/F take the kernel quantizer's type, ``kv`` defaults to the ``kv_proj_quantizer``). ReuseFactor sets the
II of the projection dense kernels (Resource), of the sequence-projection rows and of the attention rows.
"""

from __future__ import annotations

from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.attributes import Attribute

from ...reference.linformer import LinformerSpec, make_spec
from .common import default_precision, input_type, output_type, weight_quantizer
from .mha import HwflowMultiHeadAttention, _ptype, parse_qmha_layer, projection_settings
from .mha_code import PROJECTIONS

SEQ_WEIGHTS = (("key_seq", "we"), ("value_seq", "wf"))


class HwflowLinformer(HwflowMultiHeadAttention):
    """hls4ml IR layer of hwflow's quantized Linformer self-attention (MHA over k sequence-compressed keys/values)."""

    _expected_attributes = HwflowMultiHeadAttention._expected_attributes + [Attribute("proj_k")]
    QUANTIZER_OF = {"kv": "kv_proj_quantizer"}

    def initialize(self):
        super().initialize()
        wq = weight_quantizer(self.get_attr("hwq_kernel_quantizer"), self.name)
        for n, var in SEQ_WEIGHTS:
            self._add_w(f"{n}_weight", f"{var}{{index}}", self.get_attr(f"{n}_kernel_data"), wq, "weight")

    def _type(self, key):
        q = self.QUANTIZER_OF.get(key)
        if q is None:
            return super()._type(key)
        from .common import quantizer_type, user_precision

        user = user_precision(self, key)
        return user if user is not None else quantizer_type(self.get_attr("hwq_" + q), f"layer {self.name} {q}")

    def hwflow_spec(self) -> LinformerSpec:
        """Return the LinformerSpec (all final types and tables) of this layer."""
        dflt = default_precision(self).with_modes("AP_RND_CONV", "AP_SAT")
        t = {k: self._type(k) for k in ("q", "score", "attn", "context", "proj_accum", "accum", "scale")}
        t.update({k: self._type(k) for k in ("out_accum", "exp_table", "inv_table", "inp_norm", "seq_accum", "kv")})
        w = self.weights
        rng = float(self.get_attr("score_range") or 0.0)
        kw = {k + "_t": t[k] for k in ("exp_table", "inv_table") if t[k] is not None}
        return make_spec(
            self.get_attr("seq_len"),
            self.get_attr("proj_k"),
            _ptype(w["key_seq_weight"]),
            t["kv"] or dflt,
            seq_accum_t=t["seq_accum"],
            embed_dim=self.get_attr("embed_dim"),
            num_heads=self.get_attr("num_heads"),
            key_dim=self.get_attr("key_dim"),
            value_dim=self.get_attr("value_dim"),
            out_dim=self.get_attr("out_dim"),
            input_t=input_type(self),
            weight_t=_ptype(w["query_weight"]),
            bias_t=_ptype(w["query_bias"]),
            q_t=t["q"] or dflt,
            score_t=t["score"] or dflt,
            attn_t=t["attn"] or "ap_ufixed<16,0,AP_RND_CONV,AP_SAT>",
            context_t=t["context"] or dflt,
            result_t=output_type(self),
            proj_accum_t=t["proj_accum"],
            accum_t=t["accum"],
            scale_t=t["scale"],
            out_accum_t=t["out_accum"],
            exp_table_size=int(self.get_attr("exp_table_size")),
            inv_table_size=int(self.get_attr("inv_table_size")),
            inp_norm_t=t["inp_norm"],
            score_range=rng if rng > 0 else None,
            **kw,
        )


def parse_linformer_layer(keras_layer, input_names, input_shapes, data_reader):
    """Keras-2 handler: QLinformerAttention config + weights -> hwflow IR attributes (MHA's plus E, F and k)."""
    from hls4ml.converters.keras_v2_to_hls import get_weights_data

    layer, shape = parse_qmha_layer(keras_layer, input_names, input_shapes, data_reader)
    cfg = keras_layer["config"]
    layer["class_name"] = "HwflowLinformer"
    layer["proj_k"] = int(cfg["proj_k"])
    layer["hwq_kv_proj_quantizer"] = cfg.get("kv_proj_quantizer")
    for n, _ in SEQ_WEIGHTS:
        layer[f"{n}_kernel_data"] = get_weights_data(data_reader, cfg["name"], f"{n}_kernel")
    return layer, shape


class HwflowLinformerConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(HwflowLinformer)

    def format(self, node):
        from .linformer_code import linformer_config_cpp

        spec = node.hwflow_spec()
        strat, rf, wt, bt, nz = projection_settings(node, spec.attn)
        text = linformer_config_cpp(spec, f"config{node.index}", strat, rf, wt, bt, nz)
        # E and F are stored in their own weight type: name it in the config
        seq_t = node.weights["key_seq_weight"].type.name
        return text.replace(f"typedef {spec.seq_weight_t.cpp()} seq_weight_t;", f"typedef {seq_t} seq_weight_t;")


class HwflowLinformerFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(HwflowLinformer, include_header=["nnet_utils/hwflow_linformer.h"])

    def format(self, node):
        p = self._default_function_params(node)
        w = ", ".join(node.weights[f"{n}_{k}"].name for _, n in PROJECTIONS for k in ("weight", "bias"))
        e, f = (node.weights[f"{n}_weight"].name for n, _ in SEQ_WEIGHTS)
        c = p["config"]
        return (
            f"nnet::hwflow_linformer<{p['input_t']}, {p['output_t']}, {c}>({p['input']}, {p['output']}, {w}, "
            f"{e}, {f}, {c}_sm_exp_hi, {c}_sm_exp_lo, {c}_sm_inv);"
        )
