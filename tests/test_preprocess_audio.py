"""CQCC and sync-window preprocessing against properties that can be checked by hand."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import scipy.fft

from dfmesh.preprocess import audio, mouth
from dfmesh.runtime.errors import InvalidInput

SR = audio.SAMPLE_RATE


def tone(freq: float, seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("freq", [250.0, 1000.0, 3000.0])
def test_pure_tone_peaks_in_its_cqt_bin(freq: float) -> None:
    log_power = audio.cqt_log_power(tone(freq, 2.0))
    peak_bin = int(log_power[:, 20:-20].mean(axis=1).argmax())
    expected = int(np.argmin(np.abs(np.log2(audio.cqt_frequencies() / freq))))
    assert abs(peak_bin - expected) <= 1


@pytest.mark.parametrize("seconds", [2.0, 4.0, 6.5])
def test_frame_count_follows_duration(seconds: float) -> None:
    n = int(seconds * SR)
    assert audio.cqt_log_power(tone(440.0, seconds)).shape == (audio.N_BINS,
                                                             1 + n // audio.HOP_LENGTH)


def test_linear_resampling_keeps_a_flat_spectrum_flat_and_the_endpoints() -> None:
    ramp = np.log2(audio.cqt_frequencies())[:, None] * np.ones((1, 3))
    uniform = audio.linear_resample(ramp)
    assert uniform.shape == (audio.N_LINEAR_BINS, 3)
    assert uniform[0, 0] == pytest.approx(ramp[0, 0])
    assert uniform[-1, 0] == pytest.approx(ramp[-1, 0])
    # log2(f) sampled on a linear f grid is concave: its increments shrink with frequency.
    steps = np.diff(uniform[:, 0])
    assert steps[0] > steps[-1] > 0
    flat = audio.linear_resample(np.full((audio.N_BINS, 4), -3.0))
    np.testing.assert_allclose(flat, -3.0)


def test_deltas_of_a_constant_are_zero() -> None:
    stacked = audio.with_deltas(np.full((audio.N_COEFFS, 50), 7.5))
    np.testing.assert_allclose(stacked[:audio.N_COEFFS], 7.5)
    np.testing.assert_allclose(stacked[audio.N_COEFFS:], 0.0, atol=1e-9)


def test_deltas_of_a_ramp_are_its_slope() -> None:
    ramp = np.tile(np.arange(60, dtype=np.float64) * 0.5, (audio.N_COEFFS, 1))
    stacked = audio.with_deltas(ramp)
    np.testing.assert_allclose(stacked[audio.N_COEFFS:2 * audio.N_COEFFS, 10:-10], 0.5)
    np.testing.assert_allclose(stacked[2 * audio.N_COEFFS:, 10:-10], 0.0, atol=1e-9)


def test_cepstrum_of_a_spectrally_flat_signal_is_concentrated_in_c0() -> None:
    # A constant log spectrum has all its DCT energy in c0.
    uniform = np.full((audio.N_LINEAR_BINS, 1), -2.0)
    cep = scipy.fft.dct(uniform, type=2, axis=0, norm="ortho")
    assert abs(cep[0, 0]) > 1.0
    np.testing.assert_allclose(cep[1:], 0.0, atol=1e-9)


def test_audio_input_windows_and_shape() -> None:
    short = audio.audio_input(tone(300.0, 1.3))
    assert short.shape == (1, 1, audio.N_FEATURES, audio.N_FRAMES)
    assert short.dtype == np.float32
    long = audio.audio_input(np.random.default_rng(0).normal(size=11 * SR).astype(np.float32))
    assert long.shape == (3, 1, audio.N_FEATURES, audio.N_FRAMES)
    assert np.all(np.isfinite(long))
    # CMVN: every row of every window has zero mean and unit variance.
    np.testing.assert_allclose(long.mean(axis=-1), 0.0, atol=1e-4)
    np.testing.assert_allclose(long.std(axis=-1), 1.0, atol=1e-3)


def test_window_starts_are_capped_and_cover_the_clip() -> None:
    assert audio.window_starts(1000) == [0]
    starts = audio.window_starts(100 * SR)
    assert len(starts) == audio.MAX_WINDOWS
    assert starts[0] == 0 and starts[-1] == 100 * SR - audio.WINDOW_SAMPLES


def test_short_audio_is_tiled_not_zero_padded() -> None:
    clip = tone(500.0, 0.5)
    (window,) = audio.audio_windows(clip)
    np.testing.assert_array_equal(window[clip.size:2 * clip.size], clip)


def test_bad_pcm_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        audio.audio_input(np.zeros((2, 100), np.float32))
    with pytest.raises(InvalidInput):
        audio.audio_input(np.array([], np.float32))
    with pytest.raises(InvalidInput):
        audio.audio_input(np.array([0.0, np.nan], np.float32))


def crops(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(count)]


@pytest.mark.parametrize("fps", [25.0, 30.0, 22.131])
def test_sync_input_shapes_at_any_frame_rate(fps: float) -> None:
    seconds = 2.5
    n_frames = int(seconds * fps)
    timestamps = np.arange(n_frames) / fps
    pcm = np.random.default_rng(1).normal(scale=0.1, size=int(seconds * SR)).astype(np.float32)
    video, sound = mouth.sync_inputs(crops(n_frames), timestamps, pcm, SR)
    n = video.shape[0]
    assert n >= 20
    assert video.shape == (n, mouth.WINDOW_FRAMES, mouth.MOUTH_SIZE, mouth.MOUTH_SIZE)
    assert sound.shape == (n, mouth.N_MELS, mouth.MEL_FRAMES)
    assert video.dtype == sound.dtype == np.float32
    np.testing.assert_allclose(video.mean(axis=(1, 2, 3)), 0.0, atol=1e-5)


def test_sync_windows_pair_frames_with_the_audio_at_the_same_time() -> None:
    # Frame k is uniformly grey level 4k, so a window's frames say which instant they show.
    fps, n_frames = 25.0, 50
    timestamps = np.arange(n_frames) / fps
    frames = [np.full((96, 96, 3), 4 * k, np.uint8) for k in range(n_frames)]
    pcm = np.zeros(int(n_frames / fps * SR), np.float32)
    video, _ = mouth.sync_inputs(frames, timestamps, pcm + 1e-3, SR)
    centres = mouth.window_centres(timestamps, pcm.size / SR)
    assert len(centres) == video.shape[0]
    # WINDOW_FRAMES consecutive frames, centred on the window's centre time.
    raw = mouth.mouth_gray(frames)
    n = mouth.WINDOW_FRAMES
    first = int(round(centres[0] * fps)) - (n - 1) // 2
    expected = raw[first:first + n] - raw[first:first + n].mean()
    np.testing.assert_allclose(video[0], expected, atol=1e-5)
    # An energy burst at a window's centre time shows in the middle of that mel window.
    at = len(centres) // 2
    t_burst = centres[at]
    burst = pcm.copy()
    burst[int((t_burst - 0.01) * SR):int((t_burst + 0.01) * SR)] = \
        np.random.default_rng(2).normal(size=int(0.02 * SR))
    _, sound = mouth.sync_inputs(frames, timestamps, burst, SR)
    energy = sound[at].mean(axis=0)
    assert abs(int(energy.argmax()) - mouth.MEL_FRAMES // 2) <= 2


def test_sync_offset_moves_the_audio_window() -> None:
    fps, n_frames = 25.0, 75
    timestamps = np.arange(n_frames) / fps
    pcm = np.random.default_rng(3).normal(size=3 * SR).astype(np.float32)
    _, base = mouth.sync_inputs(crops(n_frames), timestamps, pcm, SR)
    _, shifted = mouth.sync_inputs(crops(n_frames), timestamps, pcm, SR,
                                   audio_offset_seconds=0.4)
    centres = mouth.window_centres(timestamps, 3.0)
    shifted_centres = mouth.window_centres(timestamps, 3.0 - 0.4)
    # 0.4 s is 10 nominal frames = 5 window strides.
    j = int(np.argmin(np.abs(centres - (shifted_centres[0] + 0.4))))
    assert abs(centres[j] - (shifted_centres[0] + 0.4)) < 1e-6
    np.testing.assert_allclose(shifted[0], base[j], atol=1e-5)


def test_sync_drops_windows_without_a_face_and_handles_tiny_input() -> None:
    fps, n_frames = 25.0, 40
    timestamps = np.arange(n_frames) / fps
    pcm = np.zeros(int(1.6 * SR), np.float32) + 1e-3
    all_ok, _ = mouth.sync_inputs(crops(n_frames), timestamps, pcm, SR)
    valid = np.ones(n_frames, bool)
    valid[20:30] = False
    some, _ = mouth.sync_inputs(crops(n_frames), timestamps, pcm, SR, valid=valid)
    assert 0 < some.shape[0] < all_ok.shape[0]
    none, sound = mouth.sync_inputs(crops(1), [0.0], pcm, SR)
    assert none.shape[0] == sound.shape[0] == 0
    with pytest.raises(InvalidInput):
        mouth.sync_inputs(crops(3), [0.0, 0.04], pcm, SR)


def test_cqcc_on_real_speech(shared_data) -> None:
    path = shared_data / "speech" / "whisper__jfk.flac"
    pcm = np.frombuffer(subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(SR), "-f", "f32le", "-"],
        check=True, capture_output=True).stdout, dtype=np.float32)
    features = audio.audio_input(pcm)
    assert features.shape == (3, 1, audio.N_FEATURES, audio.N_FRAMES)
    assert np.all(np.isfinite(features))
