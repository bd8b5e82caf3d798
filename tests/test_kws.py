"""Spoken-keyword dataset (hwflow.data.kws, hwflow.data.audio): espeak-ng clips -> log-mel features."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import numpy as np
import pytest

from hwflow.config import CardError, validate
from hwflow.data import audio, kws
from hwflow.data.cache import ARRAYS, MANIFEST, dataset_dir, split_indices
from hwflow.util import HwflowError, sha256_file

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt-get install espeak-ng)"
)

SMALL = {"clips_per_class": 3, "voices": ["en-us", "en-gb", "en-029"], "variants": ["", "f2"], "shard_size": 10}


def card_for(kws_over: dict, **data_over):
    """Return a validated card with a kws data section."""
    return validate(
        {"name": "kws_test", "data": {"kind": "kws", "kws": kws_over, **data_over}, "model": {"kind": "conformer"}}
    )


def spec_for(kws_over: dict, seed: int = 42) -> dict:
    """Return the data spec of a kws card."""
    return card_for(kws_over, seed=seed).data_spec()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Point $HWFLOW_DATA / $HWFLOW_ROOT at a temporary folder for the whole module."""
    root = tmp_path_factory.mktemp("kwsroot")
    mp = pytest.MonkeyPatch()
    mp.setenv("HWFLOW_ROOT", str(root))
    mp.setenv("HWFLOW_DATA", str(root / "data"))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def small(env):
    """Return (arrays, manifest, folder, spec, seconds) of a 36-clip dataset made with 2 workers."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    spec = spec_for(SMALL)
    t0 = time.perf_counter()
    arrays, manifest, folder = kws.generate(spec, workers=2, progress=False)
    return arrays, manifest, folder, spec, time.perf_counter() - t0


# ------------------------------------------------------------------ audio helpers (no espeak-ng needed)
def test_mel_filterbank_matches_tensorflow_htk():
    fb = audio.mel_filterbank(16000, 512, 40, 20.0, 7600.0)
    assert fb.shape == (40, 257) and fb.max() <= 1.0 + 1e-6 and (fb.sum(axis=1) > 0).all()
    centers = fb.argmax(axis=1)
    assert (np.diff(centers) >= 0).all()
    tf = pytest.importorskip("tensorflow")
    ref = tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, 20.0, 7600.0).numpy().T
    np.testing.assert_allclose(fb[:, 1:], ref[:, 1:], atol=1e-2)  # TF zeroes the DC bin and works in float32


def test_log_mel_of_a_tone_peaks_at_its_mel_band():
    rate, (win, hop, n_fft) = 16000, audio.frame_params(16000, 30, 20)
    fb = audio.mel_filterbank(rate, n_fft, 40, 20.0, 7600.0)
    t = np.arange(rate) / rate
    feats = audio.log_mel(0.5 * np.sin(2 * np.pi * 1000 * t), rate, win, hop, n_fft, fb)
    assert feats.shape == (49, 40) and feats.dtype == np.float32
    edges = audio.mel_to_hz(np.linspace(audio.hz_to_mel(20), audio.hz_to_mel(7600), 42))[1:-1]
    assert abs(int(np.argmax(feats.mean(axis=0))) - int(np.argmin(np.abs(edges - 1000)))) <= 1
    silent = audio.log_mel(np.zeros(rate), rate, win, hop, n_fft, fb)
    np.testing.assert_allclose(silent, np.log(audio.LOG_FLOOR), rtol=1e-6)


@pytest.mark.parametrize("color,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_colored_noise_has_its_spectral_slope(color, slope):
    x = audio.colored_noise(np.random.default_rng(0), 1 << 16, color)
    assert abs(float(np.sqrt(np.mean(x**2))) - 1.0) < 1e-5
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x))
    band = (f > 0.005) & (f < 0.4)
    fit = np.polyfit(np.log(f[band]), np.log(p[band] + 1e-30), 1)[0]
    assert abs(fit - slope) < 0.15


def test_reverb_ir_decays_and_has_its_direct_to_reverberant_ratio():
    ir = audio.reverb_ir(np.random.default_rng(1), 16000, rt60_s=0.3, drr_db=6.0)
    assert len(ir) == 4800 and ir[0] == 1.0
    tail = ir[1:].astype(np.float64)
    assert abs(10 * np.log10(1.0 / np.sum(tail**2)) - 6.0) < 1e-3
    q = len(tail) // 4
    assert np.sum(tail[-q:] ** 2) < 1e-3 * np.sum(tail[:q] ** 2)  # the last quarter is > 30 dB below the first


def test_parse_wav_rejects_garbage():
    with pytest.raises(HwflowError, match="WAV"):
        audio.parse_wav(b"not a wav file at all")


# ------------------------------------------------------------------ espeak-ng
@needs_espeak
def test_speak_parses_espeak_pipe_wav_and_resamples():
    x = kws.speak("stop", "en-us+f2", 170, 50, 16000)
    assert x.dtype == np.float32 and 0.15 < len(x) / 16000 < 0.9 and np.abs(x).max() <= 1.0
    assert "1." in kws.espeak_version()  # e.g. "eSpeak NG text-to-speech: 1.51"


@needs_espeak
def test_clip_is_seeded_by_seed_and_index_only():
    spec = spec_for(SMALL)
    a, ma = kws.make_clip(spec, 5)
    b, mb = kws.make_clip(spec, 5)
    assert np.array_equal(a, b) and ma == mb
    c, _ = kws.make_clip(spec_for(SMALL, seed=43), 5)
    assert not np.array_equal(a, c)
    assert len(a) == 16000 and np.abs(a).max() <= 1.0
    assert np.array_equal(np.round(a * 32768), a * 32768)  # a 16-bit recording


@needs_espeak
def test_save_wav_writes_the_clip(tmp_path):
    from scipy.io import wavfile

    spec = spec_for(SMALL)
    rate, data = wavfile.read(kws.save_wav(spec, 4, tmp_path / "c.wav"))
    assert rate == 16000 and data.dtype == np.int16
    assert np.array_equal(data, np.round(kws.make_clip(spec, 4)[0] * 32768).astype(np.int16))
    with pytest.raises(HwflowError, match="outside"):
        kws.save_wav(spec, 36, tmp_path / "x.wav")


def test_missing_espeak_gives_install_hint(env, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no espeak-ng on PATH
    monkeypatch.delenv("HWFLOW_ESPEAK", raising=False)
    with pytest.raises(HwflowError, match=r"espeak-ng not found: install it with `apt-get install espeak-ng`"):
        kws.generate(spec_for({**SMALL, "clips_per_class": 1}), workers=1, progress=False, force=True)


# ------------------------------------------------------------------ the dataset
def test_features_shape_finite_and_range(small):
    arrays, manifest, folder, spec, _ = small
    X, y = arrays["X"], arrays["y"]
    names = list(arrays["class_names"])
    assert names == spec["keywords"] + ["_unknown_", "_silence_"]
    assert X.shape == (12 * 3, 49, 40) and X.dtype == np.float32
    assert np.isfinite(X).all()
    win, hop, n_fft = audio.frame_params(16000, 30, 20)
    assert X.min() >= np.log(audio.LOG_FLOOR) - 1e-4
    assert X.max() < np.log(n_fft * win)  # Parseval bound for a full-scale signal, filter weights <= 1
    assert np.bincount(y).tolist() == [3] * 12
    for k in kws.META_FIELDS:
        assert len(arrays[k]) == len(y)
    words = arrays["word"]
    assert all(w == names[c] for w, c in zip(words, y) if c < 10)
    assert all(w in spec["unknown_words"] for w, c in zip(words, y) if names[c] == "_unknown_")
    assert all(w == "" for w, c in zip(words, y) if names[c] == "_silence_")


def test_silence_has_low_energy(small):
    arrays = small[0]
    names = list(arrays["class_names"])
    energy = np.log(np.exp(arrays["X"].astype(np.float64)).sum(axis=2)).max(axis=1)  # loudest frame per clip
    sil = energy[arrays["y"] == names.index("_silence_")]
    words = energy[arrays["y"] < 10]
    assert np.median(sil) < np.median(words) - 1.0  # > 4 dB quieter at the loudest frame


def test_manifest_and_figures(small, env):
    arrays, manifest, folder, spec, _ = small
    assert folder == dataset_dir("kws", spec)
    assert manifest["content_sha256"] == sha256_file(folder / ARRAYS)
    assert manifest["versions"]["espeak-ng"] == kws.espeak_version()
    assert manifest["versions"]["numpy"] and manifest["versions"]["scipy"]
    assert manifest["counts_per_class"] == dict.fromkeys(arrays["class_names"], 3)
    assert manifest["generation"]["clips_per_s"] > 0 and manifest["generation"]["shards"] == 4
    assert json.loads((folder / MANIFEST).read_text())["spec"] == spec
    assert (folder / "examples.png").stat().st_size > 10_000
    assert len(list((folder / "examples").glob("*.wav"))) == 12
    assert (env / "reports" / "data" / "kws_examples.png").exists()


def test_worker_count_and_rerun_do_not_change_arrays(small, tmp_path):
    arrays, manifest = small[0], small[1]
    again, man2, _ = kws.generate(small[3], workers=1, progress=False, root=tmp_path, figure=False)
    assert man2["generation"]["n_workers"] == 1 and manifest["generation"]["n_workers"] == 2
    assert man2["generation"]["generated"] == 4 and len(man2["generation"]["per_worker"]) == 1
    assert sum(w["clips"] for w in manifest["generation"]["per_worker"].values()) == 36
    assert set(again) == set(arrays)
    for k in arrays:
        assert np.array_equal(again[k], arrays[k]), k
    assert man2["content_sha256"] == manifest["content_sha256"]


def test_shard_boundaries_do_not_change_arrays(small):
    arrays, spec = small[0], small[3]
    whole = kws._shard({"spec": spec, "start": 0, "end": 36})[0]
    parts = [kws._shard({"spec": spec, "start": s, "end": min(s + 7, 36)})[0] for s in range(0, 36, 7)]
    for k in ["X", *kws.META_FIELDS]:
        assert np.array_equal(whole[k], arrays[k]), k
        assert np.array_equal(np.concatenate([p[k] for p in parts]), arrays[k]), k


def test_cache_hit_miss_and_corruption(small, monkeypatch):
    arrays, manifest, folder, spec, first_s = small

    def no_shards(*a, **k):
        raise AssertionError("cache hit expected, but shards were run")

    monkeypatch.setattr(kws.cache, "run_cached_shards", no_shards)
    hit, man, f2 = kws.generate(spec, progress=False)
    assert f2 == folder and man["content_sha256"] == manifest["content_sha256"]
    assert np.array_equal(hit["X"], arrays["X"])
    # a different spec is a different cache entry (a miss)
    other = spec_for({**SMALL, "snr_db": [5.0, 20.0]})
    assert dataset_dir("kws", other) != folder
    with pytest.raises(AssertionError, match="cache hit expected"):
        kws.generate(other, progress=False)
    monkeypatch.undo()
    # a corrupted npz fails its hash: rebuilt (from the finished shards), identical to the original
    with open(folder / ARRAYS, "ab") as f:
        f.write(b"corrupt")
    fixed, man3, _ = kws.generate(spec, workers=2, progress=False, figure=False)
    assert man3["content_sha256"] == manifest["content_sha256"] == sha256_file(folder / ARRAYS)
    assert np.array_equal(fixed["X"], arrays["X"])
    # a manifest from an older generator version is stale
    m = json.loads((folder / MANIFEST).read_text())
    m["generator_version"] = kws.GENERATOR_VERSION - 1
    (folder / MANIFEST).write_text(json.dumps(m))
    monkeypatch.setattr(kws.cache, "run_cached_shards", no_shards)
    with pytest.raises(AssertionError, match="cache hit expected"):
        kws.generate(spec, progress=False)
    m["generator_version"] = kws.GENERATOR_VERSION  # restore, so later tests hit the cache
    (folder / MANIFEST).write_text(json.dumps(m))


def test_test_split_holds_out_whole_voice_variants(small):
    arrays = small[0]
    g, n = arrays["groups"], len(arrays["y"])
    assert len(np.unique(g)) == 6 and arrays["group_names"].tolist() == [
        "en-us",
        "en-us+f2",
        "en-gb",
        "en-gb+f2",
        "en-029",
        "en-029+f2",
    ]
    for seed in range(5):
        idx = split_indices(n, 0.2, 0.2, seed, groups=g)
        sets = {k: set(g[v].tolist()) for k, v in idx.items()}
        assert not sets["train"] & sets["test"] and not sets["train"] & sets["val"] and not sets["val"] & sets["test"]
        assert all(sets.values())
        assert sorted(np.concatenate(list(idx.values())).tolist()) == list(range(n))
    idx = split_indices(n, 0.5, 0.4, 0, groups=g)  # 3 test + 2 val groups leave 1 for training
    assert len(set(g[idx["train"]].tolist())) == 1
    with pytest.raises(HwflowError, match="groups"):
        split_indices(n, 0.5, 0.5, 0, groups=g)  # 3 + 3 of 6 groups leave none


def test_get_dataset_uses_voice_groups(small):
    from hwflow.data import get_dataset

    card = card_for(SMALL, test_fraction=0.2, val_fraction=0.2)
    ds = get_dataset(card, progress=False)
    n = len(small[0]["y"])
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == n
    assert ds.x_test.shape[1:] == (49, 40) and ds.n_classes == 12


@needs_espeak
def test_holdout_by_voice_groups_base_voices():
    spec = spec_for({**SMALL, "holdout": "voice"})
    metas = [kws.make_clip(spec, i)[1] for i in range(0, 36, 7)]
    assert all(m["groups"] == m["voice"] for m in metas)


@pytest.mark.parametrize(
    "over,match",
    [
        ({"n_frames": 50}, "n_frames: 49"),
        ({"voices": ["en-us+m3"]}, "variants"),
        ({"speed": [50, 200]}, "speed"),
        ({"pitch": [10, 120]}, "pitch"),
        ({"fmax_hz": 9000.0}, "fmax_hz"),
        ({"keywords": ["yes", "yes"]}, "duplicates"),
        ({"keywords": []}, "keywords is empty"),
        ({"keywords": ["Yes!"]}, "lower-case"),
        ({"n_mels": 256}, "n_mels"),
        ({"gain_db": [-10.0, 6.0]}, "gain_db"),
        ({"unknown_words": ["yes"], "keywords": ["yes"]}, "unknown_words"),
        ({"win_ms": 2000.0}, "win_ms"),
    ],
)
def test_bad_settings_raise_clear_errors(env, over, match):
    with pytest.raises(HwflowError, match=match):
        kws.generate(spec_for({**SMALL, **over}), progress=False)


@needs_espeak
@pytest.mark.parametrize(
    "over,match",
    [
        ({"voices": ["xx-nowhere"]}, "no voice 'xx-nowhere'"),
        ({"variants": ["nosuchvariant"]}, "no variant 'nosuchvariant'"),
    ],
)
def test_unknown_voice_or_variant(env, over, match):
    with pytest.raises(HwflowError, match=match):
        kws.generate(spec_for({**SMALL, **over}), progress=False)


@pytest.mark.parametrize(
    "over,match",
    [
        ({"snr_db": [20.0, 0.0]}, "snr_db"),
        ({"holdout": "speaker"}, "holdout"),
        ({"noise_colors": ["blue"]}, "noise_colors"),
        ({"clip_s": 1}, "clip_s"),
    ],
)
def test_bad_card_keys(over, match):
    with pytest.raises(CardError, match=match):
        card_for(over)


def test_unquoted_yaml_keywords_get_a_quoting_hint(tmp_path):
    from hwflow.config import load_card

    card = tmp_path / "k.yaml"
    card.write_text("name: k\ndata: {kind: kws, kws: {keywords: [yes, no]}}\nmodel: {kind: conformer}\n")
    with pytest.raises(CardError, match="quote yes/no/on/off"):
        load_card(card)


@needs_espeak
def test_unguarded_script_fails_fast_with_main_guard_hint(tmp_path):
    """A script calling generate at top level: spawned workers re-import it; must fail fast, not respawn forever."""
    import os
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "from hwflow.config import validate\nfrom hwflow.data import kws\n"
        f"card = validate({{'name': 'u', 'data': {{'kind': 'kws', 'kws': {SMALL!r}}}, 'model': {{'kind': "
        f"'conformer'}}}})\n"
        "kws.generate(card.data_spec(), workers=2, progress=False)\n"
    )
    env = {**os.environ, "HWFLOW_DATA": str(tmp_path / "data"), "HWFLOW_ROOT": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path
    )
    assert res.returncode != 0
    assert 'if __name__ == "__main__":' in res.stderr.splitlines()[-1]


@needs_espeak
def test_resume_after_interruption_regenerates_only_missing_shards(small, tmp_path, monkeypatch):
    from hwflow.data import cache

    arrays, spec = small[0], small[3]
    real = cache.run_tasks

    def interrupted_after_one(fn, tasks, keys, settings=None, on_result=None, **k):
        def on(i, res):
            on_result(i, res)
            raise KeyboardInterrupt

        return real(fn, tasks, keys, settings, on_result=on, **k)

    monkeypatch.setattr(cache, "run_tasks", interrupted_after_one)
    with pytest.raises(KeyboardInterrupt):
        kws.generate(spec, workers=1, progress=False, root=tmp_path, figure=False)
    assert not dataset_dir("kws", spec, tmp_path).exists()
    assert len(list(next(tmp_path.glob("kws-shards-*")).glob("*.npz"))) == 1
    seen = []
    monkeypatch.setattr(
        cache, "run_tasks", lambda fn, t, keys, *a, **k: seen.append(keys) or real(fn, t, keys, *a, **k)
    )
    again, man, _ = kws.generate(spec, workers=2, progress=False, root=tmp_path, figure=False)
    assert len(seen[0]) == 3 and (man["generation"]["generated"], man["generation"]["reused"]) == (3, 1)
    for k in arrays:
        assert np.array_equal(again[k], arrays[k]), k


def test_wrong_kind_rejected():
    with pytest.raises(HwflowError, match="kind"):
        kws.generate({**spec_for(SMALL), "kind": "jets"})


# ------------------------------------------------------------------ at size (make test-slow)
@pytest.mark.slow
@needs_espeak
def test_default_size_generation_and_separability(env):
    """Default card size: generation time, and held-out-voice accuracy of a linear probe well above chance."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    spec = spec_for({})
    arrays, manifest, _ = kws.generate(spec, workers=2, progress=False, force=True)
    assert len(arrays["y"]) == 12 * 200
    assert manifest["generation"]["clips_per_s"] > 20
    X, y, g = arrays["X"], arrays["y"], arrays["groups"]
    idx = split_indices(len(y), 0.2, 0.1, 42, groups=g)
    Z = X - X.mean(axis=(1, 2), keepdims=True)
    feats = np.concatenate([Z.mean(1), Z.std(1)], axis=1)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(feats[idx["train"]], y[idx["train"]])
    acc = clf.score(feats[idx["test"]], y[idx["test"]])
    assert acc > 0.45, acc  # chance is 1/12
