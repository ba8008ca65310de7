"""What one analysis was asked for, resolved against fusion's settings (pure): the method,
the fusion mode, whether the gate may end it early, the options ingest gets, and the
options a cached result must have been made with to answer it."""

from __future__ import annotations

from dataclasses import dataclass

from deepfake.v1 import media_pb2
from services.fusion.outcome import AnalysisOptions, Method
from services.fusion.settings import FusionSettings

DEFAULT_NUM_FRAMES = 16
"""Ingest's default sample count, for progress when the request does not say."""


@dataclass(frozen=True)
class RunOptions:
    """A request's options with the server's defaults filled in."""

    method: str                      # a Method
    mode: str                        # a FusionMode
    early_exit: bool                 # the gate may end the analysis (fusion method only)
    ingest: media_pb2.IngestOptions

    @property
    def expected_frames(self) -> int:
        """The sampled frames a clip is expected to yield (progress arithmetic)."""
        return self.ingest.num_frames or DEFAULT_NUM_FRAMES


def resolve_options(settings: FusionSettings, options: AnalysisOptions) -> RunOptions:
    """The request's choices, else the settings'. Ingest is always asked for full frames
    where no face is found (DFMESH_FULL_FRAMES), for the frame branches' fallback."""
    method = options.method or Method.FUSION
    early_exit = settings.early_exit if options.early_exit is None else options.early_exit
    ingest = media_pb2.IngestOptions()
    if options.ingest is not None:
        ingest.CopyFrom(options.ingest)
    ingest.include_full_frames = settings.full_frames
    ingest.full_frames_only_without_faces = True
    return RunOptions(method=method, mode=options.fusion_mode or settings.fusion_mode,
                      early_exit=early_exit and method == Method.FUSION, ingest=ingest)


def cache_options(run: RunOptions, *, threshold: float,
                  early_exit_threshold: float) -> dict[str, object]:
    """Everything besides the clip, the bundle and the models that a cached result depends
    on: one made with other options cannot answer this analysis."""
    return {"method": run.method, "mode": run.mode, "early_exit": run.early_exit,
            "early_exit_threshold": early_exit_threshold, "threshold": threshold,
            "num_frames": run.ingest.num_frames,
            "dense_window_seconds": round(run.ingest.dense_window_seconds, 6),
            "full_frames": run.ingest.include_full_frames}
