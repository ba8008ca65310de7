"""`python -m gateway`: serve the REST API and the web UI with uvicorn."""

from __future__ import annotations

import sys

import uvicorn

from dfmesh.runtime.config import load_settings
from dfmesh.runtime.lifeline import exit_with
from dfmesh.runtime.logging import configure_logging
from dfmesh.runtime.tracing import instrument_fastapi, setup_tracing
from gateway.app import create_app
from gateway.auth import ApiKeyConfigError
from gateway.settings import GatewaySettings


def main() -> None:
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", settings.log_level, settings.log_format)
    setup_tracing("gateway", enabled=settings.tracing, otlp_endpoint=settings.otlp_endpoint,
                  trace_file=settings.trace_file)
    try:
        app = create_app(settings)
    except ApiKeyConfigError as exc:
        print(f"invalid configuration for GatewaySettings:\n  {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    instrument_fastapi(app)
    if settings.exit_with_pid:
        exit_with(settings.exit_with_pid, settings.grace_seconds)
    uvicorn.run(app, host=settings.host, port=settings.http_port,
                log_config=None, access_log=False, timeout_graceful_shutdown=int(
                    settings.grace_seconds))


if __name__ == "__main__":
    main()
