"""The fusion service: loads the checksum-verified bundle, then serves OrchestratorService."""

from __future__ import annotations

import asyncio
import logging

from grpc import aio

from deepfake.v1 import orchestrator_pb2_grpc
from dfmesh.runtime.server import BaseService
from services.fusion.cache import MemoryStore, ModelView, RedisStore, ResultCache
from services.fusion.fusion import load_bundle
from services.fusion.orchestrator import Orchestrator
from services.fusion.servicer import OrchestratorServicer
from services.fusion.settings import BRANCH_NAMES, FusionSettings
from services.fusion.upstreams import Upstreams

log = logging.getLogger(__name__)


class FusionService(BaseService):
    name = "fusion"
    health_names = ("deepfake.v1.OrchestratorService",)

    def __init__(self, settings: FusionSettings) -> None:
        self.settings = settings
        self.upstreams = Upstreams(settings)
        self.servicer = OrchestratorServicer()
        self.cache = result_cache(settings)

    def register(self, server: aio.Server) -> None:
        orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(self.servicer, server)

    async def load(self) -> None:
        bundle = await asyncio.to_thread(
            load_bundle, self.settings.model_repo, self.settings.fusion_version)
        orchestrator = Orchestrator(self.settings, self.upstreams, bundle, self.cache)
        if orchestrator.early_exit_threshold > orchestrator.threshold:
            log.warning("the early-exit threshold %.3f is above the decision threshold %.3f: "
                        "early exits will call clips Authentic that the fusion would not",
                        orchestrator.early_exit_threshold, orchestrator.threshold)
        self.servicer.orchestrator = orchestrator
        log.info("fusion bundle loaded", extra={
            "version": bundle.version, "sha256": bundle.sha256,
            "heads": ",".join(sorted(bundle.heads)), "threshold": orchestrator.threshold})

    async def close(self) -> None:
        await self.upstreams.close()
        if self.cache is not None:
            await self.cache.close()


def result_cache(settings: FusionSettings) -> ResultCache | None:
    """Redis when DFMESH_REDIS_URL is set, else in memory; None when the size is 0."""
    if settings.result_cache_size == 0:
        return None
    models = ModelView(BRANCH_NAMES, settings.result_cache_model_max_age_seconds)
    if settings.redis_url:
        return ResultCache(RedisStore(settings.redis_url, settings.result_cache_ttl_seconds),
                           models)
    return ResultCache(MemoryStore(settings.result_cache_size,
                                   settings.result_cache_ttl_seconds), models)
