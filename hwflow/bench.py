"""Benchmarks: hls4ml convert + compile time of a model, and C-simulation throughput against Keras predict.

``bench(card)`` converts the card's trained QKeras model with ``hwflow.hls.convert``, compiles the
C++ (g++, as ``hls_model.compile()``), then runs the same test inputs through the compiled C
simulation and through ``keras.Model.predict`` in one process, one after the other, so the ratio
is measured under the same machine load. Results go to ``reports/bench/bench.{json,md}``; each model
is one entry, other models' entries are kept.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time

import numpy as np

from .util import HwflowError, atomic_write_json, atomic_write_text, package_versions, project_root


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


def _inputs(card, n: int):
    """Return (model, x, weights note): the trained model with test inputs, else an untrained one with random inputs."""
    from .train import load_trained

    try:
        model = load_trained(card, "qkeras")
    except HwflowError:
        model = None
    if model is not None:
        from .data import get_dataset

        ds = get_dataset(card, progress=False)
        x = ds.x_test[:n]
        if len(x) < n:  # repeat the test set to reach n samples
            x = np.concatenate([x] * (n // max(len(x), 1) + 1))[:n]
        return model, x, f"trained (models/{card.name}/qkeras.h5), test-set inputs"
    from .nn import build
    from .train import set_seed

    set_seed(int(card["train"]["seed"]))
    model = build(card, quantized=True)
    shape = tuple(int(s) for s in model.input_shape[1:])
    x = np.random.default_rng(0).normal(size=(n, *shape)).astype(np.float32)
    return model, x, "untrained (no trained model found), random normal inputs: timings only"


def bench(card, n_samples: int = 1000, repeats: int = 3, converter=None) -> dict:
    """Return the benchmark entry of a card after writing reports/bench/bench.{json,md}."""
    if converter is None:
        try:
            from .hls import convert as converter
        except ImportError as e:
            raise HwflowError(f"hwflow.hls.convert is not available ({e}): the hls4ml extension is missing") from None
    if shutil.which("g++") is None:
        raise HwflowError("g++ not found: the C simulation needs a C++ compiler; install it with `apt-get install g++`")
    model, x, note = _inputs(card, int(n_samples))
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    out_dir = project_root() / "build" / "bench" / card.name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    t = time.perf_counter()
    hls_model = converter(card, model, output_dir=str(out_dir), calibration_data=x)
    convert_s = time.perf_counter() - t
    t = time.perf_counter()
    hls_model.compile()
    compile_s = time.perf_counter() - t

    hls_model.predict(x64[:2])  # warm-up: library loaded, caches touched
    csim_s = _best_of(lambda: hls_model.predict(x64), max(1, repeats - 1))
    model.predict(x[:2], verbose=0)  # warm-up: graph traced
    keras_s = _best_of(lambda: model.predict(x, batch_size=1024, verbose=0), repeats)
    keras1_n = min(len(x), 200)
    keras1_s = _best_of(lambda: [model(x[i : i + 1], training=False) for i in range(keras1_n)], 1)
    y_c = np.asarray(hls_model.predict(x64)).reshape(len(x), -1)
    y_k = np.asarray(model.predict(x, batch_size=1024, verbose=0))

    n = len(x)
    entry = {
        "model": card.name,
        "parameters": int(model.count_params()),
        "weights": note,
        "n_samples": n,
        "backend": card["hls"]["backend"],
        "strategy": card["hls"]["strategy"],
        "reuse_factor": card["hls"]["reuse_factor"],
        "convert_seconds": round(convert_s, 3),
        "compile_seconds": round(compile_s, 3),
        "convert_plus_compile_seconds": round(convert_s + compile_s, 3),
        "csim_seconds": round(csim_s, 4),
        "csim_samples_per_second": n / csim_s,
        "keras_predict_seconds": round(keras_s, 4),
        "keras_predict_batch_size": 1024,
        "keras_samples_per_second": n / keras_s,
        "keras_single_sample_per_second": keras1_n / keras1_s,
        "csim_over_keras_throughput": (n / csim_s) / (n / keras_s),
        "argmax_agreement_csim_vs_keras": float(np.mean(np.argmax(y_c, 1) == np.argmax(y_k, 1))),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1min_at_start": load0,
            "python": platform.python_version(),
            "gxx": _gxx_version(),
            "platform": platform.platform(),
        },
        "versions": package_versions(["hls4ml", "tensorflow-cpu", "qkeras", "numpy"]),
        "project_dir": str(out_dir),
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


def markdown(data: dict) -> str:
    """Return the benchmark table as Markdown."""
    L = [
        "# hwflow benchmarks",
        "",
        "C simulation = the compiled hls4ml C++ (`hls_model.predict`, one call per sample, double in/out); "
        "Keras = `model.predict` of the QKeras model on the same inputs, batch 1024, same process, run right after.",
        "",
        "| model | params | convert | g++ compile | C sim samples/s | Keras samples/s (batch 1024) | Keras samples/s "
        "(batch 1) | C sim / Keras | samples | load at start |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = {n: e for n, e in sorted(data.get("models", {}).items()) if "csim_over_keras_throughput" in e}
    for name, e in rows.items():
        L.append(
            f"| {name} | {e['parameters']} | {e['convert_seconds']:.1f} s | {e['compile_seconds']:.1f} s | "
            f"{e['csim_samples_per_second']:.0f} | {e['keras_samples_per_second']:.0f} | "
            f"{e['keras_single_sample_per_second']:.0f} | "
            f"{e['csim_over_keras_throughput']:.3f}× | {e['n_samples']} | "
            f"{(e['machine'].get('load_avg_1min_at_start') or 0):.2f} |"
        )
    L.append("")
    for name, e in rows.items():
        L.append(
            f"- {name}: {e['weights']}; {e['backend']} {e['strategy']} RF {e['reuse_factor']}; "
            f"argmax agreement C sim vs Keras {e['argmax_agreement_csim_vs_keras'] * 100:.1f} %; "
            f"{e['machine'].get('cpus')} CPUs, {e['machine'].get('gxx')}"
        )
    return "\n".join(L) + "\n"


def add_cli(sub) -> None:
    """Register `hwflow bench`."""
    p = sub.add_parser("bench", help="convert/compile time and C-simulation throughput vs Keras -> reports/bench/")
    p.add_argument("model", nargs="?", default="jet_transformer", help="model card (default: jet_transformer)")
    p.add_argument("-n", "--samples", type=int, default=1000, help="inputs timed (default 1000)")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats, best kept (default 3)")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from .config import load_card

    card = load_card(args.model)
    e = bench(card, n_samples=args.samples, repeats=args.repeats)
    print(
        f"{card.name}: convert {e['convert_seconds']:.1f} s + compile {e['compile_seconds']:.1f} s; "
        f"C sim {e['csim_samples_per_second']:.0f}/s vs Keras {e['keras_samples_per_second']:.0f}/s "
        f"(ratio {e['csim_over_keras_throughput']:.3f})"
    )
    print(f"report: {bench_dir() / 'bench.md'}")
    return 0
