"""C++ text of one hwflow attention configuration: four nnet::dense configs, the softmax config and tables."""

from __future__ import annotations

import numpy as np

from ...reference.attention import AttentionSpec
from ..codegen import literal
from .softmax_code import softmax_config_cpp, softmax_tables_cpp

DENSE_CONFIG = """struct {name} : nnet::dense_config {{
    static const unsigned n_in = {n_in};
    static const unsigned n_out = {n_out};
    static const unsigned io_type = nnet::io_parallel;
    static const unsigned strategy = nnet::{strategy};
    static const unsigned reuse_factor = {reuse};
    static const unsigned n_zeros = {nzeros};
    static const unsigned n_nonzeros = {nonzeros};
    static const unsigned multiplier_limit = DIV_ROUNDUP(n_in * n_out, reuse_factor) - n_zeros / reuse_factor;
    static const bool store_weights_in_bram = false;
    typedef {accum_t} accum_t;
    typedef {bias_t} bias_t;
    typedef {weight_t} weight_t;
    typedef ap_uint<1> index_t;
    template<class data_T, class res_T, class CONFIG_T>
    using kernel = {kernel}<data_T, res_T, CONFIG_T>;
    template<class x_T, class y_T>
    using product = nnet::product::mult<x_T, y_T>;
}};
"""

PROJECTIONS = (("q", "query"), ("k", "key"), ("v", "value"), ("o", "output"))


def valid_reuse_factor(n_in: int, n_out: int, rf: int) -> bool:
    """Return True when nnet::dense_resource computes correctly with this reuse factor (hls4ml's rule)."""
    mult = min(n_in, rf)
    limit = -(-(n_in * n_out) // mult)
    ok = (limit % n_out == 0) or rf >= n_in
    ok = ok and ((rf % n_in == 0) or rf < n_in)
    return ok and (n_in * n_out) % rf == 0


def closest_reuse_factor(n_in: int, n_out: int, rf: int) -> int:
    """Return the valid reuse factor closest to ``rf`` for an n_in x n_out dense."""
    valid = [r for r in range(1, n_in * n_out + 1) if valid_reuse_factor(n_in, n_out, r)]
    return min(valid, key=lambda r: (abs(r - rf), r))


def dense_config_cpp(
    name: str,
    n_in: int,
    n_out: int,
    accum_t: str,
    weight_t: str,
    bias_t: str,
    strategy: str,
    reuse: int,
    nzeros: int = 0,
) -> str:
    """Return an nnet::dense config struct (the same fields hls4ml's Dense template writes)."""
    if strategy.lower() == "latency":
        kernel, strat = "nnet::DenseLatency", "latency"
    else:
        kernel = "nnet::DenseResource_rf_leq_nin" if reuse <= n_in else "nnet::DenseResource_rf_gt_nin_rem0"
        strat = "resource"
    return DENSE_CONFIG.format(
        name=name,
        n_in=n_in,
        n_out=n_out,
        strategy=strat,
        reuse=reuse,
        nzeros=nzeros,
        nonzeros=n_in * n_out - nzeros,
        accum_t=accum_t,
        weight_t=weight_t,
        bias_t=bias_t,
        kernel=kernel,
    )


def proj_shapes(spec: AttentionSpec) -> dict:
    """Return {projection: (n_in, n_out)} of the four dense projections."""
    hk, hv = spec.num_heads * spec.key_dim, spec.num_heads * spec.value_dim
    return {"q": (spec.embed_dim, hk), "k": (spec.embed_dim, hk), "v": (spec.embed_dim, hv), "o": (hv, spec.out_dim)}


def mha_config_cpp(
    spec: AttentionSpec,
    name: str,
    strategy: str = "Latency",
    reuse_factor: int = 1,
    weight_types: dict | None = None,
    bias_types: dict | None = None,
    nzeros: dict | None = None,
) -> str:
    """Return the C++ of the nested configs, the softmax tables (``<name>_sm_*``) and the attention config ``name``."""
    out = []
    shapes = proj_shapes(spec)
    for p, _ in PROJECTIONS:
        n_in, n_out = shapes[p]
        acc = spec.out_accum_t if p == "o" else spec.proj_accum_t
        rf = reuse_factor if strategy.lower() == "latency" else closest_reuse_factor(n_in, n_out, reuse_factor)
        out.append(
            dense_config_cpp(
                f"{name}_{p}",
                n_in,
                n_out,
                acc.cpp(),
                (weight_types or {}).get(p, spec.weight_t.cpp()),
                (bias_types or {}).get(p, spec.bias_t.cpp()),
                strategy,
                rf,
                (nzeros or {}).get(p, 0),
            )
        )
    out.append(softmax_tables_cpp(spec.softmax, f"{name}_sm"))
    out.append(softmax_config_cpp(spec.softmax, f"{name}_softmax", 1))
    out.append(f"""struct {name} : nnet::hwflow_mha_config {{
    static const unsigned seq_len = {spec.seq_len};
    static const unsigned embed_dim = {spec.embed_dim};
    static const unsigned num_heads = {spec.num_heads};
    static const unsigned key_dim = {spec.key_dim};
    static const unsigned value_dim = {spec.value_dim};
    static const unsigned out_dim = {spec.out_dim};
    static const unsigned reuse_factor = {reuse_factor};
    static const unsigned group = {spec.group};
    typedef {spec.q_t.cpp()} q_t;
    typedef {spec.accum_t.cpp()} accum_t;
    typedef {spec.scale_t.cpp()} scale_t;
    typedef {spec.score_t.cpp()} score_t;
    typedef {spec.attn_t.cpp()} attn_t;
    typedef {spec.context_t.cpp()} context_t;
    static constexpr double scale = {literal(spec.scale)};
    typedef {name}_q proj_q;
    typedef {name}_k proj_k;
    typedef {name}_v proj_v;
    typedef {name}_o proj_o;
    typedef {name}_softmax softmax;
}};
""")
    return "".join(out)


def weight_layout(w: np.ndarray, strategy: str) -> np.ndarray:
    """Return a (n_in, n_out) kernel in the memory order nnet::dense expects (transposed for Resource)."""
    return np.transpose(w) if strategy.lower() != "latency" else w
