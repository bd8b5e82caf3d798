// hwflow GLU (gated linear unit) over the channel axis: for each token t and channel c < C,
//   y[t, c] = (res_T)(a * s),  a = x[t, c],  s = sigmoid_table[index(x[t, C + c])]
// with the sigmoid table and index of hwflow_swish.h (input has 2C channels, output C).
// Mirrored bit for bit by hwflow/reference/conformer.py: glu.
#ifndef HWFLOW_GLU_H_
#define HWFLOW_GLU_H_

#include "hwflow_swish.h"

namespace nnet {

struct hwflow_glu_config : hwflow_sigmoid_lut_config {
    static const unsigned n_tokens = 1;
    static const unsigned n_chan = 8; // output channels C (input has 2C)
    static const unsigned reuse_factor = 1;
    static const unsigned multiplier_limit = 8;
};

template <class data_T, class res_T, typename CONFIG_T>
void hwflow_glu(data_T data[CONFIG_T::n_tokens * 2 * CONFIG_T::n_chan],
                res_T res[CONFIG_T::n_tokens * CONFIG_T::n_chan]) {
// Latency: reuse_factor 1, no multiplier limit; Resource: II = reuse_factor, multipliers shared
#pragma HLS PIPELINE II = CONFIG_T::reuse_factor
#pragma HLS ALLOCATION operation instances = mul limit = CONFIG_T::multiplier_limit
GLU_TOKENS:
    for (unsigned t = 0; t < CONFIG_T::n_tokens; t++) {
#pragma HLS UNROLL
    GLU_CHANNELS:
        for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
#pragma HLS UNROLL
            data_T a = data[t * 2 * CONFIG_T::n_chan + c];
            data_T b = data[t * 2 * CONFIG_T::n_chan + CONFIG_T::n_chan + c];
            typename CONFIG_T::table_t s;
            s.range() = CONFIG_T::table[hwflow_sigmoid_index<data_T, CONFIG_T>(b)];
            res[t * CONFIG_T::n_chan + c] = (res_T)(a * s);
        }
    }
}

} // namespace nnet

#endif
