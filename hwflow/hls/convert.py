"""QKeras model + model card -> hls4ml ModelGraph (with hwflow's extension layers), compile, firmware project.

The only module (with hwflow/hls/ext/) that imports hls4ml; heavy imports happen inside functions.

What conversion adds to stock hls4ml 1.3.0 (Keras-2 front end, Vivado/Vitis, io_parallel):

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
import math
import time
from pathlib import Path

import numpy as np

from ..util import HwflowError, atomic_write_json

# Keras classes the Keras-2 front end converts once hwflow's extensions are registered (for error messages)
HWFLOW_LAYERS = ("QMultiHeadAttention", "QLayerNormalization", "QRMSNormalization", "QSoftmax")
SOFTMAX_RESULT = "ap_ufixed<16,0,AP_RND_CONV,AP_SAT>"


def supported_layers() -> list[str]:
    """Return the Keras class names hwflow can convert (hls4ml's Keras-2 handlers + hwflow's)."""
    from hls4ml.converters.keras_v2_to_hls import get_supported_keras_layers

    from .extensions import register_extensions

    register_extensions()
    return sorted(set(get_supported_keras_layers()) | {"InputLayer"})


def check_supported(model) -> None:
    """Raise a HwflowError naming the first layer hls4ml+hwflow cannot convert, its type and what is supported."""
    ok = set(supported_layers())
    for layer in _flat_layers(model):
        cls = type(layer).__name__
        if cls not in ok:
            raise HwflowError(
                f"layer '{layer.name}' of type {cls} cannot be converted to HLS; supported types: "
                f"{', '.join(sorted(ok))} (hwflow adds {', '.join(HWFLOW_LAYERS)}); replace it or use an equivalent"
            )


def _flat_layers(model):
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and type(layer).__name__ in ("Functional", "Sequential", "Model"):
            out.extend(_flat_layers(layer))
        else:
            out.append(layer)
    return out


def _deep_update(dst: dict, src: dict) -> dict:
    for k, v in (src or {}).items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def _softmax_layers(model) -> dict:
    """Return {hls layer name: keras layer} for every softmax of the model (Activation or a layer's activation)."""
    import tensorflow as tf

    out = {}
    for layer in _flat_layers(model):
        cls = type(layer).__name__
        if cls in ("Softmax", "QSoftmax"):
            out[layer.name] = (layer, "input")
            continue
        act = getattr(layer, "activation", None)
        name = getattr(act, "__name__", str(act)) if act is not None else ""
        if "softmax" in name and not isinstance(act, tf.Module):
            if cls == "Activation":
                out[layer.name] = (layer, "input")
            else:  # Dense(..., activation='softmax') -> hls4ml splits off '<name>_softmax'
                out[f"{layer.name}_softmax"] = (layer, "preact")
    return out


def calibrate(model, x) -> dict:
    """Return per-layer calibration from sample inputs ``x``: softmax input ranges and attention intermediates'
    ranges."""
    import tensorflow as tf

    from ..nn.layers import QMultiHeadAttention
    from ..reference.softmax import calibrate_range

    x = np.asarray(x)
    sm = _softmax_layers(model)
    mhas = [ly for ly in _flat_layers(model) if isinstance(ly, QMultiHeadAttention)]
    probes, keys = [], []
    for hname, (layer, kind) in sm.items():
        probes.append(layer.input)
        keys.append(("softmax", hname, layer, kind))
    for layer in mhas:
        probes.append(layer.input)
        keys.append(("mha", layer.name, layer, None))
    if not probes:
        return {}
    sub = tf.keras.Model(model.inputs, probes)
    outs = sub.predict(x, verbose=0, batch_size=256)
    outs = outs if isinstance(outs, list) else [outs]
    cal: dict = {}
    for (kind, hname, layer, how), inp in zip(keys, outs):
        if kind == "softmax":
            logits = inp
            if how == "preact":  # recompute the pre-activation of Dense(..., activation='softmax')
                act = layer.activation
                layer.activation = tf.keras.activations.linear
                try:
                    logits = layer(tf.constant(inp)).numpy()
                finally:
                    layer.activation = act
            cal[hname] = {"InputRange": calibrate_range(logits)}
        else:
            t = {k: np.asarray(v) for k, v in layer.intermediates(tf.constant(inp)).items()}
            cal[hname] = {
                "ScoreRange": calibrate_range(t["scores"]),
                "_max_abs": {
                    "q": float(max(np.abs(t[k]).max() for k in ("q", "k", "v"))),
                    "score": float(np.abs(t["scores"]).max()),
                    "context": float(np.abs(t["context"]).max()),
                },
            }
    return cal


def _feeds_qactivation(layer) -> bool:
    """Return True when every consumer of ``layer``'s output is a QActivation."""
    outs = [n.outbound_layer for n in getattr(layer, "_outbound_nodes", [])]
    return bool(outs) and all(type(o).__name__ == "QActivation" for o in outs)


def _range_type(max_abs: float, width: int = 16) -> str:
    """Return a signed rounding/saturating type of ``width`` bits whose range covers max_abs (with margin)."""
    integer = max(int(math.ceil(math.log2(max_abs * 1.25 + 1e-12))), 0) + 1 if max_abs > 0 else 1
    return f"ap_fixed<{width},{integer},AP_RND_CONV,AP_SAT>"


def _input_type(layer, calibration_data, current, default: str) -> str:
    """Return the firmware input type: the input quantizer's own type when a QActivation reads the input
    (the C++ then rounds raw inputs exactly like QKeras), else a rounding type sized from the data."""
    from .ext.common import quantizer_type

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
        return _range_type(max_abs, width=18)  # rounds instead of hls4ml's default truncation
    return current if current not in (None, "auto") else default


def _exact_layer_tables(lc: dict, prec: dict, layer) -> None:
    """Copy an exact Keras layer's softmax table settings into its hls4ml layer config (the layer is the one
    source: QMultiHeadAttention and QSoftmax take them from the card's hls.softmax when built)."""
    lc["ExpTableSize"] = layer.exp_table_size
    lc["InvTableSize"] = layer.inv_table_size
    for key, value in (("exp_table", layer.exp_table_t), ("inv_table", layer.inv_table_t)):
        if value:
            prec[key] = value


def hls_config(card, model, calibration_data=None) -> dict:
    """Return the hls4ml config dict (granularity 'name') for a card and model, with hwflow defaults and overrides."""
    import hls4ml

    from .ext.common import quantizer_type
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
    sm_cfg = h.get("softmax", {}) or {}
    layers = cfg.setdefault("LayerName", {})
    kl = {ly.name: ly for ly in _flat_layers(model)}
    cal = calibrate(model, calibration_data) if calibration_data is not None else {}
    for name, lc in layers.items():
        lc["Trace"] = True  # the csim report traces every layer
        prec = lc.setdefault("Precision", {})
        layer = kl.get(name)
        cls = type(layer).__name__ if layer is not None else ""
        if cls == "QMultiHeadAttention":
            for key in list(prec):
                if key != "result":
                    prec.pop(key)
            oq = quantizer_type(layer.output_quantizer, name)
            prec["result"] = oq.cpp() if oq else h["default_precision"]
            _exact_layer_tables(lc, prec, layer)
            c = cal.get(name)
            if c and layer.spec is None:  # an exact layer fixed its softmax types without calibration
                lc["ScoreRange"] = c["ScoreRange"]
                for key, qname in (
                    ("q", "qkv_quantizer"),
                    ("score", "score_quantizer"),
                    ("context", "context_quantizer"),
                ):
                    if getattr(layer, qname) is None:  # no quantizer: size the type from the data
                        prec[key] = _range_type(c["_max_abs"][key])
        elif cls in ("QLayerNormalization", "QRMSNormalization"):
            oq = quantizer_type(layer.output_quantizer, name)
            prec["result"] = oq.cpp() if oq else h["default_precision"]
            lc["TableSize"] = getattr(layer, "table_size", 1024)
            if getattr(layer, "table_t", None):
                prec["table"] = layer.table_t
        elif cls == "BatchNormalization":
            # folded scale/bias in the 16-bit default lose ~2^-11 per feature; keep 18 fractional bits, rounded
            for key in ("scale", "bias"):
                if prec.get(key) in (None, "auto") or str(prec.get(key)).startswith("fixed<16,6"):
                    prec[key] = "ap_fixed<26,8,AP_RND_CONV,AP_SAT>"
        elif cls in ("GlobalAveragePooling1D", "AveragePooling1D") and _feeds_qactivation(layer):
            # QKeras averages in float and the next QActivation rounds once: keep the average wide here
            prec["result"] = "ap_fixed<32,10>"
            prec["accum"] = "ap_fixed<32,10>"
        elif cls == "LayerNormalization":
            prec["result"] = prec.get("result") if prec.get("result") not in (None, "auto") else h["default_precision"]
        elif cls == "InputLayer":
            prec["result"] = _input_type(layer, calibration_data, prec.get("result"), h["default_precision"])
    for hname in _softmax_layers(model):
        lc = layers.setdefault(hname, {})
        lc["Trace"] = True
        prec = lc.setdefault("Precision", {})
        # probabilities: unsigned, 16 fractional bits, unless the user chose an unsigned type already
        if not str(prec.get("result", "auto")).startswith("ap_ufixed"):
            prec["result"] = SOFTMAX_RESULT
        for key in ("exp_table", "inv_table"):
            prec.pop(key, None)
        layer = _softmax_layers(model)[hname][0]
        if type(layer).__name__ == "QSoftmax":
            prec["result"] = layer.result_type  # the exact Keras softmax: its types and tables, no calibration
            _exact_layer_tables(lc, prec, layer)
            continue
        if sm_cfg.get("exp_table_t"):
            prec["exp_table"] = sm_cfg["exp_table_t"]
        if sm_cfg.get("inv_table_t"):
            prec["inv_table"] = sm_cfg["inv_table_t"]
        lc["ExpTableSize"] = sm_cfg.get("table_size", 1024)
        lc["InvTableSize"] = sm_cfg.get("inv_table_size") or 1024
        if hname in cal:
            lc["InputRange"] = cal[hname]["InputRange"]
    _deep_update(layers, h.get("layer_name") or {})
    return cfg


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
