"""Jet physics helpers on plain arrays and FastJet PseudoJets: constituent features, ΔR, soft drop.

Angles use rapidity y (not pseudorapidity) together with φ, the same metric FastJet's anti-kt and
Cambridge/Aachen distances use, so a constituent at ΔR < R in FastJet's sense has |Δy|, |Δφ| < R here.
FastJet is imported lazily: this module stays importable (and its numpy parts testable) without it.
"""

from __future__ import annotations

import numpy as np

FEATURES = ("ptrel", "deta", "dphi", "logpt", "dr", "logptrel", "e_rel")


def wrap_phi(dphi):
    """Return Δφ wrapped into [-π, π)."""
    return (np.asarray(dphi) + np.pi) % (2 * np.pi) - np.pi


def delta_r(y1, phi1, y2, phi2):
    """Return the rapidity–azimuth distance sqrt(Δy² + Δφ²)."""
    return np.hypot(np.asarray(y1) - np.asarray(y2), wrap_phi(np.asarray(phi1) - np.asarray(phi2)))


def constituent_features(const: np.ndarray, jet: dict, features, n: int) -> tuple[np.ndarray, int]:
    """Return (n × len(features) float32 array of the n hardest constituents, zero padded; total count).

    ``const`` is a (k, 5) array of constituent (pt, y, phi, e, m); ``jet`` has pt, y, phi, e.
    """
    out = np.zeros((n, len(features)), dtype=np.float32)
    k = len(const)
    if k == 0:
        return out, 0
    order = np.argsort(-const[:, 0], kind="stable")[:n]
    c = const[order]
    pt, y, phi, e = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
    deta = y - jet["y"]
    dphi = wrap_phi(phi - jet["phi"])
    cols = {
        "ptrel": pt / jet["pt"],
        "deta": deta,
        "dphi": dphi,
        "logpt": np.log(np.maximum(pt, 1e-6)),
        "dr": np.hypot(deta, dphi),
        "logptrel": np.log(np.maximum(pt / jet["pt"], 1e-9)),
        "e_rel": e / jet["e"],
    }
    for j, name in enumerate(features):
        out[: len(c), j] = cols[name]
    return out, k


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
