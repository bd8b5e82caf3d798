"""The attention layer of a card: ``model.attention`` -> QMultiHeadAttention or one of its hardware-friendly variants.

Shared by the transformer and the conformer builders (one call where each builds its attention):

==========  ==================================================  =====================================
attention   layer (hwflow.nn.layers)                             card keys / extra quantizer roles
==========  ==================================================  =====================================
softmax     QMultiHeadAttention (N x N scores)                  --
linformer   QLinformerAttention (keys/values N -> k)            linformer_k; lin_kv (compressed K, V)
cosformer   QCosformerAttention (ReLU features, cos             cosformer_m; cos_feat, cos_kv, cos_ksum,
            re-weighting, linear form, one reciprocal/query)    cos_num, cos_den (score/softmax unused)
==========  ==================================================  =====================================

The MHA roles (qkv, score, softmax, context, attn_out, default, bias) keep their meaning in every variant.
"""

from __future__ import annotations

from ..util import HwflowError

# fallbacks of the variants' extra activation roles (bits, integer, keep_negative), like the builders' tables
ROLE_DEFAULTS = {
    "lin_kv": (16, 6, True),  # sum over N of E[m, t] * k[t]: |E| < 1, one more integer bit than qkv
    "cos_feat": (16, 5, False),  # relu(q) * cos / sin: non-negative, within the qkv range
    "cos_kv": (18, 9, True),  # sum over N of feature x value
    "cos_ksum": (16, 8, False),  # sum over N of features
    "cos_num": (20, 12, True),  # features x state: the numerator of one query
    "cos_den": (20, 10, False),  # its normaliser (non-negative); 10 fractional bits before the reciprocal
}


def attention_layer(card, q, quantized: bool, seq_len: int, name: str, input_type=None):
    """Return the (unbuilt) attention layer the card asks for; ``q(role)`` is the builder's quantizer factory and
    ``input_type`` the fixed-point type of its input (None in the float twin). Every kind computes the firmware's
    arithmetic exactly (hwflow.nn.exact) from the input type and the card's softmax tables (cosFormer: its
    reciprocal table takes the card's inv_table_size / inv_table_t) when all its quantizers are fixed point."""
    from .layers import QCosformerAttention, QGroupedAttention, QLinformerAttention, QMultiHeadAttention
    from .quant import builder_quantizer
    from .transformer import table_settings

    m = card["model"]
    kind = m.get("attention", "softmax")
    common = {
        "kernel_quantizer": q("default"),
        "bias_quantizer": q("bias"),
        "qkv_quantizer": q("qkv"),
        "score_quantizer": q("score"),
        "softmax_quantizer": q("softmax"),
        "context_quantizer": q("context"),
        "output_quantizer": q("attn_out"),
        "input_type": input_type,
        **table_settings(card)["softmax"],
        "name": name,
    }

    def extra(role):
        return builder_quantizer(card, role, quantized, ROLE_DEFAULTS)

    H, dk = m["num_heads"], m["key_dim"]
    if kind == "softmax":
        return QMultiHeadAttention(H, dk, **common)
    if kind == "linformer":
        k = int(m["linformer_k"])
        if k > seq_len:
            raise HwflowError(
                f"model.linformer_k = {k} exceeds the sequence length {seq_len}: Linformer compresses N -> k, "
                f"set linformer_k <= {seq_len}"
            )
        return QLinformerAttention(H, dk, proj_k=k, kv_proj_quantizer=extra("lin_kv"), **common)
    if kind == "cosformer":
        horizon = int(m.get("cosformer_m", 0) or 0)
        if horizon and horizon < seq_len:
            raise HwflowError(
                f"model.cosformer_m = {horizon} is below the sequence length {seq_len}: the cos re-weighting would "
                f"turn negative; set cosformer_m >= {seq_len} or 0 (= sequence length)"
            )
        for unused in ("score_quantizer", "softmax_quantizer"):
            common.pop(unused)
        return QCosformerAttention(
            H,
            dk,
            horizon=horizon,
            feat_quantizer=extra("cos_feat"),
            kv_quantizer=extra("cos_kv"),
            ksum_quantizer=extra("cos_ksum"),
            num_quantizer=extra("cos_num"),
            den_quantizer=extra("cos_den"),
            **common,
        )
    if kind == "grouped":
        g = int(m["attention_group"])
        if seq_len % g:
            raise HwflowError(
                f"model.attention_group = {g} does not divide the sequence length {seq_len}: grouped attention "
                f"regroups N tokens into N/g rows; pick a divisor of {seq_len}"
            )
        return QGroupedAttention(H, dk, group=g, **common)
    raise HwflowError(f"model.attention '{kind}' is unknown: use softmax, linformer, cosformer or grouped")


def variable_products(card, seq_len: int) -> int:
    """Return the variable x variable products of one attention layer of the card (closed formula, all heads)."""
    m = card["model"]
    H, dk = m["num_heads"], m["key_dim"]
    kind = m.get("attention", "softmax")
    if kind == "linformer":
        return H * seq_len * int(m["linformer_k"]) * 2 * dk
    if kind == "cosformer":
        # state: 2 (cos, sin) x N x dk x dv; rows: 2 x N x dk x (dv + 1); normalise: N x dv (+1 interpolation)
        return H * (2 * seq_len * dk * dk + 2 * seq_len * dk * (dk + 1) + seq_len * (dk + 1))
    if kind == "grouped":
        g = int(m["attention_group"])
        return H * (seq_len // g) * (seq_len // g) * 2 * g * dk
    return H * seq_len * seq_len * 2 * dk
