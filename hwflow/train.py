"""Training stage: quantization-aware QKeras training plus the float twin, saved under models/<name>/.

``train(card)`` builds both models from the card (``hwflow.nn.build``), trains each with Adam and
early stopping on the validation loss (best weights restored), seeded and with deterministic ops,
then writes, atomically as one folder:

- ``qkeras.h5`` / ``float.h5`` — Keras-2 HDF5 models (reload with :func:`load_trained`);
- ``summary.json`` — accuracy, per-class AUC, confusion matrices, parameter count, training time,
  epochs, seeds, the dataset manifest reference, package versions and the card hash;
- ``roc.png`` (float solid, QKeras dotted) and ``training.png`` (loss/accuracy curves).

Each saved file is reloaded and must predict exactly what the in-memory model predicted before the
folder is published, so a model that cannot be deserialized is never left behind.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

import numpy as np

from .cluster import report_progress
from .util import HwflowError, atomic_dir, atomic_write_json, cpu_info, package_versions, stable_hash

MODEL_FILES = {"qkeras": "qkeras.h5", "float": "float.h5"}
VERSIONED = ["hwflow", "tensorflow-cpu", "keras", "qkeras", "numpy", "scikit-learn", "hls4ml"]


TRAINED_SECTIONS = ("data", "model", "quant", "train")


def trained_part(card) -> dict:
    """Return what defines a trained model: the data, model, quant and train sections, and the softmax tables of
    hls.softmax, which the exact Keras layers compute with as the firmware does (hwflow.nn.transformer.table_settings),
    so two cards differing only there train two models."""
    return {**{k: card[k] for k in TRAINED_SECTIONS}, "hls.softmax": dict(card["hls"].get("softmax") or {})}


def card_model_hash(card) -> str:
    """Return the hash of what defines a trained model (trained_part)."""
    return stable_hash(trained_part(card))


def card_changes(trained: dict, card) -> list[str]:
    """Return 'key: trained -> now' lines where the card differs from the one a model was trained with.

    Keys the trained card did not have (added to the schema later, with defaults) are ignored, so a
    schema extension does not invalidate trained models; every key the user could have set is compared.
    """
    out: list[str] = []

    def walk(old, new, where):
        if isinstance(old, dict) and isinstance(new, dict):
            for k, v in old.items():
                walk(v, new.get(k, "<missing>"), f"{where}.{k}" if where else k)
        elif old != new:
            out.append(f"{where}: {old!r} -> {new!r}")

    now = trained_part(card)
    walk({k: trained[k] for k in now if k in trained}, now, "")
    return out


def set_seed(seed: int) -> None:
    """Seed Python, numpy and TensorFlow and make TensorFlow ops deterministic."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(int(seed))
    with contextlib.suppress(AttributeError):  # pragma: no cover - older TF
        tf.config.experimental.enable_op_determinism()


def _fit(card, model, ds, seed: int, verbose: int) -> tuple[dict, float, int]:
    """Train one model in place; return (history dict, seconds, best epoch 1-based)."""
    import tensorflow as tf

    t = card["train"]
    set_seed(seed)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=t["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = [
        tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=t["patience"], restore_best_weights=True),
        # an exploration trial trains silently on a Dask worker: its epochs show beside the trials' progress bar
        tf.keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: _report_epoch(model, epoch, t, logs)),
    ]
    if t.get("reduce_lr", True):
        callbacks.append(
            tf.keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=0.5,
                patience=max(2, t["patience"] // 2),
                min_lr=t["learning_rate"] / 32,
                verbose=0,
            )
        )
    start = time.perf_counter()
    hist = model.fit(
        ds.x_train,
        ds.y_train,
        validation_data=(ds.x_val, ds.y_val),
        epochs=t["epochs"],
        batch_size=t["batch_size"],
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    h = {k: [float(v) for v in vals] for k, vals in hist.history.items() if k != "lr"}
    best = int(np.argmin(h["val_loss"])) + 1 if h.get("val_loss") else len(h.get("loss", []))
    return h, seconds, best


def _report_epoch(model, epoch: int, t: dict, logs: dict | None) -> None:
    val = (logs or {}).get("val_loss", float("nan"))
    report_progress(f"train {model.name} epoch {epoch + 1}/{t['epochs']}, val_loss {val:.4f}")


def warm_start(model, source: str, variant: str = "qkeras") -> int:
    """Copy the weights of models/<source>/<variant>.h5 into ``model`` where layer name and shape match; return how
    many layers were copied."""
    import h5py

    from .util import project_root

    path = project_root() / "models" / source / MODEL_FILES[variant]
    if not path.exists():
        raise HwflowError(f"train.warm_start = {source!r}: no {path}; run `make train MODEL={source}` first")
    copied = 0
    with h5py.File(path, "r") as f:
        group = f.get("model_weights", f)
        for layer in model.layers:
            # frozen layers (the input standardization) keep the statistics set from this card's training data
            if layer.name not in group or not layer.trainable_weights:
                continue
            g = group[layer.name]
            names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs.get("weight_names", [])]
            saved = [np.asarray(g[n]) for n in names]
            mine = layer.get_weights()
            # a different width or head count changes the shapes: that layer keeps its fresh initialization
            if len(saved) == len(mine) and all(a.shape == b.shape for a, b in zip(saved, mine)):
                layer.set_weights(saved)
                copied += 1
    return copied


def _check_dataset(card, ds) -> None:
    if len(ds.x_train) == 0 or len(ds.x_val) == 0 or len(ds.x_test) == 0:
        raise HwflowError(
            f"dataset of '{card.name}' has an empty split (train {len(ds.x_train)}, val {len(ds.x_val)}, "
            f"test {len(ds.x_test)}): raise data.*.jets_per_class or the split fractions"
        )
    if not np.all(np.isfinite(ds.x_train)):
        raise HwflowError("training inputs contain NaN/inf: regenerate the dataset with `make data --force`")


def _predict(model, x, batch: int = 1024) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch, verbose=0), dtype=np.float64)


def train(card, dataset=None, verbose: int = 2) -> dict:
    """Return the training summary after training and saving the QKeras model and its float twin under
    models/<name>/."""
    import tensorflow as tf

    from . import metrics
    from .nn import build, custom_objects
    from .nn.transformer import set_input_norm

    if dataset is None:
        from .data import get_dataset

        dataset = get_dataset(card)
    ds = dataset
    _check_dataset(card, ds)
    seed = int(card["train"]["seed"])
    input_shape, n_classes = tuple(ds.x_train.shape[1:]), ds.n_classes
    variants = ["qkeras"] + (["float"] if card["train"]["float_twin"] else [])

    models, histories, times, best_epochs, scores = {}, {}, {}, {}, {}
    for variant in variants:
        # the same seed for both, so the twins start from the same initial weights and batch order
        set_seed(seed)
        kwargs = {"input_shape": input_shape, "n_classes": n_classes}
        model = build(card, quantized=(variant == "qkeras"), **kwargs)
        # the transformer's frozen input standardization takes its statistics from the training inputs
        norm_stats = set_input_norm(model, ds.x_train) if card["model"]["kind"] == "transformer" else None
        if card["train"].get("warm_start"):
            warm_start(model, card["train"]["warm_start"], variant)
        if verbose:
            print(
                f"training {variant} model '{model.name}' ({model.count_params()} parameters) on {len(ds.x_train)} "
                "samples"
            )
        histories[variant], times[variant], best_epochs[variant] = _fit(card, model, ds, seed, verbose)
        models[variant] = model
        scores[variant] = _predict(model, ds.x_test)

    results = {v: metrics.summary(scores[v], ds.y_test, ds.class_names) for v in variants}
    summary = {
        "name": card.name,
        "model_kind": card["model"]["kind"],
        "card_hash": card_model_hash(card),
        "trained_card": trained_part(card),
        "parameters": int(models["qkeras"].count_params()),
        "input_shape": list(input_shape),
        "input_norm": norm_stats,
        "class_names": list(ds.class_names),
        "n_train": int(len(ds.x_train)),
        "n_val": int(len(ds.x_val)),
        "n_test": int(len(ds.x_test)),
        "accuracy": {v: results[v]["accuracy"] for v in variants},
        "auc": {v: results[v]["auc"] for v in variants},
        "auc_mean": {v: results[v]["auc_mean"] for v in variants},
        "confusion_matrix": {v: results[v]["confusion_matrix"] for v in variants},
        "training_seconds": {v: round(times[v], 3) for v in variants},
        "epochs_run": {v: len(histories[v]["loss"]) for v in variants},
        "best_epoch": best_epochs,
        "final_val_loss": {v: float(min(histories[v]["val_loss"])) for v in variants},
        "seeds": {"train": seed, "data": int(card["data"]["seed"])},
        "train_settings": dict(card["train"]),
        "dataset": {
            "path": str(ds.path) if ds.path else None,
            "spec_hash": ds.manifest.get("spec_hash"),
            "content_sha256": ds.manifest.get("content_sha256"),
            "counts_per_class": ds.manifest.get("counts_per_class"),
        },
        "versions": package_versions(VERSIONED),
        "cpu": cpu_info(),
        "history": histories,
        "files": {v: MODEL_FILES[v] for v in variants},
    }

    out = card.model_dir()
    with atomic_dir(out) as tmp:
        for v in variants:
            path = tmp / MODEL_FILES[v]
            models[v].save(path, save_format="h5", include_optimizer=False)
            # a saved model must reload and predict exactly what was trained, or nothing is published
            again = tf.keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
            diff = float(np.max(np.abs(_predict(again, ds.x_test) - scores[v]))) if len(ds.x_test) else 0.0
            summary.setdefault("reload_max_abs_diff", {})[v] = diff
            if diff > 1e-6:
                raise HwflowError(
                    f"{v} model does not reload identically from HDF5 (max diff {diff:.3g}): "
                    f"a layer's get_config is incomplete; report this as a bug"
                )
        metrics.plot_roc(
            tmp / "roc.png",
            ds.y_test,
            {v: scores[v] for v in ("float", "qkeras") if v in scores},
            ds.class_names,
            title=f"{card.name}: test set ({len(ds.y_test)} samples)",
        )
        metrics.plot_training(tmp / "training.png", histories, title=f"{card.name}: training")
        atomic_write_json(tmp / "summary.json", summary)
    summary["model_dir"] = str(out)
    return summary


def trained_summary(card, siblings=()) -> dict | None:
    """Return the training summary when models/<name>/ holds a model trained from this card's data, model, quant
    and train sections (so a rerun skips training), else None.

    ``siblings``: other model directories to reuse a model from when it was trained from the same sections (e.g.
    exploration trials that differ only in firmware or RTL settings); the first match is copied into
    models/<name>/ as a whole, so each card still owns its directory.
    """
    want = card_model_hash(card)
    for d in (card.model_dir(), *siblings):
        try:
            s = json.loads((Path(d) / "summary.json").read_text())
        except (OSError, ValueError):
            continue
        files = [Path(d) / f for f in (s.get("files") or {}).values()]
        if s.get("card_hash") != want or not files or not all(f.exists() for f in files):
            continue
        if Path(d) != card.model_dir():
            with atomic_dir(card.model_dir()) as tmp:
                for f in Path(d).iterdir():
                    if f.is_file():
                        shutil.copy2(f, tmp / f.name)
            s["reused_from"] = str(d)
        return s
    return None


def load_trained(card, which: str = "qkeras"):
    """Return the trained keras.Model ('qkeras' or 'float') of a card from models/<name>/."""
    if which not in MODEL_FILES:
        raise HwflowError(f"unknown model variant '{which}': expected one of {', '.join(MODEL_FILES)}")
    path = card.model_dir() / MODEL_FILES[which]
    if not path.exists():
        raise HwflowError(f"no trained {which} model at {path}: run `make train MODEL={card.name}` first")
    summary_path = card.model_dir() / "summary.json"
    if summary_path.exists():
        trained = json.loads(summary_path.read_text()).get("trained_card")
        changed = card_changes(trained, card) if trained else []
        if changed:
            shown = "; ".join(changed[:3]) + (f" (+{len(changed) - 3} more)" if len(changed) > 3 else "")
            raise HwflowError(
                f"models/{card.name}/ was trained from a different card ({shown}): "
                f"run `make train MODEL={card.name}` again"
            )
    import tensorflow as tf

    from .nn import custom_objects

    return tf.keras.models.load_model(path, custom_objects=custom_objects(), compile=False)


def add_cli(sub) -> None:
    """Register `hwflow train`."""
    p = sub.add_parser("train", help="train the QKeras model and its float twin of a model card")
    p.add_argument("model", help="model card name (models/<name>.yaml) or path")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="KEY=VALUE",
        help="override a card key, e.g. --set train.epochs=5 (repeatable)",
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch output")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from .config import load_card, parse_overrides

    card = load_card(args.model, parse_overrides(args.overrides))
    s = train(card, verbose=0 if args.quiet else 2)
    for v in s["accuracy"]:
        aucs = ", ".join(f"{k} {a:.3f}" for k, a in s["auc"][v].items())
        print(
            f"{v:7s} accuracy {s['accuracy'][v]:.4f}  AUC {aucs}  ({s['epochs_run'][v]} epochs, "
            f"{s['training_seconds'][v]:.0f} s)"
        )
    print(f"saved {s['model_dir']}/ (qkeras.h5, float.h5, summary.json, roc.png, training.png)")
    return 0
