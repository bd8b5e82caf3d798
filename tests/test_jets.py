"""Jet data generator (Pythia 8 + FastJet): physics of the jets, cache behaviour, determinism, bad settings.

Generation is real (no mocks of Pythia or FastJet); samples are kept small so the file stays within the
default test budget. Every dataset goes to a temporary $HWFLOW_DATA (and reports to a temporary $HWFLOW_ROOT).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("pythia8mc")
fj = pytest.importorskip("fastjet")

from hwflow.data import cache, jets  # noqa: E402
from hwflow.data.physics import constituent_features, soft_drop  # noqa: E402
from hwflow.util import HwflowError  # noqa: E402

# the physics sample: a few hundred jets, W/Z/t plus q/g for contrast
PHYS = {"kind": "jets", "seed": 7, "classes": ["g", "q", "W", "Z", "t"], "jets_per_class": 70, "shard_size": 35}
# tiny samples for cache / determinism behaviour
SMALL = {"kind": "jets", "seed": 3, "classes": ["q", "W"], "jets_per_class": 10, "shard_size": 5, "n_constituents": 8}
TINY = {"kind": "jets", "seed": 11, "classes": ["Z"], "jets_per_class": 5, "shard_size": 5}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Point $HWFLOW_DATA and $HWFLOW_ROOT at fresh temporary folders for this module."""
    base = tmp_path_factory.mktemp("jets")
    mp = pytest.MonkeyPatch()
    mp.setenv("HWFLOW_DATA", str(base / "data"))
    mp.setenv("HWFLOW_ROOT", str(base / "root"))
    yield base
    mp.undo()


@pytest.fixture(scope="module")
def phys(env):
    """Return (arrays, manifest, folder) of the physics sample, generated once with 2 workers."""
    return jets.generate(PHYS, workers=2, progress=False)


@pytest.fixture(scope="module")
def small(env):
    """Return (arrays, manifest, folder) of the small two-class sample (1 worker)."""
    return jets.generate(SMALL, workers=1, progress=False)


@pytest.fixture(scope="module")
def tiny(env):
    """Return (arrays, manifest, folder) of the one-shard Z sample."""
    return jets.generate(TINY, workers=1, progress=False)


def _msd(arrays, cls):
    names = [str(c) for c in arrays["class_names"]]
    return arrays["jet_msd"][arrays["y"] == names.index(cls)]


# ------------------------------------------------------------------------------------------ physics
def test_groomed_mass_medians_near_boson_and_top_masses(phys):
    arrays, manifest, _ = phys
    med = {c: float(np.median(_msd(arrays, c))) for c in ("W", "Z", "t", "q")}
    assert 72 <= med["W"] <= 88, med
    assert 83 <= med["Z"] <= 99, med
    assert 158 <= med["t"] <= 185, med
    assert med["W"] < med["Z"] < med["t"]
    assert med["q"] < 50, med  # light-quark jets: groomed mass far below the W
    assert manifest["mass_medians"]["W"]["jet_msd"] == pytest.approx(med["W"], abs=0.01)


def test_qcd_jets_rarely_in_the_w_mass_window(phys):
    arrays, _, _ = phys
    frac = {c: float(np.mean((_msd(arrays, c) > 65) & (_msd(arrays, c) < 95))) for c in ("g", "q", "W")}
    assert frac["W"] > 0.6, frac
    assert frac["q"] < 0.25 and frac["g"] < 0.35, frac


def test_jets_are_matched_in_window_and_well_formed(phys):
    arrays, manifest, _ = phys
    spec = jets.normalize_spec(PHYS)
    n = len(PHYS["classes"]) * PHYS["jets_per_class"]
    X = arrays["X"]
    assert X.shape == (n, 16, 4) and X.dtype == np.float32
    assert arrays["y"].shape == (n,) and list(np.bincount(arrays["y"])) == [PHYS["jets_per_class"]] * 5
    assert [str(c) for c in arrays["class_names"]] == PHYS["classes"]
    for k in jets.JET_ARRAYS:
        assert arrays[k].shape == (n,), k
    pt = arrays["jet_pt"]
    assert pt.min() >= spec["pt_min"] and pt.max() <= spec["pt_max"]
    assert np.all(np.abs(arrays["jet_y"]) <= spec["y_max"])
    assert np.all(arrays["truth_dr"] < spec["match_dr"])
    assert np.all(arrays["jet_msd"] <= arrays["jet_mass"] + 1e-3)  # grooming only removes particles
    nc = arrays["n_constituents"]
    assert nc.min() > 0
    # zero padding exactly beyond the constituent count, real entries before it
    slot = np.arange(16)[None, :]
    real = slot < np.minimum(nc, 16)[:, None]
    assert np.all(X[~real] == 0)
    ptrel, deta, dphi, logpt = (X[..., i] for i in range(4))
    assert np.all(ptrel[real] > 0) and np.all(ptrel[real] <= 1)
    assert np.all(np.diff(np.where(real, ptrel, 0), axis=1) <= 1e-7)  # hardest first
    assert np.all(np.abs(deta[real]) < 1.2 * spec["jet_r"]) and np.all(np.abs(dphi[real]) < 1.2 * spec["jet_r"])
    assert np.allclose(np.exp(logpt[real]), ptrel[real] * np.repeat(pt[:, None], 16, 1)[real], rtol=1e-3)
    # a W jet's two prongs: the hardest constituents carry a large share of the pT
    assert np.median(ptrel[:, 0]) > 0.05


def test_manifest_records_generation(phys):
    arrays, manifest, folder = phys
    assert (folder / "manifest.json").exists() and (folder / "dataset.npz").exists()
    assert manifest["counts_per_class"] == dict.fromkeys(PHYS["classes"], PHYS["jets_per_class"])
    assert manifest["spec"]["seed"] == PHYS["seed"] and manifest["spec"]["n_constituents"] == 16
    assert manifest["versions"]["pythia8mc"] and manifest["versions"]["fastjet"]
    assert manifest["content_sha256"] == cache.sha256_file(folder / "dataset.npz")
    for c in PHYS["classes"]:
        st = manifest["generation"]["per_class"][c]
        assert st["jets"] == PHYS["jets_per_class"] and st["jets_per_cpu_s"] > 0
        assert st["events_per_jet"] >= 1 and st["events"] >= st["jets"]


def test_mass_plot_written_and_published(phys, env):
    _, _, folder = phys
    png = folder / "mass.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (env / "root" / "reports" / "data" / "jets_mass.png").exists()


# ------------------------------------------------------------------------------------------ helpers
def test_soft_drop_removes_soft_wide_angle_radiation():
    def pj(pt, y, phi, m=0.0):
        mt = np.hypot(pt, m)
        return fj.PseudoJet(pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y), mt * np.cosh(y))

    # two hard prongs (z = 0.4) plus a 1% soft particle at wide angle
    prongs = [pj(600, 0.0, 0.0), pj(400, 0.12, 0.05)]
    soft = pj(10, 0.6, -0.5)
    full = prongs[0] + prongs[1] + soft
    groomed, _cs = soft_drop(prongs + [soft], z_cut=0.1, beta=0.0)
    want = (prongs[0] + prongs[1]).m()
    assert groomed.m() == pytest.approx(want, rel=1e-9)
    assert full.m() > want + 5
    # an asymmetric pair (z = 0.05 < z_cut) is groomed down to the single hard prong (massless)
    g2, _cs2 = soft_drop([pj(950, 0, 0), pj(50, 0.2, 0.1)], z_cut=0.1)
    assert g2.m2() == pytest.approx(0.0, abs=1e-6)
    g3, _cs3 = soft_drop([pj(950, 0, 0), pj(50, 0.2, 0.1)], z_cut=0.04)
    assert g3.m() > 10


def test_constituent_features_sorted_and_padded():
    c = np.array([[10.0, 0.1, 0.2, 11.0, 0.0], [50.0, -0.1, 6.2, 60.0, 0.0], [5.0, 0.0, 0.0, 5.0, 0.0]])
    jet = {"pt": 64.0, "y": 0.0, "phi": 0.0, "e": 80.0}
    X, k = constituent_features(c, jet, ["ptrel", "deta", "dphi", "dr", "e_rel"], 5)
    assert k == 3 and X.shape == (5, 5) and X.dtype == np.float32
    assert X[:3, 0] == pytest.approx([50 / 64, 10 / 64, 5 / 64])
    assert X[0, 2] == pytest.approx(6.2 - 2 * np.pi, abs=1e-6)  # Δφ wrapped into [-π, π)
    assert X[0, 3] == pytest.approx(np.hypot(-0.1, 6.2 - 2 * np.pi), abs=1e-6)
    assert X[0, 4] == pytest.approx(60 / 80)
    assert np.all(X[3:] == 0)
    X2, k2 = constituent_features(c, jet, ["ptrel"], 2)  # truncation keeps the hardest
    assert k2 == 3 and X2[:, 0] == pytest.approx([50 / 64, 10 / 64])


# ------------------------------------------------------------------------------------------ cache
def test_determinism_independent_of_workers(small, env, tmp_path, monkeypatch):
    a1, m1, _ = small
    monkeypatch.setenv("HWFLOW_DATA", str(tmp_path / "other"))
    a2, m2, f2 = jets.generate(SMALL, workers=2, progress=False)
    assert f2.parent == tmp_path / "other"
    assert set(a1) == set(a2)
    for k in a1:
        np.testing.assert_array_equal(a1[k], a2[k], err_msg=k)
    assert m1["content_sha256"] == m2["content_sha256"]
    assert a1["X"].shape == (20, 8, 4)


def test_cache_hit_reuses_without_generating(small, monkeypatch):
    a1, m1, folder = small
    mtime = (folder / "dataset.npz").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("cache hit must not generate")

    monkeypatch.setattr(cache, "run_shards", boom)
    a2, m2, f2 = jets.generate(dict(SMALL), workers=2, progress=False)
    assert f2 == folder and (folder / "dataset.npz").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(a1["X"], a2["X"])
    assert m2["created_unix"] == m1["created_unix"]
    # a spec with defaults spelled out is the same dataset
    full = jets.normalize_spec(SMALL)
    assert jets.generate(full, progress=False)[2] == folder


def test_changed_setting_is_a_new_cache(small, monkeypatch):
    _, _, folder = small
    changed = dict(SMALL, n_constituents=6)
    assert cache.dataset_dir("jets", jets.normalize_spec(changed)) != folder
    assert cache.load_cached("jets", jets.normalize_spec(changed)) is None
    calls = []
    real = cache.run_shards
    monkeypatch.setattr(cache, "run_shards", lambda *a, **k: calls.append(1) or real(*a, **k))
    a, m, f = jets.generate(changed, workers=2, progress=False)
    assert calls and f != folder and a["X"].shape == (20, 6, 4)
    assert (folder / "manifest.json").exists()  # the old dataset is untouched
    # same physics, fewer slots: the first 6 constituents agree with the 8-slot dataset
    np.testing.assert_array_equal(a["X"], small[0]["X"][:, :6])


@pytest.mark.parametrize("corruption", ["manifest_garbage", "manifest_list", "npz_bytes", "npz_missing"])
def test_corrupt_cache_is_regenerated(tiny, tmp_path, monkeypatch, corruption):
    a1, _, original = tiny
    monkeypatch.setenv("HWFLOW_DATA", str(tmp_path / "d"))
    folder = cache.dataset_dir("jets", jets.normalize_spec(TINY))
    shutil.copytree(original, folder)
    assert cache.load_cached("jets", jets.normalize_spec(TINY)) is not None  # the copy is a valid cache
    if corruption == "manifest_garbage":
        (folder / "manifest.json").write_text("{not json")
    elif corruption == "manifest_list":
        (folder / "manifest.json").write_text("[1, 2]")
    elif corruption == "npz_bytes":
        raw = bytearray((folder / "dataset.npz").read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (folder / "dataset.npz").write_bytes(bytes(raw))
    else:
        (folder / "dataset.npz").unlink()
    assert cache.load_cached("jets", jets.normalize_spec(TINY)) is None
    calls = []
    real = cache.run_shards
    monkeypatch.setattr(cache, "run_shards", lambda *a, **k: calls.append(1) or real(*a, **k))
    a2, m2, _ = jets.generate(TINY, workers=1, progress=False)
    assert calls, "a corrupt cache must be regenerated, not loaded"
    np.testing.assert_array_equal(a1["X"], a2["X"])
    assert json.loads((folder / "manifest.json").read_text())["content_sha256"] == cache.sha256_file(
        folder / "dataset.npz"
    )


def test_interrupted_run_leaves_no_cache(env, tmp_path, monkeypatch):
    monkeypatch.setenv("HWFLOW_DATA", str(tmp_path / "d"))

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "run_shards", interrupted)
    with pytest.raises(KeyboardInterrupt):
        jets.generate(TINY, progress=False)
    folder = cache.dataset_dir("jets", jets.normalize_spec(TINY))
    assert not (folder / "manifest.json").exists() and not (folder / "dataset.npz").exists()

    # interrupted while writing the arrays: no npz, no manifest, no stray temp file
    monkeypatch.undo()
    monkeypatch.setenv("HWFLOW_DATA", str(tmp_path / "d"))
    monkeypatch.setattr(np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        jets.generate(TINY, workers=1, progress=False)
    assert not folder.exists() or sorted(p.name for p in folder.iterdir()) == []


def test_banners_silenced(env, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("HWFLOW_DATA", str(tmp_path / "d"))
    jets.generate(TINY, workers=1, progress=False)
    out, err = capfd.readouterr()
    for text in (out, err):
        for banner in ("FastJet release", "PYTHIA version", "PYTHIA Process Initialization", "PYTHIA Event Listing"):
            assert banner not in text


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"classes": ["g", "b"]}, "allowed values are g, q, W, Z, t"),
        ({"classes": []}, "classes is empty"),
        ({"classes": ["W", "W"]}, "duplicates"),
        ({"n_constituents": 0}, "n_constituents"),
        ({"n_constituents": -3}, "n_constituents"),
        ({"jets_per_class": 0}, "jets_per_class"),
        ({"pt_min": 1000, "pt_max": 900}, "pT window empty"),
        ({"pt_min": 1000, "pt_max": 1000}, "pT window empty"),
        ({"pt_max": 7000}, "kinematic limit"),
        ({"features": ["ptrel", "mass"]}, "allowed values"),
        ({"jet_rr": 0.8}, "unknown key 'data.jets.jet_rr'"),
        ({"jet_r": "0.8"}, "data.jets.jet_r"),
        ({"kind": "kws"}, "kws"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_settings_raise_clear_errors(env, bad, fragment):
    with pytest.raises(HwflowError) as ei:
        jets.generate({**TINY, **bad}, progress=False)
    msg = str(ei.value)
    assert fragment in msg and "\n" not in msg


def test_hopeless_settings_fail_in_the_worker_with_a_clear_error(env, tmp_path, monkeypatch):
    # |y| < 0.001 almost never happens: the shard gives up after its event budget, nothing is cached
    monkeypatch.setenv("HWFLOW_DATA", str(tmp_path / "d"))
    monkeypatch.setattr(jets, "MAX_EVENTS_PER_JET", 10)
    monkeypatch.setattr(jets, "MAX_EVENTS_EXTRA", 0)
    spec = {**TINY, "y_max": 0.001, "jets_per_class": 2}
    with pytest.raises(HwflowError, match=r"class Z: only 0 of 2 jets after 20 events .*rapidity"):
        jets.generate(spec, workers=1, progress=False)
    assert not (cache.dataset_dir("jets", jets.normalize_spec(spec)) / "manifest.json").exists()


def test_cli_generates_from_a_card(env, tmp_path, capsys):
    from hwflow.cli import main

    card = tmp_path / "tiny_jets.yaml"
    spec = {k: v for k, v in TINY.items() if k not in ("kind", "seed")}
    card.write_text(
        json.dumps(
            {
                "name": "tiny_jets",
                "data": {"kind": "jets", "seed": TINY["seed"], "jets": spec},
                "model": {"kind": "transformer"},
            }
        )
    )  # JSON is valid YAML
    assert main(["data", "jets", "--model", str(card), "--quiet", "-j", "1"]) == 0
    out = capsys.readouterr().out
    assert "jets-" in out and "'Z': 5" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        json.dumps(
            {
                "name": "bad",
                "data": {"kind": "jets", "jets": {"pt_min": 900, "pt_max": 800}},
                "model": {"kind": "transformer"},
            }
        )
    )
    assert main(["data", "--model", str(bad)]) == 1
    assert "pT window empty" in capsys.readouterr().err


@pytest.mark.slow
def test_default_card_size_medians(env, tmp_path, monkeypatch):
    """Full default size (1000 jets/class × 5): groomed-mass medians with tight tolerances."""
    monkeypatch.setenv("HWFLOW_DATA", str(tmp_path / "d"))
    arrays, manifest, _ = jets.generate({"kind": "jets", "seed": 42}, progress=False)
    med = {c: float(np.median(_msd(arrays, c))) for c in ("W", "Z", "t")}
    assert 77 <= med["W"] <= 84 and 87 <= med["Z"] <= 94 and 165 <= med["t"] <= 178, med


def test_card_spec_hash_matches_normalized_spec():
    from hwflow.config import validate
    from hwflow.util import stable_hash

    card = validate(
        {"name": "j", "data": {"kind": "jets", "jets": {"n_constituents": 8}}, "model": {"kind": "transformer"}}
    )
    spec = card.data_spec()
    assert jets.normalize_spec(spec) == spec  # a card's spec is already complete: same cache key either way
    assert stable_hash(jets.normalize_spec({"kind": "jets", "seed": 42, "n_constituents": 8})) == card.data_hash()
