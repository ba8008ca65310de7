"""Serve ingest: `python -m services.ingest` (configured by DFMESH_* variables)."""

from dfmesh.runtime.server import run_service
from services.ingest.servicer import IngestService
from services.ingest.settings import IngestSettings

if __name__ == "__main__":
    run_service(IngestService, IngestSettings)
