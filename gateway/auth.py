"""API keys for the REST API: who may call it, what they may do, and how often.

Keys come from configuration, never from the request path or body:

    DFMESH_API_KEYS="k3y-for-alice=alice,k3y-for-dash=dashboard:read"
    DFMESH_API_KEYS_FILE=/etc/dfmesh/api-keys      (same entries, one per line, # comments)

Each entry is `key=client[:scope]`; scope `analyze` (the default) may start analyses and
read them, `read` may only read (GET). A request names its key in `Authorization: Bearer
<key>` or `X-API-Key: <key>`. Refusals, as JSON in the gateway's error shape:

    401 unauthorized   no key, or a key that is not configured (WWW-Authenticate: Bearer)
    403 forbidden      the key is valid but its scope does not allow the method
    429 rate_limited   the key's token bucket is empty (Retry-After: seconds until a token)

Analyses started (POST) draw one token each from the key's bucket (DFMESH_RATE_LIMIT_BURST
tokens, refilled at DFMESH_RATE_LIMIT_PER_MINUTE); reads are not counted. The probes,
metrics, the OpenAPI docs and the web UI's files stay open. With no key configured the
gateway is open (the embedded default, on loopback); DFMESH_AUTH_REQUIRED=true makes a
missing key list a start-up error, so a deployment cannot come up open by mistake.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

SCOPES = ("analyze", "read")
PROTECTED_PREFIXES = ("/analyze", "/v1/", "/status/")
"""Paths that need a key; everything else (probes, metrics, docs, the UI) stays open."""
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REALM = 'Bearer realm="dfmesh", charset="UTF-8"'


class ApiKeyConfigError(ValueError):
    """A malformed key list: the message names the entry (never the key itself)."""


@dataclass(frozen=True)
class Client:
    """Who a key belongs to and what it may do."""

    name: str
    scope: str = "analyze"

    def may(self, method: str) -> bool:
        return self.scope == "analyze" or method in READ_METHODS


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_api_keys(text: str, source: str = "DFMESH_API_KEYS") -> dict[str, Client]:
    """`key=client[:scope]` entries separated by commas or new lines -> {sha256(key): Client}.

    Keys are kept only as digests, so a lookup compares digests, not secrets."""
    keys: dict[str, Client] = {}
    entries = [e.strip() for line in text.splitlines() for e in line.split("#", 1)[0].split(",")]
    for number, entry in enumerate((e for e in entries if e), start=1):
        key, sep, who = entry.partition("=")
        name, _, scope = who.partition(":")
        key, name, scope = key.strip(), name.strip(), (scope.strip() or "analyze")
        if not sep or not key or not name:
            raise ApiKeyConfigError(f"{source}: entry {number} is not 'key=client[:scope]'")
        if scope not in SCOPES:
            raise ApiKeyConfigError(f"{source}: entry {number} ({name}) has scope {scope!r}; "
                                    f"use one of {', '.join(SCOPES)}")
        if len(key) < 16:
            raise ApiKeyConfigError(f"{source}: entry {number} ({name}) has a key shorter than "
                                    "16 characters; generate one with `openssl rand -hex 24`")
        if _digest(key) in keys:
            raise ApiKeyConfigError(f"{source}: entry {number} ({name}) repeats a key")
        keys[_digest(key)] = Client(name, scope)
    return keys


def load_api_keys(inline: str, file: Path | None) -> dict[str, Client]:
    """Keys from DFMESH_API_KEYS and DFMESH_API_KEYS_FILE together."""
    keys = parse_api_keys(inline) if inline else {}
    if file is not None:
        try:
            text = file.read_text()
        except OSError as exc:
            raise ApiKeyConfigError(f"DFMESH_API_KEYS_FILE: cannot read {file}: "
                                    f"{exc.strerror}") from None
        for digest, client in parse_api_keys(text, f"DFMESH_API_KEYS_FILE ({file})").items():
            if digest in keys:
                raise ApiKeyConfigError(f"key of {client.name} is in both DFMESH_API_KEYS and "
                                        "DFMESH_API_KEYS_FILE")
            keys[digest] = client
    return keys


class TokenBucket:
    """`capacity` tokens, refilled continuously at `per_second`; `take()` spends one."""

    def __init__(self, capacity: float, per_second: float, now: float | None = None) -> None:
        self.capacity = capacity
        self.per_second = per_second
        self.tokens = capacity
        self.updated = time.monotonic() if now is None else now

    def take(self, now: float | None = None) -> float:
        """0.0 when a token was spent, else the seconds until one will be there."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.per_second


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    """The key from `Authorization: Bearer <key>` or `X-API-Key`, else None."""
    auth = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return key or None


def is_protected(path: str) -> bool:
    return path == "/analyze" or path.startswith(PROTECTED_PREFIXES)


class ApiKeyMiddleware:
    """Checks the key of every request to a protected path before the body is read."""

    def __init__(self, app: ASGIApp, *, keys: dict[str, Client], rate_per_minute: float,
                 burst: int) -> None:
        self.app = app
        self.keys = keys
        self.rate_per_second = rate_per_minute / 60.0
        self.burst = burst
        self.buckets: dict[str, TokenBucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        key = presented_key(headers)
        method = scope["method"]
        if key is None:
            await _refuse(send, 401, "unauthorized",
                          "an API key is required: send it as 'Authorization: Bearer <key>' "
                          "or 'X-API-Key: <key>'", {"WWW-Authenticate": REALM})
            return
        digest = _digest(key)
        client = self.keys.get(digest)
        if client is None:
            await _refuse(send, 401, "unauthorized",
                          "the API key is not valid; check it or ask for a new one",
                          {"WWW-Authenticate": REALM + ', error="invalid_token"'})
            return
        if not client.may(method):
            log.info("refused: scope", extra={"client": client.name, "method": method})
            await _refuse(send, 403, "forbidden",
                          f"the key of {client.name} is read-only: it may read analyses "
                          "(GET) but not start them")
            return
        if method not in READ_METHODS:
            bucket = self.buckets.setdefault(
                digest, TokenBucket(self.burst, self.rate_per_second))
            wait = bucket.take()
            if wait > 0:
                retry = max(1, math.ceil(wait))
                await _refuse(send, 429, "rate_limited",
                              f"{client.name} has started more analyses than its rate limit "
                              f"allows ({self.rate_per_second * 60:g} per minute, bursts of "
                              f"{self.burst}); try again in {retry} s",
                              {"Retry-After": str(retry)})
                return
        scope.setdefault("state", {})["client"] = client.name
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, code: str, message: str,
                  headers: dict[str, str] | None = None) -> None:
    """The gateway's error JSON (see gateway.app.error_response), sent without reading the
    request body."""
    body = json.dumps({"status": "error", "code": code, "error": message, "percent": 0,
                       "stageName": "Queued", "result": None}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
