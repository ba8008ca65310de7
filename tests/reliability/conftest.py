"""The reliability stack: our own ingest and fusion processes (temp dir we can inspect,
strict limits) on the shared session mesh's branch processes, and a gateway in front."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mesh import Mesh, free_port, grpc_serving, launch, start_gateway, stop, wait_until
from tests.reliability.support import Stack

STACK_LIMITS = {
    # One limit through the stack: the gateway's is the smallest, so what it admits the
    # hops behind it take (ingest allows 2 at once by default).
    "gateway": {"DFMESH_MAX_CONCURRENT_ANALYSES": "2", "DFMESH_BUSY_RETRY_SECONDS": "3"},
    "fusion": {"DFMESH_MAX_CONCURRENT_ANALYSES": "2", "DFMESH_BUSY_RETRY_SECONDS": "3"},
    "ingest": {"DFMESH_MAX_CONCURRENT_INGESTS": "2", "DFMESH_BUSY_RETRY_SECONDS": "3"},
}


@pytest.fixture(scope="package")
def stack(local_mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("reliability")
    ingest_temp, spool, logs = root / "ingest-tmp", root / "spool", root / "logs"
    for d in (ingest_temp, spool, logs):
        d.mkdir()
    ports = {"ingest": free_port(), "fusion": free_port()}
    env = dict(local_mesh.env, DFMESH_INGEST_ADDR=f"127.0.0.1:{ports['ingest']}",
               DFMESH_FUSION_ADDR=f"127.0.0.1:{ports['fusion']}",
               DFMESH_TEMP_DIR=str(ingest_temp), DFMESH_GRACE_SECONDS="5")
    procs = {n: launch(f"services.{n}", f"rel-{n}", ports[n], dict(env, **STACK_LIMITS[n]), logs)
             for n in ("ingest", "fusion")}
    try:
        wait_until(lambda: all(grpc_serving(p) for p in ports.values()), list(procs.values()),
                   120.0, "the reliability stack")
        gateway, url = start_gateway(env, logs, "rel-gateway", DFMESH_SPOOL_DIR=str(spool),
                                     **STACK_LIMITS["gateway"])
    except BaseException:
        stop(list(procs.values()))
        raise
    procs["gateway"] = gateway
    s = Stack(procs, env["DFMESH_FUSION_ADDR"], env["DFMESH_INGEST_ADDR"], url, ingest_temp,
              spool, env, logs)
    yield s
    stop(list(s.processes.values()) + s.extra)
