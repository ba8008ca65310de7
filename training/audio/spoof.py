"""Pseudo-spoofs of real speech by vocoder-like resynthesis, and channel augmentations that
bona fide and spoofed audio both get (so the model learns vocoder traces, not codecs).

Resynthesis paths (each keeps the words and the speaker, and loses what a vocoder loses):
    griffin_lim_stft   magnitude STFT, phase rebuilt by Griffin-Lim
    griffin_lim_mel    80-band mel spectrogram inverted (NNLS) and Griffin-Lim, like a
                       mel-vocoder front end without a neural vocoder
    lpc_vocoder        16th-order LPC envelope driven by a pulse train at the YIN pitch
                       (voiced) or noise (unvoiced), overlap-added
    phase_vocoder      time-stretch there and back with the phase vocoder (phasiness)
Channel augmentations: identity, mp3 (libmp3lame 32-64 kbit/s), opus (16-24 kbit/s),
low-pass band-limiting (3.4-7 kHz), 8 kHz telephone resampling round trip, gain.
"""

from __future__ import annotations

from collections.abc import Callable

import librosa
import numpy as np
import scipy.signal

from training.loaders.media import decode_bytes, encode_pcm

SR = 16_000


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    return librosa.util.fix_length(np.asarray(y, np.float32), size=n)


def _match_rms(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    scale = np.sqrt(np.mean(ref ** 2) + 1e-12) / np.sqrt(np.mean(y ** 2) + 1e-12)
    return (y * scale).astype(np.float32)


def griffin_lim_stft(pcm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep |STFT|, rebuild the phase with Griffin-Lim."""
    n_fft = int(rng.choice([512, 1024]))
    hop = n_fft // 4
    magnitude = np.abs(librosa.stft(pcm, n_fft=n_fft, hop_length=hop))
    y = librosa.griffinlim(magnitude, n_iter=32, hop_length=hop, n_fft=n_fft,
                           random_state=int(rng.integers(1 << 31)))
    return _match_rms(_fit_length(y, pcm.size), pcm)


def griffin_lim_mel(pcm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """80-band mel power spectrogram -> linear magnitude (NNLS) -> Griffin-Lim."""
    n_fft, hop = 1024, 256
    mel = librosa.feature.melspectrogram(y=pcm, sr=SR, n_fft=n_fft, hop_length=hop, n_mels=80,
                                         fmax=int(rng.choice([7600, 8000])))
    stft = librosa.feature.inverse.mel_to_stft(mel, sr=SR, n_fft=n_fft, fmax=8000)
    # Griffin-Lim's random initial phase comes from `rng`, so a recipe draws the same audio
    # whatever else used numpy's global generator before it.
    y = librosa.griffinlim(stft, n_iter=32, hop_length=hop, n_fft=n_fft,
                           random_state=np.random.default_rng(int(rng.integers(2**31))))
    return _match_rms(_fit_length(y, pcm.size), pcm)


def lpc_vocoder(pcm: np.ndarray, rng: np.random.Generator, order: int = 16) -> np.ndarray:
    """Source-filter resynthesis: per 25 ms frame an LPC all-pole envelope excited by a pulse
    train at the frame's YIN pitch (voiced) or white noise (unvoiced), gain-matched to the LPC
    residual, Hann overlap-add at 50%."""
    win, hop = 400, 200
    window = np.hanning(win).astype(np.float32)
    f0 = librosa.yin(pcm, fmin=70, fmax=400, sr=SR, frame_length=1024, hop_length=hop)
    periodicity = librosa.feature.zero_crossing_rate(pcm, frame_length=win, hop_length=hop)[0]
    out = np.zeros(pcm.size + win, np.float32)
    phase = 0.0
    padded = np.concatenate([pcm, np.zeros(win, np.float32)])
    for i, start in enumerate(range(0, pcm.size, hop)):
        frame = padded[start:start + win] * window
        if not np.any(frame):
            continue
        try:
            a = librosa.lpc(frame.astype(np.float64) + 1e-9 * rng.standard_normal(win), order=order)
        except (FloatingPointError, ValueError):
            continue
        if not np.all(np.isfinite(a)):
            continue
        residual = scipy.signal.lfilter(a, [1.0], frame)
        gain = np.sqrt(np.mean(residual ** 2))
        voiced = i < len(f0) and i < len(periodicity) and periodicity[i] < 0.15
        if voiced:
            period = SR / float(f0[min(i, len(f0) - 1)])
            excitation = np.zeros(win, np.float32)
            pos = phase
            while pos < win:
                excitation[int(pos)] = 1.0
                pos += period
            phase = (pos - hop) % period
        else:
            excitation = rng.standard_normal(win).astype(np.float32)
        excitation *= gain / (np.sqrt(np.mean(excitation ** 2)) + 1e-12)
        synth = scipy.signal.lfilter([1.0], a, excitation).astype(np.float32)
        if np.all(np.isfinite(synth)):
            out[start:start + win] += synth * window
    return _match_rms(np.clip(out[:pcm.size], -50, 50), pcm)


def phase_vocoder(pcm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Phase-vocoder time stretch by r, then by 1/r, back to the original length."""
    n_fft, hop = 512, 128
    rate = float(rng.uniform(0.6, 0.85))
    stft = librosa.stft(pcm, n_fft=n_fft, hop_length=hop)
    slow = librosa.phase_vocoder(stft, rate=rate, hop_length=hop)
    back = librosa.phase_vocoder(slow, rate=1.0 / rate, hop_length=hop)
    y = librosa.istft(back, hop_length=hop, n_fft=n_fft, length=pcm.size)
    return _match_rms(y, pcm)


RESYNTHESIS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "griffin_lim_stft": griffin_lim_stft,
    "griffin_lim_mel": griffin_lim_mel,
    "lpc_vocoder": lpc_vocoder,
    "phase_vocoder": phase_vocoder,
}


def codec_round_trip(pcm: np.ndarray, codec: str, bitrate_k: int) -> np.ndarray:
    """Encode with mp3 or opus at `bitrate_k` kbit/s and decode back to 16 kHz."""
    if codec == "mp3":
        data = encode_pcm(pcm, SR, ["-c:a", "libmp3lame", "-b:a", f"{bitrate_k}k"], "mp3")
    elif codec == "opus":
        data = encode_pcm(pcm, SR, ["-c:a", "libopus", "-b:a", f"{bitrate_k}k"], "ogg")
    else:
        raise ValueError(f"unknown codec {codec}")
    return _fit_length(decode_bytes(data, SR), pcm.size)


def band_limit(pcm: np.ndarray, cutoff_hz: float) -> np.ndarray:
    """Zero-phase 8th-order Butterworth low-pass."""
    sos = scipy.signal.butter(8, cutoff_hz, btype="low", fs=SR, output="sos")
    return scipy.signal.sosfiltfilt(sos, pcm).astype(np.float32)


def telephone(pcm: np.ndarray) -> np.ndarray:
    """Resample to 8 kHz and back (loses everything above 4 kHz)."""
    narrow = librosa.resample(pcm, orig_sr=SR, target_sr=8000)
    return _fit_length(librosa.resample(narrow, orig_sr=8000, target_sr=SR), pcm.size)


def augment_channel(pcm: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One random channel condition (same distribution for both classes) and its name."""
    choice = rng.random()
    if choice < 0.35:
        out, name = pcm, "clean"
    elif choice < 0.55:
        rate = int(rng.choice([32, 48, 64]))
        out, name = codec_round_trip(pcm, "mp3", rate), f"mp3_{rate}k"
    elif choice < 0.75:
        rate = int(rng.choice([16, 24]))
        out, name = codec_round_trip(pcm, "opus", rate), f"opus_{rate}k"
    elif choice < 0.9:
        cutoff = float(rng.uniform(3400, 7000))
        out, name = band_limit(pcm, cutoff), f"lowpass_{int(cutoff)}"
    else:
        out, name = telephone(pcm), "telephone_8k"
    gain = float(10 ** (rng.uniform(-12, 3) / 20))
    return np.clip(out * gain, -1.0, 1.0).astype(np.float32), name
