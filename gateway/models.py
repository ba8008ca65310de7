"""The REST API's response bodies as pydantic models, so /openapi.json describes exactly
what the gateway returns (the result is dfmesh.client.result_to_dict's shape). The examples
have exactly that shape (tests/test_gateway_units.py checks them against it); their figures
are illustrative, after the README's clip on the shipped models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

BranchStatus = Literal["OK", "FALLBACK", "NO_INPUT", "MISSING", "NOT_RUN"]
ANALYSIS_ID = "3f2c9b6e0c0d4f7e9a51d1c5a8e1b2c4"


def _branch(status: str, prob: float, features: dict[str, float], model: str, version: str,
            latency_ms: float, detail: str = "") -> dict[str, Any]:
    return {"status": status, "prob": prob, "features": features, "modelVersion": version,
            "model": model, "detail": detail, "latencyMs": latency_ms}


EXAMPLE_RESULT: dict[str, Any] = {
    "verdict": "Authentic", "confidence": 51.2, "probFake": 0.488,
    "features": {"tiny_prob_mean": 0.12, "tiny_prob_max": 0.21, "tiny_prob_p90": 0.18,
                 "tiny_num_files": 16.0, "tiny_num_patches": 1024.0,
                 "visual_prob_mean": 0.28, "visual_prob_max": 0.41, "visual_prob_p90": 0.37,
                 "visual_num_faces": 16.0, "audio_prob_fake": 0.47,
                 "temporal_prob_fake": 0.33, "sync_prob": 0.71},
    "branches": {
        "tiny_gate": _branch("OK", 0.21, {"tiny_prob_max": 0.21}, "tiny_gate-tiny-ladeda",
                             "1.1.0", 310.0),
        "visual": _branch("OK", 0.28, {"visual_prob_mean": 0.28}, "visual-efficientnet-lite0",
                          "2.0.0", 820.0),
        "audio": _branch("OK", 0.47, {"audio_prob_fake": 0.47}, "audio-aasist-l", "2.0.0",
                         640.0),
        "temporal": _branch("OK", 0.33, {"temporal_prob_fake": 0.33}, "temporal-stats",
                            "2.0.0", 15.0),
        "sync": _branch("OK", 0.29, {"sync_prob": 0.71}, "sync-av-cnn", "1.0.0", 450.0),
        "mri": _branch("OK", 0.52, {"mri_prob_mean": 0.52}, "mri-gan-unet", "1.0.0", 2540.0),
    },
    "missingBranches": [], "degraded": False, "earlyExit": False, "fromCache": False,
    "warnings": [],
    "explanation": "no visual artifacts found (visual 0.28); patches look camera-original "
                   "(tiny_gate 0.21); consistent motion across frames (temporal 0.33)",
    "timingsMs": {"ingest": 1450.0, "tiny_gate": 310.0, "visual": 820.0, "audio": 640.0,
                  "temporal": 15.0, "sync": 450.0, "mri": 2540.0, "fusion": 2.0,
                  "total": 4100.0},
    "analysisId": ANALYSIS_ID, "traceId": "", "fusionHead": "5way", "fusionMode": "logreg",
    "method": "fusion", "threshold": 0.76,
    "clip": {"kind": "VIDEO", "container": "mov,mp4,m4a,3gp,3g2,mj2", "videoCodec": "h264",
             "audioCodec": "aac", "durationSeconds": 10.0, "fps": 25.0, "width": 1280,
             "height": 720, "frameCount": "250", "hasVideo": True, "hasAudio": True,
             "audioSampleRate": 44100, "sizeBytes": "1843211",
             "sha256": "9b2f0c5e0d6a4b7c8e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f"},
}


class ClipInfo(BaseModel):
    """What ingest found, as protobuf JSON: fields at their default are left out, and
    64-bit counts are decimal strings."""

    analysisId: str = ""
    kind: Literal["MEDIA_KIND_UNSPECIFIED", "VIDEO", "IMAGE", "AUDIO"] = "MEDIA_KIND_UNSPECIFIED"
    container: str = ""
    videoCodec: str = ""
    audioCodec: str = ""
    durationSeconds: float = 0.0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    frameCount: str = Field("0", description="uint64, as a decimal string")
    hasVideo: bool = False
    hasAudio: bool = False
    audioSampleRate: int = 0
    transcoded: bool = Field(False, description="OpenCV could not read it: ffmpeg transcoded it")
    sha256: str = ""
    sizeBytes: str = Field("0", description="uint64, as a decimal string")


class ProgressEvent(BaseModel):
    """The data of a `progress` server-sent event."""

    stage: Literal["QUEUED", "EXTRACTING_FRAMES", "RUNNING_MODELS", "FINAL_CLASSIFICATION"]
    stageName: Literal["Queued", "Extracting frames", "Running models", "Final classification"]
    percent: float = Field(ge=0, le=100)
    message: str
    branch: str = Field(description="set when that branch finished")
    branchState: Literal["", "OK", "FALLBACK", "NO_INPUT", "MISSING", "NOT_RUN"] = Field(
        description="with branch: how it finished")


class BranchReport(BaseModel):
    """One branch's part in the result."""

    status: BranchStatus = Field(description="OK, FALLBACK (centre crops where no face was "
                                 "found), NO_INPUT, MISSING (down, failing or late) or NOT_RUN "
                                 "(method, file kind or the gate's early exit)")
    prob: float = Field(description="the branch's P(fake); 0 unless OK or FALLBACK")
    features: dict[str, float] = Field(description="the named statistics it reported")
    modelVersion: str
    model: str
    detail: str = Field(description="why it is not OK, when it is not")
    latencyMs: float


class AnalysisResult(BaseModel):
    """A finished analysis (dfmesh.client.result_to_dict)."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_RESULT]})

    verdict: Literal["Deepfake", "Authentic", "Unknown"]
    confidence: float = Field(ge=0, le=100, description="of the verdict given, in percent")
    probFake: float = Field(ge=0, le=1)
    features: dict[str, float] = Field(description="the fusion features that were available")
    branches: dict[str, BranchReport] = Field(description="every branch the mesh runs")
    missingBranches: list[str]
    degraded: bool = Field(description="a branch that should have answered did not")
    earlyExit: bool = Field(description="the gate found every patch confidently real")
    fromCache: bool
    warnings: list[str]
    explanation: str
    timingsMs: dict[str, float]
    analysisId: str
    traceId: str
    fusionHead: str = Field(description='e.g. "5way", "4way:audio+temporal+tiny_gate+visual"')
    fusionMode: str = Field(description="logreg | adaptive")
    method: str = Field(description="fusion | plain_frames | mri | temporal")
    threshold: float = Field(description="Deepfake where probFake >= threshold")
    clip: ClipInfo | None = Field(description="what ingest found")

    @field_serializer("clip")
    def _clip_as_sent(self, clip: ClipInfo | None):
        # As protobuf JSON: the fields the server left out stay out. No return annotation:
        # pydantic would publish it as the field's schema instead of ClipInfo's.
        return None if clip is None else clip.model_dump(exclude_unset=True)


class AnalysisStatus(BaseModel):
    """The first source design's shape; `result` is the full breakdown when complete."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True,
                              json_schema_extra={"examples": [
        {"analysisId": ANALYSIS_ID, "status": "running", "percent": 40.0,
         "stageName": "Running models", "message": "visual ok (2/6)", "result": None,
         "error": None},
        {"analysisId": ANALYSIS_ID, "status": "complete", "percent": 100.0,
         "stageName": "Final classification", "message": "", "result": EXAMPLE_RESULT,
         "error": None},
    ]})

    analysisId: str
    status: Literal["running", "complete", "error"]
    percent: float = Field(ge=0, le=100)
    stageName: str = Field(
        description="Queued | Extracting frames | Running models | Final classification")
    message: str = ""
    result: AnalysisResult | None = None
    error: str | None = None
    errorCode: str | None = None
    httpStatus: int | None = None


class AnalysisAccepted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"analysisId": ANALYSIS_ID, "status": "running",
         "statusUrl": f"/v1/analyses/{ANALYSIS_ID}",
         "eventsUrl": f"/v1/analyses/{ANALYSIS_ID}/events"}]})

    analysisId: str
    status: str
    statusUrl: str
    eventsUrl: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True,
                              json_schema_extra={"examples": [
        {"status": "error", "code": "too_large", "percent": 0, "stageName": "Queued",
         "result": None, "error": "the upload is larger than the limit of 512 MiB; "
                                  "trim or re-encode the clip and try again"}]})

    status: str = "error"
    code: str
    error: str
    percent: float = 0
    stageName: str = "Queued"
    result: None = None


def with_event_schemas(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document plus the server-sent events' data (FastAPI lists only the
    bodies routes return): ProgressEvent, beside AnalysisResult and ErrorBody."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ProgressEvent", ProgressEvent.model_json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"))
    return schema
