"""BranchService.Analyze: the request stream to BranchInputs, the model server's output to
a BranchResult, with the branch's timings, metrics and log line."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from grpc import aio

from deepfake.v1 import branch_pb2, branch_pb2_grpc
from dfmesh.errors import NotReady
from dfmesh.runtime import metrics
from dfmesh.runtime.branch_inputs import collect
from dfmesh.runtime.logging import analysis_id_var
from dfmesh.runtime.tracing import annotate

if TYPE_CHECKING:
    from dfmesh.runtime.model_server import BranchOutput, ModelServer

log = logging.getLogger(__name__)


def ms_since(start: float) -> float:
    return round(1000.0 * (time.perf_counter() - start), 3)


def to_result(branch: str, output: BranchOutput, model: branch_pb2.ModelInfo
              ) -> branch_pb2.BranchResult:
    """BranchOutput -> BranchResult."""
    return branch_pb2.BranchResult(
        branch=branch, status=branch_pb2.BranchStatus.Value(output.status), detail=output.detail,
        features=output.features, prob_fake=output.prob_fake,
        item_scores=[branch_pb2.ItemScore(item=item.label, frame_index=item.frame_index,
                                          timestamp_seconds=item.timestamp_seconds,
                                          prob_fake=prob)
                     for item, prob in output.item_scores],
        embeddings=[branch_pb2.FrameEmbedding(frame_index=item.frame_index,
                                              timestamp_seconds=item.timestamp_seconds,
                                              values=values.tolist(),
                                              source_model_sha256=model.sha256)
                    for item, values in output.embeddings],
        model=model, timings_ms=output.timings_ms)


class BranchServicer(branch_pb2_grpc.BranchServiceServicer):
    """Translates the BranchService stream to and from the model server."""

    def __init__(self, model: ModelServer) -> None:
        self.model = model

    async def Analyze(self, request_iterator: Any, context: aio.ServicerContext
                      ) -> branch_pb2.BranchResult:
        model = self.model
        if not model.ready:
            raise NotReady(f"{model.branch} is still loading its model; retry shortly",
                           retry_after_seconds=1.0)
        start = time.perf_counter()
        inputs = await collect(request_iterator, model.wants, model.settings.max_audio_seconds)
        collect_ms = ms_since(start)
        if inputs.analysis_id:
            analysis_id_var.set(inputs.analysis_id)
        annotate(analysis__id=inputs.analysis_id, branch=model.branch)
        output = await model.analyze(inputs)
        annotate(branch__status=output.status, prob_fake=output.prob_fake,
                 model__name=model.manifest.name if model.manifest else None,
                 model__version=model.manifest.version if model.manifest else None)
        output.timings_ms = {"collect": collect_ms, **output.timings_ms,
                             "total": ms_since(start)}
        metrics.BRANCH_RESULTS.labels(model.branch, output.status).inc()
        for stage, ms in output.timings_ms.items():
            metrics.STAGE_SECONDS.labels(model.branch, stage).observe(ms / 1000.0)
        log.info("analyzed", extra={"analysis_id": inputs.analysis_id, "status": output.status,
                                    "prob_fake": round(output.prob_fake, 4)})
        return to_result(model.branch, output, model.model_info())
