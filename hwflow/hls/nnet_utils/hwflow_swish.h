// hwflow swish / SiLU: y = x * sigmoid(x), sigmoid from a look-up table.
//
// Arithmetic (mirrored bit for bit by hwflow/reference/conformer.py: SigmoidTable, swish):
//   k     = (ap_fixed<log2_size, log2_size, AP_TRN, AP_SAT>)(x * 2^log2_scale)   floor, clamp to [-N/2, N/2-1]
//   s     = table[k + N/2]                  N = table_size entries over [-R, R), 2^log2_scale = N / 2R
//   y     = (res_T)(x * s)                  exact product, one cast with res_T's rounding/overflow
// The table (sigmoid at bin centres, already cast to table_t) is computed in Python and written into
// the layer's config as raw table_t bits (an ap_uint ROM, reinterpreted with .range()), so C simulation
// and the numpy reference use the same numbers.
#ifndef HWFLOW_SWISH_H_
#define HWFLOW_SWISH_H_

#include "ap_fixed.h"
#include "nnet_common.h"

namespace nnet {

struct hwflow_sigmoid_lut_config {
    static const unsigned table_size = 1024; // N, a power of two
    static const int log2_size = 10;         // log2(N)
    static const int log2_scale = 6;         // log2(N / 2R)
    typedef ap_ufixed<12, 1, AP_RND, AP_SAT> table_t;
};

struct hwflow_swish_config : hwflow_sigmoid_lut_config {
    static const unsigned n_in = 16;
    static const unsigned reuse_factor = 1;
    static const unsigned multiplier_limit = 16;
};

// Table index of x: floor(x * N / 2R) clamped to [-N/2, N/2 - 1], plus N/2.
template <class data_T, typename CONFIG_T>
inline unsigned hwflow_sigmoid_index(data_T x) {
#pragma HLS INLINE
    // one-bit constant of value 2^log2_scale: the product with x is exact (a shift of the binary point)
    ap_ufixed<1, CONFIG_T::log2_scale + 1> scale = 0;
    scale[0] = 1;
    ap_fixed<CONFIG_T::log2_size, CONFIG_T::log2_size, AP_TRN, AP_SAT> k = x * scale;
    return (unsigned)(k.to_int() + (int)(CONFIG_T::table_size / 2));
}

template <class data_T, class res_T, typename CONFIG_T>
void hwflow_swish(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_in]) {
// Latency: reuse_factor 1, no multiplier limit; Resource: II = reuse_factor, multipliers shared
#pragma HLS PIPELINE II = CONFIG_T::reuse_factor
#pragma HLS ALLOCATION operation instances = mul limit = CONFIG_T::multiplier_limit
SWISH_LOOP:
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
#pragma HLS UNROLL
        data_T x = data[i];
        typename CONFIG_T::table_t s;
        s.range() = CONFIG_T::table[hwflow_sigmoid_index<data_T, CONFIG_T>(x)];
        res[i] = (res_T)(x * s);
    }
}

} // namespace nnet

#endif
