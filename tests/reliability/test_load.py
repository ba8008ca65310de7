"""The load test's quick mode (bench/load_test.py) against the reliability stack: below the
concurrency limit every request completes; above it the excess is refused at once with
429 + Retry-After (REST) or RESOURCE_EXHAUSTED + retry-after (gRPC), never a timeout or a
5xx; memory stays flat. The long mode is `python -m bench.load_test --long`."""

from __future__ import annotations

import asyncio
import json

import pytest

from bench.load_test import QUICK, make_image, run_load, table
from dfmesh.runtime.config import REPO_ROOT
from tests.mesh import Mesh
from tests.reliability.conftest import STACK_LIMITS
from tests.reliability.support import Stack

pytestmark = pytest.mark.slow

FLAT_MIB = 100
"""Growth from the middle of the run to its end that still counts as flat."""
REFUSAL_MS = 2000
"""A refusal comes at once, not after waiting for a slot."""


def test_quick_load_below_and_above_the_limit(stack: Stack, local_mesh: Mesh,
                                              tmp_path) -> None:
    limit = int(STACK_LIMITS["gateway"]["DFMESH_MAX_CONCURRENT_ANALYSES"])
    pids = {name: p.popen.pid for name, p in stack.processes.items()}
    pids.update({p.name: p.popen.pid for p in local_mesh.processes
                 if p.name in ("tiny_gate", "visual", "mri")})
    image = make_image(tmp_path / "still.png").read_bytes()
    report = asyncio.run(run_load(stack.gateway_url, image, limit=limit, pids=pids,
                                  fusion_addr=stack.fusion_addr, **QUICK))
    out = REPO_ROOT / "artifacts" / "reliability" / "load.quick.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(table(report))

    below, above, over_grpc = report["phases"]
    assert below["statuses"] == {"200": below["requests"]}, below
    assert set(above["statuses"]) <= {"200", "429"}, above
    assert above["statuses"].get("429", 0) > 0 and above["statuses"].get("200", 0) > 0, above
    assert all(r.isdigit() and int(r) >= 1 for r in above["retry_after"]), above["retry_after"]
    assert above["slowest_refusal_ms"] < REFUSAL_MS, above
    assert set(over_grpc["statuses"]) <= {"OK", "RESOURCE_EXHAUSTED"}, over_grpc
    assert over_grpc["statuses"].get("RESOURCE_EXHAUSTED", 0) > 0, over_grpc
    assert all(float(r) > 0 for r in over_grpc["retry_after"]), over_grpc["retry_after"]
    mem = report["memory_mib"]
    grown = {n: mem["end"][n] - mem["middle"][n] for n in mem["end"]}
    assert all(g < FLAT_MIB for g in grown.values()), grown
