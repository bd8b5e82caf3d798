"""Side-by-side table and plot of the attention variants (issue 13) from the reports the stages already wrote.

    python -m hwflow.attention_table jet_transformer jet_transformer_linformer jet_transformer_cosformer \
        jet_transformer_grouped [--out reports/attention_variants]
    python -m hwflow.attention_table --study reports/jet_transformer/explore-attention [--study ...] --out ...

Reads, per model: models/<m>/summary.json (training), reports/<m>/csim.json (C simulation) and
reports/<m>/rtl_tpc<G>.json (the RTL report of ``hwflow rtl <m> --set rtl.tokens_per_cycle=G``, copied under that
name; G = 0 is the parallel design), or, with ``--study``, the trials of an exploration (their own reports).
Writes <out>.md (every number with its tool) and <out>.png (accuracy against the da4ml LUT estimate).
Missing reports are shown as "–", never guessed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .config import load_card
from .util import atomic_write_json, atomic_write_text, project_root

TOKENS_PER_CYCLE = (1, 4, 0)


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _sequence_length(card) -> int:
    """Return the tokens the attention sees: the jet's constituents, or the conformer's frames after subsampling."""
    if card["data"]["kind"] == "jets":
        return int(card["data"]["jets"]["n_constituents"])
    from .nn.conformer import frames_after_subsampling, input_shape_from_card

    return frames_after_subsampling(input_shape_from_card(card)[0], card["model"]["subsampling"])


def collect(names: list[str]) -> list[dict]:
    """Return one row per model: card settings, accuracies, agreement, products and RTL figures per G."""
    root = project_root()
    rows = []
    for name in names:
        row = _row(name, load_card(name))
        for g in TOKENS_PER_CYCLE:
            _add_rtl(row, g, _load(root / "reports" / name / f"rtl_tpc{g}.json"))
        rows.append(row)
    return rows


def collect_study(study: Path) -> list[dict]:
    """Return one row per trained model of an exploration study (``reports/<m>/explore-<study>/``, hwflow.explore):
    its trials that differ only in rtl.tokens_per_cycle share the training and become one row, with each trial's
    da4ml estimate under its G, from the trial's record (``reports/<trial>/rtl.json`` is the last ``hwflow rtl`` of
    that card, which ``--set`` may have changed). Trials without hardware figures (no token-serial design) keep
    their accuracy."""
    from .explore import effective_card, load_space
    from .train import card_model_hash

    info = json.loads((study / "study.json").read_text())
    space = load_space(info["model"], info["space"])
    rtl_samples = space.rtl_samples
    rows: dict[str, dict] = {}
    for line in (study / "trials.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["status"] != "ok":
            continue
        card = effective_card(space, rec["params"])
        key = card_model_hash(card)
        if key not in rows:  # the first trial of a training reads its reports for the row
            rows[key] = _row(card.name, card)
        row = rows[key]
        if rec.get("rtl_skipped"):
            row.setdefault("rtl_skipped", {})[int(card["rtl"]["tokens_per_cycle"])] = rec["rtl_skipped"]
        else:
            row["rtl"][int(card["rtl"]["tokens_per_cycle"])] = {
                "var_products": rec.get("var_products"),
                "luts": rec.get("lut_da4ml"),
                "latency": rec.get("latency_cycles"),
                "stages": rec.get("pipeline_stages"),
                "interval": rec.get("interval"),
                "bit_exact": rec.get("bit_exact_estimate"),
                "bit_exact_source": (rec.get("tools") or {}).get("bit_exact_estimate"),
                # records before session 9 lack the count: the space's current rtl_samples
                "n": rec.get("bit_exact_samples", rtl_samples),
            }
    return list(rows.values())


def _row(name: str, card) -> dict:
    """Return a model's row from its card, reports/<name>/csim.json and models/<name>/summary.json."""
    from .nn.attention import variable_products

    root = project_root()
    m = card["model"]
    n = _sequence_length(card)
    csim = _load(root / "reports" / name / "csim.json") or {}
    summ = _load(root / "models" / name / "summary.json") or {}
    kind = m.get("attention", "softmax")
    param = {"linformer": f"k = {m['linformer_k']}", "grouped": f"g = {m['attention_group']}"}.get(kind, "")
    return {
        "model": name,
        "attention": kind + (f" ({param})" if param else ""),
        "heads": f"{m['num_heads']} x {m['key_dim']}",
        "epochs": card["train"]["epochs"],
        "seed": card["train"]["seed"],
        "seq_len": n,
        "acc_float": csim.get("accuracy_float", (summ.get("accuracy") or {}).get("float")),
        "acc_qkeras": csim.get("accuracy_qkeras", (summ.get("accuracy") or {}).get("qkeras")),
        "acc_csim": csim.get("accuracy_csim"),
        "agreement": csim.get("argmax_agreement_vs_qkeras"),
        "n_test": csim.get("n_samples"),
        "attn_products": variable_products(card, n) * m["num_blocks"] if n else None,
        "rtl": {},
    }


def _add_rtl(row: dict, g: int, r: dict | None) -> None:
    """Put the RTL report ``r`` of the design folded G tokens per clock into the row (nothing when missing)."""
    if r:
        row["rtl"][g] = {
            "var_products": (r.get("var_products") or {}).get("count"),
            "luts": r.get("estimated_cost_luts_da4ml"),
            "latency": r.get("latency_cycles"),
            "interval": r.get("interval"),
            "bit_exact": r.get("bit_exact_fraction_vs_csim"),
            "bit_exact_source": r.get("bit_exact_source"),
            "n": r.get("n_samples"),
            "stages": r.get("pipeline_stages"),
        }


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


def _n(v) -> str:
    return "–" if v is None else f"{v:,}".replace(",", " ")


def markdown(rows: list[dict]) -> str:
    """Return the side-by-side tables (accuracy, then RTL per tokens_per_cycle) as markdown."""
    out = [
        "| attention | N | heads x width, QAT epochs, seed | accuracy float / QKeras / C sim | C sim argmax = QKeras | "
        "attention var x var products (formula, per sample) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['attention']} (`{r['model']}`) | {r['seq_len']} | {r['heads']}, {r['epochs']}, {r['seed']} | "
            f"{_pct(r['acc_float'])} / {_pct(r['acc_qkeras'])}"
            f" / {_pct(r['acc_csim'])}{_err(r)} | {_pct(r['agreement'])} of {r['n_test'] or '–'} | "
            f"{_n(r['attn_products'])} |"
        )
    out += [
        "",
        "| attention | tokens per clock G | var x var products (da4ml) | da4ml LUT estimate | latency / interval "
        "(clocks, Verilator unless noted) | bit-exact vs C sim |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for g, x in sorted(r["rtl"].items(), key=lambda kv: (kv[0] == 0, kv[0])):
            lat = x["latency"]
            if lat is None:  # not simulated: the pipeline depth is a lower bound of the latency
                lat = "–" if x.get("stages") is None else f"≥ {x['stages']} (da4ml stages)"
            ii = "–" if x["interval"] is None else x["interval"]
            src = (x["bit_exact_source"] or "").split(" (")[0]
            out.append(
                f"| {r['attention']} (`{r['model']}`) | {g if g else 'all (parallel)'} | {_n(x['var_products'])} | "
                f"{_n(x['luts'])} | {lat} / {ii} | {_pct(x['bit_exact'])} of {x['n']} samples ({src}) |"
            )
    skipped = [r for r in rows if r.get("rtl_skipped")]
    out += [
        f"\n{r['attention']} (`{r['model']}`) at G = {g}: no token-serial design: {why}"
        for r in skipped
        for g, why in sorted(r["rtl_skipped"].items())
    ]
    seeds = seed_table(rows)
    if seeds:
        out += ["", "Seed averages of the C-sim accuracy (models that differ only in train.seed):", "", seeds]
    return "\n".join(out) + "\n"


def seed_table(rows: list[dict]) -> str:
    """Return the seed averages of the C-sim accuracy (markdown), or '' when no model was trained with two seeds.

    Rows that differ only in the training seed form one entry: the mean, the sample standard deviation s over the
    seeds and the error of the mean s / sqrt(n) (the seeds' spread already holds each accuracy's binomial error),
    then the difference to softmax attention of the same N, heads and epochs with the two errors in quadrature.
    With two seeds s has one degree of freedom: a rough error, stated as such."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["acc_csim"] is not None:
            groups.setdefault((r["attention"], r["seq_len"], r["heads"], r["epochs"]), []).append(r)
    stats = {}
    for key, rs in groups.items():
        if len({r["seed"] for r in rs}) < 2:
            continue
        rs = sorted(rs, key=lambda r: r["seed"])
        accs = [100 * r["acc_csim"] for r in rs]
        sd = statistics.stdev(accs)
        stats[key] = (statistics.fmean(accs), sd, sd / len(accs) ** 0.5, accs, [r["seed"] for r in rs])
    if not stats:
        return ""
    out = [
        "| attention | N | heads x width, QAT epochs | seeds | C sim per seed | mean ± s/√n | s | vs softmax |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (kind, n, heads, epochs), (mean, sd, se, accs, seeds) in stats.items():
        ref = stats.get(("softmax", n, heads, epochs))
        delta = (
            "–" if ref is None or kind == "softmax" else f"{mean - ref[0]:+.2f} ± {(se**2 + ref[2] ** 2) ** 0.5:.2f}"
        )
        out.append(
            f"| {kind} | {n} | {heads}, {epochs} | {', '.join(map(str, seeds))} | "
            f"{' / '.join(f'{a:.2f}' for a in accs)} % | {mean:.2f} ± {se:.2f} % | {sd:.2f} | {delta} |"
        )
    return "\n".join(out) + "\n"


def _err(r: dict) -> str:
    """Return ' ± e' with the binomial standard error of the C-sim accuracy (in points), or ''."""
    p, n = r["acc_csim"], r["n_test"]
    return f" ± {100 * (p * (1 - p) / n) ** 0.5:.2f}" if p is not None and n else ""


def products_table(names: list[str], seq_lens=(16, 32, 64)) -> str:
    """Return the attention layers' variable x variable products per sample at several N (closed formula)."""
    from .nn.attention import variable_products

    head = " | ".join(f"N = {n}" for n in seq_lens)
    out = [f"| attention | {head} | vs softmax at N = {seq_lens[-2]} |", "|---" * (len(seq_lens) + 2) + "|"]
    base = None
    for name in names:
        card = load_card(name)
        m = card["model"]
        vals = [variable_products(card, n) * m["num_blocks"] for n in seq_lens]
        base = vals if base is None and m.get("attention", "softmax") == "softmax" else base
        ratio = f"{base[-2] / vals[-2]:.1f}x fewer" if base else "–"
        kind = m.get("attention", "softmax")
        out.append(f"| {kind} (`{name}`) | " + " | ".join(_n(v) for v in vals) + f" | {ratio} |")
    return "\n".join(out) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Write accuracy (C sim) against the da4ml LUT estimate, one point per variant and G."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in rows:
        pts = [(x["luts"], g) for g, x in r["rtl"].items() if x["luts"]]
        if not pts or r["acc_csim"] is None:
            continue
        xs = [p[0] for p in pts]
        label = f"{r['attention']}, {r['heads']} heads, {r['epochs']} epochs, seed {r['seed']}"
        line = ax.plot(xs, [100 * r["acc_csim"]] * len(xs), "o-", label=label)[0]
        for lut_, g in pts:
            ax.annotate(
                f"G={g or 'all'}",
                (lut_, 100 * r["acc_csim"]),
                fontsize=7,
                color=line.get_color(),
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xscale("log")
    ax.set_xlabel("da4ml LUT estimate (whole design, not synthesis)")
    ax.set_ylabel("accuracy, C simulation [%]")
    ax.set_title("jet transformer: attention variants (same data and seeds)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hwflow.attention_table", description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*")
    ap.add_argument(
        "--study",
        action="append",
        default=[],
        help="an exploration's output directory (reports/<m>/explore-<study>/): one row per trained model",
    )
    ap.add_argument("--out", default=str(project_root() / "reports" / "attention_variants"))
    a = ap.parse_args(argv)
    if not a.models and not a.study:
        ap.error("name models or give --study")
    rows = collect(a.models) + [r for d in a.study for r in collect_study(Path(d))]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(rows)
    if a.models:
        text += "\nAttention variable x variable products per sample (hwflow.nn.attention formula):\n\n"
        text += products_table(a.models)
    atomic_write_text(out.with_suffix(".md"), text)
    atomic_write_json(out.with_suffix(".json"), rows)
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
