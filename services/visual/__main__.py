"""Serve the visual branch: `python -m services.visual` (configured by DFMESH_* variables)."""

from dfmesh.runtime.server import run_service
from services.visual.service import VisualServer, VisualSettings

if __name__ == "__main__":
    run_service(VisualServer, VisualSettings)
