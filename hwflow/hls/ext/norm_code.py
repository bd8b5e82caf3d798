"""C++ text of one hwflow LayerNorm/RMSNorm configuration (config struct + 1/sqrt ROM table)."""

from __future__ import annotations

from ...reference.layernorm import NormSpec
from ..codegen import cpp_raw_array, literal


def norm_table_cpp(spec: NormSpec, name: str) -> str:
    """Return the C++ definition of the 1/sqrt ROM table ``name``."""
    return cpp_raw_array(name, spec.table_t, spec.table)


def norm_config_cpp(spec: NormSpec, name: str, reuse_factor: int = 1) -> str:
    """Return the C++ config struct ``name`` for nnet::hwflow_norm."""
    return f"""struct {name} : nnet::hwflow_norm_config {{
    static const unsigned n_in = {spec.n_in};
    static const unsigned seq_len = {spec.seq_len};
    static const bool center = {"true" if spec.center else "false"};
    static const unsigned table_bits = {spec.table_bits};
    static const unsigned table_size = {spec.table_size};
    static const unsigned reuse_factor = {reuse_factor};
    typedef {spec.accum_t.cpp()} accum_t;
    typedef {spec.mean_t.cpp()} mean_t;
    typedef {spec.diff_t.cpp()} diff_t;
    typedef {spec.var_t.cpp()} var_t;
    typedef {spec.table_t.cpp()} table_t;
    typedef {spec.inv_std_t.cpp()} inv_std_t;
    typedef {spec.norm_t.cpp()} norm_t;
    typedef {spec.scale_t.cpp()} scale_t;
    typedef {spec.bias_t.cpp()} bias_t;
    typedef {spec.inv_n_t.cpp()} inv_n_t;
    static constexpr double inv_n = {literal(spec.inv_n)};
    static constexpr double epsilon = {literal(spec.eps_q)};
}};
"""
