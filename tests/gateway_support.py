"""Helpers for the gateway tests: server-sent events, chunked multipart bodies, polling."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

STAGE_ORDER = ("Queued", "Extracting frames", "Running models", "Final classification")


@dataclass
class Event:
    id: str
    event: str
    data: Any


def read_events(client: httpx.Client, url: str, headers: dict[str, str] | None = None,
                timeout: float = 120.0) -> list[Event]:
    """Every event of an SSE stream until the server ends it."""
    events: list[Event] = []
    fields: dict[str, str] = {}
    with client.stream("GET", url, headers=headers, timeout=timeout) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if not line:
                if "data" in fields:
                    events.append(Event(fields.get("id", ""), fields.get("event", "message"),
                                        json.loads(fields["data"])))
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = value[1:] if value.startswith(" ") else value
    return events


def chunked_multipart(path: Path, field: str = "file",
                      chunk: int = 64 * 1024) -> tuple[Iterator[bytes], dict[str, str]]:
    """A multipart body as a generator, so httpx sends it chunked, without Content-Length."""
    boundary = uuid.uuid4().hex

    def body() -> Iterator[bytes]:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
               f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
               ).encode()
        with path.open("rb") as f:
            while data := f.read(chunk):
                yield data
        yield f"\r\n--{boundary}--\r\n".encode()

    return body(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload(client: httpx.Client, url: str, path: Path, field: str = "file",
           timeout: float = 120.0) -> httpx.Response:
    with path.open("rb") as f:
        return client.post(url, files={field: (path.name, f, "application/octet-stream")},
                           timeout=timeout)


def poll_until_finished(client: httpx.Client, url: str, timeout: float = 120.0,
                        ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """GET until status is complete or error; return the last body and every running one."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = client.get(url)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        if body["status"] in ("complete", "error"):
            return body, seen
        seen.append(body)
        time.sleep(0.1)
    raise AssertionError(f"{url} did not finish in {timeout} s")
