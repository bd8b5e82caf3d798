"""QKeras model + model card -> hls4ml ModelGraph (with hwflow's extension layers), compile, firmware project.

The only module (with hwflow/hls/ext/) that imports hls4ml; heavy imports happen inside functions.

What conversion adds to stock hls4ml 1.3.0 (Keras-2 front end, Vivado/Vitis, io_parallel); the extension ops
are the records of hwflow.ops (hwflow/ops/catalog.py), which this module only iterates over:

- ``QMultiHeadAttention`` -> ``HwflowMultiHeadAttention`` (nnet::hwflow_mha). ``LayerName/<mha>`` keys:
  ``Precision: {weight, bias, proj_accum, q, accum, scale, score, inp_norm, exp_table, inv_table, attn, context,
  out_accum, result}``, ``ExpTableSize``, ``InvTableSize``, ``ScoreRange``, ``ReuseFactor``, ``Strategy``.
  Defaults: q/score/attn/context/result from the qkv/score/softmax/context/output quantizers (or sized from
  calibration data when a quantizer is None), accumulators exact, scale = one exact bit when key_dim is a
  power of 4 (else ap_ufixed<18,0>), softmax tables ap_ufixed<18,1,AP_RND,AP_SAT>.
- every ``softmax`` (Activation or a layer's activation) -> ``HwflowSoftmax`` (``HwflowSoftmax: false`` keeps
  the stock one). Keys: ``Precision: {inp_norm, exp_table, inv_table, result}``, ``ExpTableSize``,
  ``InvTableSize``, ``InputRange``; result defaults to ap_ufixed<16,0,AP_RND_CONV,AP_SAT>.
- ``QLayerNormalization``/``QRMSNormalization`` and stock ``LayerNormalization`` (``HwflowReplace: false`` keeps
  it) -> ``HwflowNorm``. Keys: ``Precision: {scale, bias, accum, mean, var, table, inv_std, norm, result}``,
  ``TableSize``.
- QDense on 3-D inputs keeps its weight/bias quantizers through the Dense->Conv1D rewrite, and a
  QActivation(quantized_bits) after it keeps its type (hwflow/hls/ext/qkeras_seq.py).
- frozen BatchNormalization gets 26-bit scale/bias; hwflow's QGlobalAveragePooling1D gets the accumulator and
  result types its Keras layer computes with; a stock average pooling feeding a QActivation stays wide.
- card ``hls``: backend, part, clock_period, io_type, strategy, reuse_factor, default_precision,
  softmax{table_size, inv_table_size, exp_table_t, inv_table_t} (applied to attention and classifier
  softmaxes) and ``layer_name`` (hls4ml LayerName overrides, merged last, so they win).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ..reference.fixed import exact_type
from ..util import HwflowError, atomic_write_json
from .ext import pooling
from .ext.common import flat_layers, quantizer_type, range_type
from .project import MANIFEST, PROJECT, CSim, source_sha256, write_batch_bridge


def supported_layers() -> list[str]:
    """Return the Keras class names hwflow can convert: hls4ml's Keras-2 handlers, which include the handlers
    of every op in the hwflow.ops registry once registered."""
    from hls4ml.converters import get_supported_keras_layers

    from .extensions import register_extensions

    register_extensions()
    return sorted(set(get_supported_keras_layers()) | {"InputLayer"})


def check_supported(model) -> None:
    """Raise a HwflowError naming the first layer hls4ml+hwflow cannot convert, its type and what is supported."""
    from ..ops import keras_classes

    ok = set(supported_layers())
    for layer in flat_layers(model):
        cls = type(layer).__name__
        if cls not in ok:
            raise HwflowError(
                f"layer '{layer.name}' of type {cls} cannot be converted to HLS; supported types: "
                f"{', '.join(sorted(ok))} (hwflow adds {', '.join(keras_classes())}); replace it or use an equivalent"
            )


def _deep_update(dst: dict, src: dict) -> dict:
    for k, v in (src or {}).items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def calibrate(model, x) -> dict:
    """Return per-layer calibration from sample inputs ``x``: what each registered op's probes measure (softmax
    input ranges, attention intermediates' ranges), keyed by hls4ml layer name."""
    import tensorflow as tf

    from ..ops import all_ops, resolve

    probes = [p for op in all_ops() if op.calibrate for p in resolve(op.calibrate)(model)]
    if not probes:
        return {}
    sub = tf.keras.Model(model.inputs, [tensor for _, tensor, _ in probes])
    outs = sub.predict(np.asarray(x), verbose=0, batch_size=256)
    outs = outs if isinstance(outs, list) else [outs]
    return {name: finish(values) for (name, _, finish), values in zip(probes, outs)}


def _feeds_qactivation(layer) -> bool:
    """Return True when every consumer of ``layer``'s output is a QActivation."""
    outs = [n.outbound_layer for n in getattr(layer, "_outbound_nodes", [])]
    return bool(outs) and all(type(o).__name__ == "QActivation" for o in outs)


def _input_type(layer, calibration_data, current, default: str) -> str:
    """Return the firmware input type: the input quantizer's own type when a QActivation reads the input
    (the C++ then rounds raw inputs exactly like QKeras), else a rounding type sized from the data."""
    outs = [n.outbound_layer for n in getattr(layer, "_outbound_nodes", [])]
    types = {
        quantizer_type(o.quantizer, o.name).cpp()
        for o in outs
        if type(o).__name__ == "QActivation" and getattr(o, "quantizer", None) is not None
    }
    if len(types) == 1 and _feeds_qactivation(layer):
        return types.pop()
    if calibration_data is not None and current in (None, "auto", default):
        max_abs = float(np.max(np.abs(np.asarray(calibration_data, np.float32))))
        return range_type(max_abs, width=18)  # rounds instead of hls4ml's default truncation
    return current if current not in (None, "auto") else default


def _frozen_norm_type(layer):
    """Return the result type that holds a frozen power-of-two standardization exactly, else None.

    The transformer's ``input_norm`` computes ``x * 2^k + b`` (``b = -mean_q * 2^k``, mean on a 2^-10 grid) of
    inputs on the input quantizer's grid, so its exact result needs ``frac(x) - k`` fractional bits and the
    integer bits of the extreme inputs; Keras computes it exactly in float32, and so must the C++ (hls4ml's default
    16-bit result type would truncate it).
    """
    src = [n.inbound_layers for n in getattr(layer, "_inbound_nodes", [])]
    if len(src) != 1 or type(src[0]).__name__ != "QActivation" or not layer.get_weights():
        return None
    t = quantizer_type(src[0].quantizer, src[0].name)
    gamma, beta, mean, var = (np.asarray(w, np.float32) for w in layer.get_weights())
    scale = gamma / np.sqrt(var + np.float32(layer.epsilon))  # as hls4ml folds it
    bias = (beta - mean * scale).astype(np.float64)
    scale = scale.astype(np.float64)
    log2 = np.log2(np.abs(scale), where=scale != 0, out=np.zeros_like(scale))
    if t is None or np.any(scale <= 0) or np.any(log2 != np.round(log2)):
        return None  # a trained batch norm: hls4ml's own types
    frac = int(max(np.max(t.frac - log2), exact_type(bias, max_width=64).frac, 0))
    extremes = np.concatenate([t.min * scale + bias, t.max * scale + bias])
    return exact_type(extremes, signed=True, max_width=64, frac=frac)


def hls_config(card, model, calibration_data=None) -> dict:
    """Return the hls4ml config dict (granularity 'name') for a card and model, with hwflow defaults and overrides.

    Stock layers get their defaults here; each op of the hwflow.ops registry sets its own layers' defaults
    through its ``configure`` hook; the card's ``hls.layer_name`` overrides are merged last.
    """
    import hls4ml

    from ..ops import all_ops, resolve
    from .extensions import register_extensions

    register_extensions()
    check_supported(model)
    h = card["hls"]
    cfg = hls4ml.utils.config_from_keras_model(
        model,
        granularity="name",
        backend=h["backend"],
        default_precision=h["default_precision"],
        default_reuse_factor=h["reuse_factor"],
    )
    cfg["Model"]["Strategy"] = h["strategy"]
    cfg["Model"]["ReuseFactor"] = h["reuse_factor"]
    layers = cfg.setdefault("LayerName", {})
    _stock_layer_defaults(layers, model, h, calibration_data)
    cal = calibrate(model, calibration_data) if calibration_data is not None else {}
    for op in all_ops():
        if op.configure:
            resolve(op.configure)(layers, model, h, cal)
    _deep_update(layers, h.get("layer_name") or {})
    return cfg


def _stock_layer_defaults(layers: dict, model, h: dict, calibration_data) -> None:
    """Set hwflow's defaults for stock hls4ml layers (every layer traced; batch norm, pooling, input)."""
    kl = {ly.name: ly for ly in flat_layers(model)}
    for name, lc in layers.items():
        lc["Trace"] = True  # the csim report traces every layer
        prec = lc.setdefault("Precision", {})
        layer = kl.get(name)
        cls = type(layer).__name__ if layer is not None else ""
        if cls == "BatchNormalization":
            # folded scale/bias in the 16-bit default lose ~2^-11 per feature; keep 18 fractional bits, rounded
            for key in ("scale", "bias"):
                if prec.get(key) in (None, "auto") or str(prec.get(key)).startswith("fixed<16,6"):
                    prec[key] = "ap_fixed<26,8,AP_RND_CONV,AP_SAT>"
            exact = _frozen_norm_type(layer)
            if exact is not None:
                prec["result"] = exact.cpp()
        elif cls == "QGlobalAveragePooling1D":
            prec.update(pooling.precision(layer))  # the types the Keras layer computes with: C++ == Keras
        elif cls in ("GlobalAveragePooling1D", "AveragePooling1D") and _feeds_qactivation(layer):
            # QKeras averages in float and the next QActivation rounds once: keep the average wide here
            prec["result"] = "ap_fixed<32,10>"
            prec["accum"] = "ap_fixed<32,10>"
        elif cls in ("GlobalMaxPooling1D", "MaxPooling1D") and _feeds_qactivation(layer):
            # the max is one of its inputs: a wide type keeps it as Keras does (hls4ml's 'auto' falls back to the
            # 16-bit default, truncating finer inputs) and the next QActivation rounds both alike; hls4ml's max runs in
            # the accumulator type
            prec["result"] = "ap_fixed<32,10>"
            prec["accum"] = "ap_fixed<32,10>"
        elif cls == "InputLayer":
            prec["result"] = _input_type(layer, calibration_data, prec.get("result"), h["default_precision"])


def convert(card, model, output_dir=None, calibration_data=None, config: dict | None = None):
    """Return the hls4ml ModelGraph of ``model`` configured from the card (hwflow extensions registered).

    ``config``: an hls4ml config already made by :func:`hls_config` (the one recorded in firmware/<m>/), used
    as is, so the graph is exactly that project's; else one is made from the card and ``calibration_data``.
    """
    import hls4ml

    from .extensions import register_extensions

    register_extensions()
    cfg = hls_config(card, model, calibration_data) if config is None else copy.deepcopy(config)
    h = card["hls"]
    out = Path(output_dir) if output_dir is not None else card.firmware_dir()
    try:
        hm = hls4ml.converters.convert_from_keras_model(
            model,
            hls_config=cfg,
            output_dir=str(out),
            project_name=PROJECT,
            backend=h["backend"],
            io_type=h["io_type"],
            part=h["part"],
            clock_period=h["clock_period"],
        )
    except HwflowError:
        raise
    except Exception as e:  # hls4ml raises bare Exceptions; name the problem for the user
        msg = str(e)
        if "Unsupported layer type" in msg:
            raise HwflowError(f"{msg}; supported: {', '.join(supported_layers())}") from e
        raise
    hm.config.trace_output = True  # one build serves predict() and trace(); the trace code is csim-only
    return hm


def compile_model(hls_model) -> CSim:
    """Return the C simulation of ``hls_model`` after writing its project (with the batch bridge) and compiling it."""
    from .harness import compiler

    compiler()  # clear message when no C++ compiler
    if not hasattr(hls_model, "write") or not hasattr(hls_model, "config"):
        raise HwflowError(f"compile_model expects an hls4ml ModelGraph, got {type(hls_model).__name__}")
    hls_model.write()
    out = Path(hls_model.config.get_output_dir())
    write_batch_bridge(hls_model, out)
    return CSim(hls_model, out)


def trace(csim, x):
    """Return (outputs, {layer name: outputs}) of a compiled C simulation (see :func:`compile_model`; an hls4ml
    ModelGraph is written and compiled first)."""
    return csim_outputs(csim, x, trace_layers=True)


def csim_outputs(csim, x, trace_layers: bool = True):
    """Return (outputs, {layer name: outputs}) of the C simulation; the dict is empty without ``trace_layers``.

    ``csim``: a :class:`CSim` (from :func:`design` or :func:`compile_model`); an hls4ml ModelGraph is written and
    compiled first.
    """
    if not isinstance(csim, CSim):  # a plain hls4ml graph: build it with every layer traced
        csim.config.trace_output = True
        for layer in csim.get_layers():
            layer.set_attr("trace", True)
        csim = compile_model(csim)
    if not trace_layers:
        return csim.predict(x), {}
    return csim.trace(x)


# ---------------------------------------------------------------------------------------- the one design
def _hash_tree(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


def firmware_inputs(card, dataset=None, calibrated: bool = True) -> dict:
    """Return what a firmware project is made from (hashes): the card's hls/model sections, the trained model file,
    the calibration dataset and hwflow's conversion code; a project whose recorded inputs differ is stale."""
    from .. import __version__
    from ..train import MODEL_FILES
    from ..util import package_versions, sha256_file, stable_hash

    model_file = card.model_dir() / MODEL_FILES["qkeras"]
    pkg = Path(__file__).resolve().parents[1]
    # the conversion code: hls4ml glue and headers, the op registry, the references the configs are sized with
    code = [p for sub in ("hls", "ops", "reference") for p in (pkg / sub).rglob("*") if p.suffix in (".py", ".h")]
    return {
        "card": stable_hash({"name": card.name, "hls": card["hls"], "model": card["model"]}),
        "model_sha256": sha256_file(model_file) if model_file.exists() else None,
        "dataset_sha256": (dataset.manifest.get("content_sha256") if dataset is not None else None)
        if calibrated
        else "no calibration",
        "hwflow": __version__,
        "hwflow_hls_code": _hash_tree([p for p in code if p.is_file()]),
        "hls4ml": package_versions(["hls4ml"])["hls4ml"],
    }


def read_manifest(fw: str | Path) -> dict | None:
    """Return firmware/<m>/hwflow_firmware.json, or None when the project is missing or incomplete."""
    path = Path(fw) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def stale_reason(card, dataset=None, calibrated: bool = True) -> str | None:
    """Return why firmware/<m>/ must be (re)built ('missing', 'the trained model changed', ...), or None if fresh."""
    fw = card.firmware_dir()
    man = read_manifest(fw)
    if man is None or "inputs" not in man or "hls_config" not in man:
        return f"{_rel(fw)} is missing or was not written by this hwflow"
    old, new = man["inputs"], firmware_inputs(card, dataset, calibrated)
    what = {
        "card": "the card's hls/model settings changed",
        "model_sha256": "the trained model changed",
        "dataset_sha256": "the calibration dataset changed",
        "hwflow": "hwflow was updated",
        "hwflow_hls_code": "hwflow's conversion code changed",
        "hls4ml": "hls4ml was updated",
    }
    changed = [msg for key, msg in what.items() if old.get(key) != new.get(key)]
    if changed:
        return f"{_rel(fw)} is stale: " + ", ".join(changed)
    if source_sha256(fw) != man.get("firmware_sha256"):
        return f"{_rel(fw)} sources were edited after `hwflow firmware` wrote them"
    return None


def _rel(p: Path) -> str:
    from ..util import project_root

    try:
        return str(Path(p).resolve().relative_to(project_root().resolve()))
    except ValueError:
        return str(p)


def _dataset(card):
    """Return the card's dataset or raise a one-line HwflowError saying how to make it (no silent fallback)."""
    from ..data import get_dataset

    try:
        return get_dataset(card, progress=False)
    except HwflowError as e:
        raise HwflowError(
            f"no dataset to calibrate firmware/{card.name}/ ({e}); run `make data MODEL={card.name}` or pass "
            "--no-calibration"
        ) from None
    except Exception as e:  # noqa: BLE001 - the generator's own failure, named in one line
        raise HwflowError(
            f"no dataset to calibrate firmware/{card.name}/ ({type(e).__name__}: {e}); run `make data "
            f"MODEL={card.name}` or pass --no-calibration"
        ) from None


def firmware(card, model=None, dataset=None, calibration: bool = True, calibration_data=None, test_inputs=None) -> Path:
    """Write the complete HLS project of a card's trained QKeras model to firmware/<name>/ and return its path.

    The one conversion of hwflow: calibration rows (training set) and test-bench rows (test set) come from
    :func:`hwflow.data.pick_rows`; the manifest records the inputs' hashes, the hls4ml config and the sources'
    hash, so every later stage runs exactly this project (:func:`design`). ``calibration=False`` converts
    without data (types from the quantizers and defaults only).
    """
    from ..data import pick_rows
    from ..util import atomic_dir

    if model is None:
        from ..train import load_trained

        model = load_trained(card, "qkeras")
    if dataset is None and calibration and (calibration_data is None or test_inputs is None):
        dataset = _dataset(card)
    seed = int(card["data"]["seed"])
    if calibration and calibration_data is None:
        calibration_data = dataset.x_train[pick_rows(dataset.y_train, card["hls"]["calibration_samples"], seed)]
    if test_inputs is None and dataset is not None:
        test_inputs = dataset.x_test[pick_rows(dataset.y_test, card["hls"]["csim_samples"], seed)]
    dest = card.firmware_dir()
    with atomic_dir(dest) as tmp:
        cfg = hls_config(card, model, calibration_data if calibration else None)
        hm = convert(card, model, output_dir=tmp, config=cfg)
        hm.write()
        write_batch_bridge(hm, tmp)
        if test_inputs is not None:
            x = np.asarray(test_inputs, np.float32)
            y = model.predict(x, verbose=0)
            tb = Path(tmp) / "tb_data"
            tb.mkdir(exist_ok=True)
            np.savetxt(tb / "tb_input_features.dat", x.reshape(len(x), -1), fmt="%.10g")
            np.savetxt(tb / "tb_output_predictions.dat", np.asarray(y).reshape(len(x), -1), fmt="%.10g")
        # the project was written in a temporary folder: point its recorded paths at the final one
        yml = Path(tmp) / "hls4ml_config.yml"
        if yml.exists():
            yml.write_text(
                yml.read_text().replace(str(Path(tmp).resolve()), str(dest.resolve())).replace(str(tmp), str(dest))
            )
        atomic_write_json(
            Path(tmp) / MANIFEST,
            {
                "card": card.name,
                **{k: card["hls"][k] for k in ("backend", "part", "clock_period", "io_type", "strategy")},
                "reuse_factor": card["hls"]["reuse_factor"],
                "n_test_vectors": 0 if test_inputs is None else int(len(test_inputs)),
                "n_calibration_rows": int(len(calibration_data)) if calibration and calibration_data is not None else 0,
                "inputs": firmware_inputs(card, dataset, calibration),
                "firmware_sha256": source_sha256(tmp),
                "hls_config": cfg,
            },
        )
    return dest


def ensure_firmware(card, model=None, dataset=None, calibration: bool = True, rebuild: bool = False):
    """Return (firmware/<m>/, why it was rebuilt or None, seconds): the project, written first through
    :func:`firmware` when it is missing or stale (its recorded inputs differ from the card, model, data, code)."""
    if model is None:
        from ..train import load_trained

        model = load_trained(card, "qkeras")
    if calibration and dataset is None:
        dataset = _dataset(card)
    why = "rebuild asked for" if rebuild else stale_reason(card, dataset, calibration)
    t0 = time.perf_counter()
    if why:
        print(f"hwflow: {why}: writing firmware/{card.name}/ (hwflow firmware)", flush=True)
        firmware(card, model=model, dataset=dataset, calibration=calibration)
    return card.firmware_dir(), why, round(time.perf_counter() - t0, 3)


def design(card, model=None, dataset=None, calibration: bool = True, rebuild: bool = False) -> CSim:
    """Return the compiled C simulation of firmware/<m>/, (re)building the project first when it is missing or
    stale (through :func:`firmware`, the one conversion); csim, rtl and bench all run this."""
    if model is None:
        from ..train import load_trained

        model = load_trained(card, "qkeras")
    fw, why, firmware_s = ensure_firmware(card, model, dataset, calibration, rebuild)
    hm = convert(card, model, output_dir=fw, config=read_manifest(fw)["hls_config"])  # its own config: no recalibration
    csim = CSim(hm, fw)
    csim.rebuilt, csim.firmware_seconds = why, firmware_s
    if csim.compile_seconds:
        print(f"hwflow: compiled the C simulation of firmware/{card.name}/ in {csim.compile_seconds:.0f} s", flush=True)
    return csim
