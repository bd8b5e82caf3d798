"""C++ text of one hwflow cosFormer configuration: four nnet::dense configs, the cos/sin and reciprocal tables."""

from __future__ import annotations

from ...reference.cosformer import CosformerSpec
from ..codegen import cpp_raw_array
from .mha_code import PROJECTIONS, closest_reuse_factor, dense_config_cpp, proj_shapes


def cosformer_tables_cpp(spec: CosformerSpec, prefix: str) -> str:
    """Return the C++ ROMs ``<prefix>_cos``, ``<prefix>_sin`` (per position) and ``<prefix>_inv`` (reciprocal)."""
    return (
        cpp_raw_array(f"{prefix}_cos", spec.trig_t, spec.tables["cos"])
        + cpp_raw_array(f"{prefix}_sin", spec.trig_t, spec.tables["sin"])
        + cpp_raw_array(f"{prefix}_inv", spec.inv_table_t, spec.tables["inv"])
    )


def cosformer_config_cpp(
    spec: CosformerSpec,
    name: str,
    strategy: str = "Latency",
    reuse_factor: int = 1,
    weight_types: dict | None = None,
    bias_types: dict | None = None,
    nzeros: dict | None = None,
) -> str:
    """Return the C++ of the nested dense configs, the tables (``<name>_cf_*``) and the cosFormer config ``name``."""
    out = []
    for p, _ in PROJECTIONS:
        n_in, n_out = proj_shapes(spec)[p]
        rf = reuse_factor if strategy.lower() == "latency" else closest_reuse_factor(n_in, n_out, reuse_factor)
        out.append(
            dense_config_cpp(
                f"{name}_{p}",
                n_in,
                n_out,
                (spec.out_accum_t if p == "o" else spec.proj_accum_t).cpp(),
                (weight_types or {}).get(p, spec.weight_t.cpp()),
                (bias_types or {}).get(p, spec.bias_t.cpp()),
                strategy,
                rf,
                (nzeros or {}).get(p, 0),
            )
        )
    out.append(cosformer_tables_cpp(spec, f"{name}_cf"))
    out.append(f"""struct {name} : nnet::hwflow_cosformer_config {{
    static const unsigned seq_len = {spec.seq_len};
    static const unsigned embed_dim = {spec.embed_dim};
    static const unsigned num_heads = {spec.num_heads};
    static const unsigned key_dim = {spec.key_dim};
    static const unsigned value_dim = {spec.value_dim};
    static const unsigned out_dim = {spec.out_dim};
    static const unsigned inv_bits = {spec.inv_bits};
    static const unsigned inv_table_size = {spec.inv_table_size};
    static const unsigned reuse_factor = {reuse_factor};
    typedef {spec.q_t.cpp()} q_t;
    typedef {spec.trig_t.cpp()} trig_t;
    typedef {spec.feat_t.cpp()} feat_t;
    typedef {spec.accum_t.cpp()} accum_t;
    typedef {spec.kv_t.cpp()} kv_t;
    typedef {spec.ksum_t.cpp()} ksum_t;
    typedef {spec.num_t.cpp()} num_t;
    typedef {spec.den_t.cpp()} den_t;
    typedef {spec.inv_table_t.cpp()} inv_table_t;
    typedef {spec.context_t.cpp()} context_t;
    typedef {name}_q proj_q;
    typedef {name}_k proj_k;
    typedef {name}_v proj_v;
    typedef {name}_o proj_o;
}};
""")
    return "".join(out)
