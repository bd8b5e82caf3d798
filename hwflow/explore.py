"""Design-space exploration: Pareto fronts of accuracy against resources and latency, trials on Dask.

``hwflow explore MODEL`` reads a space (``models/<m>.explore.yaml`` by default): card keys, dotted as
``--set`` takes them, each with its choices or range. Optuna proposes trials (grid, random, or NSGA-II
for the three objectives) through ask/tell; each generation runs as Dask tasks (hwflow.cluster).

A trial is one *effective card*: the base card + the space's ``fixed`` overrides + the sampled
values, validated by hwflow.config and named ``<m>_x<hash>`` after the hash of its content, so its
outputs (models/, firmware/, reports/<name>/) are its own and a finished trial (reports/<name>/trial.json)
is skipped on a rerun. A trial runs the stages' public entry points: train (optionally warm-started),
firmware, C simulation, and the open-RTL route without simulators or Yosys for da4ml's cost estimate.
The trials on the front may get Yosys resources and simulated latency (``--yosys-front``).

Outputs, reports/<m>/explore/: trials.jsonl (one record per trial, rewritten atomically as trials
finish), study.json, pareto.md (the front, the default marked), accuracy_vs_{lut,dsp,latency_ii}.png;
and models/<m>/pareto/<k>.yaml, one runnable card per front point.
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cluster import report_progress
from .util import HwflowError, atomic_write_json, atomic_write_text, project_root, stable_hash, to_json

SAMPLERS = ("grid", "random", "nsga2")
# study objectives: (record key, direction); the figures behind them carry their tools in record["tools"]
OBJECTIVES = (("accuracy", "maximize"), ("lut", "minimize"), ("latency_x_ii", "minimize"))
TRIAL_RE = re.compile(r"_x[0-9a-f]{10}$")
SPACE_KEYS = {"model", "sampler", "trials", "seed", "population", "fixed", "params", "rtl_samples", "start"}
# card sections that never change the design: left out of the trial hash
NOT_HASHED = ("name", "description", "dask")


def is_trial_name(name: str) -> bool:
    """Return True for the name of an exploration trial (``<model>_x<10 hex digits>``)."""
    return bool(TRIAL_RE.search(name))


# ------------------------------------------------------------------------------------------------ the space
@dataclass
class Param:
    """One searched dimension: one or more card keys (joined by '+', set together) and their values."""

    name: str
    keys: list[str]
    choices: list | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    def distribution(self):
        """Return the Optuna distribution of this dimension."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices is not None:
            return CategoricalDistribution(self.choices)
        if all(isinstance(v, int) for v in (self.low, self.high, self.step or 1)):
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def contains(self, value) -> bool:
        """Return True when ``value`` is one of this dimension's choices or inside its range."""
        d = self.distribution()
        try:
            return bool(d._contains(d.to_internal_repr(value)))
        except (ValueError, TypeError):
            return False

    def grid(self) -> list:
        """Return every value of this dimension (ranges need a step)."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None and not isinstance(self.low, int):
            raise HwflowError(f"space: '{self.name}' is a float range without step: give step for the grid sampler")
        step = self.step or 1
        n = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        return [type(self.low)(self.low + i * step) for i in range(n)]


@dataclass
class Space:
    """An exploration space: the base card, fixed overrides of every trial, the searched dimensions, defaults."""

    model: str
    params: list[Param]
    fixed: dict = field(default_factory=dict)
    sampler: str = "nsga2"
    trials: int = 10
    seed: int = 0
    population: int | None = None
    rtl_samples: int = 200
    start: list[dict] = field(default_factory=list)  # points run first (after the default), e.g. hand-picked designs
    path: Path | None = None

    @property
    def study(self) -> str:
        """Return the study's name: '' for the model's default space, else the space file's own name (``ii4`` for
        models/jet_transformer.ii4.explore.yaml), so several studies of one model keep their own outputs."""
        if self.path is None or self.path.resolve() == space_path(self.model).resolve():
            return ""
        name = self.path.name.removesuffix(".yaml").removesuffix(".explore")
        return name.removeprefix(f"{Path(self.model).stem}.") or name

    def outputs(self, base) -> tuple[Path, Path]:
        """Return (reports/<m>/explore[-<study>]/, models/<m>/pareto[-<study>]/)."""
        tag = f"-{self.study}" if self.study else ""
        return base.report_dir() / f"explore{tag}", base.model_dir() / f"pareto{tag}"

    def distributions(self) -> dict:
        """Return {param name: Optuna distribution}."""
        return {p.name: p.distribution() for p in self.params}

    def overrides(self, values: dict | None = None) -> dict:
        """Return the nested card overrides of one trial: the fixed ones, then the sampled values (none: the
        default design's overrides)."""
        from .config import set_dotted

        out: dict = {}
        for k, v in self.fixed.items():
            set_dotted(out, k, v)
        for p in self.params if values is not None else ():
            for k in p.keys:
                set_dotted(out, k, values[p.name])
        return out


def _parse_param(name: str, spec: Any, where: str) -> Param:
    keys = [k.strip() for k in name.split("+") if k.strip()]
    if not keys:
        raise HwflowError(f"{where}: empty parameter name")
    if isinstance(spec, list):
        if not spec:
            raise HwflowError(f"{where}: '{name}' has no choices: list at least one value")
        return Param(name, keys, choices=spec)
    if isinstance(spec, dict):
        unknown = set(spec) - {"low", "high", "step", "log", "choices"}
        if unknown:
            raise HwflowError(
                f"{where}: '{name}' has unknown field(s) {', '.join(sorted(unknown))}: use low/high/step/log"
            )
        if "choices" in spec:
            return _parse_param(name, spec["choices"], where)
        if "low" not in spec or "high" not in spec or spec["low"] > spec["high"]:
            raise HwflowError(f"{where}: '{name}' needs low <= high (or a list of choices)")
        return Param(name, keys, low=spec["low"], high=spec["high"], step=spec.get("step"), log=bool(spec.get("log")))
    raise HwflowError(f"{where}: '{name}' must be a list of choices or {{low, high, step}}, got {spec!r}")


def space_path(model: str) -> Path:
    """Return models/<m>.explore.yaml, the default space of a model."""
    return project_root() / "models" / f"{Path(model).stem}.explore.yaml"


def load_space(model: str, path: str | Path | None = None) -> Space:
    """Return the validated Space of a model (its default space file, or ``path``)."""
    import yaml

    from .config import CardError, load_card

    p = Path(path) if path else space_path(model)
    if not p.is_file():
        raise HwflowError(
            f"no exploration space at {p}: write one (see models/jet_transformer.explore.yaml) or --space"
        )
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise HwflowError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    unknown = set(raw) - SPACE_KEYS
    if unknown:
        raise HwflowError(
            f"{p.name}: unknown key(s) {', '.join(sorted(unknown))}: allowed {', '.join(sorted(SPACE_KEYS))}"
        )
    if raw.get("model") and Path(str(raw["model"])).stem != Path(model).stem:
        raise HwflowError(f"{p.name} is the space of '{raw['model']}', not of '{model}': pass the matching --space")
    params = [_parse_param(str(k), v, p.name) for k, v in (raw.get("params") or {}).items()]
    if not params:
        raise HwflowError(f"{p.name}: 'params' is empty: name at least one card key and its values")
    sampler = raw.get("sampler", "nsga2")
    if sampler not in SAMPLERS:
        raise HwflowError(f"{p.name}: sampler {sampler!r}: expected one of {', '.join(SAMPLERS)}")
    space = Space(
        model=model,
        params=params,
        fixed=dict(raw.get("fixed") or {}),
        sampler=sampler,
        trials=int(raw.get("trials", 10)),
        seed=int(raw.get("seed", 0)),
        population=raw.get("population"),
        rtl_samples=int(raw.get("rtl_samples", 200)),
        start=_parse_start(raw.get("start"), params, sampler, p.name),
        path=p,
    )
    # every key must be a card key and every bound a valid value: the corner cards name a wrong one at once
    for values in [{q.name: corner(q) for q in params} for corner in (_first, _last)] + space.start:
        try:
            load_card(model, space.overrides(values))
        except CardError as e:
            raise HwflowError(f"{p.name}: {e}") from None
    return space


def _parse_start(raw: Any, params: list[Param], sampler: str, where: str) -> list[dict]:
    """Return the space's start points: each gives a value of every dimension, inside its choices or range."""
    if not raw:
        return []
    if sampler == "grid":
        raise HwflowError(f"{where}: 'start' points need sampler nsga2 or random (the grid runs every point anyway)")
    if not isinstance(raw, list) or not all(isinstance(v, dict) for v in raw):
        raise HwflowError(f"{where}: 'start' must be a list of {{parameter: value}} mappings")
    names = [q.name for q in params]
    for i, point in enumerate(raw):
        if set(point) != set(names):
            missing, extra = sorted(set(names) - set(point)), sorted(set(point) - set(names))
            raise HwflowError(
                f"{where}: start point {i} must give exactly the params' names (missing: {missing}, unknown: {extra})"
            )
        for q in params:
            if not q.contains(point[q.name]):
                raise HwflowError(
                    f"{where}: start point {i}: {q.name} = {point[q.name]!r} is outside its choices/range"
                )
    return [dict(point) for point in raw]


def _first(p: Param):
    return p.choices[0] if p.choices is not None else p.low


def _last(p: Param):
    return p.choices[-1] if p.choices is not None else p.high


# ------------------------------------------------------------------------------------------------ one trial
def effective_card(space: Space, values: dict):
    """Return the validated effective Card of one trial, named after the hash of its content."""
    from .config import load_card

    card = load_card(space.model, space.overrides(values))
    base = card.name
    card["name"] = f"{base}_x{card_hash(card)[:10]}"
    return card


def card_hash(card) -> str:
    """Return the hash of everything in a card that defines the design (not its name, description or dask)."""
    return stable_hash({k: v for k, v in card.items() if k not in NOT_HASHED}, n=32)


def default_values(space: Space) -> dict | None:
    """Return the default design's value of every dimension (the base card under the space's fixed overrides, so a
    dimension that also has a fixed value, like train.epochs, defaults to it), or None when one is outside."""
    from .config import load_card

    card = load_card(space.model, space.overrides())
    out = {}
    for p in space.params:
        node: Any = card
        for part in p.keys[0].split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None and not p.contains(None):
            # a key the base card leaves unset (a role left to the builder's table, a library-default type) is the
            # default only when the space lists null among its choices; otherwise there is no default to compare
            return None
        if not p.contains(node):
            return None
        out[p.name] = node
    return out


def trial_task(arg: tuple) -> dict:
    """Return the record of one trial (a Dask task): from reports/<name>/trial.json when it finished before, else
    ``fn(card, task)``'s, written there atomically so a rerun skips it."""
    import os

    from .config import validate

    fn, task = arg
    os.environ["HWFLOW_ROOT"] = task["root"]  # workers of a remote cluster see the same project on a shared disk
    card = validate(task["card"])
    path = card.report_dir() / "trial.json"
    if path.exists():
        return json.loads(path.read_text())
    rec = fn(card, task)
    atomic_write_json(path, rec)
    return rec


def run_trial(card, task: dict) -> dict:
    """Return the record of one trial after running its stages: train, firmware, C simulation, da4ml estimate."""
    rec = {"name": card.name, "status": "ok", "seconds": {}, "tools": {}}
    rec.update(_train_step(card, rec))
    rec.update(_csim_step(card, rec))
    rec.update(_estimate_step(card, rec, int(task.get("rtl_samples", 200))))
    _objectives(rec)
    return rec


def _timed(rec: dict, what: str, t0: float) -> None:
    rec["seconds"][what] = round(time.perf_counter() - t0, 1)


def _train_step(card, rec: dict) -> dict:
    from .train import train, trained_summary

    t0 = time.perf_counter()
    # a trial interrupted after training resumes from its model, and trials that differ only in firmware or RTL
    # settings (reuse factor, table types, tokens per cycle) share one training
    base = TRIAL_RE.sub("", card.name)
    siblings = sorted(p for p in card.model_dir().parent.glob(f"{base}_x*") if TRIAL_RE.search(p.name))
    s = trained_summary(card, siblings) or train(card, verbose=0)
    _timed(rec, "train", t0)
    rec["tools"]["accuracy_qkeras"] = "QKeras (TensorFlow), full test split"
    return {
        "accuracy_qkeras": s["accuracy"]["qkeras"],
        "parameters": s["parameters"],
        "epochs_run": s["epochs_run"]["qkeras"],
        "n_test": s["n_test"],
    }


def _csim_step(card, rec: dict) -> dict:
    from . import hls, verify

    t0 = time.perf_counter()
    report_progress("hls4ml firmware")
    hls.firmware(card)
    _timed(rec, "firmware", t0)
    t0 = time.perf_counter()
    report_progress(f"C simulation of up to {card['hls']['csim_samples']} test samples")
    r = verify.csim(card, trace=False)
    _timed(rec, "csim", t0)
    n = int(r["n_samples"])
    acc = float(r["accuracy_csim"])
    tool = f"hls4ml C simulation ({n} test samples)"
    rec["tools"].update(
        accuracy=tool,
        auc=f"{tool}; error: Hanley-McNeil standard error",
        argmax_agreement=f"{tool} vs QKeras",
    )
    auc = {k: float(v) for k, v in r["auc_csim"].items()}
    err = {k: float(v) for k, v in r["auc_stat_error"].items()}
    finite = [k for k in auc if math.isfinite(auc[k])]
    return {
        "accuracy": acc,
        # binomial standard error of the accuracy on n samples: differences inside it are noise
        "accuracy_stat_error": math.sqrt(max(acc * (1 - acc), 0.0) / n) if n else None,
        "auc": auc,
        "auc_stat_error": err,
        "auc_mean": sum(auc[k] for k in finite) / len(finite) if finite else None,
        "auc_mean_stat_error": math.sqrt(sum(err[k] ** 2 for k in finite)) / len(finite) if finite else None,
        "argmax_agreement": r["argmax_agreement_vs_qkeras"],
        "n_csim": n,
    }


def _estimate_step(card, rec: dict, samples: int) -> dict:
    """da4ml's cost estimate: the open-RTL stage with the simulators skipped (sim_max_cost 1) and no Yosys."""
    from . import rtl
    from .config import Card

    est = Card(copy.deepcopy(dict(card)))
    est.path = card.path
    est["rtl"].update(sim_max_cost=1, yosys=False, ecp5=False, iverilog_samples=0)
    t0 = time.perf_counter()
    report_progress(f"da4ml estimate, {card['rtl']['tokens_per_cycle']} tokens per clock")
    try:
        r = rtl.rtl(est, samples=samples, yosys=False)
    except rtl.NotFoldable as e:
        # no token-serial design at this tokens_per_cycle (cosFormer's positions, a group that does not divide G):
        # the trial keeps its accuracy and says why it has no hardware figures; Optuna is told it failed
        _timed(rec, "rtl_estimate", t0)
        rec["rtl_skipped"] = str(e)
        return {"tokens_per_cycle": card["rtl"]["tokens_per_cycle"]}
    _timed(rec, "rtl_estimate", t0)
    arch = r.get("architecture") or {}
    rec["tools"].update(
        lut_da4ml="da4ml estimate (LUT, multipliers as LUT logic; not synthesis)",
        var_products="da4ml trace (variable x variable products; Yosys maps them to DSP48E2 or LUTs)",
        interval=r.get("latency_source") or "",
        pipeline_stages="da4ml pipeline stages",
        bit_exact_estimate=r.get("bit_exact_source") or "",
    )
    return {
        "lut_da4ml": r.get("estimated_cost_luts_da4ml"),
        "register_bits_da4ml": r.get("register_bits_da4ml"),
        "var_products": (r.get("var_products") or {}).get("count"),
        "pipeline_stages": r.get("pipeline_stages"),
        "interval": r.get("interval"),
        "latency_cycles": r.get("latency_cycles"),
        "tokens_per_cycle": arch.get("tokens_per_cycle", 0),
        "bit_exact_estimate": r.get("bit_exact_fraction_vs_csim"),
        # the samples that check ran on: the space's rtl_samples may be edited after the trial ran
        "bit_exact_samples": r.get("n_samples"),
    }


def _objectives(rec: dict) -> None:
    """Fill the three objective figures of a record from its measured (or estimated) numbers, with their tools."""
    ys = rec.get("yosys") or {}
    rec["lut"] = rec.get("lut_da4ml")
    rec["tools"]["lut"] = rec["tools"].get("lut_da4ml", "da4ml estimate")
    lat, ii = rec.get("latency_cycles"), rec.get("interval")
    if ys.get("latency_cycles") is not None:
        lat, ii = ys["latency_cycles"], ys.get("interval")
        rec["tools"]["latency_x_ii"] = ys.get("latency_source") or "RTL simulation"
    elif lat is not None:
        rec["tools"]["latency_x_ii"] = "da4ml pipeline depth x interval (not simulated)"
    else:
        # token-serial design not simulated: the segments' pipeline stages are a lower bound of its latency
        lat = rec.get("pipeline_stages")
        rec["tools"]["latency_x_ii"] = "da4ml pipeline stages (lower bound of the latency, not simulated) x interval"
    rec["latency_x_ii"] = lat * ii if lat is not None and ii is not None else None


def front_task(arg: tuple) -> dict:
    """Return ``fn(card, task)`` for one front card (a Dask task)."""
    import os

    from .config import validate

    fn, task = arg
    os.environ["HWFLOW_ROOT"] = task["root"]
    return fn(validate(task["card"]), task)


def run_front_rtl(card, task: dict) -> dict:
    """Return the open-RTL figures (Yosys resources, simulated latency/II) of one front card."""
    from . import rtl

    t0 = time.perf_counter()
    r = rtl.rtl(card, yosys=True)
    res = r.get("resources") or {}
    return {
        "LUT": res.get("LUT"),
        "FF": res.get("FF"),
        "DSP": res.get("DSP"),
        "latency_cycles": r.get("latency_cycles"),
        "interval": r.get("interval"),
        "latency_source": r.get("latency_source"),
        "tool": r.get("synthesizer"),
        "label": r.get("label"),
        "seconds": round(time.perf_counter() - t0, 1),
    }


# ------------------------------------------------------------------------------------------------ the study
def _grid_sampler_class():
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler, driven by ask/tell: the study ends after its trials, not by ``study.stop()`` (which
        only exists inside ``study.optimize``)."""

        def after_trial(self, study, trial, state, values) -> None:
            return None

    return GridSampler


def _GridSampler(*args, **kw):  # noqa: N802 - a class made on first use, so optuna loads only when a study runs
    return _grid_sampler_class()(*args, **kw)


def make_sampler(space: Space, population: int):
    """Return the seeded Optuna sampler of the space."""
    import optuna

    if space.sampler == "grid":
        return _GridSampler({p.name: p.grid() for p in space.params}, seed=space.seed)
    if space.sampler == "random":
        return optuna.samplers.RandomSampler(seed=space.seed)
    return optuna.samplers.NSGAIISampler(population_size=population, seed=space.seed)


def _grid_size(space: Space) -> int:
    return math.prod(len(p.grid()) for p in space.params)


def explore(
    model: str,
    space_file: str | Path | None = None,
    trials: int | None = None,
    sampler: str | None = None,
    seed: int | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    yosys_front: bool = False,
    trial_fn=run_trial,
    front_fn=run_front_rtl,
    progress: bool = True,
) -> dict:
    """Return the study summary after running (or resuming) a design-space exploration of a model card."""
    import optuna

    from .cluster import ClusterSettings, client, run_tasks
    from .config import load_card

    space = load_space(model, space_file)
    if sampler:
        if sampler not in SAMPLERS:
            raise HwflowError(f"--sampler {sampler!r}: expected one of {', '.join(SAMPLERS)}")
        space.sampler = sampler
    if seed is not None:
        space.seed = seed
    n_trials = int(trials or space.trials)
    if space.sampler == "grid":
        n_trials = min(n_trials, _grid_size(space))
    if n_trials < 1:
        raise HwflowError(f"--trials {n_trials}: run at least one trial")
    base = load_card(model)
    _check_prerequisites(base, space, trial_fn)
    settings = ClusterSettings.from_card(base, scheduler=scheduler, n_workers=n_workers)
    population = int(space.population or max(2, min(16, n_trials // 2)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=[d for _, d in OBJECTIVES], sampler=make_sampler(space, population))
    defaults = default_values(space)
    if defaults is not None and space.sampler != "grid":
        study.enqueue_trial(defaults)  # the default design is always a trial, so the front is read against it
    for point in space.start:
        if point != defaults:
            study.enqueue_trial(point)
    out = space.outputs(base)[0]
    records: list[dict] = []
    t_start = time.perf_counter()
    with client(settings) as c:
        while len(records) < n_trials:
            # one generation at a time: NSGA-II breeds the next from the told results of this one
            batch = [study.ask(space.distributions()) for _ in range(min(population, n_trials - len(records)))]
            recs = _run_batch(space, batch, defaults, trial_fn, c, settings, run_tasks, progress, records)
            for t, r in zip(batch, recs):
                if r["status"] == "ok" and all(r.get(k) is not None for k, _ in OBJECTIVES):
                    study.tell(t, [r[k] for k, _ in OBJECTIVES])
                else:
                    study.tell(t, state=optuna.trial.TrialState.FAIL)
            records += recs
            write_trials(out, records)
        front_numbers = {t.number for t in study.best_trials}
        front = [r for r in records if r["trial"] in front_numbers]
        front = _unique(sorted(front, key=lambda r: (r["lut"], -r["accuracy"])))
        if yosys_front and front:
            cards = {r["name"]: dict(effective_card(space, r["params"])) for r in front}
            _synthesize_front(cards, records, front_fn, c, settings, run_tasks, progress, out)
    seconds = time.perf_counter() - t_start
    study_info = {
        "model": base.name,
        "space": str(space.path),
        "sampler": space.sampler,
        "seed": space.seed,
        "population": population if space.sampler == "nsga2" else None,
        "trials": n_trials,
        "ok": sum(r["status"] == "ok" for r in records),
        "failed": sum(r["status"] != "ok" for r in records),
        "cached": sum(bool(r.get("cached")) for r in records),
        "seconds": round(seconds, 1),
        "objectives": [{"key": k, "direction": d} for k, d in OBJECTIVES],
        "workers": settings.scheduler or f"LocalCluster of {settings.n_workers or 'one per core'} processes",
    }
    return write_outputs(base, space, records, front, study_info)


def _unique(front: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in front:
        if r["name"] not in seen:
            seen.add(r["name"])
            out.append(r)
    return out


def _check_prerequisites(base, space: Space, trial_fn) -> None:
    """Fail before any worker starts when a warm-start model is missing (every trial would fail the same way)."""
    if trial_fn is not run_trial:
        return
    warm = space.fixed.get("train.warm_start")
    if warm and not (project_root() / "models" / str(warm) / "qkeras.h5").exists():
        raise HwflowError(
            f"{space.path.name}: train.warm_start = {warm!r} but models/{warm}/qkeras.h5 is missing: "
            f"run `make train MODEL={warm}` first, or remove train.warm_start from 'fixed'"
        )
    from .data import get_dataset

    get_dataset(base)  # generate the data once here, not on every worker at the same time


def _run_batch(space, batch, defaults, trial_fn, c, settings, run_tasks, progress, done) -> list[dict]:
    """Return the records of one batch of asked trials; finished trials come from their cache."""
    cards = [effective_card(space, t.params) for t in batch]
    root = str(project_root())
    recs: list[dict | None] = [None] * len(batch)
    todo: dict[str, list[int]] = {}
    known = {r["name"]: r for r in done if r["status"] == "ok"}
    for i, card in enumerate(cards):
        cached = card.report_dir() / "trial.json"
        if card.name in known:
            recs[i] = {**known[card.name], "cached": True}
        elif cached.exists():
            recs[i] = {**json.loads(cached.read_text()), "cached": True}
        else:
            todo.setdefault(card.name, []).append(i)
    names = list(todo)
    tasks = [{"card": dict(cards[todo[n][0]]), "root": root, "rtl_samples": space.rtl_samples} for n in names]

    def on_result(j, res):
        for i in todo[names[j]]:
            recs[i] = res.value if res.error is None else {"name": names[j], "status": "error", "error": res.error}

    if tasks:
        args = [(trial_fn, t) for t in tasks]
        run_tasks(
            trial_task, args, names, settings, desc="trials", progress=progress, on_result=on_result, dask_client=c
        )
    out = []
    for t, card, r in zip(batch, cards, recs):
        r = dict(r or {"name": card.name, "status": "error", "error": "no result"})
        r["trial"] = t.number
        r["params"] = dict(t.params)
        r["is_default"] = defaults is not None and dict(t.params) == defaults
        r.setdefault("tools", {})
        if r["status"] == "ok":
            _objectives(r)
        out.append(r)
    return out


def _synthesize_front(cards, records, front_fn, c, settings, run_tasks, progress, out) -> None:
    """Run Yosys (and the simulators under rtl.sim_max_cost) on the front's cards; store it in their records."""
    names = list(cards)
    tasks = [{"card": cards[n], "root": str(project_root())} for n in names]
    res = run_tasks(
        front_task, [(front_fn, t) for t in tasks], names, settings, desc="front RTL", progress=progress, dask_client=c
    )
    by_name = dict(zip(names, res))
    for r in records:
        got = by_name.get(r["name"])
        if got is None:
            continue
        r["yosys"] = got.value if got.error is None else {"error": got.error}
        _objectives(r)
    write_trials(out, records)


# ------------------------------------------------------------------------------------------------ outputs
def write_trials(out: Path, records: list[dict]) -> Path:
    """Rewrite reports/<m>/explore/trials.jsonl atomically (one JSON record per line, trial order)."""
    text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
    return atomic_write_text(out / "trials.jsonl", text)


def write_outputs(base, space: Space, records: list[dict], front: list[dict], info: dict) -> dict:
    """Write study.json, pareto.md, the plots and one card per front point; return the study summary."""
    import yaml

    from .util import atomic_dir

    out, front_dir = space.outputs(base)
    cards = []
    with atomic_dir(front_dir) as tmp:
        for k, r in enumerate(front, 1):
            card = _front_card_dict(space, r)
            head = (
                f"# Pareto point {k} of the {base.name} exploration ({info['sampler']}, seed {info['seed']}): "
                f"run it as is, e.g. `hwflow rtl {front_dir.relative_to(project_root())}/{k}.yaml`.\n"
                f"# Trained weights: models/{r['name']}/ (the trial's own); sampled: "
                + ", ".join(f"{p} = {v}" for p, v in r["params"].items())
                + "\n"
            )
            (tmp / f"{k}.yaml").write_text(head + yaml.safe_dump(card, sort_keys=False))
            cards.append(str(front_dir / f"{k}.yaml"))
            r["card"] = cards[-1]
    info = {**info, "front": [{"k": k, "name": r["name"], "card": r["card"]} for k, r in enumerate(front, 1)]}
    default = next((r for r in records if r.get("is_default") and r["status"] == "ok"), None)
    info["default"] = default["name"] if default else None
    plots = make_plots(out, records, front, base.name)
    info["plots"] = [p.name for p in plots]
    atomic_write_text(out / "pareto.md", pareto_markdown(info, records, front, default))
    atomic_write_json(out / "study.json", info)
    return {**info, "out": str(out)}


def _front_card_dict(space: Space, rec: dict) -> dict:
    """Return the effective card of a trial as plain YAML-ready data."""
    card = effective_card(space, rec["params"])
    return json.loads(to_json(dict(card)))


def _fmt(v, nd=4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}g}"
    return str(v)


def pareto_markdown(info: dict, records: list[dict], front: list[dict], default: dict | None) -> str:
    """Return pareto.md: the study settings, the front (default marked) and every failed trial's error."""
    lines = [
        f"# Exploration of {info['model']}: Pareto front",
        "",
        f"Sampler {info['sampler']} (Optuna, seed {info['seed']}"
        + (f", population {info['population']}" if info.get("population") else "")
        + f"), {info['trials']} trials ({info['ok']} finished, {info['failed']} failed, {info['cached']} from cache), "
        f"{info['seconds']} s on {info['workers']}. Space: `{info['space']}`.",
        "",
        "Objectives: C-sim accuracy (max), LUT (min), latency x II in clocks (min). Tools: accuracy = hls4ml C "
        "simulation on the test samples, ± its binomial standard error; LUT = da4ml estimate (not synthesis) unless a "
        "Yosys column is filled; latency = da4ml pipeline stages (a lower bound for token-serial designs, not "
        "simulated) unless simulated; II = clocks per sample of the design.",
        "",
        "| k | trial | accuracy (C sim) | AUC mean (C sim) | argmax = QKeras | LUT (da4ml est.) | var x var products "
        "(da4ml) | latency (clocks) | II | Yosys LUT / FF / DSP | sampled values |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = list(front)
    if default is not None and default not in rows:
        rows.append(default)
    for r in rows:
        k = str(front.index(r) + 1) if r in front else "–"
        mark = " **(default)**" if r.get("is_default") else ""
        ys = r.get("yosys") or {}
        ycell = (
            f"{ys.get('LUT')} / {ys.get('FF')} / {ys.get('DSP')}"
            if ys.get("LUT") is not None
            else ys.get("error", "not run")
        )
        lat = (r.get("yosys") or {}).get("latency_cycles") or r.get("latency_cycles") or r.get("pipeline_stages")
        lat_note = "" if r.get("latency_cycles") is not None or ys.get("latency_cycles") else " (≥, da4ml stages)"
        lines.append(
            f"| {k} | `{r['name']}`{mark} | {_fmt(r.get('accuracy'))} ± {_fmt(r.get('accuracy_stat_error'), 2)} | "
            f"{_fmt(r.get('auc_mean'))} ± {_fmt(r.get('auc_mean_stat_error'), 2)} | "
            f"{_fmt(r.get('argmax_agreement'))} | "
            f"{_fmt(r.get('lut_da4ml'))} | {_fmt(r.get('var_products'))} | {_fmt(lat)}{lat_note} | "
            f"{_fmt(r.get('interval'))} | {ycell} | " + ", ".join(f"`{p}`={v}" for p, v in r["params"].items()) + " |"
        )
    if default is None:
        lines += ["", "The default design was not a trial of this study (its values are outside the space)."]
    elif default not in front:
        lines += ["", "The default design (–) is not on the front: some trial beats it on every objective."]
    lines += ["", "Cards of the front: " + ", ".join(f"`{c['card']}`" for c in info["front"]), ""]
    unfolded = [r for r in records if r["status"] == "ok" and r.get("rtl_skipped")]
    if unfolded:
        lines += ["## Trials without hardware figures", ""] + [
            f"- trial {r['trial']} `{r['name']}`: accuracy {_fmt(r.get('accuracy'))}; {r['rtl_skipped']}"
            for r in unfolded
        ]
        lines.append("")
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        lines += ["## Failed trials", ""] + [f"- trial {r['trial']} `{r['name']}`: {r.get('error')}" for r in failed]
        lines.append("")
    if info.get("plots"):
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in info["plots"]] + [""]
    return "\n".join(lines)


def make_plots(out: Path, records: list[dict], front: list[dict], model: str) -> list[Path]:
    """Write accuracy vs LUT, vs DSP (products) and vs latency x II, the front highlighted; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .util import save_figure

    ok = [r for r in records if r["status"] == "ok" and r.get("accuracy") is not None]
    if not ok:
        return []
    names = {r["name"] for r in front}
    specs = [
        ("accuracy_vs_lut", "lut_da4ml", "LUT (da4ml estimate)", "LUT"),
        ("accuracy_vs_dsp", "var_products", "variable x variable products (da4ml trace; DSP48 candidates)", "DSP"),
        ("accuracy_vs_latency_ii", "latency_x_ii", "latency x II (clocks²; da4ml stages unless simulated)", None),
    ]
    paths = []
    for fname, key, xlabel, ykey in specs:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        pts = [r for r in ok if r.get(key) is not None]
        rest = [r for r in pts if r["name"] not in names]
        fr = sorted([r for r in pts if r["name"] in names], key=lambda r: r[key])
        ax.errorbar(
            [r[key] for r in rest],
            [r["accuracy"] for r in rest],
            yerr=[r.get("accuracy_stat_error") or 0 for r in rest],
            fmt="o",
            color="0.6",
            label="trials",
        )
        ax.errorbar(
            [r[key] for r in fr],
            [r["accuracy"] for r in fr],
            yerr=[r.get("accuracy_stat_error") or 0 for r in fr],
            fmt="o",  # no connecting line: a 3-objective front is not a curve in this 2-D projection
            color="tab:red",
            label="on the Pareto front (3 objectives)",
        )
        for r in pts:
            if r.get("is_default"):
                ax.plot(r[key], r["accuracy"], "s", ms=12, mfc="none", mec="k", label="default")
        ys = [r for r in pts if ykey and (r.get("yosys") or {}).get(ykey) is not None]
        if ys:
            ax.plot([r["yosys"][ykey] for r in ys], [r["accuracy"] for r in ys], "*", ms=12, label=f"Yosys {ykey}")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (hls4ml C simulation)")
        ax.set_title(f"{model}: {len(ok)} trials")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(save_figure(fig, out / f"{fname}.png"))
    return paths


# ------------------------------------------------------------------------------------------------ hwflow report
def front_summaries(root: Path, model: str) -> list[dict]:
    """Return a model's exploration fronts for reports/summary.* (one per study: reports/<m>/explore*/)."""
    dirs = sorted(d for d in (Path(root) / "reports" / model).glob("explore*") if d.is_dir())
    return [f for f in (_front_summary(d, model) for d in dirs) if f]


def _front_summary(d: Path, model: str) -> dict | None:
    try:
        info = json.loads((d / "study.json").read_text())
        recs = {r["name"]: r for r in map(json.loads, (d / "trials.jsonl").read_text().splitlines())}
    except (OSError, ValueError):
        return None
    keys = ("accuracy", "accuracy_stat_error", "lut_da4ml", "var_products", "latency_x_ii", "interval", "yosys")
    points = [
        {"k": f["k"], "card": f["card"], **{k: recs.get(f["name"], {}).get(k) for k in keys}} for f in info["front"]
    ]
    return {
        "model": model,
        "study": d.name.removeprefix("explore").removeprefix("-"),
        "pareto_md": str(d / "pareto.md"),
        "sampler": info.get("sampler"),
        "trials": info.get("trials"),
        "default": info.get("default"),
        "points": points,
    }


def fronts_markdown(fronts: list[dict]) -> list[str]:
    """Return the summary.md lines of the exploration fronts."""
    out = ["## Design-space exploration fronts (hwflow explore)", ""]
    for f in fronts:
        out += [
            f"{f['model']}{' (study ' + f['study'] + ')' if f.get('study') else ''}: {f['trials']} trials "
            f"({f['sampler']}), details in `{f['pareto_md']}`. Accuracy: hls4ml C "
            "simulation; LUT and products: da4ml estimate; latency x II: da4ml stages unless simulated.",
            "",
            "| k | card | accuracy | LUT (da4ml est.) | var x var products | latency x II | II | Yosys LUT / DSP |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in f["points"]:
            ys = p.get("yosys") or {}
            out.append(
                f"| {p['k']} | `{p['card']}` | {_fmt(p['accuracy'])} ± {_fmt(p['accuracy_stat_error'], 2)} | "
                f"{_fmt(p['lut_da4ml'])} | {_fmt(p['var_products'])} | {_fmt(p['latency_x_ii'])} | "
                f"{_fmt(p['interval'])} | {_fmt(ys.get('LUT'))} / {_fmt(ys.get('DSP'))} |"
            )
        out.append("")
    return out


# ------------------------------------------------------------------------------------------------ CLI
def add_cli(sub) -> None:
    """Register `hwflow explore`."""
    p = sub.add_parser(
        "explore",
        help="design-space exploration on Dask: Pareto front of accuracy vs LUT/DSP vs latency x II, front as cards",
    )
    p.add_argument("model", help="model card name (models/<name>.yaml)")
    p.add_argument("--space", help="space YAML (default: models/<model>.explore.yaml)")
    p.add_argument("--trials", type=int, help="number of trials (default: the space's `trials`)")
    p.add_argument("--sampler", choices=SAMPLERS, help="Optuna sampler (default: the space's `sampler`)")
    p.add_argument("--seed", type=int, help="sampler seed (default: the space's `seed`)")
    p.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster, or the card's dask section)")
    p.add_argument("--workers", type=int, help="LocalCluster processes (default: the card's dask.n_workers or cores)")
    p.add_argument(
        "--yosys-front",
        action="store_true",
        help="also synthesize the front's designs with Yosys and simulate them (tens of minutes each)",
    )
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    s = explore(
        args.model,
        args.space,
        trials=args.trials,
        sampler=args.sampler,
        seed=args.seed,
        scheduler=args.scheduler,
        n_workers=args.workers,
        yosys_front=args.yosys_front,
    )
    print(
        f"{s['trials']} trials ({s['ok']} ok, {s['failed']} failed, {s['cached']} cached) in {s['seconds']} s; "
        f"front of {len(s['front'])}: {s['out']}/pareto.md; cards: " + ", ".join(c["card"] for c in s["front"])
    )
    return 0
