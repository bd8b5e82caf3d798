// hwflow quantized multi-head self-attention (io_parallel), for hwflow.nn.layers.QMultiHeadAttention.
//
// data: (seq_len, embed_dim) row-major; res: (seq_len, out_dim).
//   q/k/v[t] = nnet::dense(data[t])                 (q_t; Latency/Resource kernels, ReuseFactor as configured)
//   for head h, query i:
//     acc_j   = sum_d q[i,h,d] * k[j,h,d]            (accum_t)
//     s_j     = (score_t)(acc_j * scale)             scale = 1/sqrt(key_dim) in scale_t (exact when a power of two)
//     a       = hwflow_softmax_row(s)                (attn_t)
//     ctx[i,h,:] = (context_t) sum_j a_j * v[j,h,:]  (accum_t)
//   res[t] = nnet::dense(ctx[t])                     (output projection, result type)
// Grouped attention (Burchi & Vielzeuf 2021, config ``group`` = g > 1): the seq_len tokens are regrouped into
// seq_len/g rows of g*key_dim features per head (token u of a group contributes its head-h slice), so scores,
// softmax and context run over seq_len/g rows: q.k sums over g*key_dim, scale = 1/sqrt(g*key_dim), and the context
// row is split back into its g tokens. g = 1 is plain attention (same loops, same arithmetic).
// Mirrored bit for bit by hwflow/reference/attention.py.
#ifndef HWFLOW_MHA_H_
#define HWFLOW_MHA_H_

#include "ap_fixed.h"
#include "hwflow_attention.h"
#include "hwflow_softmax.h"
#include "nnet_common.h"
#include "nnet_dense.h"

namespace nnet {

struct hwflow_mha_config {
    static const unsigned seq_len = 16;
    static const unsigned embed_dim = 16;
    static const unsigned num_heads = 2;
    static const unsigned key_dim = 8;
    static const unsigned value_dim = 8;
    static const unsigned out_dim = 16;
    static const unsigned reuse_factor = 1;
    static const unsigned group = 1; // tokens per group (grouped attention); 1 = plain attention
    typedef ap_fixed<16, 6> q_t;
    typedef ap_fixed<32, 12> accum_t;
    typedef ap_ufixed<1, -1> scale_t;
    typedef ap_fixed<16, 6> score_t;
    typedef ap_ufixed<16, 0> attn_t;
    typedef ap_fixed<16, 6> context_t;
    // nested configs: proj_q, proj_k, proj_v, proj_o (nnet::dense_config), softmax (hwflow_softmax_config)
};

template <class data_T, class res_T, typename CONFIG_T>
void hwflow_mha(data_T data[CONFIG_T::seq_len * CONFIG_T::embed_dim], res_T res[CONFIG_T::seq_len * CONFIG_T::out_dim],
                typename CONFIG_T::proj_q::weight_t wq[CONFIG_T::embed_dim * CONFIG_T::num_heads * CONFIG_T::key_dim],
                typename CONFIG_T::proj_q::bias_t bq[CONFIG_T::num_heads * CONFIG_T::key_dim],
                typename CONFIG_T::proj_k::weight_t wk[CONFIG_T::embed_dim * CONFIG_T::num_heads * CONFIG_T::key_dim],
                typename CONFIG_T::proj_k::bias_t bk[CONFIG_T::num_heads * CONFIG_T::key_dim],
                typename CONFIG_T::proj_v::weight_t wv[CONFIG_T::embed_dim * CONFIG_T::num_heads * CONFIG_T::value_dim],
                typename CONFIG_T::proj_v::bias_t bv[CONFIG_T::num_heads * CONFIG_T::value_dim],
                typename CONFIG_T::proj_o::weight_t wo[CONFIG_T::num_heads * CONFIG_T::value_dim * CONFIG_T::out_dim],
                typename CONFIG_T::proj_o::bias_t bo[CONFIG_T::out_dim],
                const ap_uint<CONFIG_T::softmax::exp_table_t::width> exp_hi[CONFIG_T::softmax::exp_hi_size],
                const ap_uint<CONFIG_T::softmax::exp_table_t::width> exp_lo[CONFIG_T::softmax::exp_lo_size],
                const ap_uint<CONFIG_T::softmax::inv_table_t::width> inv_table[CONFIG_T::softmax::inv_table_size]) {
    static const unsigned T = CONFIG_T::seq_len, D = CONFIG_T::embed_dim, H = CONFIG_T::num_heads;
    static const unsigned DK = CONFIG_T::key_dim, DV = CONFIG_T::value_dim, O = CONFIG_T::out_dim;
    static const unsigned HK = H * DK, HV = H * DV;
    typedef typename CONFIG_T::q_t q_t;
    typedef typename CONFIG_T::accum_t accum_t;

    q_t q[T * HK], k[T * HK], v[T * HV];
    typename CONFIG_T::context_t ctx[T * HV];
#pragma HLS ARRAY_PARTITION variable = q complete
#pragma HLS ARRAY_PARTITION variable = k complete
#pragma HLS ARRAY_PARTITION variable = v complete
#pragma HLS ARRAY_PARTITION variable = ctx complete

    hwflow_qkv_projection<data_T, CONFIG_T>(data, q, k, v, wq, bq, wk, bk, wv, bv);

    static const unsigned G = CONFIG_T::group, TG = T / G;
    const typename CONFIG_T::scale_t scale = CONFIG_T::scale;
MHA_HEADS:
    for (unsigned h = 0; h < H; h++) {
    MHA_ROWS:
        for (unsigned i = 0; i < TG; i++) {
#pragma HLS PIPELINE II = CONFIG_T::reuse_factor
            typename CONFIG_T::score_t s[TG];
            typename CONFIG_T::attn_t a[TG];
#pragma HLS ARRAY_PARTITION variable = s complete
#pragma HLS ARRAY_PARTITION variable = a complete
        MHA_QK:
            for (unsigned j = 0; j < TG; j++) {
                accum_t acc = 0;
                for (unsigned u = 0; u < G; u++) {
                    for (unsigned d = 0; d < DK; d++) {
                        acc += q[(i * G + u) * HK + h * DK + d] * k[(j * G + u) * HK + h * DK + d];
                    }
                }
                s[j] = acc * scale;
            }
            hwflow_softmax_row<typename CONFIG_T::score_t, typename CONFIG_T::attn_t, typename CONFIG_T::softmax>(
                s, a, exp_hi, exp_lo, inv_table);
        MHA_AV:
            for (unsigned u = 0; u < G; u++) {
                for (unsigned d = 0; d < DV; d++) {
                    accum_t acc = 0;
                    for (unsigned j = 0; j < TG; j++) {
                        acc += a[j] * v[(j * G + u) * HV + h * DV + d];
                    }
                    ctx[(i * G + u) * HV + h * DV + d] = acc;
                }
            }
        }
    }

MHA_OUT:
    for (unsigned t = 0; t < T; t++) {
        typename CONFIG_T::context_t c[HV];
        res_T y[O];
#pragma HLS ARRAY_PARTITION variable = c complete
        for (unsigned i = 0; i < HV; i++) {
#pragma HLS UNROLL
            c[i] = ctx[t * HV + i];
        }
        nnet::dense<typename CONFIG_T::context_t, res_T, typename CONFIG_T::proj_o>(c, y, wo, bo);
        for (unsigned i = 0; i < O; i++) {
#pragma HLS UNROLL
            res[t * O + i] = y[i];
        }
    }
}

} // namespace nnet

#endif
