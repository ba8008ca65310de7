"""sync: an audio-visual sync head scores (mouth window, audio window) pairs from the dense
lip-sync window; sync_prob is the mean in-sync probability and prob_fake = 1 - sync_prob."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dfmesh.preprocess import mouth
from dfmesh.runtime.branch_inputs import AUDIO, DENSE, BranchInputs
from dfmesh.runtime.model_server import (
    BranchOutput,
    Item,
    ModelServer,
    ModelServerSettings,
    NoUsableInput,
    Prepared,
    per_row,
    require_pcm,
    sigmoid,
)

NO_MOUTH = np.zeros((mouth.MOUTH_SIZE, mouth.MOUTH_SIZE, 3), np.uint8)
"""Stands in for frames without a face; windows touching them are dropped (valid=False)."""


class SyncSettings(ModelServerSettings):
    """sync's settings (env DFMESH_*). The window pairs per clip are not a setting: they are
    part of the preprocessing contract the model's manifest is checked against
    (mouth.PREPROCESSING's max_windows)."""

    service_name: str = "sync"
    retired: ClassVar[dict[str, str]] = {
        name: f"sync scores at most {mouth.MAX_WINDOWS} window pairs, part of its "
              "preprocessing contract"
        for name in ("DFMESH_MAX_WINDOWS", "DFMESH_SYNC_MAX_WINDOWS")}


class SyncServer(ModelServer):
    """Per-window in-sync probabilities; the item scores are 1 - in-sync (fake-ness)."""

    settings: SyncSettings

    branch = "sync"
    wants = frozenset({DENSE, AUDIO})
    input_names = ("mouth", "audio")
    output_names = ("logit",)
    preprocessing_contract = mouth.PREPROCESSING

    def preprocess(self, inputs: BranchInputs) -> Prepared:
        dense = inputs.dense
        if not any(d.face_found for d in dense):
            raise NoUsableInput("no mouth crops in the dense window (no face found)")
        pcm = require_pcm(inputs, mouth.SAMPLE_RATE)
        mouths, audio = mouth.sync_inputs(
            [d.mouth if d.mouth is not None else NO_MOUTH for d in dense],
            [d.timestamp_seconds for d in dense], pcm, inputs.sample_rate,
            valid=[d.face_found for d in dense], max_windows=mouth.MAX_WINDOWS)
        if len(mouths) == 0:
            raise NoUsableInput("no full window with a face and audio in the dense window")
        centres = mouth.window_centres(np.array([d.timestamp_seconds for d in dense]),
                                       pcm.size / inputs.sample_rate,
                                       max_windows=mouth.MAX_WINDOWS)
        items = [Item(f"window:{i}", i, 0.0) for i in range(len(mouths))]
        if len(centres) == len(mouths):  # no window was dropped: timestamps are known
            items = [Item(f"window:{i}", i, float(c)) for i, c in enumerate(centres)]
        return Prepared({"mouth": mouths, "audio": audio}, items)

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> BranchOutput:
        in_sync = sigmoid(per_row(outputs["logit"], len(prepared.items), "logit"))
        sync_prob = float(in_sync.mean())
        return self.scored(prepared, {"sync_prob": sync_prob}, 1.0 - sync_prob, 1.0 - in_sync)
