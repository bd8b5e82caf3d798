"""The unified report schema: one flat record per vendor report, whatever its format.

Every parser returns ``new_record(...)`` filled in and passed through ``finalize``, which derives
the numbers a reader wants at a glance (Fmax, latency in ns, % of the part, timing met) and the
flags (timing missed, over 100 % of the part, cosim failed). Values a report does not contain
stay ``None``: nothing is guessed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from ..util import HwflowError

KINDS = ("csynth_xml", "csynth_rpt", "vivado_synth", "cosim", "log")
RESOURCE_KEYS = ("LUT", "FF", "DSP", "BRAM_18K", "URAM")

# the keys every record has, in display order (the list, then flags and kind-specific details)
RECORD_KEYS = (
    "source",
    "kind",
    "tool",
    "tool_version",
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
    "resources",
    "available",
    "utilization_pct",
    "timing_met",
    "cosim_status",
    "errors",
    "flags",
    "details",
)
# an HLS record's figures as a summary row shows them (provenance and diagnostics left out), in display order
HLS_VIEW_KEYS = tuple(k for k in RECORD_KEYS if k not in ("kind", "cosim_status", "errors", "flags", "details"))
# the scalar figures two runs are compared on (resources are compared one resource at a time)
HLS_SCALAR_KEYS = tuple(
    k for k in HLS_VIEW_KEYS if k not in ("source", "tool", "tool_version", "resources", "available", "utilization_pct")
)


# ---- stage reports: each key set is defined here once and used by the stage that writes it, collect and compare
# the firmware a stage ran: content hash of firmware/<m>/'s sources (csim.json, rtl.json, synth.json, bench.json)
FIRMWARE_KEY = "firmware_sha256"
# the headline numbers of reports/<m>/csim.json (hwflow.verify writes every one; collect copies them into the
# summary; compare shows the scalar ones). A new csim figure is added here, once.
CSIM_KEYS = (
    "n_samples",
    "accuracy_float",
    "accuracy_qkeras",
    "accuracy_csim",
    "bit_exact_fraction_vs_qkeras",
    "argmax_agreement_vs_qkeras",
    "argmax_agreement_vs_float",
    "argmax_agreement_qkeras_vs_float",
    "max_abs_error_vs_qkeras",
    "mean_abs_error_vs_qkeras",
    "max_abs_error_vs_float",
    "auc_float",
    "auc_qkeras",
    "auc_csim",
    "auc_drop_max_vs_float",
    "auc_drop_max_vs_qkeras",
    "overflow_counts",
    "overflow_total",
    "softmax_argmax_flips",
    FIRMWARE_KEY,
)
# the numbers of reports/<m>/rtl.json that collect copies into the summary
RTL_KEYS = (
    "source",
    "n_samples",
    "bit_exact_fraction_vs_csim",
    "latency_cycles",
    "latency_ns",
    "interval",
    "clock_period_ns",
    "resources",
    "utilization_pct",
    "synthesizer",
    "simulator",
    "part",
    "bit_exact_source",
    "pipeline_stages",
    FIRMWARE_KEY,
)
# the stage that writes each report, for "rerun `make <stage>`" messages
STAGE_OF_REPORT = {"synth.json": "synth", "csim.json": "csim", "rtl.json": "rtl", "bench.json": "bench"}


def missing_keys(report: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    """Return the keys of a stage's key set that a report lacks."""
    return [k for k in keys if k not in report]


class ReportError(HwflowError):
    """A report file cannot be read: the message names the file and what is missing."""


def resource_dict() -> dict[str, Any]:
    """Return a resource mapping with every resource key set to None."""
    return dict.fromkeys(RESOURCE_KEYS)


def new_record(source: str | Path, kind: str) -> dict[str, Any]:
    """Return an empty record (all values None / empty) for a report file of the given kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown report kind {kind!r}")
    rec: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
    rec.update(
        source=str(source),
        kind=kind,
        resources=resource_dict(),
        available=resource_dict(),
        utilization_pct=resource_dict(),
        errors=[],
        flags=[],
        details={},
    )
    return rec


def to_int(text: Any) -> int | None:
    """Return an int from a report cell ('1,234', ' 96014 ', '-' -> None, 'NA'/'?'/'undef' -> None)."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text)
    s = str(text).strip().replace(",", "")
    if s in ("", "-", "NA", "N/A", "?", "undef", "inf"):
        return None
    m = re.fullmatch(r"[~<>]?\s*(\d+)(?:\.0+)?", s)
    if not m:
        return None
    return int(m.group(1))


def to_float(text: Any) -> float | None:
    """Return a float from a report cell ('5.00 ns' -> 5.0, '-'/'NA' -> None)."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    s = str(text).strip().replace(",", "")
    m = re.match(r"^[~<>]?\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)", s)
    return float(m.group(1)) if m else None


def finalize(rec: dict[str, Any]) -> dict[str, Any]:
    """Return the record with derived values (Fmax, ns latency, % of part, timing met) and flags filled."""
    est, tgt = rec.get("clock_estimated_ns"), rec.get("clock_target_ns")
    if rec.get("fmax_mhz") is None and est:
        rec["fmax_mhz"] = round(1000.0 / est, 2)
    if rec.get("latency_worst_ns") is None and est and rec.get("latency_worst_cycles") is not None:
        # latency at the *estimated* clock, what the design would achieve if it closes there
        rec["latency_worst_ns"] = round(rec["latency_worst_cycles"] * est, 3)
    if rec.get("timing_met") is None and est is not None and tgt is not None:
        rec["timing_met"] = bool(est <= tgt + 1e-9)
    for k in RESOURCE_KEYS:
        used, avail = rec["resources"].get(k), rec["available"].get(k)
        if rec["utilization_pct"].get(k) is None and used is not None and avail:
            rec["utilization_pct"][k] = round(100.0 * used / avail, 2)
    rec["flags"] = flags_for(rec)
    return rec


def flags_for(rec: dict[str, Any]) -> list[str]:
    """Return the at-a-glance warnings for a record: timing missed, over 100 % of the part, cosim failed."""
    flags: list[str] = []
    if rec.get("timing_met") is False:
        flags.append(f"timing missed: estimated {rec['clock_estimated_ns']} ns > target {rec['clock_target_ns']} ns")
    over = [
        f"{k} {rec['utilization_pct'][k]:.0f}%"
        for k in RESOURCE_KEYS
        if rec["utilization_pct"].get(k) is not None and rec["utilization_pct"][k] > 100.0
    ]
    if over:
        flags.append("over 100% of the part: " + ", ".join(over))
    if rec.get("cosim_status") == "Fail":
        flags.append("cosim failed")
    if rec.get("errors"):
        flags.append(f"{len(rec['errors'])} ERROR line(s) in the report")
    if rec.get("details", {}).get("complete") is False:
        flags.append("log incomplete (tool did not finish)")
    return flags


def require(rec: dict[str, Any], path: str | Path, fields: dict[str, Any], what: str) -> None:
    """Raise ReportError naming the file and every required field that is missing (None)."""
    missing = [name for name, value in fields.items() if value is None]
    if missing:
        raise ReportError(
            f"{path}: {what} is missing {', '.join(missing)} (truncated or not a complete report?): "
            "re-run the tool or pass a complete report"
        )


def check_number(x: Any) -> bool:
    """Return True if x is a finite number (used to validate parsed values)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read_report(path: str | Path, empty_msg: str, binary: bool = False) -> str | bytes:
    """Return a report file's text (bytes if ``binary``); raise ReportError if unreadable or empty."""
    path = Path(path)
    try:
        data = path.read_bytes() if binary else path.read_text(errors="replace")
    except OSError as e:
        raise ReportError(f"{path}: cannot read ({e.strerror})") from None
    if not data.strip():
        raise ReportError(f"{path}: {empty_msg}")
    return data
