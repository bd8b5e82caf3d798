"""Classification metrics and plots shared by training and verification.

Everything works on class-probability arrays ``scores`` of shape (n, n_classes) and integer labels
``y`` of shape (n,). AUC and ROC are one-vs-rest per class, as the hls4ml jet-tagging tutorials
draw them: signal efficiency (true-positive rate) on x, background mistag rate (false-positive
rate) on a log y axis. Matplotlib is imported inside the plot functions only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _check(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != y.shape[0]:
        raise ValueError(f"scores must be (n, n_classes) matching labels (n,), got {scores.shape} and {y.shape}")
    return scores, y


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    """Return the fraction of samples whose argmax score equals the label."""
    scores, y = _check(scores, y)
    return float(np.mean(np.argmax(scores, axis=1) == y)) if len(y) else float("nan")


def argmax_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Return the fraction of rows where two score arrays pick the same class."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"score arrays differ in shape: {a.shape} vs {b.shape}")
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1))) if len(a) else float("nan")


def roc_curve(scores_c: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (fpr, tpr) of one binary problem: ``positive`` marks signal, higher score = more signal-like."""
    from sklearn.metrics import roc_curve as _roc

    fpr, tpr, _ = _roc(np.asarray(positive).astype(int), np.asarray(scores_c, dtype=np.float64))
    return fpr, tpr


def auc_per_class(scores: np.ndarray, y: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """Return {class name: one-vs-rest ROC AUC}; NaN for a class absent from (or the only class in) ``y``."""
    from sklearn.metrics import roc_auc_score

    scores, y = _check(scores, y)
    out: dict[str, float] = {}
    for c, name in enumerate(class_names):
        pos = y == c
        if pos.all() or not pos.any():
            out[str(name)] = float("nan")  # AUC undefined with a single label
            continue
        out[str(name)] = float(roc_auc_score(pos.astype(int), scores[:, c]))
    return out


def auc_standard_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Return the Hanley–McNeil (1982) standard error of an AUC measured on n_pos signal and n_neg background
    samples."""
    if not np.isfinite(auc) or n_pos < 1 or n_neg < 1:
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return float(np.sqrt(max(var, 0.0)))


def confusion_matrix(scores: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Return the (n_classes, n_classes) count matrix: rows true class, columns predicted class."""
    scores, y = _check(scores, y)
    k = n_classes or scores.shape[1]
    pred = np.argmax(scores, axis=1)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    return cm


def summary(scores: np.ndarray, y: np.ndarray, class_names: Sequence[str]) -> dict:
    """Return {accuracy, auc (per class), auc_mean, confusion_matrix} for one model's scores."""
    auc = auc_per_class(scores, y, class_names)
    finite = [v for v in auc.values() if np.isfinite(v)]
    return {
        "accuracy": accuracy(scores, y),
        "auc": auc,
        "auc_mean": float(np.mean(finite)) if finite else float("nan"),
        "confusion_matrix": confusion_matrix(scores, y, len(class_names)).tolist(),
    }


# ---------------------------------------------------------------------------------------------- plots

# line styles per model variant: float solid (the hls4ml convention), fixed point dashed/dotted
STYLES = {"float": "-", "qkeras": ":", "csim": "--"}
LABELS = {"float": "float Keras", "qkeras": "QKeras", "csim": "hls4ml C sim"}


def plot_roc(
    path: str | Path, y: np.ndarray, scores_by_model: dict[str, np.ndarray], class_names: Sequence[str], title: str = ""
) -> Path:
    """Write a per-class ROC plot (signal efficiency vs background mistag, log y); return its path.

    ``scores_by_model`` maps a variant name (``float``, ``qkeras``, ``csim`` or any label) to its
    scores; each class gets one colour, each variant one line style, the AUC in the legend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .util import save_figure

    y = np.asarray(y).astype(int)
    colors = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=(7.2, 6.0))
    class_handles = []
    aucs = {v: auc_per_class(s, y, class_names) for v, s in scores_by_model.items()}
    for c, name in enumerate(class_names):
        pos = y == c
        if pos.all() or not pos.any():
            continue
        col = colors[c % len(colors)]
        for variant, scores in scores_by_model.items():
            fpr, tpr = roc_curve(np.asarray(scores)[:, c], pos)
            keep = fpr > 0  # log axis: drop the zero-mistag points
            ax.plot(tpr[keep], fpr[keep], STYLES.get(variant, "-."), color=col, lw=1.6)
        # one legend entry per class carrying the AUC of every variant
        text = " / ".join(f"{aucs[v][str(name)] * 100:.1f}" for v in scores_by_model)
        class_handles.append(Line2D([0], [0], color=col, lw=2.5, label=f"{name}: AUC {text} %"))
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_ylim(1e-3, 1.05)
    ax.set_xlabel("signal efficiency (true-positive rate)")
    ax.set_ylabel("background mistag rate (false-positive rate)")
    ax.grid(True, which="both", alpha=0.3)
    style_key = [
        Line2D([0], [0], color="black", ls=STYLES.get(v, "-."), label=LABELS.get(v, v)) for v in scores_by_model
    ]
    ax.add_artist(ax.legend(handles=style_key, loc="upper left", fontsize=9, title="line style"))
    ax.legend(
        handles=class_handles,
        loc="lower right",
        fontsize=8.5,
        framealpha=0.9,
        title="AUC " + " / ".join(LABELS.get(v, v) for v in scores_by_model),
        title_fontsize=8,
    )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def plot_training(path: str | Path, histories: dict[str, dict[str, list[float]]], title: str = "") -> Path:
    """Write loss and accuracy curves (train solid, validation dashed) per model; return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .util import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"float": "tab:blue", "qkeras": "tab:orange"}
    for name, h in histories.items():
        col = colors.get(name)
        for ax, key in zip(axes, ("loss", "accuracy")):
            if key in h:
                ep = np.arange(1, len(h[key]) + 1)
                ax.plot(ep, h[key], "-", color=col, label=f"{LABELS.get(name, name)} train")
            if f"val_{key}" in h:
                ep = np.arange(1, len(h[f"val_{key}"]) + 1)
                ax.plot(ep, h[f"val_{key}"], "--", color=col, label=f"{LABELS.get(name, name)} validation")
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy loss" if key == "loss" else "accuracy")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
