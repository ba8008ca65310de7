"""Serve the sync branch: `python -m services.sync` (configured by DFMESH_* variables)."""

from dfmesh.runtime.server import run_service
from services.sync.service import SyncServer, SyncSettings

if __name__ == "__main__":
    run_service(SyncServer, SyncSettings)
