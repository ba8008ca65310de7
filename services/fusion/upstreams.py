"""The orchestrator's gRPC clients: ingest, the six branches, and a cached health view.

One channel per address (round-robin over every address a `dns:///` name resolves to, from
dfmesh.runtime.channels); every call carries a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deepfake.v1 import branch_pb2, branch_pb2_grpc, ingest_pb2, ingest_pb2_grpc
from dfmesh.runtime.channels import create_channel
from services.fusion.settings import BRANCH_NAMES, FusionSettings

BRANCH_SERVICE = "deepfake.v1.BranchService"
HEALTH_CHECK_TIMEOUT_SECONDS = 1.0


class Upstreams:
    """Channels and stubs to ingest and the branches, plus health answers cached for
    `settings.health_cache_seconds` so a busy orchestrator does not ask on every request."""

    def __init__(self, settings: FusionSettings) -> None:
        self.settings = settings
        self._channels: dict[str, aio.Channel] = {}
        self._health: dict[str, tuple[float, bool]] = {}

    def _channel(self, address: str) -> aio.Channel:
        if address not in self._channels:
            self._channels[address] = create_channel(address, self.settings)
        return self._channels[address]

    @property
    def ingest_address(self) -> str:
        return self.settings.ingest_addr

    def ingest(self, requests: AsyncIterator[ingest_pb2.IngestRequest],
               timeout: float) -> aio.StreamStreamCall:
        """Open the ingest stream: upload requests in, MediaPackets out."""
        stub = ingest_pb2_grpc.IngestServiceStub(self._channel(self.settings.ingest_addr))
        return stub.Ingest(requests, timeout=timeout)

    def branch(self, name: str, requests: AsyncIterator[branch_pb2.BranchRequest],
               timeout: float) -> aio.StreamUnaryCall:
        """Open a branch call: BranchRequests in, one BranchResult out."""
        stub = branch_pb2_grpc.BranchServiceStub(self._channel(self.settings.branch_address(name)))
        return stub.Analyze(requests, timeout=timeout)

    async def serving(self, name: str) -> bool:
        """Whether branch `name` reports SERVING (False when down or NOT_SERVING), cached."""
        now = time.monotonic()
        cached = self._health.get(name)
        if cached is not None and now - cached[0] < self.settings.health_cache_seconds:
            return cached[1]
        stub = health_pb2_grpc.HealthStub(self._channel(self.settings.branch_address(name)))
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=BRANCH_SERVICE),
                                     timeout=HEALTH_CHECK_TIMEOUT_SECONDS)
            ok = reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            ok = False
        self._health[name] = (time.monotonic(), ok)
        return ok

    def forget_health(self, name: str) -> None:
        """Drop a cached answer (a call to `name` just failed)."""
        self._health.pop(name, None)

    async def serving_all(self, names: tuple[str, ...] = BRANCH_NAMES) -> dict[str, bool]:
        answers = await asyncio.gather(*(self.serving(n) for n in names))
        return dict(zip(names, answers, strict=True))

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._channels.values()))
        self._channels.clear()
