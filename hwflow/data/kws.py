"""Spoken-keyword dataset made locally by espeak-ng: Speech-Commands-like 1 s clips -> log-mel features.

Classes: the card's keywords, then ``_unknown_`` (other English words) and ``_silence_``
(background noise only) when enabled. Clip ``i`` (classes in blocks of ``clips_per_class``) gets
its voice x variant from ``i mod n_groups`` (balanced), and every random draw (speed, pitch, word,
gain, placement, reverb, noise) from ``SeedSequence([seed, i])`` - so the arrays depend only on
the spec, never on the shard size or the number of workers. espeak-ng runs as a fresh subprocess
per word (WAV on stdout), so no synthesiser state carries over between words. Shards are Dask tasks
(hwflow.cluster, as for jets), each saved under data/kws-shards-<hash>/ as it finishes, so an
interrupted run resumes with the missing shards only (cache.run_cached_shards).

Augmentation chain per spoken clip: espeak-ng 22050 Hz -> resample to ``sample_rate`` -> trim
silence -> peak-normalise x gain_db -> random placement (or random crop) in the clip window ->
optional synthetic reverb (exponentially decaying noise tail, rt60_s, direct-to-reverberant ratio
0-12 dB) -> white/pink/brown noise at snr_db relative to the word's RMS -> a -72 dBFS white
microphone floor -> clip to [-1, 1] and round to
16-bit. ``_silence_`` clips hold the same noise at the level it would have under a spoken word.

Features: ln(mel power + 1e-6), HTK mel filterbank in numpy (hwflow.data.audio), periodic Hann
window of win_ms, hop of hop_ms, no padding: (n, n_frames, n_mels) float32.

Outputs in data/kws-<spec hash>/: dataset.npz (X, y, class_names, groups + per-clip metadata),
manifest.json, examples.png (log-mel per class, also copied to reports/data/kws_examples.png) and
examples/*.wav (one clip per class). espeak-ng is found on PATH or at $HWFLOW_ESPEAK.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..util import HwflowError, atomic_path, package_versions, project_root, save_figure
from . import audio, cache
from .cache import dataset_dir, load_cached, require, save

KIND = "kws"
# bump when the same spec would give different arrays; stale caches are then rebuilt (2: log-mel without BLAS)
GENERATOR_VERSION = 2
UNKNOWN, SILENCE = "_unknown_", "_silence_"
TYPICAL_RMS_PER_PEAK = 0.17  # measured RMS/peak of trimmed espeak-ng words; sets the _silence_ noise level
MIC_FLOOR_DBFS = -72.0  # white self-noise of the "microphone": real recordings are never digitally silent
DRR_DB = (0.0, 12.0)  # direct-to-reverberant ratio range of the synthetic reverb
ESPEAK_RATE = (80, 450)  # words per minute espeak-ng accepts
INSTALL_HINT = "install it with `apt-get install espeak-ng` (or `make deps`)"
_WORD_RE = re.compile(r"^[a-z][a-z' ]*$")


# ---------------------------------------------------------------- espeak-ng
def espeak_path() -> str:
    """Return the espeak-ng executable path ($HWFLOW_ESPEAK or PATH), or raise HwflowError how to install it."""
    exe = os.environ.get("HWFLOW_ESPEAK") or shutil.which("espeak-ng")
    if not exe or not Path(exe).exists():
        raise HwflowError(f"espeak-ng not found: {INSTALL_HINT}")
    return exe


def espeak_version(exe: str | None = None) -> str:
    """Return espeak-ng's version line, e.g. 'eSpeak NG text-to-speech: 1.51 ...'."""
    out = _run([exe or espeak_path(), "--version"]).decode(errors="replace").strip()
    return out.split("  Data at:")[0].strip()


@lru_cache(maxsize=4)
def espeak_voices(exe: str) -> tuple[frozenset, frozenset]:
    """Return (voice names, variant names) that this espeak-ng installation knows."""
    voices, variants = set(), set()
    for line in _run([exe, "--voices"]).decode(errors="replace").splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5:
            voices.update({cols[1], cols[4], cols[4].split("/")[-1].lower()})
    for line in _run([exe, "--voices=variant"]).decode(errors="replace").splitlines()[1:]:
        cols = line.split()
        if cols:
            variants.add(cols[-1].split("/")[-1])
    return frozenset(voices), frozenset(variants)


def _run(cmd: list[str]) -> bytes:
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise HwflowError(f"espeak-ng not found: {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise HwflowError(f"espeak-ng hung on {' '.join(cmd[1:])}: check `espeak-ng --version` works") from None
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip().splitlines()
        raise HwflowError(f"espeak-ng failed ({' '.join(cmd[1:])}): {err[0] if err else 'exit ' + str(res.returncode)}")
    return res.stdout


def speak(word: str, voice: str, speed: int, pitch: int, rate: int, exe: str | None = None) -> np.ndarray:
    """Return ``word`` spoken by espeak-ng (voice, wpm, pitch 0-99) at ``rate`` Hz, silence trimmed, float32."""
    data = _run([exe or espeak_path(), "--stdout", "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), word])
    x, r = audio.parse_wav(data)
    x = audio.trim(audio.resample(x, r, rate), rate)
    if x.size == 0:
        raise HwflowError(f"espeak-ng produced silence for '{word}' with voice {voice}: choose another voice/variant")
    return x


# ---------------------------------------------------------------- spec
def class_names(spec: dict) -> list[str]:
    """Return the class names: keywords, then _unknown_ and _silence_ when enabled."""
    return (
        list(spec["keywords"])
        + ([UNKNOWN] if spec["unknown_class"] else [])
        + ([SILENCE] if spec["silence_class"] else [])
    )


def group_names(spec: dict) -> list[str]:
    """Return the espeak-ng voice names (voice+variant) in group order."""
    return [v + (f"+{var}" if var else "") for v in spec["voices"] for var in spec["variants"]]


def unknown_words(spec: dict) -> list[str]:
    """Return the unknown-class vocabulary: the card's unknown words minus the keywords, deduplicated."""
    kw = set(spec["keywords"])
    return list(dict.fromkeys(w for w in spec["unknown_words"] if w not in kw))


def frame_layout(spec: dict) -> dict:
    """Return the sample/frame layout {rate, n_samples, win, hop, n_fft, n_frames} implied by the spec."""
    rate = spec["sample_rate"]
    n = int(round(rate * spec["clip_ms"] / 1000))
    win, hop, n_fft = audio.frame_params(rate, spec["win_ms"], spec["hop_ms"])
    return {
        "rate": rate,
        "n_samples": n,
        "win": win,
        "hop": hop,
        "n_fft": n_fft,
        "n_frames": audio.n_frames_for(n, win, hop),
    }


def check_spec(spec: dict) -> None:
    """Raise HwflowError naming the key and the fix when a kws spec cannot produce a dataset."""
    where = "data.kws"
    kw = spec["keywords"]
    require(len(kw) > 0, f"{where}.keywords is empty: list at least one keyword")
    require(len(set(kw)) == len(kw), f"{where}.keywords has duplicates: {kw}")
    for w in kw + spec["unknown_words"]:
        require(bool(_WORD_RE.match(w)), f"{where}: word {w!r} is not a lower-case English word: use letters a-z only")
    if spec["unknown_class"]:
        require(
            len(unknown_words(spec)) > 0,
            f"{where}.unknown_words has no word outside the keywords: add some or set unknown_class: false",
        )
    require(len(spec["voices"]) > 0, f"{where}.voices is empty: list espeak-ng voices such as en-us")
    require(len(spec["variants"]) > 0, f"{where}.variants is empty: use [''] for each voice's own variant")
    for v in spec["voices"]:
        require(
            "+" not in v,
            f"{where}.voices entry {v!r} holds a variant: list the base voice and put the variant in {where}.variants",
        )
    require(len(set(spec["voices"])) == len(spec["voices"]), f"{where}.voices has duplicates")
    require(len(set(spec["variants"])) == len(spec["variants"]), f"{where}.variants has duplicates")
    for key in ("snr_db", "speed", "pitch", "gain_db", "rt60_s"):
        v = spec[key]
        require(len(v) == 2 and v[0] <= v[1], f"{where}.{key} must be [low, high] with low <= high, got {v}")
    require(
        ESPEAK_RATE[0] <= spec["speed"][0] and spec["speed"][1] <= ESPEAK_RATE[1],
        f"{where}.speed {spec['speed']} outside espeak-ng's {ESPEAK_RATE[0]}-{ESPEAK_RATE[1]} words per minute",
    )
    require(spec["pitch"][0] >= 0 and spec["pitch"][1] <= 99, f"{where}.pitch {spec['pitch']} outside espeak-ng's 0-99")
    require(spec["gain_db"][1] <= 0, f"{where}.gain_db {spec['gain_db']} above 0 dBFS would clip: keep it <= 0")
    require(spec["rt60_s"][0] > 0 or spec["reverb_prob"] == 0, f"{where}.rt60_s must be > 0 s when reverb_prob > 0")
    require(len(spec["noise_colors"]) > 0, f"{where}.noise_colors is empty: list white, pink and/or brown")
    lay = frame_layout(spec)
    require(lay["win"] <= lay["n_samples"], f"{where}.win_ms {spec['win_ms']} longer than clip_ms {spec['clip_ms']}")
    require(
        spec["n_frames"] == lay["n_frames"],
        f"{where}.n_frames = {spec['n_frames']} but a {spec['clip_ms']} ms clip with win_ms {spec['win_ms']} and "
        f"hop_ms {spec['hop_ms']} has {lay['n_frames']} frames: set n_frames: {lay['n_frames']} or change "
        "clip_ms/win_ms/hop_ms",
    )
    require(
        spec["fmax_hz"] <= spec["sample_rate"] / 2 and spec["fmin_hz"] < spec["fmax_hz"],
        f"{where}: need fmin_hz < fmax_hz <= sample_rate/2 = {spec['sample_rate'] / 2}, got "
        f"{spec['fmin_hz']}..{spec['fmax_hz']}",
    )
    audio.mel_filterbank(lay["rate"], lay["n_fft"], spec["n_mels"], spec["fmin_hz"], spec["fmax_hz"])


def check_voices(spec: dict, exe: str) -> None:
    """Raise HwflowError when a voice or variant of the spec is unknown to the installed espeak-ng."""
    voices, variants = espeak_voices(exe)
    for v in spec["voices"]:
        require(v in voices, f"data.kws.voices: espeak-ng has no voice {v!r}: see `espeak-ng --voices=en`")
    for v in spec["variants"]:
        require(
            v == "" or v in variants,
            f"data.kws.variants: espeak-ng has no variant {v!r}: see `espeak-ng --voices=variant`",
        )


# ---------------------------------------------------------------- clips
META_FIELDS = {  # per-clip metadata stored next to X (name -> dtype)
    "groups": np.int32,
    "voice": np.int16,
    "variant": np.int16,
    "word": "U24",
    "speed": np.int16,
    "pitch": np.int16,
    "gain_db": np.float32,
    "snr_db": np.float32,
    "noise_color": np.int8,
    "rt60_s": np.float32,
    "offset_s": np.float32,
    "speech_s": np.float32,
}


def make_clip(spec: dict, index: int, exe: str | None = None) -> tuple[np.ndarray, dict]:
    """Return (waveform float32 of clip_ms at sample_rate, metadata) of clip ``index``; seeded by (seed, index)."""
    lay = frame_layout(spec)
    rate, n = lay["rate"], lay["n_samples"]
    names = class_names(spec)
    label = index // spec["clips_per_class"]
    cls = names[label]
    n_var = len(spec["variants"])
    g = index % (len(spec["voices"]) * n_var)  # balanced voice x variant assignment
    voice_i, var_i = g // n_var, g % n_var
    rng = np.random.default_rng(np.random.SeedSequence([int(spec["seed"]), int(index)]))
    # draw every parameter in a fixed order, whatever the class, so one clip's stream never depends on another's
    speed = int(round(rng.uniform(*spec["speed"])))
    pitch = int(round(rng.uniform(*spec["pitch"])))
    unk = unknown_words(spec) if spec["unknown_class"] else [""]
    unk_word = unk[int(rng.integers(len(unk)))]
    gain_db = float(rng.uniform(*spec["gain_db"]))
    place = float(rng.random())
    use_reverb = bool(rng.random() < spec["reverb_prob"])
    rt60 = float(rng.uniform(*spec["rt60_s"]))
    drr = float(rng.uniform(*DRR_DB))
    snr = float(rng.uniform(*spec["snr_db"]))
    color_i = int(rng.integers(len(spec["noise_colors"])))
    gain = 10 ** (gain_db / 20)

    x = np.zeros(n, dtype=np.float32)
    offset, speech_s = 0, 0.0
    if cls == SILENCE:
        word = ""
        speech_rms = gain * TYPICAL_RMS_PER_PEAK  # noise as loud as it would be under a word at this gain and SNR
    else:
        word = unk_word if cls == UNKNOWN else cls
        voice = group_names(spec)[g]
        w = speak(word, voice, speed, pitch, rate, exe)
        w = w * (gain / float(np.max(np.abs(w))))
        speech_rms = float(np.sqrt(np.mean(w * w)))
        speech_s = len(w) / rate
        if len(w) >= n:  # longer than the window: random crop, like a recording cut mid-word
            start = int(place * (len(w) - n + 1))
            x[:] = w[start : start + n]
            offset = -start
        else:
            offset = int(place * (n - len(w) + 1))
            x[offset : offset + len(w)] = w
        if use_reverb:
            from scipy.signal import fftconvolve

            x = fftconvolve(x, audio.reverb_ir(rng, rate, rt60, drr))[:n].astype(np.float32)
    x = x + audio.colored_noise(rng, n, spec["noise_colors"][color_i]) * (speech_rms / 10 ** (snr / 20))
    x = x + rng.standard_normal(n).astype(np.float32) * 10 ** (MIC_FLOOR_DBFS / 20)
    x = np.round(np.clip(x, -1.0, 32767 / 32768) * 32768) / 32768  # a 16-bit recording
    meta = {
        "groups": g if spec["holdout"] == "variant" else voice_i,
        "voice": voice_i,
        "variant": var_i,
        "word": word,
        "speed": speed,
        "pitch": pitch,
        "gain_db": gain_db,
        "snr_db": snr,
        "noise_color": color_i,
        "rt60_s": rt60 if (use_reverb and cls != SILENCE) else 0.0,
        "offset_s": offset / rate,
        "speech_s": speech_s,
    }
    return x.astype(np.float32), meta


def save_wav(spec: dict, index: int, path: str | Path) -> Path:
    """Return ``path`` after writing clip ``index`` of the dataset as a 16-bit WAV, to listen to what the model
    hears."""
    from scipy.io import wavfile

    check_spec(spec)
    n = len(class_names(spec)) * spec["clips_per_class"]
    require(0 <= index < n, f"clip index {index} outside the dataset's 0..{n - 1}")
    x, _ = make_clip(spec, index)
    path = Path(path)
    with atomic_path(path, suffix=".wav") as tmp:
        wavfile.write(tmp, spec["sample_rate"], np.round(x * 32768).astype(np.int16))
    return path


def _shard(task: dict) -> tuple[dict, dict]:
    """Return (features + per-clip metadata, shard meta) of clips [start, end); depends only on the task."""
    spec, start, end = task["spec"], task["start"], task["end"]
    exe = task.get("exe")
    lay = frame_layout(spec)
    fb = audio.mel_filterbank(lay["rate"], lay["n_fft"], spec["n_mels"], spec["fmin_hz"], spec["fmax_hz"])
    t0, c0 = time.perf_counter(), _cpu_s()
    waves, metas = [], []
    for i in range(start, end):
        x, m = make_clip(spec, i, exe)
        waves.append(x)
        metas.append(m)
    X = audio.log_mel(np.stack(waves), lay["rate"], lay["win"], lay["hop"], lay["n_fft"], fb)
    out = {"X": X}
    for k, dt in META_FIELDS.items():
        out[k] = np.array([m[k] for m in metas], dtype=dt)
    return out, {"clips": end - start, "cpu_s": _cpu_s() - c0, "wall_s": time.perf_counter() - t0}


def _cpu_s() -> float:
    """Return CPU seconds of this process plus its finished children (espeak-ng runs as a subprocess)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# ---------------------------------------------------------------- dataset
def generate(
    spec: dict,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
    root: Path | None = None,
    figure: bool = True,
    cluster=None,
):
    """Return (arrays, manifest, folder) of the keyword dataset for ``spec``, from the cache or freshly generated."""
    require(spec.get("kind") == KIND, f"kws.generate got a spec of kind {spec.get('kind')!r}: expected 'kws'")
    check_spec(spec)
    if not force:
        hit = load_cached(KIND, spec, root)
        if hit is not None and hit[1].get("generator_version") == GENERATOR_VERSION:
            arrays, manifest = hit
            folder = dataset_dir(KIND, spec, root)
            if figure and not (folder / "examples.png").exists():
                _figures(arrays, folder)
            return arrays, manifest, folder
    exe = espeak_path()
    check_voices(spec, exe)
    names = class_names(spec)
    n_total = len(names) * spec["clips_per_class"]
    size = spec["shard_size"]
    # shard boundaries depend only on the spec; each clip's seed only on (seed, index)
    tasks = [{"spec": spec, "start": s, "end": min(s + size, n_total), "exe": exe} for s in range(0, n_total, size)]
    keys = [f"{t['start']:07d}-{t['end']:07d}" for t in tasks]
    from ..cluster import ClusterSettings

    settings = cluster or ClusterSettings(n_workers=workers)
    # clip i depends on (spec, i) only; the version keeps shards of an older generator from being reused
    shard_spec = {**spec, "generator_version": GENERATOR_VERSION}
    shards, run = cache.run_cached_shards(
        KIND, shard_spec, _shard, tasks, keys, settings, desc="kws clips", progress=progress, force=force, root=root
    )
    parts = [a for a, _m in shards]
    metas = [m for _a, m in shards]
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in ["X", *META_FIELDS]}
    arrays["y"] = (np.arange(n_total) // spec["clips_per_class"]).astype(np.int64)
    arrays["class_names"] = np.array(names)
    arrays["voice_names"] = np.array(spec["voices"])
    arrays["variant_names"] = np.array(spec["variants"])
    arrays["group_names"] = np.array(group_names(spec) if spec["holdout"] == "variant" else spec["voices"])
    arrays["noise_color_names"] = np.array(spec["noise_colors"])
    require(bool(np.isfinite(arrays["X"]).all()), "kws features contain NaN/inf: report this as a bug with the spec")
    lay = frame_layout(spec)
    cpu = sum(m["cpu_s"] for m in metas)
    extra = {
        "generator_version": GENERATOR_VERSION,
        "versions": {**package_versions(["hwflow", "numpy", "scipy"]), "espeak-ng": espeak_version(exe)},
        "espeak_ng": exe,
        "class_names": names,
        "counts_per_class": {c: int(np.sum(arrays["y"] == i)) for i, c in enumerate(names)},
        "n_groups": len(arrays["group_names"]),
        "holdout": spec["holdout"],
        "features": {
            "shape": list(arrays["X"].shape[1:]),
            "layout": "(n, n_frames, n_mels)",
            "value": "ln(mel power + 1e-6)",
            "window": "periodic Hann",
            "win_samples": lay["win"],
            "hop_samples": lay["hop"],
            "n_fft": lay["n_fft"],
            "mel_scale": "HTK, triangles of peak 1 (numpy, hwflow.data.audio)",
            "fmin_hz": spec["fmin_hz"],
            "fmax_hz": spec["fmax_hz"],
            "clip_samples": lay["n_samples"],
            "min": float(arrays["X"].min()),
            "max": float(arrays["X"].max()),
            "mean": float(arrays["X"].mean()),
            "std": float(arrays["X"].std()),
        },
        "augmentation": {
            "placement": "uniform in the clip window (random crop if longer)",
            "gain_db": spec["gain_db"],
            "reverb": {
                "prob": spec["reverb_prob"],
                "rt60_s": spec["rt60_s"],
                "drr_db": list(DRR_DB),
                "ir": "unit direct path + exponentially decaying Gaussian noise",
            },
            "noise": {
                "colors": spec["noise_colors"],
                "snr_db": spec["snr_db"],
                "snr_reference": "RMS of the trimmed word",
            },
            "silence_level": (
                f"noise at the level it would have under a word (word RMS = {TYPICAL_RMS_PER_PEAK} x peak gain)"
            ),
            "mic_floor_dbfs": MIC_FLOOR_DBFS,
            "quantization": "clipped to [-1, 1), rounded to 16 bit",
        },
        "generation": {
            **run,
            "clips": n_total,
            "scheduler": settings.scheduler or ("jobqueue" if settings.jobqueue else "LocalCluster"),
            "n_workers": settings.n_workers or os.cpu_count(),
            "clips_per_s": round(n_total * run["generated"] / len(tasks) / run["wall_s"], 1)
            if run["generated"] and run["wall_s"] > 0
            else None,
            "cpu_s_per_clip": round(cpu / n_total, 5),
            "per_worker": cache.worker_rates(metas, "clips"),
        },
    }
    folder = save(KIND, spec, arrays, extra, root=root)
    manifest = load_cached(KIND, spec, root)[1]
    if figure:
        _figures(arrays, folder)
        for c, name in enumerate(names):  # one clip per class to listen to (regenerated from its seed)
            save_wav(spec, c * spec["clips_per_class"], folder / "examples" / f"{c:02d}_{name}.wav")
    return arrays, manifest, folder


def _figures(arrays: dict, folder: Path) -> None:
    """Write examples.png into the dataset folder and reports/data/kws_examples.png."""
    png = plot_examples(arrays, folder / "examples.png")
    if png is not None:
        rep = project_root() / "reports" / "data" / "kws_examples.png"
        rep.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(rep) as tmp:
            tmp.write_bytes(Path(png).read_bytes())


def plot_examples(arrays: dict, path: Path, per_class: int = 3) -> Path | None:
    """Return ``path`` after drawing ``per_class`` log-mel spectrograms of each class into it (None without
    matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the figure is a convenience; the dataset does not depend on it
        return None
    names = [str(c) for c in arrays["class_names"]]
    X, y = arrays["X"], arrays["y"]
    vmin, vmax = np.percentile(X, [0.5, 99.9])
    fig, axes = plt.subplots(
        per_class,
        len(names),
        figsize=(1.45 * len(names) + 1.2, 1.75 * per_class + 0.7),
        squeeze=False,
        layout="constrained",
    )
    for c, name in enumerate(names):
        idx = np.flatnonzero(y == c)[:per_class]
        for r in range(per_class):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r < len(idx):
                i = idx[r]
                im = ax.imshow(X[i].T, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="magma")
                grp = str(arrays["group_names"][arrays["groups"][i]]) if "group_names" in arrays else ""
                word = str(arrays["word"][i]) if names[c] == UNKNOWN else ""
                ax.set_xlabel(f"{grp}\n{float(arrays['snr_db'][i]):.0f} dB SNR {word}", fontsize=6)
            if r == 0:
                ax.set_title(name, fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, pad=0.01, label="ln(mel power)")
    fig.suptitle("espeak-ng keyword clips: log-mel (x: frames, y: mel bins)", fontsize=10)
    return save_figure(fig, path, dpi=90)
