"""The orchestrator's pure parts without a server: the branch plan, packet routing, the
dependent branch's feed, branch states, the gate's decision, ingest's errors, progress and
the assembled result (on a real, test-built fusion bundle)."""

from __future__ import annotations

import grpc
import pytest

from deepfake.v1 import branch_pb2, media_pb2
from devkit.known_models import build_fusion_bundle
from dfmesh.errors import DeadlineExceeded, InvalidInput, LimitExceeded, UpstreamUnavailable
from services.fusion.assemble import assemble, every_branch
from services.fusion.branch_call import failure_label, ingest_error
from services.fusion.fusion import FusionBundle, load_bundle
from services.fusion.gate import gate_says_real
from services.fusion.outcome import BranchOutcome, BranchState, ProgressEvent, Stage, Verdict
from services.fusion.plan import plan_branches
from services.fusion.progress import Progress, frames_percent, models_percent
from services.fusion.routing import embeddings_feed, route, without_full_frame

FED = ("tiny_gate", "visual", "audio", "sync", "mri")
FEATURES = {
    "tiny_gate": {"tiny_prob_mean": 0.3, "tiny_prob_max": 0.6, "tiny_prob_p90": 0.5,
                  "tiny_num_files": 16.0, "tiny_num_patches": 1024.0},
    "visual": {"visual_prob_mean": 0.7, "visual_prob_max": 0.9, "visual_prob_p90": 0.85,
               "visual_num_faces": 16.0},
    "audio": {"audio_prob_fake": 0.4}, "temporal": {"temporal_prob_fake": 0.6},
    "sync": {"sync_prob": 0.8},
    "mri": {"mri_prob_mean": 0.5, "mri_prob_max": 0.7, "mri_prob_p90": 0.6},
}
PROBS = {"tiny_gate": 0.3, "visual": 0.7, "audio": 0.4, "temporal": 0.6, "sync": 0.2, "mri": 0.5}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> FusionBundle:
    repo = tmp_path_factory.mktemp("repo")
    build_fusion_bundle(repo / "fusion" / "1.0.0")
    return load_bundle(repo)


def ok(name: str, status: int = branch_pb2.OK) -> BranchOutcome:
    result = branch_pb2.BranchResult(branch=name, status=status, prob_fake=PROBS[name],
                                     features=FEATURES[name])
    return BranchOutcome(name, BranchState.of_status(status), result)


# --- plan ---

def test_a_video_runs_every_branch_and_temporal_after_visual() -> None:
    plan = plan_branches("fusion", media_pb2.VIDEO)
    assert plan.run == ("tiny_gate", "visual", "audio", "temporal", "sync", "mri")
    assert plan.fed == FED and plan.dependents == {"temporal": "visual"}
    assert plan.not_run == {}


def test_an_image_runs_the_frame_branches_and_says_why_not_the_rest() -> None:
    plan = plan_branches("fusion", media_pb2.IMAGE)
    assert plan.run == ("tiny_gate", "visual", "mri")
    assert plan.not_run == {b: "not run: still image: frame branches only"
                            for b in ("audio", "temporal", "sync")}


def test_a_one_branch_method_brings_what_it_depends_on() -> None:
    plan = plan_branches("temporal", media_pb2.VIDEO)
    assert plan.run == ("visual", "temporal")
    assert plan.not_run["mri"] == "not run: method temporal"
    assert plan_branches("mri", media_pb2.IMAGE).run == ("mri",)
    with pytest.raises(InvalidInput, match="method temporal cannot score audio files"):
        plan_branches("temporal", media_pb2.AUDIO)


# --- routing ---

def test_packets_go_to_the_branches_that_use_them_and_close_the_others() -> None:
    assert route("clip_info", FED) == (list(FED), [])
    assert route("frame", FED) == (["tiny_gate", "visual", "mri"], [])
    assert route("dense_frame", FED) == (["sync"], ["tiny_gate", "visual", "mri"])
    assert route("audio", FED) == (["audio", "sync"], ["tiny_gate", "visual", "mri"])
    assert route("summary", FED) == ([], list(FED))
    assert route(None, ("audio",)) == ([], ["audio"])


def test_the_full_frame_goes_only_where_no_face_was_found() -> None:
    face = media_pb2.Face(score=0.99)
    full = media_pb2.Image(width=2, height=2)
    with_face = media_pb2.MediaPacket(frame=media_pb2.SampledFrame(index=3, faces=[face],
                                                                   frame=full))
    assert not without_full_frame(with_face).frame.HasField("frame")
    assert without_full_frame(with_face).frame.index == 3
    no_face = media_pb2.MediaPacket(frame=media_pb2.SampledFrame(index=4, frame=full))
    assert without_full_frame(no_face) is no_face


async def test_a_dependent_branch_is_fed_the_embeddings_after_a_header() -> None:
    result = branch_pb2.BranchResult(embeddings=[branch_pb2.FrameEmbedding(values=[1.0, 2.0]),
                                                 branch_pb2.FrameEmbedding(values=[3.0])])
    feed = embeddings_feed("a1", result)
    requests = [r async for r in feed.requests()]
    assert requests[0].header.analysis_id == "a1"
    assert [list(r.embedding.values) for r in requests[1:]] == [[1.0, 2.0], [3.0]]
    assert feed.closed.is_set()


# --- a branch's answer ---

def test_branch_states_and_failure_labels() -> None:
    assert BranchState.of_status(branch_pb2.FALLBACK) is BranchState.FALLBACK
    assert BranchState.of_status(branch_pb2.BRANCH_STATUS_UNSPECIFIED) is BranchState.MISSING
    assert BranchOutcome("sync", "no_input").state is BranchState.NO_INPUT
    assert failure_label(grpc.StatusCode.UNAVAILABLE) == "unavailable"
    assert failure_label(grpc.StatusCode.DEADLINE_EXCEEDED) == "late"
    assert failure_label(grpc.StatusCode.INTERNAL) == "failed"


def test_the_gate_exits_only_when_every_patch_is_confidently_real() -> None:
    gate = ok("tiny_gate")  # tiny_prob_max 0.6
    assert gate_says_real(gate, 0.7) and not gate_says_real(gate, 0.6)
    assert not gate_says_real(ok("tiny_gate", branch_pb2.FALLBACK), 0.9)
    assert not gate_says_real(BranchOutcome("tiny_gate", BranchState.MISSING), 0.9)


def test_ingest_failures_become_domain_errors() -> None:
    at = "10.0.0.1:50052"
    assert isinstance(ingest_error(grpc.StatusCode.INVALID_ARGUMENT, "bad", None, at),
                      InvalidInput)
    busy = ingest_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", "2", at)
    assert isinstance(busy, LimitExceeded) and busy.retry_after_seconds == 2.0
    assert isinstance(ingest_error(grpc.StatusCode.DEADLINE_EXCEEDED, "", None, at),
                      DeadlineExceeded)
    down = ingest_error(grpc.StatusCode.UNAVAILABLE, "refused", None, at)
    assert isinstance(down, UpstreamUnavailable)
    assert down.message == f"ingest service unavailable at {at}: refused"


# --- progress ---

def test_progress_never_goes_back() -> None:
    events: list[ProgressEvent] = []
    progress = Progress(events.append)
    progress(Stage.EXTRACTING_FRAMES, frames_percent(8, 16), "half")
    progress(Stage.EXTRACTING_FRAMES, frames_percent(1, 16), "late packet")
    progress(Stage.RUNNING_MODELS, models_percent(6, 6), "all", branch="mri")
    progress(Stage.FINAL_CLASSIFICATION, 120.0, "done")
    assert [e.percent for e in events] == [27.5, 27.5, 95.0, 100.0]
    assert frames_percent(40, 16) == 50.0 and models_percent(0, 0) == 50.0


# --- the result ---

def run_assemble(bundle: FusionBundle, outcomes: dict[str, BranchOutcome], **kwargs: object):
    args: dict = dict(analysis_id="a1", not_run={}, bundle=bundle, mode="logreg",
                      method="fusion", threshold=0.5, early_exit=False,
                      early_exit_threshold=0.2, clip=None)
    args.update(kwargs)
    return assemble(outcomes=outcomes, **args)


def test_every_branch_answering_uses_the_full_head(bundle: FusionBundle) -> None:
    outcome = run_assemble(bundle, {b: ok(b) for b in PROBS})
    assert outcome.fusion_head == "5way" and not outcome.degraded
    assert outcome.verdict in (Verdict.DEEPFAKE, Verdict.AUTHENTIC)
    assert outcome.verdict == ("DEEPFAKE" if outcome.prob_fake >= 0.5 else "AUTHENTIC")
    assert len(outcome.features) == 12 and list(outcome.branches) == list(PROBS)


def test_a_missing_branch_degrades_and_is_named(bundle: FusionBundle) -> None:
    outcomes = {b: ok(b) for b in PROBS if b != "sync"}
    outcomes["sync"] = BranchOutcome("sync", BranchState.MISSING, reason="late (over 60 s)")
    outcome = run_assemble(bundle, outcomes)
    assert outcome.degraded and outcome.missing_branches == ["sync"]
    assert outcome.fusion_head == "4way:audio+temporal+tiny_gate+visual"
    assert "missing: sync (late (over 60 s))" in outcome.explanation


def test_an_early_exit_is_authentic_by_the_gate(bundle: FusionBundle) -> None:
    not_run = {b: "not run: early exit" for b in PROBS if b != "tiny_gate"}
    outcome = run_assemble(bundle, {"tiny_gate": ok("tiny_gate")}, not_run=not_run,
                           early_exit=True, early_exit_threshold=0.7)
    assert outcome.verdict is Verdict.AUTHENTIC and outcome.early_exit
    assert outcome.confidence == pytest.approx(40.0)  # 1 - tiny_prob_max
    assert outcome.fusion_head == "early_exit:tiny_gate" and not outcome.degraded
    assert {b.state for n, b in outcome.branches.items() if n != "tiny_gate"} == {
        BranchState.NOT_RUN}
    assert outcome.explanation.startswith("early exit: every patch below 0.7")


def test_branches_without_an_answer_are_missing_or_not_run() -> None:
    branches = every_branch({"visual": ok("visual")}, {"audio": "not run: method mri"})
    assert branches["audio"].state is BranchState.NOT_RUN
    assert branches["audio"].reason == "not run: method mri"
    assert branches["mri"].state is BranchState.MISSING and branches["mri"].reason == "no answer"


def test_an_image_says_so(bundle: FusionBundle) -> None:
    outcomes = {b: ok(b) for b in ("tiny_gate", "visual", "mri")}
    clip = media_pb2.ClipInfo(kind=media_pb2.IMAGE)
    outcome = run_assemble(bundle, outcomes, clip=clip,
                           not_run={b: "not run: still image" for b in ("audio", "temporal",
                                                                        "sync")})
    assert outcome.explanation.startswith("still image: frame branches only")
    assert outcome.fusion_head == "2way:tiny_gate+visual"
