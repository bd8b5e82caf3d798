"""hwflow.hls: QKeras model -> hls4ml project with hwflow's attention, softmax and normalization extension layers.

Public API: ``convert(card, model, output_dir=None, calibration_data=None)``, ``hls_config(card, model, ...)``,
``compile_model(hls_model)``, ``trace(hls_model, x)``, ``firmware(card)``, ``register_extensions()``; CLI ``hwflow firmware MODEL``.
"""
from __future__ import annotations


def convert(card, model, output_dir=None, calibration_data=None):
    """Return the hls4ml ModelGraph of ``model`` configured from the card."""
    from .convert import convert as _convert

    return _convert(card, model, output_dir=output_dir, calibration_data=calibration_data)


def hls_config(card, model, calibration_data=None) -> dict:
    """Return the hls4ml config dict hwflow uses for ``model`` (granularity 'name')."""
    from .convert import hls_config as _hls_config

    return _hls_config(card, model, calibration_data)


def compile_model(hls_model):
    """Return ``hls_model`` compiled (C simulation library built); HwflowError if g++ is missing."""
    from .convert import compile_model as _compile

    return _compile(hls_model)


def trace(hls_model, x):
    """Return (outputs, {layer: outputs}) of the compiled C simulation on ``x`` (no recompile after compile_model)."""
    from .convert import trace as _trace

    return _trace(hls_model, x)


def firmware(card, model=None, calibration_data=None, test_inputs=None):
    """Write firmware/<name>/ (complete HLS project + test bench) and return its path."""
    from .convert import firmware as _firmware

    return _firmware(card, model=model, calibration_data=calibration_data, test_inputs=test_inputs)


def register_extensions():
    """Register hwflow's hls4ml extensions (idempotent); return the registered module names."""
    from .extensions import register_extensions as _reg

    return _reg()


def _cmd_firmware(args) -> int:
    from ..config import load_card

    card = load_card(args.model)
    path = firmware(card)
    print(f"hwflow: HLS project written to {path}")
    return 0


def add_cli(subparsers) -> None:
    """Add the `hwflow firmware MODEL` sub-command."""
    p = subparsers.add_parser("firmware", help="write the HLS project of a trained model to firmware/<name>/")
    p.add_argument("model", help="model card name (models/<name>.yaml) or path")
    p.set_defaults(func=_cmd_firmware)
