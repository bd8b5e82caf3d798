// hwflow cosFormer self-attention (io_parallel), for hwflow.nn.layers.QCosformerAttention (Qin et al. 2022).
//
// Softmax-free linear attention: sim(i, j) = relu(q_i) . relu(k_j) * cos(pi/2 (i - j) / M), in linear form
// Q'(K'^T V) through cos(a - b) = cos a cos b + sin a sin b. Fixed-point implementation (mirrored bit for bit by
// hwflow/reference/cosformer.py):
//   q/k/v[t]   = nnet::dense(data[t])                      (q_t; Latency/Resource kernels, ReuseFactor as configured)
//   ReLU feature map: q' = max(q, 0), k' = max(k, 0)      (exact in q_t)
//   cos/sin re-weighting via a precomputed per-position table (ROM, trig_t, N entries, M >= N so both in [0, 1]):
//     qc[i] = (feat_t)(q'[i] * cos_table[i]),  qs[i] = (feat_t)(q'[i] * sin_table[i]);  kc, ks likewise
//   per head h, the linear form's state, shared by every query (accum_t, exact by default):
//     KVc = (kv_t) sum_j kc[j]^T v[j]   (key_dim x value_dim)      Kc = (ksum_t) sum_j kc[j]   (and KVs, Ks)
//   per query i:
//     num[i] = (num_t) sum_d qc[i,d] KVc[d,:] + qs[i,d] KVs[d,:]
//     den[i] = (den_t) sum_d qc[i,d] Kc[d]    + qs[i,d] Ks[d]        (unsigned; the one normaliser per query)
//   one reciprocal per query, the softmax's interpolated-table style: den = m * 2^(p - F), m in [1, 2) by
//   leading-one detection; 1/m = T[j] + (T[j+1] - T[j]) * r (inv_table_t), T[j] = 1/(1 + j/2^inv_bits);
//     ctx[i] = (context_t)(num[i] * inv * 2^(F - p))        an exact shift of the exact product, rounded once;
//     den == 0 (no active feature) -> ctx[i] = 0
//   res[t] = nnet::dense(ctx[t])                           (output projection, result type)
// No exponentials; variable x variable products O(N d^2) instead of O(N^2 d).
#ifndef HWFLOW_COSFORMER_H_
#define HWFLOW_COSFORMER_H_

#include "ap_fixed.h"
#include "hwflow_attention.h"
#include "nnet_common.h"
#include "nnet_dense.h"

namespace nnet {

struct hwflow_cosformer_config {
    static const unsigned seq_len = 16;
    static const unsigned embed_dim = 16;
    static const unsigned num_heads = 2;
    static const unsigned key_dim = 8;
    static const unsigned value_dim = 8;
    static const unsigned out_dim = 16;
    static const unsigned inv_bits = 10;
    static const unsigned inv_table_size = 1025;
    static const unsigned reuse_factor = 1;
    typedef ap_fixed<16, 6> q_t;
    typedef ap_ufixed<18, 1, AP_RND_CONV, AP_SAT> trig_t;
    typedef ap_ufixed<16, 5> feat_t;
    typedef ap_fixed<48, 20> accum_t;
    typedef ap_fixed<18, 10> kv_t;
    typedef ap_ufixed<16, 8> ksum_t;
    typedef ap_fixed<20, 13> num_t;
    typedef ap_ufixed<20, 10> den_t;
    typedef ap_ufixed<18, 1, AP_RND, AP_SAT> inv_table_t;
    typedef ap_fixed<16, 6> context_t;
    // nested configs: proj_q, proj_k, proj_v, proj_o (nnet::dense_config)
};

// (context_t)(num * 1/den) for one query: leading-one normalisation of den, interpolated 1/m, one exact shift.
template <typename CONFIG_T>
void hwflow_cosformer_normalise(typename CONFIG_T::num_t num[CONFIG_T::value_dim], typename CONFIG_T::den_t den,
                                typename CONFIG_T::context_t ctx[CONFIG_T::value_dim],
                                const ap_uint<CONFIG_T::inv_table_t::width> inv_table[CONFIG_T::inv_table_size]) {
#pragma HLS INLINE
    typedef typename CONFIG_T::num_t num_t;
    typedef typename CONFIG_T::den_t den_t;
    typedef typename CONFIG_T::inv_table_t inv_t;
    static const int W = den_t::width, F = den_t::width - den_t::iwidth;
    static const int NW = num_t::width, NF = num_t::width - num_t::iwidth;
    static const int VW = inv_t::width, VI = inv_t::iwidth, VF = VW - VI;
    static const int PW = NW + VW + W;         // exact product, shifted left by up to W - 1
    static const int PF = NF + VF + W - 1 - F; // its fractional bits after the shift

    ap_uint<W> draw = den.range(W - 1, 0);
    int p = 0;
COSFORMER_LEAD:
    for (int b = 1; b < W; b++) {
#pragma HLS UNROLL
        if (draw[b])
            p = b;
    }
    ap_uint<W> m = draw << (W - 1 - p);
    ap_uint<W> mfrac = m & ((ap_uint<W>(1) << (W - 1)) - 1);
    static const int SH = W - 1 - (int)CONFIG_T::inv_bits;
    static const int RB = SH > 0 ? SH : 1;
    unsigned idx;
    ap_ufixed<RB, 0> f = 0;
    if (SH > 0) {
        idx = (unsigned)(mfrac >> SH);
        ap_uint<RB> rem = mfrac & ((ap_uint<W>(1) << SH) - 1);
        f.range(RB - 1, 0) = rem;
    } else {
        idx = ((unsigned)mfrac) << (-SH);
    }
    inv_t t0, t1;
    t0.range(VW - 1, 0) = inv_table[idx];
    t1.range(VW - 1, 0) = inv_table[idx + 1];
    ap_fixed<VW + 1, VI + 1> dt = ap_fixed<VW + 1, VI + 1>(t1) - ap_fixed<VW + 1, VI + 1>(t0);
    inv_t inv = t0 + dt * f;

COSFORMER_SCALE:
    for (unsigned e = 0; e < CONFIG_T::value_dim; e++) {
#pragma HLS UNROLL
        ap_int<NW> nraw = num[e].range(NW - 1, 0);
        ap_int<PW> praw = ap_int<PW>(nraw) * ap_int<PW>(ap_uint<VW>(inv.range(VW - 1, 0)));
        praw = praw << (W - 1 - p);
        ap_fixed<PW, PW - PF> prod;
        prod.range(PW - 1, 0) = praw.range(PW - 1, 0);
        ctx[e] = (draw == 0) ? typename CONFIG_T::context_t(0) : typename CONFIG_T::context_t(prod);
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void hwflow_cosformer(
    data_T data[CONFIG_T::seq_len * CONFIG_T::embed_dim], res_T res[CONFIG_T::seq_len * CONFIG_T::out_dim],
    typename CONFIG_T::proj_q::weight_t wq[CONFIG_T::embed_dim * CONFIG_T::num_heads * CONFIG_T::key_dim],
    typename CONFIG_T::proj_q::bias_t bq[CONFIG_T::num_heads * CONFIG_T::key_dim],
    typename CONFIG_T::proj_k::weight_t wk[CONFIG_T::embed_dim * CONFIG_T::num_heads * CONFIG_T::key_dim],
    typename CONFIG_T::proj_k::bias_t bk[CONFIG_T::num_heads * CONFIG_T::key_dim],
    typename CONFIG_T::proj_v::weight_t wv[CONFIG_T::embed_dim * CONFIG_T::num_heads * CONFIG_T::value_dim],
    typename CONFIG_T::proj_v::bias_t bv[CONFIG_T::num_heads * CONFIG_T::value_dim],
    typename CONFIG_T::proj_o::weight_t wo[CONFIG_T::num_heads * CONFIG_T::value_dim * CONFIG_T::out_dim],
    typename CONFIG_T::proj_o::bias_t bo[CONFIG_T::out_dim],
    const ap_uint<CONFIG_T::trig_t::width> cos_table[CONFIG_T::seq_len],
    const ap_uint<CONFIG_T::trig_t::width> sin_table[CONFIG_T::seq_len],
    const ap_uint<CONFIG_T::inv_table_t::width> inv_table[CONFIG_T::inv_table_size]) {
    static const unsigned T = CONFIG_T::seq_len, D = CONFIG_T::embed_dim, H = CONFIG_T::num_heads;
    static const unsigned DK = CONFIG_T::key_dim, DV = CONFIG_T::value_dim, O = CONFIG_T::out_dim;
    static const unsigned HK = H * DK, HV = H * DV;
    static const int TW = CONFIG_T::trig_t::width;
    typedef typename CONFIG_T::q_t q_t;
    typedef typename CONFIG_T::feat_t feat_t;
    typedef typename CONFIG_T::accum_t accum_t;

    feat_t qc[T * HK], qs[T * HK], kc[T * HK], ks[T * HK];
    q_t v[T * HV];
    typename CONFIG_T::context_t ctx[T * HV];
#pragma HLS ARRAY_PARTITION variable = qc complete
#pragma HLS ARRAY_PARTITION variable = qs complete
#pragma HLS ARRAY_PARTITION variable = kc complete
#pragma HLS ARRAY_PARTITION variable = ks complete
#pragma HLS ARRAY_PARTITION variable = v complete
#pragma HLS ARRAY_PARTITION variable = ctx complete

    q_t q[T * HK], k[T * HK];
#pragma HLS ARRAY_PARTITION variable = q complete
#pragma HLS ARRAY_PARTITION variable = k complete
    hwflow_qkv_projection<data_T, CONFIG_T>(data, q, k, v, wq, bq, wk, bk, wv, bv);

COSFORMER_FEATURES:
    for (unsigned t = 0; t < T; t++) {
        typename CONFIG_T::trig_t c, s;
        c.range(TW - 1, 0) = cos_table[t];
        s.range(TW - 1, 0) = sin_table[t];
        for (unsigned i = 0; i < HK; i++) {
#pragma HLS UNROLL
            q_t qp = q[t * HK + i] > 0 ? q[t * HK + i] : q_t(0); // ReLU feature map
            q_t kp = k[t * HK + i] > 0 ? k[t * HK + i] : q_t(0);
            qc[t * HK + i] = qp * c;
            qs[t * HK + i] = qp * s;
            kc[t * HK + i] = kp * c;
            ks[t * HK + i] = kp * s;
        }
    }

COSFORMER_HEADS:
    for (unsigned h = 0; h < H; h++) {
        typename CONFIG_T::kv_t kvc[DK * DV], kvs[DK * DV];
        typename CONFIG_T::ksum_t ksc[DK], kss[DK];
#pragma HLS ARRAY_PARTITION variable = kvc complete
#pragma HLS ARRAY_PARTITION variable = kvs complete
#pragma HLS ARRAY_PARTITION variable = ksc complete
#pragma HLS ARRAY_PARTITION variable = kss complete
    COSFORMER_STATE:
        for (unsigned d = 0; d < DK; d++) {
#pragma HLS PIPELINE II = CONFIG_T::reuse_factor
            for (unsigned e = 0; e < DV; e++) {
                accum_t ac = 0, as = 0;
                for (unsigned j = 0; j < T; j++) {
                    ac += kc[j * HK + h * DK + d] * v[j * HV + h * DV + e];
                    as += ks[j * HK + h * DK + d] * v[j * HV + h * DV + e];
                }
                kvc[d * DV + e] = ac;
                kvs[d * DV + e] = as;
            }
            accum_t sc = 0, ss = 0;
            for (unsigned j = 0; j < T; j++) {
                sc += kc[j * HK + h * DK + d];
                ss += ks[j * HK + h * DK + d];
            }
            ksc[d] = sc;
            kss[d] = ss;
        }
    COSFORMER_ROWS:
        for (unsigned i = 0; i < T; i++) {
#pragma HLS PIPELINE II = CONFIG_T::reuse_factor
            accum_t nacc[DV];
            accum_t dacc = 0;
#pragma HLS ARRAY_PARTITION variable = nacc complete
            for (unsigned e = 0; e < DV; e++) {
#pragma HLS UNROLL
                nacc[e] = 0;
            }
            for (unsigned d = 0; d < DK; d++) {
                feat_t a = qc[i * HK + h * DK + d], b = qs[i * HK + h * DK + d];
                for (unsigned e = 0; e < DV; e++) {
                    nacc[e] += a * kvc[d * DV + e];
                }
                dacc += a * ksc[d];
                for (unsigned e = 0; e < DV; e++) {
                    nacc[e] += b * kvs[d * DV + e];
                }
                dacc += b * kss[d];
            }
            typename CONFIG_T::num_t num[DV];
            typename CONFIG_T::context_t c[DV];
#pragma HLS ARRAY_PARTITION variable = num complete
#pragma HLS ARRAY_PARTITION variable = c complete
            for (unsigned e = 0; e < DV; e++) {
#pragma HLS UNROLL
                num[e] = nacc[e];
            }
            hwflow_cosformer_normalise<CONFIG_T>(num, typename CONFIG_T::den_t(dacc), c, inv_table);
            for (unsigned e = 0; e < DV; e++) {
#pragma HLS UNROLL
                ctx[i * HV + h * DV + e] = c[e];
            }
        }
    }

COSFORMER_OUT:
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
