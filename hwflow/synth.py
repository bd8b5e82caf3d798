"""Vendor synthesis runner: run Vitis HLS / Vivado HLS on the hls4ml project in firmware/<name>/.

The command is the one hls4ml 1.3.0 builds (``VitisBackend.build`` / ``VivadoBackend.build``):
  Vitis  : options written to ``build_opt.tcl``, then ``vitis-run --tcl build_prj.tcl --mode hls``
           (older Vitis: ``vitis_hls -f build_prj.tcl``, which sources the same ``build_opt.tcl``)
  Vivado : ``vivado_hls -f build_prj.tcl "reset=0 csim=0 synth=1 cosim=0 ..."``
The tool's output streams to the terminal and to firmware/<name>/hwflow_synth.log. Reports are
parsed only after a zero exit and only if they were written by this run (mtime after the start);
the parsed result goes atomically to reports/<name>/synth.json. Any previous synth.json is moved
to synth.previous.json first, so a failed or timed-out run never leaves a result that looks current.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .util import HwflowError, atomic_write_json, atomic_write_text, project_root

OPTION_KEYS = ("reset", "csim", "synth", "cosim", "validation", "export", "vsynth", "fifo_opt")

# backend -> (tool label, executables in order of preference)
TOOLS = {
    "Vitis": ("Vitis HLS", ("vitis-run", "vitis_hls")),
    "Vivado": ("Vivado HLS", ("vivado_hls",)),
}


def build_options(synth: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, int]:
    """Return hls4ml's build option flags (0/1) from the card's synth section and command-line overrides."""
    o = dict(overrides or {})
    opts = {
        "reset": bool(o.get("reset", False)),
        "csim": bool(o.get("csim", False)),  # C simulation is `make csim` (hls4ml/Python); off here by default
        "synth": bool(o["csynth"] if o.get("csynth") is not None else synth.get("csynth", True)),
        "cosim": bool(o["cosim"] if o.get("cosim") is not None else synth.get("cosim", False)),
        "validation": bool(o.get("validation", False)),
        "export": bool(o["export"] if o.get("export") is not None else synth.get("export", False)),
        "vsynth": bool(o["vsynth"] if o.get("vsynth") is not None else synth.get("vsynth", False)),
        "fifo_opt": bool(o.get("fifo_opt", False)),
    }
    return {k: int(opts[k]) for k in OPTION_KEYS}


def build_opt_tcl(opts: dict[str, int]) -> str:
    """Return the ``build_opt.tcl`` text hls4ml's VitisBackend writes for these options."""
    body = "".join(f"    {k:<10} {int(opts[k])}\n" for k in OPTION_KEYS)
    return "array set opt {\n" + body + "}\n"


def build_command(executable: str, opts: dict[str, int]) -> list[str]:
    """Return the argv hls4ml 1.3.0 uses for this executable (vitis-run, vitis_hls or vivado_hls)."""
    name = Path(executable).name
    if name == "vitis-run":
        return [executable, "--tcl", "build_prj.tcl", "--mode", "hls"]
    if name == "vitis_hls":
        return [executable, "-f", "build_prj.tcl"]
    if name == "vivado_hls":
        # one argument, parsed by build_prj.tcl's `regexp "$o=+(\\w+)"` loop over $::argv
        return [executable, "-f", "build_prj.tcl", " ".join(f"{k}={int(opts[k])}" for k in OPTION_KEYS)]
    raise HwflowError(f"unknown HLS executable {name!r}: expected vitis-run, vitis_hls or vivado_hls")


def find_tool(backend: str) -> tuple[str, str]:
    """Return (executable name, absolute path) of the HLS tool for the backend; HwflowError if none on PATH."""
    if backend not in TOOLS:
        raise HwflowError(f"hls.backend {backend!r} has no synthesis runner: use Vitis or Vivado")
    label, exes = TOOLS[backend]
    for exe in exes:
        path = shutil.which(exe)
        if path:
            return exe, path
    hint = ""
    if backend == "Vivado" and (shutil.which("vitis-run") or shutil.which("vitis_hls")):
        hint = " (Vitis HLS is installed: set hls.backend: Vitis in the card and rerun `make firmware`)"
    raise HwflowError(
        f"{label} not found on PATH (looked for {', '.join(exes)}){hint}: install it or run `make report` on existing "
        "reports"
    )


def read_project_tcl(fw: Path) -> dict[str, str]:
    """Return the variables hls4ml's project.tcl sets (project_name, backend, part, clock_period, ...)."""
    tcl = fw / "project.tcl"
    if not tcl.is_file():
        return {}
    out = {}
    for m in re.finditer(r'^\s*set\s+(\w+)\s+"?([^"\n]*?)"?\s*$', tcl.read_text(errors="replace"), re.M):
        out[m.group(1)] = m.group(2)
    return out


def _read_yml(fw: Path) -> dict[str, str]:
    """Return the top-level scalars of hls4ml_config.yml (Backend, Part, ClockPeriod, ProjectName, ...).

    Read with a regex rather than a YAML loader: hls4ml dumps with yaml.dump, which may carry
    Python-specific tags (!keras_model, !!python/tuple) that a safe loader rejects.
    """
    p = fw / "hls4ml_config.yml"
    if not p.is_file():
        return {}
    out = {}
    for m in re.finditer(
        r"^([A-Za-z]\w*):[ \t]+(?!!)['\"]?([^'\"\n#]+?)['\"]?[ \t]*$", p.read_text(errors="replace"), re.M
    ):
        out[m.group(1)] = m.group(2)
    return out


def _model_hls_config(fw: Path) -> dict[str, str]:
    """Return the scalar keys of HLSConfig.Model in hls4ml_config.yml (ReuseFactor, Strategy, ...)."""
    p = fw / "hls4ml_config.yml"
    if not p.is_file():
        return {}
    m = re.search(r"^HLSConfig:\n(?:[ \t]+.*\n)*?  Model:\n((?:    .*\n?)*)", p.read_text(errors="replace"), re.M)
    if not m:
        return {}
    return {k: v.strip().strip("'\"") for k, v in re.findall(r"^    (\w+):[ \t]+(\S[^\n]*)$", m.group(1), re.M)}


def check_project(card, fw: Path) -> dict[str, Any]:
    """Return project facts (name, backend, part, clock) after checking firmware/<name>/ matches the card."""
    name = card.name
    if not fw.is_dir():
        raise HwflowError(f"firmware folder {_rel(fw)} not found: run `make firmware MODEL={name}` first")
    if not (fw / "build_prj.tcl").is_file():
        raise HwflowError(
            f"{_rel(fw)}/build_prj.tcl not found (not an hls4ml project): rerun `make firmware MODEL={name}`"
        )
    prj = read_project_tcl(fw)
    yml = _read_yml(fw)
    backend = card["hls"]["backend"]
    tcl_text = (fw / "build_prj.tcl").read_text(errors="replace")
    # the Vitis writer's build_prj.tcl sources build_opt.tcl; the Vivado one parses "k=v" arguments
    written_for = "Vitis" if "build_opt.tcl" in tcl_text else "Vivado"
    if prj.get("backend", "").lower() == "vitis":
        written_for = "Vitis"
    yml_backend = str(yml.get("Backend", written_for))
    if yml_backend.lower() != backend.lower() or written_for != backend:
        raise HwflowError(
            f"{_rel(fw)} was written for the {yml_backend} backend but the card says hls.backend: {backend}: "
            f"rerun `make firmware MODEL={name}`"
        )
    part = prj.get("part") or yml.get("Part")
    clock = prj.get("clock_period") or yml.get("ClockPeriod")
    want_part, want_clock = card["hls"]["part"], float(card["hls"]["clock_period"])
    if part and part != want_part:
        raise HwflowError(
            f"{_rel(fw)} was generated for part {part} but the card says {want_part}: rerun `make firmware "
            f"MODEL={name}`"
        )
    try:
        clock = float(clock) if clock is not None else None
    except ValueError:
        raise HwflowError(
            f"{_rel(fw)}/project.tcl has clock_period {clock!r}, not a number: rerun `make firmware MODEL={name}`"
        ) from None
    if clock is not None and abs(clock - want_clock) > 1e-9:
        raise HwflowError(
            f"{_rel(fw)} was generated for a {clock:g} ns clock but the card says {want_clock:g} ns: rerun `make "
            f"firmware MODEL={name}`"
        )
    # model-level reuse/strategy may legitimately be refined per layer, so a mismatch is a warning, not an error
    warnings = []
    model_cfg = _model_hls_config(fw)
    for key, card_key in (("ReuseFactor", "reuse_factor"), ("Strategy", "strategy")):
        have, want = model_cfg.get(key), card["hls"][card_key]
        if have is not None and str(have).lower() != str(want).lower():
            warnings.append(
                f"{_rel(fw)}/hls4ml_config.yml has Model {key} {have} but the card says hls.{card_key}: {want} "
                f"(stale firmware? rerun `make firmware MODEL={name}`)"
            )
    project = prj.get("project_name") or yml.get("ProjectName") or "myproject"
    return {
        "project": project,
        "backend": backend,
        "part": part or want_part,
        "clock_period": want_clock,
        "warnings": warnings,
    }


def expected_reports(fw: Path, project: str, opts: dict[str, int]) -> dict[str, Path]:
    """Return {kind: path} of the reports this run must (re)write, given the options."""
    sol = fw / f"{project}_prj" / "solution1"
    out: dict[str, Path] = {}
    if opts["synth"]:
        out["csynth_xml"] = sol / "syn" / "report" / f"{project}_csynth.xml"
    if opts["cosim"]:
        out["cosim"] = sol / "sim" / "report" / f"{project}_cosim.rpt"
    if opts["vsynth"]:
        out["vivado_synth"] = fw / "vivado_synth.rpt"
    if opts["export"]:
        out["export"] = sol / "impl" / "ip"
    return out


def _stream(src: TextIO, sinks: list[TextIO]) -> None:
    for line in iter(src.readline, ""):
        for s in sinks:
            try:
                s.write(line)
                s.flush()
            except (ValueError, OSError):  # a closed terminal must not stop the log file
                pass


def _kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Terminate the process group we started (the tool and its children), then kill it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_tool(
    cmd: list[str], cwd: Path, log_path: Path, timeout_s: float, echo: TextIO | None = None
) -> tuple[int | None, bool]:
    """Run cmd in cwd, streaming output to ``echo`` and log_path; return (exit code, timed out)."""
    echo = sys.stdout if echo is None else echo
    with open(log_path, "w", errors="replace") as log:
        log.write(f"# hwflow synth: {shlex.join(cmd)}\n# cwd: {cwd}\n# started: {_now()}\n")
        log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,  # own group: timeout kills it all
        )
        reader = threading.Thread(target=_stream, args=(proc.stdout, [echo, log]), daemon=True)
        reader.start()
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            rc = proc.returncode
        except KeyboardInterrupt:
            _kill_group(proc)
            raise
        reader.join(timeout=10)
        log.write(f"# finished: {_now()} exit={rc}{' TIMEOUT' if timed_out else ''}\n")
    return rc, timed_out


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _last_error(log_path: Path) -> str | None:
    try:
        errs = [
            ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.lstrip().startswith("ERROR")
        ]
    except OSError:
        return None
    return errs[-1] if errs else None


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(project_root()))
    except ValueError:
        return str(p)


def _prepare_firmware(card) -> None:
    """Rebuild firmware/<m>/ through `hwflow firmware` when it is missing or stale and the trained model exists
    (without one, check_project says what to run)."""
    from .train import MODEL_FILES

    if (card.model_dir() / MODEL_FILES["qkeras"]).is_file():
        from .hls import ensure_firmware

        ensure_firmware(card)


def _firmware_sha256(fw: Path) -> str | None:
    """Return the content hash of the project's sources (what csim/rtl/bench record too), None if it has none."""
    from .hls.project import source_sha256

    try:
        return source_sha256(fw)
    except HwflowError:
        return None


@dataclass
class SynthOptions:
    """Options of one vendor run: card synth section + CLI overrides, timeout, dry run, where progress goes."""

    overrides: dict[str, Any] | None = None
    timeout_s: float | None = None
    dry_run: bool = False
    echo: TextIO | None = None


@dataclass
class SynthPlan:
    """What a run will do, decided before any tool starts: project facts, options, command, expected reports."""

    card: Any
    fw: Path
    facts: dict[str, Any]
    opts: dict[str, int]
    expected: dict[str, Path]
    existing_csynth: Path
    timeout: float
    exe: str
    exe_path: str | None
    tool_error: str | None
    cmd: list[str]
    record: dict[str, Any] = field(default_factory=dict)  # the plan part of synth.json

    @property
    def label(self) -> str:
        return TOOLS[self.facts["backend"]][0]


def plan_run(card, options: SynthOptions) -> SynthPlan:
    """Return the plan of a vendor run (raises HwflowError for an impossible request: nothing to run, cosim
    without csynth results, a bad timeout)."""
    fw = card.firmware_dir()
    if not options.dry_run:
        _prepare_firmware(card)
    facts = check_project(card, fw)
    opts = build_options(card["synth"], options.overrides)
    if not any(opts[k] for k in ("csim", "synth", "cosim", "export", "vsynth")):
        raise HwflowError("nothing to run: enable at least one of --csynth, --cosim, --vsynth, --export, --csim")
    project = facts["project"]
    existing_csynth = fw / f"{project}_prj" / "solution1" / "syn" / "report" / f"{project}_csynth.xml"
    if not opts["synth"] and (opts["cosim"] or opts["export"] or opts["vsynth"]) and not existing_csynth.is_file():
        raise HwflowError(
            f"--cosim/--export/--vsynth need C synthesis results and {_rel(existing_csynth)} is absent: add --csynth"
        )
    timeout = float(options.timeout_s if options.timeout_s is not None else card["synth"]["timeout_s"])
    if timeout <= 0:
        raise HwflowError(f"--timeout must be > 0 seconds, got {timeout}")
    try:
        exe, exe_path = find_tool(facts["backend"])
        tool_error = None
    except HwflowError as e:
        exe, exe_path, tool_error = TOOLS[facts["backend"]][1][0], None, str(e)
    cmd = build_command(exe_path or exe, opts)
    record = {
        "model": card.name,
        "backend": facts["backend"],
        "project": project,
        "firmware_dir": _rel(fw),
        "firmware_sha256": _firmware_sha256(fw),
        "options": opts,
        "timeout_s": timeout,
        "card_hls": {k: card["hls"][k] for k in ("part", "clock_period", "strategy", "reuse_factor", "io_type")},
        "warnings": facts["warnings"],
        "tool": exe,
        "tool_path": exe_path,
        "command": cmd,
    }
    expected = expected_reports(fw, project, opts)
    return SynthPlan(card, fw, facts, opts, expected, existing_csynth, timeout, exe, exe_path, tool_error, cmd, record)


def describe_dry_run(p: SynthPlan, out: TextIO) -> dict[str, Any]:
    """Print what a run would do (tool, command, build_opt.tcl, timeout, expected reports); return the plan."""
    p.record["tool_found"] = p.exe_path is not None
    p.record["expected_reports"] = {k: _rel(v) for k, v in p.expected.items()}
    print(f"[dry-run] {p.label}: {p.exe_path or p.exe + ' (NOT FOUND on PATH)'}", file=out)
    print(f"[dry-run] cd {_rel(p.fw)} && {shlex.join([p.exe] + p.cmd[1:])}", file=out)
    if p.facts["backend"] == "Vitis":
        print("[dry-run] build_opt.tcl:\n" + build_opt_tcl(p.opts).rstrip(), file=out)
    print(f"[dry-run] timeout {p.timeout:g} s; expects {', '.join(_rel(v) for v in p.expected.values())}", file=out)
    return p.record


def check_tools(p: SynthPlan) -> None:
    """Raise HwflowError when the vendor tool (or Vivado, for --vsynth) is not on PATH."""
    if p.tool_error:
        raise HwflowError(p.tool_error)
    if p.opts["vsynth"] and not shutil.which("vivado"):
        raise HwflowError(
            "Vivado (`vivado`) not found on PATH, needed for --vsynth (logic synthesis): install it or run without "
            "--vsynth"
        )


def run_vendor_tool(p: SynthPlan, out: TextIO) -> dict[str, Any]:
    """Run the tool in the firmware folder (log streamed and kept); return {started, t0, elapsed, rc, log_path}
    or raise HwflowError on a timeout or a failing exit code."""
    report_dir = p.card.report_dir()
    result_path = report_dir / "synth.json"
    if result_path.exists():
        # the old result no longer describes the firmware being rebuilt; keep it, but not as the current one
        os.replace(result_path, report_dir / "synth.previous.json")
    if p.facts["backend"] == "Vitis":
        atomic_write_text(p.fw / "build_opt.tcl", build_opt_tcl(p.opts))
    log_path = p.fw / "hwflow_synth.log"
    started, t0 = _now(), time.time()
    print(f"hwflow synth: running {p.label} ({p.exe_path}) in {_rel(p.fw)}; log: {_rel(log_path)}", file=out)
    rc, timed_out = run_tool(p.cmd, p.fw, log_path, p.timeout, echo=out)
    if timed_out:
        raise HwflowError(
            f"{p.exe} timed out after {p.timeout:g} s and was stopped; no report was written (log: {_rel(log_path)}): "
            "raise synth.timeout_s in the card or --timeout"
        )
    if rc != 0:
        err = _last_error(log_path)
        raise HwflowError(
            f"{p.exe} failed with exit code {rc}{': ' + err if err else ''}; no report was written: "
            f"see {_rel(log_path)}"
        )
    return {"started": started, "t0": t0, "elapsed": round(time.time() - t0, 1), "rc": rc, "log_path": log_path}


def collect_reports(p: SynthPlan, t0: float, log_path: Path) -> list[dict[str, Any]]:
    """Return the parsed reports this run wrote (each must be fresher than the run), plus an earlier csynth for a
    cosim/vsynth/export-only run and the tool log's summary."""
    from .report import find as _find
    from .report import hls_log

    records = []
    for kind, path in p.expected.items():
        fresh = path.exists() and path.stat().st_mtime >= t0 - 2.0  # 2 s slack for coarse file-system clocks
        if kind == "export":
            fresh = path.is_dir() and any(f.stat().st_mtime >= t0 - 2.0 for f in path.rglob("*") if f.is_file())
        if not fresh:
            raise HwflowError(
                f"{p.exe} exited 0 but did not write a fresh {_rel(path)} "
                f"({'missing' if not path.exists() else 'older than this run'}); "
                f"no report was written: see {_rel(log_path)}"
            )
        if kind != "export":
            records.append(_find.parse_file(path, kind))
    rpt = p.expected.get("csynth_xml", Path("/nonexistent")).with_suffix(".rpt")
    if rpt.exists() and rpt.stat().st_mtime >= t0 - 2.0:
        records.append(_find.parse_file(rpt, "csynth_rpt"))
    if not p.opts["synth"] and p.existing_csynth.is_file():
        # cosim/vsynth/export-only run: the C-synthesis numbers come from the earlier csynth, said so explicitly
        earlier = _find.parse_file(p.existing_csynth, "csynth_xml")
        earlier["details"]["from_earlier_run"] = True
        records.insert(0, earlier)
    # the tool printed no recognisable banner: the reports above are what counts
    with contextlib.suppress(HwflowError):
        records.append(hls_log.parse(log_path))
    return records


def write_result(p: SynthPlan, ran: dict[str, Any], records: list[dict[str, Any]], out: TextIO) -> dict[str, Any]:
    """Write reports/<m>/synth.json (plan, run facts, parsed reports, vendor summary) atomically; return it."""
    from .report.summary import vendor_view

    result = {
        **p.record,
        "status": "ok",
        "started_utc": ran["started"],
        "finished_utc": _now(),
        "elapsed_s": ran["elapsed"],
        "exit_code": ran["rc"],
        "log": _rel(ran["log_path"]),
        "reports": records,
        "summary": vendor_view(records),
    }
    if result["summary"].get("cosim_status") == "Fail":
        result["status"] = "cosim_failed"
    result_path = p.card.report_dir() / "synth.json"
    atomic_write_json(result_path, result)
    print(f"hwflow synth: wrote {_rel(result_path)}", file=out)
    for flag in result["summary"].get("flags", []):
        print(f"hwflow synth: WARNING {flag}", file=out)
    return result


def synth(
    model,
    overrides: dict[str, Any] | None = None,
    timeout_s: float | None = None,
    dry_run: bool = False,
    echo: TextIO | None = None,
) -> dict[str, Any]:
    """Run the vendor flow for a model card (name, path or loaded Card); return synth.json's content (the plan if
    dry_run)."""
    from .config import Card, load_card

    options = SynthOptions(overrides, timeout_s, dry_run, echo)
    out = sys.stdout if options.echo is None else options.echo
    card = model if isinstance(model, Card) else load_card(model)
    p = plan_run(card, options)
    for w in p.facts["warnings"]:
        print(f"hwflow synth: WARNING {w}", file=out)
    if options.dry_run:
        return describe_dry_run(p, out)
    check_tools(p)
    ran = run_vendor_tool(p, out)
    records = collect_reports(p, ran["t0"], ran["log_path"])
    return write_result(p, ran, records, out)


def _cli(args: argparse.Namespace) -> int:
    from .config import load_card, parse_overrides

    card = load_card(args.model, parse_overrides(args.card_overrides))
    overrides = {k: getattr(args, k) for k in ("csynth", "cosim", "vsynth", "export", "csim", "validation", "reset")}
    result = synth(card, overrides=overrides, timeout_s=args.timeout, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    return 1 if result.get("status") == "cosim_failed" else 0


def add_cli(subparsers) -> None:
    """Register ``hwflow synth MODEL``."""
    p = subparsers.add_parser(
        "synth",
        help="run Vitis/Vivado HLS on firmware/<model>/ and parse its reports into reports/<model>/synth.json",
        description="Run the vendor HLS flow (C synthesis, optional cosim / Vivado synthesis / IP export) on the "
        "hls4ml project written by `make firmware`. Steps default to the card's synth section.",
    )
    p.add_argument("model", help="model card name (models/<name>.yaml) or path")
    B = argparse.BooleanOptionalAction
    p.add_argument("--csynth", action=B, default=None, help="C synthesis (card: synth.csynth)")
    p.add_argument("--cosim", action=B, default=None, help="C/RTL co-simulation (card: synth.cosim)")
    p.add_argument(
        "--vsynth", action=B, default=None, help="Vivado logic synthesis, vivado_synth.rpt (card: synth.vsynth)"
    )
    p.add_argument("--export", action=B, default=None, help="export the IP (card: synth.export)")
    p.add_argument(
        "--csim", action=B, default=None, help="also run the tool's C simulation (default off; see `make csim`)"
    )
    p.add_argument("--validation", action=B, default=None, help="compare csim and cosim outputs (needs --csim --cosim)")
    p.add_argument("--reset", action=B, default=None, help="reset the HLS project/solution first")
    p.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="stop the tool after S seconds (card: synth.timeout_s)"
    )
    p.add_argument("--dry-run", action="store_true", help="show the tool, command and options; run nothing")
    p.add_argument(
        "--set",
        dest="card_overrides",
        action="append",
        metavar="KEY=VALUE",
        help="override a card key, e.g. --set hls.clock_period=4 (repeatable)",
    )
    p.set_defaults(func=_cli)
