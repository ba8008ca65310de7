"""The branch registry: one declaration per detection branch, and everything derived from it.

A branch is a gRPC BranchService (services/<name>/) that scores one kind of evidence. Its
declaration says where it listens, what ingest sends it, what it reports, whether its
features go into the calibrated logistic-regression heads, what it needs from another
branch (temporal scores visual's per-frame embeddings), on which kinds of file it runs, how
the explanation words its verdict, and its default deadline. Settings, call plans, start
order, explanation phrases, feature columns, test and benchmark meshes read this module;
no other place lists the branches.

Pure data (no grpc, no protobuf): preprocessing and training import it too.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from enum import StrEnum


class Packet(StrEnum):
    """The MediaPacket payloads ingest streams, in stream order."""

    CLIP_INFO = "clip_info"
    FRAME = "frame"
    DENSE_FRAME = "dense_frame"
    AUDIO = "audio"
    SUMMARY = "summary"


STREAM_ORDER: tuple[Packet, ...] = tuple(Packet)


class Size(StrEnum):
    """How big a branch's pods are in Kubernetes: CPU and memory requests and limits, start-up
    allowance and replica range (scripts/gen_branch_files.py holds the numbers)."""

    SMALL = "small"      # a tiny model: 250m CPU, 512 Mi, 1-6 replicas
    MEDIUM = "medium"    # 500m CPU, 1 Gi, 1-8 replicas
    LARGE = "large"      # one CPU, 2 Gi, two warm replicas, up to 12


class MediaKind(StrEnum):
    """media_pb2.MediaKind by name."""

    VIDEO = "VIDEO"
    IMAGE = "IMAGE"
    AUDIO = "AUDIO"


@dataclass(frozen=True)
class Branch:
    """One detection branch. `packets` are the MediaPacket kinds fusion tees to it (empty
    for a branch fed by another's output: `depends_on`); `features` the named statistics it
    reports; `lr_features` whether those are fusion feature columns (the branch takes part
    in the calibrated heads; adaptive fusion takes every branch); `kinds` the media kinds
    it runs on; `phrases` how the explanation words its finding (fake, real); `depends_on`
    the branch whose per-frame embeddings it is fed instead of packets; `gpu` whether the
    GPU overlay gives it a GPU image and node; `size` its pods' resources in Kubernetes."""

    name: str
    port: int
    summary: str
    packets: tuple[Packet, ...]
    features: tuple[str, ...]
    lr_features: bool
    kinds: frozenset[MediaKind]
    phrases: tuple[str, str]
    deadline_seconds: float = 60.0
    depends_on: str = ""
    gpu: bool = False
    size: Size = Size.MEDIUM

    @property
    def last_packet(self) -> Packet | None:
        """The last packet kind in stream order this branch uses: its feed closes after it."""
        return max(self.packets, key=STREAM_ORDER.index) if self.packets else None


_FRAMES = (Packet.CLIP_INFO, Packet.FRAME)
_PICTURES = frozenset({MediaKind.VIDEO, MediaKind.IMAGE})

EXTRA_BRANCHES_ENV = "DFMESH_EXTRA_BRANCHES"


def _extra_branches() -> tuple[Branch, ...]:
    """Branches declared outside this file: each module named (comma-separated) in
    DFMESH_EXTRA_BRANCHES holds one `BRANCH`; every process of a mesh must get the same
    value. How a test adds a branch without editing this file; a real branch is a line
    below."""
    modules = [m.strip() for m in os.environ.get(EXTRA_BRANCHES_ENV, "").split(",") if m.strip()]
    return tuple(importlib.import_module(m).BRANCH for m in modules)


BRANCHES: tuple[Branch, ...] = (
    Branch("tiny_gate", 50053, "a tiny patch model: the cheap gate that may end an analysis",
           _FRAMES, ("tiny_prob_mean", "tiny_prob_max", "tiny_prob_p90", "tiny_num_files",
                     "tiny_num_patches"), True, _PICTURES,
           ("patch-level artifacts", "patches look camera-original"), deadline_seconds=30.0,
           size=Size.MEDIUM),  # 554 MiB peak RSS in the benchmark: over SMALL's 512 Mi
    Branch("visual", 50054, "two stacked CNNs per face crop, and per-frame embeddings for temporal",
           _FRAMES, ("visual_prob_mean", "visual_prob_max", "visual_prob_p90",
                     "visual_num_faces"), True, _PICTURES,
           ("visual artifacts detected", "no visual artifacts found"), gpu=True,
           size=Size.LARGE),
    Branch("audio", 50055, "AASIST-L over 16 kHz speech windows, with spectral statistics",
           (Packet.CLIP_INFO, Packet.AUDIO), ("audio_prob_fake",), True,
           frozenset({MediaKind.VIDEO, MediaKind.AUDIO}),
           ("audio sounds synthetic", "audio sounds natural"), size=Size.LARGE),
    Branch("temporal", 50056, "motion statistics of visual's per-frame embeddings",
           (), ("temporal_prob_fake",), True, frozenset({MediaKind.VIDEO}),
           ("inconsistencies across frames", "consistent motion across frames"),
           deadline_seconds=30.0, depends_on="visual", size=Size.SMALL),
    Branch("sync", 50057, "lip motion against the audio in the dense window",
           (Packet.CLIP_INFO, Packet.DENSE_FRAME, Packet.AUDIO), ("sync_prob",), True,
           frozenset({MediaKind.VIDEO}),
           ("audio out of step with lip motion", "audio consistent with lip motion")),
    Branch("mri", 50058, "a face-reconstruction (MRI) map's classifier per face crop",
           _FRAMES, ("mri_prob_mean", "mri_prob_max", "mri_prob_p90"), False, _PICTURES,
           ("synthesis traces in the MRI map", "clean MRI map"), gpu=True,
           size=Size.LARGE),
    *_extra_branches(),
)

BY_NAME: dict[str, Branch] = {b.name: b for b in BRANCHES}
BRANCH_NAMES: tuple[str, ...] = tuple(BY_NAME)
LR_BRANCHES: tuple[str, ...] = tuple(b.name for b in BRANCHES if b.lr_features)
"""The branches of the calibrated heads, in feature-column order."""

FEATURE_COLS: tuple[str, ...] = tuple(f for b in BRANCHES if b.lr_features for f in b.features)
"""The fusion features, in the calibrated bundle's feature_cols order."""

BRANCH_FEATURES: dict[str, tuple[str, ...]] = {b.name: b.features for b in BRANCHES}

# The services around the branches, with their embedded-default ports.
INGEST_PORT, FUSION_PORT, GATEWAY_PORT = 50052, 50051, 8080


def branch(name: str) -> Branch:
    """The declaration of `name`; KeyError naming the known branches otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown branch {name!r}; known: {', '.join(BRANCH_NAMES)}") from None


def start_order() -> tuple[str, ...]:
    """Branch names with every branch after the one it depends on (registry order otherwise)."""
    placed: list[str] = []
    pending = list(BRANCHES)
    while pending:
        ready = [b for b in pending if not b.depends_on or b.depends_on in placed]
        if not ready:
            raise ValueError("branch dependencies form a cycle: "
                             + ", ".join(b.name for b in pending))
        placed.append(ready[0].name)
        pending.remove(ready[0])
    return tuple(placed)


def with_dependencies(names: tuple[str, ...]) -> tuple[str, ...]:
    """`names` and what they depend on, in start order."""
    wanted = set(names)
    for name in names:
        dep = branch(name).depends_on
        while dep:
            wanted.add(dep)
            dep = branch(dep).depends_on
    return tuple(n for n in start_order() if n in wanted)


def runs_on(kind: str) -> tuple[str, ...]:
    """The branches that run on a file of media kind `kind` (a MediaKind name)."""
    return tuple(b.name for b in BRANCHES if kind in b.kinds)
