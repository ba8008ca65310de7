"""Which branches an analysis calls (pure): the method's branches (and what they depend
on), narrowed to those that run on the file's media kind; the rest are named as not run."""

from __future__ import annotations

from dataclasses import dataclass, field

from deepfake.v1 import media_pb2
from dfmesh import branches as registry
from dfmesh.errors import InvalidInput
from services.fusion.outcome import Method
from services.fusion.scoring import METHOD_BRANCH

METHOD_PLANS: dict[str, tuple[str, ...]] = {
    Method.FUSION: registry.BRANCH_NAMES,
    **{method: registry.with_dependencies((b,)) for method, b in METHOD_BRANCH.items()},
}
KIND_BRANCHES: dict[int, tuple[str, ...]] = {
    media_pb2.IMAGE: registry.runs_on("IMAGE"),
    media_pb2.AUDIO: registry.runs_on("AUDIO"),
}
KIND_NOTES: dict[int, str] = {media_pb2.IMAGE: "still image: frame branches only",
                              media_pb2.AUDIO: "audio-only file: audio branch only"}


@dataclass(frozen=True)
class BranchPlan:
    """The branches to call, in registry order, and why each other one is not run."""

    run: tuple[str, ...]
    not_run: dict[str, str] = field(default_factory=dict)

    @property
    def fed(self) -> tuple[str, ...]:
        """The planned branches fed by ingest's packets (the others by another branch)."""
        return tuple(b for b in self.run if registry.branch(b).packets)

    @property
    def dependents(self) -> dict[str, str]:
        """Planned branch -> the branch whose embeddings it is fed."""
        return {b: registry.branch(b).depends_on for b in self.run if b not in self.fed}


def plan_branches(method: str, kind: int) -> BranchPlan:
    """The plan for `method` on a file of media kind `kind` (media_pb2.MediaKind); raises
    InvalidInput when the method cannot score such a file."""
    planned = METHOD_PLANS[method]
    allowed = KIND_BRANCHES.get(kind, registry.BRANCH_NAMES)
    not_run: dict[str, str] = {}
    for name in registry.BRANCH_NAMES:
        if name not in planned:
            not_run[name] = f"not run: method {method}"
        elif name not in allowed:
            not_run[name] = "not run: " + KIND_NOTES[kind]
    run = tuple(b for b in planned if b in allowed)
    needed = METHOD_BRANCH.get(method)
    if not run or (needed is not None and needed not in run):
        raise InvalidInput(f"method {method} cannot score "
                           f"{media_pb2.MediaKind.Name(kind).lower()} files; use method fusion")
    return BranchPlan(run, not_run)
