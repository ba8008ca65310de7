"""audio: AASIST on raw 16 kHz waveform windows of the clip's PCM; the clip's probability is
the mean over windows, stacked with the clip's spectral statistics when the model's manifest
carries a `statistics_head` (dfmesh.preprocess.speech_stats)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from dfmesh.errors import ModelIntegrityError
from dfmesh.preprocess import speech_stats, waveform
from dfmesh.runtime.branch_inputs import AUDIO, BranchInputs
from dfmesh.runtime.model_repo import ModelManifest
from dfmesh.runtime.model_server import (
    BranchOutput,
    Item,
    ModelServer,
    ModelServerSettings,
    Prepared,
    per_row,
    require_pcm,
    sigmoid,
)


class AudioSettings(ModelServerSettings):
    """audio's settings (env DFMESH_*). The windows scored per clip are not a setting: the
    clip's score is the mean over waveform.MAX_WINDOWS windows, as the model's release was
    evaluated and the fusion heads calibrated (its manifest's max_windows_served)."""

    service_name: str = "audio"
    retired: ClassVar[dict[str, str]] = {
        name: f"audio scores {waveform.MAX_WINDOWS} windows per clip, the count its model "
              "was evaluated with" for name in ("DFMESH_MAX_WINDOWS", "DFMESH_AUDIO_MAX_WINDOWS")}
    max_batch_size: int = Field(waveform.MAX_WINDOWS, ge=1,
                                description="windows per session run (memory grows with it: "
                                            "about 700 MiB at 4, 1.2 GiB at 8)")


class AudioServer(ModelServer):
    """Per-window AASIST probabilities; audio_prob_fake is their mean, or that mean stacked
    with the spectral statistics' logit when the model has a statistics head."""

    settings: AudioSettings
    statistics_head: speech_stats.StatisticsHead | None = None

    branch = "audio"
    wants = frozenset({AUDIO})
    input_names = ("waveform",)
    output_names = ("logit",)
    preprocessing_contract = waveform.PREPROCESSING
    # With the arena, AASIST-L's session kept 1.4 GiB after a 4-window run and 2.7 GiB after
    # an 8-window one (2.1 GiB peak in the benchmark); without it, 0.2 GiB between runs and
    # a 0.7 GiB peak at 4 windows, for about 10% more time per run.
    cpu_memory_arena = False

    def load_extras(self, manifest: ModelManifest) -> None:
        head = manifest.extra.get("statistics_head")
        try:
            self.statistics_head = speech_stats.StatisticsHead.from_manifest(head) if head else None
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelIntegrityError(f"{manifest.directory}: statistics_head: {exc}") from exc

    def preprocess(self, inputs: BranchInputs) -> Prepared:
        pcm = require_pcm(inputs, waveform.SAMPLE_RATE)
        windows = waveform.waveform_windows(pcm, waveform.MAX_WINDOWS)
        starts = waveform.window_starts(max(pcm.size, waveform.WINDOW_SAMPLES),
                                        waveform.MAX_WINDOWS)
        items = [Item(f"window:{i}", i, start / waveform.SAMPLE_RATE)
                 for i, start in enumerate(starts)]
        context = ({"statistics": speech_stats.speech_statistics(pcm)}
                   if self.statistics_head else {})
        return Prepared({"waveform": windows}, items, context=context)

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> BranchOutput:
        probs = sigmoid(per_row(outputs["logit"], len(prepared.items), "logit"))
        prob = float(probs.mean())
        if self.statistics_head is not None:
            prob = self.statistics_head.prob_fake(prob, prepared.context["statistics"])
        return self.scored(prepared, {"audio_prob_fake": prob}, prob, probs)
