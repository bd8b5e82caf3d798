"""hwflow.hls: QKeras model -> hls4ml project with hwflow's attention, softmax and normalization extension layers.

Public API: ``convert(card, model, output_dir=None, calibration_data=None)``, ``hls_config(card, model, ...)``,
``compile_model(hls_model) -> CSim``, ``trace(csim, x)``, ``csim_outputs(csim, x, trace_layers)``,
``firmware(card)`` (the one conversion, into firmware/<m>/), ``design(card) -> CSim`` (the compiled C simulation of
firmware/<m>/, rebuilt first when missing or stale; every later stage runs it), ``register_extensions()``,
``calibrate(model, x)``, ``supported_layers()``; CLI ``hwflow firmware MODEL``.
hls4ml/TensorFlow are imported inside the functions only.
"""

from __future__ import annotations

# the function names shadow the submodule name 'convert' on purpose: hwflow.hls.convert(...) is the API
from .convert import (  # noqa: F401
    calibrate,
    compile_model,
    convert,
    csim_outputs,
    design,
    ensure_firmware,
    firmware,
    hls_config,
    stale_reason,
    supported_layers,
    trace,
)
from .extensions import register_extensions  # noqa: F401
from .project import CSim, source_sha256  # noqa: F401


def _cmd_firmware(args) -> int:
    from ..config import load_card, parse_overrides

    card = load_card(args.model, parse_overrides(args.overrides))
    path = firmware(card, calibration=not args.no_calibration)
    print(f"hwflow: HLS project written to {path}")
    return 0


def add_cli(subparsers) -> None:
    """Add the `hwflow firmware MODEL` sub-command."""
    p = subparsers.add_parser("firmware", help="write the HLS project of a trained model to firmware/<name>/")
    p.add_argument("model", help="model card name (models/<name>.yaml) or path")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="KEY=VALUE",
        help="override a card key, e.g. --set hls.reuse_factor=4 (repeatable)",
    )
    p.add_argument(
        "--no-calibration",
        action="store_true",
        help="convert without the dataset: softmax/attention ranges and the input type from defaults only",
    )
    p.set_defaults(func=_cmd_firmware)
