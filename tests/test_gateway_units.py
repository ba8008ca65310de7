"""The gateway's pure parts without a server: media sniffing, the gRPC -> HTTP error
mapping, the streaming multipart reader, admission, and the in-memory store."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc
import pytest
from grpc import aio
from starlette.requests import Request

from gateway.analyses import Admission
from gateway.errors import ApiError, error_from_rpc
from gateway.store import MemoryStore
from gateway.uploads import MultipartFileStream, human_bytes, sniff_media_type

# --- sniffing ---

@pytest.mark.parametrize("relative, family", [
    ("talking/lipnet__GRID_bbaf2n.mpg", "video/"),
    ("talking/video-retalking__face_1.mp4", "video/"),
    ("speech/sadtalker__RD_Radio31_000.wav", "audio/"),
    ("speech/rtvc__8230_00000.mp3", "audio/"),
    ("faces/prnet__trump.jpg", "image/"),
])
def test_real_media_is_accepted_by_its_bytes(shared_data: Path, relative: str,
                                             family: str) -> None:
    head = (shared_data / relative).read_bytes()[:8192]
    assert sniff_media_type(head).startswith(family)


@pytest.mark.parametrize("head", [
    b"%PDF-1.7\n" + bytes(300),
    b"PK\x03\x04" + bytes(300),             # zip
    b"just some text, named clip.mp4\n" * 20,
])
def test_other_content_is_415(head: bytes) -> None:
    with pytest.raises(ApiError) as info:
        sniff_media_type(head)
    assert info.value.status == 415 and "MP4" in info.value.message


def test_human_bytes() -> None:
    assert human_bytes(300_000) == "293 KiB"
    assert human_bytes(512 * 2**20) == "512 MiB"
    assert human_bytes(10) == "10 bytes"


# --- gRPC status -> HTTP ---

def rpc_error(code: grpc.StatusCode, details: str,
              trailing: tuple[tuple[str, str], ...] = ()) -> aio.AioRpcError:
    return aio.AioRpcError(code, aio.Metadata(), aio.Metadata(*trailing), details)


@pytest.mark.parametrize("code, details, trailing, status, api_code, retry", [
    (grpc.StatusCode.INVALID_ARGUMENT, "no video or audio stream", (), 422, "unprocessable",
     None),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "fusion is busy with 4 analyses",
     (("retry-after", "2.5"),), 429, "busy", 3),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "ingest is busy: 2 uploads in progress", (), 429,
     "busy", 5),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "clip too long: 33.6 s, the limit is 20 s", (), 422,
     "too_long", None),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "upload exceeds the limit of 1000 bytes", (), 413,
     "too_large", None),
    (grpc.StatusCode.UNAVAILABLE, "ingest service unavailable at 127.0.0.1:1", (), 503,
     "unavailable", 5),
    (grpc.StatusCode.FAILED_PRECONDITION, "fusion bundle checksum mismatch", (), 503,
     "not_ready", None),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", (), 504, "timeout", None),
    (grpc.StatusCode.INTERNAL, "internal error; the server log has the details", (), 502,
     "upstream_error", None),
])
def test_rpc_errors_map_to_http(code, details, trailing, status, api_code, retry) -> None:
    error = error_from_rpc(rpc_error(code, details, trailing), default_retry_after=5)
    assert (error.status, error.code, error.retry_after) == (status, api_code, retry)
    assert error.message


def test_connection_noise_stays_out_of_the_message() -> None:
    error = error_from_rpc(rpc_error(
        grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: "
        "UNKNOWN: ipv4:127.0.0.1:1: Failed to connect to remote host: Connection refused"), 5)
    assert error.message == "the analysis service is unavailable; try again shortly"
    assert error.headers() == {"Retry-After": "5"}


# --- the streaming multipart reader ---

def multipart_request(parts: list[tuple[str, str | None, bytes]], piece: int = 1000,
                      content_type: str | None = None) -> Request:
    """A real Starlette request whose body arrives in `piece`-byte messages."""
    boundary = "testboundary123"
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    pieces = [body[i:i + piece] for i in range(0, len(body), piece)]

    async def receive() -> dict:
        data = pieces.pop(0) if pieces else b""
        return {"type": "http.request", "body": data, "more_body": bool(pieces)}

    header = content_type or f"multipart/form-data; boundary={boundary}"
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"content-type", header.encode())]}
    return Request(scope, receive)


async def read_all(stream: MultipartFileStream) -> bytes:
    head = await stream.sniff()
    return head + b"".join([chunk async for chunk in stream.chunks()])


async def test_the_file_field_streams_in_bounded_chunks(shared_data: Path) -> None:
    data = (shared_data / "talking" / "lipnet__GRID_bbaf2n.mpg").read_bytes()
    request = multipart_request([("note", None, b"hello"), ("file", "a.mpg", data),
                                 ("after", None, b"ignored")], piece=7000)
    stream = MultipartFileStream(request, "file", max_bytes=len(data), chunk_bytes=65536)
    assert await stream.open() == ("a.mpg", "application/octet-stream")
    head = await stream.sniff()
    assert stream.media_type == "video/mpeg" and len(head) == 8192
    sizes = []
    rest = b""
    async for chunk in stream.chunks():
        sizes.append(len(chunk))
        rest += chunk
    assert head + rest == data and stream.size == len(data)
    assert max(sizes) == 65536 and all(s == 65536 for s in sizes[:-1])


async def test_bytes_past_the_limit_are_413_while_streaming() -> None:
    data = b"\x00\x00\x01\xba" + os.urandom(50_000)  # MPEG-PS magic
    stream = MultipartFileStream(multipart_request([("file", "a.mpg", data)]), "file",
                                 max_bytes=20_000, chunk_bytes=65536)
    await stream.open()
    with pytest.raises(ApiError) as info:
        await read_all(stream)
    assert info.value.status == 413 and "19.5 KiB" in info.value.message


async def test_missing_field_and_wrong_content_type_are_422() -> None:
    stream = MultipartFileStream(multipart_request([("video", "a.mp4", b"x")]), "file",
                                 max_bytes=100, chunk_bytes=65536)
    with pytest.raises(ApiError) as info:
        await stream.open()
    assert info.value.status == 422 and "'file'" in info.value.message
    with pytest.raises(ApiError) as info:
        MultipartFileStream(multipart_request([], content_type="application/json"), "file",
                            max_bytes=100, chunk_bytes=65536)
    assert info.value.status == 422 and "multipart/form-data" in info.value.message


async def test_an_empty_file_is_422() -> None:
    stream = MultipartFileStream(multipart_request([("file", "a.mp4", b"")]), "file",
                                 max_bytes=100, chunk_bytes=65536)
    await stream.open()
    with pytest.raises(ApiError) as info:
        await stream.sniff()
    assert (info.value.status, info.value.code) == (422, "empty_file")


# --- admission and the in-memory store ---

def test_admission_refuses_past_the_limit_with_a_retry_hint() -> None:
    admission = Admission(limit=2, retry_after_seconds=9)
    admission.acquire()
    admission.acquire()
    with pytest.raises(ApiError) as info:
        admission.acquire()
    assert info.value.status == 429 and info.value.headers() == {"Retry-After": "9"}
    admission.release()
    admission.acquire()


async def test_memory_store_follows_live_and_expires_after_the_ttl() -> None:
    store = MemoryStore(result_ttl_seconds=0.2, running_ttl_seconds=60)
    await store.create("a1", {"status": "running"})
    await store.publish("a1", {"type": "progress", "data": {"percent": 10}},
                        {"status": "running"})

    async def follow() -> list[tuple[int, dict]]:
        return [item async for item in store.follow("a1")]

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    assert not follower.done()  # waiting for more
    await store.publish("a1", {"type": "progress", "data": {"percent": 50}},
                        {"status": "running"})
    await store.publish("a1", {"type": "result", "data": {"verdict": "Authentic"}},
                        {"status": "complete"})
    events = await asyncio.wait_for(follower, 2)
    assert [i for i, _ in events] == [0, 1, 2]
    assert [e["type"] for _, e in events] == ["progress", "progress", "result"]
    assert [e["type"] for _, e in [x async for x in store.follow("a1", start=2)]] == ["result"]
    assert (await store.snapshot("a1")) == {"status": "complete"}
    await asyncio.sleep(0.3)
    assert await store.snapshot("a1") is None


def test_the_openapi_examples_have_the_shape_the_gateway_returns() -> None:
    from deepfake.v1 import orchestrator_pb2
    from dfmesh.client import result_to_dict
    from gateway.models import EXAMPLE_RESULT, AnalysisResult, AnalysisStatus

    empty = orchestrator_pb2.AnalysisResult(
        branches={"visual": orchestrator_pb2.BranchReport()})
    returned = result_to_dict(empty)
    assert set(EXAMPLE_RESULT) == set(returned) == set(AnalysisResult.model_fields)
    for branch in EXAMPLE_RESULT["branches"].values():
        assert set(branch) == set(returned["branches"]["visual"])
    AnalysisResult.model_validate(EXAMPLE_RESULT)
    AnalysisResult.model_validate(returned)
    for example in AnalysisStatus.model_config["json_schema_extra"]["examples"]:
        AnalysisStatus.model_validate(example)
