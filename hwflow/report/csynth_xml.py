"""Parser for Vivado HLS / Vitis HLS C-synthesis XML reports (``<top>_csynth.xml``, ``csynth.xml``).

Format differences handled: the DSP tag is ``DSP48E`` in Vivado HLS and ``DSP`` in Vitis HLS;
Vivado HLS dataflow designs may give the interval only as ``DataflowPipelineThroughput`` (either a
``<range><min/><max/></range>`` or a plain number); Vitis writes ``undef`` for unknown latencies.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .schema import RESOURCE_KEYS, ReportError, finalize, new_record, read_report, require, to_float, to_int

_TAG_ALIASES = {"DSP48E": "DSP", "DSP48": "DSP", "DSP58": "DSP", "BRAM": "BRAM_18K"}


def _text(node: ET.Element | None, path: str) -> str | None:
    if node is None:
        return None
    el = node.find(path)
    return el.text.strip() if el is not None and el.text is not None else None


def _resources(node: ET.Element | None) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = dict.fromkeys(RESOURCE_KEYS)
    tags: list[str] = []
    if node is None:
        return out, tags
    for child in node:
        tags.append(child.tag)
        key = _TAG_ALIASES.get(child.tag, child.tag)
        if key in out:
            out[key] = to_int(child.text)
    return out, tags


def tool_from_xml(version: str | None, has_flow_target: bool, dsp_tag: str | None) -> str | None:
    """Return 'Vitis HLS' or 'Vivado HLS' from the clues a csynth.xml carries (it never names the tool)."""
    if has_flow_target or dsp_tag == "DSP":
        return "Vitis HLS"  # <FlowTarget> and the plain <DSP> tag only exist in Vitis HLS
    if version:
        m = re.match(r"(\d{4})\.(\d)", version)
        if m and (int(m.group(1)), int(m.group(2))) >= (2020, 2):
            return "Vitis HLS"  # Vivado HLS ended with 2020.1
        if m:
            return "Vivado HLS"
    return None


def parse(path: str | Path) -> dict[str, Any]:
    """Return the unified record for a ``*_csynth.xml`` report; raise ReportError if unreadable."""
    path = Path(path)
    data = read_report(path, "empty file, not a csynth XML report: re-run C synthesis", binary=True)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise ReportError(
            f"{path}: not well-formed XML ({e}); the report is truncated or corrupt: re-run C synthesis"
        ) from None
    if root.tag != "profile":
        raise ReportError(f"{path}: XML root is <{root.tag}>, expected <profile> of a Vivado/Vitis HLS csynth report")

    rec = new_record(path, "csynth_xml")
    ua = root.find("UserAssignments")
    perf = root.find("PerformanceEstimates")
    lat = perf.find("SummaryOfOverallLatency") if perf is not None else None
    area = root.find("AreaEstimates")

    version = _text(root, "ReportVersion/Version")
    rec["tool_version"] = version
    rec["part"] = _text(ua, "Part")
    rec["top"] = _text(ua, "TopModelName")
    rec["clock_target_ns"] = to_float(_text(ua, "TargetClockPeriod"))
    rec["clock_estimated_ns"] = to_float(_text(perf, "SummaryOfTimingAnalysis/EstimatedClockPeriod"))
    rec["latency_best_cycles"] = to_int(_text(lat, "Best-caseLatency"))
    rec["latency_worst_cycles"] = to_int(_text(lat, "Worst-caseLatency"))

    imin, imax = to_int(_text(lat, "Interval-min")), to_int(_text(lat, "Interval-max"))
    dpt = lat.find("DataflowPipelineThroughput") if lat is not None else None
    if dpt is not None:
        # <DataflowPipelineThroughput> is either <range><min/><max/></range> or a plain number
        if dpt.find("range") is not None:
            dmin, dmax = to_int(_text(dpt, "range/min")), to_int(_text(dpt, "range/max"))
        else:
            dmin = dmax = to_int(dpt.text)
        rec["details"]["dataflow_throughput"] = [dmin, dmax]
        imin = dmin if imin is None else imin
        imax = dmax if imax is None else imax
    rec["interval_min"], rec["interval_max"] = imin, imax

    res, tags = _resources(area.find("Resources") if area is not None else None)
    avail, _ = _resources(area.find("AvailableResources") if area is not None else None)
    rec["resources"], rec["available"] = res, avail
    dsp_tag = next((t for t in tags if t.startswith("DSP")), None)

    rec["tool"] = tool_from_xml(version, ua is not None and ua.find("FlowTarget") is not None, dsp_tag)
    rec["details"].update(
        {
            "clock_uncertainty_ns": to_float(_text(ua, "ClockUncertainty")),
            "latency_avg_cycles": to_int(_text(lat, "Average-caseLatency")),
            "pipeline_type": _text(perf, "PipelineType"),
            "product_family": _text(ua, "ProductFamily"),
            "flow_target": _text(ua, "FlowTarget"),
            "dsp_tag": dsp_tag,
        }
    )

    require(
        rec,
        path,
        {
            "<UserAssignments><Part>": rec["part"],
            "<TopModelName>": rec["top"],
            "<TargetClockPeriod>": rec["clock_target_ns"],
            "<EstimatedClockPeriod>": rec["clock_estimated_ns"] if perf is not None else None,
            "<SummaryOfOverallLatency>": lat,
            "<AreaEstimates><Resources>": (area.find("Resources") if area is not None else None),
            "<AvailableResources>": (area.find("AvailableResources") if area is not None else None),
        },
        "csynth XML report",
    )
    if rec["latency_worst_cycles"] is None:
        rec["details"]["latency_note"] = "latency undefined in the report (data-dependent loop bounds?)"
    return finalize(rec)
