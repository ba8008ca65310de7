"""Every labelled file through ingest's own pipeline, in process: the face crops, landmarks
and 16 kHz audio the services would receive, cached once per file for the trainers.

    python -m training pack [--workers 2]

The crops are ingest's (services.ingest.pipeline.ingest_upload with its default settings and
MTCNN), so a model sees at training exactly what it sees in service. One file ->
runs/cache/real/<PACK_VERSION>/<sha1(path)[:16]>.npz:

    crops      uint8 [K, 256, 256, 3]  every face of every sampled frame (largest first)
    landmarks  float32 [K, 5, 2]        MTCNN's five points in crop pixels
    frame      int32 [K]                sampled frame index
    rank       int32 [K]                0 = the largest face of its frame
    frame_ts   float32 [K]              its timestamp in seconds
    mouth      uint8 [M, 96, 96, 3]     the dense lip-sync window's mouth crops (zeros where
                                        no face was found), for the sync branch
    dense_ts   float32 [M], dense_found bool [M]
    pcm        float32 [S]              the audio track at 16 kHz (empty when none)

and index.jsonl, one line per file (its RealRow, the counts, or ingest's refusal).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dfmesh.preprocess.geometry import FACE_CROP_SIZE, MOUTH_CROP_SIZE, square_box_with_margin
from training.real.sources import RealRow, all_rows
from training.runtime import RUNS_DIR

log = logging.getLogger(__name__)
PACK_VERSION = os.environ.get("DFMESH_PACK_VERSION", "v2")
NUM_FRAMES = 16
"""Ingest's default sample count: the frames a served clip is judged on."""
CHUNK = 1 << 20


def pack_dir() -> Path:
    return RUNS_DIR / "cache" / "real" / PACK_VERSION


def entry_name(row: RealRow) -> str:
    return path_entry(row.path)


def path_entry(path: str | Path) -> str:
    """The packed entry's file name for a media file's path."""
    return hashlib.sha1(str(path).encode()).hexdigest()[:16] + ".npz"


def crop_landmarks(detection: Any) -> np.ndarray:
    """MTCNN's landmarks mapped from frame pixels into the 256 face crop."""
    box = square_box_with_margin(detection.box)
    scale = FACE_CROP_SIZE / max(box.width, 1e-6)
    points = (np.asarray(detection.landmarks, np.float32) - [box.x1, box.y1]) * scale
    return points.astype(np.float32)


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            yield block


async def ingest_file(path: Path, detector: Any, settings: Any) -> dict[str, np.ndarray]:
    """Run one file through ingest's pipeline; return its crops, landmarks and PCM."""
    from services.ingest.pipeline import ingest_upload
    from services.ingest.results import AudioResult, DenseResult, SampledResult, UploadRequest

    crops, marks, frames, ranks, stamps, pcm = [], [], [], [], [], []
    mouths, dense_ts, found = [], [], []
    request = UploadRequest(filename=path.name, declared_size=path.stat().st_size,
                            num_frames=NUM_FRAMES)
    async for result in ingest_upload(request, _chunks(path), settings, detector):
        if isinstance(result, SampledResult):
            for rank, face in enumerate(result.faces):
                crops.append(face.crop)
                marks.append(crop_landmarks(face.detection))
                frames.append(result.index)
                ranks.append(rank)
                stamps.append(result.timestamp_seconds)
        elif isinstance(result, DenseResult):
            found.append(result.mouth is not None)
            mouths.append(result.mouth if result.mouth is not None
                          else np.zeros((MOUTH_CROP_SIZE, MOUTH_CROP_SIZE, 3), np.uint8))
            dense_ts.append(result.timestamp_seconds)
        elif isinstance(result, AudioResult):
            pcm.append(np.frombuffer(result.pcm_f32le, dtype="<f4"))
    size = FACE_CROP_SIZE
    return {
        "crops": np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
        "landmarks": np.stack(marks) if marks else np.zeros((0, 5, 2), np.float32),
        "frame": np.asarray(frames, np.int32), "rank": np.asarray(ranks, np.int32),
        "frame_ts": np.asarray(stamps, np.float32),
        "mouth": (np.stack(mouths) if mouths
                  else np.zeros((0, MOUTH_CROP_SIZE, MOUTH_CROP_SIZE, 3), np.uint8)),
        "dense_ts": np.asarray(dense_ts, np.float32), "dense_found": np.asarray(found, bool),
        "pcm": np.concatenate(pcm).astype(np.float32) if pcm else np.zeros(0, np.float32),
    }


_WORKER: dict[str, Any] = {}


def _pack_one(row: RealRow, out_dir: Path) -> dict[str, Any]:
    from services.ingest.faces import FaceDetector
    from services.ingest.settings import IngestSettings

    if "detector" not in _WORKER:
        _WORKER["settings"] = IngestSettings()
        _WORKER["detector"] = FaceDetector()
    record: dict[str, Any] = {k: str(v) if isinstance(v, Path) else v
                              for k, v in asdict(row).items()}
    record["entry"] = entry_name(row)
    try:
        arrays = asyncio.run(ingest_file(row.path, _WORKER["detector"], _WORKER["settings"]))
    except Exception as exc:  # noqa: BLE001 - a refusal is recorded, never fatal to the pack
        record["error"] = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
        return record
    np.savez(out_dir / record["entry"], **arrays)
    record["faces"] = int(arrays["crops"].shape[0])
    record["frames_with_face"] = int(len(set(arrays["frame"].tolist())))
    record["audio_seconds"] = round(arrays["pcm"].size / 16000, 3)
    return record


def read_index(out_dir: Path | None = None) -> list[dict[str, Any]]:
    """The pack's index (one dict per file), empty when not built."""
    path = (out_dir or pack_dir()) / "index.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_entry(record: dict[str, Any], out_dir: Path | None = None) -> dict[str, np.ndarray]:
    with np.load((out_dir or pack_dir()) / record["entry"]) as z:
        return {k: z[k] for k in z.files}


def build_pack(rows: list[RealRow], out_dir: Path, workers: int = 2) -> list[dict[str, Any]]:
    """Pack every row not yet in the index (resumable: the index is appended per file).
    Workers are spawned, not forked: a fork of a process that already runs threads (gRPC,
    torch, a test session's servers) can inherit a held lock and hang."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = {r["path"] for r in read_index(out_dir)}
    todo = [r for r in rows if str(r.path) not in done]
    index = out_dir / "index.jsonl"
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool, \
            open(index, "a") as out:
        futures = [pool.submit(_pack_one, row, out_dir) for row in todo]
        for fut in tqdm(futures, desc="pack", unit="file"):
            out.write(json.dumps(fut.result()) + "\n")
            out.flush()
    return read_index(out_dir)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="first N rows (smoke runs)")


def run(args: argparse.Namespace) -> None:
    rows = all_rows()
    if args.limit:
        rows = rows[: args.limit]
    records = build_pack(rows, pack_dir(), args.workers)
    errors = [r for r in records if "error" in r]
    print(f"{len(records)} files packed in {pack_dir()} ({len(errors)} refused by ingest)")
