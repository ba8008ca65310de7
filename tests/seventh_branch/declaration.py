"""The seventh branch's registry entry: noise, face crops scored by their noise residual."""

from __future__ import annotations

from dfmesh.branches import Branch, MediaKind, Packet

BRANCH = Branch(
    "noise", 50059, "face crops scored by their noise residual (a test's branch)",
    (Packet.CLIP_INFO, Packet.FRAME), ("noise_prob_mean", "noise_prob_max", "noise_prob_p90"),
    False, frozenset({MediaKind.VIDEO, MediaKind.IMAGE}),
    ("noise residual looks synthetic", "noise residual looks camera-made"),
    deadline_seconds=30.0)
