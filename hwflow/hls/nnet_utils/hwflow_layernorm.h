// hwflow layer normalization and RMS normalization over the last axis, correct for any variance.
//
// Per token of n_in values (mirrored bit for bit by hwflow/reference/layernorm.py):
//   LayerNorm: mean = (mean_t)(sum_i x_i * inv_n);  d_i = x_i - mean (exact)
//   RMSNorm:   d_i = x_i
//   var  = (var_t)((var_t)(sum_i d_i^2 * inv_n) + eps)        sums exact in accum_t
//   var  = m * 2^b, m in [1,2):  r = (table_t)(T[j] + (T[j+1] - T[j]) * f), j.f = frac(m) * N,
//          T = 1/sqrt(m) (b even) or 1/sqrt(2m) (b odd) at N+1 points (linear interpolation)
//   inv_std = r >> ((b - odd)/2)   (or << when negative)  in inv_std_t  -> 1/sqrt(var) for ANY var
//   y_i = (res_T)((norm_t)(d_i * inv_std) * gamma_i + beta_i)
// The power-of-two pre-scaling means the table only spans one octave: no range limit (hls4ml's stock
// LayerNormalization table stops at variance 1).
#ifndef HWFLOW_LAYERNORM_H_
#define HWFLOW_LAYERNORM_H_

#include "ap_fixed.h"
#include "nnet_common.h"

namespace nnet {

struct hwflow_norm_config {
    static const unsigned n_in = 16;   // normalized (last) axis
    static const unsigned seq_len = 1; // tokens
    static const bool center = true;   // LayerNorm (true) or RMSNorm (false)
    static const unsigned table_bits = 10;
    static const unsigned table_size = 2 * 1025;
    static const unsigned reuse_factor = 1;
    typedef ap_fixed<32, 12> accum_t;
    typedef ap_fixed<24, 8> mean_t;
    typedef ap_ufixed<24, 10> var_t;
    typedef ap_ufixed<18, 1, AP_RND, AP_SAT> table_t;
    typedef ap_ufixed<32, 12> inv_std_t;
    typedef ap_fixed<20, 4, AP_RND, AP_SAT> norm_t;
    typedef ap_fixed<16, 6> scale_t;
    typedef ap_fixed<16, 6> bias_t;
    typedef ap_fixed<24, 8> diff_t;
    typedef ap_ufixed<24, 0> inv_n_t;
};

template <class data_T, class res_T, typename CONFIG_T>
void hwflow_norm_token(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_in],
                       const typename CONFIG_T::scale_t scale[CONFIG_T::n_in],
                       const typename CONFIG_T::bias_t bias[CONFIG_T::n_in],
                       const ap_uint<CONFIG_T::table_t::width> table[CONFIG_T::table_size]) {
#pragma HLS INLINE
    typedef typename CONFIG_T::accum_t accum_t;
    typedef typename CONFIG_T::diff_t diff_t;
    typedef typename CONFIG_T::var_t var_t;
    typedef typename CONFIG_T::inv_std_t inv_std_t;
    static const int VW = var_t::width, VF = var_t::width - var_t::iwidth;
    static const int TB = CONFIG_T::table_bits;
    const typename CONFIG_T::inv_n_t inv_n = CONFIG_T::inv_n;
    const var_t eps = CONFIG_T::epsilon;

    diff_t d[CONFIG_T::n_in];
#pragma HLS ARRAY_PARTITION variable = d complete
    if (CONFIG_T::center) {
        accum_t sum = 0;
        for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
#pragma HLS UNROLL
            sum += data[i];
        }
        typename CONFIG_T::mean_t mean = sum * inv_n;
        for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
#pragma HLS UNROLL
            d[i] = data[i] - mean;
        }
    } else {
        for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
#pragma HLS UNROLL
            d[i] = data[i];
        }
    }
    accum_t sq = 0;
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
#pragma HLS UNROLL
        sq += d[i] * d[i];
    }
    var_t var0 = sq * inv_n;
    var_t var = var0 + eps;

    // leading one of var: var = m * 2^b with b = pos - VF (a zero variance behaves like one LSB)
    ap_uint<VW> raw = var.range(VW - 1, 0);
    int pos = 0;
    for (int k = 1; k < VW; k++) {
#pragma HLS UNROLL
        if (raw[k])
            pos = k;
    }
    ap_uint<VW> mfrac = raw & ((ap_uint<VW>(1) << pos) - 1);
    // j.f = frac(m) * 2^TB: table index and the fraction for linear interpolation (one multiply per token)
    unsigned j;
    ap_ufixed<VW, 0> f = 0;
    if (pos > TB) {
        j = (unsigned)(mfrac >> (pos - TB));
        ap_uint<VW> rem = mfrac & ((ap_uint<VW>(1) << (pos - TB)) - 1);
        f.range(VW - 1, 0) = rem << (VW - (pos - TB));
    } else {
        j = ((unsigned)mfrac) << (TB - pos);
    }
    int b = pos - VF;
    int odd = b & 1;
    int e = (b - odd) / 2; // exact: b - odd is even
    typedef typename CONFIG_T::table_t table_t;
    static const int TW = table_t::width, TI = table_t::iwidth;
    table_t t0, t1; // ROM words are the raw bits of table_t values
    t0.range(TW - 1, 0) = table[odd * ((1 << TB) + 1) + j];
    t1.range(TW - 1, 0) = table[odd * ((1 << TB) + 1) + j + 1];
    ap_fixed<TW + 1, TI + 1> dt = ap_fixed<TW + 1, TI + 1>(t1) - ap_fixed<TW + 1, TI + 1>(t0);
    table_t r = t0 + dt * f;
    inv_std_t inv_std = r;
    if (e >= 0)
        inv_std = inv_std >> e;
    else
        inv_std = inv_std << (-e);

    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
#pragma HLS UNROLL
        typename CONFIG_T::norm_t n = d[i] * inv_std;
        res[i] = n * scale[i] + bias[i];
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void hwflow_norm(data_T data[CONFIG_T::seq_len * CONFIG_T::n_in], res_T res[CONFIG_T::seq_len * CONFIG_T::n_in],
                 const typename CONFIG_T::scale_t scale[CONFIG_T::n_in],
                 const typename CONFIG_T::bias_t bias[CONFIG_T::n_in],
                 const ap_uint<CONFIG_T::table_t::width> table[CONFIG_T::table_size]) {
#pragma HLS ARRAY_PARTITION variable = scale complete
#pragma HLS ARRAY_PARTITION variable = bias complete
NORM_TOKENS:
    for (unsigned t = 0; t < CONFIG_T::seq_len; t++) {
#pragma HLS PIPELINE II = CONFIG_T::reuse_factor
        data_T in[CONFIG_T::n_in];
        res_T out[CONFIG_T::n_in];
#pragma HLS ARRAY_PARTITION variable = in complete
#pragma HLS ARRAY_PARTITION variable = out complete
        for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
#pragma HLS UNROLL
            in[i] = data[t * CONFIG_T::n_in + i];
        }
        hwflow_norm_token<data_T, res_T, CONFIG_T>(in, out, scale, bias, table);
        for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
#pragma HLS UNROLL
            res[t * CONFIG_T::n_in + i] = out[i];
        }
    }
}

} // namespace nnet

#endif
