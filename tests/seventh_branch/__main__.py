"""Serve the noise branch: `python -m tests.seventh_branch` (configured by DFMESH_* variables)."""

from dfmesh.runtime.server import run_service
from tests.seventh_branch.service import NoiseServer, NoiseSettings

if __name__ == "__main__":
    run_service(NoiseServer, NoiseSettings)
