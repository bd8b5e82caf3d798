"""Parser for Vivado HLS / Vitis HLS C-synthesis text reports (``<top>_csynth.rpt``).

Handles the Vivado HLS and Vitis HLS layouts: DSP column ``DSP48E`` or ``DSP``, the
"(Vivado IP Flow Target)" solution suffix, and the extra ``Available SLR`` / ``Utilization SLR (%)``
rows newer Vitis prints before the whole-part ``Available`` row (only the latter is the part).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ._table import find_line, tables
from .schema import RESOURCE_KEYS, ReportError, finalize, new_record, read_report, require, to_float, to_int

_COL_ALIASES = {"DSP48E": "DSP", "DSP48": "DSP", "DSP58": "DSP"}


def _first_table_after(lines: list[str], pattern: str, start: int = 0) -> list[list[str]] | None:
    i = find_line(lines, pattern, start)
    if i < 0:
        return None
    found = tables(lines, i)
    return found[0][1] if found else None


def _resource_row(header: list[str], row: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(RESOURCE_KEYS)
    for name, value in zip(header[1:], row[1:]):
        key = _COL_ALIASES.get(name, name)
        if key in out:
            # '-' in the Total row means none of that resource
            out[key] = 0 if value.strip() == "-" else to_int(value)
    return out


def parse(path: str | Path) -> dict[str, Any]:
    """Return the unified record for a ``*_csynth.rpt`` text report; raise ReportError if unreadable."""
    path = Path(path)
    text = read_report(path, "empty file, not a csynth text report: re-run C synthesis")
    lines = text.splitlines()
    rec = new_record(path, "csynth_rpt")

    m = re.search(r"==\s*(Vivado HLS|Vitis HLS)\s+Report for '([^']+)'", text)
    if not m:
        raise ReportError(f"{path}: no '== Vivado HLS/Vitis HLS Report for ...' header; not a csynth text report")
    rec["tool"], rec["top"] = m.group(1), m.group(2)
    m = re.search(r"^\*\s*Version:\s*(\S+)(?:\s*\(Build\s+(\d+))?", text, re.M)
    if m:
        rec["tool_version"] = m.group(1)
        if m.group(2):
            rec["details"]["tool_build"] = m.group(2)
    m = re.search(r"^\*\s*Target device:\s*(\S+)", text, re.M)
    rec["part"] = m.group(1) if m else None
    m = re.search(r"^\*\s*Solution:\s*(.+)$", text, re.M)
    if m:
        rec["details"]["solution"] = m.group(1).strip()
    m = re.search(r"^\*\s*Product family:\s*(\S+)", text, re.M)
    if m:
        rec["details"]["product_family"] = m.group(1)

    perf = find_line(lines, r"^==\s*Performance Estimates")
    util = find_line(lines, r"^==\s*Utilization Estimates")

    # + Timing: | Clock | Target | Estimated | Uncertainty |
    timing = _first_table_after(lines, r"^\+\s*Timing", max(perf, 0)) if perf >= 0 else None
    if timing:
        for row in timing:
            if len(row) >= 3 and row[0] and row[0] != "Clock":
                rec["clock_target_ns"] = to_float(row[1])
                rec["clock_estimated_ns"] = to_float(row[2])
                if len(row) > 3:
                    rec["details"]["clock_uncertainty_ns"] = to_float(row[3])
                break

    # + Latency: * Summary: the data row is the last row of the first table
    latency = _first_table_after(lines, r"^\+\s*Latency", max(perf, 0)) if perf >= 0 else None
    lat_seen = False
    if latency:
        data = [r for r in latency if r and re.match(r"^[\d?]", r[0] or "")]
        if data:
            row = data[0]
            lat_seen = True
            rec["latency_best_cycles"] = to_int(row[0])
            rec["latency_worst_cycles"] = to_int(row[1])
            if len(row) >= 6:
                # 2019+: cycles min/max | absolute min/max | interval min/max | pipeline type
                rec["details"]["latency_absolute"] = [row[2], row[3]]
                rec["interval_min"], rec["interval_max"] = to_int(row[4]), to_int(row[5])
                if len(row) >= 7:
                    rec["details"]["pipeline_type"] = row[6]
            elif len(row) >= 4:
                # Vivado HLS <= 2018: latency min/max | interval min/max | pipeline type (no absolute columns)
                rec["interval_min"], rec["interval_max"] = to_int(row[2]), to_int(row[3])
                if len(row) >= 5:
                    rec["details"]["pipeline_type"] = row[4]

    # Utilization Estimates * Summary: rows Total / Available SLR / Available / Utilization (%)
    summary = _first_table_after(lines, r"^\*\s*Summary", util) if util >= 0 else None
    total_seen = False
    if summary:
        header = next((r for r in summary if r and r[0] == "Name"), None)
        if header:
            for row in summary:
                name = row[0]
                if name == "Total":
                    rec["resources"] = _resource_row(header, row)
                    total_seen = True
                elif name == "Available":
                    rec["available"] = _resource_row(header, row)
                elif name == "Available SLR":
                    rec["details"]["available_slr"] = _resource_row(header, row)
                elif name == "Utilization (%)":
                    rec["details"]["utilization_pct_reported"] = _resource_row(header, row)
            dsp_col = next((h for h in header if h.startswith("DSP")), None)
            rec["details"]["dsp_tag"] = dsp_col

    require(
        rec,
        path,
        {
            "'Target device'": rec["part"],
            "'Timing' summary (target/estimated clock)": rec["clock_estimated_ns"],
            "'Latency' summary row": True if lat_seen else None,
            "'Utilization Estimates' Total row": True if total_seen else None,
            "'Utilization Estimates' Available row": True
            if any(v is not None for v in rec["available"].values())
            else None,
        },
        "csynth text report",
    )
    return finalize(rec)
