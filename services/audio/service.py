"""audio: a 2-D CNN over CQCC windows of the clip's 16 kHz PCM; the clip's probability is the
mean over windows."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from dfmesh.preprocess import audio as cqcc
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
    """audio's settings (env DFMESH_*)."""

    service_name: str = "audio"
    max_windows: int = Field(cqcc.MAX_WINDOWS, ge=1, description="CQCC windows per clip")
    max_batch_size: int = Field(8, ge=1, description="windows per session run")


class AudioServer(ModelServer):
    """Per-window probabilities; audio_prob_fake is their mean."""

    branch = "audio"
    wants = frozenset({AUDIO})
    input_names = ("cqcc",)
    output_names = ("logit",)
    preprocessing_contract = cqcc.PREPROCESSING

    def preprocess(self, inputs: BranchInputs) -> Prepared:
        pcm = require_pcm(inputs, cqcc.SAMPLE_RATE)
        windows = cqcc.audio_input(pcm, self.settings.max_windows)
        padded = max(pcm.size, cqcc.WINDOW_SAMPLES)
        starts = cqcc.window_starts(padded, cqcc.WINDOW_SAMPLES, self.settings.max_windows)
        items = [Item(f"window:{i}", i, start / cqcc.SAMPLE_RATE)
                 for i, start in enumerate(starts)]
        return Prepared({"cqcc": windows}, items)

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> BranchOutput:
        probs = sigmoid(per_row(outputs["logit"], len(prepared.items), "logit"))
        prob = float(probs.mean())
        return self.scored(prepared, {"audio_prob_fake": prob}, prob, probs)
