"""Audio helpers for the keyword dataset: WAV parsing, resampling, augmentation, log-mel features.

Pure numpy/scipy (no librosa): the mel filterbank is the HTK one (mel = 2595 log10(1 + f/700),
triangles of peak 1, no area normalisation), the same as TensorFlow's
``tf.signal.linear_to_mel_weight_matrix``, so features can be recomputed on a device without a
Python audio stack. Frames are not centred (no padding): ``n_frames = 1 + (n - win) // hop``.
"""

from __future__ import annotations

import struct
from fractions import Fraction

import numpy as np

from ..util import HwflowError

LOG_FLOOR = 1e-6  # added to mel power before the log: features lie in [log(1e-6), ~log(win^2/4)]
NOISE_ALPHA = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1/f^alpha


def parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Return (float32 mono samples in [-1, 1), sample rate) from 16-bit PCM WAV bytes.

    espeak-ng writing to a pipe cannot seek back, so its RIFF/data sizes are placeholders
    (0x7ffff000); the data chunk is therefore taken to run to the end of the bytes.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise HwflowError("espeak-ng did not return WAV data: check that `espeak-ng --stdout -v en-us yes` works")
    pos, rate, channels, bits = 12, None, 1, 16
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[body : body + 16])
            if fmt != 1 or bits != 16:
                raise HwflowError(f"espeak-ng WAV format {fmt}/{bits} bit not supported: expected 16-bit PCM")
        elif cid == b"data":
            if rate is None:
                raise HwflowError("espeak-ng WAV has no fmt chunk before its data")
            raw = data[body:]
            raw = raw[: len(raw) - len(raw) % (2 * channels)]
            x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
            if channels > 1:
                x = x.reshape(-1, channels).mean(axis=1)
            return x, int(rate)
        pos = body + size + (size & 1)
    raise HwflowError("espeak-ng WAV has no data chunk")


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Return ``x`` resampled from rate_in to rate_out by polyphase filtering (scipy.signal.resample_poly)."""
    if rate_in == rate_out:
        return x.astype(np.float32)
    from scipy.signal import resample_poly

    r = Fraction(rate_out, rate_in)
    return resample_poly(x, r.numerator, r.denominator).astype(np.float32)


def trim(x: np.ndarray, rate: int, rel_threshold: float = 0.01, margin_ms: float = 10.0) -> np.ndarray:
    """Return ``x`` without leading/trailing silence (|x| below rel_threshold * peak), keeping a small margin."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0:
        return x[:0]
    on = np.flatnonzero(np.abs(x) > rel_threshold * peak)
    m = int(rate * margin_ms / 1000)
    return x[max(0, on[0] - m) : min(len(x), on[-1] + 1 + m)]


def colored_noise(rng: np.random.Generator, n: int, color: str) -> np.ndarray:
    """Return ``n`` samples of unit-RMS white, pink (1/f) or brown (1/f^2) noise."""
    alpha = NOISE_ALPHA[color]
    w = rng.standard_normal(n)
    if alpha:
        spec = np.fft.rfft(w)
        f = np.fft.rfftfreq(n)
        scale = np.zeros_like(f)
        scale[1:] = f[1:] ** (-alpha / 2)  # amplitude ~ f^(-alpha/2); no DC so brown noise does not drift
        w = np.fft.irfft(spec * scale, n)
    rms = float(np.sqrt(np.mean(w * w)))
    return (w / rms if rms > 0 else w).astype(np.float32)


def reverb_ir(rng: np.random.Generator, rate: int, rt60_s: float, drr_db: float) -> np.ndarray:
    """Return a synthetic room impulse response: unit direct path + exponentially decaying noise tail.

    The tail decays by 60 dB in ``rt60_s`` and carries ``drr_db`` dB less energy than the direct path.
    """
    n = max(2, int(rate * rt60_s))
    t = np.arange(1, n) / rate
    tail = rng.standard_normal(n - 1) * np.exp(-np.log(1000.0) * t / rt60_s)  # 60 dB amplitude decay = x1000
    tail *= 10 ** (-drr_db / 20) / np.sqrt(np.sum(tail * tail))
    return np.concatenate([[1.0], tail]).astype(np.float32)


def hz_to_mel(f):
    """Return the HTK mel value(s) of frequency ``f`` in Hz."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Return the frequency in Hz of HTK mel value(s) ``m``."""
    return 700.0 * (10 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Return the (n_mels, n_fft // 2 + 1) HTK triangular mel filterbank (peak 1 per filter)."""
    if not 0 <= fmin < fmax <= rate / 2:
        raise HwflowError(
            f"mel range fmin_hz={fmin} .. fmax_hz={fmax} invalid for sample_rate {rate}: "
            f"need 0 <= fmin_hz < fmax_hz <= {rate / 2}"
        )
    f = np.fft.rfftfreq(n_fft, 1.0 / rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0.0, np.minimum((f - lo) / (mid - lo), (hi - f) / (hi - mid)))
    empty = np.flatnonzero(fb.sum(axis=1) == 0)
    if empty.size:
        raise HwflowError(
            f"{empty.size} of {n_mels} mel filters cover no FFT bin (n_fft={n_fft}): "
            "lower n_mels, raise fmin_hz or lengthen win_ms"
        )
    return fb.astype(np.float32)


def frame_params(rate: int, win_ms: float, hop_ms: float) -> tuple[int, int, int]:
    """Return (window length, hop, FFT size) in samples; the FFT size is the next power of two."""
    win, hop = int(round(rate * win_ms / 1000)), int(round(rate * hop_ms / 1000))
    if win < 2 or hop < 1:
        raise HwflowError(f"win_ms={win_ms} / hop_ms={hop_ms} give {win}/{hop} samples at {rate} Hz: lengthen them")
    return win, hop, 1 << (win - 1).bit_length()


def n_frames_for(n_samples: int, win: int, hop: int) -> int:
    """Return how many whole frames fit in ``n_samples`` (no padding)."""
    return 0 if n_samples < win else 1 + (n_samples - win) // hop


def log_mel(x: np.ndarray, rate: int, win: int, hop: int, n_fft: int, fb: np.ndarray) -> np.ndarray:
    """Return float32 log-mel features (..., n_frames, n_mels): ln(mel power + 1e-6), periodic Hann window."""
    x = np.asarray(x, dtype=np.float32)
    n = n_frames_for(x.shape[-1], win, hop)
    idx = np.arange(n)[:, None] * hop + np.arange(win)[None, :]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)).astype(np.float32)
    frames = x[..., idx] * window
    power = (np.abs(np.fft.rfft(frames, n=n_fft, axis=-1)) ** 2).astype(np.float32)
    # numpy's own summation loop, not BLAS: OpenBLAS splits a matrix product by its thread count and its operands'
    # shape, which changed the last bit of the features with the Dask worker's thread setting and the shard's size
    # (seen on an AVX-512 CPU); einsum without optimize sums every mel bin in the same order wherever it runs
    mel = np.einsum("...f,mf->...m", power, fb, optimize=False)
    return np.log(mel + LOG_FLOOR).astype(np.float32)
