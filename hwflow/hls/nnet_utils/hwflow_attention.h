// hwflow attention steps shared by hwflow_mha.h, hwflow_linformer.h and hwflow_cosformer.h (io_parallel).
//
// hwflow_qkv_projection: q/k/v[t] = nnet::dense(data[t]) for every token t, in q_t, through the layer's nested
// proj_q / proj_k / proj_v dense configs (Latency or Resource kernel, ReuseFactor as configured); stored
// token-major: q[t * num_heads * key_dim + h * key_dim + d], v likewise with value_dim. Inlined into the caller,
// so the attention kernel schedules it as its own first loop. Mirrored by the projection step of
// hwflow/reference/attention.py (and the Linformer/cosFormer references, which share it).
#ifndef HWFLOW_ATTENTION_H_
#define HWFLOW_ATTENTION_H_

#include "ap_fixed.h"
#include "nnet_common.h"
#include "nnet_dense.h"

namespace nnet {

template <class data_T, typename CONFIG_T>
void hwflow_qkv_projection(
    data_T data[CONFIG_T::seq_len * CONFIG_T::embed_dim],
    typename CONFIG_T::q_t q[CONFIG_T::seq_len * CONFIG_T::num_heads * CONFIG_T::key_dim],
    typename CONFIG_T::q_t k[CONFIG_T::seq_len * CONFIG_T::num_heads * CONFIG_T::key_dim],
    typename CONFIG_T::q_t v[CONFIG_T::seq_len * CONFIG_T::num_heads * CONFIG_T::value_dim],
    typename CONFIG_T::proj_q::weight_t wq[CONFIG_T::embed_dim * CONFIG_T::num_heads * CONFIG_T::key_dim],
    typename CONFIG_T::proj_q::bias_t bq[CONFIG_T::num_heads * CONFIG_T::key_dim],
    typename CONFIG_T::proj_k::weight_t wk[CONFIG_T::embed_dim * CONFIG_T::num_heads * CONFIG_T::key_dim],
    typename CONFIG_T::proj_k::bias_t bk[CONFIG_T::num_heads * CONFIG_T::key_dim],
    typename CONFIG_T::proj_v::weight_t wv[CONFIG_T::embed_dim * CONFIG_T::num_heads * CONFIG_T::value_dim],
    typename CONFIG_T::proj_v::bias_t bv[CONFIG_T::num_heads * CONFIG_T::value_dim]) {
#pragma HLS INLINE
    static const unsigned T = CONFIG_T::seq_len, D = CONFIG_T::embed_dim;
    static const unsigned HK = CONFIG_T::num_heads * CONFIG_T::key_dim, HV = CONFIG_T::num_heads * CONFIG_T::value_dim;
    typedef typename CONFIG_T::q_t q_t;

QKV_PROJ:
    for (unsigned t = 0; t < T; t++) {
        data_T x[D];
        q_t qr[HK], kr[HK], vr[HV];
#pragma HLS ARRAY_PARTITION variable = x complete
        for (unsigned i = 0; i < D; i++) {
#pragma HLS UNROLL
            x[i] = data[t * D + i];
        }
        nnet::dense<data_T, q_t, typename CONFIG_T::proj_q>(x, qr, wq, bq);
        nnet::dense<data_T, q_t, typename CONFIG_T::proj_k>(x, kr, wk, bk);
        nnet::dense<data_T, q_t, typename CONFIG_T::proj_v>(x, vr, wv, bv);
        for (unsigned i = 0; i < HK; i++) {
#pragma HLS UNROLL
            q[t * HK + i] = qr[i];
            k[t * HK + i] = kr[i];
        }
        for (unsigned i = 0; i < HV; i++) {
#pragma HLS UNROLL
            v[t * HV + i] = vr[i];
        }
    }
}

} // namespace nnet

#endif
