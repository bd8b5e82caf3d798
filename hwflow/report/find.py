"""Find vendor reports in a project folder (as hls4ml's ``parse_vivado_report`` does) and parse any file.

Project layout (hls4ml): ``<dir>/project.tcl`` names the project; reports live under
``<dir>/<name>_prj/<solution>/syn/report/<top>_csynth.{xml,rpt}`` and ``.../sim/report/<top>_cosim.rpt``;
``vivado_synth.rpt`` and ``vivado_hls.log``/``vitis_hls.log`` sit in ``<dir>``. The syn/report folder
also holds one report per sub-module, so only the top function's report is taken.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import cosim, csynth_rpt, csynth_xml, hls_log, vivado_synth
from .schema import ReportError

PARSERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "csynth_xml": csynth_xml.parse,
    "csynth_rpt": csynth_rpt.parse,
    "vivado_synth": vivado_synth.parse,
    "cosim": cosim.parse,
    "log": hls_log.parse,
}
LOG_NAMES = ("vitis_hls.log", "vivado_hls.log")
# big generated folders that never hold the reports we read
_PRUNE = {
    ".autopilot",
    "verilog",
    "vhdl",
    "systemc",
    "wrapc",
    "wrapc_pc",
    "impl",
    "csim",
    "db",
    ".git",
    "__pycache__",
    "ip",
}


def detect_kind(path: str | Path) -> str:
    """Return the report kind of a file from its name, else from its first bytes; raise ReportError if unknown."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith("csynth.xml"):
        return "csynth_xml"
    if name.endswith("csynth.rpt"):
        return "csynth_rpt"
    if name.endswith("cosim.rpt"):
        return "cosim"
    if name == "vivado_synth.rpt" or (name.endswith(".rpt") and "utilization" in name):
        return "vivado_synth"
    if name.endswith(".log"):
        return "log"
    try:
        head = path.read_bytes()[:20000].decode(errors="replace")
    except OSError as e:
        raise ReportError(f"{path}: cannot read ({e.strerror})") from None
    if "<profile>" in head[:200]:
        return "csynth_xml"
    if re.search(r"(Vivado|Vitis) HLS Report for", head):
        return "csynth_rpt"
    if "report_utilization" in head or "Utilization Design Information" in head:
        return "vivado_synth"
    if re.search(r"\|\s*(Verilog|VHDL)\|", head) and "Status" in head:
        return "cosim"
    if re.search(r"\*{4,}\s+(Vivado\(TM\) HLS|Vitis HLS)", head):
        return "log"
    raise ReportError(
        f"{path}: unknown report kind: expected a *_csynth.xml, *_csynth.rpt, *_cosim.rpt, vivado_synth.rpt "
        "or vivado_hls.log/vitis_hls.log (Vivado/Vitis HLS output)"
    )


def parse_file(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Return the unified record for one report file (kind detected unless given)."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no such report file: check the path")
    return PARSERS[kind or detect_kind(path)](path)


def project_name(project_dir: str | Path) -> str | None:
    """Return the hls4ml project name from ``project.tcl`` (``set project_name "..."``), or None."""
    tcl = Path(project_dir) / "project.tcl"
    if tcl.is_file():
        m = re.search(r'set\s+project_name\s+"?([^"\s]+)"?', tcl.read_text(errors="replace"))
        if m:
            return m.group(1)
    return None


def _xml_top(xml: Path) -> str | None:
    m = re.search(r"<TopModelName>\s*([^<\s]+)\s*</TopModelName>", xml.read_text(errors="replace")[:5000])
    return m.group(1) if m else None


def _top_for_report_dir(report_dir: Path) -> str | None:
    """Return the top function for a syn/report folder: project.tcl, then csynth.xml, then the only candidate."""
    # <project>/<name>_prj/<solution>/syn/report
    proj = report_dir.parents[3] if len(report_dir.parents) > 3 else None
    if proj is not None:
        name = project_name(proj)
        if name:
            if (report_dir / f"{name}_axi_csynth.xml").exists():
                return f"{name}_axi"  # VivadoAccelerator wraps the top
            return name
    generic = report_dir / "csynth.xml"
    if generic.is_file():
        top = _xml_top(generic)
        if top:
            return top
    if (report_dir / "myproject_csynth.xml").exists() or (report_dir / "myproject_csynth.rpt").exists():
        return "myproject"  # hls4ml's default project name
    cands = sorted({p.name.rsplit("_csynth.", 1)[0] for p in report_dir.glob("*_csynth.*")})
    return cands[0] if len(cands) == 1 else None


def find_reports(root: str | Path) -> list[Path]:
    """Return every top-level vendor report under ``root`` (csynth xml/rpt, cosim, vivado_synth, logs), sorted."""
    root = Path(root)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _PRUNE)
        here = Path(dirpath)
        files = set(filenames)
        if here.name == "report" and here.parent.name == "syn":
            top = _top_for_report_dir(here)
            if top is None:
                cands = sorted(f for f in files if "_csynth." in f)
                if cands:
                    raise ReportError(
                        f"{here}: cannot tell the top function among {len(cands)} csynth reports (no project.tcl or "
                        "csynth.xml): pass the top report file itself"
                    )
                continue
            for ext in ("xml", "rpt"):
                if f"{top}_csynth.{ext}" in files:
                    found.append(here / f"{top}_csynth.{ext}")
                elif f"csynth.{ext}" in files:
                    found.append(here / f"csynth.{ext}")
        elif here.name == "report" and here.parent.name == "sim":
            syn = here.parent.parent / "syn" / "report"
            top = _top_for_report_dir(syn) if syn.is_dir() else None
            names = [f"{top}_cosim.rpt"] if top else sorted(f for f in files if f.endswith("_cosim.rpt"))
            found.extend(here / n for n in names if n in files)
        if "vivado_synth.rpt" in files:
            found.append(here / "vivado_synth.rpt")
        logs = [n for n in LOG_NAMES if n in files]
        if not logs and "hwflow_synth.log" in files:
            logs = ["hwflow_synth.log"]
        found.extend(here / n for n in logs)
    return sorted(found)


def load_synth_json(path: Path) -> dict[str, Any]:
    """Return the content of a synth.json written by `hwflow synth`; raise ReportError if it is not one."""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: not valid JSON ({e}): rerun `hwflow synth`") from None
    if not isinstance(data, dict) or not isinstance(data.get("reports"), list):
        raise ReportError(f"{path}: not a synth.json written by `hwflow synth` (no 'reports' list)")
    return data


def _synth_json_records(path: Path) -> list[dict[str, Any]]:
    """Return the parsed records stored in a synth.json written by `hwflow synth`."""
    return load_synth_json(path)["reports"]


def parse_path(path: str | Path) -> list[dict[str, Any]]:
    """Return the records of a report file, a synth.json, or every report found in a folder (error if none)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return _synth_json_records(path)
    if path.is_file():
        return [parse_file(path)]
    if path.is_dir() and (path / "synth.json").is_file() and not find_reports(path):
        return _synth_json_records(path / "synth.json")  # a reports/<name>/ folder
    if not path.is_dir():
        raise ReportError(f"{path}: no such file or folder: pass a report file or an hls4ml project folder")
    files = find_reports(path)
    if not files:
        raise ReportError(
            f"{path}: no vendor reports found (looked for <name>_prj/solution*/syn/report/<top>_csynth.xml|rpt, "
            "sim/report/<top>_cosim.rpt, vivado_synth.rpt, vivado_hls.log/vitis_hls.log): run `make synth MODEL=...` "
            "first"
        )
    return [parse_file(f) for f in files]
