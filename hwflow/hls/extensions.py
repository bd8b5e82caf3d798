"""Register every op of the hwflow.ops registry with hls4ml (Vivado and Vitis backends), once per process.

Only hls4ml's public extension API is used: ``register_keras_v2_layer_handler``, ``register_layer``,
``backend.register_template``, ``backend.register_source``, ``register_pass``/``backend.register_pass`` and
``update_flow``. The QKeras sequence fixes (hwflow.hls.ext.qkeras_seq) are passes on stock layers, and the exact
average pooling (hwflow.hls.ext.pooling) a handler to the stock layer: neither is an op.
"""

from __future__ import annotations

from ..ops import Op, all_ops, resolve

BACKENDS = ("Vivado", "Vitis")

_registered: dict[str, Op] = {}


def _register_pass(p, backends) -> None:
    """Register one optimizer pass: in a backend flow ('vivado:...') with that backend, else in a global flow."""
    from hls4ml.model.flow import update_flow
    from hls4ml.model.optimizer import register_pass

    cls = resolve(p.cls)
    if ":" in p.flow:
        owner = p.flow.split(":", 1)[0].lower()
        for b in backends:
            if b.name.lower() == owner:
                b.register_pass(p.name, cls, flow=p.flow)
        return
    register_pass(p.name, cls)
    update_flow(p.flow, add_optimizers=[p.name])


def register_op_with_hls4ml(op: Op, backends) -> None:
    """Register one op's IR layer, Keras-2 handler, templates, C++ headers and passes with hls4ml."""
    import hls4ml

    hls4ml.model.layers.register_layer(op.ir_class, resolve(op.ir_layer))
    if op.handler is not None:
        handler = resolve(op.handler)
        for cls in op.keras_classes:
            hls4ml.converters.register_keras_v2_layer_handler(cls, handler)
    for b in backends:
        for t in op.templates:
            b.register_template(resolve(t))
        for h in op.header_paths():
            b.register_source(h)
    for p in op.passes:
        _register_pass(p, backends)


def register_extensions() -> list[str]:
    """Register every op of the registry (and the QKeras sequence fixes) with hls4ml once; return the op names."""
    import hls4ml

    backends = [hls4ml.backends.get_backend(name) for name in BACKENDS]
    if "qkeras_seq" not in _registered:
        from .ext import qkeras_seq

        qkeras_seq.register(backends)
        _registered["qkeras_seq"] = None
    if "pooling" not in _registered:
        from .ext import pooling

        pooling.register()
        _registered["pooling"] = None
    for op in all_ops():
        if op.name not in _registered:
            register_op_with_hls4ml(op, backends)
            _registered[op.name] = op
    return sorted(k for k, v in _registered.items() if v is not None)
