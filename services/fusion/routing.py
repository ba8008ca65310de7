"""Ingest's packets to the branches' request streams: a Feed per branch call, and which
feeds a packet goes to or closes (pure)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable

from deepfake.v1 import branch_pb2, media_pb2
from dfmesh import branches as registry
from services.fusion.outcome import BranchOutcome, BranchState

STREAM_ORDER: tuple[str, ...] = tuple(registry.STREAM_ORDER)


class Feed:
    """A branch call's request stream: a header, then whatever is put, until close()."""

    def __init__(self, analysis_id: str) -> None:
        self._queue: asyncio.Queue[branch_pb2.BranchRequest | None] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.closed_at = 0.0
        self._header = branch_pb2.BranchRequest(
            header=branch_pb2.BranchHeader(analysis_id=analysis_id))

    def put(self, request: branch_pb2.BranchRequest) -> None:
        if not self.closed.is_set():
            self._queue.put_nowait(request)

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.closed_at = time.perf_counter()
            self._queue.put_nowait(None)

    async def requests(self) -> AsyncIterator[branch_pb2.BranchRequest]:
        yield self._header
        while (item := await self._queue.get()) is not None:
            yield item


def embeddings_feed(analysis_id: str, result: branch_pb2.BranchResult) -> Feed:
    """A closed feed holding another branch's per-frame embeddings (temporal's input)."""
    feed = Feed(analysis_id)
    for embedding in result.embeddings:
        feed.put(branch_pb2.BranchRequest(embedding=embedding))
    feed.close()
    return feed


def dependent_outcome(name: str, upstream: str,
                      source: BranchOutcome | None) -> BranchOutcome | None:
    """What a dependent branch (temporal) comes to without being called when its upstream
    (visual) gave it nothing to score: missing with no result, no input with no embeddings;
    None when it is to be called with the upstream's embeddings."""
    if source is None or source.result is None or source.state is BranchState.MISSING:
        return BranchOutcome(name, BranchState.MISSING, reason=f"needs {upstream}'s embeddings")
    if not source.result.embeddings:
        return BranchOutcome(name, BranchState.NO_INPUT,
                             reason=f"{upstream} produced no embeddings")
    return None


def route(kind: str | None, branches: Iterable[str]) -> tuple[list[str], list[str]]:
    """(the branches a packet of `kind` goes to, the branches whose feeds it closes because
    no packet they use can follow it in stream order)."""
    position = STREAM_ORDER.index(kind) if kind in STREAM_ORDER else len(STREAM_ORDER)
    send, close = [], []
    for name in branches:
        packets = registry.branch(name).packets
        last = registry.branch(name).last_packet
        if kind in packets:
            send.append(name)
        elif last is not None and position > STREAM_ORDER.index(last):
            close.append(name)
    return send, close


class Feeds:
    """The feeds of an analysis's fed branches, by branch, and the packets routed to them."""

    def __init__(self, analysis_id: str) -> None:
        self.analysis_id = analysis_id
        self.by_branch: dict[str, Feed] = {}

    def open(self, branches: Iterable[str]) -> None:
        """A feed for each of `branches` (once the plan is known)."""
        self.by_branch.update({b: Feed(self.analysis_id) for b in branches})

    def __getitem__(self, branch: str) -> Feed:
        return self.by_branch[branch]

    def deliver(self, packet: media_pb2.MediaPacket) -> None:
        """The packet to every feed that uses it; the feeds it ends, closed."""
        send, close = route(packet.WhichOneof("payload"), self.by_branch)
        for name in send:
            self.by_branch[name].put(branch_pb2.BranchRequest(media=packet))
        for name in close:
            self.by_branch[name].close()

    def close(self) -> None:
        for feed in self.by_branch.values():
            feed.close()


def without_full_frame(packet: media_pb2.MediaPacket) -> media_pb2.MediaPacket:
    """The frame packet as branches get it: the full frame only where no face was found."""
    frame = packet.frame
    if not frame.faces or not frame.HasField("frame"):
        return packet
    return media_pb2.MediaPacket(frame=media_pb2.SampledFrame(
        index=frame.index, frame_number=frame.frame_number,
        timestamp_seconds=frame.timestamp_seconds, faces=frame.faces))
