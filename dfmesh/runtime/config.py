"""Typed configuration from environment variables, checked once at start-up.

Every process reads `DFMESH_*` variables; `dfmesh up` and the Kubernetes manifests set the
same names. One name means one thing: a shared `DFMESH_<NAME>` is the same field, type and
unit in every service that reads it, and each service reads its own
`DFMESH_<SERVICE>_<NAME>` first. A knob whose unit or sensible value differs between
services (a batch of 1024 patches is not a batch of 16 crops) is in the class's
`per_service` names: read only under the service's own name. A wrong value, a per-service
knob set under the shared name, or a retired name stops the process at start with a
message naming the variable.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from dfmesh.branches import (
    BRANCH_NAMES,
    BRANCHES,
    FUSION_PORT,
    GATEWAY_PORT,
    INGEST_PORT,
    start_order,
)

SERVICES: tuple[str, ...] = ("gateway", "fusion", "ingest", *BRANCH_NAMES)
DEFAULT_PORTS: dict[str, int] = {"gateway": GATEWAY_PORT, "fusion": FUSION_PORT,
                                 "ingest": INGEST_PORT, **{b.name: b.port for b in BRANCHES}}
GRPC_START_ORDER: tuple[str, ...] = ("ingest", *start_order(), "fusion")
"""The gRPC services in the order `dfmesh up` starts them (the gateway comes last)."""
METRICS_PORT_OFFSET = 1000
"""A gRPC service on port P serves Prometheus metrics on P + 1000 unless told otherwise."""

REPO_ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


NOT_FROM_ENV = frozenset({"service_name"})
"""Fields no variable sets: a service's name decides its port, prefix and metrics."""


class _EnvSource(EnvSettingsSource):
    """Environment variables under one prefix, for every field but those in `skip`."""

    def __init__(self, settings_cls: type[BaseSettings], prefix: str,
                 skip: frozenset[str]) -> None:
        super().__init__(settings_cls, env_prefix=prefix)
        self.skip = skip

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in self.skip:
            return None, field_name, False
        return super().get_field_value(field, field_name)


class ServiceSettings(BaseSettings):
    """Settings every gRPC service shares. Subclasses add their own fields."""

    model_config = SettingsConfigDict(env_prefix="DFMESH_", extra="ignore", frozen=True)
    per_service: ClassVar[frozenset[str]] = frozenset()
    """Fields read only as DFMESH_<SERVICE>_<NAME> (their unit or value differs by service)."""
    retired: ClassVar[dict[str, str]] = {}
    """Variables this service no longer reads -> what to do instead (set = start-up error)."""

    service_name: str = Field("", description="set by each service's settings class")
    host: str = Field("127.0.0.1", description="interface to bind; 0.0.0.0 in containers")
    port: int = Field(0, ge=0, le=65535, description="gRPC port; 0 = the service's default")
    metrics_port: int = Field(-1, ge=-1, le=65535,
                              description="Prometheus port; -1 = port+1000, 0 = disabled")
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$",
                           description="DEBUG, INFO, WARNING or ERROR")
    log_format: str = Field("json", pattern="^(json|text)$",
                            description="json (one object a line) or text (for people)")

    max_message_bytes: int = Field(64 * MiB, ge=MiB, description="send and receive limit")
    max_concurrent_rpcs: int = Field(0, ge=0, description="0 = unbounded")
    grace_seconds: float = Field(20.0, ge=0, description="drain time after SIGTERM")
    exit_with_pid: int = Field(0, ge=0, description="stop once this process is gone (test and "
                                                    "benchmark meshes); 0 = never")
    keepalive_time_seconds: float = Field(30.0, gt=0, description="HTTP/2 ping interval on "
                                          "idle connections")
    keepalive_timeout_seconds: float = Field(10.0, gt=0, description="a ping unanswered this "
                                             "long closes the connection")
    max_connection_age_seconds: float = Field(300.0, gt=0,
                                              description="so new replicas receive traffic")
    max_connection_age_grace_seconds: float = Field(30.0, ge=0, description="calls in flight "
                                                    "finish within this after that age")

    tracing: bool = Field(False, description="switch OpenTelemetry tracing on")
    otlp_endpoint: str = Field("", description="OTLP/gRPC collector, e.g. http://otel:4317")
    trace_file: str = Field("", description="append spans as JSON lines to this file; "
                                            "{service} in it becomes the service name")

    tls_cert_file: str = Field("", description="PEM certificate: serve TLS (with the key)")
    tls_key_file: str = Field("", description="PEM private key of the certificate")
    tls_ca_file: str = Field("", description="with cert and key: require client certs (mTLS)")

    model_repo: Path = Field(REPO_ROOT / "models", description="the model repository root")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """DFMESH_<SERVICE>_<FIELD> (the service's own prefix, e.g. DFMESH_VISUAL_MAX_BATCH_SIZE)
        before the shared DFMESH_<FIELD>, which per-service fields do not read; no variable
        sets the service's name."""
        own, shared = service_prefix(cls), cls.model_config.get("env_prefix", "")
        sources = [_EnvSource(settings_cls, own, NOT_FROM_ENV)] if own else []
        return (init_settings, *sources,
                _EnvSource(settings_cls, shared, NOT_FROM_ENV | cls.per_service),
                dotenv_settings, file_secret_settings)

    @model_validator(mode="after")
    def _check_tls(self) -> ServiceSettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("DFMESH_TLS_CERT_FILE and DFMESH_TLS_KEY_FILE go together")
        return self

    @property
    def grpc_port(self) -> int:
        return self.port or DEFAULT_PORTS.get(self.service_name, 0)

    @property
    def effective_metrics_port(self) -> int:
        if self.metrics_port >= 0:
            return self.metrics_port
        return self.grpc_port + METRICS_PORT_OFFSET if self.grpc_port else 0


def service_prefix(cls: type[BaseSettings]) -> str:
    """DFMESH_<SERVICE>_ for a settings class whose service_name has a default, else ""."""
    field = cls.model_fields.get("service_name")
    name = field.default if field is not None and isinstance(field.default, str) else ""
    return f"DFMESH_{name.upper()}_" if name else ""


def default_address(service: str) -> str:
    """Where a service listens on the embedded default (loopback)."""
    return f"127.0.0.1:{DEFAULT_PORTS[service]}"


S = TypeVar("S", bound=BaseSettings)


def misplaced_variables(cls: type[ServiceSettings]) -> list[str]:
    """What is wrong with the environment's names for `cls`: a per-service knob set under
    the shared name, a retired name set."""
    prefix, own = cls.model_config.get("env_prefix", ""), service_prefix(cls)
    problems = [f"{prefix}{name.upper()}: set per service, as {own}{name.upper()}"
                for name in cls.model_fields
                if name in cls.per_service and f"{prefix}{name.upper()}" in os.environ]
    problems += [f"{name}: no longer a setting; {instead}"
                 for name, instead in cls.retired.items() if name in os.environ]
    return problems


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment; on a bad value or name print which variable
    and exit."""
    prefix, own = cls.model_config.get("env_prefix", ""), service_prefix(cls)
    lines = [f"  {problem}" for problem in (
        misplaced_variables(cls) if issubclass(cls, ServiceSettings) else [])]
    try:
        settings = cls(**overrides)
    except ValidationError as exc:
        for err in exc.errors():
            field = "_".join(str(p) for p in err["loc"]).upper()
            if issubclass(cls, ServiceSettings) and field.lower() in cls.per_service:
                names = f"{own}{field}"
            else:
                names = f"{prefix}{field}" + (f" (or {own}{field})" if own and field else "")
            # The value itself stays out: it may be a secret (an API key, a TLS path).
            lines.append(f"  {names}: {err['msg']}")
    if lines:
        print("\n".join([f"invalid configuration for {cls.__name__}:", *lines]),
              file=sys.stderr)
        raise SystemExit(2) from None
    return settings
