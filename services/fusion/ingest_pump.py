"""The ingest side of one analysis: the upload streamed to ingest under its deadline, and
each packet ingest sends back handed on as it arrives. ClipInfo comes first: a cached
result for the clip ends the stream there; otherwise the coordinator plans the branches
(`on_clip`) and every later packet goes to the feeds that use it, sampled frames counted
for progress and ingest's own timings kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from grpc import aio

from deepfake.v1 import media_pb2
from dfmesh.errors import InvalidInput
from dfmesh.runtime.tracing import span
from services.fusion.branch_call import ingest_rpc_error
from services.fusion.cached import AnalysisCache
from services.fusion.ledger import Ledger
from services.fusion.outcome import AnalysisOutcome, Stage
from services.fusion.progress import EXTRACT_END, EXTRACT_START
from services.fusion.routing import Feeds, without_full_frame
from services.fusion.upload import UploadForwarder
from services.fusion.upstreams import Upstreams


class IngestPump:
    """Runs the ingest call of one analysis; `clip` and `cached` say what it found."""

    def __init__(self, upstreams: Upstreams, deadline: float, upload: UploadForwarder,
                 cache: AnalysisCache, ledger: Ledger, feeds: Feeds,
                 on_clip: Callable[[media_pb2.ClipInfo], None]) -> None:
        self.upstreams, self.deadline, self.upload = upstreams, deadline, upload
        self.cache, self.ledger, self.feeds, self.on_clip = cache, ledger, feeds, on_clip
        self.clip: media_pb2.ClipInfo | None = None
        self.cached: AnalysisOutcome | None = None

    async def pump(self) -> None:
        """Until ingest's stream ends (or a cache hit); a failure as a domain error (the
        caller's refused upload first)."""
        start = time.perf_counter()
        self.ledger.progress(Stage.EXTRACTING_FRAMES, EXTRACT_START, "Extracting frames")
        with span("fusion.ingest"):
            call = self.upstreams.ingest(self.upload.requests(), timeout=self.deadline)
            try:
                async for packet in call:
                    if packet.HasField("clip_info") and await self._found(packet.clip_info):
                        call.cancel()  # the same upload was analysed before: ingest stops
                        return
                    self._route(packet)
            except asyncio.CancelledError:
                call.cancel()
                raise
            except aio.AioRpcError as exc:
                if self.upload.error is not None:
                    raise self.upload.error from None
                raise ingest_rpc_error(exc, self.upstreams.ingest_address) from None
            finally:
                self.ledger.timings["ingest"] = (time.perf_counter() - start) * 1000
                self.feeds.close()
        self.ledger.progress(Stage.EXTRACTING_FRAMES, EXTRACT_END, "Frames extracted")

    async def _found(self, clip: media_pb2.ClipInfo) -> bool:
        """The clip is described: True when the cache holds its result."""
        self.clip = clip
        self.cached = await self.cache.lookup(clip)
        return self.cached is not None

    def _route(self, packet: media_pb2.MediaPacket) -> None:
        kind = packet.WhichOneof("payload")
        if kind == "clip_info":
            self.on_clip(packet.clip_info)
        elif self.clip is None:
            raise InvalidInput("ingest stream did not start with ClipInfo")
        elif kind == "frame":
            self.ledger.frame()
            packet = without_full_frame(packet)
        elif kind == "summary":
            self.ledger.ingest_summary(packet.summary)
        self.feeds.deliver(packet)
