"""Benchmarks: C-simulation throughput of firmware/<m>/ against Keras predict, and where the C simulation's time goes.

``bench(card)`` compiles the card's firmware/<m>/ (``hwflow.hls.design``, the project every stage runs),
then runs the same test inputs through the C simulation and through ``keras.Model.predict`` in one
process, one after the other, so the ratio is measured under the same machine load. Results go to
``reports/bench/bench.{json,md}``; each model is one entry, other models' entries are kept.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time

import numpy as np

from .hls.project import PROJECT
from .util import HwflowError, atomic_write_json, atomic_write_text, cpu_info, package_versions, project_root


def bench_dir():
    """Return reports/bench/."""
    return project_root() / "reports" / "bench"


def _gxx_version() -> str | None:
    exe = shutil.which("g++")
    if not exe:
        return None
    try:
        return subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _per_sample(sim, x64: np.ndarray) -> np.ndarray:
    """Return the outputs of the C simulation called the way hls4ml's ``ModelGraph.predict`` does: one ctypes call
    per sample through ``<project>_double`` with ndpointer arguments and fresh output arrays (the 'before' path)."""
    import ctypes

    import numpy.ctypeslib as npc

    fn = getattr(sim.lib, f"{PROJECT}_double")
    fn.restype = None
    fn.argtypes = [npc.ndpointer(ctypes.c_double, flags="C_CONTIGUOUS")] * 2
    n_out = sim.n_out[0]
    out = []
    for i in range(len(x64)):
        y = np.zeros(n_out, dtype=ctypes.c_double)
        fn(np.ascontiguousarray(x64[i]), y)
        out.append(y)
    return np.asarray(out)


def _predict(sim, x64: np.ndarray, workers: int):
    """Return sim.predict(x64) on ``workers`` threads (a stand-in without the argument runs as it does)."""
    try:
        return sim.predict(x64, workers=workers)
    except TypeError:
        return sim.predict(x64)


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench(card, n_samples: int = 1000, repeats: int = 3, prepare=None, flag_split: bool = True) -> dict:
    """Return the benchmark entry of a card after writing reports/bench/bench.{json,md}.

    Runs firmware/<m>/ itself (``hwflow.hls.design``; rebuilt first when missing or stale) on the seeded,
    class-balanced test rows of ``hwflow.data.pick_rows``, and Keras ``predict`` on the same rows, one after
    the other in one process. Where the C simulation's time goes is measured by calling the same library
    three ways: once per sample as hls4ml does (Python + ctypes + arithmetic), one call per batch (arithmetic
    only) and one call per batch of hls4ml's own -O3 build (what the simulation-only flags gain; ``flag_split``,
    one more compilation).
    """
    from .data import get_dataset, pick_rows
    from .train import load_trained

    if shutil.which("g++") is None:
        raise HwflowError("g++ not found: the C simulation needs a C++ compiler; install it with `apt-get install g++`")
    if prepare is None:
        from .hls import design as prepare
    model = load_trained(card, "qkeras")
    ds = get_dataset(card, progress=False)
    n = int(n_samples)
    pick = pick_rows(ds.y_test, n, int(card["data"]["seed"]))
    x = ds.x_test[np.resize(pick, n)]  # repeat the balanced pick when the test set is smaller than n
    y_true = ds.y_test[np.resize(pick, n)]
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    t = time.perf_counter()
    sim = prepare(card, model, ds)
    prepare_s = time.perf_counter() - t

    sim.predict(x64[:2])  # warm-up: library loaded, static tables initialized, caches touched
    reps = max(1, repeats)
    csim_s = _best_of(lambda: sim.predict(x64), reps)
    one_thread_s = _best_of(lambda: _predict(sim, x64, 1), reps)
    trace_s = _best_of(lambda: sim.trace(x64), 1)
    per_sample_s = _best_of(lambda: _per_sample(sim, x64), 1)
    model.predict(x[:2], verbose=0)  # warm-up: graph traced
    keras_s = _best_of(lambda: model.predict(x, batch_size=1024, verbose=0), reps)
    csim_again_s = _best_of(lambda: sim.predict(x64), reps)  # load may have changed while Keras ran
    csim_s = min(csim_s, csim_again_s)
    keras1_n = min(len(x), 200)
    keras1_s = _best_of(lambda: [model(x[i : i + 1], training=False) for i in range(keras1_n)], 1)
    plain = _plain_build(sim, x64, reps) if flag_split else {}
    y_c = np.asarray(sim.predict(x64)).reshape(n, -1)
    y_k = np.asarray(model.predict(x, batch_size=1024, verbose=0))
    y_s = np.asarray(_per_sample(sim, x64[:50])).reshape(min(n, 50), -1)

    entry = {
        "model": card.name,
        "parameters": int(model.count_params()),
        "weights": f"trained (models/{card.name}/qkeras.h5), seeded class-balanced test rows",
        "n_samples": n,
        "classes_in_sample": int(len(np.unique(y_true))),
        "backend": card["hls"]["backend"],
        "strategy": card["hls"]["strategy"],
        "reuse_factor": card["hls"]["reuse_factor"],
        "project_dir": str(sim.path),
        "firmware_sha256": sim.firmware_sha256,
        "firmware_rebuilt": sim.rebuilt,
        "prepare_seconds": round(prepare_s, 3),
        "firmware_seconds": sim.firmware_seconds,
        "compile_seconds": round(sim.compile_seconds, 3),
        "compile_flags": " ".join(_flags(True)),
        "csim_seconds": round(csim_s, 4),
        "csim_samples_per_second": _rate(n, csim_s),
        "csim_trace_seconds": round(trace_s, 4),
        "csim_trace_samples_per_second": _rate(n, trace_s),
        "keras_predict_seconds": round(keras_s, 4),
        "keras_predict_batch_size": 1024,
        "keras_samples_per_second": _rate(n, keras_s),
        "keras_single_sample_per_second": _rate(keras1_n, keras1_s),
        "csim_over_keras_throughput": _rate(n, csim_s) / _rate(n, keras_s),
        "csim_trace_over_keras_throughput": _rate(n, trace_s) / _rate(n, keras_s),
        "time_split": {
            "per_sample_calls_seconds": round(per_sample_s, 4),
            "per_sample_calls_samples_per_second": _rate(n, per_sample_s),
            "per_sample_calls_over_keras_throughput": _rate(n, per_sample_s) / _rate(n, keras_s),
            "batch_one_thread_samples_per_second": _rate(n, one_thread_s),
            "arithmetic_us_per_sample": 1e6 * one_thread_s / n,
            "python_ctypes_overhead_us_per_sample": 1e6 * max(per_sample_s - one_thread_s, 0.0) / n,
            "overhead_share_of_per_sample_time": max(per_sample_s - one_thread_s, 0.0) / per_sample_s,
            "threads": os.cpu_count(),
            **plain,
        },
        "argmax_agreement_csim_vs_keras": float(np.mean(np.argmax(y_c, 1) == np.argmax(y_k, 1))),
        "batch_equals_per_sample": bool(np.array_equal(y_c[: len(y_s)], y_s)),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1min_at_start": load0,
            "load_avg_1min_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(),
            "gxx": _gxx_version(),
            "platform": platform.platform(),
            "cpu": cpu_info(),
        },
        "versions": package_versions(["hls4ml", "tensorflow-cpu", "qkeras", "numpy"]),
        "unix_time": time.time(),
    }
    path = bench_dir() / "bench.json"
    data = {"models": {}}
    if path.exists():
        try:
            data = json.loads(path.read_text())
            data.setdefault("models", {})
        except json.JSONDecodeError:
            data = {"models": {}}
    data["models"][card.name] = entry
    atomic_write_text(bench_dir() / "bench.md", markdown(data))
    atomic_write_json(path, data)
    return entry


def _flags(fast: bool) -> list[str]:
    from .hls.project import SIM_CXXFLAGS, SIM_EXTRA_FLAGS

    return [*SIM_CXXFLAGS, *(SIM_EXTRA_FLAGS if fast else ())]


def _plain_build(sim, x64: np.ndarray, reps: int) -> dict:
    """Return the batch throughput of the same sources built with hls4ml's flags only (what the simulation-only
    flags gain); {} for a stand-in without a project."""
    from .hls.project import CSim

    if not isinstance(sim, CSim):
        return {}
    plain = CSim(sim.graph, sim.path, fast=False)
    plain.predict(x64[:2])
    s = _best_of(lambda: plain.predict(x64, workers=1), reps)
    return {
        "hls4ml_flags": " ".join(_flags(False)),
        "hls4ml_flags_compile_seconds": round(plain.compile_seconds, 3),
        "hls4ml_flags_batch_samples_per_second": _rate(len(x64), s),
    }


def markdown(data: dict) -> str:
    """Return the benchmark table as Markdown."""
    L = [
        "# hwflow benchmarks",
        "",
        "C simulation = the compiled firmware/<m>/ project (one library call per batch through the batch entry point "
        "of its bridge, double in/out); Keras = `model.predict` of the QKeras model on the same inputs, batch 1024, "
        "same process, run right after. Trace = the C simulation recording every layer's output (what `hwflow csim` "
        "runs for its per-layer report).",
        "",
        "| model | params | g++ compile | C sim samples/s | C sim + trace samples/s | Keras samples/s (batch 1024) "
        "| Keras samples/s (batch 1) | C sim / Keras | C sim + trace / Keras | samples | load start / end |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = {n: e for n, e in sorted(data.get("models", {}).items()) if "csim_over_keras_throughput" in e}
    for name, e in rows.items():
        m = e["machine"]
        L.append(
            f"| {name} | {e['parameters']} | {e.get('compile_seconds', 0):.1f} s | "
            f"{e['csim_samples_per_second']:.0f} | {e.get('csim_trace_samples_per_second', float('nan')):.0f} | "
            f"{e['keras_samples_per_second']:.0f} | {e['keras_single_sample_per_second']:.0f} | "
            f"{e['csim_over_keras_throughput']:.2f}× | {e.get('csim_trace_over_keras_throughput', float('nan')):.2f}× "
            f"| {e['n_samples']} | {(m.get('load_avg_1min_at_start') or 0):.2f} / "
            f"{(m.get('load_avg_1min_at_end') or 0):.2f} |"
        )
    L.append("")
    split = {n: e["time_split"] for n, e in rows.items() if e.get("time_split")}
    if split:
        L += [
            "## Where the C simulation's time goes",
            "",
            "The same library called on the same rows, one thread each: once per sample as hls4ml's "
            "`ModelGraph.predict` does (Python loop + ctypes + arithmetic), once per batch (arithmetic only), and "
            "once per batch of the same sources built with hls4ml's own flags (what the simulation-only flags "
            "gain); then the batch split over every CPU (the C sim column above).",
            "",
            "| model | per-sample calls: samples/s (/ Keras) | Python + ctypes µs/sample | arithmetic µs/sample "
            "| overhead share | batch, hls4ml flags: samples/s | batch, simulation flags: samples/s | batch, all "
            "threads: samples/s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, t in split.items():
            e = rows[name]
            L.append(
                f"| {name} | {t['per_sample_calls_samples_per_second']:.0f} "
                f"({t['per_sample_calls_over_keras_throughput']:.2f}×) | "
                f"{t['python_ctypes_overhead_us_per_sample']:.1f} | {t['arithmetic_us_per_sample']:.1f} | "
                f"{t['overhead_share_of_per_sample_time'] * 100:.0f} % | "
                f"{t.get('hls4ml_flags_batch_samples_per_second', float('nan')):.0f} "
                f"(`{t.get('hls4ml_flags', '')}`) | "
                f"{t.get('batch_one_thread_samples_per_second', float('nan')):.0f} (`{e.get('compile_flags', '')}`) | "
                f"{e['csim_samples_per_second']:.0f} ({t.get('threads', '?')} threads) |"
            )
        L.append("")
    for name, e in rows.items():
        L.append(
            f"- {name}: {e['weights']} ({e.get('classes_in_sample', '?')} classes); {e['backend']} {e['strategy']} "
            f"RF {e['reuse_factor']}; firmware sha256 `{str(e.get('firmware_sha256'))[:12]}`; "
            f"argmax agreement C sim vs Keras {e['argmax_agreement_csim_vs_keras'] * 100:.1f} %; "
            f"batch outputs identical to per-sample calls: {e.get('batch_equals_per_sample')}; "
            f"{e['machine'].get('cpus')} CPUs, {e['machine'].get('gxx')}"
        )
    return "\n".join(L) + "\n"


def add_cli(sub) -> None:
    """Register `hwflow bench`."""
    p = sub.add_parser(
        "bench",
        help="C-simulation throughput of firmware/<m>/ vs Keras predict, and where its time goes -> reports/bench/",
    )
    p.add_argument("model", nargs="?", default="jet_transformer", help="model card (default: jet_transformer)")
    p.add_argument("-n", "--samples", type=int, default=1000, help="inputs timed (default 1000)")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats, best kept (default 3)")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from .config import load_card

    card = load_card(args.model)
    e = bench(card, n_samples=args.samples, repeats=args.repeats)
    print(
        f"{card.name}: C sim {e['csim_samples_per_second']:.0f}/s (trace {e['csim_trace_samples_per_second']:.0f}/s) "
        f"vs Keras {e['keras_samples_per_second']:.0f}/s: ratio {e['csim_over_keras_throughput']:.2f} "
        f"(trace {e['csim_trace_over_keras_throughput']:.2f}); hls4ml-style per-sample calls "
        f"{e['time_split']['per_sample_calls_samples_per_second']:.0f}/s"
    )
    print(f"report: {bench_dir() / 'bench.md'}")
    return 0
