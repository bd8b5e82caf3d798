"""Jet-tagging dataset from Pythia 8 + FastJet: g, q, W, Z, t jets at high pT, like the hls4ml LHC jet data.

Per class, Pythia 8 generates a hard process in a pT-hat window around [pt_min, pt_max]:

- g: QCD gg→gg, qq̄→gg;  q: QCD qg→qg, qq→qq, qq̄→q'q̄' (light u/d/s quarks only)
- W: W+parton (qq̄→Wg, qg→Wq) with W→qq̄';  Z: Z+parton (qq̄→Zg, qg→Zq, γ* off) with Z→qq̄
- t: tt̄ (gg, qq̄) with both W→qq̄' (all-hadronic)

Visible final-state particles (no neutrinos) are clustered with anti-kt R = ``jet_r``. The tagged jet
is the one matched to the true parton/boson/top within ΔR < ``match_dr`` (a W+jet event is not
labelled W by its recoil jet); for W, Z and t the decay quarks must also lie within ``jet_r`` of the
jet axis (``contained``). One jet per event; it must have pt in [pt_min, pt_max] and |y| < ``y_max``.
Per jet the cache keeps up to ``n_max`` constituents (hardest first: pT, y, η, φ, E in float64, charge,
particle type from Pythia's record), the jet axis, pT/η/y/φ/E/mass, the soft-drop mass (C/A declustering,
z_cut, beta), N-subjettiness τ1..τ3 with τ21, τ32 (exclusive-kt axes) and the constituent count. The card's
``n_constituents`` and ``features`` are applied at load time (physics.features), so they are not part of
the cache key: changing them never regenerates.

Each (class, shard) is one Dask task (hwflow.cluster) with seed shard_seed(seed, class, shard), so the
arrays do not depend on the number of workers. Finished shards are cached as they arrive under
data/jets-shards-<hash>/ (hash without jets_per_class: a smaller dataset of the same settings reuses the
first shards of a bigger one), the dataset under data/jets-<cache spec hash>/ once every shard exists.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ..util import HwflowError, atomic_path, project_root, save_figure
from . import cache
from .physics import (
    AXIS_COLUMNS,
    CONST_COLUMNS,
    FEATURES,
    delta_r,
    features,
    nsubjettiness,
    particle_type,
    ratio,
    soft_drop,
)

KIND = "jets"
CLASSES = ("g", "q", "W", "Z", "t")  # global order: class index in shard seeds
PDG = {"W": 24, "Z": 23, "t": 6}
LIGHT_QUARKS = (1, 2, 3)
REF_MASS = {"W": 80.4, "Z": 91.2, "t": 172.5}

# hadronic decays only: W→ud,us,ub,cd,cs,cb; Z→dd,uu,ss,cc,bb
_W_HADRONIC = ["24:onMode = off", "24:onIfAny = 1 2 3 4 5"]
PROCESSES = {
    "g": ["HardQCD:gg2gg = on", "HardQCD:qqbar2gg = on"],
    "q": ["HardQCD:qg2qg = on", "HardQCD:qq2qq = on", "HardQCD:qqbar2qqbarNew = on"],
    "W": ["WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on", *_W_HADRONIC],
    "Z": [
        "WeakBosonAndParton:qqbar2gmZg = on",
        "WeakBosonAndParton:qg2gmZq = on",
        "WeakZ0:gmZmode = 2",
        "23:onMode = off",
        "23:onIfAny = 1 2 3 4 5",
    ],
    "t": ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on", *_W_HADRONIC],
}

JET_ARRAYS = (
    "jet_pt",
    "jet_eta",
    "jet_y",
    "jet_phi",
    "jet_e",
    "jet_mass",
    "jet_msd",
    "tau1",
    "tau2",
    "tau3",
    "tau21",
    "tau32",
    "n_constituents",
    "truth_pt",
    "truth_dr",
)
SHARD_FORMAT = 1  # bump when a shard's arrays change: older shard files are then not reused
LOAD_KEYS = ("n_constituents", "features")  # chosen at load time from the cached constituents
VERSIONS = ("pythia8mc", "fastjet", "matplotlib")
# give up on a shard after this many events (per jet asked + fixed): settings that almost never yield a jet
MAX_EVENTS_PER_JET, MAX_EVENTS_EXTRA = 200, 2000


# ----------------------------------------------------------------------------------------- spec
def normalize_spec(spec: dict) -> dict:
    """Return the validated jets spec with defaults filled (raises HwflowError on bad settings)."""
    from ..config import JETS, _validate  # the card schema is the single source of keys and defaults

    if not isinstance(spec, dict):
        raise HwflowError(f"jets spec must be a mapping, got {type(spec).__name__}")
    kind = spec.get("kind", KIND)
    if kind != KIND:
        raise HwflowError(f"hwflow.data.jets got a spec of kind '{kind}': use the '{kind}' generator")
    seed = spec.get("seed", 42)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise HwflowError(f"data.seed = {seed!r}: must be an integer >= 0")
    raw = {k: v for k, v in spec.items() if k not in ("kind", "seed")}
    s = _validate(JETS, raw, "data.jets")
    if not s["classes"]:
        raise HwflowError("data.jets.classes is empty: list at least one of " + ", ".join(CLASSES))
    if len(set(s["classes"])) != len(s["classes"]):
        raise HwflowError(f"data.jets.classes has duplicates {s['classes']}: list each class once")
    if not s["features"] or len(set(s["features"])) != len(s["features"]):
        raise HwflowError(
            f"data.jets.features = {s['features']}: list at least one feature, each once (known: {', '.join(FEATURES)})"
        )
    if s["n_constituents"] > s["n_max"]:
        raise HwflowError(
            f"data.jets.n_constituents={s['n_constituents']} > n_max={s['n_max']} constituents kept in the cache: "
            "raise data.jets.n_max (regenerates the jets) or lower n_constituents"
        )
    if s["pt_max"] <= s["pt_min"]:
        raise HwflowError(
            f"data.jets: pT window empty (pt_min={s['pt_min']} >= pt_max={s['pt_max']}): set pt_max above pt_min"
        )
    if s["pt_max"] * (1 + s["pthat_margin"]) >= s["sqrt_s"] / 2:
        raise HwflowError(
            f"data.jets.pt_max={s['pt_max']} GeV is beyond the kinematic limit sqrt_s/2={s['sqrt_s'] / 2} "
            "(with pthat_margin): lower pt_max or raise sqrt_s"
        )
    if s["match_dr"] > s["jet_r"] * 1.5:
        raise HwflowError(
            f"data.jets.match_dr={s['match_dr']} is much larger than jet_r={s['jet_r']}: "
            "use match_dr <= jet_r so a recoil jet cannot be matched"
        )
    return {"kind": KIND, "seed": seed, **s}


# ----------------------------------------------------------------------------------------- API
def cache_spec(spec: dict) -> dict:
    """Return the part of a normalized spec that defines the cached jets (not N nor the features: chosen at load)."""
    return {k: v for k, v in spec.items() if k not in LOAD_KEYS}


def shard_tasks(spec: dict) -> tuple[list[dict], list[str]]:
    """Return (tasks, keys) of every (class, shard), shard index major so a cut-short run holds every class."""
    n_shards = math.ceil(spec["jets_per_class"] / spec["shard_size"])
    tasks, keys = [], []
    for si in range(n_shards):
        n = min(spec["shard_size"], spec["jets_per_class"] - si * spec["shard_size"])
        for cls in spec["classes"]:
            ci = CLASSES.index(cls)
            # the key names what the shard holds: the same shard serves every dataset size
            keys.append(f"{cls}-{si:05d}-n{n}")
            tasks.append(
                {
                    "spec": cache_spec(spec),
                    "cls": cls,
                    "class_index": ci,
                    "shard": si,
                    "n": n,
                    "seed": cache.shard_seed(spec["seed"], ci, si),
                    "max_events": MAX_EVENTS_PER_JET * n + MAX_EVENTS_EXTRA,
                }
            )
    return tasks, keys


def generate(
    spec: dict, workers: int | None = None, progress: bool = True, force: bool = False, cluster=None
) -> tuple[dict, dict, Path]:
    """Return (arrays, manifest, folder) of the jets dataset for ``spec``, generating (on Dask) what is not cached.

    ``arrays["X"]`` holds the spec's ``features`` of its ``n_constituents`` hardest constituents, computed
    from the cached raw constituents; ``cluster`` is a hwflow.cluster.ClusterSettings (default: a
    LocalCluster of ``workers`` processes, one per core when None).
    """
    from ..cluster import ClusterSettings

    spec = normalize_spec(spec)
    cspec = cache_spec(spec)
    hit = None if force else cache.load_cached(KIND, cspec)
    if hit is not None:
        arrays, manifest = hit
        folder = cache.dataset_dir(KIND, cspec)
        _publish_plot(folder, arrays, cspec)
    else:
        settings = cluster or ClusterSettings(n_workers=workers)
        arrays, manifest, folder = _generate(cspec, settings, progress, force)
    arrays["X"] = select_features(arrays, spec["features"], spec["n_constituents"])
    manifest = {**manifest, "selected": {"n_constituents": spec["n_constituents"], "features": list(spec["features"])}}
    return arrays, manifest, folder


def select_features(arrays: dict, names, n: int) -> np.ndarray:
    """Return the (jets, n, len(names)) float32 constituent features of a cached jets dataset."""
    return features(arrays["const"], arrays["const_charge"], arrays["const_type"], arrays["jet_axis"], names, n)


def _generate(cspec: dict, settings, progress: bool, force: bool):
    tasks, keys = shard_tasks(cspec)
    shard_spec = {**{k: v for k, v in cspec.items() if k != "jets_per_class"}, "shard_format": SHARD_FORMAT}
    shards, run = cache.run_cached_shards(
        KIND,
        shard_spec,
        _run_shard,
        tasks,
        keys,
        settings,
        desc=f"jets ({len(cspec['classes'])} classes)",
        progress=progress,
        force=force,
    )
    # class-major order, shard order within a class: the dataset's row order never depends on the run
    order = sorted(range(len(tasks)), key=lambda i: (cspec["classes"].index(tasks[i]["cls"]), tasks[i]["shard"]))
    arrays, stats = _assemble(cspec, [tasks[i] for i in order], [shards[i] for i in order])
    metas = [m for _a, m in shards]
    cpu = sum(st["cpu_s"] for st in stats.values())
    extra = {
        "class_names": list(cspec["classes"]),
        "counts_per_class": {c: int(np.sum(arrays["y"] == i)) for i, c in enumerate(cspec["classes"])},
        "features_available": list(FEATURES),
        "generation": {
            **run,
            "scheduler": settings.scheduler or ("jobqueue" if settings.jobqueue else "LocalCluster"),
            "n_workers": settings.n_workers or os.cpu_count(),
            "jets_per_s_wall": round(run["generated"] / max(1, len(tasks)) * len(arrays["y"]) / run["wall_s"], 2)
            if run["wall_s"] > 0 and run["generated"]
            else None,
            "cpu_s": round(cpu, 2),
            "jets_per_cpu_s": round(len(arrays["y"]) / max(1e-9, cpu), 2),
            "per_class": stats,
            "per_worker": cache.worker_rates(metas, "jets"),
            "generator": "Pythia 8 (Monash tune, MPI+ISR+FSR+hadronization, no pileup) + FastJet anti-kt",
        },
        "mass_medians": {
            c: {
                "jet_mass": round(float(np.median(arrays["jet_mass"][arrays["y"] == i])), 2),
                "jet_msd": round(float(np.median(arrays["jet_msd"][arrays["y"] == i])), 2),
            }
            for i, c in enumerate(cspec["classes"])
        },
        "pythia_settings": {c: pythia_settings(cspec, c, seed=None) for c in cspec["classes"]},
    }
    folder = cache.save(KIND, cspec, arrays, extra, versions=VERSIONS)
    manifest = json.loads((folder / cache.MANIFEST).read_text())
    _publish_plot(folder, arrays, cspec, rewrite=True)
    return arrays, manifest, folder


def _assemble(spec, tasks, shards):
    parts: dict[str, list] = {}
    stats: dict[str, dict] = {c: {"jets": 0, "events": 0, "cpu_s": 0.0, "rejected": {}} for c in spec["classes"]}
    for task, (arrs, meta) in zip(tasks, shards):
        label = spec["classes"].index(task["cls"])
        for k, v in arrs.items():
            parts.setdefault(k, []).append(v)
        parts.setdefault("y", []).append(np.full(len(arrs["jet_pt"]), label, dtype=np.int64))
        st = stats[task["cls"]]
        st["jets"] += len(arrs["jet_pt"])
        st["events"] += meta["events"]
        st["cpu_s"] += meta["cpu_s"]
        for k, v in meta["rejected"].items():
            st["rejected"][k] = st["rejected"].get(k, 0) + v
    for st in stats.values():
        st["cpu_s"] = round(st["cpu_s"], 2)
        st["jets_per_cpu_s"] = round(st["jets"] / st["cpu_s"], 2) if st["cpu_s"] > 0 else None
        st["events_per_jet"] = round(st["events"] / max(1, st["jets"]), 3)
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    arrays["class_names"] = np.array(spec["classes"], dtype=str)
    return arrays, stats


# ----------------------------------------------------------------------------------------- worker
@contextlib.contextmanager
def _stdout_to_devnull():
    """Point file descriptor 1 at /dev/null (C++ banners of Pythia and FastJet bypass Python's sys.stdout)."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def pythia_settings(spec: dict, cls: str, seed: int | None) -> list[str]:
    """Return the Pythia 8 readString settings for one class (the shard seed last; omitted when None)."""
    settings = [
        "Print:quiet = on",
        "Next:numberShowEvent = 0",
        "Next:numberCount = 0",
        "Beams:idA = 2212",
        "Beams:idB = 2212",
        f"Beams:eCM = {float(spec['sqrt_s'])}",
        # pT-hat window slightly wider than the jet-pT window so jets migrating in are not cut off
        f"PhaseSpace:pTHatMin = {spec['pt_min'] * (1 - spec['pthat_margin'])}",
        f"PhaseSpace:pTHatMax = {spec['pt_max'] * (1 + spec['pthat_margin'])}",
        *PROCESSES[cls],
    ]
    if seed is not None:
        settings += ["Random:setSeed = on", f"Random:seed = {seed}"]
    return settings


def _pythia(spec: dict, cls: str, seed: int):
    import pythia8mc

    py = pythia8mc.Pythia("", False)  # False: no banner
    settings = pythia_settings(spec, cls, seed)
    for s in settings:
        if not py.readString(s):
            raise HwflowError(f"Pythia rejected setting '{s}': check the pythia8mc version (expected 8.317.2)")
    if not py.init():
        raise HwflowError(
            f"Pythia failed to initialize for class {cls} (pT-hat {spec['pt_min']}-{spec['pt_max']} GeV, "
            f"sqrt_s {spec['sqrt_s']} GeV): check the pT window and sqrt_s"
        )
    return py


def _truth(event, cls: str):
    """Return [(pt, y, phi, [(y, phi) of decay quarks])] of the true objects to match, hardest first."""
    out = []
    for i in (5, 6):  # the two outgoing particles of the 2→2 hard process
        prt = event[i]
        ida = prt.idAbs()
        if cls == "g" and ida != 21:
            continue
        if cls == "q" and ida not in LIGHT_QUARKS:
            continue
        if cls in PDG:
            if ida != PDG[cls]:
                continue
            prt = event[prt.iBotCopyId()]  # last copy: momentum after ISR recoil, daughters = decay products
            quarks = _decay_quarks(event, prt)
            if quarks is None:
                continue
            out.append((prt.pT(), prt.y(), prt.phi(), quarks))
        else:
            out.append((prt.pT(), prt.y(), prt.phi(), []))
    out.sort(key=lambda t: -t[0])
    return out


def _decay_quarks(event, prt):
    """Return (y, phi) of the quarks a W/Z/t decays into (t → b W → b q q̄'), or None if not hadronic."""
    quarks = []
    for d in prt.daughterList():
        dp = event[d]
        if dp.idAbs() == 24:
            w = event[dp.iBotCopyId()]
            sub = _decay_quarks(event, w)
            if sub is None:
                return None
            quarks += sub
        elif 1 <= dp.idAbs() <= 5:
            quarks.append((dp.y(), dp.phi()))
    need = 3 if prt.idAbs() == 6 else 2
    return quarks if len(quarks) == need else None


def _run_shard(task: dict) -> tuple[dict, dict]:
    """Return (arrays, meta) of ``task['n']`` jets of one class, from a Pythia instance seeded for this shard.

    Everything a shard uses is created here (its own Pythia object, seed and FastJet sequences), so the
    result does not depend on the process that runs it: a reused Dask worker gives the same arrays as a
    fresh process (tested: two shards in one process equal the same shards in fresh processes).
    """
    import fastjet as fj

    spec, cls, n = task["spec"], task["cls"], task["n"]
    n_max = spec["n_max"]
    cols = {k: np.zeros(n, dtype=np.int32 if k == "n_constituents" else np.float32) for k in JET_ARRAYS}
    cols["const"] = np.zeros((n, n_max, len(CONST_COLUMNS)), dtype=np.float64)
    cols["const_charge"] = np.zeros((n, n_max), dtype=np.int8)
    cols["const_type"] = np.zeros((n, n_max), dtype=np.int8)
    cols["jet_axis"] = np.zeros((n, len(AXIS_COLUMNS)), dtype=np.float64)
    rejected = {"pythia_failed": 0, "no_truth": 0, "no_match": 0, "pt_window": 0, "rapidity": 0, "not_contained": 0}
    max_events = task["max_events"]
    cpu0, wall0 = time.process_time(), time.time()
    with _stdout_to_devnull():  # the whole shard: Pythia/FastJet C++ output must not garble the progress bar
        py = _pythia(spec, cls, task["seed"])
        jet_def = fj.JetDefinition(fj.antikt_algorithm, float(spec["jet_r"]))
        jet_ptmin = 0.5 * spec["pt_min"]
        got = events = 0
        while got < n:
            if events >= max_events:
                raise HwflowError(
                    f"class {cls}: only {got} of {n} jets after {events} events (rejections {rejected}): "
                    "widen the pT window, raise match_dr/jet_r or y_max"
                )
            events += 1
            if not py.next():
                rejected["pythia_failed"] += 1
                continue
            ev = py.event
            truths = _truth(ev, cls)
            if not truths:
                rejected["no_truth"] += 1
                continue
            parts, pid = [], []
            for p in ev:
                if p.isFinal() and p.isVisible():
                    pj = fj.PseudoJet(p.px(), p.py(), p.pz(), p.e())
                    pj.set_user_index(len(pid))
                    pid.append((p.charge(), particle_type(p.id(), p.charge())))
                    parts.append(pj)
            cs = fj.ClusterSequence(parts, jet_def)
            jets = fj.sorted_by_pt(cs.inclusive_jets(jet_ptmin))
            reason = "no_match"
            for t_pt, t_y, t_phi, quarks in truths:
                if not jets:
                    break
                dr = [delta_r(j.rap(), j.phi(), t_y, t_phi) for j in jets]
                k = int(np.argmin(dr))
                if dr[k] >= spec["match_dr"]:
                    continue
                jet = jets[k]
                if not (spec["pt_min"] <= jet.pt() <= spec["pt_max"]):
                    reason = "pt_window"
                    continue
                if abs(jet.rap()) > spec["y_max"]:
                    reason = "rapidity"
                    continue
                if spec["contained"] and any(
                    delta_r(jet.rap(), jet.phi(), qy, qphi) >= spec["jet_r"] for qy, qphi in quarks
                ):
                    reason = "not_contained"
                    continue
                _fill(cols, got, jet, spec, pid, t_pt, dr[k])
                got += 1
                break
            else:
                rejected[reason] += 1
                continue
    meta = {"jets": n, "events": events, "cpu_s": time.process_time() - cpu0, "wall_s": time.time() - wall0}
    return cols, {**meta, "rejected": rejected}


def _fill(cols, i, jet, spec, pid, truth_pt, truth_dr):
    consts = jet.constituents()
    c = np.array([(p.pt(), p.rap(), p.eta(), p.phi(), p.E()) for p in consts], dtype=np.float64)
    k = len(c)
    order = np.argsort(-c[:, 0], kind="stable")[: spec["n_max"]]  # hardest first (stable: ties keep FastJet order)
    cols["const"][i, : len(order)] = c[order]
    info = np.array([pid[consts[j].user_index()] for j in order], dtype=np.float64).reshape(-1, 2)
    cols["const_charge"][i, : len(order)] = np.rint(info[:, 0]).astype(np.int8)
    cols["const_type"][i, : len(order)] = info[:, 1].astype(np.int8)
    cols["jet_axis"][i] = (jet.pt(), jet.rap(), jet.eta(), jet.phi(), jet.E())
    groomed, _cs = soft_drop(consts, spec["sd_zcut"], spec["sd_beta"], spec["jet_r"])
    tau = nsubjettiness(consts, 3, spec["jet_r"])
    cols["jet_pt"][i] = jet.pt()
    cols["jet_eta"][i] = jet.eta()
    cols["jet_y"][i] = jet.rap()
    cols["jet_phi"][i] = jet.phi_std()
    cols["jet_e"][i] = jet.E()
    cols["jet_mass"][i] = jet.m() if jet.m2() > 0 else 0.0
    cols["jet_msd"][i] = groomed.m() if groomed.m2() > 0 else 0.0
    cols["tau1"][i], cols["tau2"][i], cols["tau3"][i] = tau
    cols["tau21"][i] = ratio(tau[1], tau[0])
    cols["tau32"][i] = ratio(tau[2], tau[1])
    cols["n_constituents"][i] = k
    cols["truth_pt"][i] = truth_pt
    cols["truth_dr"][i] = truth_dr


# ----------------------------------------------------------------------------------------- plot
PLOT = "mass.png"


def _publish_plot(folder: Path, arrays: dict, spec: dict, rewrite: bool = False) -> Path:
    """Return reports/data/jets_mass.png after (re)drawing the dataset's mass plot when needed and copying it there."""
    png = Path(folder) / PLOT
    if rewrite or not png.exists():
        plot_masses(arrays, png, spec)
    dest = project_root() / "reports" / "data" / "jets_mass.png"
    with atomic_path(dest) as tmp:
        shutil.copyfile(png, tmp)
    return dest


def plot_masses(arrays: dict, path: Path, spec: dict | None = None) -> Path:
    """Return ``path`` after writing (atomically) the jet-mass and soft-drop-mass histograms per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [str(c) for c in arrays["class_names"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    bins = np.linspace(0, 300, 61)
    for ax, key, title in (
        (axes[0], "jet_mass", "jet mass"),
        (axes[1], "jet_msd", "soft-drop mass" + (f" (z_cut={spec['sd_zcut']}, β={spec['sd_beta']})" if spec else "")),
    ):
        for i, c in enumerate(names):
            v = arrays[key][arrays["y"] == i]
            ax.hist(v, bins=bins, histtype="step", density=True, lw=1.6, label=f"{c} (median {np.median(v):.0f})")
        for c, m in REF_MASS.items():
            if c in names:
                ax.axvline(m, color="gray", ls=":", lw=1)
        ax.set_xlabel(f"{title} [GeV]")
        ax.set_ylabel("normalized / 5 GeV")
        ax.legend(fontsize=8)
    pt = arrays["jet_pt"]
    pt_bins = np.linspace(pt.min(), pt.max(), 31)
    for i, c in enumerate(names):
        axes[2].hist(pt[arrays["y"] == i], bins=pt_bins, histtype="step", density=True, lw=1.6, label=c)
    axes[2].set_xlabel("jet pT [GeV]")
    axes[2].set_ylabel("normalized")
    axes[2].legend(fontsize=8)
    algo = f"anti-kt R={spec['jet_r']}, √s={spec['sqrt_s'] / 1000:g} TeV, seed {spec['seed']}; " if spec else ""
    fig.suptitle(
        f"Pythia 8 + FastJet jets ({algo}{len(pt)} jets, pT {pt.min():.0f}–{pt.max():.0f} GeV) "
        f"(dotted: W 80.4, Z 91.2, t 172.5 GeV)",
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
