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
- frozen BatchNormalization gets 26-bit scale/bias; average pooling feeding a QActivation stays wide.
- card ``hls``: backend, part, clock_period, io_type, strategy, reuse_factor, default_precision,
  softmax{table_size, inv_table_size, exp_table_t, inv_table_t} (applied to attention and classifier
  softmaxes) and ``layer_name`` (hls4ml LayerName overrides, merged last, so they win).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

from ..util import HwflowError, atomic_write_json
from .ext.common import flat_layers, quantizer_type, range_type


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
    """Set hwflow's defaults for stock hls4ml layers (every layer traced; batch norm, average pooling, input)."""
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
        elif cls in ("GlobalAveragePooling1D", "AveragePooling1D") and _feeds_qactivation(layer):
            # QKeras averages in float and the next QActivation rounds once: keep the average wide here
            prec["result"] = "ap_fixed<32,10>"
            prec["accum"] = "ap_fixed<32,10>"
        elif cls == "InputLayer":
            prec["result"] = _input_type(layer, calibration_data, prec.get("result"), h["default_precision"])


def convert(card, model, output_dir=None, calibration_data=None):
    """Return the hls4ml ModelGraph of ``model`` configured from the card (hwflow extensions registered)."""
    import hls4ml

    cfg = hls_config(card, model, calibration_data)
    h = card["hls"]
    out = Path(output_dir) if output_dir is not None else card.firmware_dir()
    try:
        hm = hls4ml.converters.convert_from_keras_model(
            model,
            hls_config=cfg,
            output_dir=str(out),
            project_name="myproject",
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


def compile_model(hls_model):
    """Return ``hls_model`` after writing and compiling its C++ (raises HwflowError if g++ is missing)."""
    from .harness import compiler

    compiler()  # clear message when no C++ compiler
    t0 = time.time()
    try:
        hls_model.compile()
    except Exception as e:
        raise HwflowError(f"C++ compilation of the HLS model failed in {hls_model.config.get_output_dir()}: {e}") from e
    hls_model.hwflow_compile_s = time.time() - t0
    # the library was built with tracing: make hls_model.trace(x) reuse it instead of recompiling (hls4ml's default)
    hls_model.trace = lambda x: trace(hls_model, x)
    return hls_model


def trace(hls_model, x):
    """Return (outputs, {layer name: outputs}) of the C simulation, without hls4ml's recompile when already traced."""
    x = np.ascontiguousarray(x)
    cls_trace = type(hls_model).trace  # hls4ml's own (it recompiles first)
    if getattr(hls_model, "hwflow_compile_s", None) is not None and hls_model.config.trace_output:
        hls_model.compile = lambda: None  # instance-level: the library was built with tracing by compile_model
        try:
            return cls_trace(hls_model, x)
        finally:
            del hls_model.compile
    return cls_trace(hls_model, x)


def csim_outputs(hls_model, x, trace_layers: bool = True):
    """Return (outputs, {layer name: outputs}) of the C simulation; the dict is empty without ``trace_layers``."""
    if not trace_layers:
        hls_model.compile()
        return hls_model.predict(x), {}
    for layer in hls_model.get_layers():
        layer.set_attr("trace", True)
    return hls_model.trace(x)


def _spread(n: int, k: int) -> np.ndarray:
    """Return min(n, k) indices spread evenly over range(n)."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int)) if n else np.zeros(0, int)


def firmware(card, model=None, calibration_data=None, test_inputs=None) -> Path:
    """Write the complete HLS project of a card's trained QKeras model to firmware/<name>/ and return its path."""
    from ..util import atomic_dir

    if model is None:
        try:
            from ..train import load_trained
        except ImportError as e:
            raise HwflowError(
                "no trained model loader (hwflow.train) available: run `make train MODEL=...` first"
            ) from e
        model = load_trained(card, "qkeras")
    if calibration_data is None or test_inputs is None:
        try:
            from ..data import get_dataset

            ds = get_dataset(card)
            # evenly strided subsets: the splits may be ordered by class, a head slice would miss classes
            if calibration_data is None:
                calibration_data = ds.x_train[_spread(len(ds.x_train), 2000)]
            if test_inputs is None:
                test_inputs = ds.x_test[_spread(len(ds.x_test), card["hls"]["csim_samples"])]
        except Exception as e:  # noqa: BLE001 - conversion still works without data, just uncalibrated
            print(f"hwflow: warning: no dataset for calibration/test bench ({e}); using defaults")
    dest = card.firmware_dir()
    with atomic_dir(dest) as tmp:
        hm = convert(card, model, output_dir=tmp, calibration_data=calibration_data)
        hm.write()
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
            Path(tmp) / "hwflow_firmware.json",
            {
                "card": card.name,
                "backend": card["hls"]["backend"],
                "part": card["hls"]["part"],
                "clock_period": card["hls"]["clock_period"],
                "io_type": card["hls"]["io_type"],
                "strategy": card["hls"]["strategy"],
                "reuse_factor": card["hls"]["reuse_factor"],
                "n_test_vectors": 0 if test_inputs is None else int(len(test_inputs)),
            },
        )
    return dest
