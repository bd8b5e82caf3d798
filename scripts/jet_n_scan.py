"""Constituent-count scan of the physics jet card: train the QKeras model and its float twin for each N.

Every point is the card ``jet_transformer_physics`` with ``data.jets.n_constituents = N`` (same jets,
same features: N is chosen at load time from the cached constituents, nothing is regenerated), trained
into ``models/jet_transformer_physics_n<N>/``. The table (accuracy and mean one-vs-rest AUC of float and
QKeras with their statistical errors, parameters, training time) goes to
``reports/jet_transformer_physics/n_scan.{json,md}`` and the plot to ``n_scan.png``.

    python scripts/jet_n_scan.py --n 8 16 32 64 [--jets-per-class 40000] [--epochs 100] [--set KEY=VALUE ...]

AUC errors are Hanley & McNeil's (1982) standard error of one class's AUC (one vs rest), as in the C
simulation report; the table gives the largest over the classes (the JSON has each, plus the error of the
mean, sqrt(sum err^2)/n_classes, which treats the classes as independent); accuracy errors are binomial.
``--csim`` also builds each point's firmware and C-simulates its test jets (``hls.csim_samples``, the
whole 30k test split by default; ``--csim-samples`` fewer): C sim accuracy, argmax agreement and the
fraction of outputs identical to QKeras join the row (tool: the compiled hls4ml C++).
``--render`` redraws the table and plot from an existing n_scan.json without training.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from hwflow.config import load_card, parse_overrides
from hwflow.train import train, trained_summary
from hwflow.util import atomic_write_json, atomic_write_text, project_root, save_figure

CARD = "jet_transformer_physics"


def auc_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Return Hanley & McNeil's standard error of an AUC measured on n_pos positives and n_neg negatives."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)
    return math.sqrt(max(var, 0.0) / (n_pos * n_neg))


def binomial_error(p: float, n: int) -> float:
    """Return the binomial standard error of an accuracy p measured on n samples."""
    return math.sqrt(p * (1 - p) / n)


def point(summary: dict, n: int) -> dict:
    """Return one scan row (accuracy, mean AUC and their errors per variant) from a training summary."""
    n_test = summary["n_test"]
    per_class = {c: int(np.sum(row)) for c, row in zip(summary["class_names"], summary["confusion_matrix"]["qkeras"])}
    row = {"n_constituents": n, "parameters": summary["parameters"], "n_train": summary["n_train"], "n_test": n_test}
    for v, acc in summary["accuracy"].items():
        errs = [auc_error(a, per_class[c], n_test - per_class[c]) for c, a in summary["auc"][v].items()]
        row[v] = {
            "accuracy": acc,
            "accuracy_err": binomial_error(acc, n_test),
            "auc_mean": summary["auc_mean"][v],
            "auc_mean_err": math.sqrt(sum(e * e for e in errs)) / len(errs),
            "auc": summary["auc"][v],
            "auc_err": dict(zip(summary["auc"][v], errs)),
            "epochs": summary["epochs_run"][v],
            "seconds": summary["training_seconds"][v],
        }
    return row


def with_csim(row: dict, report: dict) -> dict:
    """Return the scan row with the C simulation's figures (accuracy, agreement, bit-exactness) added."""
    row["csim"] = {
        "n_samples": report["n_samples"],
        "accuracy": report["accuracy_csim"],
        "accuracy_err": binomial_error(report["accuracy_csim"], report["n_samples"]),
        "argmax_agreement_vs_qkeras": report["argmax_agreement_vs_qkeras"],
        "bit_exact_fraction_vs_qkeras": report["bit_exact_fraction_vs_qkeras"],
    }
    return row


def _csim_cells(r: dict) -> str:
    c = r.get("csim")
    if c is None:
        return "| not run | – | – "
    return (
        f"| {100 * c['accuracy']:.1f} ± {100 * c['accuracy_err']:.1f} % ({c['n_samples']} jets) "
        f"| {100 * c['argmax_agreement_vs_qkeras']:.2f} % | {100 * c['bit_exact_fraction_vs_qkeras']:.2f} % "
    )


def table(rows: list[dict]) -> str:
    """Return the scan as a Markdown table."""
    lines = [
        "| N | parameters | train / test jets | accuracy float | accuracy QKeras | accuracy C sim "
        "| C sim argmax agreement vs QKeras | C sim outputs identical to QKeras "
        "| mean AUC float | mean AUC QKeras | AUC stat. error (one class, largest) | epochs float / QKeras "
        "| training s float / QKeras |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f, q = r["float"], r["qkeras"]
        lines.append(
            f"| {r['n_constituents']} | {r['parameters']} | {r['n_train']} / {r['n_test']} "
            f"| {100 * f['accuracy']:.1f} ± {100 * f['accuracy_err']:.1f} % "
            f"| {100 * q['accuracy']:.1f} ± {100 * q['accuracy_err']:.1f} % "
            f"{_csim_cells(r)}"
            f"| {f['auc_mean']:.4f} | {q['auc_mean']:.4f} | ± {max(q['auc_err'].values()):.4f} "
            f"| {f['epochs']} / {q['epochs']} | {f['seconds']:.0f} / {q['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path) -> None:
    """Write accuracy and mean AUC versus N (float and QKeras, with statistical errors)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n_constituents"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "accuracy", "accuracy"), (axes[1], "auc_mean", "mean one-vs-rest AUC")):
        for v, style in (("float", "o-"), ("qkeras", "s--"), ("csim", "^:")):
            if not all(key in r.get(v, {}) for r in rows):
                continue  # C simulation gives accuracy only, and only with --csim
            ax.errorbar(
                ns,
                [r[v][key] for r in rows],
                yerr=[r[v][f"{key}_err"] for r in rows],
                fmt=style,
                label={"csim": "C sim"}.get(v, v),
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("constituents N")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{CARD}: N scan ({rows[0]['n_train']} training / {rows[0]['n_test']} test jets)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", nargs="+", type=int, default=[8, 16, 32, 64], help="constituent counts to scan")
    p.add_argument("--jets-per-class", type=int, default=None, help="override data.jets.jets_per_class")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="any other card override")
    p.add_argument("--csim", action="store_true", help="also build the firmware and C-simulate each point")
    p.add_argument("--csim-samples", type=int, default=None, help="C-simulated test jets (default: the card's)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch output")
    p.add_argument("--render", action="store_true", help="only redraw the table and plot from n_scan.json")
    args = p.parse_args()
    out = project_root() / "reports" / CARD
    extra = [*(args.overrides or [])]
    if args.jets_per_class:
        extra.append(f"data.jets.jets_per_class={args.jets_per_class}")
    if args.epochs:
        extra.append(f"train.epochs={args.epochs}")
    # points of an earlier run with the same overrides are kept: a scan is built N by N (N = 64 alone takes
    # hours on 2 cores); a run with other overrides starts a new table
    previous = json.loads((out / "n_scan.json").read_text()) if (out / "n_scan.json").exists() else {}
    same = args.render or previous.get("overrides") == extra
    rows = sorted(previous.get("points", []) if same else [], key=lambda r: r["n_constituents"])
    if args.render:
        atomic_write_text(out / "n_scan.md", table(rows))
        plot(rows, out / "n_scan.png")
        print(table(rows))
        return
    for n in args.n:
        sets = [f"data.jets.n_constituents={n}", f"name={CARD}_n{n}", *extra]
        card = load_card(CARD, parse_overrides(sets))
        row = point(trained_summary(card) or train(card, verbose=0 if args.quiet else 2), n)
        if args.csim:
            from hwflow.verify import csim

            row = with_csim(row, csim(card, n_samples=args.csim_samples, trace=False))
        rows = sorted([r for r in rows if r["n_constituents"] != n] + [row], key=lambda r: r["n_constituents"])
        # written after every point, so an interrupted scan keeps what finished
        atomic_write_json(out / "n_scan.json", {"card": CARD, "overrides": extra, "points": rows})
        atomic_write_text(out / "n_scan.md", table(rows))
        plot(rows, out / "n_scan.png")
        print(table(rows))


if __name__ == "__main__":
    main()
