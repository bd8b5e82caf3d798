"""The numpy ap_fixed model: parsing, rounding and overflow modes."""

import numpy as np
import pytest

from hwflow.reference.fixed import FixedType, parse_type, quantize, quantize_raw
from hwflow.util import HwflowError


def test_parse_types():
    assert parse_type("ap_fixed<16,6>") == FixedType(16, 6, True)
    assert parse_type("ap_ufixed<18,1,AP_RND,AP_SAT>") == FixedType(18, 1, False, "AP_RND", "AP_SAT")
    assert parse_type("fixed<8,3,RND_CONV,SAT,0>") == FixedType(8, 3, True, "AP_RND_CONV", "AP_SAT")
    assert parse_type("ap_int<8>") == FixedType(8, 8, True)
    with pytest.raises(HwflowError):
        parse_type("float")


def test_rounding_modes_on_ties():
    x = np.array([0.5, 1.5, -0.5, -1.5, 0.25, -0.75])  # in units of the LSB of ap_fixed<8,8>
    t = "ap_fixed<8,8,{},AP_SAT>"
    assert quantize(x, t.format("AP_TRN")).tolist() == [0, 1, -1, -2, 0, -1]
    assert quantize(x, t.format("AP_RND")).tolist() == [1, 2, 0, -1, 0, -1]
    assert quantize(x, t.format("AP_RND_CONV")).tolist() == [0, 2, 0, -2, 0, -1]
    assert quantize(x, t.format("AP_RND_ZERO")).tolist() == [0, 1, 0, -1, 0, -1]
    assert quantize(x, t.format("AP_RND_INF")).tolist() == [1, 2, -1, -2, 0, -1]


def test_overflow_modes():
    assert quantize([8.0, -9.0], "ap_fixed<4,4,AP_TRN,AP_SAT>").tolist() == [7, -8]
    assert quantize([8.0, -9.0], "ap_fixed<4,4>").tolist() == [-8, 7]  # wraps
    assert quantize([-1.0, 300.0], "ap_ufixed<8,8,AP_TRN,AP_SAT>").tolist() == [0, 255]
    assert quantize([-8.0], "ap_fixed<4,4,AP_TRN,AP_SAT_SYM>").tolist() == [-7]


def test_quantize_raw_matches_float_path_and_is_exact_beyond_53_bits():
    rng = np.random.default_rng(0)
    raw = rng.integers(-(2**40), 2**40, 1000)
    t = parse_type("ap_fixed<20,4,AP_RND_CONV,AP_SAT>")
    assert np.array_equal(quantize_raw(raw, 36, t), np.round(quantize(raw / 2.0**36, t) * 2**16).astype(np.int64))
    big = (1 << 70) + (1 << 10) + 1  # needs 71 bits
    big = (1 << 70) + 3  # 71 bits: a double cannot hold it
    r = quantize_raw(np.array([big], dtype=object), 1, "ap_ufixed<80,80,AP_RND,AP_SAT>")
    assert int(r[0]) == (big >> 1) + 1  # ...1.1 rounds up
