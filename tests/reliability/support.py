"""Helpers for the reliability tests: a stack of real processes on loopback, memory read
from /proc, the directories that must be left empty, and calls by REST and gRPC."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc import aio

from deepfake.v1 import (
    ingest_pb2,
    ingest_pb2_grpc,
    media_pb2,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
)
from dfmesh.client import analyze_options, result_to_dict
from tests.mesh import Process

CASE_SECONDS = 60.0
"""Wall-clock bound for any one upload, refused or analyzed: a hang fails the test."""


def proc_status_kib(pid: int, field_name: str) -> int:
    """A kB figure from /proc/<pid>/status: VmRSS (now) or VmHWM (peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


@dataclass
class Stack:
    """ingest + fusion (+ gateways) of our own, on the shared mesh's branches."""

    processes: dict[str, Process]
    fusion_addr: str
    ingest_addr: str
    gateway_url: str
    ingest_temp: Path
    spool: Path
    env: dict[str, str]
    logs: Path
    extra: list[Process] = field(default_factory=list)

    def memory(self) -> dict[str, dict[str, int]]:
        """{service: {rss_mib, peak_mib}} for every live process of the stack."""
        out = {}
        for name, p in self.processes.items():
            if p.popen.poll() is None:
                pid = p.popen.pid
                out[name] = {"rss_mib": proc_status_kib(pid, "VmRSS") // 1024,
                             "peak_mib": proc_status_kib(pid, "VmHWM") // 1024}
        return out

    def leftovers(self, settle_seconds: float = 5.0) -> list[str]:
        """Whatever is still in ingest's temp dir and the gateway's spool dir after up to
        `settle_seconds` (an analysis answered early, e.g. by the gate, cancels ingest, which
        removes its files a moment after the answer)."""
        deadline = time.monotonic() + settle_seconds
        while True:
            left = sorted(str(p) for d in (self.ingest_temp, self.spool) for p in d.iterdir())
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)


async def _ingest_requests(data: bytes, filename: str, declared_size: int | None,
                           header_first: bool) -> AsyncIterator[ingest_pb2.IngestRequest]:
    header = ingest_pb2.IngestRequest(header=ingest_pb2.IngestHeader(
        upload=media_pb2.UploadHeader(filename=filename, declared_size=(
            len(data) if declared_size is None else declared_size))))
    if header_first:
        yield header
    for i in range(0, len(data), 256 * 1024):
        yield ingest_pb2.IngestRequest(data=data[i: i + 256 * 1024])
    if not header_first:
        yield header


async def ingest_call(addr: str, data: bytes, filename: str, *, declared_size: int | None = None,
                      header_first: bool = True) -> tuple[grpc.StatusCode, str, list[str]]:
    """(status, details, packet kinds) of one Ingest call straight to ingest."""
    kinds: list[str] = []
    async with aio.insecure_channel(addr, options=[
            ("grpc.max_receive_message_length", 64 * 2**20)]) as channel:
        call = ingest_pb2_grpc.IngestServiceStub(channel).Ingest(
            _ingest_requests(data, filename, declared_size, header_first), timeout=CASE_SECONDS)
        try:
            async for packet in call:
                kinds.append(packet.WhichOneof("payload"))
        except aio.AioRpcError as exc:
            return exc.code(), exc.details() or "", kinds
    return grpc.StatusCode.OK, "", kinds


async def fusion_call(addr: str, path: Path, filename: str,
                      ) -> tuple[grpc.StatusCode, str, dict | None]:
    """(status, details, result dict) of one Analyze call to fusion, the upload named
    `filename` (any string: the protocol carries the name, not a path). As dfmesh.client
    does, the data follows fusion's first answer."""
    header = orchestrator_pb2.AnalyzeRequest(header=orchestrator_pb2.AnalyzeHeader(
        upload=media_pb2.UploadHeader(filename=filename, declared_size=path.stat().st_size,
                                      content_type="application/octet-stream"),
        options=analyze_options()))
    data = path.read_bytes()
    async with aio.insecure_channel(addr) as channel:
        call = orchestrator_pb2_grpc.OrchestratorServiceStub(channel).Analyze(
            timeout=CASE_SECONDS)
        sent, result = False, None
        try:
            await call.write(header)
            while (event := await call.read()) is not aio.EOF:
                if not sent:
                    for i in range(0, len(data), 256 * 1024):
                        await call.write(orchestrator_pb2.AnalyzeRequest(
                            data=data[i: i + 256 * 1024]))
                    await call.done_writing()
                    sent = True
                if event.HasField("result"):
                    result = result_to_dict(event.result)
        except (aio.AioRpcError, aio.UsageError, asyncio.InvalidStateError):
            # A write that raced the server's status: the call's own status says why.
            pass
        code = await call.code()
        return code, await call.details() or "", result if code == grpc.StatusCode.OK else None


def timed(fn, *args, **kwargs):
    """(seconds, fn's value) for a coroutine function run to completion, or a plain one."""
    start = time.monotonic()
    value = fn(*args, **kwargs)
    if asyncio.iscoroutine(value):
        value = asyncio.run(value)
    return time.monotonic() - start, value

