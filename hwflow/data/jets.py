"""Jet-tagging dataset from Pythia 8 + FastJet: g, q, W, Z, t jets at high pT, like the hls4ml LHC jet data.

Per class, Pythia 8 generates a hard process in a pT-hat window around [pt_min, pt_max]:

- g: QCD gg→gg, qq̄→gg;  q: QCD qg→qg, qq→qq, qq̄→q'q̄' (light u/d/s quarks only)
- W: W+parton (qq̄→Wg, qg→Wq) with W→qq̄';  Z: Z+parton (qq̄→Zg, qg→Zq, γ* off) with Z→qq̄
- t: tt̄ (gg, qq̄) with both W→qq̄' (all-hadronic)

Visible final-state particles (no neutrinos) are clustered with anti-kt R = ``jet_r``. The tagged jet
is the one matched to the true parton/boson/top within ΔR < ``match_dr`` (a W+jet event is not
labelled W by its recoil jet); for W, Z and t the decay quarks must also lie within ``jet_r`` of the
jet axis (``contained``). One jet per event; it must have pt in [pt_min, pt_max] and |y| < ``y_max``.
Per jet: the N hardest constituents' features (zero padded), jet pt/η/y/φ/mass, the soft-drop mass
(C/A declustering, z_cut, beta) and the constituent count.

Each (class, shard) runs in its own fresh process with seed shard_seed(seed, class, shard), so the
arrays do not depend on the number of workers. Cached under data/jets-<spec hash>/.
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
from .physics import FEATURES, constituent_features, delta_r, soft_drop

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

JET_ARRAYS = ("jet_pt", "jet_eta", "jet_y", "jet_phi", "jet_mass", "jet_msd", "n_constituents", "truth_pt", "truth_dr")
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
def generate(spec: dict, workers: int | None = None, progress: bool = True, force: bool = False):
    """Return (arrays, manifest, folder) of the jets dataset for ``spec``, generating it unless cached."""
    spec = normalize_spec(spec)
    if not force:
        hit = cache.load_cached(KIND, spec)
        if hit is not None:
            arrays, manifest = hit
            folder = cache.dataset_dir(KIND, spec)
            _publish_plot(folder, arrays, spec)
            return arrays, manifest, folder

    tasks = []
    for cls in spec["classes"]:
        ci = CLASSES.index(cls)
        n_shards = math.ceil(spec["jets_per_class"] / spec["shard_size"])
        for si in range(n_shards):
            n = min(spec["shard_size"], spec["jets_per_class"] - si * spec["shard_size"])
            tasks.append(
                {
                    "spec": spec,
                    "cls": cls,
                    "class_index": ci,
                    "shard": si,
                    "n": n,
                    "seed": cache.shard_seed(spec["seed"], ci, si),
                    "max_events": MAX_EVENTS_PER_JET * n + MAX_EVENTS_EXTRA,
                }
            )
    t0 = time.time()
    results = cache.run_shards(
        _run_shard, tasks, workers=workers, desc=f"jets ({len(spec['classes'])} classes)", progress=progress
    )
    wall = time.time() - t0

    arrays, stats = _assemble(spec, tasks, results)
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    extra = {
        "class_names": list(spec["classes"]),
        "counts_per_class": {c: int(np.sum(arrays["y"] == i)) for i, c in enumerate(spec["classes"])},
        "features": list(spec["features"]),
        "generation": {
            "wall_s": round(wall, 2),
            "workers": n_workers,
            "jets_per_s_wall": round(len(arrays["y"]) / wall, 2) if wall > 0 else None,
            "cpu_s": round(sum(st["cpu_s"] for st in stats.values()), 2),
            "jets_per_cpu_s": round(len(arrays["y"]) / max(1e-9, sum(st["cpu_s"] for st in stats.values())), 2),
            "per_class": stats,
            "generator": "Pythia 8 (Monash tune, MPI+ISR+FSR+hadronization, no pileup) + FastJet anti-kt",
        },
        "mass_medians": {
            c: {
                "jet_mass": round(float(np.median(arrays["jet_mass"][arrays["y"] == i])), 2),
                "jet_msd": round(float(np.median(arrays["jet_msd"][arrays["y"] == i])), 2),
            }
            for i, c in enumerate(spec["classes"])
        },
        "pythia_settings": {c: pythia_settings(spec, c, seed=None) for c in spec["classes"]},
    }
    folder = cache.save(KIND, spec, arrays, extra, versions=VERSIONS)
    manifest = json.loads((folder / cache.MANIFEST).read_text())
    _publish_plot(folder, arrays, spec, rewrite=True)
    return arrays, manifest, folder


def _assemble(spec, tasks, results):
    parts: dict[str, list] = {}
    stats: dict[str, dict] = {c: {"jets": 0, "events": 0, "cpu_s": 0.0, "rejected": {}} for c in spec["classes"]}
    for task, res in zip(tasks, results):
        label = spec["classes"].index(task["cls"])
        for k, v in res["arrays"].items():
            parts.setdefault(k, []).append(v)
        parts.setdefault("y", []).append(np.full(len(res["arrays"]["X"]), label, dtype=np.int64))
        st = stats[task["cls"]]
        st["jets"] += len(res["arrays"]["X"])
        st["events"] += res["events"]
        st["cpu_s"] += res["cpu_s"]
        for k, v in res["rejected"].items():
            st["rejected"][k] = st["rejected"].get(k, 0) + v
    for _c, st in stats.items():
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


def _run_shard(task: dict) -> dict:
    """Generate ``task['n']`` jets of one class in this (fresh) process; return arrays and statistics."""
    import fastjet as fj

    spec, cls, n = task["spec"], task["cls"], task["n"]
    nfeat, N = len(spec["features"]), spec["n_constituents"]
    X = np.zeros((n, N, nfeat), dtype=np.float32)
    jet_cols = {k: np.zeros(n, dtype=np.int32 if k == "n_constituents" else np.float32) for k in JET_ARRAYS}
    rejected = {"pythia_failed": 0, "no_truth": 0, "no_match": 0, "pt_window": 0, "rapidity": 0, "not_contained": 0}
    max_events = task["max_events"]
    cpu0 = time.process_time()
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
            parts = [fj.PseudoJet(p.px(), p.py(), p.pz(), p.e()) for p in ev if p.isFinal() and p.isVisible()]
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
                _fill(X, jet_cols, got, jet, spec, N, t_pt, dr[k])
                got += 1
                break
            else:
                rejected[reason] += 1
                continue
    cpu = time.process_time() - cpu0
    return {"arrays": {"X": X, **jet_cols}, "events": events, "cpu_s": cpu, "rejected": rejected}


def _fill(X, cols, i, jet, spec, N, truth_pt, truth_dr):
    consts = jet.constituents()
    c = np.array([(p.pt(), p.rap(), p.phi(), p.E(), p.m()) for p in consts], dtype=np.float64)
    jd = {"pt": jet.pt(), "y": jet.rap(), "phi": jet.phi(), "e": jet.E()}
    X[i], k = constituent_features(c, jd, spec["features"], N)
    groomed, _cs = soft_drop(consts, spec["sd_zcut"], spec["sd_beta"], spec["jet_r"])
    cols["jet_pt"][i] = jet.pt()
    cols["jet_eta"][i] = jet.eta()
    cols["jet_y"][i] = jet.rap()
    cols["jet_phi"][i] = jet.phi_std()
    cols["jet_mass"][i] = jet.m() if jet.m2() > 0 else 0.0
    cols["jet_msd"][i] = groomed.m() if groomed.m2() > 0 else 0.0
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
