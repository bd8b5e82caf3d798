"""The attention layer of a card: ``model.attention`` -> QMultiHeadAttention or one of its hardware-friendly variants.

Shared by the transformer and the conformer builders (one call where each builds its attention):

==========  ==================================================  =====================================
attention   layer (hwflow.nn.layers)                             card keys / extra quantizer roles
==========  ==================================================  =====================================
softmax     QMultiHeadAttention (N x N scores)                  --
linformer   QLinformerAttention (keys/values N -> k)            linformer_k; lin_kv (compressed K, V)
==========  ==================================================  =====================================

The MHA roles (qkv, score, softmax, context, attn_out, default, bias) keep their meaning in every variant.
"""

from __future__ import annotations

from ..util import HwflowError

# fallbacks of the variants' extra activation roles (bits, integer, keep_negative), like the builders' tables
ROLE_DEFAULTS = {
    "lin_kv": (16, 6, True),  # sum over N of E[m, t] * k[t]: |E| < 1, one more integer bit than qkv
}


def attention_layer(card, q, quantized: bool, seq_len: int, name: str):
    """Return the (unbuilt) attention layer the card asks for; ``q(role)`` is the builder's quantizer factory."""
    from .layers import QLinformerAttention, QMultiHeadAttention
    from .quant import builder_quantizer

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
    raise HwflowError(f"model.attention '{kind}' is not available yet: use softmax or linformer")


def variable_products(card, seq_len: int) -> int:
    """Return the variable x variable products of one attention layer of the card (closed formula, all heads)."""
    m = card["model"]
    H, dk = m["num_heads"], m["key_dim"]
    kind = m.get("attention", "softmax")
    if kind == "linformer":
        return H * seq_len * int(m["linformer_k"]) * 2 * dk
    return H * seq_len * seq_len * 2 * dk
