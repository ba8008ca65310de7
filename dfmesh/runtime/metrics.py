"""Every Prometheus metric the mesh exports, declared in this one module.

Naming: prefix deepfake_, base units (seconds, bytes), counters end in _total, latency
histograms in _seconds, probabilities (0..1, no unit) in _prob_fake, counts of items without
a suffix. Labels: `service` (the process), `branch`, `model_version` where a model answers.
Each process serves its own registry on its metrics port (the gateway on /metrics of its
HTTP port). tests/observability/test_metrics.py scrapes every service after an analysis;
tests/k8s (dashboard, adapter rules) and tests/observability/test_alerts.py (alert rules)
check that only these names and their labels are queried.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PROB_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))

# --- every gRPC service (recorded by the runtime's server interceptor) ---
REQUESTS = Counter(
    "deepfake_requests_total", "RPCs handled, by method and status code.",
    ["service", "method", "code"])
REQUEST_SECONDS = Histogram(
    "deepfake_request_seconds", "RPC latency from start to final status.",
    ["service", "method"], buckets=LATENCY_BUCKETS)
INFLIGHT = Gauge(
    "deepfake_inflight_requests", "RPCs in progress (an autoscaling input).",
    ["service", "method"])
QUEUE_SECONDS = Histogram(
    "deepfake_queue_seconds", "Time a request waited, not computing (an autoscaling input); "
    "branches: for a slot (DFMESH_MAX_CONCURRENT_INFERENCES) plus at the micro-batcher.",
    ["service"], buckets=LATENCY_BUCKETS)
READY = Gauge("deepfake_service_ready", "1 when health is SERVING, else 0.", ["service"])
STAGE_SECONDS = Histogram(
    "deepfake_stage_seconds", "Time spent per processing stage (ingest: spool, probe, decode, "
    "faces, audio; branches: collect, preprocess, inference, postprocess, total; fusion: "
    "ingest, each branch after its input was complete, fusion, total).",
    ["service", "stage"], buckets=LATENCY_BUCKETS)


# --- the REST gateway (recorded by gateway.app's middleware and gateway.analyses) ---
HTTP_REQUESTS = Counter(
    "deepfake_http_requests_total", "HTTP requests handled, by route template, method, status.",
    ["route", "method", "code"])
HTTP_REQUEST_SECONDS = Histogram(
    "deepfake_http_request_seconds", "HTTP latency until the response ends (SSE: stream length).",
    ["route", "method"], buckets=LATENCY_BUCKETS)
GATEWAY_ANALYSES_INFLIGHT = Gauge(
    "deepfake_gateway_analyses_inflight", "Analyses this gateway replica is running.")
GATEWAY_ANALYSES = Counter(
    "deepfake_gateway_analyses_total", "Analyses finished, by outcome (complete or error code).",
    ["outcome"])

# --- branch services (recorded by dfmesh.runtime.model_server) ---
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)

INFERENCE_SECONDS = Histogram(
    "deepfake_inference_seconds", "ONNX Runtime time per request (all session runs).",
    ["branch", "model_version"], buckets=LATENCY_BUCKETS)
BRANCH_PROB = Histogram(
    "deepfake_branch_prob_fake", "Each branch's clip-level probability, by model version "
    "(a drift signal).", ["branch", "model_version"], buckets=PROB_BUCKETS)
ITEM_PROB = Histogram(
    "deepfake_branch_item_prob_fake", "Per-item probabilities (crops, patches, windows).",
    ["branch"], buckets=PROB_BUCKETS)
BATCH_SIZE = Histogram(
    "deepfake_inference_batch_size", "Items per request sent through the model.",
    ["branch"], buckets=BATCH_BUCKETS)
BATCH_REQUESTS = Histogram(
    "deepfake_inference_batch_requests", "Requests joined into one session run by the "
    "micro-batcher (DFMESH_BATCH_WINDOW_MS).", ["branch"], buckets=(1, 2, 3, 4, 6, 8, 12, 16))
BRANCH_RESULTS = Counter(
    "deepfake_branch_results_total", "Branch results by status (OK, NO_INPUT, FALLBACK).",
    ["branch", "status"])
MODEL_INFO = Gauge(
    "deepfake_model_info", "1 for the model a branch serves and the ONNX Runtime provider in use.",
    ["branch", "model", "version", "sha256", "provider"])

# --- ingest ---
INGEST_FACES = Counter(
    "deepfake_ingest_faces_total", "Faces found in sampled frames.")
INGEST_UPLOAD_BYTES = Histogram(
    "deepfake_ingest_upload_bytes", "Size of accepted uploads.",
    buckets=tuple(2.0**p for p in range(16, 31, 2)))
INGEST_REJECTIONS = Counter(
    "deepfake_ingest_rejections_total", "Uploads refused, by reason (empty, not_media, "
    "truncated, too_large, too_long, busy, ...).", ["reason"])

# --- fusion orchestrator ---
FUSION_EARLY_EXITS = Counter(
    "deepfake_fusion_early_exits_total", "Analyses ended by the tiny_gate early exit.")
FUSION_DEGRADED = Counter(
    "deepfake_fusion_degraded_total", "Degraded results, by the branch that was missing.",
    ["branch"])
FUSION_VERDICTS = Counter(
    "deepfake_fusion_verdicts_total", "Results by verdict, fusion head and whether a planned "
    "branch was missing (degraded: true|false).", ["verdict", "head", "degraded"])
FUSION_PROB_FAKE = Histogram(
    "deepfake_fusion_prob_fake", "The fused probability that a clip is fake.",
    buckets=PROB_BUCKETS)
FUSION_CACHE_LOOKUPS = Counter(
    "deepfake_fusion_cache_lookups_total", "Result cache lookups by result (hit, miss).",
    ["result"])
BRANCH_CALL_SECONDS = Histogram(
    "deepfake_branch_call_seconds", "Orchestrator -> branch call latency, by outcome "
    "(ok, no_input, unavailable, late, failed, not_serving).",
    ["branch", "outcome"], buckets=LATENCY_BUCKETS)


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    """Serve /metrics on host:port (no-op when port is 0)."""
    if port:
        start_http_server(port, addr=host)
