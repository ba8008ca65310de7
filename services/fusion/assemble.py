"""The result of an analysis from its branches' outcomes (pure: no calls, no clock), and
the metrics and log line it is recorded with."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from deepfake.v1 import media_pb2
from dfmesh.branches import BRANCH_NAMES
from dfmesh.runtime import metrics
from services.fusion.explain import explain
from services.fusion.fusion import FusionBundle, decide
from services.fusion.gate import GATE, early_exit_score
from services.fusion.outcome import AnalysisOutcome, BranchOutcome, BranchState, Stage, Verdict
from services.fusion.plan import KIND_NOTES
from services.fusion.progress import Progress, models_percent
from services.fusion.scoring import Score, fusion_features, score, usable_results

log = logging.getLogger(__name__)


def every_branch(outcomes: Mapping[str, BranchOutcome],
                 not_run: Mapping[str, str]) -> dict[str, BranchOutcome]:
    """An outcome for every registry branch: its own, else not run (with the reason) or
    missing (no answer)."""
    return {name: outcomes.get(name) or BranchOutcome(
        name, BranchState.NOT_RUN if name in not_run else BranchState.MISSING,
        reason=not_run.get(name, "no answer")) for name in BRANCH_NAMES}


def assemble(*, analysis_id: str, outcomes: Mapping[str, BranchOutcome],
             not_run: Mapping[str, str], bundle: FusionBundle, mode: str, method: str,
             threshold: float, early_exit: bool, early_exit_threshold: float,
             clip: media_pb2.ClipInfo | None) -> AnalysisOutcome:
    """Verdict, confidence, features, head, explanation and warnings for one analysis
    (timings are the coordinator's to add)."""
    branches = every_branch(outcomes, not_run)
    missing = {b: o.reason for b, o in branches.items() if o.state is BranchState.MISSING}
    no_input = {b: o.reason or "no input" for b, o in branches.items()
                if o.state is BranchState.NO_INPUT}
    usable = usable_results({b: o.result for b, o in branches.items() if o.result is not None})
    if early_exit:
        fused = early_exit_score(usable[GATE], early_exit_threshold)
        # The gate's threshold is the operator's definition of "confidently real".
        verdict, confidence = Verdict.AUTHENTIC, 100.0 * (1.0 - fused.prob_fake)
    else:
        fused = score(usable, bundle=bundle, mode=mode, method=method)
        decided, confidence = decide(fused.prob_fake, threshold)
        verdict = Verdict(decided)
    if clip is not None and clip.kind in KIND_NOTES and not fused.note:
        fused = Score(fused.prob_fake, fused.head, fused.used, KIND_NOTES[clip.kind])
    sync = usable.get("sync")
    text = explain(deepfake=verdict is Verdict.DEEPFAKE,
                   probs={b: r.prob_fake for b, r in usable.items()}, used=list(fused.used),
                   sync_prob=sync.features.get("sync_prob") if sync else None,
                   missing=missing, no_input=no_input, note=fused.note)
    return AnalysisOutcome(
        analysis_id=analysis_id, verdict=verdict, confidence=confidence,
        prob_fake=fused.prob_fake, features=fusion_features(usable), branches=branches,
        missing_branches=list(missing), degraded=bool(missing), early_exit=early_exit,
        explanation=text, timings_ms={}, fusion_mode=mode, method=method,
        fusion_head=fused.head, clip=clip, threshold=threshold,
        warnings=[] if early_exit else bundle.calibration_warnings(
            {b: usable[b].model.sha256 for b in fused.used if b in usable},
            {b: usable[b].model.version for b in fused.used if b in usable}))


def record_metrics(outcome: AnalysisOutcome) -> None:
    """The fusion metrics and the log line of a finished analysis."""
    if outcome.early_exit:
        metrics.FUSION_EARLY_EXITS.inc()
    for name in outcome.missing_branches:
        metrics.FUSION_DEGRADED.labels(name).inc()
    metrics.FUSION_VERDICTS.labels(outcome.verdict, outcome.fusion_head.split(":")[0],
                                   str(outcome.degraded).lower()).inc()
    metrics.FUSION_PROB_FAKE.observe(outcome.prob_fake)
    for stage, ms in outcome.timings_ms.items():
        if stage.startswith("ingest_"):
            continue  # ingest exports its own stage metrics
        metrics.STAGE_SECONDS.labels("fusion", stage).observe(ms / 1000)
    log.info("analysis done", extra={"verdict": outcome.verdict, "head": outcome.fusion_head,
                                     "degraded": outcome.degraded,
                                     "total_ms": round(outcome.timings_ms.get("total", 0))})


def replay_cached(cached: AnalysisOutcome, progress: Progress, *, analysis_id: str,
                  clip: media_pb2.ClipInfo | None, ingest_ms: float | None,
                  total_ms: float) -> AnalysisOutcome:
    """A result from the cache as this analysis's: its id, clip and timings, and the progress
    a client shows (each branch's outcome, as the cached result has it)."""
    ran = [b for b in cached.branches.values() if b.state is not BranchState.NOT_RUN]
    for done, branch in enumerate(ran, start=1):
        progress(Stage.RUNNING_MODELS, models_percent(done, len(ran)),
                 f"{branch.name} {branch.state.replace('_', ' ')} (cached result)",
                 branch=branch.name, branch_state=branch.state)
    progress(Stage.FINAL_CLASSIFICATION, 100.0, "Final classification (cached result)")
    log.info("analysis answered from the result cache",
             extra={"verdict": cached.verdict, "total_ms": round(total_ms)})
    timings = {"ingest": ingest_ms} if ingest_ms is not None else {}
    return replace(cached, analysis_id=analysis_id, clip=clip, from_cache=True,
                   timings_ms={**timings, "total": total_ms})
