"""Open RTL route, main-venv side: neutral-file format, ap_fixed casts, the missing-environment error (no .venv-rtl
needed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwflow.rtl import ENV_HINT, rtl_python
from hwflow.rtl.export import FORMAT, load_neutral, quantize_np
from hwflow.util import HwflowError

ROOT = Path(__file__).resolve().parents[1]


def T(ctype_w, i, signed=True, rnd="TRN", sat="WRAP"):
    return {
        "ctype": "x",
        "signed": signed,
        "width": ctype_w,
        "integer": i,
        "frac": ctype_w - i,
        "rounding": rnd,
        "saturation": sat,
        "sat_bits": 0,
    }


def test_quantize_modes_match_ap_fixed_rules():
    t = T(8, 4)  # step 1/16, range [-8, 8)
    x = np.array([0.03125, 0.09375, -0.03125, -0.09375, 7.99, -8.5, 9.0])
    # TRN floors, WRAP wraps modulo 16
    np.testing.assert_array_equal(quantize_np(x, t), [0.0, 0.0625, -0.0625, -0.125, 7.9375, 7.5, -7.0])
    # RND: half up; RND_CONV: half to even; RND_ZERO: half toward zero; RND_INF: half away; RND_MIN_INF: half down
    h = np.array([0.03125, 0.09375, -0.03125, -0.09375])  # all exact ties at 1/32
    np.testing.assert_array_equal(quantize_np(h, {**t, "rounding": "RND"}), [0.0625, 0.125, 0.0, -0.0625])
    np.testing.assert_array_equal(quantize_np(h, {**t, "rounding": "RND_CONV"}), [0.0, 0.125, 0.0, -0.125])
    np.testing.assert_array_equal(quantize_np(h, {**t, "rounding": "RND_ZERO"}), [0.0, 0.0625, 0.0, -0.0625])
    np.testing.assert_array_equal(quantize_np(h, {**t, "rounding": "RND_INF"}), [0.0625, 0.125, -0.0625, -0.125])
    np.testing.assert_array_equal(quantize_np(h, {**t, "rounding": "RND_MIN_INF"}), [0.0, 0.0625, -0.0625, -0.125])
    np.testing.assert_array_equal(quantize_np(np.array([-0.03, -0.07]), {**t, "rounding": "TRN_ZERO"}), [0.0, -0.0625])
    # saturation
    np.testing.assert_array_equal(quantize_np(np.array([9.0, -9.0]), {**t, "saturation": "SAT"}), [7.9375, -8.0])
    np.testing.assert_array_equal(quantize_np(np.array([9.0, -9.0]), {**t, "saturation": "SAT_SYM"}), [7.9375, -7.9375])
    np.testing.assert_array_equal(
        quantize_np(np.array([9.0, -9.0, 1.0]), {**t, "saturation": "SAT_ZERO"}), [0.0, 0.0, 1.0]
    )
    u = T(8, 3, signed=False, rnd="RND_CONV", sat="SAT")
    np.testing.assert_array_equal(
        quantize_np(np.array([-1.0, 8.5, 0.015625, 0.046875]), u), [0.0, 7.96875, 0.0, 0.0625]
    )


def test_precision_dict_from_hls4ml_types():
    from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType, RoundingMode, SaturationMode

    from hwflow.rtl.export import precision_dict

    d = precision_dict(FixedPrecisionType(16, 6, True, RoundingMode.RND, SaturationMode.SAT))
    assert d == {
        "ctype": "ap_fixed<16,6,AP_RND,AP_SAT>",
        "signed": True,
        "width": 16,
        "integer": 6,
        "frac": 10,
        "rounding": "RND",
        "saturation": "SAT",
        "sat_bits": 0,
    }
    d = precision_dict(FixedPrecisionType(8, 3, False))
    assert (d["signed"], d["rounding"], d["saturation"], d["frac"]) == (False, "TRN", "WRAP", 5)
    d = precision_dict(IntegerPrecisionType(5, False))
    assert (d["width"], d["integer"], d["frac"]) == (5, 5, 0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A stock QKeras sequence model converted by hls4ml and exported with C-sim outputs and traces."""
    from hwflow.rtl.demo import convert_stock, sample_inputs, tiny_qkeras
    from hwflow.rtl.export import export_model

    tmp = tmp_path_factory.mktemp("rtl_export")
    model = tiny_qkeras("seq")
    from hwflow.hls import compile_model

    hls_model = convert_stock(model, str(tmp / "hls"))
    hls_model.config.trace_output = True
    for layer in hls_model.get_layers():
        layer.set_attr("trace", True)
    hls_model = compile_model(hls_model)
    x = sample_inputs(model, 40)
    out = export_model(hls_model, x, tmp / "neutral", name="tiny_seq")
    return out, x, hls_model


def test_neutral_file_describes_the_graph(exported):
    out, x, hls_model = exported
    graph, arrays = load_neutral(out)
    assert graph["format"] == FORMAT and graph["model"] == "tiny_seq"
    ops = {lay["name"]: lay["op"] for lay in graph["layers"]}
    assert ops["x"] == "input" and ops["d1"] == "dense" and ops["r1"] == "activation"
    assert ops["res"] == "merge" and ops["pool"] == "global_pool1d" and ops["head"] == "dense"
    assert graph["unsupported_layers"] == []
    by = {lay["name"]: lay for lay in graph["layers"]}
    # every type is a full ap_fixed description; the quantized_relu keeps its RND_CONV/SAT modes
    r1 = by["r1"]["types"]["result"]
    assert r1["ctype"] == "ap_ufixed<8,3,AP_RND_CONV,AP_SAT>" and r1["frac"] == 5
    assert by["res"]["inputs"] == ["r1", "r2"]
    # weights hold exactly the values the C++ holds: representable in the weight type
    d1 = by["d1"]
    w = arrays[d1["arrays"]["weight"]]
    assert w.shape == (4, 6)
    wt = d1["types"]["weight"]
    np.testing.assert_array_equal(quantize_np(w, wt), w)
    # samples: inputs cast to the input type, C-sim outputs and a trace per layer
    xi = arrays[graph["samples"]["inputs"]["x"]]
    assert xi.shape == (40, 3, 4)
    np.testing.assert_array_equal(xi, quantize_np(x.astype(np.float64), graph["tensors"]["x"]["type"]))
    assert not np.array_equal(xi, x)  # the cast really happened (random inputs are not on the grid)
    y = arrays[graph["samples"]["csim"]["head"]]
    assert y.shape == (40, 3)
    np.testing.assert_array_equal(
        y, np.asarray(hls_model.predict(np.ascontiguousarray(x.astype(np.float64)))).reshape(40, 3)
    )
    assert set(graph["samples"]["trace"]) >= {"d1", "r1", "d2", "r2", "res", "pool", "head"}
    np.testing.assert_array_equal(arrays[graph["samples"]["trace"]["head"]], y)


def test_relu_trace_follows_the_declared_cast(exported):
    """The numpy cast of the exporter reproduces hls4ml's relu layer from its input trace (RND_CONV + SAT)."""
    out, _, _ = exported
    graph, arrays = load_neutral(out)
    by = {lay["name"]: lay for lay in graph["layers"]}
    d1 = arrays[graph["samples"]["trace"]["d1"]]
    r1 = arrays[graph["samples"]["trace"]["r1"]]
    np.testing.assert_array_equal(quantize_np(np.maximum(d1, 0), by["r1"]["types"]["result"]), r1)


def test_load_neutral_rejects_missing_or_foreign(tmp_path):
    with pytest.raises(HwflowError, match="neutral model file missing"):
        load_neutral(tmp_path)
    (tmp_path / "graph.json").write_text(json.dumps({"format": "other"}))
    np.savez(tmp_path / "data.npz", a=np.zeros(1))
    with pytest.raises(HwflowError, match="not a hwflow-neutral"):
        load_neutral(tmp_path)


def test_missing_rtl_env_names_the_make_target(tmp_path, monkeypatch):
    monkeypatch.delenv("HWFLOW_RTL_PYTHON", raising=False)
    with pytest.raises(HwflowError) as e:
        rtl_python(tmp_path)
    assert "RTL environment missing: run `make rtl-env`" in str(e.value)


def test_cli_reports_missing_rtl_env(tmp_path):
    """`hwflow rtl MODEL` in a project without .venv-rtl fails with one line naming `make rtl-env`, writing nothing."""
    (tmp_path / "models").mkdir()
    shutil.copy(ROOT / "models" / "jet_transformer.yaml", tmp_path / "models")
    env = {k: v for k, v in __import__("os").environ.items() if k != "HWFLOW_RTL_PYTHON"}
    env["HWFLOW_ROOT"] = str(tmp_path)
    p = subprocess.run(
        [sys.executable, "-m", "hwflow.cli", "rtl", "jet_transformer"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 1
    assert ENV_HINT.split(":")[0] in p.stderr and "make rtl-env" in p.stderr
    assert not (tmp_path / "reports").exists() and not (tmp_path / "firmware").exists()
