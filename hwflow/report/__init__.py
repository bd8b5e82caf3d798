"""Vendor report reading, collection and comparison (`hwflow report [parse|compare]`).

Parsers (one per report kind) return records of one schema (see ``schema.RECORD_KEYS``):
  csynth_xml.py  Vivado/Vitis HLS <top>_csynth.xml     csynth_rpt.py  <top>_csynth.rpt
  vivado_synth.py  Vivado report_utilization            cosim.py       <top>_cosim.rpt
  hls_log.py     vivado_hls.log / vitis_hls.log
``find.parse_path`` reads a file or finds the reports of a project folder; ``collect`` builds
reports/summary.{json,md} and plots; ``compare`` puts two runs side by side.
Only the standard library is imported here; matplotlib is loaded when plotting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..util import HwflowError, atomic_write_text, to_json


def parse_path(path):
    """Return the list of unified records for a report file or project folder."""
    from .find import parse_path as _pp

    return _pp(path)


def _cmd_parse(args: argparse.Namespace) -> int:
    from .summary import format_records

    records = parse_path(args.path)
    if args.json:
        sys.stdout.write(to_json(records))
    else:
        print(format_records(records))
    # exit 0 even when flags are raised: parsing succeeded; flags are the content
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare, to_markdown

    cmp = compare(args.a, args.b)
    text = to_json(cmp) if args.json else to_markdown(cmp)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"hwflow report compare: wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from ..util import project_root
    from .collect import collect, write_summary

    root = project_root()
    summary = collect(root, args.models)
    if not summary["models"]:
        raise HwflowError(f"no models under {root}/firmware or {root}/reports: run `make firmware MODEL=...` first")
    written = write_summary(summary, root)
    for r in summary["models"]:
        if r["vendor"] and r["vendor"]["hls"]:
            h = r["vendor"]["hls"]
            print(
                f"{r['model']}: {h['tool']} {h['tool_version']}: latency {h['latency_worst_cycles']} cycles "
                f"({h['latency_worst_ns']} ns), II {h['interval_max']}, LUT {h['resources']['LUT']}, "
                f"timing met {h['timing_met']}"
                + (f"  [{'; '.join(r['vendor']['flags'])}]" if r["vendor"]["flags"] else "")
            )
        else:
            print(f"{r['model']}: {r['vendor_note'] or 'no HLS C-synthesis report'}")
        for e in r["vendor_errors"]:
            print(f"{r['model']}: unreadable report: {e}", file=sys.stderr)
    for _what, p in written.items():
        print(f"wrote {p}")
    return 0


def add_cli(subparsers) -> None:
    """Register ``hwflow report`` (collect, default) with sub-actions ``parse`` and ``compare``."""
    p = subparsers.add_parser(
        "report",
        help="collect vendor/csim/open-RTL numbers into reports/summary.*; `report parse PATH`, `report compare A B`",
        description="Without an action: collect every model's synthesis reports (reports/<name>/synth.json or "
        "firmware/<name>/), C-simulation accuracy (csim.json) and open-RTL numbers (rtl.json) into "
        "reports/summary.json, reports/summary.md and plots.",
    )
    p.add_argument(
        "--models", nargs="+", metavar="NAME", help="only these models (default: all under firmware/ and reports/)"
    )
    p.set_defaults(func=_cmd_collect)
    sub = p.add_subparsers(dest="report_action", metavar="ACTION")
    pp = sub.add_parser("parse", help="parse a vendor report file or project folder into the unified schema")
    pp.add_argument(
        "path",
        type=Path,
        help="a report (*_csynth.xml|rpt, *_cosim.rpt, vivado_synth.rpt, *_hls.log) or a project folder",
    )
    pp.add_argument("--json", action="store_true", help="print a JSON list, one object per report")
    pp.set_defaults(func=_cmd_parse)
    pc = sub.add_parser("compare", help="compare two runs of a model side by side with deltas")
    pc.add_argument(
        "a", type=Path, help="run A (base): reports/<name>/ folder, synth.json, project folder or report file"
    )
    pc.add_argument("b", type=Path, help="run B")
    pc.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    pc.add_argument("--out", type=Path, help="write to this file (atomically) instead of stdout")
    pc.set_defaults(func=_cmd_compare)


__all__ = ["add_cli", "parse_path"]
