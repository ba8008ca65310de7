"""tiny_gate: Tiny-LaDeDa scores 32x32 patches of every face crop; the orchestrator's early
exit reads its statistics (every patch confidently real -> Authentic without the rest)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from dfmesh.preprocess.patches import (
    TINY_CROP_SIZE,
    TINY_PATCH_SIZE,
    TINY_PATCH_STRIDE,
    tiny_patches_batch,
)
from dfmesh.preprocess.stats import prob_summary
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


class TinyGateSettings(ModelServerSettings):
    """tiny_gate's settings (env DFMESH_*)."""

    service_name: str = "tiny_gate"
    max_batch_size: int = Field(1024, ge=1, description="patches per session run")
    max_faces_per_frame: int = Field(4, ge=1, description="largest faces scored per frame")


class TinyGateServer(ModelServer):
    """Per-patch probabilities; statistics over all patches of all crops."""

    settings: TinyGateSettings

    branch = "tiny_gate"
    wants = frozenset({FRAMES})
    input_names = ("patches",)
    output_names = ("logit",)
    # The model is fully convolutional, so only the manifest can say which grid it learnt.
    preprocessing_contract = {"crop_size": TINY_CROP_SIZE, "patch_size": TINY_PATCH_SIZE,
                              "stride": TINY_PATCH_STRIDE}
    example_shapes = {"patches": (64, 3, TINY_PATCH_SIZE, TINY_PATCH_SIZE)}  # one crop's

    def preprocess(self, inputs: BranchInputs) -> Prepared:
        prepared = face_crops_prepared(inputs, self.settings.max_faces_per_frame)
        patches, per_crop = tiny_patches_batch(prepared.context["crops"])
        prepared.feeds["patches"] = patches
        prepared.context["patches_per_crop"] = per_crop
        return prepared

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> BranchOutput:
        per_crop = prepared.context["patches_per_crop"]
        patch_probs = sigmoid(per_row(outputs["logit"], sum(per_crop), "logit"))
        features = prob_summary("tiny", patch_probs)
        features["tiny_num_files"] = float(len(per_crop))
        features["tiny_num_patches"] = float(patch_probs.size)
        # An item is one crop: the mean of its patches' probabilities.
        bounds = np.cumsum([0, *per_crop])
        crop_probs = [patch_probs[a:b].mean() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return self.scored(prepared, features, features["tiny_prob_mean"], crop_probs)
