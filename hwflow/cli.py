"""The `hwflow` command line: thin argument parsing; every stage lives in its own module.

Each stage module exposes ``add_cli(subparsers)`` which adds its sub-command and sets ``func``;
heavy libraries (TensorFlow, hls4ml, Pythia) are imported only inside the stage functions, so
``hwflow --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .util import HwflowError

# stage modules, in data-flow order
STAGES = [
    "hwflow.data",
    "hwflow.train",
    "hwflow.hls",
    "hwflow.verify",
    "hwflow.synth",
    "hwflow.rtl",
    "hwflow.sweep",
    "hwflow.explore",
    "hwflow.report",
    "hwflow.bench",
]


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level argument parser with every available stage registered."""
    parser = argparse.ArgumentParser(
        prog="hwflow", description="Quantized transformers/conformers to FPGA firmware via hls4ml."
    )
    parser.add_argument("--version", action="version", version=f"hwflow {__import__('hwflow').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in STAGES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # stage not present in this build
            raise
        if hasattr(mod, "add_cli"):
            mod.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up banners, before TF is imported

    # known-harmless library chatter that would bury hwflow's own messages (QKeras quantizers are not
    # Keras constraints; HDF5 is the format QKeras models load from in Keras 2)
    for msg in (
        r"The `keras.constraints.serialize\(\)` API",
        r"You are saving your model as an HDF5 file",
        r"The initializer \w+ is unseeded",
    ):
        warnings.filterwarnings("ignore", message=msg)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except HwflowError as e:
        print(f"hwflow: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hwflow: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
