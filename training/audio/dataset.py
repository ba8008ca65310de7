"""The audio branch's training set: CQCC windows of bona fide speech and of its resyntheses.

Per 4 s window of real speech (at most `windows_per_file` per recording): `copies` bona fide
versions and `copies` spoofs, each through an independently drawn channel augmentation from
the same distribution; the spoofs cycle through the resynthesis paths. Features are made by
`dfmesh.preprocess.audio` exactly as the service makes them (one window -> one CQCC matrix).
Cached per recording as runs/cache/audio/<name>.npz (x float32 [n, 1, C, T], y int64 [n]
with 1 = spoof, method and channel per row, `labelled` bool per row); splits are assembled
when loading, so a clip's split can follow the face index when that lands.

A labelled recording (ASVspoof, real/fake folders: SpeechSource.label set) gives `copies`
augmented versions of each of its windows, all with the recording's label and no
resynthesis: its rows are marked `labelled` so the trainer reports them apart.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dfmesh.preprocess.audio import N_FEATURES, N_FRAMES, SAMPLE_RATE, audio_windows, cqcc
from training.audio.corpus import SpeechSource, labelled_speech_sources, speech_sources
from training.audio.spoof import RESYNTHESIS, augment_channel
from training.loaders.media import decode_pcm
from training.runtime import RUNS_DIR

log = logging.getLogger(__name__)
MIN_RMS = 1e-3
"""Windows quieter than this (about -60 dBFS) are silence, not speech."""


def default_cache_dir() -> Path:
    return RUNS_DIR / "cache" / "audio"


def _source_seed(name: str, seed: int) -> int:
    return int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:8], 16)


def build_source(src: SpeechSource, seed: int, windows_per_file: int = 3, copies: int = 2,
                 max_seconds: float = 40.0) -> dict[str, np.ndarray]:
    """CQCC rows for the windows of one recording: bona fide and resynthesized, both augmented
    (the spoofs cycle through the resynthesis paths); for a labelled recording, augmented
    copies of its windows with its own label."""
    rng = np.random.default_rng(_source_seed(src.name, seed))
    labelled = src.label is not None
    own_method = ("bonafide" if not src.label else src.method or "spoof") if labelled else ""
    methods = list(RESYNTHESIS)
    xs, ys, meta = [], [], []
    step = int(rng.integers(len(methods)))
    pcm = decode_pcm(src.path, SAMPLE_RATE, max_seconds=max_seconds)
    windows = audio_windows(pcm, max_windows=windows_per_file) if pcm.size >= SAMPLE_RATE // 2 \
        else []
    for window in windows:
        if np.sqrt(np.mean(window ** 2)) < MIN_RMS:
            continue
        for _ in range(copies):
            if labelled:
                augmented, channel = augment_channel(window, rng)
                xs.append(cqcc(augmented)[None])
                ys.append(int(src.label))
                meta.append((own_method, channel))
                continue
            bona, channel = augment_channel(window, rng)
            xs.append(cqcc(bona)[None])
            ys.append(0)
            meta.append(("bonafide", channel))
            method = methods[step % len(methods)]
            step += 1
            fake, channel = augment_channel(RESYNTHESIS[method](window, rng), rng)
            xs.append(cqcc(fake)[None])
            ys.append(1)
            meta.append((method, channel))
    x = np.stack(xs).astype(np.float32) if xs else np.zeros((0, 1, N_FEATURES, N_FRAMES),
                                                              np.float32)
    return {"x": x, "y": np.asarray(ys, np.int64),
            "method": np.array([m[0] for m in meta], dtype=str),
            "channel": np.array([m[1] for m in meta], dtype=str),
            "labelled": np.full(len(ys), labelled)}


def _cache_name(name: str) -> str:
    return name.replace("/", "__") + ".npz"


def build_audio_cache(data_dir: Path, cache_dir: Path | None = None, seed: int = 0,
                      build: bool = True, labelled: Sequence[str] = (),
                      **kwargs) -> list[SpeechSource]:
    """Build the per-recording caches that are missing (unless build=False); returns the
    sources: the bona fide corpus, then the recordings of every `labelled` spec."""
    cache_dir = cache_dir or default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    sources = speech_sources(data_dir, seed)
    for spec in labelled:
        sources += labelled_speech_sources(spec, seed)
    for src in sources if build else []:
        path = cache_dir / _cache_name(src.name)
        if not path.is_file():
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **build_source(src, seed, **kwargs))
            tmp.replace(path)  # readers never see a half-written cache
            log.info("audio cache: %s", src.name)
    return sources


def load_split(sources: list[SpeechSource], split: str,
               cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Rows of every cached recording in `split`, with source, speaker and `labelled` per row
    (empty arrays where the split has no rows)."""
    cache_dir = cache_dir or default_cache_dir()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("x", "y", "method", "channel",
                                                          "source", "speaker", "labelled")}
    for src in (s for s in sources if s.split == split):
        path = cache_dir / _cache_name(src.name)
        if not path.is_file():
            log.warning("audio cache lacks %s; left out", src.name)
            continue
        with np.load(path) as data:
            n = len(data["y"])
            for key in ("x", "y", "method", "channel"):
                parts[key].append(data[key])
            # caches from before labelled data are all pseudo rows
            labelled = data["labelled"] if "labelled" in data.files else np.zeros(n, bool)
        parts["labelled"].append(labelled)
        parts["source"].append(np.full(n, src.name))
        parts["speaker"].append(np.full(n, src.speaker))
    if not parts["y"]:
        return {"x": np.zeros((0, 1, N_FEATURES, N_FRAMES), np.float32),
                "y": np.zeros(0, np.int64), "labelled": np.zeros(0, bool),
                **{k: np.zeros(0, str) for k in ("method", "channel", "source", "speaker")}}
    return {k: np.concatenate(v) for k, v in parts.items()}
