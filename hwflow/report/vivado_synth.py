"""Parser for Vivado ``report_utilization`` output (hls4ml's ``vivado_synth.rpt``).

Columns are read by header name, so tables with and without the "Prohibited" column (Vivado
2020+ vs older) both work; LUT/FF rows are "CLB LUTs"/"CLB Registers" (UltraScale) or
"Slice LUTs"/"Slice Registers" (7-series). Block RAM is reported in 36 Kb tiles, possibly
fractional (a RAMB18 is half a tile); the schema counts 18 Kb blocks like the HLS reports:
BRAM_18K = 2 x RAMB36 + RAMB18 (falling back to 2 x tiles when the split is absent).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ._table import tables
from .schema import finalize, new_record, read_report, require, to_float, to_int

_ROWS = {
    "LUT": ("CLB LUTs", "Slice LUTs"),
    "FF": ("CLB Registers", "Slice Registers"),
    "DSP": ("DSPs",),
    "URAM": ("URAM",),
    "_tile": ("Block RAM Tile",),
    "_ramb36": ("RAMB36/FIFO",),
    "_ramb18": ("RAMB18",),
}


def _site_rows(lines: list[str]) -> dict[str, dict[str, str]]:
    """Return {site type: {column: cell}} for the first occurrence of each site type in any table."""
    out: dict[str, dict[str, str]] = {}
    for _, rows in tables(lines):
        header = next((r for r in rows if r and r[0] == "Site Type"), None)
        if not header:
            continue
        for row in rows:
            if row is header or not row or not row[0]:
                continue
            name = row[0].rstrip("*").strip()
            if name not in out:
                out[name] = dict(zip(header, row))
    return out


def parse(path: str | Path) -> dict[str, Any]:
    """Return the unified record for a Vivado utilization report; raise ReportError if unreadable."""
    path = Path(path)
    text = read_report(path, "empty file, not a Vivado utilization report: re-run Vivado synthesis (--vsynth)")
    lines = text.splitlines()
    rec = new_record(path, "vivado_synth")
    rec["tool"] = "Vivado"

    m = re.search(r"^\|\s*Tool Version\s*:\s*Vivado v\.?(\S+)(?:.*?Build\s+(\d+))?", text, re.M)
    if m:
        rec["tool_version"] = m.group(1)
        if m.group(2):
            rec["details"]["tool_build"] = m.group(2)
    for key, field in (("Design", "top"), ("Device", "part")):
        m = re.search(rf"^\|\s*{key}\s*:\s*(\S+)", text, re.M)
        if m:
            rec[field] = m.group(1)
    m = re.search(r"^\|\s*Design State\s*:\s*(.+?)\s*$", text, re.M)
    if m:
        rec["details"]["design_state"] = m.group(1)
    m = re.search(r"^\|\s*Command\s*:\s*(.+?)\s*$", text, re.M)
    if m:
        rec["details"]["command"] = m.group(1)

    rows = _site_rows(lines)

    def pick(names: tuple[str, ...]) -> dict[str, str] | None:
        return next((rows[n] for n in names if n in rows), None)

    used: dict[str, Any] = {}
    avail: dict[str, Any] = {}
    for key, names in _ROWS.items():
        row = pick(names)
        if row is None:
            continue
        used[key] = to_float(row.get("Used"))
        avail[key] = to_float(row.get("Available"))
        if key in ("LUT", "FF", "DSP", "URAM"):
            rec["resources"][key] = to_int(used[key]) if used[key] is not None else None
            rec["available"][key] = to_int(avail[key]) if avail[key] else None
    # 18 Kb block count, comparable with the HLS estimate's BRAM_18K
    if used.get("_ramb36") is not None or used.get("_ramb18") is not None:
        rec["resources"]["BRAM_18K"] = int(round(2 * (used.get("_ramb36") or 0) + (used.get("_ramb18") or 0)))
    elif used.get("_tile") is not None:
        rec["resources"]["BRAM_18K"] = int(round(2 * used["_tile"]))
    if avail.get("_ramb18"):
        rec["available"]["BRAM_18K"] = int(avail["_ramb18"])
    elif avail.get("_tile"):
        rec["available"]["BRAM_18K"] = int(round(2 * avail["_tile"]))
    rec["details"]["bram_tiles"] = used.get("_tile")
    rec["details"]["ramb36"] = used.get("_ramb36")
    rec["details"]["ramb18"] = used.get("_ramb18")
    rec["details"]["util_pct_reported"] = {
        k: to_float(pick(_ROWS[k]).get("Util%")) for k in ("LUT", "FF", "DSP", "URAM") if pick(_ROWS[k])
    }

    require(
        rec,
        path,
        {
            "'CLB LUTs'/'Slice LUTs' row": rec["resources"]["LUT"],
            "'CLB Registers'/'Slice Registers' row": rec["resources"]["FF"],
            "'Block RAM Tile' row": used.get("_tile"),
            "'DSPs' row": rec["resources"]["DSP"],
        },
        "Vivado utilization report",
    )
    return finalize(rec)
