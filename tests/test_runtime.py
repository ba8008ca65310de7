"""The shared runtime against a real grpc.aio server on a loopback port."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from deepfake.v1 import branch_pb2, branch_pb2_grpc
from dfmesh.runtime.config import ServiceSettings
from dfmesh.runtime.errors import InvalidInput
from dfmesh.runtime.server import BaseService, running

BRANCH = "deepfake.v1.BranchService"


class EchoBranch(branch_pb2_grpc.BranchServiceServicer):
    """Behaves by the analysis id in the header: raise, sleep or answer."""

    async def Analyze(self, request_iterator, context):
        header = None
        async for request in request_iterator:
            if request.HasField("header"):
                header = request.header
        match header.analysis_id if header else "":
            case "invalid":
                raise InvalidInput("frame 3 is not an image; send RAW_RGB8 crops")
            case "boom":
                raise RuntimeError("secret internal detail")
            case "slow":
                await asyncio.sleep(1.0)
        return branch_pb2.BranchResult(branch="echo", prob_fake=0.25)


class EchoService(BaseService):
    name = "echo"
    health_names = (BRANCH,)

    def __init__(self) -> None:
        self.release = asyncio.Event()

    def register(self, server: aio.Server) -> None:
        branch_pb2_grpc.add_BranchServiceServicer_to_server(EchoBranch(), server)

    async def load(self) -> None:
        await self.release.wait()


def settings() -> ServiceSettings:
    return ServiceSettings(service_name="echo", metrics_port=0)


async def call(port: int, analysis_id: str, timeout: float = 5.0) -> branch_pb2.BranchResult:
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = branch_pb2_grpc.BranchServiceStub(channel)

        async def requests():
            yield branch_pb2.BranchRequest(header=branch_pb2.BranchHeader(analysis_id=analysis_id))

        return await stub.Analyze(requests(), timeout=timeout)


async def health_status(port: int, service: str = "") -> int:
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return reply.status


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_health_serving_only_after_load() -> None:
    from dfmesh.runtime.server import start_service

    service, port = EchoService(), free_port()
    starting = asyncio.create_task(start_service(service, settings(), port=port))
    await asyncio.sleep(0.3)
    assert not starting.done()
    assert await health_status(port) == health_pb2.HealthCheckResponse.NOT_SERVING
    service.release.set()
    server = await starting
    try:
        assert await health_status(port) == health_pb2.HealthCheckResponse.SERVING
        assert await health_status(port, BRANCH) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.drain_and_stop(0.5)


async def test_not_serving_while_loading() -> None:
    from dfmesh.runtime.server import create_server

    service = EchoService()
    server = await create_server(service, settings(), port=0)
    try:
        for name in ("", BRANCH):
            status = await health_status(server.port, name)
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        await server.set_serving(True)
        assert await health_status(server.port) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.drain_and_stop(0.5)


@pytest.fixture
async def echo_server():
    service = EchoService()
    service.release.set()
    async with running(service, settings()) as server:
        yield server


async def test_reflection_lists_services(echo_server) -> None:
    async with aio.insecure_channel(f"127.0.0.1:{echo_server.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def requests():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names = []
        async for reply in stub.ServerReflectionInfo(requests(), timeout=5):
            names += [s.name for s in reply.list_services_response.service]
    assert BRANCH in names
    assert "grpc.health.v1.Health" in names


async def test_domain_error_maps_to_status_with_message(echo_server) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        await call(echo_server.port, "invalid")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "RAW_RGB8" in info.value.details()


async def test_unexpected_error_is_internal_without_details(echo_server) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        await call(echo_server.port, "boom")
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in info.value.details()
    # The server keeps serving after an error.
    assert (await call(echo_server.port, "ok")).prob_fake == pytest.approx(0.25)


async def test_drain_lets_inflight_call_finish() -> None:
    service = EchoService()
    service.release.set()
    from dfmesh.runtime.server import start_service

    server = await start_service(service, settings(), port=0)
    inflight = asyncio.create_task(call(server.port, "slow"))
    await asyncio.sleep(0.3)
    stopping = asyncio.create_task(server.drain_and_stop(grace=5.0))
    await asyncio.sleep(0.1)
    result = await inflight
    await stopping
    assert result.prob_fake == pytest.approx(0.25)
