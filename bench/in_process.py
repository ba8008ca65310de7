"""The same pipeline in one process, without gRPC: the fusion orchestrator calling the ingest
and branch servicers' code directly (no sockets, no serialization), against the mesh.

`InProcessUpstreams` stands where services.fusion.upstreams.Upstreams stands: `ingest()`
returns the ingest servicer's packet stream, `branch()` the branch servicer's answer; both
are the very objects the gRPC servers would serialize. Everything else (the orchestrator's
streaming and gate logic, MTCNN, ONNX Runtime, fusion) is the code the mesh runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from deepfake.v1 import branch_pb2, ingest_pb2, media_pb2
from dfmesh.runtime.branch_servicer import BranchServicer
from dfmesh.runtime.model_server import ModelServer
from services.branch_servers import branch_servers
from services.fusion.fusion import load_bundle
from services.fusion.orchestrator import AnalysisOptions, AnalysisOutcome, Orchestrator
from services.fusion.settings import FusionSettings
from services.ingest.servicer import IngestService, IngestServicer
from services.ingest.settings import IngestSettings

BRANCH_SERVERS = branch_servers()
CHUNK = 1 << 20


class _StreamCall:
    """An async stream with grpc.aio's cancel()."""

    def __init__(self, stream: AsyncIterator[media_pb2.MediaPacket]) -> None:
        self._stream = stream

    def __aiter__(self) -> AsyncIterator[media_pb2.MediaPacket]:
        return aiter(self._stream)

    def cancel(self) -> None:
        """The orchestrator cancels its own task, which stops the stream where it waits."""


class _UnaryCall:
    """An awaitable answer with grpc.aio's cancel()."""

    def __init__(self, answer: asyncio.Future) -> None:
        self._task = answer

    def __await__(self):
        return self._task.__await__()

    def cancel(self) -> None:
        self._task.cancel()


class InProcessUpstreams:
    """services.fusion.upstreams.Upstreams without gRPC."""

    ingest_address = "in-process"

    def __init__(self, ingest: IngestService, branches: dict[str, ModelServer]) -> None:
        self._ingest = IngestServicer(ingest)
        self._branches = {name: BranchServicer(model) for name, model in branches.items()}

    def ingest(self, requests: AsyncIterator[ingest_pb2.IngestRequest],
               timeout: float) -> _StreamCall:
        return _StreamCall(self._ingest.Ingest(requests, None))  # type: ignore[arg-type]

    def branch(self, name: str, requests: AsyncIterator[branch_pb2.BranchRequest],
               timeout: float) -> _UnaryCall:
        answer = self._branches[name].Analyze(requests, None)  # type: ignore[arg-type]
        return _UnaryCall(asyncio.ensure_future(answer))

    async def serving(self, name: str) -> bool:
        return name in self._branches

    def forget_health(self, name: str) -> None:
        pass


@asynccontextmanager
async def in_process_pipeline(repo: Path, spool: Path) -> AsyncIterator[Orchestrator]:
    """Ingest, the six branches and fusion loaded in this process, as the services load them."""
    async with AsyncExitStack() as stack:
        ingest = IngestService(IngestSettings(metrics_port=0, temp_dir=spool,
                                              max_concurrent_ingests=8))
        await ingest.load()
        branches: dict[str, ModelServer] = {}
        for name, (server_cls, settings_cls) in BRANCH_SERVERS.items():
            model = server_cls(settings_cls(model_repo=repo, metrics_port=0))
            await model.load()
            stack.push_async_callback(model.close)
            branches[name] = model
        settings = FusionSettings(model_repo=repo, metrics_port=0, result_cache_size=0,
                                  max_concurrent_analyses=8)
        bundle = await asyncio.to_thread(load_bundle, repo, settings.fusion_version)
        yield Orchestrator(settings, InProcessUpstreams(ingest, branches), bundle)


async def analyze_in_process(orchestrator: Orchestrator, path: Path,
                             early_exit: bool = False) -> AnalysisOutcome:
    async def chunks() -> AsyncIterator[bytes]:
        with path.open("rb") as f:
            while data := f.read(CHUNK):
                yield data

    upload = media_pb2.UploadHeader(filename=path.name, declared_size=path.stat().st_size)
    outcome = None
    async for event in orchestrator.analyze(upload, chunks(), AnalysisOptions(
            early_exit=early_exit)):
        if isinstance(event, AnalysisOutcome):
            outcome = event
    assert outcome is not None
    return outcome
