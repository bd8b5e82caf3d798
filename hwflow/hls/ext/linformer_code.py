"""C++ text of one hwflow Linformer configuration: four nnet::dense configs, the softmax config and tables."""

from __future__ import annotations

from ...reference.linformer import LinformerSpec
from ..codegen import literal
from .mha_code import PROJECTIONS, closest_reuse_factor, dense_config_cpp, proj_shapes
from .softmax_code import softmax_config_cpp, softmax_tables_cpp


def linformer_config_cpp(
    spec: LinformerSpec,
    name: str,
    strategy: str = "Latency",
    reuse_factor: int = 1,
    weight_types: dict | None = None,
    bias_types: dict | None = None,
    nzeros: dict | None = None,
) -> str:
    """Return the C++ of the nested configs, the softmax tables (``<name>_sm_*``) and the Linformer config ``name``."""
    a = spec.attn
    out = []
    for p, _ in PROJECTIONS:
        n_in, n_out = proj_shapes(a)[p]
        rf = reuse_factor if strategy.lower() == "latency" else closest_reuse_factor(n_in, n_out, reuse_factor)
        out.append(
            dense_config_cpp(
                f"{name}_{p}",
                n_in,
                n_out,
                (a.out_accum_t if p == "o" else a.proj_accum_t).cpp(),
                (weight_types or {}).get(p, a.weight_t.cpp()),
                (bias_types or {}).get(p, a.bias_t.cpp()),
                strategy,
                rf,
                (nzeros or {}).get(p, 0),
            )
        )
    out.append(softmax_tables_cpp(a.softmax, f"{name}_sm"))
    out.append(softmax_config_cpp(a.softmax, f"{name}_softmax", 1))
    out.append(f"""struct {name} : nnet::hwflow_linformer_config {{
    static const unsigned seq_len = {spec.seq_len};
    static const unsigned lin_k = {spec.proj_k};
    static const unsigned embed_dim = {a.embed_dim};
    static const unsigned num_heads = {a.num_heads};
    static const unsigned key_dim = {a.key_dim};
    static const unsigned value_dim = {a.value_dim};
    static const unsigned out_dim = {a.out_dim};
    static const unsigned reuse_factor = {reuse_factor};
    typedef {a.q_t.cpp()} q_t;
    typedef {spec.seq_weight_t.cpp()} seq_weight_t;
    typedef {spec.seq_accum_t.cpp()} seq_accum_t;
    typedef {spec.kv_t.cpp()} kv_t;
    typedef {a.accum_t.cpp()} accum_t;
    typedef {a.scale_t.cpp()} scale_t;
    typedef {a.score_t.cpp()} score_t;
    typedef {a.attn_t.cpp()} attn_t;
    typedef {a.context_t.cpp()} context_t;
    static constexpr double scale = {literal(a.scale)};
    typedef {name}_q proj_q;
    typedef {name}_k proj_k;
    typedef {name}_v proj_v;
    typedef {name}_o proj_o;
    typedef {name}_softmax softmax;
}};
""")
    return "".join(out)
