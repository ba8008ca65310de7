"""mri: the MRI-GAN maps each 256x256 face crop to an "MRI" map (near black for real faces,
bright where synthesized) and a classifier on that map gives one logit per crop."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from dfmesh.preprocess.stats import prob_summary
from dfmesh.preprocess.tensors import mri_input
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


class MriSettings(ModelServerSettings):
    """mri's settings (env DFMESH_*)."""

    service_name: str = "mri"
    max_batch_size: int = Field(8, ge=1, description="crops per session run")
    max_faces_per_frame: int = Field(
        1, ge=1, description="faces scored per frame, largest first: mri takes part only in "
        "adaptive fusion (not the default heads; held out by source it scores AUC 0.42 on "
        "real media, docs/EVALUATION.md), so it scores the largest face only and stops "
        "being the slowest branch on clips with several faces")


class MriServer(ModelServer):
    """Per-crop probabilities from the MRI map's classifier and their statistics."""

    settings: MriSettings

    branch = "mri"
    wants = frozenset({FRAMES})
    input_names = ("image",)
    output_names = ("mri_map", "logit")

    def preprocess(self, inputs: BranchInputs) -> Prepared:
        prepared = face_crops_prepared(inputs, self.settings.max_faces_per_frame)
        prepared.feeds["image"] = mri_input(prepared.context["crops"])
        return prepared

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> BranchOutput:
        probs = sigmoid(per_row(outputs["logit"], len(prepared.items), "logit"))
        features = prob_summary("mri", probs)
        return self.scored(prepared, features, features["mri_prob_mean"], probs)
