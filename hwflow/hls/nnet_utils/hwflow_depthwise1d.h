// hwflow depthwise 1-D convolution (stride 1, depth multiplier 1), channels last, io_parallel.
//
// For each output frame t and channel c (mirrored bit for bit by hwflow/reference/conformer.py:
// depthwise_conv1d):
//   acc = (accum_t) bias[c]
//   for k in 0..K-1 with 0 <= t + k - pad_left < in_width:
//       acc += (accum_t)(weight[k * C + c] * data[(t + k - pad_left) * C + c])
//   res[t * C + c] = (res_T) acc
// Batch normalization after the convolution is folded into weight/bias by the QKeras layer
// (QDepthwiseConv1D(fold_batchnorm=True)), so the firmware stores exactly the quantized folded values.
// Latency: everything unrolled. Resource: the same loops pipelined at II = reuse_factor with the
// multipliers limited to ceil(out_width * C * K / reuse_factor).
#ifndef HWFLOW_DEPTHWISE1D_H_
#define HWFLOW_DEPTHWISE1D_H_

#include "ap_fixed.h"
#include "nnet_common.h"

namespace nnet {

struct hwflow_depthwise1d_config {
    static const unsigned in_width = 25;
    static const unsigned out_width = 25;
    static const unsigned n_chan = 16;
    static const unsigned filt_width = 7;
    static const unsigned pad_left = 3;
    static const unsigned reuse_factor = 1;
    static const unsigned multiplier_limit = 25 * 16 * 7;
    typedef ap_fixed<24, 8> accum_t;
    typedef ap_fixed<8, 3> weight_t;
    typedef ap_fixed<12, 5> bias_t;
};

template <class data_T, class res_T, typename CONFIG_T>
void hwflow_depthwise_conv1d(data_T data[CONFIG_T::in_width * CONFIG_T::n_chan],
                             res_T res[CONFIG_T::out_width * CONFIG_T::n_chan],
                             typename CONFIG_T::weight_t weights[CONFIG_T::filt_width * CONFIG_T::n_chan],
                             typename CONFIG_T::bias_t biases[CONFIG_T::n_chan]) {
#pragma HLS ARRAY_PARTITION variable = weights complete
#pragma HLS ARRAY_PARTITION variable = biases complete
// Latency: reuse_factor 1, no multiplier limit; Resource: II = reuse_factor, multipliers shared
#pragma HLS PIPELINE II = CONFIG_T::reuse_factor
#pragma HLS ALLOCATION operation instances = mul limit = CONFIG_T::multiplier_limit
DW_FRAMES:
    for (unsigned t = 0; t < CONFIG_T::out_width; t++) {
#pragma HLS UNROLL
    DW_CHANNELS:
        for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
#pragma HLS UNROLL
            typename CONFIG_T::accum_t acc = (typename CONFIG_T::accum_t)biases[c];
        DW_TAPS:
            for (unsigned k = 0; k < CONFIG_T::filt_width; k++) {
#pragma HLS UNROLL
                int ti = (int)t + (int)k - (int)CONFIG_T::pad_left;
                if (ti >= 0 && ti < (int)CONFIG_T::in_width) {
                    acc += (typename CONFIG_T::accum_t)(weights[k * CONFIG_T::n_chan + c] *
                                                        data[ti * CONFIG_T::n_chan + c]);
                }
            }
            res[t * CONFIG_T::n_chan + c] = (res_T)acc;
        }
    }
}

} // namespace nnet

#endif
