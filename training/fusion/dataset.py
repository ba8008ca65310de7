"""Fusion's clip-level dataset: real talking-clip segments and fake versions of them, each
scored by every shipped model through its service's own code (training.fusion.branches).

A segment is up to SEGMENT_SECONDS of a real clip (at most MAX_SEGMENTS per clip) with a real,
non-silent audio track. Like ingest, it contributes 16 evenly spaced frames (face crops 256
cut from dense MTCNN tracks; centre crops where no face was found), a 2.5 s dense window of
mouth crops around its middle, and its mono 16 kHz PCM. Versions (label 1 = fake):

    real, real_b   the segment as is (real_b: other frame offsets, other channel draw)
    visual         every crop manipulated by one image pseudo-fake (training.fakes: sbi,
                   face_swap, gan_upsample, double_jpeg)
    temporal       a sequence manipulation (flicker, identity_jitter, stable_blend) or
                   frame-order jitter (repeated and dropped frames)
    audio          the speech resynthesized (training.audio.spoof), video untouched
    lipsync        the audio shifted by 0.4-1.0 s or swapped with another clip's (speech
                   clips only: the LivePortrait driving clips' audio is mostly not speech)
    visual_audio   both the visual and the audio fakes

Both audio sides go through the same channel augmentations. Rows are written to
runs/fusion/rows.jsonl (one JSON object per version with split, label, the 12 FEATURE_COLS,
mri statistics and every branch's prob_fake; missing branches are null).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dfmesh.preprocess.geometry import FACE_CROP_SIZE, Box, centre_crop_box, crop_square
from dfmesh.preprocess.stats import BRANCH_FEATURES, FEATURE_COLS
from training.audio.spoof import RESYNTHESIS, augment_channel
from training.data.faces import crop_with_landmarks
from training.fakes.registry import MANIPULATIONS, DonorPool, Face
from training.fakes.temporal import TEMPORAL_MANIPULATIONS
from training.fusion.branches import BranchScore, ServedBranches, frame_inputs
from training.loaders.dense import DenseClip
from training.loaders.media import SAMPLE_RATE, read_frames

log = logging.getLogger(__name__)
SEGMENT_SECONDS = 3.0
MAX_SEGMENTS = 3
NUM_FRAMES = 16
DENSE_SECONDS = 2.5
IMAGE_MANIPULATIONS = ("sbi", "face_swap", "gan_upsample", "double_jpeg")
VERSIONS = ("real", "real_b", "visual", "temporal", "audio", "lipsync", "visual_audio")
MRI_COLS = ("mri_prob_mean", "mri_prob_max", "mri_prob_p90")


@dataclass
class Segment:
    """One scored unit: a stretch of a real clip."""

    track: DenseClip
    start: float
    end: float

    @property
    def name(self) -> str:
        return f"{self.track.clip.name}@{self.start:.1f}"


def segments_of(track: DenseClip) -> list[Segment]:
    """Non-overlapping SEGMENT_SECONDS stretches (a shorter clip is one segment)."""
    duration = min(len(track.timestamps) / track.fps, track.pcm.size / SAMPLE_RATE)
    count = max(1, min(MAX_SEGMENTS, int(duration // SEGMENT_SECONDS)))
    length = min(SEGMENT_SECONDS, duration)
    return [Segment(track, i * length, (i + 1) * length) for i in range(count)]


def usable_for_fusion(track: DenseClip) -> bool:
    c = track.clip
    return c.has_audio and not c.silent and track.pcm.size > SAMPLE_RATE and track.found.any()


def sampled_indices(seg: Segment, offset: float = 0.0) -> np.ndarray:
    """NUM_FRAMES frame indices evenly spaced over the segment (offset in sample steps)."""
    ts = seg.track.timestamps
    inside = np.flatnonzero((ts >= seg.start) & (ts < seg.end))
    pos = (np.arange(NUM_FRAMES) + 0.5 + offset) / NUM_FRAMES * (len(inside) - 1)
    return inside[np.clip(np.round(pos).astype(int), 0, len(inside) - 1)]


def faces_at(seg: Segment, frames: list[np.ndarray], indices: np.ndarray) -> list[Face]:
    """Face crops (with crop-space landmarks) at `indices`; centre crops (no landmarks)
    where no face was found."""
    track = seg.track
    faces = []
    for i in indices:
        frame = frames[i]
        if track.found[i]:
            crop, landmarks = crop_with_landmarks(frame, Box(*track.boxes[i].tolist()),
                                                  track.landmarks[i])
        else:
            h, w = frame.shape[:2]
            crop = crop_square(frame, centre_crop_box(w, h), FACE_CROP_SIZE)
            landmarks = np.zeros((5, 2), np.float32)
        faces.append(Face(crop, landmarks, track.clip.group))
    return faces


def image_fake(faces: list[Face], rng: np.random.Generator, donors: DonorPool) -> list[np.ndarray]:
    """One image manipulation applied to every face crop (frames without a face untouched)."""
    name = IMAGE_MANIPULATIONS[int(rng.integers(len(IMAGE_MANIPULATIONS)))]
    return [MANIPULATIONS[name](f, rng, donors).crop if f.landmarks.any() else f.crop
            for f in faces]


def temporal_fake(faces: list[Face], rng: np.random.Generator,
                  donors: DonorPool) -> list[np.ndarray]:
    """A registered sequence manipulation, or frame-order jitter."""
    names = sorted(TEMPORAL_MANIPULATIONS) + ["frame_jitter"]
    name = names[int(rng.integers(len(names)))]
    if name == "frame_jitter":
        order = np.sort(rng.integers(0, len(faces), len(faces)))
        return [faces[i].crop for i in order]
    return TEMPORAL_MANIPULATIONS[name](faces, rng, donors)


def segment_pcm(track: DenseClip, start: float, end: float) -> np.ndarray:
    a, b = int(round(start * SAMPLE_RATE)), int(round(end * SAMPLE_RATE))
    return track.pcm[max(a, 0):max(b, 0)]


def shifted_pcm(seg: Segment, rng: np.random.Generator) -> np.ndarray:
    """The clip's audio 0.4-1.0 s earlier or later than the segment (whichever fits)."""
    total = seg.track.pcm.size / SAMPLE_RATE
    shift = float(rng.uniform(0.4, 1.0))
    for s in (shift, -shift) if rng.random() < 0.5 else (-shift, shift):
        if seg.start + s >= 0 and seg.end + s <= total:
            return segment_pcm(seg.track, seg.start + s, seg.end + s)
    return np.zeros(0, np.float32)


def dense_window(seg: Segment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mouth crops, segment-relative timestamps and face flags of the middle DENSE_SECONDS."""
    centre = (seg.start + seg.end) / 2.0
    half = min(DENSE_SECONDS, seg.end - seg.start) / 2.0
    ts = seg.track.timestamps
    idx = np.flatnonzero((ts >= centre - half) & (ts < centre + half))
    return seg.track.mouth[idx], ts[idx] - seg.start, seg.track.found[idx]


def row(seg: Segment, version: str, label: int, scores: dict[str, BranchScore | None]) -> dict:
    """One table row: identifiers, label, features (None where missing) and branch probs."""
    features: dict[str, float | None] = dict.fromkeys((*FEATURE_COLS, *MRI_COLS))
    probs: dict[str, float | None] = {}
    for branch, score in scores.items():
        probs[branch] = None if score is None else float(score.prob_fake)
        if score is not None:
            features.update(score.features)
    return {"segment": seg.name, "clip": seg.track.clip.name, "group": seg.track.clip.group,
            "split": seg.track.clip.split, "version": version, "label": label,
            "features": features, "prob_fake": probs}


VISUAL_BRANCHES = ("tiny_gate", "visual", "temporal", "mri")
AUDIO_BRANCHES = ("audio", "sync")
PLAN = {"real": ("real", "real", 0), "real_b": ("real_b", "real_b", 0),
        "visual": ("visual", "real", 1), "temporal": ("temporal", "real", 1),
        "audio": ("real", "audio", 1), "lipsync": ("real", "lipsync", 1),
        "visual_audio": ("visual", "audio", 1)}
"""version -> (visual-side input, audio-side input, label)."""


def segment_rng(seed: int, name: str, side: str) -> np.random.Generator:
    """A generator per segment and side, so re-scoring one side rebuilds the same fakes."""
    digest = hashlib.sha256(f"{seed}:{side}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def score_visual_side(seg: Segment, frames: list[np.ndarray], models: ServedBranches,
                      donors: DonorPool, rng: np.random.Generator,
                      only: frozenset[str] = frozenset(VISUAL_BRANCHES)) -> dict[str, dict]:
    """tiny_gate, visual, temporal and mri scores (those in `only`) of the real and
    manipulated frame sets."""
    faces = faces_at(seg, frames, sampled_indices(seg))
    faces_b = faces_at(seg, frames, sampled_indices(seg, 0.5))
    is_face, is_face_b = [f.landmarks.any() for f in faces], [f.landmarks.any() for f in faces_b]
    crop_sets = {"real": ([f.crop for f in faces], is_face),
                 "real_b": ([f.crop for f in faces_b], is_face_b),
                 "visual": (image_fake(faces, rng, donors), is_face),
                 "temporal": (temporal_fake(faces, rng, donors), is_face)}
    side = {}
    for key, (crops, face_flags) in crop_sets.items():
        inputs = frame_inputs(crops, face_flags)
        scores: dict[str, BranchScore | None] = {}
        if "tiny_gate" in only:
            scores["tiny_gate"] = models.tiny_gate(inputs)
        if only & {"visual", "temporal"}:
            visual = models.visual(inputs)
            if "visual" in only:
                scores["visual"] = visual
            if "temporal" in only:
                scores["temporal"] = models.temporal(visual)
        if "mri" in only:
            scores["mri"] = models.mri(inputs)
        side[key] = scores
    return side


def score_audio_side(seg: Segment, models: ServedBranches, swap_pcm: np.ndarray,
                     rng: np.random.Generator) -> tuple[dict[str, dict], str]:
    """audio and sync scores of the real, resynthesized and misaligned audio."""
    raw = segment_pcm(seg.track, seg.start, seg.end)
    method = list(RESYNTHESIS)[int(rng.integers(len(RESYNTHESIS)))]
    lipsync = shifted_pcm(seg, rng) if rng.random() < 0.7 or swap_pcm.size == 0 else swap_pcm
    if lipsync.size == 0:
        lipsync = swap_pcm
    audios = {"real": augment_channel(raw, rng)[0], "real_b": augment_channel(raw, rng)[0],
              "audio": augment_channel(RESYNTHESIS[method](raw, rng), rng)[0],
              "lipsync": augment_channel(lipsync[:raw.size], rng)[0] if lipsync.size else raw}
    mouths, times, valid = dense_window(seg)
    side = {k: {"audio": models.audio(p), "sync": models.sync(mouths, times, valid, p)}
            for k, p in audios.items()}
    return side, method


def score_segment(seg: Segment, frames: list[np.ndarray], models: ServedBranches,
                  donors: DonorPool, swap_pcm: np.ndarray, seed: int,
                  previous: dict[str, dict] | None = None,
                  only: frozenset[str] = frozenset(VISUAL_BRANCHES + AUDIO_BRANCHES)
                  ) -> list[dict]:
    """All versions of one segment, scored by the branches in `only`; the other branches'
    numbers are kept from `previous` rows (same seeds, so the same fakes)."""
    visual_only = only & frozenset(VISUAL_BRANCHES)
    visual_side = (score_visual_side(seg, frames, models, donors,
                                     segment_rng(seed, seg.name, "visual"), visual_only)
                   if visual_only else None)
    audio_side, method = (score_audio_side(seg, models, swap_pcm,
                                           segment_rng(seed, seg.name, "audio"))
                          if only & frozenset(AUDIO_BRANCHES) else (None, None))
    rows = []
    for version, (v_key, a_key, label) in PLAN.items():
        if version == "lipsync" and not seg.track.clip.speech:
            continue  # shifting music or background noise against a face shows nothing
        scores: dict[str, BranchScore | None] = {}
        if visual_side is not None:
            scores.update(visual_side[v_key])
        if audio_side is not None:
            scores.update({b: v for b, v in audio_side[a_key].items() if b in only})
        r = row(seg, version, label, scores)
        old = (previous or {}).get(version)
        if old is not None:
            merge_branches(r, old, tuple(b for b in (*VISUAL_BRANCHES, *AUDIO_BRANCHES)
                                         if b not in only))
        r["details"] = ({"resynthesis": method if a_key == "audio" else None}
                        if method is not None else (old or {}).get("details", {}))
        rows.append(r)
    return rows


def merge_branches(new: dict, old: dict, branches: tuple[str, ...]) -> dict:
    """`new` with the features and probabilities of `branches` taken from `old`."""
    for branch in branches:
        new["prob_fake"][branch] = old["prob_fake"].get(branch)
        for col in BRANCH_FEATURES[branch]:
            new["features"][col] = old["features"].get(col)
    return new


def build_rows(tracks: list[DenseClip], data_dir: Path, models: ServedBranches,
               donors_by_split: dict[str, DonorPool], out_path: Path, seed: int = 0,
               only: frozenset[str] = frozenset(VISUAL_BRANCHES + AUDIO_BRANCHES)) -> Path:
    """Score every segment of every usable track; write rows.jsonl (one line per version).
    Only the branches in `only` are (re)scored; the others are kept from the existing
    rows.jsonl (left empty where a segment has no previous row)."""
    previous: dict[str, dict[str, dict]] = {}
    if only != frozenset(VISUAL_BRANCHES + AUDIO_BRANCHES) and out_path.is_file():
        for r in load_rows(out_path):
            previous.setdefault(r["segment"], {})[r["version"]] = r
    usable = [t for t in tracks if usable_for_fusion(t)]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        for track in tqdm(usable, desc="fusion rows (clips)", unit="clip"):
            frames = (read_frames(data_dir / track.clip.name,
                                  len(track.timestamps) / track.fps + 0.01).frames
                      if only & frozenset(VISUAL_BRANCHES) else [])
            same_split = sorted((t for t in usable if t.clip.split == track.clip.split
                                 and t.clip.group != track.clip.group),
                                key=lambda t: t.clip.name)
            for seg in segments_of(track):
                pick = segment_rng(seed, seg.name, "swap")
                other = same_split[int(pick.integers(len(same_split)))] if same_split else None
                swap = (segment_pcm(other, 0.0, seg.end - seg.start) if other is not None
                        else np.zeros(0, np.float32))
                old = previous.get(seg.name)
                for r in score_segment(seg, frames, models, donors_by_split[track.clip.split],
                                       swap, seed, old, only):
                    fh.write(json.dumps(r) + "\n")
                log.info("fusion rows: %s", seg.name)
    tmp.replace(out_path)
    return out_path


def load_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
