"""Jet physics helpers on plain arrays and FastJet PseudoJets: constituent features, ΔR, soft drop, N-subjettiness.

Angles use rapidity y (not pseudorapidity) together with φ, the same metric FastJet's anti-kt and
Cambridge/Aachen distances use, so a constituent at ΔR < R in FastJet's sense has |Δy|, |Δφ| < R here.
FastJet is imported lazily: this module stays importable (and its numpy parts testable) without it.

The jets cache keeps raw constituents (``CONST_COLUMNS`` in float64, charge, particle type) for up to
``n_max`` per jet; :func:`features` turns them into the card's feature list for its N at load time, so
N and the features are chosen without regenerating. Features (the hls4ml LHC jet dataset's set):

- ``ptrel`` pT/pT_jet, ``e_rel`` E/E_jet, ``logpt``/``loge`` log pT, log E (GeV), ``logptrel`` log(pT/pT_jet)
- ``deta`` Δy (rapidity, FastJet's metric), ``etarel`` Δη (pseudorapidity, the dataset's j1_etarel),
  ``dphi`` Δφ, ``dr`` ΔR = sqrt(Δy² + Δφ²) to the jet axis
- ``pt``, ``eta``, ``phi`` (in [-π, π)), ``e``: absolute kinematics; ``charge`` (units of e)
- ``is_electron``, ``is_muon``, ``is_photon``, ``is_charged_hadron``, ``is_neutral_hadron``: particle-type one-hot
"""

from __future__ import annotations

import numpy as np

PARTICLE_TYPES = ("electron", "muon", "photon", "charged_hadron", "neutral_hadron")
FEATURES = (
    "ptrel",
    "deta",
    "dphi",
    "logpt",
    "dr",
    "logptrel",
    "e_rel",
    "pt",
    "eta",
    "phi",
    "e",
    "loge",
    "etarel",
    "charge",
    *(f"is_{t}" for t in PARTICLE_TYPES),
)
CONST_COLUMNS = ("pt", "y", "eta", "phi", "e")  # per constituent in the cache (φ in FastJet's [0, 2π))
AXIS_COLUMNS = ("pt", "y", "eta", "phi", "e")  # the jet axis the relative features refer to


def wrap_phi(dphi):
    """Return Δφ wrapped into [-π, π)."""
    return (np.asarray(dphi) + np.pi) % (2 * np.pi) - np.pi


def delta_r(y1, phi1, y2, phi2):
    """Return the rapidity–azimuth distance sqrt(Δy² + Δφ²)."""
    return np.hypot(np.asarray(y1) - np.asarray(y2), wrap_phi(np.asarray(phi1) - np.asarray(phi2)))


def particle_type(pdg_id: int, charge: float) -> int:
    """Return the index in PARTICLE_TYPES of a visible final-state particle (PDG id, charge)."""
    a = abs(int(pdg_id))
    if a == 11:
        return 0
    if a == 13:
        return 1
    if a == 22:
        return 2
    return 3 if charge != 0 else 4


def features(const: np.ndarray, charge: np.ndarray, ptype: np.ndarray, axis: np.ndarray, names, n: int) -> np.ndarray:
    """Return the (jets, n, len(names)) float32 features of the n hardest cached constituents, zero padded.

    ``const`` is (jets, n_max, 5) float64 of CONST_COLUMNS, hardest first, zero rows beyond the count;
    ``charge``/``ptype`` are (jets, n_max) ints; ``axis`` is (jets, 5) float64 of AXIS_COLUMNS.
    Every value is computed in float64 and rounded once to float32.
    """
    unknown = [f for f in names if f not in FEATURES]
    if unknown:
        from ..util import HwflowError

        raise HwflowError(f"unknown constituent feature(s) {unknown}: known are {', '.join(FEATURES)}")
    c = const[:, :n]
    real = c[..., 0] > 0
    pt, y, eta, phi, e = (c[..., i] for i in range(5))
    jpt, jy, jeta, jphi, je = (axis[:, i : i + 1] for i in range(5))
    with np.errstate(divide="ignore", invalid="ignore"):
        cols = {
            "ptrel": lambda: pt / jpt,
            "deta": lambda: y - jy,
            "dphi": lambda: wrap_phi(phi - jphi),
            "logpt": lambda: np.log(np.maximum(pt, 1e-6)),
            "dr": lambda: np.hypot(y - jy, wrap_phi(phi - jphi)),
            "logptrel": lambda: np.log(np.maximum(pt / jpt, 1e-9)),
            "e_rel": lambda: e / je,
            "pt": lambda: pt,
            "eta": lambda: eta,
            "phi": lambda: wrap_phi(phi),
            "e": lambda: e,
            "loge": lambda: np.log(np.maximum(e, 1e-6)),
            "etarel": lambda: eta - jeta,
            "charge": lambda: charge[:, :n].astype(np.float64),
            **{f"is_{t}": (lambda k=k: (ptype[:, :n] == k).astype(np.float64)) for k, t in enumerate(PARTICLE_TYPES)},
        }
        out = np.zeros((len(c), c.shape[1], len(names)), dtype=np.float32)
        for j, name in enumerate(names):
            out[..., j] = np.where(real, cols[name](), 0.0)
    if c.shape[1] < n:  # fewer slots cached than asked: pad (the cache's n_max bounds N; checked by the caller)
        out = np.concatenate([out, np.zeros((len(c), n - c.shape[1], len(names)), np.float32)], axis=1)
    return out


def constituent_features(const: np.ndarray, jet: dict, names, n: int) -> tuple[np.ndarray, int]:
    """Return (n × len(names) float32 array of the n hardest constituents, zero padded; total count).

    ``const`` is a (k, 5) array of constituent (pt, y, phi, e, m); ``jet`` has pt, y, phi, e (one jet, no
    pseudorapidity, charge or type: those features are zero here; :func:`features` is the cached path).
    """
    k = len(const)
    if k == 0:
        return np.zeros((n, len(names)), dtype=np.float32), 0
    c = const[np.argsort(-const[:, 0], kind="stable")[:n]]
    raw = np.zeros((1, len(c), 5))
    raw[0, :, 0], raw[0, :, 1], raw[0, :, 3], raw[0, :, 4] = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
    raw[0, :, 2] = c[:, 1]
    axis = np.array([[jet["pt"], jet["y"], jet["y"], jet["phi"], jet["e"]]])
    zeros = np.zeros((1, len(c)), dtype=np.int8)
    return features(raw, zeros, zeros, axis, names, n)[0], k


def soft_drop(constituents, z_cut: float = 0.1, beta: float = 0.0, r0: float = 0.8):
    """Return the soft-drop groomed jet (a FastJet PseudoJet) of a list of constituent PseudoJets.

    Reclusters with Cambridge/Aachen (R = max allowable, so everything ends in one jet, as fjcontrib's
    SoftDrop does), then declusters from the top, dropping the softer branch until
    min(pt1, pt2)/(pt1 + pt2) > z_cut (ΔR12/r0)^beta. Beta = 0 is the modified mass-drop tagger.
    Returns (groomed PseudoJet, cluster sequence) — keep the sequence alive while using the jet.
    """
    import fastjet as fj

    jd = fj.JetDefinition(fj.cambridge_algorithm, fj.JetDefinition.max_allowable_R)
    cs = fj.ClusterSequence(list(constituents), jd)
    jets = cs.inclusive_jets()
    if not jets:
        return fj.PseudoJet(0.0, 0.0, 0.0, 0.0), cs
    j = max(jets, key=lambda x: x.pt())
    p1, p2 = fj.PseudoJet(), fj.PseudoJet()
    while j.has_parents(p1, p2):
        pt1, pt2 = p1.pt(), p2.pt()
        z = min(pt1, pt2) / (pt1 + pt2)
        dr = p1.delta_R(p2)  # rapidity–φ distance, as FastJet's C/A uses
        if z > z_cut * (dr / r0) ** beta:
            break
        j = p1 if pt1 >= pt2 else p2
        p1, p2 = fj.PseudoJet(), fj.PseudoJet()
    return j, cs


def nsubjettiness(constituents, n_axes: int = 3, r0: float = 0.8, beta: float = 1.0) -> np.ndarray:
    """Return [τ1, ..., τ_n_axes] of a jet (list of constituent PseudoJets), normalized N-subjettiness.

    τ_N = Σ_i pT_i min_k ΔR_ik^β / (Σ_i pT_i r0^β) with exclusive-kt axes (the constituents reclustered
    with kt and stopped at N jets), as fjcontrib's Nsubjettiness with ExclusiveJetAxes and
    NormalizedMeasure(β, r0); ΔR in rapidity–φ. τ_N = 0 when the jet has at most N constituents.
    """
    import fastjet as fj

    parts = list(constituents)
    out = np.zeros(n_axes)
    if not parts:
        return out
    pt = np.array([p.pt() for p in parts])
    y = np.array([p.rap() for p in parts])
    phi = np.array([p.phi() for p in parts])
    norm = pt.sum() * r0**beta
    cs = fj.ClusterSequence(parts, fj.JetDefinition(fj.kt_algorithm, fj.JetDefinition.max_allowable_R))
    for n in range(1, n_axes + 1):
        if len(parts) <= n:
            break  # every particle is its own axis
        axes = cs.exclusive_jets(n)
        ay = np.array([a.rap() for a in axes])
        aphi = np.array([a.phi() for a in axes])
        dr = delta_r(y[:, None], phi[:, None], ay[None, :], aphi[None, :]).min(axis=1)
        out[n - 1] = float(np.sum(pt * dr**beta) / norm)
    return out


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Return num/den elementwise, 0 where den is 0 (τ ratios of jets with too few constituents)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
