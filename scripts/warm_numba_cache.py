"""Compile librosa's numba-cached kernels once, in one process, right after install.

librosa caches its numba kernels next to its own files. When several processes compile the
same kernel for the first time at once (the audio and sync services and a test process, say)
they can leave a cache entry that later segfaults on load. Compiling everything the project
uses here, before anything runs in parallel, avoids that race.
"""

from __future__ import annotations

import numpy as np


def main() -> None:
    import librosa

    sr = 16000
    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(sr * 2)).astype(np.float32)
    librosa.yin(y, fmin=60, fmax=400, sr=sr)
    librosa.lpc(y, order=12)
    librosa.feature.zero_crossing_rate(y)
    spec = librosa.stft(y, n_fft=512)
    librosa.phase_vocoder(spec, rate=1.1)
    librosa.griffinlim(np.abs(spec), n_iter=2)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=40)
    librosa.feature.inverse.mel_to_audio(mel[:, :8], sr=sr, n_iter=2)
    librosa.feature.delta(mel)
    librosa.resample(y, orig_sr=sr, target_sr=8000)
    librosa.cqt(y, sr=sr)

    from dfmesh.preprocess.audio import audio_input

    audio_input(y)
    print("numba caches warm")


if __name__ == "__main__":
    main()
