"""Serve the mri branch: `python -m services.mri` (configured by DFMESH_* variables)."""

from dfmesh.runtime.server import run_service
from services.mri.service import MriServer, MriSettings

if __name__ == "__main__":
    run_service(MriServer, MriSettings)
