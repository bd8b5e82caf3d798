"""Dataset contract shared by every generator: spec hash as cache key, seeded shards, manifest.

A dataset lives in ``data/<kind>-<spec hash>/`` as ``dataset.npz`` plus ``manifest.json``. The
manifest holds the spec, the seed, package versions, counts and the SHA-256 of the npz; a cache is
valid only when the manifest exists and the hash matches. Shards are Dask tasks (hwflow.cluster) with a
seed derived from (base seed, class, shard index), so the result does not depend on the number of
workers; each finished shard is its own atomic file under ``data/<kind>-shards-<hash>/``, so a killed
run resumes with the missing shards only, and the dataset (npz, then manifest) is written once all exist.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..cluster import ClusterSettings, raise_failures, run_tasks
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


def shard_dir(kind: str, shard_spec: dict, root: Path | None = None) -> Path:
    """Return the folder of finished shards for ``shard_spec`` (the spec minus the dataset size)."""
    return Path(root or data_root()) / f"{kind}-shards-{stable_hash(shard_spec)}"


def save_shard(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write one shard's arrays and its metadata (JSON in the npz) atomically; return the path."""
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays, _meta=np.array(json.dumps(meta, default=float)))
    return path


def load_shard(path: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """Return (arrays, meta) of a finished shard file, or None when it is missing or unreadable."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "_meta"}
            meta = json.loads(str(z["_meta"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError):
        return None
    return arrays, meta


def run_cached_shards(
    kind: str,
    shard_spec: dict,
    fn: Callable[[Any], tuple[dict[str, np.ndarray], dict]],
    tasks: list[Any],
    keys: list[str],
    settings=None,
    desc: str = "shards",
    progress: bool = True,
    force: bool = False,
    root: Path | None = None,
) -> tuple[list[tuple[dict[str, np.ndarray], dict]], dict]:
    """Return ([(arrays, meta)] in task order, run info), running on Dask only the shards not already on disk.

    ``fn(task)`` returns (arrays, meta) and must depend only on the task (its seed), never on the process
    that runs it, so results do not depend on the number or reuse of workers. Each shard is saved
    atomically under ``shard_dir(kind, shard_spec)/<key>.npz`` the moment it comes back, so a killed or
    interrupted run resumes with the missing shards only; a failed shard raises after the others finish.
    """
    d = shard_dir(kind, shard_spec, root)
    paths = [d / f"{k}.npz" for k in keys]
    done: dict[int, tuple[dict, dict]] = {}
    if not force:
        for i, p in enumerate(paths):
            hit = load_shard(p)
            if hit is not None:
                done[i] = hit
    missing = [i for i in range(len(tasks)) if i not in done]

    def keep(j: int, res) -> None:
        if res.error is None:
            i = missing[j]
            arrays, meta = res.value
            meta = {**meta, "key": keys[i], "worker": res.worker}
            save_shard(paths[i], arrays, meta)
            done[i] = (arrays, meta)

    settings = settings or ClusterSettings()
    if missing and not (settings.scheduler or settings.jobqueue):
        # a local cluster never needs more processes than shards to run (each costs seconds to start)
        n = min(settings.n_workers or os.cpu_count() or 1, len(missing))
        settings = dataclasses.replace(settings, n_workers=n)
    t0 = time.time()
    try:
        results = run_tasks(
            fn,
            [tasks[i] for i in missing],
            [keys[i] for i in missing],
            settings,
            desc=desc,
            progress=progress,
            on_result=keep,
        )
    except RuntimeError as e:
        if "failed to start" not in str(e):
            raise
        # a script without a main guard: LocalCluster workers are spawned and re-import it, then stop at start-up
        raise HwflowError(
            f"Dask workers failed to start ({e}): if you call hwflow from a Python script, put the call under "
            '`if __name__ == "__main__":` (workers are spawned and re-import the script); otherwise check free memory'
        ) from None
    raise_failures(results, f"{desc} shards")
    info = {
        "shards": len(tasks),
        "generated": len(missing),
        "reused": len(tasks) - len(missing),
        "wall_s": round(time.time() - t0, 2),
        "shard_dir": str(d),
    }
    return [done[i] for i in range(len(tasks))], info


def worker_rates(metas: list[dict], count_key: str) -> dict[str, dict]:
    """Return {worker: {shards, <count_key>, cpu_s, <count_key>_per_cpu_s}} summed over shard metadata."""
    out: dict[str, dict] = {}
    for m in metas:
        w = out.setdefault(str(m.get("worker")), {"shards": 0, count_key: 0, "cpu_s": 0.0})
        w["shards"] += 1
        w[count_key] += int(m.get(count_key, 0))
        w["cpu_s"] += float(m.get("cpu_s", 0.0))
    for w in out.values():
        w["cpu_s"] = round(w["cpu_s"], 2)
        w[f"{count_key}_per_cpu_s"] = round(w[count_key] / w["cpu_s"], 2) if w["cpu_s"] > 0 else None
    return out


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
