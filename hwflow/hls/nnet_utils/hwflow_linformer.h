// hwflow Linformer self-attention (io_parallel), for hwflow.nn.layers.QLinformerAttention (Wang et al. 2020).
//
// data: (seq_len, embed_dim) row-major; res: (seq_len, out_dim). Keys and values are compressed along the sequence,
// seq_len -> lin_k, by two learned lin_k x seq_len matrices E (keys) and F (values) shared by all heads:
//   q/k/v[t]   = nnet::dense(data[t])                   (q_t; Latency/Resource kernels, ReuseFactor as configured)
//   kp[m]      = (kv_t) sum_t E[m,t] * k[t]             (seq_accum_t, exact by default)  m < lin_k
//   vp[m]      = (kv_t) sum_t F[m,t] * v[t]
//   for head h, query i (lin_k keys instead of seq_len):
//     acc_m   = sum_d q[i,h,d] * kp[m,h,d]             (accum_t)
//     s_m     = (score_t)(acc_m * scale)               scale = 1/sqrt(key_dim) in scale_t
//     a       = hwflow_softmax_row(s)                  (attn_t; rows of lin_k entries)
//     ctx[i,h,:] = (context_t) sum_m a_m * vp[m,h,:]   (accum_t)
//   res[t] = nnet::dense(ctx[t])                       (output projection, result type)
// Variable x variable products: seq_len * lin_k * (key_dim + value_dim) per head instead of seq_len^2 * (...).
// Mirrored bit for bit by hwflow/reference/linformer.py.
#ifndef HWFLOW_LINFORMER_H_
#define HWFLOW_LINFORMER_H_

#include "ap_fixed.h"
#include "hwflow_attention.h"
#include "hwflow_softmax.h"
#include "nnet_common.h"
#include "nnet_dense.h"

namespace nnet {

struct hwflow_linformer_config {
    static const unsigned seq_len = 16;
    static const unsigned lin_k = 4;
    static const unsigned embed_dim = 16;
    static const unsigned num_heads = 2;
    static const unsigned key_dim = 8;
    static const unsigned value_dim = 8;
    static const unsigned out_dim = 16;
    static const unsigned reuse_factor = 1;
    typedef ap_fixed<16, 6> q_t;
    typedef ap_fixed<8, 1> seq_weight_t;
    typedef ap_fixed<32, 12> seq_accum_t;
    typedef ap_fixed<16, 6> kv_t;
    typedef ap_fixed<32, 12> accum_t;
    typedef ap_ufixed<1, -1> scale_t;
    typedef ap_fixed<16, 6> score_t;
    typedef ap_ufixed<16, 0> attn_t;
    typedef ap_fixed<16, 6> context_t;
    // nested configs: proj_q, proj_k, proj_v, proj_o (nnet::dense_config), softmax (hwflow_softmax_config)
};

// out[m * C + c] = (res_T) sum_t w[m * T + t] * x[t * C + c]: the sequence-axis projection seq_len -> lin_k.
template <class x_T, class res_T, typename CONFIG_T, unsigned C>
void hwflow_linformer_seq_project(x_T x[CONFIG_T::seq_len * C], res_T out[CONFIG_T::lin_k * C],
                                  typename CONFIG_T::seq_weight_t w[CONFIG_T::lin_k * CONFIG_T::seq_len]) {
#pragma HLS INLINE
    static const unsigned T = CONFIG_T::seq_len, K = CONFIG_T::lin_k;
LINFORMER_SEQ_ROWS:
    for (unsigned m = 0; m < K; m++) {
#pragma HLS PIPELINE II = CONFIG_T::reuse_factor
    LINFORMER_SEQ_COLS:
        for (unsigned c = 0; c < C; c++) {
            typename CONFIG_T::seq_accum_t acc = 0;
        LINFORMER_SEQ_SUM:
            for (unsigned t = 0; t < T; t++) {
                acc += w[m * T + t] * x[t * C + c];
            }
            out[m * C + c] = acc;
        }
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void hwflow_linformer(
    data_T data[CONFIG_T::seq_len * CONFIG_T::embed_dim], res_T res[CONFIG_T::seq_len * CONFIG_T::out_dim],
    typename CONFIG_T::proj_q::weight_t wq[CONFIG_T::embed_dim * CONFIG_T::num_heads * CONFIG_T::key_dim],
    typename CONFIG_T::proj_q::bias_t bq[CONFIG_T::num_heads * CONFIG_T::key_dim],
    typename CONFIG_T::proj_k::weight_t wk[CONFIG_T::embed_dim * CONFIG_T::num_heads * CONFIG_T::key_dim],
    typename CONFIG_T::proj_k::bias_t bk[CONFIG_T::num_heads * CONFIG_T::key_dim],
    typename CONFIG_T::proj_v::weight_t wv[CONFIG_T::embed_dim * CONFIG_T::num_heads * CONFIG_T::value_dim],
    typename CONFIG_T::proj_v::bias_t bv[CONFIG_T::num_heads * CONFIG_T::value_dim],
    typename CONFIG_T::proj_o::weight_t wo[CONFIG_T::num_heads * CONFIG_T::value_dim * CONFIG_T::out_dim],
    typename CONFIG_T::proj_o::bias_t bo[CONFIG_T::out_dim],
    typename CONFIG_T::seq_weight_t we[CONFIG_T::lin_k * CONFIG_T::seq_len],
    typename CONFIG_T::seq_weight_t wf[CONFIG_T::lin_k * CONFIG_T::seq_len],
    const ap_uint<CONFIG_T::softmax::exp_table_t::width> exp_hi[CONFIG_T::softmax::exp_hi_size],
    const ap_uint<CONFIG_T::softmax::exp_table_t::width> exp_lo[CONFIG_T::softmax::exp_lo_size],
    const ap_uint<CONFIG_T::softmax::inv_table_t::width> inv_table[CONFIG_T::softmax::inv_table_size]) {
    static const unsigned T = CONFIG_T::seq_len, K = CONFIG_T::lin_k, D = CONFIG_T::embed_dim;
    static const unsigned H = CONFIG_T::num_heads, DK = CONFIG_T::key_dim, DV = CONFIG_T::value_dim;
    static const unsigned O = CONFIG_T::out_dim, HK = H * DK, HV = H * DV;
    typedef typename CONFIG_T::q_t q_t;
    typedef typename CONFIG_T::kv_t kv_t;
    typedef typename CONFIG_T::accum_t accum_t;

    q_t q[T * HK], k[T * HK], v[T * HV];
    kv_t kp[K * HK], vp[K * HV];
    typename CONFIG_T::context_t ctx[T * HV];
#pragma HLS ARRAY_PARTITION variable = q complete
#pragma HLS ARRAY_PARTITION variable = k complete
#pragma HLS ARRAY_PARTITION variable = v complete
#pragma HLS ARRAY_PARTITION variable = kp complete
#pragma HLS ARRAY_PARTITION variable = vp complete
#pragma HLS ARRAY_PARTITION variable = ctx complete

    hwflow_qkv_projection<data_T, CONFIG_T>(data, q, k, v, wq, bq, wk, bk, wv, bv);

    hwflow_linformer_seq_project<q_t, kv_t, CONFIG_T, HK>(k, kp, we);
    hwflow_linformer_seq_project<q_t, kv_t, CONFIG_T, HV>(v, vp, wf);

    const typename CONFIG_T::scale_t scale = CONFIG_T::scale;
LINFORMER_HEADS:
    for (unsigned h = 0; h < H; h++) {
    LINFORMER_ROWS:
        for (unsigned i = 0; i < T; i++) {
#pragma HLS PIPELINE II = CONFIG_T::reuse_factor
            typename CONFIG_T::score_t s[K];
            typename CONFIG_T::attn_t a[K];
#pragma HLS ARRAY_PARTITION variable = s complete
#pragma HLS ARRAY_PARTITION variable = a complete
        LINFORMER_QK:
            for (unsigned m = 0; m < K; m++) {
                accum_t acc = 0;
                for (unsigned d = 0; d < DK; d++) {
                    acc += q[i * HK + h * DK + d] * kp[m * HK + h * DK + d];
                }
                s[m] = acc * scale;
            }
            hwflow_softmax_row<typename CONFIG_T::score_t, typename CONFIG_T::attn_t, typename CONFIG_T::softmax>(
                s, a, exp_hi, exp_lo, inv_table);
        LINFORMER_AV:
            for (unsigned d = 0; d < DV; d++) {
                accum_t acc = 0;
                for (unsigned m = 0; m < K; m++) {
                    acc += a[m] * vp[m * HV + h * DV + d];
                }
                ctx[i * HV + h * DV + d] = acc;
            }
        }
    }

LINFORMER_OUT:
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
