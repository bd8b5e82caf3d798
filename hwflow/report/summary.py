"""Views over parsed records: one vendor view per project, and readable text tables.

``vendor_view`` combines the records of one project (csynth estimate, Vivado utilization, cosim,
log) into the numbers a person asks for, each tagged with the report it came from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .schema import HLS_VIEW_KEYS as _HLS_KEYS
from .schema import RESOURCE_KEYS


def _first(records: list[dict], kind: str) -> dict | None:
    return next((r for r in records if r.get("kind") == kind), None)


def vendor_view(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Return {hls, vivado_synth, cosim, log, cosim_status, flags} combined from one project's records."""
    records = list(records)
    hls = _first(records, "csynth_xml") or _first(records, "csynth_rpt")  # the XML is exact, the text a twin
    viv = _first(records, "vivado_synth")
    cos = _first(records, "cosim")
    log = _first(records, "log")
    view: dict[str, Any] = {
        "hls": {k: hls[k] for k in _HLS_KEYS} if hls else None,
        "vivado_synth": (
            {
                k: viv[k]
                for k in ("source", "tool", "tool_version", "part", "top", "resources", "available", "utilization_pct")
            }
            if viv
            else None
        ),
        "cosim": (
            {
                "source": cos["source"],
                "status": cos["cosim_status"],
                "latency_best_cycles": cos["latency_best_cycles"],
                "latency_worst_cycles": cos["latency_worst_cycles"],
                "interval_min": cos["interval_min"],
                "interval_max": cos["interval_max"],
            }
            if cos
            else None
        ),
        "log": (
            {
                "source": log["source"],
                "tool": log["tool"],
                "tool_version": log["tool_version"],
                "fmax_mhz": log["fmax_mhz"],
                "errors": log["errors"],
                "complete": log["details"].get("complete"),
            }
            if log
            else None
        ),
    }
    view["cosim_status"] = (cos or {}).get("cosim_status") or (log or {}).get("cosim_status")
    flags: list[str] = []
    for r in (hls, viv, cos, log):
        if r:
            flags.extend(f"{r['kind']}: {f}" for f in r["flags"] if f not in ("cosim failed",))
    if view["cosim_status"] == "Fail":
        flags.append("cosim failed")
    view["flags"] = flags
    return view


def fmt(v: Any, nd: int = 3) -> str:
    """Return a compact string for a table cell (None -> '-')."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.{nd}f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.4g}"
    return str(v)


def res_cell(rec: dict, k: str) -> str:
    """Return 'used (pct%)' or 'used / avail' for one resource of a record or view."""
    used = rec["resources"].get(k)
    if used is None:
        return "-"
    pct = rec["utilization_pct"].get(k)
    return f"{used} ({pct:.1f}%)" if pct is not None else str(used)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Return a plain aligned text table."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """Return a GitHub-flavoured Markdown table."""
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def format_records(records: list[dict[str, Any]]) -> str:
    """Return a readable text rendering of parsed records (one block per report, flags first)."""
    blocks = []
    for r in records:
        lines = [
            f"{r['source']}",
            f"  kind {r['kind']}; tool {fmt(r['tool'])} {fmt(r['tool_version'])}; "
            f"part {fmt(r['part'])}; top {fmt(r['top'])}",
        ]
        for f in r["flags"]:
            lines.append(f"  !! {f}")
        if r["clock_target_ns"] is not None or r["clock_estimated_ns"] is not None:
            lines.append(
                f"  clock: target {fmt(r['clock_target_ns'])} ns, estimated {fmt(r['clock_estimated_ns'])} ns "
                f"(Fmax {fmt(r['fmax_mhz'], 2)} MHz), timing met: {fmt(r['timing_met'])}"
            )
        if (
            r["latency_worst_cycles"] is not None
            or r["latency_best_cycles"] is not None
            or r["interval_min"] is not None
        ):
            ns = (
                f" = {fmt(r['latency_worst_ns'])} ns at the estimated clock"
                if r["latency_worst_ns"] is not None
                else ""
            )
            lines.append(
                f"  latency: {fmt(r['latency_best_cycles'])} .. {fmt(r['latency_worst_cycles'])} cycles{ns}; "
                f"II {fmt(r['interval_min'])} .. {fmt(r['interval_max'])}"
            )
        if any(v is not None for v in r["resources"].values()):
            rows = [
                [
                    k,
                    fmt(r["resources"][k]),
                    fmt(r["available"][k]),
                    fmt(r["utilization_pct"][k], 2) + ("%" if r["utilization_pct"][k] is not None else ""),
                ]
                for k in RESOURCE_KEYS
            ]
            lines += [
                "    " + ln for ln in text_table(["resource", "used", "available", "% of part"], rows).splitlines()
            ]
        if r["cosim_status"] is not None or r["kind"] == "cosim":
            rtl = r["details"].get("rtl")
            lines.append(f"  cosim: {r['cosim_status'] or 'not run (all NA)'}" + (f" ({rtl})" if rtl else ""))
        for e in r["errors"][:10]:
            lines.append(f"  {e}")
        if len(r["errors"]) > 10:
            lines.append(f"  ... {len(r['errors']) - 10} more ERROR lines")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
