"""Compare two runs of a model (e.g. two reuse factors or precisions) side by side with deltas.

A run is a report folder (reports/<name>/ with synth.json and csim.json), a synth.json file, an
hls4ml project folder (its vendor reports are found), or a single report file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..util import HwflowError
from .find import load_synth_json
from .schema import CSIM_KEYS, RESOURCE_KEYS
from .summary import fmt, markdown_table, vendor_view


def load_run(path: str | Path) -> dict[str, Any]:
    """Return {label, path, view, accuracy} for one run (see module doc for accepted paths)."""
    from . import find

    path = Path(path)
    accuracy = None
    card = None
    if path.is_dir() and (path / "synth.json").is_file():
        synth_json = path / "synth.json"
    elif path.is_file() and path.name.endswith(".json"):
        synth_json = path
    else:
        synth_json = None
    if synth_json is not None:
        data = load_synth_json(synth_json)
        view = vendor_view(data["reports"])
        card = data.get("card_hls")  # the settings the run was made with (reuse factor, strategy, ...)
        csim = synth_json.parent / "csim.json"
        if csim.is_file():
            accuracy = json.loads(csim.read_text())
    else:
        view = vendor_view(find.parse_path(path))
        if path.is_dir() and (path / "csim.json").is_file():
            accuracy = json.loads((path / "csim.json").read_text())
    if view["hls"] is None and view["vivado_synth"] is None and view["cosim"] is None:
        raise HwflowError(
            f"{path}: no synthesis or cosim numbers to compare (only a log?): pass a report folder or csynth report"
        )
    return {"label": str(path), "path": str(path), "view": view, "accuracy": accuracy, "card": card}


def metrics(run: dict[str, Any]) -> dict[str, Any]:
    """Return the flat {metric name: value} of a run used in the comparison table."""
    v = run["view"]
    m: dict[str, Any] = {f"card.{k}": val for k, val in (run.get("card") or {}).items()}
    h = v["hls"]
    if h:
        for k in (
            "part",
            "top",
            "clock_target_ns",
            "clock_estimated_ns",
            "fmax_mhz",
            "latency_best_cycles",
            "latency_worst_cycles",
            "latency_worst_ns",
            "interval_min",
            "interval_max",
            "timing_met",
        ):
            m[f"hls.{k}"] = h[k]
        for k in RESOURCE_KEYS:
            m[f"hls.{k}"] = h["resources"][k]
            m[f"hls.{k}_pct"] = h["utilization_pct"][k]
    s = v["vivado_synth"]
    if s:
        for k in RESOURCE_KEYS:
            m[f"vivado_synth.{k}"] = s["resources"][k]
            m[f"vivado_synth.{k}_pct"] = s["utilization_pct"][k]
    c = v["cosim"]
    if c:
        for k in ("latency_best_cycles", "latency_worst_cycles", "interval_min", "interval_max"):
            m[f"cosim.{k}"] = c[k]
    m["cosim.status"] = v["cosim_status"]
    acc = run.get("accuracy") or {}
    for k in CSIM_KEYS:
        if k in acc and not isinstance(acc[k], (dict, list)):  # per-class/per-layer dicts stay in csim.md
            m[f"accuracy.{k}"] = acc[k]
    return m


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def compare(a: str | Path, b: str | Path) -> dict[str, Any]:
    """Return {a, b, rows: [{metric, a, b, delta, delta_pct}], notes} comparing run A (base) with run B."""
    ra, rb = load_run(a), load_run(b)
    ma, mb = metrics(ra), metrics(rb)
    rows = []
    for k in list(ma) + [k for k in mb if k not in ma]:
        va, vb = ma.get(k), mb.get(k)
        if va is None and vb is None:
            continue
        delta = delta_pct = None
        if _num(va) and _num(vb):
            delta = vb - va
            delta = round(delta, 6) if isinstance(delta, float) else delta
            delta_pct = round(100.0 * delta / va, 2) if va else None
        rows.append({"metric": k, "a": va, "b": vb, "delta": delta, "delta_pct": delta_pct, "changed": va != vb})
    notes = []
    if ma.get("hls.top") and mb.get("hls.top") and ma["hls.top"] != mb["hls.top"]:
        notes.append(f"different top functions ({ma['hls.top']} vs {mb['hls.top']}): are these runs of the same model?")
    if ma.get("hls.part") and mb.get("hls.part") and ma["hls.part"] != mb["hls.part"]:
        notes.append(f"different parts ({ma['hls.part']} vs {mb['hls.part']}): % of part is not comparable")
    return {
        "a": ra["label"],
        "b": rb["label"],
        "rows": rows,
        "notes": notes,
        "flags_a": ra["view"]["flags"],
        "flags_b": rb["view"]["flags"],
    }


def to_markdown(cmp: dict[str, Any]) -> str:
    """Return the comparison as a Markdown table (B - A deltas, % relative to A)."""
    out = [f"# Compare\n\n- A: `{cmp['a']}`\n- B: `{cmp['b']}`\n"]
    out += [f"> note: {n}\n" for n in cmp["notes"]]
    tab = []
    for r in cmp["rows"]:
        d = fmt(r["delta"]) if r["delta"] is not None else ("changed" if r["changed"] else "")
        if r["delta"] is not None and r["delta"] > 0:
            d = "+" + d
        pct = "" if r["delta_pct"] is None else f"{r['delta_pct']:+.2f}%"
        tab.append([r["metric"], fmt(r["a"]), fmt(r["b"]), d, pct])
    out.append(markdown_table(["metric", "A", "B", "delta (B-A)", "delta %"], tab))
    for side in ("a", "b"):
        for f in cmp[f"flags_{side}"]:
            out.append(f"\n- {side.upper()}: {f}")
    return "\n".join(out) + "\n"
