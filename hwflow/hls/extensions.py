"""The list of hwflow's hls4ml extension modules and one idempotent ``register_extensions()``.

Each module under hwflow/hls/ext/ defines ``register(backends)`` that registers its IR layer, Keras-2
handler, templates, passes and C++ header through hls4ml's public extension API. To add one, append its
module name to EXTENSIONS.
"""

from __future__ import annotations

import importlib

EXTENSIONS = [
    "hwflow.hls.ext.qkeras_seq",
    "hwflow.hls.ext.softmax",
    "hwflow.hls.ext.norm",
    "hwflow.hls.ext.mha",
    "hwflow.hls.ext.linformer",  # attention variants (issue 13)
    "hwflow.hls.ext.cosformer",
    "hwflow.hls.ext.swish",  # conformer: swish/SiLU, GLU, depthwise conv1d with folded batch norm
    "hwflow.hls.ext.glu",
    "hwflow.hls.ext.depthwise1d",
]

_registered: set = set()


def register_extensions() -> list[str]:
    """Register every extension with hls4ml (Vivado and Vitis backends) once; return the registered module names."""
    import hls4ml

    backends = [hls4ml.backends.get_backend(name) for name in ("Vivado", "Vitis")]
    for mod_name in EXTENSIONS:
        if mod_name in _registered:
            continue
        importlib.import_module(mod_name).register(backends)
        _registered.add(mod_name)
    return sorted(_registered)
