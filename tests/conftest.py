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
