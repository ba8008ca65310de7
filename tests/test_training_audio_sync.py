"""Smoke runs of the audio and sync trainers on a few real samples: data -> one optimizer step
-> ONNX export -> ONNX Runtime agrees with torch and the manifest verifies."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dfmesh.preprocess import audio as audio_pre  # noqa: E402
from dfmesh.preprocess import mouth as mouth_pre  # noqa: E402
from dfmesh.runtime.model_repo import load_verified  # noqa: E402
from training.audio.corpus import SpeechSource, speaker_of  # noqa: E402
from training.audio.dataset import build_source  # noqa: E402
from training.audio.loop import fit_binary  # noqa: E402
from training.audio.model import CQCCNet  # noqa: E402
from training.audio.spoof import RESYNTHESIS, augment_channel, codec_round_trip  # noqa: E402
from training.export import ExportSpec, TensorSpec, export_branch, onnx_outputs  # noqa: E402
from training.loaders.dense import DenseClip, make_detector, track_clip  # noqa: E402
from training.loaders.talking import TalkingClip  # noqa: E402
from training.sync.data import make_pairs  # noqa: E402
from training.sync.model import SyncNet  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def test_speakers_come_from_file_names() -> None:
    assert speaker_of("speech/librispeech/resemblyzer__test-other__1688-142285-0003.flac") == \
        "libri:1688"
    assert speaker_of("speech/rtvc__p240_00000.mp3") == "vctk:p240"
    assert speaker_of("speech/rtvc__1320_00000.mp3") == "libri:1320"
    assert speaker_of("speech/alsa/alsa-utils__Front_Left.wav") == "alsa"


def test_resynthesis_keeps_length_and_level_and_changes_the_waveform() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(audio_pre.WINDOW_SAMPLES) / audio_pre.SAMPLE_RATE
    voice = (0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 3 * t))
             + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    for name, fn in RESYNTHESIS.items():
        out = fn(voice, rng)
        assert out.shape == voice.shape and out.dtype == np.float32, name
        assert np.sqrt(np.mean(out ** 2)) == pytest.approx(np.sqrt(np.mean(voice ** 2)), rel=1e-3)
        assert np.abs(out - voice).mean() > 1e-3, name
    decoded = codec_round_trip(voice, "mp3", 32)
    assert decoded.shape == voice.shape
    augmented, channel = augment_channel(voice, np.random.default_rng(3))
    assert augmented.shape == voice.shape and channel


def test_resynthesis_draws_only_from_its_generator() -> None:
    """Each resynthesis is a function of (voice, seed): numpy's global generator, which other
    code moves, does not change what a recipe makes."""
    t = np.arange(audio_pre.WINDOW_SAMPLES) / audio_pre.SAMPLE_RATE
    noise = np.random.default_rng(0).standard_normal(t.size)
    voice = (0.3 * np.sin(2 * np.pi * 120 * t) * (1 + np.sin(2 * np.pi * 4 * t))
             + 0.01 * noise).astype(np.float32)
    for name, fn in RESYNTHESIS.items():
        np.random.seed(1)
        first = fn(voice, np.random.default_rng(7))
        np.random.seed(2)
        np.random.random(10)
        again = fn(voice, np.random.default_rng(7))
        np.testing.assert_array_equal(first, again, err_msg=name)


def export_and_compare(module, example, spec: ExportSpec, tmp_path) -> np.ndarray:
    version_dir = export_branch(module, example, spec, tmp_path)
    manifest = load_verified(tmp_path, spec.branch)
    assert manifest.directory == version_dir
    feeds = {s.name: t.numpy() for s, t in zip(spec.inputs, example, strict=True)}
    (logits,) = onnx_outputs(manifest.artifact_path, feeds)
    with torch.no_grad():
        np.testing.assert_allclose(logits, module.eval()(*example).numpy(), atol=1e-4)
    return logits


def test_audio_smoke_train_and_export(shared_data, tmp_path) -> None:
    name = "speech/alsa/alsa-utils__Front_Left.wav"
    src = SpeechSource(shared_data / name, name, "alsa", "train")
    rows = build_source(src, seed=0, windows_per_file=1, copies=1)
    assert rows["x"].shape == (2, 1, audio_pre.N_FEATURES, audio_pre.N_FRAMES)
    assert rows["y"].tolist() == [0, 1]
    x, y = torch.from_numpy(rows["x"]), torch.from_numpy(rows["y"])
    model = CQCCNet()
    before = [p.detach().clone() for p in model.parameters()]
    fit_binary(model, lambda epoch: [((x,), y)], (rows["x"],), rows["y"], epochs=1)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    spec = ExportSpec(name="audio-smoke", branch="audio", version="0.0.1",
                      inputs=[TensorSpec("cqcc", ["N", 1, audio_pre.N_FEATURES,
                                                  audio_pre.N_FRAMES])],
                      outputs=[TensorSpec("logit", ["N", 1])], preprocessing={},
                      training_data="smoke", metrics={}, fp16_weights=False)
    logits = export_and_compare(model, (x,), spec, tmp_path)
    assert logits.shape == (2, 1)


def test_sync_smoke_train_and_export(shared_data, tmp_path) -> None:
    clip = TalkingClip("talking/lipnet__GRID_bbaf2n.mpg", "grid_speakers", "train", True, False,
                       True, 25.0)
    track = track_clip(make_detector(), shared_data, clip, max_seconds=1.6)
    assert track["found"].mean() > 0.9
    assert track["mouth"].shape[1:] == (96, 96, 3)
    dense = DenseClip(clip, track["timestamps"], track["found"], track["boxes"],
                      track["landmarks"], track["mouth"], track["pcm"], float(track["fps"]))
    pairs = make_pairs([dense, dense], np.random.default_rng(0), per_clip=4)
    assert set(pairs.label.tolist()) == {0, 1}
    assert pairs.mouth.shape[1:] == (mouth_pre.WINDOW_FRAMES, mouth_pre.MOUTH_SIZE,
                                     mouth_pre.MOUTH_SIZE)
    assert pairs.audio.shape[1:] == (mouth_pre.N_MELS, mouth_pre.MEL_FRAMES)
    inputs = (torch.from_numpy(pairs.mouth), torch.from_numpy(pairs.audio))
    model = SyncNet()
    fit_binary(model, lambda epoch: [(inputs, torch.from_numpy(pairs.label))],
               (pairs.mouth, pairs.audio), pairs.label, epochs=1)
    size = mouth_pre.MOUTH_SIZE
    spec = ExportSpec(name="sync-smoke", branch="sync", version="0.0.1",
                      inputs=[TensorSpec("mouth", ["N", mouth_pre.WINDOW_FRAMES, size, size]),
                              TensorSpec("audio", ["N", 40, mouth_pre.MEL_FRAMES])],
                      outputs=[TensorSpec("logit", ["N", 1])], preprocessing={},
                      training_data="smoke", metrics={}, fp16_weights=False)
    logits = export_and_compare(model, tuple(t[:3] for t in inputs), spec, tmp_path)
    assert logits.shape == (3, 1)
