"""Every service's /metrics after the two analyses of conftest (one through the gateway with
every branch, one over gRPC that the gate ended early, cancelling ingest): the series of
dfmesh/runtime/metrics.py exist with the labels and values those analyses must have left."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.mesh import BRANCHES
from tests.observability.conftest import Analysis, TracedMesh

pytestmark = pytest.mark.slow


def scrape(url: str) -> list[Sample]:
    with urllib.request.urlopen(url, timeout=5.0) as reply:
        text = reply.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of `name` over samples whose labels include `labels`."""
    found = [s.value for s in samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert found, f"no {name} with {labels}"
    return sum(found)


def check_histogram(samples: list[Sample], name: str, **labels: str) -> float:
    """Buckets never decrease, +Inf equals _count, _sum is non-negative; returns _count."""
    for series in {tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                   for s in samples if s.name == name + "_bucket"
                   and all(s.labels.get(k) == v for k, v in labels.items())}:
        match = dict(series)
        buckets = sorted((float(s.labels["le"]), s.value) for s in samples
                          if s.name == name + "_bucket"
                          and {k: v for k, v in s.labels.items() if k != "le"} == match)
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), f"{name}{match}: buckets decrease"
        assert buckets[-1][0] == float("inf")
        assert counts[-1] == value(samples, name + "_count", **match)
        assert value(samples, name + "_sum", **match) >= 0
    return value(samples, name + "_count", **labels)


# Requests each service answered OK: the gate took part in both analyses, the other
# branches in the first only; ingest's second stream may end CANCELLED by the early exit.
CALLS = {"fusion": 2, "tiny_gate": 2, **{b: 1 for b in BRANCHES if b != "tiny_gate"}}


@pytest.fixture(scope="module")
def scraped(traced_mesh: TracedMesh, analysis: Analysis,
            early_exit_result) -> dict[str, list[Sample]]:
    grpc_services = {p.name: f"http://127.0.0.1:{traced_mesh.metrics_port(p.name)}/metrics"
                     for p in traced_mesh.mesh.processes}
    urls = dict(grpc_services, gateway=traced_mesh.url + "/metrics")
    return {name: scrape(url) for name, url in urls.items()}


def test_every_grpc_service_counts_and_times_its_requests(scraped) -> None:
    methods = {"ingest": "/deepfake.v1.IngestService/Ingest",
               "fusion": "/deepfake.v1.OrchestratorService/Analyze",
               **{b: "/deepfake.v1.BranchService/Analyze" for b in BRANCHES}}
    for service, method in methods.items():
        samples = scraped[service]
        ok = value(samples, "deepfake_requests_total", service=service, method=method, code="OK")
        assert ok == CALLS.get(service, ok) and ok >= 1, (service, ok)
        every_code = value(samples, "deepfake_requests_total", service=service, method=method)
        timed = check_histogram(samples, "deepfake_request_seconds", service=service,
                                method=method)
        assert timed == every_code
        assert value(samples, "deepfake_inflight_requests", service=service, method=method) == 0
        assert value(samples, "deepfake_service_ready", service=service) == 1


def test_branches_export_inference_queue_scores_and_model(scraped) -> None:
    for branch in BRANCHES:
        samples, calls = scraped[branch], CALLS[branch]
        info = [s for s in samples if s.name == "deepfake_model_info" and s.value == 1]
        assert len(info) == 1, info
        labels = info[0].labels
        assert labels["branch"] == branch and labels["version"] and labels["model"]
        assert labels["provider"] == "CPUExecutionProvider"
        version = labels["version"]
        assert check_histogram(samples, "deepfake_inference_seconds", branch=branch,
                               model_version=version) == calls
        assert check_histogram(samples, "deepfake_branch_prob_fake", branch=branch,
                               model_version=version) == calls
        assert check_histogram(samples, "deepfake_queue_seconds", service=branch) == calls
        assert check_histogram(samples, "deepfake_branch_item_prob_fake", branch=branch) >= 1
        for stage in ("collect", "preprocess", "inference", "postprocess", "total"):
            assert check_histogram(samples, "deepfake_stage_seconds", service=branch,
                                   stage=stage) == calls
        assert value(samples, "deepfake_branch_results_total", branch=branch,
                     status="OK") == calls


def test_ingest_exports_its_stages_faces_and_upload_size(scraped) -> None:
    samples = scraped["ingest"]
    for stage in ("spool", "probe", "decode", "faces", "audio"):
        assert check_histogram(samples, "deepfake_stage_seconds", service="ingest",
                               stage=stage) >= 1
    assert value(samples, "deepfake_ingest_faces_total") > 0
    assert check_histogram(samples, "deepfake_ingest_upload_bytes") == 2
    assert value(samples, "deepfake_ingest_upload_bytes_sum") > 10_000


def test_fusion_exports_verdicts_exits_branch_calls_and_stages(
        scraped, analysis: Analysis, early_exit_result) -> None:
    samples = scraped["fusion"]
    verdict = analysis.final["result"]["verdict"].upper()
    assert value(samples, "deepfake_fusion_verdicts_total") == 2
    assert value(samples, "deepfake_fusion_verdicts_total", verdict=verdict, head="5way",
                 degraded="false") == 1
    assert value(samples, "deepfake_fusion_verdicts_total", verdict="AUTHENTIC",
                 head="early_exit", degraded="false") == 1
    assert value(samples, "deepfake_fusion_early_exits_total") == 1
    # Same file both times, but other options: two misses of the result cache.
    assert value(samples, "deepfake_fusion_cache_lookups_total", result="miss") == 2
    assert check_histogram(samples, "deepfake_fusion_prob_fake") == 2
    assert value(samples, "deepfake_fusion_prob_fake_sum") == pytest.approx(
        analysis.final["result"]["probFake"] + early_exit_result.prob_fake, abs=1e-6)
    for branch in BRANCHES:
        assert check_histogram(samples, "deepfake_branch_call_seconds", branch=branch,
                               outcome="ok") == CALLS[branch]
        assert check_histogram(samples, "deepfake_stage_seconds", service="fusion",
                               stage=branch) == CALLS[branch]
    for stage in ("ingest", "fusion", "total"):
        assert check_histogram(samples, "deepfake_stage_seconds", service="fusion",
                               stage=stage) == 2


def test_gateway_counts_http_requests_and_analyses(scraped) -> None:
    samples = scraped["gateway"]
    assert value(samples, "deepfake_http_requests_total", route="/v1/analyses",
                 method="POST", code="202") == 1
    polls = value(samples, "deepfake_http_requests_total", route="/v1/analyses/{analysis_id}",
                  method="GET", code="200")
    assert polls >= 1
    assert check_histogram(samples, "deepfake_http_request_seconds", route="/v1/analyses",
                           method="POST") == 1
    assert value(samples, "deepfake_gateway_analyses_total", outcome="complete") == 1
    assert value(samples, "deepfake_gateway_analyses_inflight") == 0
