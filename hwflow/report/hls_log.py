"""Parser for HLS tool logs (``vivado_hls.log``, ``vitis_hls.log``, hwflow's ``hwflow_synth.log``).

A log carries what the reports do not: the tool banner (name + version), the estimated Fmax
line (``HLS 200-789``), every ``ERROR:`` line, which phases completed, the echoed cosim table
and whether the tool exited. Latency/resources are not taken from logs (use the csynth report).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import cosim as _cosim
from .schema import ReportError, finalize, new_record, read_report, to_float

_BANNER = re.compile(
    r"^\*{4,}\s+(Vivado\(TM\) HLS|Vivado HLS|Vitis HLS|vitis-run|Vitis|Vivado)\b.*?\bv(\d{4}\.\d+(?:\.\d+)?)",
    re.M,
)
_PHASES = {
    "csim": "C SIMULATION",
    "csynth": "C/RTL SYNTHESIS",
    "cosim": "C/RTL SIMULATION",
    "export": "EXPORT IP",
    "vsynth": "VIVADO SYNTHESIS",
}


def tool_name(banner: str) -> str:
    """Return the canonical tool name for a log banner word ('Vivado(TM) HLS' -> 'Vivado HLS')."""
    b = banner.replace("(TM)", "").strip()
    return {"vitis-run": "Vitis HLS", "Vitis": "Vitis HLS"}.get(b, b)


def parse_text(text: str, path: str | Path) -> dict[str, Any]:
    """Return the unified record for the text of an HLS log; raise ReportError if it is not one."""
    rec = new_record(path, "log")
    d = rec["details"]
    m = _BANNER.search(text)
    if m:
        rec["tool"] = tool_name(m.group(1))
        rec["tool_version"] = m.group(2)
        d["banner"] = m.group(0).strip("* ").strip()
    m = re.search(r"Running: set_top\s+(\S+)", text) or re.search(r"Synthesizing '([^']+)'", text)
    rec["top"] = m.group(1) if m else None
    m = re.search(r"Setting target device to '([^']+)'", text)
    rec["part"] = m.group(1) if m else None
    m = re.search(r"Setting up clock '[^']*' with a period of ([\d.]+)\s*ns", text)
    rec["clock_target_ns"] = to_float(m.group(1)) if m else None
    fm = re.findall(r"Estimated Fmax:\s*([\d.]+)\s*MHz", text)
    if fm:
        # the last estimate is the final one (a log may hold several synthesis runs)
        rec["fmax_mhz"] = float(fm[-1])
        rec["clock_estimated_ns"] = round(1000.0 / rec["fmax_mhz"], 3)
    rec["errors"] = [ln.strip() for ln in text.splitlines() if ln.lstrip().startswith("ERROR:")]
    d["phases_completed"] = [k for k, title in _PHASES.items() if f"***** {title} COMPLETED" in text]
    d["phases_started"] = [k for k, title in _PHASES.items() if f"***** {title} *****" in text]
    d["complete"] = (
        bool(re.search(r"Exiting (vivado_hls|vitis_hls|vitis-run|vitis)\b", text)) or "Total elapsed time" in text
    )
    rows, _, _closed = _cosim.parse_table(text)
    status, _row = _cosim.status_from_rows(rows)
    if status is None:
        m = re.search(r"C/RTL co-simulation finished:\s*(PASS|FAIL)", text)
        status = m.group(1).capitalize() if m else None
    rec["cosim_status"] = status
    if re.search(r"ERROR: Test failed", text):
        d["validation"] = "failed"
    elif "INFO: Test PASSED" in text:
        d["validation"] = "passed"
    if rec["tool"] is None and rec["fmax_mhz"] is None and rec["part"] is None:
        raise ReportError(
            f"{path}: no HLS tool banner, 'Setting target device' or 'Estimated Fmax' line: "
            "not a Vivado/Vitis HLS log (or empty/truncated before the tool started)"
        )
    return finalize(rec)


def parse(path: str | Path) -> dict[str, Any]:
    """Return the unified record for an HLS log file; raise ReportError if unreadable."""
    path = Path(path)
    text = read_report(path, "empty log file: the tool wrote nothing (did it start?)")
    return parse_text(text, path)
