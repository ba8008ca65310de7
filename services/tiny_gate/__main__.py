"""Serve the tiny_gate branch: `python -m services.tiny_gate` (configured by DFMESH_* variables)."""

from dfmesh.runtime.server import run_service
from services.tiny_gate.service import TinyGateServer, TinyGateSettings

if __name__ == "__main__":
    run_service(TinyGateServer, TinyGateSettings)
