"""temporal: a sequence model (BiLSTM or 1-D CNN) over visual's per-frame embeddings."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from dfmesh.preprocess.tensors import temporal_input
from dfmesh.runtime.branch_inputs import EMBEDDINGS, BranchInputs, EmbeddingInput
from dfmesh.runtime.errors import InvalidInput
from dfmesh.runtime.model_server import (
    BranchOutput,
    Item,
    ModelServer,
    ModelServerSettings,
    NoUsableInput,
    Prepared,
    per_row,
    sigmoid,
)


class TemporalSettings(ModelServerSettings):
    """temporal's settings (env DFMESH_*)."""

    service_name: str = "temporal"
    retired: ClassVar[dict[str, str]] = {
        "DFMESH_TEMPORAL_MIN_FRAMES": "use DFMESH_TEMPORAL_MIN_EMBEDDINGS",
        "DFMESH_TEMPORAL_MAX_FRAMES": "use DFMESH_TEMPORAL_MAX_EMBEDDINGS",
        "DFMESH_MIN_FRAMES": "temporal's is DFMESH_TEMPORAL_MIN_EMBEDDINGS"}
    min_embeddings: int = Field(2, ge=2, description="fewer frame embeddings -> NO_INPUT")
    max_embeddings: int = Field(256, ge=2, description="more frame embeddings are refused")


class TemporalServer(ModelServer):
    """One probability for the whole sequence."""

    settings: TemporalSettings

    branch = "temporal"
    wants = frozenset({EMBEDDINGS})
    input_names = ("embeddings",)
    output_names = ("logit",)
    example_shapes = {"embeddings": (1, 16, None)}  # 16 sampled frames

    def preprocess(self, inputs: BranchInputs) -> Prepared:
        found = inputs.embeddings
        if len(found) < self.settings.min_embeddings:
            raise NoUsableInput(f"{len(found)} frame embedding(s); the temporal model needs "
                                f"at least {self.settings.min_embeddings}")
        if len(found) > self.settings.max_embeddings:
            raise InvalidInput(f"{len(found)} frame embeddings; at most "
                               f"{self.settings.max_embeddings} are accepted")
        dims = {e.values.size for e in found}
        expected = self.input_shape("embeddings")[-1]
        if len(dims) != 1 or (isinstance(expected, int) and dims != {expected}):
            raise InvalidInput(f"frame embeddings have sizes {sorted(dims)}; the temporal model "
                               f"takes {expected} values per frame (visual's embedding output)")
        self._check_embedding_source(found)
        sequence = temporal_input(np.stack([e.values for e in found]))
        first = found[0]
        item = Item(f"frames:{first.frame_index}-{found[-1].frame_index}", first.frame_index,
                    first.timestamp_seconds)
        return Prepared({"embeddings": sequence}, [item], context={"frames": len(found)})

    def paired_visual_sha256(self) -> str:
        """The visual artifact whose embeddings this model was trained on ('' if unrecorded)."""
        paired = (self.manifest.extra.get("visual_model") if self.manifest else None) or {}
        return str(paired.get("sha256", ""))

    def _check_embedding_source(self, found: list[EmbeddingInput]) -> None:
        """Embeddings of another visual model mean nothing to this one: NO_INPUT, not a score."""
        paired = self.paired_visual_sha256()
        sources = {e.source_model_sha256 for e in found} - {""}
        if paired and sources and sources != {paired}:
            got = ", ".join(sorted(s[:12] for s in sources))
            raise NoUsableInput(f"embeddings come from visual model {got}, but this temporal "
                                f"model was trained on visual {paired[:12]}'s; serve the paired "
                                "visual version or retrain temporal")

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> BranchOutput:
        prob = float(sigmoid(per_row(outputs["logit"], 1, "logit"))[0])
        return self.scored(prepared, {"temporal_prob_fake": prob}, prob, [prob])
