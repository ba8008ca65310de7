"""The coordinator's remaining parts without a server: the request's options resolved and
the options a cached result must match, the gate's handling, the ledger (outcomes, timings,
progress and the models seen), a dependent branch's skip, the feeds, the trace attributes
and one analysis's use of the result cache (on the real in-memory cache)."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import REGISTRY

from deepfake.v1 import branch_pb2, media_pb2
from services.fusion import gate, spans
from services.fusion.cache import MemoryStore, ModelView, ResultCache
from services.fusion.cached import AnalysisCache
from services.fusion.ledger import Ledger
from services.fusion.outcome import (
    AnalysisOptions,
    AnalysisOutcome,
    BranchOutcome,
    BranchState,
    ProgressEvent,
    Stage,
)
from services.fusion.plan import plan_branches
from services.fusion.progress import Progress
from services.fusion.request import DEFAULT_NUM_FRAMES, cache_options, resolve_options
from services.fusion.routing import Feeds, dependent_outcome
from services.fusion.settings import FusionSettings

VIDEO = plan_branches("fusion", media_pb2.VIDEO)


def model(name: str) -> branch_pb2.ModelInfo:
    return branch_pb2.ModelInfo(name=f"{name}-m", version="2.1.0", sha256="ab" * 32)


def outcome(name: str, state: str = BranchState.OK, latency_ms: float = 0.0,
            after_input_ms: float = 0.0, **features: float) -> BranchOutcome:
    result = branch_pb2.BranchResult(branch=name, prob_fake=0.4, features=features,
                                     model=model(name))
    return BranchOutcome(name, state, result, latency_ms=latency_ms,
                         after_input_ms=after_input_ms)


# --- the request ---

def test_a_request_without_choices_takes_the_settings() -> None:
    settings = FusionSettings(fusion_mode="adaptive", early_exit=False, full_frames=True)
    run = resolve_options(settings, AnalysisOptions())
    assert (run.method, run.mode, run.early_exit) == ("fusion", "adaptive", False)
    assert run.ingest.include_full_frames and run.ingest.full_frames_only_without_faces
    assert run.expected_frames == DEFAULT_NUM_FRAMES


def test_a_request_chooses_and_the_early_exit_is_only_for_fusion() -> None:
    settings = FusionSettings(early_exit=False, full_frames=False)
    asked = AnalysisOptions(fusion_mode="logreg", early_exit=True,
                            ingest=media_pb2.IngestOptions(num_frames=8,
                                                           include_full_frames=True))
    run = resolve_options(settings, asked)
    assert (run.mode, run.early_exit, run.expected_frames) == ("logreg", True, 8)
    assert not run.ingest.include_full_frames  # the server decides full frames
    assert asked.ingest is not None and asked.ingest.include_full_frames  # not changed
    one_branch = resolve_options(FusionSettings(), replace(asked, method="mri"))
    assert one_branch.method == "mri" and not one_branch.early_exit


def test_a_cached_result_must_match_every_option_that_decides_the_answer() -> None:
    run = resolve_options(FusionSettings(), AnalysisOptions(
        ingest=media_pb2.IngestOptions(num_frames=8, dense_window_seconds=2.5000001)))
    assert cache_options(run, threshold=0.4, early_exit_threshold=0.1) == {
        "method": "fusion", "mode": "logreg", "early_exit": True, "early_exit_threshold": 0.1,
        "threshold": 0.4, "num_frames": 8, "dense_window_seconds": 2.5, "full_frames": True}


# --- the gate ---

def test_the_gate_goes_first_only_when_planned_and_the_early_exit_is_on() -> None:
    assert gate.gate_first(VIDEO, early_exit=True)
    assert not gate.gate_first(VIDEO, early_exit=False)
    assert not gate.gate_first(plan_branches("fusion", media_pb2.AUDIO), early_exit=True)


def test_an_early_exit_skips_every_other_planned_branch() -> None:
    assert gate.skipped_by_early_exit(VIDEO) == {
        b: "not run: early exit" for b in ("visual", "audio", "temporal", "sync", "mri")}
    image = plan_branches("fusion", media_pb2.IMAGE)
    assert set(gate.skipped_by_early_exit(image)) == {"visual", "mri"}
    score = gate.early_exit_score(branch_pb2.BranchResult(features={"tiny_prob_max": 0.1}),
                                  0.2)
    assert (score.prob_fake, score.head, score.used) == (0.1, "early_exit:tiny_gate",
                                                         ("tiny_gate",))
    assert score.note == "early exit: every patch below 0.2"


# --- the ledger ---

def test_the_ledger_keeps_outcomes_timings_models_and_says_each_state() -> None:
    events: list[ProgressEvent] = []
    models = ModelView(("visual", "sync"), max_age_seconds=60)
    ledger = Ledger(Progress(events.append), expected_frames=16, models=models)
    ledger.plan(("visual", "sync"), media_pb2.VIDEO)
    ledger.frame()
    ledger.ingest_summary(media_pb2.IngestSummary(timings_ms={"decode": 12.0}))
    ledger.record(outcome("visual", latency_ms=900.0, after_input_ms=300.0))
    ledger.record(BranchOutcome("sync", BranchState.MISSING, reason="late", latency_ms=60.0),
                  "late")
    assert set(ledger.outcomes) == {"visual", "sync"}
    # From the branch's input being complete when known, else the whole call.
    assert ledger.timings == {"ingest_decode": 12.0, "visual": 300.0, "sync": 60.0}
    assert models.digest() is None  # sync brought no model: the cache key waits for it
    ledger.record(outcome("sync"))
    assert models.digest() == "visual=visual-m:2.1.0:" + "ab" * 32 + \
        ";sync=sync-m:2.1.0:" + "ab" * 32
    assert [(e.stage, e.message, e.branch, e.branch_state) for e in events] == [
        (Stage.EXTRACTING_FRAMES, "Extracting frames (1/16)", "", ""),
        (Stage.RUNNING_MODELS, "visual ok (1/2)", "visual", "ok"),
        (Stage.RUNNING_MODELS, "sync missing (2/2)", "sync", "missing"),
        (Stage.RUNNING_MODELS, "sync ok (2/2)", "sync", "ok")]
    assert [e.percent for e in events] == [7.8125, 72.5, 95.0, 95.0]


def test_an_image_is_one_frame() -> None:
    events: list[ProgressEvent] = []
    ledger = Ledger(Progress(events.append), expected_frames=16)
    ledger.plan(("tiny_gate", "visual", "mri"), media_pb2.IMAGE)
    ledger.frame()
    assert events[-1].message == "Extracting frames (1/1)" and events[-1].percent == 50.0


# --- dependents, feeds, spans ---

def test_a_dependent_is_called_only_with_its_upstreams_embeddings() -> None:
    missing = dependent_outcome("temporal", "visual",
                                BranchOutcome("visual", BranchState.MISSING))
    assert missing is not None and missing.state is BranchState.MISSING
    assert missing.reason == "needs visual's embeddings"
    assert dependent_outcome("temporal", "visual", None) == missing
    empty = dependent_outcome("temporal", "visual", outcome("visual"))
    assert empty is not None and empty.state is BranchState.NO_INPUT
    assert empty.reason == "visual produced no embeddings"
    with_embeddings = outcome("visual")
    assert with_embeddings.result is not None
    with_embeddings.result.embeddings.add(values=[0.1, 0.2])
    assert dependent_outcome("temporal", "visual", with_embeddings) is None


async def test_feeds_take_the_packets_their_branch_uses_and_close_after_the_last() -> None:
    feeds = Feeds("a1")
    feeds.open(("tiny_gate", "audio"))
    feeds.deliver(media_pb2.MediaPacket(clip_info=media_pb2.ClipInfo(sha256="x")))
    feeds.deliver(media_pb2.MediaPacket(frame=media_pb2.SampledFrame(index=0)))
    feeds.deliver(media_pb2.MediaPacket(audio=media_pb2.AudioChunk(sample_rate=16000)))
    assert feeds["tiny_gate"].closed.is_set() and not feeds["audio"].closed.is_set()
    feeds.close()
    gate_stream = [r async for r in feeds["tiny_gate"].requests()]
    audio_stream = [r async for r in feeds["audio"].requests()]
    assert [r.media.WhichOneof("payload") for r in gate_stream[1:]] == ["clip_info", "frame"]
    assert [r.media.WhichOneof("payload") for r in audio_stream[1:]] == ["clip_info", "audio"]
    assert gate_stream[0].header.analysis_id == "a1"


def test_span_attributes() -> None:
    clip = media_pb2.ClipInfo(kind=media_pb2.VIDEO, width=1280, height=720, fps=25.0,
                              duration_seconds=10.0, has_audio=True)
    assert spans.clip_attributes(clip) == {
        "clip.kind": "video", "clip.duration_seconds": 10.0, "clip.width": 1280,
        "clip.height": 720, "clip.fps": 25.0, "clip.has_audio": True}
    assert spans.branch_attributes(BranchOutcome("sync", BranchState.MISSING, reason="late")) \
        == {"branch.state": "missing", "branch.reason": "late"}
    assert spans.branch_attributes(outcome("mri"))["model.version"] == "2.1.0"


# --- the result cache, for one analysis ---

def result(degraded: bool = False) -> AnalysisOutcome:
    return AnalysisOutcome(
        analysis_id="a1", verdict="AUTHENTIC", confidence=80.0, prob_fake=0.2, features={},
        branches={}, missing_branches=["sync"] if degraded else [], degraded=degraded,
        early_exit=False, explanation="", timings_ms={}, fusion_mode="logreg",
        method="fusion", fusion_head="5way", clip=None, threshold=0.5)


def lookups(outcome_label: str) -> float:
    return REGISTRY.get_sample_value("deepfake_fusion_cache_lookups_total",
                                     {"result": outcome_label}) or 0.0


async def test_one_analysis_looks_up_and_stores_its_result() -> None:
    models = ModelView(("visual",), max_age_seconds=60)
    cache = ResultCache(MemoryStore(8, 60.0), models)
    ours = AnalysisCache(cache, {"method": "fusion"}, "bundle")
    clip = media_pb2.ClipInfo(sha256="c" * 64)
    assert ours.models is models
    assert ours.key(clip) is None  # no branch model seen yet: no key, no answer
    misses = lookups("miss")
    assert await ours.lookup(clip) is None and lookups("miss") == misses + 1
    models.update("visual", model("visual"))
    await ours.store(clip, result(degraded=True))
    assert await ours.lookup(clip) is None  # a degraded result is not kept
    await ours.store(clip, result())
    hits = lookups("hit")
    found = await ours.lookup(clip)
    assert found is not None and found.verdict == "AUTHENTIC" and lookups("hit") == hits + 1
    other = AnalysisCache(cache, {"method": "mri"}, "bundle")
    assert await other.lookup(clip) is None  # other options, other key


async def test_without_a_cache_nothing_is_looked_up() -> None:
    ours = AnalysisCache(None, {}, "bundle")
    misses = lookups("miss")
    clip = media_pb2.ClipInfo(sha256="c" * 64)
    assert ours.models is None and ours.key(clip) is None
    assert await ours.lookup(clip) is None and lookups("miss") == misses
    await ours.store(clip, result())  # nothing to store into, and no error

