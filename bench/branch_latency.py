"""Per-branch latency on this machine: each branch served by a real gRPC server on loopback
with its shipped model, fed a realistic request built from ../shared/data, timed per request.

    .venv/bin/python -m bench.branch_latency [--repeats 5] [--threads 1] [--models DIR] [--json]

Requests: 16 sampled frames with one 256x256 face crop each (tiny_gate, visual, mri), visual's
16 embeddings (temporal), 10 s of speech (audio), a 2.5 s dense window with its audio (sync).
Reports the median of the server's timings_ms (collect, preprocess, inference, total) and the
client's wall time per request. Branches whose model is not in models/ are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from deepfake.v1 import branch_pb2
from devkit.branch_requests import (
    analyze,
    audio_requests,
    dense_requests,
    frame_requests,
    header,
)
from devkit.known_models import SHIPPED_MODELS
from devkit.media import (
    decode_pcm,
    dense_mouths,
    face_crops,
    shared_data_dir,
    speech_file,
    talking_clip,
)
from dfmesh.runtime.server import running
from services.branch_servers import branch_servers

SERVERS = branch_servers()


def build_requests(branch: str, embeddings: list[branch_pb2.FrameEmbedding]
                   ) -> list[branch_pb2.BranchRequest]:
    data = shared_data_dir()
    if branch in ("tiny_gate", "visual", "mri"):
        return [header(), *frame_requests([[c] for c in face_crops(data, 16)])]
    if branch == "audio":
        return [header(), *audio_requests(decode_pcm(speech_file(data), 10.0))]
    if branch == "sync":
        clip = talking_clip(data)
        crops, stamps = dense_mouths(clip, 2.5)
        return [header(), *dense_requests(crops, stamps), *audio_requests(decode_pcm(clip, 2.5))]
    return [header(), *(branch_pb2.BranchRequest(embedding=e) for e in embeddings)]


async def measure(branch: str, args: argparse.Namespace,
                  embeddings: list[branch_pb2.FrameEmbedding]) -> dict:
    server_cls, settings_cls = SERVERS[branch]
    settings = settings_cls(model_repo=args.models, metrics_port=0,
                            intra_op_threads=args.threads)
    requests = build_requests(branch, embeddings)
    timings: dict[str, list[float]] = {}
    async with running(server_cls(settings), settings) as server:
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = await analyze(server.port, requests, timeout=120)
            timings.setdefault("client_wall", []).append(1000 * (time.perf_counter() - start))
            for stage, ms in result.timings_ms.items():
                timings.setdefault(stage, []).append(ms)
    if branch == "visual":
        embeddings[:] = list(result.embeddings)
    return {"branch": branch, "model": f"{result.model.name} {result.model.version}",
            "provider": result.model.provider, "status": branch_pb2.BranchStatus.Name(
                result.status), "items": len(result.item_scores),
            "median_ms": {k: round(statistics.median(v), 1) for k, v in timings.items()}}


async def main_async(args: argparse.Namespace) -> list[dict]:
    rows, embeddings = [], []
    # visual before temporal: temporal is fed visual's embeddings.
    for branch in ("tiny_gate", "visual", "mri", "audio", "sync", "temporal"):
        if not any((args.models / branch).glob("*/manifest.json")):
            rows.append({"branch": branch, "skipped": "no model in models/"})
            continue
        if branch == "temporal" and not embeddings:
            rows.append({"branch": branch, "skipped": "needs visual's embeddings"})
            continue
        rows.append(await measure(branch, args, embeddings))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--models", type=Path, default=SHIPPED_MODELS, help="model repository")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'branch':<10} {'items':>5} {'preproc':>8} {'infer':>8} {'total':>8} {'client':>8}"
          "  model (provider)")
    for row in rows:
        if "skipped" in row:
            print(f"{row['branch']:<10} skipped: {row['skipped']}")
            continue
        m = row["median_ms"]
        print(f"{row['branch']:<10} {row['items']:>5} {m.get('preprocess', 0):>8} "
              f"{m.get('inference', 0):>8} {m['total']:>8} {m['client_wall']:>8}  "
              f"{row['model']} ({row['provider']})")


if __name__ == "__main__":
    main()
