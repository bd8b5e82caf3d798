"""Sweeps: one trained model, several hls4ml settings (reuse factor, strategy, precision) side by side.

Each point of a sweep is a variant card named ``<model>_<key><value>`` that reuses the base card's
trained model (``models/<model>/``) and gets its own ``firmware/<variant>/`` and
``reports/<variant>/``. For every point: firmware, C simulation, and vendor synthesis when the tool
is on PATH (else the point says "no vendor tool" and no number is invented). The table of all
points goes to ``reports/<model>/sweep.{json,md}``.
"""

from __future__ import annotations

import re
from typing import Any

from .util import HwflowError, atomic_write_json, atomic_write_text

# keys a sweep may vary without retraining: they only change the firmware, never the trained weights
SWEEPABLE = (
    "hls.reuse_factor",
    "hls.strategy",
    "hls.default_precision",
    "hls.softmax.table_size",
    "hls.backend",
    "hls.clock_period",
    "hls.part",
)


def _tag(key: str, value: Any) -> str:
    short = {
        "hls.reuse_factor": "rf",
        "hls.strategy": "",
        "hls.default_precision": "p",
        "hls.softmax.table_size": "smt",
        "hls.backend": "",
        "hls.clock_period": "clk",
        "hls.part": "",
    }.get(key, key.split(".")[-1])
    return re.sub(r"[^A-Za-z0-9]+", "_", f"{short}{value}").strip("_").lower()


def variants(model: str, key: str, values: list[Any], overrides: dict | None = None) -> list:
    """Return one validated Card per sweep value, each named after its value and trained as the base."""
    from .config import _merge, load_card, set_dotted

    if key not in SWEEPABLE:
        raise HwflowError(f"cannot sweep '{key}' without retraining: sweepable keys are {', '.join(SWEEPABLE)}")
    if not values:
        raise HwflowError("empty sweep: give at least one value (e.g. --reuse 1 2 4)")
    base = load_card(model, overrides)
    cards = []
    for v in values:
        card = load_card(model, _merge(overrides or {}, set_dotted({}, key, v)))
        card["name"] = f"{base.name}_{_tag(key, v)}"
        card.trained_as = base.name
        cards.append(card)
    return cards


def run(
    model: str,
    key: str,
    values: list[Any],
    overrides: dict | None = None,
    synth: bool | None = None,
    n_samples: int | None = None,
) -> dict:
    """Run firmware + csim (+ synth where a vendor tool exists) for every sweep point; return the sweep table."""
    from . import hls, verify
    from . import synth as synth_mod

    cards = variants(model, key, values, overrides)
    rows = []
    for card in cards:
        value = card
        for p in key.split("."):
            value = value[p]
        print(f"== sweep point {card.name}: {key} = {value}")
        fw, _, _ = hls.ensure_firmware(card)  # written once per point; csim/synth below run this project
        r = verify.csim(card, n_samples=n_samples, trace=False)
        row = {
            "name": card.name,
            key: value,
            "firmware": str(fw),
            "accuracy_csim": r.get("accuracy_csim"),
            "argmax_agreement_vs_qkeras": r.get("argmax_agreement_vs_qkeras"),
            "auc_drop_max_vs_float": r.get("auc_drop_max_vs_float"),
            "overflow_total": r.get("overflow_total"),
            "synth": None,
        }
        want = synth if synth is not None else True
        if want:
            try:
                s = synth_mod.synth(card)
                row["synth"] = (
                    {k: s.get(k) for k in ("status", "latency_worst_cycles", "interval_max", "resources", "tool")}
                    if isinstance(s, dict)
                    else s
                )
            except HwflowError as e:
                if synth:  # explicitly asked for: a missing tool is an error
                    raise
                row["synth"] = {"status": "not run", "reason": str(e)}
        rows.append(row)
    base = cards[0].trained_as
    table = {"model": base, "key": key, "values": values, "points": rows}
    out = cards[0].report_dir().parent / base
    atomic_write_json(out / "sweep.json", table)
    atomic_write_text(out / "sweep.md", markdown(table))
    print(f"sweep table: {out / 'sweep.md'}")
    return table


def markdown(table: dict) -> str:
    """Return the sweep table as Markdown."""
    key = table["key"]
    lines = [
        f"# Sweep of `{key}` for {table['model']}",
        "",
        f"| point | {key} | C-sim accuracy | argmax vs QKeras | max AUC drop | overflows | vendor synthesis |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table["points"]:
        s = r.get("synth") or {}
        if s.get("latency_worst_cycles") is not None:
            res = s.get("resources") or {}
            syn = (
                f"{s['latency_worst_cycles']} cycles, II {s.get('interval_max')}, "
                f"LUT {res.get('LUT')}, DSP {res.get('DSP')}"
            )
        else:
            syn = s.get("reason") or s.get("status") or "not run"
        acc = r.get("accuracy_csim")
        agr = r.get("argmax_agreement_vs_qkeras")
        drop = r.get("auc_drop_max_vs_float")
        lines.append(
            f"| {r['name']} | {r[key]} | {'' if acc is None else f'{acc:.4f}'} | "
            f"{'' if agr is None else f'{agr:.4f}'} | {'' if drop is None else f'{drop:.4f}'} | "
            f"{r.get('overflow_total')} | {syn} |"
        )
    lines.append("")
    lines.append(
        "Reuse factor and strategy change only the schedule, so C-sim figures repeat across them; "
        "latency and resources come only from a vendor report and are never estimated here."
    )
    return "\n".join(lines) + "\n"


def add_cli(sub) -> None:
    """Register `hwflow sweep`."""
    p = sub.add_parser("sweep", help="firmware + csim (+ synth) of one trained model over several hls4ml settings")
    p.add_argument("model", help="model card name (models/<name>.yaml) or path")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--reuse", nargs="+", type=int, metavar="RF", help="reuse factors, e.g. --reuse 1 2 4")
    g.add_argument("--param", metavar="KEY", help=f"card key to sweep, one of {', '.join(SWEEPABLE)}")
    p.add_argument("--values", nargs="+", metavar="V", help="values for --param (parsed as YAML scalars)")
    p.add_argument(
        "--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a card key (repeatable)"
    )
    p.add_argument(
        "--synth", dest="synth", action="store_true", default=None, help="require vendor synthesis per point"
    )
    p.add_argument("--no-synth", dest="synth", action="store_false", help="skip vendor synthesis")
    p.add_argument("-n", "--samples", type=int, default=None, help="C-sim samples per point")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    import yaml

    from .config import parse_overrides

    if args.reuse:
        key, values = "hls.reuse_factor", args.reuse
    else:
        if not args.values:
            raise HwflowError("--param needs --values, e.g. --param hls.strategy --values Latency Resource")
        key, values = args.param, [yaml.safe_load(v) for v in args.values]
    run(args.model, key, values, parse_overrides(args.overrides), synth=args.synth, n_samples=args.samples)
    return 0
