"""The bad-input corpus (tests/reliability/corpus.py, 32 kinds) through every entry: REST
(the gateway), gRPC to fusion and gRPC straight to ingest, on real processes.

Each upload gets a 4xx or INVALID_ARGUMENT / RESOURCE_EXHAUSTED with a reason (or, for valid
but odd media, a result) within CASE_SECONDS; afterwards ingest's temp dir and the gateway's
spool dir are empty, the processes' memory is within bounds, and a valid clip still gets a
result. The figures are written to artifacts/reliability/bad_input.json for
docs/RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from dfmesh.runtime.config import REPO_ROOT
from tests.reliability.corpus import HOSTILE_NAME, Case, build_corpus
from tests.reliability.support import (
    CASE_SECONDS,
    Stack,
    fusion_call,
    ingest_call,
    timed,
)

pytestmark = pytest.mark.slow

REFUSED_CODES = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
MEMORY_GROWTH_LIMIT_MIB = 400
"""Resident memory a process may keep after the whole corpus (allocator caches included)."""
FIGURES = REPO_ROOT / "artifacts" / "reliability" / "bad_input.json"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def figures() -> Iterator[dict]:
    collected: dict = {}
    yield collected
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(collected, indent=2, sort_keys=True))


def _judge(case: Case, seconds: float, ok: bool, refused: bool, message: str,
           left: list[str]) -> str:
    """"" when the outcome is what the case asks for, else why not."""
    if left:
        return f"temporary files left behind: {left}"
    if seconds > CASE_SECONDS:
        return f"took {seconds:.1f} s"
    if case.expect == "analyzed" and not ok:
        return f"expected a result, got a refusal: {message!r}"
    if case.expect == "refused" and not refused:
        return "expected a refusal" + ("" if ok else f", got {message!r}")
    if refused and (not message or (case.says and case.says not in message.lower())):
        return f"refusal without the reason {case.says!r}: {message!r}"
    if not ok and not refused:
        return f"neither a result nor a client error: {message!r}"
    return ""


def _finish(stack: Stack, before: dict, rows: list[dict], figures: dict, entry: str) -> None:
    after = stack.memory()
    figures[entry] = {"cases": rows, "memory_mib_before": before, "memory_mib_after": after}
    failures = [f"{r['case']}: {r['problem']}" for r in rows if r["problem"]]
    assert not failures, "\n".join(failures)
    assert stack.leftovers() == [], "temporary files left behind"
    for name, mem in after.items():
        grown = mem["rss_mib"] - before[name]["rss_mib"]
        assert grown < MEMORY_GROWTH_LIMIT_MIB, f"{name} kept {grown} MiB more after the corpus"


def _valid_clip_still_works(stack: Stack, corpus: list[Case]) -> None:
    base = next(c for c in corpus if c.name == "video_only")
    code, details, result = asyncio.run(fusion_call(stack.fusion_addr, base.path, "ok.mp4"))
    assert code == grpc.StatusCode.OK and result is not None, details
    assert result["verdict"] in ("Deepfake", "Authentic")


def test_corpus_through_rest(stack: Stack, corpus: list[Case], figures: dict) -> None:
    before, rows = stack.memory(), []
    with httpx.Client(base_url=stack.gateway_url, timeout=CASE_SECONDS + 5) as http:
        for case in corpus:
            data = case.path.read_bytes()
            seconds, reply = timed(http.post, "/analyze",
                                   files={"file": (case.filename, data, "video/mp4")})
            body = reply.json()
            ok = reply.status_code == 200 and body["result"]["verdict"] in ("Deepfake",
                                                                            "Authentic")
            refused = 400 <= reply.status_code < 500 and reply.status_code != 429
            message = body.get("error") or ""
            rows.append({"case": case.name, "http": reply.status_code,
                         "code": body.get("code", ""), "seconds": round(seconds, 2),
                         "message": message[:160],
                         "problem": _judge(case, seconds, ok, refused, message,
                                            stack.leftovers())})

        # Bodies only REST has: no file field, not multipart at all, JSON.
        clip = next(c for c in corpus if c.name == "video_only").path.read_bytes()
        shapes = {
            "multipart_without_file_field": (422, dict(files={"upload": ("a.mp4", clip)})),
            "file_field_holds_text": (415, dict(data={"file": "not a file"},
                                                files={"other": ("x", b"x")})),
            "raw_body_not_multipart": (422, dict(content=clip,
                                                 headers={"content-type": "video/mp4"})),
            "json_body": (422, dict(json={"file": "clip.mp4"})),
            "multipart_without_boundary": (422, dict(
                content=b"--x\r\n", headers={"content-type": "multipart/form-data"})),
        }
        for name, (want, kwargs) in shapes.items():
            seconds, reply = timed(http.post, "/analyze", **kwargs)
            body = reply.json()
            problem = ""
            if reply.status_code != want or not body.get("error"):
                problem = f"expected {want} with a reason, got {reply.status_code} {body}"
            rows.append({"case": name, "http": reply.status_code, "code": body.get("code"),
                         "seconds": round(seconds, 2), "message": body.get("error", "")[:160],
                         "problem": problem})

        # The async flow spools to DFMESH_SPOOL_DIR: a hostile name must not become a path.
        reply = http.post("/v1/analyses", files={"file": (HOSTILE_NAME, clip, "video/mp4")})
        assert reply.status_code == 202, reply.text
        status = reply.json()["statusUrl"]
        for _ in range(int(CASE_SECONDS * 10)):
            snapshot = http.get(status).json()
            if snapshot["status"] != "running":
                break
            asyncio.run(asyncio.sleep(0.1))
        assert snapshot["status"] == "complete", snapshot
    assert not list(Path("/").glob("tmp/x;*")) and not (REPO_ROOT / "dfmesh-pwned").exists()
    _finish(stack, before, rows, figures, "rest")
    _valid_clip_still_works(stack, corpus)


def test_corpus_through_fusion_grpc(stack: Stack, corpus: list[Case], figures: dict) -> None:
    before, rows = stack.memory(), []
    for case in corpus:
        seconds, (code, details, result) = timed(fusion_call, stack.fusion_addr, case.path,
                                                 case.filename)
        ok = code == grpc.StatusCode.OK and result is not None
        refused = code in REFUSED_CODES
        rows.append({"case": case.name, "grpc": code.name, "seconds": round(seconds, 2),
                     "message": details[:160],
                     "problem": _judge(case, seconds, ok, refused, details, stack.leftovers())})
    _finish(stack, before, rows, figures, "fusion_grpc")
    _valid_clip_still_works(stack, corpus)


def test_corpus_through_ingest_grpc(stack: Stack, corpus: list[Case], figures: dict) -> None:
    before, rows = stack.memory(), []
    for case in corpus:
        seconds, (code, details, kinds) = timed(ingest_call, stack.ingest_addr,
                                                case.path.read_bytes(), case.filename)
        ok = code == grpc.StatusCode.OK and kinds[:1] == ["clip_info"] and kinds[-1] == "summary"
        refused = code in REFUSED_CODES
        rows.append({"case": case.name, "grpc": code.name, "seconds": round(seconds, 2),
                     "packets": len(kinds), "message": details[:160],
                     "problem": _judge(case, seconds, ok, refused, details, stack.leftovers())})

    # Protocol abuse only gRPC allows: data before the header, a lying declared size.
    clip = next(c for c in corpus if c.name == "video_only").path.read_bytes()
    for name, kwargs, want in (
            ("data_before_header", dict(header_first=False), grpc.StatusCode.INVALID_ARGUMENT),
            ("declared_size_over_limit", dict(declared_size=2**40),
             grpc.StatusCode.RESOURCE_EXHAUSTED)):
        seconds, (code, details, _) = timed(ingest_call, stack.ingest_addr, clip, "a.mp4",
                                            **kwargs)
        rows.append({"case": name, "grpc": code.name, "seconds": round(seconds, 2),
                     "message": details[:160],
                     "problem": "" if code == want and details else f"{code.name} {details!r}"})
    _finish(stack, before, rows, figures, "ingest_grpc")
    _valid_clip_still_works(stack, corpus)
