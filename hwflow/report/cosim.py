"""Parser for C/RTL co-simulation reports (``<top>_cosim.rpt``), old and new layouts.

Old (Vivado HLS) layout: RTL | Status | Latency min/avg/max | Interval min/avg/max (8 columns).
New (Vitis HLS) layout adds "Total Execution Time (Clock Cycles)" (9 columns). Status is
Pass / Fail / NA per RTL language; the language that ran (status not NA) is reported, Verilog
first. ``NA`` numbers (e.g. interval with a single transaction) stay None.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ._table import cells, is_border
from .schema import ReportError, finalize, new_record, read_report, to_int

_RTL = ("Verilog", "VHDL", "SystemC")


def parse_table(text: str) -> tuple[dict[str, list[str]], int | None, bool]:
    """Return ({RTL language: row cells}, column count, table closed) of the cosim result table in ``text``."""
    rows: dict[str, list[str]] = {}
    ncols = None
    closed = False
    lines = text.splitlines()
    for i, line in enumerate(lines):
        c = cells(line)
        if c and c[0] in _RTL and len(c) >= 8:
            rows[c[0]] = c
            ncols = len(c)
            # the table is complete only if a border line closes it
            closed = i + 1 < len(lines) and (is_border(lines[i + 1]) or cells(lines[i + 1]) is not None)
    return rows, ncols, closed


def status_from_rows(rows: dict[str, list[str]]) -> tuple[str | None, list[str] | None]:
    """Return (status, row) of the language that ran (Fail wins over Pass if both ran), or (None, None)."""
    ran = [(lang, rows[lang]) for lang in _RTL if lang in rows and rows[lang][1] not in ("NA", "")]
    if not ran:
        return None, None
    failed = [r for r in ran if r[1][1].lower() != "pass"]
    lang, row = failed[0] if failed else ran[0]
    status = row[1].capitalize() if row[1].lower() in ("pass", "fail") else row[1]
    return status, row


def parse(path: str | Path) -> dict[str, Any]:
    """Return the unified record for a co-simulation report; raise ReportError if unreadable."""
    path = Path(path)
    text = read_report(path, "empty file, not a co-simulation report: re-run with --cosim")
    rows, ncols, closed = parse_table(text)
    if rows and not closed:
        raise ReportError(
            f"{path}: the cosim result table is not closed by a border line (truncated report?): re-run with --cosim"
        )
    if not rows:
        raise ReportError(
            f"{path}: no RTL result rows (VHDL/Verilog with Status and Latency/Interval columns); "
            "the cosim report is truncated or not a cosim report: re-run with --cosim"
        )
    rec = new_record(path, "cosim")
    status, row = status_from_rows(rows)
    rec["cosim_status"] = status
    d = rec["details"]
    d["layout"] = "vitis (9 columns)" if ncols and ncols >= 9 else "vivado_hls (8 columns)"
    d["rtl_status"] = {lang: r[1] for lang, r in rows.items()}
    m = re.search(r"Simulation tool\s*:\s*([\w.-]+?)\.?\s*$", text, re.M)
    d["simulation_tool"] = m.group(1) if m else None
    m = re.search(r"Report time\s*:\s*(.+?)\.?\s*$", text, re.M)
    d["report_time"] = m.group(1) if m else None
    if row is not None:
        d["rtl"] = row[0]
        rec["latency_best_cycles"] = to_int(row[2])
        d["latency_avg_cycles"] = to_int(row[3])
        rec["latency_worst_cycles"] = to_int(row[4])
        rec["interval_min"] = to_int(row[5])
        d["interval_avg"] = to_int(row[6])
        rec["interval_max"] = to_int(row[7])
        if len(row) >= 9:
            d["total_execution_cycles"] = to_int(row[8])
    return finalize(rec)
