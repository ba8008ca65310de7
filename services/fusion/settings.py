"""Fusion orchestrator settings: where ingest and the branches listen, deadlines, fusion
defaults, the early exit and admission limits (all from DFMESH_* environment variables).

Each branch of the registry (dfmesh.branches) gets two fields, DFMESH_<NAME>_ADDR and
DFMESH_<NAME>_DEADLINE_SECONDS, made from its declaration: no branch is listed here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, create_model, model_validator

from dfmesh.branches import BRANCH_NAMES, BRANCHES
from dfmesh.runtime.config import MiB, ServiceSettings, default_address

__all__ = ["BRANCH_NAMES", "FusionSettings"]


def _branch_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for b in BRANCHES:
        fields[f"{b.name}_addr"] = (str, Field(default_address(b.name), description=(
            f"where the {b.name} branch listens")))
        fields[f"{b.name}_deadline_seconds"] = (float, Field(b.deadline_seconds, gt=0, description=(
            f"{b.name}'s call, counted from its input being complete")))
    return fields


if TYPE_CHECKING:  # the generated fields are read through branch_address/branch_deadline
    _WithBranches = ServiceSettings
else:
    _WithBranches = create_model("_WithBranches", __base__=ServiceSettings,
                                 __module__=__name__, **_branch_fields())


class FusionSettings(_WithBranches):
    """Everything the orchestrator can be told, e.g. DFMESH_VISUAL_ADDR or
    DFMESH_VISUAL_DEADLINE_SECONDS."""

    service_name: str = "fusion"

    ingest_addr: str = Field(default_address("ingest"), description="where ingest listens")
    ingest_deadline_seconds: float = Field(180.0, gt=0, description="whole ingest stream")
    health_cache_seconds: float = Field(2.0, ge=0,
                                        description="how long a branch health answer is trusted")

    fusion_mode: str = Field("logreg", pattern="^(logreg|adaptive)$",
                             description="default when a request does not choose")
    early_exit: bool = Field(True, description="let tiny_gate end an analysis early")
    early_exit_threshold: float | None = Field(
        None, ge=0, le=1, description="early exit where tiny_prob_max is below; unset = the "
        "bundle's (fitted so that at most 2% of held-out fakes exit), else 0.2")
    decision_threshold: float | None = Field(None, gt=0, lt=1,
                                             description="Deepfake where p >= this; "
                                                         "unset = the bundle's, else 0.5")
    full_frames: bool = Field(True, description="ask ingest for full frames, so the frame "
                                                "branches can fall back to centre crops where "
                                                "no face is found")
    fusion_version: str = Field("latest", description="model repository version of the bundle")

    result_cache_size: int = Field(1024, ge=0, description="results kept in memory for "
                                   "identical uploads; 0 = no result cache")
    result_cache_ttl_seconds: float = Field(3600.0, gt=0, description="how long a cached "
                                            "result is served")
    result_cache_model_max_age_seconds: float = Field(
        300.0, gt=0, description="the cache answers only while every branch reported its "
        "model within this window (a model rollout is noticed within it)")
    redis_url: str = Field("", description="e.g. redis://redis:6379/0: the result cache in "
                           "Redis, shared by fusion replicas; empty = in this process")

    max_concurrent_analyses: int = Field(2, ge=1, description="more at once are refused")
    busy_retry_seconds: float = Field(2.0, ge=0, description="retry hint when busy")
    max_upload_bytes: int = Field(512 * MiB, ge=1, description="larger uploads are refused")

    @model_validator(mode="after")
    def _check_thresholds(self) -> FusionSettings:
        decision = self.decision_threshold
        early = self.early_exit_threshold
        if decision is not None and early is not None and early > decision:
            raise ValueError("DFMESH_EARLY_EXIT_THRESHOLD must not exceed "
                             "DFMESH_DECISION_THRESHOLD")
        return self

    def branch_address(self, branch: str) -> str:
        return str(getattr(self, f"{branch}_addr"))

    def branch_deadline(self, branch: str) -> float:
        return float(getattr(self, f"{branch}_deadline_seconds"))
