"""`python -m services.fusion`: serve OrchestratorService (configuration from DFMESH_*)."""

from dfmesh.runtime.server import run_service
from services.fusion.service import FusionService
from services.fusion.settings import FusionSettings

if __name__ == "__main__":
    run_service(FusionService, FusionSettings)
