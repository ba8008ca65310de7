"""dfmesh.launcher's port choice: a mesh whose services serve metrics on port + 1000
(DFMESH_METRICS_PORT=-1) gets ports no other port of the mesh lands on."""

from __future__ import annotations

from dfmesh.launcher import free_ports
from dfmesh.runtime.config import METRICS_PORT_OFFSET


def test_mesh_ports_leave_each_metrics_port_free() -> None:
    ports = free_ports(40)
    every_port = [*ports, *(p + METRICS_PORT_OFFSET for p in ports)]
    assert len(set(every_port)) == 80
    assert all(1024 < p <= 65535 for p in every_port)
