"""visual: a CNN scores each face crop (at the size its manifest names) and returns one
embedding per sampled frame (the largest face's) for the temporal branch. A stacked model
(visual 2.2.x and 2.3.x: training.models.visual.StackedVisual) also takes the crops at
their full 256 as `image_full`."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from dfmesh.preprocess.stats import prob_summary
from dfmesh.preprocess.tensors import VISUAL_SIZE, visual_full_input, visual_input
from dfmesh.runtime.branch_inputs import FRAMES, BranchInputs
from dfmesh.runtime.model_repo import ModelManifest
from dfmesh.runtime.model_server import (
    BranchOutput,
    Item,
    ModelServer,
    ModelServerSettings,
    Prepared,
    face_crops_prepared,
    per_row,
    sigmoid,
)

FULL_INPUT = "image_full"


class VisualSettings(ModelServerSettings):
    """visual's settings (env DFMESH_*)."""

    service_name: str = "visual"
    max_batch_size: int = Field(16, ge=1, description="crops per session run")
    max_faces_per_frame: int = Field(4, ge=1, description="largest faces scored per frame")


class VisualServer(ModelServer):
    """Per-crop probabilities, their statistics, and per-frame embeddings."""

    settings: VisualSettings
    full_crops = False
    """Whether the served model is a stack that also reads the 256 crops (set at load)."""

    branch = "visual"
    wants = frozenset({FRAMES})
    input_names = ("image",)
    output_names = ("logit", "embedding")

    def preprocess(self, inputs: BranchInputs) -> Prepared:
        prepared = face_crops_prepared(inputs, self.settings.max_faces_per_frame)
        prepared.feeds["image"] = visual_input(prepared.context["crops"], self.input_size())
        if self.takes_full_crops():
            prepared.feeds[FULL_INPUT] = visual_full_input(prepared.context["crops"])
        return prepared

    def load_extras(self, manifest: ModelManifest) -> None:
        self.full_crops = any(spec["name"] == FULL_INPUT for spec in manifest.inputs)

    def takes_full_crops(self) -> bool:
        """Whether the served model is a stack that also reads the 256 crops."""
        return self.full_crops

    def input_size(self) -> int:
        """The square input side the served model was trained at (its manifest's
        preprocessing.size; 224 for models that do not say)."""
        if self.manifest is None:
            return VISUAL_SIZE
        return int(self.manifest.preprocessing.get("size", VISUAL_SIZE))

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> BranchOutput:
        probs = sigmoid(per_row(outputs["logit"], len(prepared.items), "logit"))
        features = prob_summary("visual", probs)
        features["visual_num_faces"] = float(prepared.context["num_faces"])
        return self.scored(prepared, features, features["visual_prob_mean"], probs,
                           frame_embeddings(prepared.items, outputs["embedding"]))


def frame_embeddings(items: list[Item], embeddings: np.ndarray) -> list[tuple[Item, np.ndarray]]:
    """One embedding per frame: its first crop's (faces arrive largest first), frame order."""
    first: dict[int, tuple[Item, np.ndarray]] = {}
    for item, values in zip(items, np.asarray(embeddings, dtype=np.float32), strict=True):
        first.setdefault(item.frame_index, (item, values.reshape(-1)))
    return [first[k] for k in sorted(first)]
