// hwflow softmax: max-subtracted (stable) softmax with exact-index exp tables and a normalised reciprocal.
//
// Arithmetic (mirrored bit for bit by hwflow/reference/softmax.py):
//   d_i   = (inp_norm_t)(x_max - x_i)                      unsigned, rounds/saturates per inp_norm_t
//   e_i   = exp_hi[d_i.raw >> lo_bits] * exp_lo[d_i.raw & lo_mask]   cast to exp_table_t
//           (two tables cover every bit of d_i, so distinct inputs never share an entry -> no argmax ties)
//   s     = sum_i e_i                                      exact in sum_t (s >= 1 since e_max == 1)
//   s     = m * 2^p, m in [1,2);  inv = (inv_table_t)(T[j] + (T[j+1] - T[j]) * r)  with j.r = frac(m) * 2^inv_bits
//           (T[j] = 1/(1 + j/2^inv_bits); linear interpolation, one multiply per row)
//   y_i   = (res_T)( (e_i * inv) >> p )                    integer shift of the exact product (truncates)
// Tables are computed in Python (exact fixed-point literals) and passed in as ROM arrays.
#ifndef HWFLOW_SOFTMAX_H_
#define HWFLOW_SOFTMAX_H_

#include "ap_fixed.h"
#include "nnet_common.h"

namespace nnet {

struct hwflow_softmax_config {
    static const unsigned n_in = 8;    // row length
    static const unsigned n_rows = 1;  // independent rows (attention: one per query)
    static const unsigned lo_bits = 0; // bits of d addressed by the fine table
    static const unsigned exp_hi_size = 1024;
    static const unsigned exp_lo_size = 1;
    static const unsigned inv_bits = 10; // reciprocal table addresses 2^inv_bits + 1 entries
    static const unsigned inv_table_size = 1025;
    static const unsigned reuse_factor = 1;
    typedef ap_ufixed<14, 4, AP_RND, AP_SAT> inp_norm_t;
    typedef ap_ufixed<18, 1, AP_RND, AP_SAT> exp_table_t;
    typedef ap_ufixed<18, 1, AP_RND, AP_SAT> inv_table_t;
    typedef ap_ufixed<22, 5> sum_t;
};

template <class data_T, class res_T, typename CONFIG_T>
void hwflow_softmax_row(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_in],
                        const ap_uint<CONFIG_T::exp_table_t::width> exp_hi[CONFIG_T::exp_hi_size],
                        const ap_uint<CONFIG_T::exp_table_t::width> exp_lo[CONFIG_T::exp_lo_size],
                        const ap_uint<CONFIG_T::inv_table_t::width> inv_table[CONFIG_T::inv_table_size]) {
#pragma HLS INLINE
    typedef typename CONFIG_T::inp_norm_t norm_t;
    typedef typename CONFIG_T::exp_table_t exp_t;
    typedef typename CONFIG_T::inv_table_t inv_t;
    typedef typename CONFIG_T::sum_t sum_t;
    static const int NW = norm_t::width;
    static const int EW = exp_t::width, EI = exp_t::iwidth;
    static const int VW = inv_t::width, VI = inv_t::iwidth;
    static const int SW = sum_t::width, SI = sum_t::iwidth, SF = SW - SI;

    data_T x_max = data[0];
SOFTMAX_MAX:
    for (unsigned i = 1; i < CONFIG_T::n_in; i++) {
#pragma HLS UNROLL
        if (data[i] > x_max)
            x_max = data[i];
    }

    exp_t e[CONFIG_T::n_in];
#pragma HLS ARRAY_PARTITION variable = e complete
    sum_t s = 0;
SOFTMAX_EXP:
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
#pragma HLS UNROLL
        norm_t d = x_max - data[i];
        ap_uint<NW> raw = d.range(NW - 1, 0);
        // ROM words are the raw bits of exp_table_t values
        exp_t eh, el;
        if (CONFIG_T::lo_bits > 0) {
            ap_uint<NW> hi = raw >> CONFIG_T::lo_bits;
            ap_uint<NW> lo = raw & ap_uint<NW>(CONFIG_T::exp_lo_size - 1);
            eh.range(EW - 1, 0) = exp_hi[hi];
            el.range(EW - 1, 0) = exp_lo[lo];
            e[i] = eh * el;
        } else {
            eh.range(EW - 1, 0) = exp_hi[raw];
            e[i] = eh;
        }
        s += e[i];
    }

    // s = m * 2^p with m in [1, 2): the reciprocal table covers one octave with uniform relative error
    ap_uint<SW> sraw = s.range(SW - 1, 0);
    int p = 0;
SOFTMAX_LEAD:
    for (int b = 1; b < SI; b++) {
#pragma HLS UNROLL
        if (sraw[SF + b])
            p = b;
    }
    ap_uint<SW> m = sraw >> p;
    ap_uint<SF + 1> mfrac = m & ((ap_uint<SW>(1) << SF) - 1);
    // 1/m by linear interpolation between the two nearest table entries (one multiply per row)
    static const int SH = SF - (int)CONFIG_T::inv_bits;
    static const int RB = SH > 0 ? SH : 1;
    unsigned idx;
    ap_ufixed<RB, 0> f = 0;
    if (SH > 0) {
        idx = (unsigned)(mfrac >> SH);
        ap_uint<RB> rem = mfrac & ((ap_uint<SF + 1>(1) << SH) - 1);
        f.range(RB - 1, 0) = rem;
    } else {
        idx = ((unsigned)mfrac) << (-SH);
    }
    inv_t t0, t1;
    t0.range(VW - 1, 0) = inv_table[idx];
    t1.range(VW - 1, 0) = inv_table[idx + 1];
    ap_fixed<VW + 1, VI + 1> dt = ap_fixed<VW + 1, VI + 1>(t1) - ap_fixed<VW + 1, VI + 1>(t0);
    inv_t inv = t0 + dt * f;

SOFTMAX_NORM:
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
#pragma HLS UNROLL
        ap_uint<EW + VW> praw = ap_uint<EW + VW>(e[i].range(EW - 1, 0)) * ap_uint<EW + VW>(inv.range(VW - 1, 0));
        praw = praw >> p;
        ap_ufixed<EW + VW, EI + VI> prod;
        prod.range(EW + VW - 1, 0) = praw;
        res[i] = prod;
    }
}

// Softmax over the last axis of an (n_rows, n_in) array.
template <class data_T, class res_T, typename CONFIG_T>
void hwflow_softmax(data_T data[CONFIG_T::n_rows * CONFIG_T::n_in], res_T res[CONFIG_T::n_rows * CONFIG_T::n_in],
                    const ap_uint<CONFIG_T::exp_table_t::width> exp_hi[CONFIG_T::exp_hi_size],
                    const ap_uint<CONFIG_T::exp_table_t::width> exp_lo[CONFIG_T::exp_lo_size],
                    const ap_uint<CONFIG_T::inv_table_t::width> inv_table[CONFIG_T::inv_table_size]) {
SOFTMAX_ROWS:
    for (unsigned r = 0; r < CONFIG_T::n_rows; r++) {
#pragma HLS PIPELINE II = CONFIG_T::reuse_factor
        data_T row_in[CONFIG_T::n_in];
        res_T row_out[CONFIG_T::n_in];
#pragma HLS ARRAY_PARTITION variable = row_in complete
#pragma HLS ARRAY_PARTITION variable = row_out complete
        for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
#pragma HLS UNROLL
            row_in[i] = data[r * CONFIG_T::n_in + i];
        }
        hwflow_softmax_row<data_T, res_T, CONFIG_T>(row_in, row_out, exp_hi, exp_lo, inv_table);
        for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
#pragma HLS UNROLL
            res[r * CONFIG_T::n_in + i] = row_out[i];
        }
    }
}

} // namespace nnet

#endif
