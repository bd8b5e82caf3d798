"""C-simulation verification: float Keras vs QKeras vs the hls4ml C simulation, end to end and per layer.

``csim(card)`` loads the trained QKeras model and its float twin, compiles firmware/<name>/ itself (the
project ``hwflow firmware`` wrote, rebuilt first when missing or stale; ``hwflow.hls.design``), runs the
seeded class-balanced test rows through it and writes ``reports/<name>/`` atomically:

- ``csim.json`` — the numbers (top-level keys listed in ``REQUIRED_KEYS``), per-output errors and a
  per-layer trace;
- ``csim.md`` — the same as tables a person reads, with the plots;
- ``roc.png`` (float solid, QKeras dotted, C sim dashed), ``layer_errors.png``, ``ranges.png``
  (observed values vs each layer's representable range, the hls4ml ``profiling.numerical`` view),
  ``scatter.png`` (C sim vs QKeras outputs).

Per-layer trace: hls4ml's ``ModelGraph.trace`` returns every layer's C++ output; each is compared
with the QKeras output of the same-named Keras layer. When hls4ml folded a following
``QActivation``/``Activation`` into a layer (its quantizer became that layer's result type), the
comparison uses the output of the folded activation, which is what the firmware stores. A layer's
*overflow count* is the number of QKeras values outside the representable range of the HLS result
type (values that wrap or saturate in the firmware); any non-zero count raises a warning and is in
the report, never silent.

The report core, :func:`run_csim`, takes already converted models, so it serves any hls4ml model.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .report.schema import CSIM_KEYS, FIRMWARE_KEY, missing_keys
from .util import HwflowError, atomic_write_json, atomic_write_text

# the headline keys every csim.json has: defined once in hwflow.report.schema (collect and compare read them too)
REQUIRED_KEYS = CSIM_KEYS
# Keras layers hls4ml drops or folds (their output equals their input or becomes the producer's result type)
_FOLDABLE = ("Activation", "QActivation", "Dropout")


class OverflowWarning(UserWarning):
    """A layer's values exceed the representable range of its HLS result type."""


# ---------------------------------------------------------------------------------------- fixed point
def type_range(precision) -> dict | None:
    """Return {lo, hi, lsb, width, integer, signed, rounding, saturation, type} of an hls4ml precision, or None."""
    width = getattr(precision, "width", None)
    if width is None or width <= 0:
        return None
    signed = bool(getattr(precision, "signed", True))
    integer = getattr(precision, "integer", None)
    if integer is None:
        return None
    frac = width - integer
    lsb = 2.0 ** (-frac)
    if signed:
        lo, hi = -(2.0 ** (integer - 1)), 2.0 ** (integer - 1) - lsb
    else:
        lo, hi = 0.0, 2.0**integer - lsb
    rounding = str(getattr(precision, "rounding_mode", "TRN")).split(".")[-1]
    saturation = str(getattr(precision, "saturation_mode", "WRAP")).split(".")[-1]
    return {
        "lo": lo,
        "hi": hi,
        "lsb": lsb,
        "width": int(width),
        "integer": int(integer),
        "signed": signed,
        "rounding": rounding,
        "saturation": saturation,
        "type": _type_name(precision),
    }


def _type_name(precision) -> str:
    try:
        from hls4ml.backends.fpga.fpga_types import APTypeConverter

        return APTypeConverter().convert(precision).definition_cpp()
    except Exception:  # noqa: BLE001 - naming only
        return str(precision)


def count_overflow(values: np.ndarray, rng: dict | None) -> int:
    """Return how many values would not fit the type of ``rng`` (from :func:`type_range`) after its rounding."""
    if rng is None:
        return 0
    v = np.asarray(values, dtype=np.float64).ravel()
    # truncation (TRN) floors, so anything in [hi, hi + lsb) still becomes hi; rounding modes move by lsb/2
    margin = rng["lsb"] / 2 if rng["rounding"].startswith("RND") else 0.0
    hi = rng["hi"] + rng["lsb"] - margin
    lo = rng["lo"] - margin
    return int(np.count_nonzero((v >= hi) | (v < lo)))


def count_at_limit(values: np.ndarray, rng: dict | None) -> int:
    """Return how many values sit exactly on the type's min or max (saturation hits in the firmware)."""
    if rng is None:
        return 0
    v = np.asarray(values, dtype=np.float64).ravel()
    return int(np.count_nonzero((v == rng["hi"]) | ((v == rng["lo"]) & (rng["lo"] != 0))))


# ---------------------------------------------------------------------------------------- keras side
def keras_layer_outputs(model, x: np.ndarray, names: list[str], batch_size: int = 512) -> dict[str, np.ndarray]:
    """Return {layer name: output array} of the named Keras layers on inputs ``x``."""
    import tensorflow as tf

    if not names:
        return {}
    sub = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outs = sub.predict(x, batch_size=batch_size, verbose=0)
    if len(names) == 1:
        outs = [outs]
    return {n: np.asarray(o, dtype=np.float64) for n, o in zip(names, outs)}


def _consumers(layer) -> list:
    out = []
    for node in getattr(layer, "_outbound_nodes", []):
        out.append(node.outbound_layer)
    return out


def keras_reference_layer(model, name: str, hls_names: set[str]) -> str | None:
    """Return the Keras layer whose output an HLS layer ``name`` holds (following activations hls4ml folded)."""
    try:
        layer = model.get_layer(name)
    except ValueError:
        return None
    # follow single-consumer activation/dropout chains that hls4ml removed from its graph
    while True:
        cons = _consumers(layer)
        if len(cons) != 1:
            break
        nxt = cons[0]
        if nxt.__class__.__name__ not in _FOLDABLE or nxt.name in hls_names:
            break
        layer = nxt
    return layer.name


# ---------------------------------------------------------------------------------------- report core
def _flat(a: np.ndarray, n: int) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).reshape(n, -1)


def _keras_chain(qmodel, first: str, last: str) -> list:
    """Return the Keras layers from ``first`` to ``last`` following single consumers (the folded chain)."""
    chain = [qmodel.get_layer(first)]
    while chain[-1].name != last:
        cons = _consumers(chain[-1])
        if len(cons) != 1:
            break
        chain.append(cons[0])
    return chain


def local_outputs(qmodel, hls_model, x: np.ndarray, trace: dict, refs: dict) -> dict[str, np.ndarray]:
    """Return {hls layer: QKeras output computed from the C++ (traced) inputs of that layer}.

    Feeding each Keras layer the values the C++ layer received isolates the layer's own error from
    the error it inherits, so a wrong layer stands out instead of everything downstream of it.
    """
    import tensorflow as tf

    n = len(x)
    hls_inputs = {ly.name for ly in hls_model.get_layers() if ly.class_name == "Input"}
    by_ref = {}
    for hname, ref in refs.items():
        if ref is not None and (hname in trace or hname in hls_inputs):
            by_ref.setdefault(ref, hname)  # first (upstream-most) HLS layer holding that Keras value
    x_in = None
    inputs = [ly for ly in hls_model.get_layers() if ly.class_name == "Input"]
    if inputs:
        from .reference.fixed import quantize

        prec = inputs[0].get_output_variable().type.precision
        # the input as the C++ holds it: cast like an ap_fixed assignment (every rounding/overflow mode)
        x_in = quantize(x, prec) if type_range(prec) else np.asarray(x, dtype=np.float64)
    input_names = {ly.name for ly in qmodel.layers if ly.__class__.__name__ == "InputLayer"}
    out: dict[str, np.ndarray] = {}
    for layer in hls_model.get_layers():
        name, ref = layer.name, refs.get(layer.name)
        if layer.class_name == "Input" or ref is None or name not in trace:
            continue
        try:
            klayer = qmodel.get_layer(name)
        except ValueError:
            continue
        node = klayer._inbound_nodes[0]

        def feed(t, klayer=klayer):
            if not hasattr(t, "_keras_history"):
                return t  # a plain argument (e.g. training=None)
            src = t._keras_history.layer.name
            hsrc = by_ref.get(src)
            if src in input_names or hsrc in hls_inputs:
                arr = x_in  # the input as the C++ holds it (cast to the input type)
            elif hsrc is None:
                raise KeyError(src)
            else:
                arr = trace[hsrc]
            shape = [n] + [int(d) for d in t.shape[1:]]
            return tf.constant(np.asarray(arr, dtype=np.float32).reshape(shape))

        try:
            args = tf.nest.map_structure(feed, node.call_args)
            kwargs = tf.nest.map_structure(feed, node.call_kwargs)
            y = klayer(*args, **kwargs)
            for nxt in _keras_chain(qmodel, name, ref)[1:]:
                y = nxt(y)
            out[name] = _flat(np.asarray(y), n)
        except Exception:  # noqa: BLE001 - a layer we cannot re-run keeps only its end-to-end error
            continue
    return out


def _accum_range(layer) -> dict | None:
    """Return the type_range of an HLS layer's accumulator (Dense/pointwise/average pooling), or None."""
    if layer.class_name not in ("Dense", "PointwiseConv1D", "Conv1D", "GlobalPooling1D", "Pooling1D"):
        return None
    if layer.class_name.endswith("Pooling1D") and layer.get_attr("pool_op", "") != "Average":
        return None
    t = layer.get_attr("accum_t")
    return type_range(t.precision) if t is not None and hasattr(t, "precision") else None


def _accum_values(layer, qmodel, kout: dict, n: int) -> np.ndarray | None:
    """Return the final accumulator values of an HLS layer, from the same-named Keras layer's unquantized output.

    Dense/pointwise: the pre-activation sum W·x + b; average pooling: the sum over the pooled axis
    (mean × pool size). With wrap-around arithmetic only the final sum has to fit.
    """
    raw = kout.get(layer.name)
    if raw is None:
        return None
    raw = _flat(raw, n)
    if layer.class_name.endswith("Pooling1D"):
        shape = qmodel.get_layer(layer.name).input_shape
        raw = raw * int(shape[1])
    return raw


def _error_stats(got: np.ndarray, ref: np.ndarray, rng: dict | None, prefix: str = "") -> dict:
    """Return max/mean absolute error of ``got`` vs ``ref`` (and in LSBs of ``rng``, with the exact share)."""
    err = np.abs(got - ref)
    out = {f"{prefix}max_abs_error": float(err.max()), f"{prefix}mean_abs_error": float(err.mean())}
    if rng:
        out[f"{prefix}max_abs_error_lsb"] = float(err.max() / rng["lsb"])
        out[f"{prefix}exact_fraction"] = float(np.mean(err <= rng["lsb"] * 1e-6))
    return out


def layer_trace(qmodel, hls_model, x: np.ndarray, trace: dict[str, np.ndarray]) -> list[dict]:
    """Return one record per HLS layer: type, representable range, observed ranges, error vs QKeras, overflow counts."""
    n = len(x)
    layers = list(hls_model.get_layers())
    hls_names = {layer.name for layer in layers}
    refs: dict[str, str | None] = {}
    for layer in layers:  # graph order: a layer's input is resolved before it
        ref = keras_reference_layer(qmodel, layer.name, hls_names)
        if (
            ref is None
            and str(layer.get_attr("activation", "")).lower() == "linear"
            and layer.get_input_node() is not None
        ):
            # a linear activation hls4ml inserted (e.g. '<dense>_linear', a cast to its own type) holds its input's
            # value
            ref = refs.get(layer.get_input_node().name)
        refs[layer.name] = ref
    keras_names = {ly.name for ly in qmodel.layers}
    accum_layers = {ly.name for ly in layers if _accum_range(ly) is not None and ly.name in keras_names}
    need = sorted(
        {r for r in refs.values() if r is not None and qmodel.get_layer(r).__class__.__name__ != "InputLayer"}
        | accum_layers
    )
    kout = keras_layer_outputs(qmodel, x, need)
    local = local_outputs(qmodel, hls_model, x, trace, refs)
    records = []
    for layer in layers:
        var = layer.get_output_variable()
        rng = type_range(var.type.precision)
        ref_name = refs[layer.name]
        rec: dict[str, Any] = {
            "layer": layer.name,
            "class": layer.class_name,
            "keras_layer": ref_name,
            "hls_type": rng["type"] if rng else str(var.type.precision),
            "shape": [int(s) for s in var.shape],
            "representable": None
            if rng is None
            else {
                "lo": rng["lo"],
                "hi": rng["hi"],
                "lsb": rng["lsb"],
                "rounding": rng["rounding"],
                "saturation": rng["saturation"],
            },
        }
        ref = kout.get(ref_name) if ref_name else None
        if ref is None and layer.class_name == "Input":
            ref = np.asarray(x, dtype=np.float64)
        hls_vals = trace.get(layer.name)
        if ref is not None:
            ref = _flat(ref, n)
            rec["qkeras_range"] = [float(ref.min()), float(ref.max())]
            rec["overflow"] = count_overflow(ref, rng)
            rec["_ref"] = ref
        acc = _accum_values(layer, qmodel, kout, n) if layer.name in accum_layers else None
        if acc is not None:
            arng = _accum_range(layer)
            rec["accum_type"] = arng["type"]
            rec["accum_range"] = [float(acc.min()), float(acc.max())]
            rec["accum_overflow"] = count_overflow(acc, arng)
            # an accumulator that wraps corrupts the result even when the result type is wide enough
            rec["overflow"] = rec.get("overflow", 0) + rec["accum_overflow"]
        if hls_vals is not None:
            hv = _flat(hls_vals, n)
            rec["hls_range"] = [float(hv.min()), float(hv.max())]
            rec["at_limit"] = count_at_limit(hv, rng)
            rec["_hls"] = hv
            if ref is not None and ref.shape == hv.shape:
                rec.update(_error_stats(hv, ref, rng))
            loc = local.get(layer.name)
            if loc is not None and loc.shape == hv.shape:
                rec.update(_error_stats(hv, loc, rng, prefix="local_"))
            if ref is not None and ref.shape != hv.shape:
                rec["note"] = (
                    f"shape differs from Keras layer {ref_name}: {list(hv.shape[1:])} vs {list(ref.shape[1:])}"
                )
        elif layer.class_name != "Input":
            rec["note"] = "not traced (no C++ function of its own)"
        records.append(rec)
    return records


def _softmax_layer(hls_model):
    last = None
    for layer in hls_model.get_layers():
        if "softmax" in layer.class_name.lower() or str(layer.get_attr("activation", "")).lower() == "softmax":
            last = layer
    return last


def softmax_flips(hls_model, trace: dict, y_csim: np.ndarray) -> dict:
    """Return the argmax flips of the final HLS softmax: its output argmax vs the argmax of its own (traced) input."""
    sm = _softmax_layer(hls_model)
    if sm is None:
        return {"count": 0, "layer": None, "note": "model has no softmax layer"}
    src = sm.get_input_node().name if sm.get_input_node() is not None else None
    logits = trace.get(src)
    if logits is None:
        return {"count": None, "layer": sm.name, "note": f"input of {sm.name} ({src}) was not traced"}
    logits = _flat(logits, len(y_csim))
    pick = np.argmax(y_csim, axis=1)
    best = logits.max(axis=1)
    # a flip is a pick whose input is strictly below the row maximum (ties are not flips)
    flips = logits[np.arange(len(pick)), pick] < best
    return {
        "count": int(flips.sum()),
        "layer": sm.name,
        "input_layer": src,
        "rows": np.flatnonzero(flips)[:50].tolist(),
    }


# issue 11 (exact Keras layers): the share of C-simulation output values identical to the QKeras model's
def bit_exact_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Return the fraction of values of ``a`` equal to ``b`` (same shape), compared as doubles."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.mean(a == b)) if a.size else float("nan")


def run_csim(
    qmodel,
    fmodel,
    hls_model,
    x: np.ndarray,
    y: np.ndarray,
    class_names: list[str],
    out_dir: Path | None,
    title: str = "",
    extra: dict | None = None,
    trace: bool = True,
) -> dict:
    """Return the csim report dict for compiled-or-not ``hls_model`` on (x, y); write it to ``out_dir`` when given."""
    from . import metrics

    x = np.ascontiguousarray(x, dtype=np.float64)  # double in/out: exact for every ap_fixed up to 53 bits
    n = len(x)
    if n == 0:
        raise HwflowError("no test samples for the C simulation: raise hls.csim_samples or the dataset size")
    t0 = time.perf_counter()
    from .hls import csim_outputs

    y_csim, traced = csim_outputs(hls_model, x, trace)
    csim_seconds = time.perf_counter() - t0
    y_csim = np.asarray(y_csim, dtype=np.float64).reshape(n, -1)
    y_q = np.asarray(qmodel.predict(x, batch_size=512, verbose=0), dtype=np.float64)
    y_f = np.asarray(fmodel.predict(x, batch_size=512, verbose=0), dtype=np.float64) if fmodel is not None else None

    scores = {"float": y_f, "qkeras": y_q, "csim": y_csim}
    scores = {k: v for k, v in scores.items() if v is not None}
    auc = {k: metrics.auc_per_class(v, y, class_names) for k, v in scores.items()}
    acc = {k: metrics.accuracy(v, y) for k, v in scores.items()}
    err_q = np.abs(y_csim - y_q)
    err_f = np.abs(y_csim - y_f) if y_f is not None else None

    records = layer_trace(qmodel, hls_model, x, traced) if trace else []
    overflow = {r["layer"]: r["overflow"] for r in records if "overflow" in r}
    for r in records:
        if r.get("overflow"):
            rep = r["representable"]
            if r.get("accum_overflow"):
                msg = (
                    f"layer {r['layer']}: accumulator {r['accum_type']} overflows on {r['accum_overflow']} values "
                    f"(sums in [{r['accum_range'][0]:.4g}, {r['accum_range'][1]:.4g}]); widen Precision: accum in "
                    "hls.layer_name"
                )
                warnings.warn(msg, OverflowWarning, stacklevel=2)
                print(f"warning: {msg}")
            if r["overflow"] == r.get("accum_overflow", 0):
                continue
            msg = (
                f"layer {r['layer']} ({r['hls_type']}): {r['overflow'] - r.get('accum_overflow', 0)} QKeras values "
                f"outside [{rep['lo']:g}, {rep['hi']:g}] "
                f"(observed [{r['qkeras_range'][0]:.4g}, {r['qkeras_range'][1]:.4g}]); "
                f"widen its precision in hls.layer_name"
            )
            warnings.warn(msg, OverflowWarning, stacklevel=2)
            print(f"warning: {msg}")
    flips = softmax_flips(hls_model, traced, y_csim) if trace else {"count": None, "note": "trace off"}

    def drop(a, b):
        vals = [a[c] - b[c] for c in a if np.isfinite(a[c]) and np.isfinite(b[c])]
        return float(max(vals)) if vals else float("nan")

    report: dict[str, Any] = {
        "n_samples": int(n),
        "bit_exact_fraction_vs_qkeras": bit_exact_fraction(y_csim, y_q),
        "argmax_agreement_vs_qkeras": metrics.argmax_agreement(y_csim, y_q),
        "argmax_agreement_vs_float": metrics.argmax_agreement(y_csim, y_f) if y_f is not None else None,
        "argmax_agreement_qkeras_vs_float": metrics.argmax_agreement(y_q, y_f) if y_f is not None else None,
        "max_abs_error_vs_qkeras": float(err_q.max()),
        "mean_abs_error_vs_qkeras": float(err_q.mean()),
        "max_abs_error_vs_float": float(err_f.max()) if err_f is not None else None,
        "mean_abs_error_vs_float": float(err_f.mean()) if err_f is not None else None,
        "accuracy_float": acc.get("float"),
        "accuracy_qkeras": acc["qkeras"],
        "accuracy_csim": acc["csim"],
        "auc_float": auc.get("float"),
        "auc_qkeras": auc["qkeras"],
        "auc_csim": auc["csim"],
        "auc_drop_max_vs_float": drop(auc["float"], auc["csim"]) if "float" in auc else None,
        "auc_drop_max_vs_qkeras": drop(auc["qkeras"], auc["csim"]),
        # statistical error of each AUC on this test sample: a drop well inside it is noise, not firmware error
        "auc_stat_error": {
            str(c): metrics.auc_standard_error(auc["csim"][str(c)], int(np.sum(y == i)), int(np.sum(y != i)))
            for i, c in enumerate(class_names)
        },
        "overflow_counts": overflow,
        "overflow_total": int(sum(overflow.values())),
        "softmax_argmax_flips": flips.get("count"),
        "softmax_flips_detail": flips,
        "per_output": {
            str(c): {
                "max_abs_error_vs_qkeras": float(err_q[:, i].max()),
                "mean_abs_error_vs_qkeras": float(err_q[:, i].mean()),
                "max_abs_error_vs_float": float(err_f[:, i].max()) if err_f is not None else None,
                "mean_abs_error_vs_float": float(err_f[:, i].mean()) if err_f is not None else None,
            }
            for i, c in enumerate(class_names)
        },
        "confusion_matrix_csim": metrics.confusion_matrix(y_csim, y, len(class_names)).tolist(),
        "class_names": list(class_names),
        "csim_seconds": round(csim_seconds, 3),
        "layers": [{k: v for k, v in r.items() if not k.startswith("_")} for r in records],
        **(extra or {}),
    }
    report.setdefault(FIRMWARE_KEY, getattr(hls_model, FIRMWARE_KEY, None))
    missing = missing_keys(report, CSIM_KEYS)
    if missing:  # a programming error: the schema and the report disagree
        raise HwflowError(f"csim report lacks {', '.join(missing)} of hwflow.report.schema.CSIM_KEYS")
    if out_dir is not None:
        write_report(Path(out_dir), report, scores, y, class_names, records, title=title)
    return report


# ---------------------------------------------------------------------------------------- outputs
def write_report(
    out_dir: Path,
    report: dict,
    scores: dict,
    y: np.ndarray,
    class_names: list[str],
    records: list[dict],
    title: str = "",
) -> Path:
    """Write csim.json, csim.md and the plots into ``out_dir`` (replacing only these files, each atomically)."""
    from . import metrics

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics.plot_roc(out_dir / "roc.png", y, scores, class_names, title=f"{title}: float vs QKeras vs C simulation")
    if records:
        plot_layer_errors(out_dir / "layer_errors.png", records, title=title)
        plot_ranges(out_dir / "ranges.png", records, title=title)
    plot_scatter(out_dir / "scatter.png", scores["qkeras"], scores["csim"], class_names, title=title)
    report["plots"] = {
        "roc": "roc.png",
        "layer_errors": "layer_errors.png" if records else None,
        "ranges": "ranges.png" if records else None,
        "scatter": "scatter.png",
    }
    # markdown first, json last: csim.json present means the whole report is there
    atomic_write_text(out_dir / "csim.md", markdown(report, title))
    atomic_write_json(out_dir / "csim.json", report)
    return out_dir


def _fmt(v, digits=4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def markdown(r: dict, title: str = "") -> str:
    """Return the csim report as Markdown."""
    L = [f"# C simulation report{': ' + title if title else ''}", ""]
    if r.get("backend"):
        L.append(
            f"hls4ml {r.get('hls4ml_version', '')} · backend {r['backend']} · {r.get('strategy', '')} · "
            f"reuse factor {r.get('reuse_factor', '')} · project `{r.get('project_dir', '')}`"
        )
        L.append("")
    L += [
        f"{r['n_samples']} test samples through float Keras, QKeras and the compiled hls4ml C++ "
        f"(C simulation {r['csim_seconds']:.1f} s; firmware sha256 `{str(r.get('firmware_sha256'))[:12]}`).",
        "",
    ]
    ok_arg = r["argmax_agreement_vs_qkeras"] >= 0.99
    drop = r.get("auc_drop_max_vs_float")
    ok_auc = drop is not None and math.isfinite(drop) and drop <= 0.01
    L += [
        "| check | value | target |",
        "|---|---|---|",
        f"| argmax agreement C sim vs QKeras | {r['argmax_agreement_vs_qkeras'] * 100:.2f} % | ≥ 99 % "
        f"{'✅' if ok_arg else '❌'} |",
        f"| argmax agreement C sim vs float | {_pct(r.get('argmax_agreement_vs_float'))} | |",
        f"| output values identical C sim vs QKeras | {_pct(r.get('bit_exact_fraction_vs_qkeras'))} | 100 % "
        f"{'✅' if r.get('bit_exact_fraction_vs_qkeras') == 1.0 else '❌'} |",
        f"| max AUC drop C sim vs float | {_fmt(drop)} | ≤ 0.01 {'✅' if ok_auc else '❌'} |",
        f"| softmax argmax flips (final softmax) | {_fmt(r['softmax_argmax_flips'])} | 0 "
        f"{'✅' if r['softmax_argmax_flips'] == 0 else '❌'} |",
        f"| layers with overflow | {sum(1 for v in r['overflow_counts'].values() if v)} ({r['overflow_total']} "
        f"values) | 0 {'✅' if not r['overflow_total'] else '⚠️'} |",
        f"| max abs error C sim vs QKeras | {_fmt(r['max_abs_error_vs_qkeras'])} (mean "
        f"{_fmt(r['mean_abs_error_vs_qkeras'])}) | |",
        f"| max abs error C sim vs float | {_fmt(r.get('max_abs_error_vs_float'))} (mean "
        f"{_fmt(r.get('mean_abs_error_vs_float'))}) | |",
        "",
    ]
    L += [
        "## Accuracy and AUC per class",
        "",
        "| | float | QKeras | C sim | C sim − float | C sim − QKeras | AUC stat. error |",
        "|---|---|---|---|---|---|---|",
        f"| accuracy | {_pct(r.get('accuracy_float'))} | {_pct(r['accuracy_qkeras'])} | {_pct(r['accuracy_csim'])} | "
        f"{_fmt((r['accuracy_csim'] - r['accuracy_float']) if r.get('accuracy_float') is not None else None)} | "
        f"{_fmt(r['accuracy_csim'] - r['accuracy_qkeras'])} | |",
    ]
    for c in r["class_names"]:
        af = (r.get("auc_float") or {}).get(c)
        L.append(
            f"| AUC {c} | {_fmt(af)} | {_fmt(r['auc_qkeras'][c])} | {_fmt(r['auc_csim'][c])} | "
            f"{_fmt(r['auc_csim'][c] - af if af is not None else None)} | "
            f"{_fmt(r['auc_csim'][c] - r['auc_qkeras'][c])} | "
            f"± {_fmt((r.get('auc_stat_error') or {}).get(c))} |"
        )
    L += [
        "",
        "C sim − QKeras isolates the firmware; C sim − float adds the quantization-aware training. "
        "The statistical error (Hanley–McNeil) is that of one AUC on this test sample.",
        "",
    ]
    L += [
        "",
        "![ROC](roc.png)",
        "",
        "## Output errors per class",
        "",
        "| output | max abs err vs QKeras | mean abs err vs QKeras | max abs err vs float | mean abs err vs float |",
        "|---|---|---|---|---|",
    ]
    for c, e in r["per_output"].items():
        L.append(
            f"| {c} | {_fmt(e['max_abs_error_vs_qkeras'])} | {_fmt(e['mean_abs_error_vs_qkeras'])} | "
            f"{_fmt(e['max_abs_error_vs_float'])} | {_fmt(e['mean_abs_error_vs_float'])} |"
        )
    L += ["", "![C sim vs QKeras](scatter.png)", ""]
    if r["layers"]:
        L += [
            "## Per-layer trace (C++ layer output vs the QKeras layer)",
            "",
            "Representable range of the layer's HLS result type; *overflow* = QKeras values outside it "
            "(they wrap or saturate in the firmware); *at limit* = C++ values sitting on the type's min/max; "
            "*err* is end to end (inherits upstream error), *own err* feeds the QKeras layer the C++ layer's own "
            "inputs, so it is the layer's own deviation; *exact (own)* = share of its values that are bit exact.",
            "",
            "| layer | class | HLS type | representable | QKeras range | max abs err | err / LSB | own err / LSB | "
            "exact (own) | overflow | at limit |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for x in r["layers"]:
            rep = x.get("representable")
            rep_s = f"[{rep['lo']:g}, {rep['hi']:g}]" if rep else "–"
            qr = x.get("qkeras_range")
            qr_s = f"[{qr[0]:.3g}, {qr[1]:.3g}]" if qr else "–"
            ovf = x.get("overflow")
            ovf_s = f"**{ovf}** ⚠️" if ovf else _fmt(ovf)
            if x.get("accum_overflow"):
                ovf_s += f" (accumulator `{x['accum_type']}`: {x['accum_overflow']})"
            L.append(
                f"| {x['layer']} | {x['class']} | `{x['hls_type']}` | {rep_s} | {qr_s} | "
                f"{_fmt(x.get('max_abs_error'))} | "
                f"{_fmt(x.get('max_abs_error_lsb'), 1)} | {_fmt(x.get('local_max_abs_error_lsb'), 1)} | "
                f"{_pct(x.get('local_exact_fraction'))} | {ovf_s} | {_fmt(x.get('at_limit'))} |"
            )
        own = sorted(
            (x for x in r["layers"] if x.get("local_max_abs_error_lsb")), key=lambda x: -x["local_max_abs_error_lsb"]
        )
        exact = [x["layer"] for x in r["layers"] if x.get("local_max_abs_error") == 0]
        L += [
            "",
            "Where the C++ departs from QKeras on its own inputs: "
            + (
                ", ".join(
                    f"**{x['layer']}** ({x['class']}, up to {x['local_max_abs_error_lsb']:.0f} LSB, "
                    f"{x['local_exact_fraction'] * 100:.1f} % of values exact)"
                    for x in own[:3]
                )
                or "nowhere"
            )
            + (f"; bit exact on their inputs: {', '.join(exact)}." if exact else "."),
        ]
        notes = [f"- {x['layer']}: {x['note']}" for x in r["layers"] if x.get("note")]
        if notes:
            L += ["", *notes]
        L += ["", "![per-layer error](layer_errors.png)", "", "![ranges](ranges.png)", ""]
    sd = r.get("softmax_flips_detail") or {}
    if sd.get("layer"):
        L += [
            f"Softmax flips: argmax of `{sd['layer']}` output vs argmax of its traced input `{sd.get('input_layer')}` "
            "(the float softmax of the same logits keeps their argmax).",
            "",
        ]
    return "\n".join(L) + "\n"


def _pct(v) -> str:
    return "–" if v is None else f"{v * 100:.2f} %"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 110) -> Path:
    from .util import save_figure

    return save_figure(fig, path, dpi=dpi)


def _row_label(r: dict) -> str:
    ref = r.get("keras_layer")
    via = f" → {ref}" if ref and ref != r["layer"] else ""
    return f"{r['layer']}{via} ({r['class']})"


def plot_layer_errors(path: Path, records: list[dict], title: str = "") -> Path:
    """Write per-layer max/mean absolute error (C++ vs QKeras) with each layer's LSB marked; return the path."""
    plt = _plt()
    rows = [r for r in records if "max_abs_error" in r]
    fig, ax = plt.subplots(figsize=(9, 0.42 * max(len(rows), 3) + 1.8))
    if rows:
        ypos = np.arange(len(rows))[::-1]
        lsb = np.array([r["representable"]["lsb"] if r.get("representable") else np.nan for r in rows])
        # exact layers would vanish on a log axis: draw them at a floor well below every LSB and label them
        floor = (np.nanmin(lsb) if np.isfinite(lsb).any() else 1e-6) / 64
        mx = np.array([max(r["max_abs_error"], floor) for r in rows])
        loc = np.array([max(r.get("local_max_abs_error", np.nan), floor) for r in rows])
        ax.barh(ypos + 0.19, mx, height=0.36, color="tab:red", alpha=0.8, label="max error, end to end")
        ax.barh(
            ypos - 0.19,
            loc,
            height=0.36,
            color="tab:green",
            alpha=0.8,
            label="max error, layer fed its C++ inputs (own error)",
        )
        ax.scatter(lsb, ypos, marker="|", s=300, linewidths=2, color="black", zorder=3, label="1 LSB of the HLS type")
        mean = np.array([max(r["mean_abs_error"], floor) for r in rows])
        ax.scatter(mean, ypos + 0.19, marker="o", s=14, color="black", zorder=4, label="mean error, end to end")
        any_ovf = any(r.get("overflow") for r in rows)
        right = max(mx.max(), np.nanmax(lsb) if np.isfinite(lsb).any() else 1.0) * (400 if any_ovf else 8)
        for yp, r in zip(ypos, rows):
            if r["max_abs_error"] == 0:
                ax.text(floor * 1.5, yp + 0.19, "bit exact", va="center", fontsize=8, color="darkgreen", weight="bold")
            elif r.get("local_max_abs_error") == 0:
                ax.text(floor * 1.5, yp - 0.19, "bit exact on its inputs", va="center", fontsize=7.5, color="darkgreen")
            if r.get("overflow"):
                ax.text(
                    right / 300,
                    yp,
                    f"overflow {r['overflow']}",
                    va="center",
                    fontsize=8,
                    color="darkred",
                    weight="bold",
                )
        ax.set_yticks(ypos)
        ax.set_yticklabels([_row_label(r) for r in rows], fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(floor / 2, right)
        ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    ax.set_xlabel("max |C++ layer output − QKeras layer output|")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    fig.suptitle(
        f"{title}: per-layer error of the C simulation" if title else "per-layer error of the C simulation",
        fontsize=10,
        y=0.995,
    )
    fig.tight_layout()
    return _save(fig, path)


def plot_ranges(path: Path, records: list[dict], title: str = "") -> Path:
    """Write the profiling.numerical view: log2|values| per layer (box/whisker) over the representable range; return
    the path."""
    from matplotlib.patches import Patch

    plt = _plt()
    rows = [r for r in records if r.get("representable") and ("_ref" in r or "_hls" in r)]
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(len(rows), 3) + 1.9))
    ypos = np.arange(len(rows))[::-1]
    data, ok_pos, colors = [], [], []
    for yp, r in zip(ypos, rows):
        rep = r["representable"]
        top = math.log2(max(abs(rep["lo"]), abs(rep["hi"]) + rep["lsb"]))
        bottom = math.log2(rep["lsb"])
        # grey band: magnitudes the type can hold, from one LSB up to its largest |value|
        ax.barh(yp, top - bottom, left=bottom, height=0.72, color="0.88", edgecolor="0.55", zorder=1)
        vals = np.abs(r.get("_ref", r.get("_hls"))).ravel()
        vals = vals[vals > 0]
        if len(vals) > 20000:
            vals = np.random.default_rng(0).choice(vals, 20000, replace=False)
        if len(vals):
            data.append(np.log2(vals))
            ok_pos.append(yp)
            colors.append("tab:red" if r.get("overflow") else "tab:blue")
        if r.get("overflow"):
            ax.text(
                top + 0.4, yp, f"overflow: {r['overflow']}", va="center", color="darkred", fontsize=8, weight="bold"
            )
        if len(vals):
            under = float(np.mean(vals < rep["lsb"] / 2))  # nonzero values the type rounds away
            if under >= 0.001:
                ax.text(
                    bottom - 0.4,
                    yp,
                    f"{under * 100:.1f}% < LSB",
                    va="center",
                    ha="right",
                    color="darkorange",
                    fontsize=7.5,
                )
    if data:
        bp = ax.boxplot(
            data,
            positions=ok_pos,
            vert=False,
            widths=0.42,
            whis=(0, 100),
            patch_artist=True,
            showfliers=False,
            zorder=2,
            medianprops={"color": "black"},
        )
        for patch, col in zip(bp["boxes"], colors):
            patch.set_facecolor(col)
            patch.set_alpha(0.75)
    ax.set_yticks(ypos)
    ax.set_yticklabels([f"{r['layer']}  {r['hls_type']}" for r in rows], fontsize=8)
    ax.set_xlabel("log2 |value|")
    ax.grid(True, axis="x", alpha=0.3)
    handles = [
        Patch(facecolor="0.88", edgecolor="0.55", label="representable: 1 LSB … max |value|"),
        Patch(facecolor="tab:blue", alpha=0.75, label="QKeras output: quartiles, whiskers min–max"),
        Patch(facecolor="tab:red", alpha=0.75, label="overflows its type"),
    ][: 3 if "tab:red" in colors else 2]
    ax.legend(
        handles=handles, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), frameon=False
    )
    fig.suptitle(f"{title}: value ranges vs HLS types" if title else "value ranges vs HLS types", fontsize=10, y=0.995)
    fig.tight_layout()
    return _save(fig, path)


def plot_scatter(path: Path, y_q: np.ndarray, y_c: np.ndarray, class_names: list[str], title: str = "") -> Path:
    """Write C-simulation vs QKeras outputs (difference against value, per class; argmax disagreements marked) and
    the error histogram."""
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.8), gridspec_kw={"width_ratios": [1.25, 1]})
    colors = plt.get_cmap("tab10").colors
    d = y_c - y_q
    for i, c in enumerate(class_names):
        ax.scatter(y_q[:, i], d[:, i], s=6, alpha=0.45, color=colors[i % 10], label=str(c))
    flip = np.argmax(y_c, 1) != np.argmax(y_q, 1)
    if flip.any():
        # the two top scores of each disagreeing sample: where the C++ and QKeras picks swapped
        rows = np.flatnonzero(flip)
        for cols in (np.argmax(y_q[rows], 1), np.argmax(y_c[rows], 1)):
            ax.scatter(y_q[rows, cols], d[rows, cols], s=40, facecolors="none", edgecolors="black", lw=1.0)
        ax.scatter([], [], s=40, facecolors="none", edgecolors="black", label=f"argmax differs ({flip.sum()})")
    ax.axhline(0, color="black", lw=0.8, ls="--")
    ax.set_xlabel("QKeras output (class probability)")
    ax.set_ylabel("C simulation − QKeras")
    ax.legend(fontsize=8, markerscale=2, title="class", ncol=2)
    ax.grid(True, alpha=0.3)
    flat = d.ravel()
    span = max(np.abs(flat).max(), 1e-12)
    ax2.hist(flat, bins=np.linspace(-span * 1.05, span * 1.05, 61), color="tab:purple", alpha=0.8)
    ax2.set_yscale("log")
    ax2.set_xlabel("C sim − QKeras (all outputs)")
    ax2.set_ylabel("count")
    ax2.grid(True, alpha=0.3)
    ax2.set_title(
        f"max |diff| = {np.abs(flat).max():.3g}, mean = {np.abs(flat).mean():.3g}; "
        f"argmax agreement {np.mean(~flip) * 100:.2f} %",
        fontsize=9,
    )
    fig.suptitle(
        f"{title}: C simulation vs QKeras, {len(y_q)} samples" if title else "C simulation vs QKeras", fontsize=10
    )
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------- stage entry
def csim(card, n_samples: int | None = None, trace: bool = True, dataset=None, prepare: Callable | None = None) -> dict:
    """Return the csim report of a trained card, after writing reports/<name>/csim.{json,md} and plots.

    Runs firmware/<name>/ itself (``hwflow.hls.design``: rebuilt first when missing or stale) on the seeded,
    class-balanced test rows of ``hwflow.data.pick_rows``; ``prepare`` replaces ``design`` in tests.
    """
    from .data import get_dataset, pick_rows
    from .train import load_trained
    from .util import package_versions

    qmodel = load_trained(card, "qkeras")
    try:
        fmodel = load_trained(card, "float")
    except HwflowError:
        fmodel = None  # float_twin: false
    ds = dataset if dataset is not None else get_dataset(card, progress=False)
    pick = pick_rows(ds.y_test, int(n_samples or card["hls"]["csim_samples"]), int(card["data"]["seed"]))
    x, y = ds.x_test[pick], ds.y_test[pick]
    if prepare is None:
        from .hls import design as prepare
    sim = prepare(card, qmodel, ds)
    extra = {
        "model": card.name,
        "backend": card["hls"]["backend"],
        "strategy": card["hls"]["strategy"],
        "reuse_factor": card["hls"]["reuse_factor"],
        "io_type": card["hls"]["io_type"],
        "project_dir": str(sim.path),
        "firmware_sha256": sim.firmware_sha256,
        "firmware_rebuilt": sim.rebuilt,
        "firmware_seconds": sim.firmware_seconds,
        "compile_seconds": round(sim.compile_seconds, 3),
        "hls4ml_version": package_versions(["hls4ml"])["hls4ml"],
        "dataset": {"spec_hash": ds.manifest.get("spec_hash"), "content_sha256": ds.manifest.get("content_sha256")},
    }
    out = card.report_dir()
    return run_csim(qmodel, fmodel, sim, x, y, ds.class_names, out, title=card.name, extra=extra, trace=trace)


def add_cli(sub) -> None:
    """Register `hwflow csim`."""
    p = sub.add_parser("csim", help="C-simulate the firmware on test data: float vs QKeras vs C++ report")
    p.add_argument("model", help="model card name (models/<name>.yaml) or path")
    p.add_argument(
        "-n", "--samples", type=int, default=None, help="test samples (default: hls.csim_samples of the card)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="KEY=VALUE",
        help="override a card key, e.g. --set hls.reuse_factor=2 (repeatable)",
    )
    p.add_argument("--no-trace", action="store_true", help="skip the per-layer trace (faster)")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from .config import load_card, parse_overrides

    card = load_card(args.model, parse_overrides(args.overrides))
    r = csim(card, n_samples=args.samples, trace=not args.no_trace)
    print(
        f"{r['n_samples']} samples: accuracy float {_pct(r['accuracy_float'])}, QKeras {_pct(r['accuracy_qkeras'])}, "
        f"C sim {_pct(r['accuracy_csim'])}; argmax agreement vs QKeras {_pct(r['argmax_agreement_vs_qkeras'])}, "
        f"max AUC drop vs float {_fmt(r['auc_drop_max_vs_float'])}, softmax flips {r['softmax_argmax_flips']}, "
        f"overflowing values {r['overflow_total']}"
    )
    print(f"report: {card.report_dir() / 'csim.md'}")
    return 0
