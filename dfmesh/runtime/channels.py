"""Outgoing gRPC channels: size limits, keepalive, client-side round-robin, TLS, tracing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from dfmesh.runtime.config import ServiceSettings
from dfmesh.runtime.tracing import client_interceptors

RECONNECT_BACKOFF_MAX_MS = 5000
_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def channel_options(settings: ServiceSettings) -> list[tuple[str, Any]]:
    """Options for every outgoing channel. round_robin spreads calls over every address a
    `dns:///` name resolves to (headless Services in Kubernetes)."""
    return [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_seconds * 1000)),
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.enable_retries", 0),
        # gRPC's default backoff grows to 120 s while a peer is down, so a restarted
        # service would stay unused for up to two minutes; cap it.
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
    ]


def client_credentials(settings: ServiceSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials when DFMESH_TLS_CA_FILE is set; the service's own cert and key are
    presented as the client certificate for mutual TLS."""
    if not settings.tls_ca_file:
        return None
    cert = Path(settings.tls_cert_file).read_bytes() if settings.tls_cert_file else None
    key = Path(settings.tls_key_file).read_bytes() if settings.tls_key_file else None
    return grpc.ssl_channel_credentials(
        root_certificates=Path(settings.tls_ca_file).read_bytes(),
        private_key=key, certificate_chain=cert)


def create_channel(address: str, settings: ServiceSettings) -> aio.Channel:
    """An aio channel to `address` ("host:port" or "dns:///name:port")."""
    options = channel_options(settings)
    interceptors = client_interceptors() or None
    creds = client_credentials(settings)
    if creds is None:
        return aio.insecure_channel(address, options=options, interceptors=interceptors)
    return aio.secure_channel(address, creds, options=options, interceptors=interceptors)
