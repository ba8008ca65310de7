"""Gateway settings from DFMESH_* environment variables, checked at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from dfmesh.runtime.config import REPO_ROOT, MiB, ServiceSettings, default_address
from gateway.auth import ApiKeyConfigError, Client, load_api_keys, parse_api_keys


class GatewaySettings(ServiceSettings):
    """Everything the gateway can be told, e.g. DFMESH_FUSION_ADDR, DFMESH_MAX_UPLOAD_BYTES.

    The clip duration limit is not here: ingest enforces DFMESH_MAX_DURATION_SECONDS after
    decoding, and the gateway passes its refusal on as 422.
    """

    service_name: str = "gateway"

    fusion_addr: str = Field(default_address("fusion"), description="the orchestrator")
    redis_url: str = Field("", description="e.g. redis://redis:6379/0; empty = state in memory")

    max_upload_bytes: int = Field(512 * MiB, ge=1, description="larger uploads get 413")
    max_concurrent_analyses: int = Field(2, ge=1, description="more at once get 429")
    busy_retry_seconds: float = Field(5.0, ge=1, description="Retry-After sent with 429 "
                                      "(whole seconds, rounded up, as HTTP wants)")
    result_ttl_seconds: float = Field(3600.0, gt=0,
                                      description="how long a finished analysis is kept")
    analysis_timeout_seconds: float = Field(300.0, gt=0,
                                            description="deadline of one Analyze call")
    readiness_timeout_seconds: float = Field(2.0, gt=0, description="fusion health check")
    upload_chunk_bytes: int = Field(MiB, ge=64 * 1024, le=16 * MiB,
                                    description="size of the chunks streamed to fusion")
    spool_dir: Path | None = Field(None, description="where async uploads are spooled; "
                                                     "None = the system temp dir")
    web_dist: Path = Field(REPO_ROOT / "web" / "dist", description="the built web UI")

    # Access (gateway/auth.py): no keys = open, the embedded default on loopback.
    api_keys: str = Field("", repr=False, description="key=client[:scope] entries, comma "
                                                      "separated; scope analyze (default) or read")
    api_keys_file: Path | None = Field(None, description="the same entries, one per line")
    auth_required: bool = Field(False, description="refuse to start without any API key")
    rate_limit_per_minute: float = Field(60.0, gt=0, description="analyses per key per minute")
    rate_limit_burst: int = Field(10, ge=1, description="analyses a key may start at once")

    @model_validator(mode="after")
    def _check_api_keys(self) -> GatewaySettings:
        parse_api_keys(self.api_keys)  # the file is read at start (create_app), not here
        if self.auth_required and not (self.api_keys or self.api_keys_file):
            raise ValueError("DFMESH_AUTH_REQUIRED is set but no API key is configured "
                             "(DFMESH_API_KEYS or DFMESH_API_KEYS_FILE)")
        return self

    def client_keys(self) -> dict[str, Client]:
        """The configured API keys (as digests) and their clients; empty = auth off.
        ApiKeyConfigError for an unreadable or malformed list, or none where required."""
        keys = load_api_keys(self.api_keys, self.api_keys_file)
        if self.auth_required and not keys:
            raise ApiKeyConfigError("DFMESH_AUTH_REQUIRED is set but the configured key "
                                    "list holds no key")
        return keys

    @property
    def http_port(self) -> int:
        """The HTTP port: DFMESH_PORT, else 8080."""
        return self.grpc_port
