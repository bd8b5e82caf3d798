"""The written hls4ml project as the one design: its content hash, its batch bridge, and its C simulation.

Every stage runs firmware/<m>/ itself: :func:`load` compiles exactly the sources of a written project
(cached by their content hash, so csim, rtl and bench share one build) and returns a :class:`CSim`
that runs them. hls4ml's own ``ModelGraph.predict`` makes one ctypes call per sample (the Python side
costs more than the fixed-point arithmetic on small models); the batch entry points written into the
project's bridge (:func:`write_batch_bridge`, part of firmware/<m>/ and of its hash) run a whole
batch, with or without the per-layer trace, in one call.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from ..util import HwflowError, project_root

PROJECT = "myproject"
MANIFEST = "hwflow_firmware.json"
# top-level files of the project that define the design (synthesis scripts, the bridge); build_lib.sh (it holds
# a random stamp per conversion), build outputs,
# test vectors, logs and hwflow's own manifest are not part of it
_TOP_SOURCES = (f"{PROJECT}_bridge.cpp", "project.tcl", "build_prj.tcl", "vivado_synth.tcl")
_SKIP_SUFFIXES = (".so", ".o", ".tmp")
# hls4ml's build_lib.sh line (-O3 -fPIC, -fno-gnu-unique); -std is fixed so the build does not depend on probing
SIM_CXXFLAGS = ("-O3", "-fPIC", "-std=c++17", "-fno-gnu-unique", "-w")
# the simulation build only (never the synthesized sources): code for this CPU
SIM_EXTRA_FLAGS = ("-march=native",)
_BATCH_MARK = "// hwflow batch entry points"


def source_files(fw: str | os.PathLike) -> list[Path]:
    """Return the files that make up the design of project ``fw``: firmware/ (C++, headers, weights) + top sources."""
    fw = Path(fw)
    files = [p for p in (fw / "firmware").rglob("*") if p.is_file() and not p.name.endswith(_SKIP_SUFFIXES)]
    files += [fw / n for n in _TOP_SOURCES if (fw / n).is_file()]
    return sorted(files)


def source_sha256(fw: str | os.PathLike) -> str:
    """Return the content hash of a project's design files (relative paths and bytes)."""
    fw = Path(fw)
    files = source_files(fw)
    if not files:
        raise HwflowError(f"{fw}: no HLS project sources (firmware/): run `hwflow firmware` first")
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(fw)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _io_sizes(graph) -> tuple[list[int], list[int]]:
    return [int(v.size()) for v in graph.get_input_variables()], [int(v.size()) for v in graph.get_output_variables()]


def write_batch_bridge(graph, fw: str | os.PathLike) -> Path:
    """Append the batch entry points to the project's bridge (``<project>_batch_double`` and ``_trace_double``).

    Each runs the project's own ``<project>_double`` wrapper on n samples in one call; the trace variant
    also copies every traced layer's output into caller buffers after each sample.
    """
    bridge = Path(fw) / f"{PROJECT}_bridge.cpp"
    text = bridge.read_text()
    if _BATCH_MARK in text:
        return bridge
    n_in, n_out = _io_sizes(graph)
    ins = [f"const double *x{i}" for i in range(len(n_in))]
    outs = [f"double *y{i}" for i in range(len(n_out))]
    args = [f"const_cast<double *>(x{i}) + (size_t)s * {k}" for i, k in enumerate(n_in)]
    args += [f"y{i} + (size_t)s * {k}" for i, k in enumerate(n_out)]
    call = f"{PROJECT}_double({', '.join(args)});"
    code = f"""
{_BATCH_MARK}: one call runs n samples (the Python side calls once per batch, not once per sample)
extern "C" {{
void {PROJECT}_batch_double({", ".join(ins + outs)}, int n) {{
    for (int s = 0; s < n; s++) {{
        {call}
    }}
}}

// with allocate_trace_storage(sizeof(double)) done: after each sample, copy layer l's output (sizes[l] values,
// named names[l]) to dst[l] + s * sizes[l]
void {PROJECT}_trace_double({", ".join(ins + outs)}, int n, int n_layers, const char **names, double **dst,
                            const int *sizes) {{
    for (int s = 0; s < n; s++) {{
        {call}
        for (int l = 0; l < n_layers; l++) {{
            std::map<std::string, void *>::iterator it = nnet::trace_outputs->find(names[l]);
            if (it != nnet::trace_outputs->end())
                std::copy((double *)it->second, (double *)it->second + sizes[l], dst[l] + (size_t)s * sizes[l]);
        }}
    }}
}}
}}
"""
    bridge.write_text(text.rstrip().removesuffix("#endif").rstrip() + "\n" + code + "\n#endif\n")
    return bridge


def build_dir(fw: Path) -> Path:
    """Return the folder of compiled simulation libraries (build/csim/), outside the project so its hash holds."""
    return project_root() / "build" / "csim"


def _compile_one(cxx: str, flags: list[str], src: Path, obj: Path, cwd: Path) -> subprocess.Popen:
    cmd = [cxx, *flags, f'-DWEIGHTS_DIR="{cwd / "firmware" / "weights"}"', "-Ifirmware/ap_types/", "-c", str(src)]
    return subprocess.Popen(
        [*cmd, "-o", str(obj)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def library(fw: str | os.PathLike, sha: str | None = None, fast: bool = True) -> tuple[Path, float]:
    """Return (path of the simulation library of project ``fw``, seconds spent compiling: 0 when cached).

    The two translation units compile in parallel; the library is cached under build/csim/ by the
    sources' hash and the flags, so every stage running the same firmware reuses one build.
    """
    from .harness import compiler

    fw = Path(fw).resolve()
    cxx = compiler()
    flags = [*SIM_CXXFLAGS, *(SIM_EXTRA_FLAGS if fast else ())]
    sha = sha or source_sha256(fw)
    # the library reads its weights from <project>/firmware/weights (WEIGHTS_DIR, fixed at compile time; hls4ml's
    # loader exits the process when a file is missing): the project's path is part of the key
    key = hashlib.sha256((sha + str(fw) + " ".join([cxx, *flags])).encode()).hexdigest()[:20]
    out = build_dir(fw) / f"{PROJECT}-{key}.so"
    if out.exists():
        return out, 0.0
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    objs = [out.with_suffix(f".{i}.{os.getpid()}.o") for i in range(2)]
    srcs = [fw / "firmware" / f"{PROJECT}.cpp", fw / f"{PROJECT}_bridge.cpp"]
    procs = [_compile_one(cxx, flags, s, o, fw) for s, o in zip(srcs, objs)]
    logs = [p.communicate()[0] for p in procs]
    try:
        for p, log, s in zip(procs, logs, srcs):
            if p.returncode != 0:
                raise HwflowError(f"C++ compilation of {s} failed (g++ {' '.join(flags)}): {log[-3000:]}")
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        r = subprocess.run([cxx, *flags, "-shared", *map(str, objs), "-o", str(tmp)], capture_output=True, text=True)
        if r.returncode != 0:
            raise HwflowError(f"linking the C simulation of {fw} failed: {r.stderr[-3000:]}")
        os.replace(tmp, out)
    finally:
        for o in objs:
            o.unlink(missing_ok=True)
    return out, time.perf_counter() - t0


class CSim:
    """The compiled C simulation of one written project, with the ModelGraph that describes its layers.

    ``predict(x)`` and ``trace(x)`` run the batch entry points of the project's bridge; every other
    attribute (``get_layers()``, ``config``, ...) is the ModelGraph's, so report code reads layer types
    and names as from hls4ml.
    """

    def __init__(self, graph, fw: str | os.PathLike, fast: bool = True):
        self.graph = graph
        self.path = Path(fw)
        top = self.path / "firmware" / f"{PROJECT}.cpp"
        if "load_weights_from_txt" in top.read_text() and not (self.path / "firmware" / "weights").is_dir():
            raise HwflowError(f"{self.path}/firmware/weights not found: rerun `hwflow firmware` for this project")
        self.rebuilt: str | None = None  # why hwflow.hls.design rebuilt the project first (None: it was fresh)
        self.firmware_seconds = 0.0
        self.firmware_sha256 = source_sha256(self.path)
        self.library_path, self.compile_seconds = library(self.path, self.firmware_sha256, fast=fast)
        self.lib = ctypes.CDLL(str(self.library_path))
        self.n_in, self.n_out = _io_sizes(graph)
        self._traced = [
            (ly.name, int(np.prod(ly.get_output_variable().shape)), tuple(ly.get_output_variable().shape))
            for ly in graph.get_layers()
            if ly.get_attr("function_cpp", None) and ly.get_attr("trace", False)
        ]

    def __getattr__(self, name):
        return getattr(self.__dict__["graph"], name)

    def _inputs(self, x) -> tuple[list[np.ndarray], int]:
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(xs) != len(self.n_in):
            raise HwflowError(f"the design has {len(self.n_in)} inputs, got {len(xs)} arrays")
        n = int(np.asarray(xs[0]).shape[0])
        flat = [np.ascontiguousarray(np.asarray(a, np.float64).reshape(n, -1)) for a in xs]
        for a, k in zip(flat, self.n_in):
            if a.shape[1] != k:
                raise HwflowError(f"input of {a.shape[1]} values per sample, the design expects {k}")
        return flat, n

    @staticmethod
    def _ptr(a: np.ndarray):
        return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

    def _outputs(self, ys: list[np.ndarray]):
        return ys[0] if len(ys) == 1 else ys

    def _run(self, xs: list[np.ndarray], ys: list[np.ndarray], a: int, b: int) -> None:
        """Run samples [a, b) through the batch entry point (ctypes releases the GIL: threads run in parallel)."""
        if b > a:
            fn = getattr(self.lib, f"{PROJECT}_batch_double")
            fn.restype = None
            fn(*(self._ptr(v[a:b]) for v in (*xs, *ys)), ctypes.c_int(b - a))

    def predict(self, x, workers: int | None = None):
        """Return the C simulation's outputs (n, values) for inputs ``x`` (n samples, any shape).

        One library call per batch; large batches are split over ``workers`` threads (default: every CPU) by
        Dask's threaded scheduler. The first sample runs alone: it loads the weights and fills the static
        tables of the generated code, which the threads then only read.
        """
        xs, n = self._inputs(x)
        ys = [np.zeros((n, k), np.float64) for k in self.n_out]
        self._run(xs, ys, 0, min(n, 1))
        workers = max(1, int(workers or os.cpu_count() or 1))
        if workers > 1 and n >= 64 * workers:
            import dask

            cut = np.linspace(1, n, workers + 1).round().astype(int)
            parts = [dask.delayed(self._run)(xs, ys, int(a), int(b)) for a, b in zip(cut[:-1], cut[1:])]
            dask.compute(*parts, scheduler="threads", num_workers=workers)
        else:
            self._run(xs, ys, 1, n)
        return self._outputs(ys)

    def trace(self, x):
        """Return (outputs, {layer name: (n, *shape) outputs}) of the C simulation with every traced layer."""
        xs, n = self._inputs(x)
        ys = [np.zeros((n, k), np.float64) for k in self.n_out]
        bufs = [np.zeros((n, size), np.float64) for _, size, _ in self._traced]
        k = len(self._traced)
        names = (ctypes.c_char_p * k)(*[name.encode() for name, _, _ in self._traced])
        dst = (ctypes.POINTER(ctypes.c_double) * k)(*map(self._ptr, bufs))
        sizes = (ctypes.c_int * k)(*[size for _, size, _ in self._traced])
        self.lib.allocate_trace_storage.argtypes = [ctypes.c_size_t]
        self.lib.allocate_trace_storage(ctypes.sizeof(ctypes.c_double))
        try:
            fn = getattr(self.lib, f"{PROJECT}_trace_double")
            fn.restype = None
            fn(*map(self._ptr, xs), *map(self._ptr, ys), ctypes.c_int(n), ctypes.c_int(k), names, dst, sizes)
        finally:
            self.lib.free_trace_storage()
        traced = {name: b.reshape(n, *shape) for (name, _, shape), b in zip(self._traced, bufs)}
        return self._outputs(ys), traced
