"""noise: each face crop at 64x64 through a model with one logit per crop (the test builds a
tiny ONNX model with a known output), reported as noise_prob_mean / _max / _p90."""

from __future__ import annotations

import numpy as np

from dfmesh.preprocess.stats import prob_summary
from dfmesh.preprocess.tensors import visual_input
from dfmesh.runtime.branch_inputs import FRAMES, BranchInputs
from dfmesh.runtime.model_server import (
    BranchOutput,
    ModelServer,
    ModelServerSettings,
    Prepared,
    face_crops_prepared,
    per_row,
    sigmoid,
)

INPUT_SIZE = 64


class NoiseSettings(ModelServerSettings):
    """noise's settings (env DFMESH_*)."""

    service_name: str = "noise"


class NoiseServer(ModelServer):
    """Per-crop probabilities and their statistics."""

    settings: NoiseSettings

    branch = "noise"
    wants = frozenset({FRAMES})
    input_names = ("image",)

    def preprocess(self, inputs: BranchInputs) -> Prepared:
        prepared = face_crops_prepared(inputs, max_faces_per_frame=2)
        prepared.feeds["image"] = visual_input(prepared.context["crops"], INPUT_SIZE)
        return prepared

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> BranchOutput:
        probs = sigmoid(per_row(outputs["logit"], len(prepared.items), "logit"))
        features = prob_summary("noise", probs)
        return self.scored(prepared, features, features["noise_prob_mean"], probs)
