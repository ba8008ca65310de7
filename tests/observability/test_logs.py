"""Logs of the traced mesh after one analysis: JSON lines with the fields operators filter
on, and neither the upload (its name, its bytes) nor the caller's API key anywhere in
them or in the exported spans (the second analysis sends the same file over gRPC)."""

from __future__ import annotations

import json

import pytest

from tests.observability.conftest import API_KEY, MARKER, Analysis, TracedMesh

pytestmark = pytest.mark.slow

FIELDS = ("timestamp", "severity", "service", "message")


def test_every_log_line_is_json_with_the_operator_fields(traced_mesh: TracedMesh,
                                                         analysis: Analysis,
                                                         early_exit_result) -> None:
    for service, lines in traced_mesh.log_lines().items():
        assert lines, f"{service} logged nothing"
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"{service} wrote a line that is not JSON: {line[:200]!r}")
            assert all(entry.get(f) for f in FIELDS), (service, entry)
            assert entry["service"] == service
            # Two valid analyses (one ended early, cancelling ingest): nothing is an error,
            # e.g. no "Failed to detach context" from a span left open across tasks.
            assert entry["severity"] in ("DEBUG", "INFO", "WARNING"), (service, entry)


def test_no_upload_content_or_secret_in_logs_or_spans(traced_mesh: TracedMesh,
                                                      analysis: Analysis,
                                                      early_exit_result) -> None:
    texts = {f"{name}.log": "\n".join(lines) for name, lines in traced_mesh.log_lines().items()}
    texts |= {p.name: p.read_text() for p in traced_mesh.traces.glob("*.jsonl")}
    assert len(texts) >= 18
    upload_piece = analysis.upload.read_bytes()[4096:4160].hex()
    for name, text in texts.items():
        assert MARKER not in text, f"the upload's name or metadata is in {name}"
        assert API_KEY not in text, f"the API key is in {name}"
        assert upload_piece not in text, f"upload bytes (hex) are in {name}"
