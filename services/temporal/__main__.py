"""Serve the temporal branch: `python -m services.temporal` (configured by DFMESH_* variables)."""

from dfmesh.runtime.server import run_service
from services.temporal.service import TemporalServer, TemporalSettings

if __name__ == "__main__":
    run_service(TemporalServer, TemporalSettings)
