"""Spectral statistics of speech: shape, determinism, robustness to odd clips, and that they
tell a clean recording from the same speech through a vocoder-like smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from dfmesh.errors import InvalidInput
from dfmesh.preprocess import speech_stats
from tests.branch_support import decode_pcm, speech_file


@pytest.fixture(scope="module")
def speech(shared_data) -> np.ndarray:
    return decode_pcm(speech_file(shared_data), seconds=6.0)


def test_one_finite_vector_per_clip(speech) -> None:
    features = speech_stats.speech_statistics(speech)
    assert features.shape == (len(speech_stats.FEATURE_NAMES),)
    assert np.all(np.isfinite(features))
    assert np.array_equal(features, speech_stats.speech_statistics(speech.copy()))
    # loudness does not matter: the clip is peak-normalized first
    assert np.allclose(features, speech_stats.speech_statistics(speech * 0.25), atol=1e-4)


def test_odd_clips_still_give_finite_numbers() -> None:
    rng = np.random.default_rng(0)
    for pcm in (np.zeros(16_000, np.float32), rng.normal(0, 0.1, 400).astype(np.float32),
                np.sin(np.arange(48_000) / 16_000 * 2 * np.pi * 220).astype(np.float32)):
        assert np.all(np.isfinite(speech_stats.speech_statistics(pcm)))
    with pytest.raises(InvalidInput):
        speech_stats.speech_statistics(np.zeros(0, np.float32))


def test_high_band_and_quiet_floor_are_seen(speech) -> None:
    """A low-passed copy (vocoders often lose the top band) moves the spectrum features."""
    spectrum = np.fft.rfft(speech)
    spectrum[int(spectrum.size * 0.5):] = 0
    low_passed = np.fft.irfft(spectrum, n=speech.size).astype(np.float32)
    names = speech_stats.FEATURE_NAMES
    a = dict(zip(names, speech_stats.speech_statistics(speech), strict=True))
    b = dict(zip(names, speech_stats.speech_statistics(low_passed), strict=True))
    top = f"ltas{speech_stats.N_LTAS - 1}"
    assert b[top] < a[top] - 10, (a[top], b[top])


def test_head_round_trips_through_the_manifest() -> None:
    rng = np.random.default_rng(1)
    n = len(speech_stats.FEATURE_NAMES)
    head = speech_stats.StatisticsHead(rng.normal(size=n), np.ones(n), rng.normal(size=n),
                                       0.1, {"bias": 0.0, "aasist": 1.0, "statistics": 0.5})
    again = speech_stats.StatisticsHead.from_manifest(head.to_manifest())
    x = rng.normal(size=n)
    assert again.prob_fake(0.3, x) == pytest.approx(head.prob_fake(0.3, x))
    z = float(np.log(0.3 / 0.7) + 0.5 * ((x - head.mean) @ head.coef + 0.1))
    assert head.prob_fake(0.3, x) == pytest.approx(1 / (1 + np.exp(-z)))
    with pytest.raises(ValueError):
        speech_stats.StatisticsHead.from_manifest(head.to_manifest() | {"mean": [0.0]})


def _named(features: np.ndarray) -> dict[str, float]:
    return dict(zip(speech_stats.FEATURE_NAMES, features.tolist(), strict=True))


def test_phase_deviation_is_flat_for_noise_and_lower_on_a_steady_partial() -> None:
    """White noise gives one value in every band; a steady 1 kHz tone (bin 32 of 512) a lower
    one in its band, where its own bin advances its phase exactly as the bin expects."""
    t = np.arange(48_000) / 16_000
    tone = _named(speech_stats.speech_statistics(
        np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)))
    noise = _named(speech_stats.speech_statistics(
        np.random.default_rng(1).normal(0, 0.3, 48_000).astype(np.float32)))
    bands = [noise[f"phase_deviation{b}"] for b in range(speech_stats.N_PHASE_BANDS)]
    assert max(bands) - min(bands) < 0.05 and 0.8 < bands[0] < np.pi / 2
    assert tone["phase_deviation0"] < bands[0] - 0.05


def test_voice_quality_sees_harmonics_and_level_steps() -> None:
    """A 150 Hz pulse train (clean harmonics) has a higher cepstral peak than noise, and a
    tone whose level jumps every 50 ms has more shimmer than a steady one."""
    t = np.arange(48_000) / 16_000
    rng = np.random.default_rng(2)
    pulses = (np.sin(2 * np.pi * 150 * t) > 0.999).astype(np.float32) + rng.normal(0, 1e-3, t.size)
    noise = rng.normal(0, 0.3, t.size)
    steady = np.sin(2 * np.pi * 200 * t)
    stepped = steady * np.repeat(rng.uniform(0.3, 1.0, t.size // 800 + 1), 800)[: t.size]
    stats = {name: _named(speech_stats.speech_statistics(x.astype(np.float32)))
             for name, x in (("pulses", pulses), ("noise", noise), ("steady", steady),
                             ("stepped", stepped))}
    assert stats["pulses"]["cpp_mean"] > stats["noise"]["cpp_mean"] + 1.0
    assert stats["stepped"]["shimmer_p90"] > stats["steady"]["shimmer_p90"] + 1.0
