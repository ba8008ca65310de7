"""The ingest call's request stream: the header, then the caller's upload chunks, stopped at
the size limit. A refused upload is kept in `error` and reported through `on_error` rather
than raised: raising inside a request stream only reaches gRPC's request consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from deepfake.v1 import ingest_pb2, media_pb2
from dfmesh.errors import DfmeshError, LimitExceeded


class UploadForwarder:
    """Forwards an upload to ingest, counting bytes against `max_bytes`."""

    def __init__(self, upload: media_pb2.UploadHeader, options: media_pb2.IngestOptions,
                 chunks: AsyncIterator[bytes], max_bytes: int,
                 on_error: Callable[[DfmeshError], None]) -> None:
        self.upload, self.options, self.chunks = upload, options, chunks
        self.max_bytes = max_bytes
        self.on_error = on_error
        self.sent_bytes = 0
        self.error: DfmeshError | None = None

    async def requests(self) -> AsyncIterator[ingest_pb2.IngestRequest]:
        yield ingest_pb2.IngestRequest(header=ingest_pb2.IngestHeader(
            upload=self.upload, options=self.options))
        try:
            async for chunk in self.chunks:
                self.sent_bytes += len(chunk)
                if self.sent_bytes > self.max_bytes:
                    raise LimitExceeded(f"upload exceeds the limit of {self.max_bytes} bytes")
                yield ingest_pb2.IngestRequest(data=chunk)
        except DfmeshError as exc:
            self.error = exc
            self.on_error(exc)
