"""Dataset contract shared by every generator: spec hash as cache key, seeded shards, manifest.

A dataset lives in ``data/<kind>-<spec hash>/`` as ``dataset.npz`` plus ``manifest.json``. The
manifest holds the spec, the seed, package versions, counts and the SHA-256 of the npz; a cache is
valid only when the manifest exists and the hash matches. Shards run each in a fresh process
(``maxtasksperchild=1``) with a seed derived from (base seed, class, shard index), so the result
does not depend on the number of workers.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..util import HwflowError, atomic_path, atomic_write_json, package_versions, project_root, sha256_file, stable_hash

MANIFEST = "manifest.json"
ARRAYS = "dataset.npz"
PYTHIA_SEED_MAX = 900_000_000  # Pythia's Random:seed upper bound


def shard_seed(base_seed: int, class_index: int, shard_index: int) -> int:
    """Return a deterministic seed in [1, 9e8) for one shard, independent of worker count."""
    ss = np.random.SeedSequence([int(base_seed), int(class_index), int(shard_index)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] % (PYTHIA_SEED_MAX - 1)) + 1


def data_root() -> Path:
    """Return the data directory: $HWFLOW_DATA or <project>/data."""
    return Path(os.environ.get("HWFLOW_DATA", project_root() / "data"))


def dataset_dir(kind: str, spec: dict, root: Path | None = None) -> Path:
    """Return the cache folder for a dataset spec."""
    return Path(root or data_root()) / f"{kind}-{stable_hash(spec)}"


def load_cached(kind: str, spec: dict, root: Path | None = None) -> tuple[dict[str, np.ndarray], dict] | None:
    """Return (arrays, manifest) when a valid cache for ``spec`` exists, else None."""
    d = dataset_dir(kind, spec, root)
    man_path, arr_path = d / MANIFEST, d / ARRAYS
    if not (man_path.exists() and arr_path.exists()):
        return None
    try:
        manifest = json.loads(man_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    if not isinstance(manifest, dict):
        return None  # valid JSON but not a manifest: treat as corrupt
    if manifest.get("spec_hash") != stable_hash(spec) or manifest.get("content_sha256") != sha256_file(arr_path):
        return None
    try:
        with np.load(arr_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None  # unreadable despite a matching hash (e.g. written by an incompatible numpy): regenerate
    return arrays, manifest


def save(
    kind: str,
    spec: dict,
    arrays: dict[str, np.ndarray],
    extra: dict[str, Any],
    versions: Iterable[str] = (),
    root: Path | None = None,
) -> Path:
    """Write arrays + manifest atomically (npz first, manifest last); return the folder."""
    d = dataset_dir(kind, spec, root)
    d.mkdir(parents=True, exist_ok=True)
    with atomic_path(d / ARRAYS, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    manifest = {
        "kind": kind,
        "spec": spec,
        "spec_hash": stable_hash(spec),
        "created_unix": time.time(),
        "versions": package_versions(["hwflow", "numpy", *versions]),
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
        "content_sha256": sha256_file(d / ARRAYS),
        **extra,
    }
    atomic_write_json(d / MANIFEST, manifest)
    return d


def run_shards(
    fn: Callable[[dict], Any],
    tasks: list[dict],
    workers: int | None = None,
    desc: str = "shards",
    progress: bool = True,
) -> list[Any]:
    """Run ``fn(task)`` for each task, each in a fresh process; return results in task order."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    results: list[Any] = [None] * len(tasks)
    bar = tqdm(total=len(tasks), desc=desc, unit="shard", disable=not progress) if tqdm else None
    # an executor (not mp.Pool): when a worker dies at start-up - typically a script without an
    # `if __name__ == "__main__":` guard, re-imported by the spawned child - Pool respawns it forever,
    # while the executor fails fast with BrokenProcessPool
    ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), max_tasks_per_child=1)
    try:
        futures = {ex.submit(fn, t): i for i, t in enumerate(tasks)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            if bar:
                bar.update(1)
    except BrokenProcessPool:
        raise HwflowError(
            f"a {desc} worker process died: if you call hwflow from a Python script, put the call under "
            '`if __name__ == "__main__":` (workers are spawned and re-import the script); '
            "otherwise check free memory"
        ) from None
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
        if bar:
            bar.close()
    return results


def split_indices(
    n: int, test_fraction: float, val_fraction: float, seed: int, groups: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Return seeded, sorted train/val/test index arrays; with ``groups``, each group lies wholly in one split.

    With groups, test and validation both hold out whole groups (e.g. unseen voices), so early
    stopping is judged on the same kind of generalisation as the test; the fractions are fractions
    of the groups, at least one group each when the fraction is > 0.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        perm = rng.permutation(n)
        n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
        return {
            "test": np.sort(perm[:n_test]),
            "val": np.sort(perm[n_test : n_test + n_val]),
            "train": np.sort(perm[n_test + n_val :]),
        }
    groups = np.asarray(groups)
    if len(groups) != n:
        raise HwflowError(f"split_indices: {len(groups)} group ids for {n} samples (generator bug)")
    uniq = rng.permutation(np.unique(groups))
    n_test = max(1, int(round(len(uniq) * test_fraction))) if test_fraction > 0 else 0
    n_val = max(1, int(round(len(uniq) * val_fraction))) if val_fraction > 0 else 0
    if n_test + n_val >= len(uniq):
        raise HwflowError(
            f"only {len(uniq)} groups (e.g. voice variants) for test {n_test} + val {n_val} + train >= 1: "
            "add voices/variants or lower data.test_fraction / data.val_fraction"
        )
    test_mask = np.isin(groups, uniq[:n_test])
    val_mask = np.isin(groups, uniq[n_test : n_test + n_val])
    return {
        "test": np.flatnonzero(test_mask),
        "val": np.flatnonzero(val_mask),
        "train": np.flatnonzero(~(test_mask | val_mask)),
    }


def require(cond: bool, msg: str) -> None:
    """Raise HwflowError(msg) unless ``cond``."""
    if not cond:
        raise HwflowError(msg)
