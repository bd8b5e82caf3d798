"""Collect every model's vendor, C-simulation and open-RTL numbers into reports/summary.{json,md} + plots.

Sources per model <name>:
  vendor   reports/<name>/synth.json (written by `hwflow synth`), else reports found in firmware/<name>/
  accuracy reports/<name>/csim.json  (float vs QKeras vs C simulation, written by `hwflow csim`)
  open RTL reports/<name>/rtl.json   (open flow: yosys mapping; labelled as such, never as Vivado)
Numbers are only copied from those files; where a source is missing the summary says so.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from pathlib import Path
from typing import Any

from ..util import HwflowError, atomic_write_json, atomic_write_text, project_root
from .schema import CSIM_KEYS, FIRMWARE_KEY, RESOURCE_KEYS, RTL_KEYS, STAGE_OF_REPORT
from .summary import fmt, markdown_table, res_cell, vendor_view


def model_names(root: Path) -> list[str]:
    """Return the models with a firmware/<name>/ folder or a reports/<name>/ holding synth/csim/rtl json, sorted."""
    names = set()
    fw = root / "firmware"
    if fw.is_dir():
        names.update(p.name for p in fw.iterdir() if p.is_dir() and not p.name.startswith("."))
    rep = root / "reports"
    if rep.is_dir():
        # only report folders of a model (not e.g. reports/bench/)
        names.update(
            p.name
            for p in rep.iterdir()
            if p.is_dir()
            and not p.name.startswith(".")
            and any((p / f).is_file() for f in ("synth.json", "csim.json", "rtl.json"))
        )
    from ..explore import is_trial_name  # exploration trials are summarized by their study's front, not one by one

    return sorted(n for n in names if not is_trial_name(n))


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HwflowError(f"{path}: not valid JSON ({e}): rerun the stage that writes it") from None
    if not isinstance(data, dict):
        raise HwflowError(f"{path}: expected a JSON object: rerun the stage that writes it")
    return data


def _rel(p: Path | str, root: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(root))
    except ValueError:
        return str(p)


def load_vendor(name: str, root: Path) -> dict[str, Any]:
    """Return {view, origin, errors, note} for one model's vendor reports (view None if there are none)."""
    from . import find

    out: dict[str, Any] = {"view": None, "origin": None, "errors": [], "note": None, "stale": False}
    synth_json = root / "reports" / name / "synth.json"
    fw = root / "firmware" / name
    data = _read_json(synth_json)
    if data is not None:
        records = data.get("reports") or []
        out["view"] = vendor_view(records)
        out["origin"] = f"{_rel(synth_json, root)} (hwflow synth, {data.get('finished_utc', '?')})"
        # firmware regenerated after this synthesis: the numbers describe an older design
        src = fw / "firmware"
        if src.is_dir() and not data.get(FIRMWARE_KEY):  # with a recorded hash, one_design() compares contents
            newest = max((p.stat().st_mtime for p in src.rglob("*") if p.is_file()), default=0.0)
            if newest > synth_json.stat().st_mtime:
                out["stale"] = True
                out["view"]["flags"].append(
                    f"firmware/{name}/ changed after this synthesis: numbers may be stale, rerun `make synth "
                    f"MODEL={name}`"
                )
    elif fw.is_dir():
        files = []
        try:
            files = find.find_reports(fw)
        except HwflowError as e:
            out["errors"].append(str(e))
        records = []
        for f in files:
            if f.name == "hwflow_synth.log":
                continue  # a log of a run that did not produce synth.json (failed or interrupted)
            try:
                records.append(find.parse_file(f))
            except HwflowError as e:
                out["errors"].append(str(e))
        if any(r["kind"] in ("csynth_xml", "csynth_rpt", "vivado_synth") for r in records):
            out["view"] = vendor_view(records)
            out["origin"] = f"reports found in {_rel(fw, root)}/ (not recorded by hwflow synth)"
    if out["view"] is None or (out["view"]["hls"] is None and out["view"]["vivado_synth"] is None):
        out["view"] = None
        if out["errors"]:
            out["note"] = "vendor report present but unreadable, no numbers taken (error below)"
            return out
        out["note"] = (
            f"no vendor synthesis report: not synthesized with Vitis/Vivado HLS "
            f"(run `make synth MODEL={name}` where the tools are installed)"
        )
    return out


def one_design(name: str, root: Path) -> tuple[str | None, dict[str, str]]:
    """Return (the firmware hash a summary row stands for, {report file: why its figures are left out}).

    A row holds figures of one design only: the hash of firmware/<name>/'s sources as they are now (else the
    first one recorded by csim, synth or rtl); a stage report that ran other sources is left out, and the
    message says which stage to rerun. Reports written before hashes were recorded are kept as they are.
    """
    from ..hls.project import source_sha256

    fw = root / "firmware" / name
    try:
        current = source_sha256(fw) if (fw / "firmware").is_dir() else None
    except HwflowError:
        current = None
    recorded = {}
    for file in ("csim.json", "synth.json", "rtl.json"):
        data = _read_json(root / "reports" / name / file)
        if data and data.get(FIRMWARE_KEY):
            recorded[file] = data[FIRMWARE_KEY]
    ref = current or next(iter(recorded.values()), None)
    where = f"firmware/{name}/" if current else f"reports/{name}/{next(iter(recorded), '')}"
    mismatched = {
        file: (
            f"reports/{name}/{file} ran firmware {sha[:12]}, not the design of {where} ({ref[:12]}): "
            f"rerun `make {STAGE_OF_REPORT[file]} MODEL={name}`"
        )
        for file, sha in recorded.items()
        if sha != ref
    }
    return ref, mismatched


def rtl_label(rtl: dict[str, Any]) -> str:
    """Return the source label for open-RTL numbers, e.g. 'open RTL: yosys 0.33, UltraScale+ mapping, not Vivado'."""
    if rtl.get("label"):
        return str(rtl["label"]) if "not Vivado" in str(rtl["label"]) else f"{rtl['label']}, not Vivado"
    synth = str(rtl.get("synthesizer") or "")
    if not rtl.get("resources") or not synth or synth.startswith("not run"):
        # latency/bit-exactness from simulation only; no resource mapping was run
        return f"open RTL: {rtl.get('simulator') or 'RTL simulation'}, resources not synthesized, not Vivado"
    part = str(rtl.get("part") or "")
    if re.match(r"xc(vu|ku|zu|au)\w*p|xczu|xcvu\d+p|xcvp|xcve", part, re.I):
        mapping = "UltraScale+ mapping"
    elif re.match(r"xc7", part, re.I):
        mapping = "7-series mapping"
    elif part:
        mapping = f"{part} mapping"
    else:
        mapping = "generic mapping"
    return f"open RTL: {synth}, {mapping}, not Vivado"


def collect(root: str | Path | None = None, models: list[str] | None = None) -> dict[str, Any]:
    """Return the summary dict for the given models (default: every model under firmware/ and reports/)."""
    root = Path(root) if root is not None else project_root()
    known = model_names(root)
    if models:
        unknown = [m for m in models if m not in known]
        if unknown:
            raise HwflowError(
                f"no firmware/ or reports/ folder for {', '.join(unknown)}: known models are "
                f"{', '.join(known) or 'none'}"
            )
        names = list(models)
    else:
        names = known
    rows = []
    for name in names:
        vendor = load_vendor(name, root)
        csim = _read_json(root / "reports" / name / "csim.json")
        rtl = _read_json(root / "reports" / name / "rtl.json")
        firmware_sha, mismatched = one_design(name, root)
        if "csim.json" in mismatched:
            csim = None
        if "rtl.json" in mismatched:
            rtl = None
        if "synth.json" in mismatched:
            vendor = {
                **vendor,
                "view": None,
                "origin": None,
                "note": "vendor numbers left out: " + mismatched["synth.json"],
            }
        row: dict[str, Any] = {
            "model": name,
            "vendor": vendor["view"],
            "vendor_origin": vendor["origin"],
            "vendor_note": vendor["note"],
            "vendor_errors": vendor["errors"],
            "accuracy": {k: csim.get(k) for k in CSIM_KEYS if k in csim} if csim else None,
            "accuracy_source": f"reports/{name}/csim.json" if csim else None,
            "accuracy_note": mismatched.get("csim.json", f"no C-simulation results (run `make csim MODEL={name}`)")
            if not csim
            else None,
            "firmware_sha256": firmware_sha,
            "firmware_mismatch": mismatched,
            "open_rtl": ({k: rtl.get(k) for k in RTL_KEYS if k in rtl} | {"label": rtl_label(rtl)}) if rtl else None,
            "open_rtl_source": f"reports/{name}/rtl.json" if rtl else None,
        }
        rows.append(row)
    return _clean(
        {
            "generated_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "root": str(root),
            "models": rows,
            "explore": _explore_fronts(root, names),
        }
    )


def _explore_fronts(root: Path, names: list[str]) -> list[dict]:
    from ..explore import front_summaries

    return [f for n in names for f in front_summaries(root, n)]


def _clean(obj: Any) -> Any:
    """Return obj with non-finite floats (NaN AUC of an absent class) as None, so summary.json is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _overflow_total(v: Any) -> Any:
    if isinstance(v, dict):
        vals = [x for x in v.values() if isinstance(x, (int, float))]
        return sum(vals) if len(vals) == len(v) else None
    return v


def _auc_cell(v: Any) -> str:
    if isinstance(v, dict) and v:
        nums = [x for x in v.values() if isinstance(x, (int, float)) and math.isfinite(x)]
        return f"{sum(nums) / len(nums):.4f} (mean of {len(nums)})" if nums else "-"
    return fmt(v, 4)


def to_markdown(summary: dict[str, Any], plots: list[str] | None = None) -> str:
    """Return the Markdown text of reports/summary.md."""
    rows = summary["models"]
    out = [
        "# hwflow summary",
        "",
        f"Generated {summary['generated_utc']}. Vendor numbers are copied from Vitis/Vivado HLS reports (C-synthesis "
        "estimates unless marked Vivado synthesis); latency in ns is worst-case cycles x the *estimated* clock. "
        "Open-RTL numbers come from the open flow and are labelled as such: they are not Vivado numbers.",
        "",
        "## Vendor synthesis (HLS estimates)",
        "",
    ]
    with_vendor = [r for r in rows if r["vendor"] and r["vendor"]["hls"]]
    if with_vendor:
        header = [
            "model",
            "tool",
            "part",
            "clock target / est. (ns)",
            "Fmax (MHz)",
            "latency (cycles)",
            "latency (ns @ est. clock)",
            "II",
            "LUT",
            "FF",
            "DSP",
            "BRAM_18K",
            "timing met",
            "cosim",
            "flags",
        ]
        tab = []
        for r in with_vendor:
            h = r["vendor"]["hls"]
            lat = (
                f"{fmt(h['latency_best_cycles'])}"
                if h["latency_best_cycles"] == h["latency_worst_cycles"]
                else f"{fmt(h['latency_best_cycles'])}-{fmt(h['latency_worst_cycles'])}"
            )
            ii = (
                fmt(h["interval_min"])
                if h["interval_min"] == h["interval_max"]
                else f"{fmt(h['interval_min'])}-{fmt(h['interval_max'])}"
            )
            tab.append(
                [
                    r["model"],
                    f"{fmt(h['tool'])} {fmt(h['tool_version'])}",
                    fmt(h["part"]),
                    f"{fmt(h['clock_target_ns'])} / {fmt(h['clock_estimated_ns'])}",
                    fmt(h["fmax_mhz"], 1),
                    lat,
                    fmt(h["latency_worst_ns"], 1),
                    ii,
                    *(res_cell(h, k) for k in ("LUT", "FF", "DSP", "BRAM_18K")),
                    fmt(h["timing_met"]),
                    fmt(r["vendor"]["cosim_status"]),
                    "; ".join(r["vendor"]["flags"]) or "-",
                ]
            )
        out += [markdown_table(header, tab), ""]
        out += [f"- {r['model']}: from {r['vendor_origin']}" for r in with_vendor] + [""]
    else:
        out += ["No model has a vendor synthesis report.", ""]
    missing = [r for r in rows if not (r["vendor"] and r["vendor"]["hls"])]
    for r in missing:
        if r["vendor"] and r["vendor"]["vivado_synth"]:
            out.append(f"- **{r['model']}**: no HLS C-synthesis report (only Vivado synthesis, below).")
        else:
            out.append(f"- **{r['model']}**: {r['vendor_note']}.")
    for r in rows:
        for e in r["vendor_errors"]:
            out.append(f"- **{r['model']}**: unreadable report: {e}")
    if missing or any(r["vendor_errors"] for r in rows):
        out.append("")

    viv = [r for r in rows if r["vendor"] and r["vendor"]["vivado_synth"]]
    if viv:
        out += ["## Vivado logic synthesis (post-synthesis utilization)", ""]
        tab = [
            [
                r["model"],
                f"Vivado {fmt(r['vendor']['vivado_synth']['tool_version'])}",
                fmt(r["vendor"]["vivado_synth"]["part"]),
                *(res_cell(r["vendor"]["vivado_synth"], k) for k in RESOURCE_KEYS),
            ]
            for r in viv
        ]
        out += [markdown_table(["model", "tool", "part", *RESOURCE_KEYS], tab), ""]

    out += ["## Accuracy (C simulation vs QKeras vs float)", ""]
    acc = [r for r in rows if r["accuracy"]]
    if acc:
        header = [
            "model",
            "samples",
            "acc float",
            "acc QKeras",
            "acc csim",
            "argmax agree vs QKeras",
            "argmax agree vs float",
            "max abs err vs QKeras",
            "AUC csim",
            "AUC drop max vs float",
            "overflows",
            "softmax argmax flips",
        ]
        tab = []
        for r in acc:
            a = r["accuracy"]
            tab.append(
                [
                    r["model"],
                    fmt(a.get("n_samples")),
                    fmt(a.get("accuracy_float"), 4),
                    fmt(a.get("accuracy_qkeras"), 4),
                    fmt(a.get("accuracy_csim"), 4),
                    fmt(a.get("argmax_agreement_vs_qkeras"), 4),
                    fmt(a.get("argmax_agreement_vs_float"), 4),
                    fmt(a.get("max_abs_error_vs_qkeras"), 5),
                    _auc_cell(a.get("auc_csim")),
                    fmt(a.get("auc_drop_max_vs_float"), 4),
                    fmt(
                        a["overflow_total"]
                        if a.get("overflow_total") is not None
                        else _overflow_total(a.get("overflow_counts"))
                    ),
                    fmt(a.get("softmax_argmax_flips")),
                ]
            )
        out += [markdown_table(header, tab), ""]
    for r in rows:
        if not r["accuracy"]:
            out.append(f"- **{r['model']}**: {r['accuracy_note']}.")
    out.append("")
    mixed = [(r["model"], why) for r in rows for why in (r.get("firmware_mismatch") or {}).values()]
    if mixed:
        out += ["## Left out: figures of another firmware", ""]
        out += [f"- **{m}**: {why}" for m, why in mixed] + [""]
    designs = [f"{r['model']} `{r['firmware_sha256'][:12]}`" for r in rows if r.get("firmware_sha256")]
    if designs:
        out += ["Each row holds the figures of one design (firmware sha256): " + ", ".join(designs) + ".", ""]

    rtl = [r for r in rows if r["open_rtl"]]
    if rtl:
        out += ["## Open RTL flow (not Vivado)", ""]
        tab = []
        for r in rtl:
            o = r["open_rtl"]
            res = o.get("resources") or {}
            util = o.get("utilization_pct") or {}

            def cell(k, res=res, util=util):
                return fmt(res.get(k)) + (f" ({util[k]:.1f}%)" if isinstance(util.get(k), (int, float)) else "")

            lat_ns = (
                f" ({fmt(o.get('latency_ns'), 1)} ns at the target clock)" if o.get("latency_ns") is not None else ""
            )
            tab.append(
                [
                    r["model"],
                    o["label"],
                    fmt(o.get("bit_exact_fraction_vs_csim"), 6),
                    fmt(o.get("latency_cycles")) + lat_ns,
                    fmt(o.get("interval")),
                    *(cell(k) for k in ("LUT", "FF", "DSP", "BRAM_18K")),
                ]
            )
        out += [
            markdown_table(
                ["model", "source", "bit-exact vs csim", "latency (cycles)", "II", "LUT", "FF", "DSP", "BRAM_18K"], tab
            ),
            "",
        ]
        out += [
            "Open-flow latency is measured in cycles by RTL simulation; no open tool checks timing, so ns are at the "
            "card's target clock (reports/<model>/rtl.md gives the ECP5 post-route Fmax proxy where one was run).",
            "",
        ]
    if summary.get("explore"):
        from ..explore import fronts_markdown

        out += fronts_markdown(summary["explore"])
    if plots:
        out += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    return "\n".join(out) + "\n"


def write_summary(summary: dict[str, Any], root: str | Path | None = None) -> dict[str, Path]:
    """Write reports/summary.json, summary.md and the plots atomically; return {what: path}."""
    from . import plots as _plots

    root = Path(root) if root is not None else project_root()
    out_dir = root / "reports"
    written: dict[str, Path] = {}
    plot_paths = _plots.make_plots(summary, out_dir)
    summary = dict(summary, plots=[p.name for p in plot_paths])
    written["json"] = atomic_write_json(out_dir / "summary.json", summary)
    written["md"] = atomic_write_text(out_dir / "summary.md", to_markdown(summary, [str(p) for p in plot_paths]))
    for p in plot_paths:
        written[p.stem] = p
    return written
