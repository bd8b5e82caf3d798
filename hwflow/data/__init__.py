"""Data stage: seeded, cached datasets made by real generators (Pythia 8 + FastJet jets, espeak-ng keywords).

Each generator module (``jets``, ``kws``) exposes
``generate(spec, workers=None, progress=True, force=False, cluster=None) -> (arrays, manifest, folder)`` where
``cluster`` is a hwflow.cluster.ClusterSettings (shards are Dask tasks) and
``arrays`` holds at least ``X`` (float32 features), ``y`` (int labels) and ``class_names``, and
optionally ``groups`` (ids whose members must stay in one split, e.g. voice variants).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cache import split_indices

KINDS = ("jets", "kws")


@dataclass
class Dataset:
    """Train/val/test arrays of one card's dataset, with its class names and manifest."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    manifest: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def n_classes(self) -> int:
        """Return the number of classes."""
        return len(self.class_names)


def pick_rows(y, n: int, seed: int) -> np.ndarray:
    """Return the sorted indices of ``min(n, len(y))`` rows of labels ``y``: seeded and class-balanced.

    Every stage (firmware calibration, C simulation, RTL, bench) picks its rows here, so they see the same
    samples and every class: classes take turns (a seeded shuffle within each class) until ``n`` rows are
    taken, so a class with few rows gives all it has and the others fill the rest. The first ``k`` rows of
    the ``n``-row pick are the ``k``-row pick, so a smaller run is a subset of a larger one.
    """
    y = np.asarray(y)
    y = y.argmax(axis=1) if y.ndim == 2 else y.ravel()
    rng = np.random.default_rng(int(seed))
    order = rng.permutation(len(y))  # seeded shuffle; stable sorts below keep it within each class
    labels = y[order]
    rank = np.empty(len(y), np.int64)  # position of each shuffled row among the rows of its class
    for c in np.unique(labels):
        sel = labels == c
        rank[sel] = np.arange(int(sel.sum()))
    turn = np.lexsort((labels, rank))  # round robin: every class's 1st row, then every class's 2nd, ...
    return np.sort(order[turn[: max(0, min(int(n), len(y)))]])


def generator(kind: str):
    """Return the generator module for a data kind."""
    if kind not in KINDS:
        from ..util import HwflowError

        raise HwflowError(f"unknown data kind '{kind}': expected one of {', '.join(KINDS)}")
    return importlib.import_module(f"hwflow.data.{kind}")


def get_dataset(
    card, workers: int | None = None, progress: bool = True, force: bool = False, scheduler: str | None = None
) -> Dataset:
    """Return the card's dataset (generated on Dask or loaded from the cache), split into train/val/test."""
    from ..cluster import ClusterSettings

    spec = card.data_spec()
    cluster = ClusterSettings.from_card(card, scheduler=scheduler, n_workers=workers)
    arrays, manifest, folder = generator(spec["kind"]).generate(
        spec, workers=workers, progress=progress, force=force, cluster=cluster
    )
    d = card["data"]
    groups = arrays.get("groups")
    idx = split_indices(len(arrays["y"]), d["test_fraction"], d["val_fraction"], d["seed"], groups=groups)
    X, y = arrays["X"].astype(np.float32), arrays["y"].astype(np.int64)
    return Dataset(
        X[idx["train"]],
        y[idx["train"]],
        X[idx["val"]],
        y[idx["val"]],
        X[idx["test"]],
        y[idx["test"]],
        [str(c) for c in arrays["class_names"]],
        manifest,
        folder,
    )


def add_cli(sub) -> None:
    """Register `hwflow data`."""
    p = sub.add_parser("data", help="generate (or reuse) a cached dataset")
    p.add_argument("kind", nargs="?", choices=KINDS, help="dataset kind (default: the model card's)")
    p.add_argument(
        "--model", "-m", help="model card name or path (default: jet_transformer for jets, kws_conformer for kws)"
    )
    p.add_argument(
        "--workers",
        "-j",
        type=int,
        default=None,
        help="LocalCluster processes (default: the card's dask.n_workers, else one per core)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="address of a running Dask scheduler (tcp://host:8786) to send the shards to "
        "(default: the card's dask.scheduler, $HWFLOW_DASK_SCHEDULER, else a LocalCluster here)",
    )
    p.add_argument("--force", action="store_true", help="regenerate even if the cache is valid")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from ..config import load_card
    from ..util import HwflowError

    default_model = {"jets": "jet_transformer", "kws": "kws_conformer", None: "jet_transformer"}[args.kind]
    card = load_card(args.model or default_model)
    if args.kind and card["data"]["kind"] != args.kind:
        raise HwflowError(f"model card '{card.name}' uses data.kind '{card['data']['kind']}', not '{args.kind}'")
    from ..cluster import ClusterSettings

    spec = card.data_spec()
    cluster = ClusterSettings.from_card(card, scheduler=args.scheduler, n_workers=args.workers)
    arrays, manifest, folder = generator(spec["kind"]).generate(
        spec, workers=args.workers, progress=not args.quiet, force=args.force, cluster=cluster
    )
    counts = manifest.get("counts_per_class", {})
    print(f"dataset {folder} ({len(arrays['y'])} samples; {counts})")
    return 0
