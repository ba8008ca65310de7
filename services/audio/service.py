"""audio: AASIST on raw 16 kHz waveform windows of the clip's PCM; the clip's probability is
the mean over windows."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from dfmesh.preprocess import waveform
from dfmesh.runtime.branch_inputs import AUDIO, BranchInputs
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
    max_batch_size: int = Field(8, ge=1, description="windows per session run")


class AudioServer(ModelServer):
    """Per-window probabilities; audio_prob_fake is their mean."""

    settings: AudioSettings

    branch = "audio"
    wants = frozenset({AUDIO})
    input_names = ("waveform",)
    output_names = ("logit",)
    preprocessing_contract = waveform.PREPROCESSING

    def preprocess(self, inputs: BranchInputs) -> Prepared:
        pcm = require_pcm(inputs, waveform.SAMPLE_RATE)
        windows = waveform.waveform_windows(pcm, waveform.MAX_WINDOWS)
        starts = waveform.window_starts(max(pcm.size, waveform.WINDOW_SAMPLES),
                                        waveform.MAX_WINDOWS)
        items = [Item(f"window:{i}", i, start / waveform.SAMPLE_RATE)
                 for i, start in enumerate(starts)]
        return Prepared({"waveform": windows}, items)

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> BranchOutput:
        probs = sigmoid(per_row(outputs["logit"], len(prepared.items), "logit"))
        prob = float(probs.mean())
        return self.scored(prepared, {"audio_prob_fake": prob}, prob, probs)
