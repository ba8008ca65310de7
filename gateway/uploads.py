"""Reading a multipart upload as a stream: the `file` part's bytes arrive in chunks as the
client sends them, are counted against the size limit, and the first bytes are sniffed
for a media type we accept. Nothing holds the whole file in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import filetype
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from gateway.errors import ApiError

SNIFF_BYTES = 8192
"""How much of the file is looked at to decide its type (filetype needs 261)."""
MULTIPART_SLACK_BYTES = 64 * 1024
"""Allowance for multipart boundaries and headers when checking Content-Length early."""
ACCEPTED_FAMILIES = ("video/", "audio/", "image/")
ACCEPTED_HINT = ("send a video (MP4, MOV, AVI, MKV, WebM, MPEG), an audio file (WAV, MP3, "
                 "FLAC, OGG, M4A) or an image (JPEG, PNG)")


def sniff_media_type(head: bytes) -> str:
    """The MIME type the first bytes show, or raise 415 when it is not video, audio or
    image. The file name and the client's Content-Type are never trusted for this."""
    kind = filetype.guess(head)
    if kind is None:
        raise ApiError(415, "unsupported_media_type",
                       f"this file is not a recognised media file; {ACCEPTED_HINT}")
    if not kind.mime.startswith(ACCEPTED_FAMILIES):
        raise ApiError(415, "unsupported_media_type",
                       f"files of type {kind.mime} cannot be analyzed; {ACCEPTED_HINT}")
    return kind.mime


def check_declared_length(request: Request, max_bytes: int) -> None:
    """Refuse with 413 before reading anything when Content-Length is already too big."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MULTIPART_SLACK_BYTES:
        raise ApiError(413, "too_large", too_large_message(max_bytes))


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def too_large_message(max_bytes: int) -> str:
    return (f"the upload is larger than the limit of {human_bytes(max_bytes)} "
            "(DFMESH_MAX_UPLOAD_BYTES); trim or re-encode the clip and try again")


@dataclass
class _PartState:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_field: bytes = b""
    header_value: bytes = b""
    in_target: bool = False
    target_seen: bool = False
    target_done: bool = False
    filename: str = ""
    content_type: str = ""
    pending: list[bytes] = field(default_factory=list)


class MultipartFileStream:
    """The one file field of a multipart/form-data request, read as it arrives.

    `await open()` reads until the field's headers; then `chunks()` yields its bytes in
    pieces of `chunk_bytes`, counting them against `max_bytes` (413 past it). Other
    fields are skipped.
    """

    def __init__(self, request: Request, field_name: str, *, max_bytes: int,
                 chunk_bytes: int) -> None:
        content_type, params = parse_options_header(request.headers.get("content-type", ""))
        if content_type != b"multipart/form-data" or b"boundary" not in params:
            raise ApiError(422, "missing_file",
                           f"send the file as multipart/form-data in a field named '{field_name}'")
        self.field_name = field_name.encode()
        self.max_bytes = max_bytes
        self.chunk_bytes = chunk_bytes
        self.size = 0
        self.media_type = ""
        self._body = request.stream()
        self._body_done = False
        self._state = _PartState()
        self._parser = MultipartParser(params[b"boundary"], callbacks={
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
        })

    # --- parser callbacks (synchronous, called from parser.write) ---
    def _on_part_begin(self) -> None:
        self._state.headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._state.header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._state.header_value += data[start:end]

    def _on_header_end(self) -> None:
        s = self._state
        s.headers[s.header_field.lower()] = s.header_value
        s.header_field, s.header_value = b"", b""

    def _on_headers_finished(self) -> None:
        s = self._state
        _, params = parse_options_header(s.headers.get(b"content-disposition", b""))
        s.in_target = params.get(b"name") == self.field_name and not s.target_seen
        if s.in_target:
            s.target_seen = True
            s.filename = params.get(b"filename", b"").decode("utf-8", "replace")
            s.content_type = s.headers.get(b"content-type", b"").decode("latin-1")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._state.in_target:
            self._state.pending.append(data[start:end])

    def _on_part_end(self) -> None:
        if self._state.in_target:
            self._state.in_target = False
            self._state.target_done = True

    # --- reading ---
    async def _feed(self) -> bool:
        """Feed one piece of the request body to the parser; False at the end of the body."""
        if self._body_done:
            return False
        try:
            piece = await self._body.__anext__()
        except StopAsyncIteration:
            self._body_done = True
            self._parse(None)
            return False
        if piece:
            self._parse(piece)
        return True

    def _parse(self, piece: bytes | None) -> None:
        """Feed the parser (None: the body ended); a malformed body is 422, not 500."""
        try:
            if piece is None:
                self._parser.finalize()
            else:
                self._parser.write(piece)
        except MultipartParseError as exc:
            raise ApiError(422, "bad_multipart",
                           f"the multipart/form-data body is malformed ({exc}); send the file "
                           f"in a form field named '{self.field_name.decode()}'") from None

    async def open(self) -> tuple[str, str]:
        """Read until the file field starts; return (filename, client content type)."""
        while not self._state.target_seen:
            if not await self._feed():
                raise ApiError(422, "missing_file",
                               f"no file in the form field '{self.field_name.decode()}'")
        return self._state.filename, self._state.content_type

    async def _take(self, n: int) -> bytes:
        """Up to n bytes of the file; fewer only at its end."""
        s = self._state
        while sum(map(len, s.pending)) < n and not s.target_done:
            if not await self._feed():
                break
        data = b"".join(s.pending)
        s.pending = [data[n:]] if len(data) > n else []
        return data[:n]

    async def sniff(self) -> bytes:
        """Read the first bytes, check the type (415) and emptiness (422); return them."""
        head = await self._take(SNIFF_BYTES)
        if not head:
            raise ApiError(422, "empty_file", "the uploaded file is empty")
        self.media_type = sniff_media_type(head)
        self._count(len(head))
        return head

    def _count(self, n: int) -> None:
        self.size += n
        if self.size > self.max_bytes:
            raise ApiError(413, "too_large", too_large_message(self.max_bytes))

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes after the sniffed head, in chunks of at most chunk_bytes."""
        while True:
            data = await self._take(self.chunk_bytes)
            if not data:
                break
            self._count(len(data))
            yield data
        while await self._feed():  # skip whatever fields follow the file
            self._state.pending.clear()
