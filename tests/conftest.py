"""Shared fixtures of the test suite."""

import shutil

import pytest


@pytest.fixture
def hls_toolchain():
    """Return hwflow.hls, or skip when its hls4ml conversion or g++ (for the C simulation) is not available."""
    hls = pytest.importorskip("hwflow.hls")
    if not hasattr(hls, "convert") or shutil.which("g++") is None:
        pytest.skip("hwflow.hls.convert or g++ not available")
    return hls


@pytest.fixture(scope="session")
def tiny_conformer(tmp_path_factory):
    """A tiny conformer (9 frames -> 5, 6 mels, width 8) converted by hwflow.hls and exported with its C-sim trace:
    (hls model, its 40 inputs, neutral graph, folder with neutral/). One conversion for the RTL conformer tests."""
    import numpy as np

    import hwflow.hls as H
    from hwflow.rtl.demo import small_conformer
    from hwflow.rtl.export import export_model, load_neutral

    card, model = small_conformer(seed=0)
    rng = np.random.default_rng(0)
    x = rng.normal(-2, 3, (240, 9, 6)).astype("float32")
    tmp = tmp_path_factory.mktemp("cf_fold")
    hm = H.convert(card, model, output_dir=str(tmp / "hls"), calibration_data=x[:200])
    neutral = export_model(hm, x[200:], tmp / "neutral", name="tiny_conformer", trace=True)
    graph, _ = load_neutral(neutral)
    return hm, x[200:], graph, tmp
