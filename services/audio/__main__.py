"""Serve the audio branch: `python -m services.audio` (configured by DFMESH_* variables)."""

from dfmesh.runtime.server import run_service
from services.audio.service import AudioServer, AudioSettings

if __name__ == "__main__":
    run_service(AudioServer, AudioSettings)
