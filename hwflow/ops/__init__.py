"""The registry of hwflow's extension ops: one record per op, read by every stage.

An op is one fixed-point function that hwflow adds to hls4ml (softmax, LayerNorm/RMSNorm, multi-head
attention, swish, GLU, depthwise conv1d, ...). Its record (:class:`Op`) names every piece of it, each as a
``"module:attribute"`` reference so that this module imports nothing heavy (the RTL environment has no
hls4ml or TensorFlow, the Keras environment no da4ml):

- the Keras/QKeras layer(s) a user puts in a model, and the Keras-2 parser handler that reads them;
- the hls4ml IR layer, its config/function templates, optimizer passes, and the C++ header(s);
- the numpy reference (hwflow/reference/) that defines the arithmetic bit for bit;
- the RTL tracer (hwflow/rtl/) that builds the same arithmetic in da4ml;
- hooks of the conversion stage: per-layer hls4ml config defaults and calibration probes.

The stages only iterate over :func:`all_ops`: hwflow.hls.extensions registers the hls4ml pieces,
hwflow.hls.convert derives the supported-layer list and the per-op config, hwflow.rtl.export maps IR classes
to neutral ops and hwflow.rtl.trace_graph dispatches to the tracers. The records themselves are in
hwflow/ops/catalog.py; docs/adding_an_op.md is the recipe for a new one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

NNET_UTILS = Path(__file__).resolve().parents[1] / "hls" / "nnet_utils"


@dataclass(frozen=True)
class Pass:
    """An hls4ml optimizer pass of an op: registered under ``name`` and added to ``flow``.

    ``flow`` is a backend-independent flow (e.g. ``"convert"``, ``"parse_qonnx"``) or a backend flow
    (``"vivado:specific_types"``), in which case the pass is registered with that backend.
    """

    name: str
    cls: str
    flow: str


@dataclass(frozen=True)
class Op:
    """Everything of one extension op, as ``"module:attribute"`` references (see the module docstring).

    ``tracer`` is ``fn(x, layer, arrays, slice_bits) -> FixedVariableArray`` (x: the traced first input; layer: the
    neutral graph entry; arrays: the neutral file's arrays; slice_bits: the widest operand slice of a variable x
    variable product, card rtl.product_slice_bits), or None when the op has no RTL route yet (the RTL stage
    then reports the layer as unsupported by name). ``replaces`` lists stock hls4ml IR classes that an
    optimizer pass of this op turns into ``ir_layer`` (they stay convertible without a handler of ours).
    ``token_wise``: the op maps each token (row of a sequence) on its own, so a folded design (hwflow.rtl.fold) may
    run it G tokens at a time. ``multiplies_variables``: its tracer multiplies two variables (vmul), so the RTL
    latency cutoff must hold one product slice.
    ``configure(layer_configs, model, hls, calibration)`` sets the op's defaults in hls4ml's LayerName config;
    ``calibrate(model)`` returns ``[(hls layer name, keras tensor, finish(values) -> dict)]`` probes whose
    results reach ``configure`` as ``calibration[name]``.
    """

    name: str
    ir_layer: str
    templates: tuple[str, ...]
    headers: tuple[str, ...]
    reference: str
    keras_layers: tuple[str, ...] = ()
    handler: str | None = None
    tracer: str | None = None
    passes: tuple[Pass, ...] = ()
    replaces: tuple[str, ...] = ()
    configure: str | None = None
    calibrate: str | None = None
    token_wise: bool = False
    multiplies_variables: bool = False
    doc: str = field(default="", compare=False)

    @property
    def ir_class(self) -> str:
        """Return the hls4ml class name of the IR layer (the name it is registered under)."""
        return _attr_name(self.ir_layer)

    @property
    def keras_classes(self) -> tuple[str, ...]:
        """Return the Keras class names the op's handler parses."""
        return tuple(_attr_name(k) for k in self.keras_layers)

    def header_paths(self) -> list[Path]:
        """Return the absolute paths of the op's C++ headers."""
        return [NNET_UTILS / h for h in self.headers]


_REGISTRY: dict[str, Op] = {}


def _attr_name(ref: str) -> str:
    return ref.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def resolve(ref: str):
    """Return the object a ``"module:attribute"`` reference names (imports the module)."""
    mod, _, attr = ref.partition(":")
    if not attr:
        raise ValueError(f"'{ref}' is not a 'module:attribute' reference")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def register_op(op: Op) -> Op:
    """Add ``op`` to the registry and return it; a second record under the same name or IR class is an error."""
    old = _REGISTRY.get(op.name)
    if old is not None and old != op:
        raise ValueError(f"op '{op.name}' is already registered with other pieces")
    clash = [o.name for o in _REGISTRY.values() if o.ir_class == op.ir_class and o.name != op.name]
    if clash:
        raise ValueError(f"op '{op.name}': IR class {op.ir_class} already belongs to op '{clash[0]}'")
    _REGISTRY[op.name] = op
    return op


def unregister_op(name: str) -> None:
    """Remove an op from the registry (for tests registering a throw-away op)."""
    _REGISTRY.pop(name, None)


def all_ops() -> list[Op]:
    """Return every registered op, in registration order."""
    from . import catalog  # noqa: F401  (registers the built-in ops on first use)

    return list(_REGISTRY.values())


def op_of_ir_class(ir_class: str) -> Op | None:
    """Return the op whose hls4ml IR class is ``ir_class`` (None for stock hls4ml classes)."""
    for o in all_ops():
        if o.ir_class == ir_class:
            return o
    return None


def keras_classes() -> list[str]:
    """Return the Keras class names that hwflow's ops add to hls4ml's Keras-2 front end."""
    return [k for o in all_ops() for k in o.keras_classes]
