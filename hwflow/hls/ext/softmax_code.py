"""C++ text of one hwflow softmax configuration (config struct + ROM tables), shared by the layers and the harness."""

from __future__ import annotations

from ...reference.softmax import SoftmaxSpec
from ..codegen import cpp_raw_array


def softmax_tables_cpp(spec: SoftmaxSpec, prefix: str) -> str:
    """Return the C++ definitions of the three softmax ROM tables named ``<prefix>_exp_hi`` etc."""
    return (
        cpp_raw_array(f"{prefix}_exp_hi", spec.exp_table_t, spec.tables["exp_hi"])
        + cpp_raw_array(f"{prefix}_exp_lo", spec.exp_table_t, spec.tables["exp_lo"])
        + cpp_raw_array(f"{prefix}_inv", spec.inv_table_t, spec.tables["inv"])
    )


def softmax_config_cpp(spec: SoftmaxSpec, name: str, reuse_factor: int = 1) -> str:
    """Return the C++ config struct ``name`` for nnet::hwflow_softmax."""
    return f"""struct {name} : nnet::hwflow_softmax_config {{
    static const unsigned n_in = {spec.n_in};
    static const unsigned n_rows = {spec.n_rows};
    static const unsigned lo_bits = {spec.lo_bits};
    static const unsigned exp_hi_size = {spec.exp_hi_size};
    static const unsigned exp_lo_size = {spec.exp_lo_size};
    static const unsigned inv_bits = {spec.inv_bits};
    static const unsigned inv_table_size = {spec.inv_table_size};
    static const unsigned reuse_factor = {reuse_factor};
    typedef {spec.inp_norm_t.cpp()} inp_norm_t;
    typedef {spec.exp_table_t.cpp()} exp_table_t;
    typedef {spec.inv_table_t.cpp()} inv_table_t;
    typedef {spec.sum_t.cpp()} sum_t;
}};
"""
