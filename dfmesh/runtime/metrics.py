"""Every Prometheus metric the mesh exports, declared in this one module.

Naming: prefix deepfake_, base units (seconds, bytes), counters end in _total, latency
histograms in _seconds. Each process serves its own registry on its metrics port.
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
    "deepfake_queue_seconds", "Time a request waited for a worker slot (an autoscaling input).",
    ["service"], buckets=LATENCY_BUCKETS)
READY = Gauge("deepfake_service_ready", "1 when health is SERVING, else 0.", ["service"])
STAGE_SECONDS = Histogram(
    "deepfake_stage_seconds", "Time spent per processing stage.",
    ["service", "stage"], buckets=LATENCY_BUCKETS)


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    """Serve /metrics on host:port (no-op when port is 0)."""
    if port:
        start_http_server(port, addr=host)
