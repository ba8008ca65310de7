"""Ingest's packets to the branches' request streams: a Feed per branch call, and which
feeds a packet goes to or closes (pure)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable

from deepfake.v1 import branch_pb2, media_pb2
from dfmesh import branches as registry

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


def without_full_frame(packet: media_pb2.MediaPacket) -> media_pb2.MediaPacket:
    """The frame packet as branches get it: the full frame only where no face was found."""
    frame = packet.frame
    if not frame.faces or not frame.HasField("frame"):
        return packet
    return media_pb2.MediaPacket(frame=media_pb2.SampledFrame(
        index=frame.index, frame_number=frame.frame_number,
        timestamp_seconds=frame.timestamp_seconds, faces=frame.faces))
