"""The model-server base every branch service subclasses (kserve-style).

    load()         resolve the model in the repository, verify its sha256, open an ONNX Runtime
                   session (CUDA where available, else CPU), warm it up; then `ready`
    preprocess()   BranchInputs (plain Python) -> Prepared: model feeds + the items they score
    predict()      feeds -> ONNX outputs, in slices of at most `max_batch_size` items
    postprocess()  Prepared + outputs -> BranchOutput: named statistics, prob_fake, item scores

A subclass sets `branch`, `wants` (which payloads to decode), `input_names` and
`output_names`, and writes `preprocess` and `postprocess`. Concurrent requests' feeds are
joined into shared session runs by dfmesh.runtime.batching.MicroBatcher where the model's
batch axis is dynamic (DFMESH_BATCH_WINDOW_MS, DFMESH_<BRANCH>_MAX_BATCH_SIZE). Input a branch
cannot use is reported with `raise NoUsableInput(detail)`, which becomes a NO_INPUT result,
not an error. Warm-up runs the model and `preprocess` once on synthetic inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import onnxruntime as ort
from grpc import aio
from pydantic import Field

from deepfake.v1 import branch_pb2, branch_pb2_grpc
from dfmesh.runtime import metrics
from dfmesh.runtime.batching import MicroBatcher
from dfmesh.runtime.branch_inputs import BranchInputs, select_face_crops, synthetic_inputs
from dfmesh.runtime.branch_servicer import BranchServicer, ms_since
from dfmesh.runtime.config import ServiceSettings
from dfmesh.runtime.errors import DfmeshError, InvalidInput, ModelIntegrityError
from dfmesh.runtime.model_repo import ModelManifest, load_verified
from dfmesh.runtime.onnx_session import (
    check_feeds,
    check_preprocessing,
    choose_providers,
    slice_batches,
    warmup_shape,
)
from dfmesh.runtime.server import BaseService
from dfmesh.runtime.tracing import tracer

log = logging.getLogger(__name__)

BRANCH_SERVICE = "deepfake.v1.BranchService"
Status = Literal["OK", "NO_INPUT", "FALLBACK"]


class ModelServerSettings(ServiceSettings):
    """Settings every branch shares, e.g. DFMESH_MODEL_VERSION, DFMESH_INTRA_OP_THREADS. A
    batch and a face limit are set per branch (DFMESH_VISUAL_MAX_BATCH_SIZE): their units
    and sensible values differ between branches."""

    per_service: ClassVar[frozenset[str]] = frozenset({"max_batch_size", "max_faces_per_frame"})

    model_version: str = Field("latest", description="version folder to serve; latest = highest")
    execution_provider: str = Field("auto", pattern="^(auto|cpu|cuda)$",
                                    description="auto = CUDA when onnxruntime-gpu sees a GPU")
    intra_op_threads: int = Field(1, ge=0, description="ONNX Runtime threads per inference; "
                                                       "0 = one per core (set to the CPU limit)")
    max_batch_size: int = Field(64, ge=1, description="items per session run; more are sliced "
                                "(also the most rows the micro-batcher joins)")
    batch_window_ms: float = Field(2.0, ge=0, le=1000, description="how long the first waiting "
                                   "request waits for others to share its session run; 0 = join "
                                   "only requests already queued (dfmesh.runtime.batching)")
    max_concurrent_inferences: int = Field(1, ge=1, description="requests computing at once; "
                                                                "others queue")
    max_audio_seconds: float = Field(600.0, gt=0, description="longer PCM is refused")


class NoUsableInput(Exception):
    """Raised by `preprocess` when the stream has nothing this branch can score."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Item:
    """What one model output row scores: a crop, a patch group, a window."""

    label: str
    frame_index: int = 0
    timestamp_seconds: float = 0.0


@dataclass
class Prepared:
    """Model feeds and the items they score, plus whatever postprocess needs."""

    feeds: dict[str, np.ndarray]
    items: list[Item]
    status: Status = "OK"
    detail: str = ""
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class BranchOutput:
    """A branch's answer in plain Python (the servicer turns it into a BranchResult)."""

    status: Status
    detail: str = ""
    features: dict[str, float] = field(default_factory=dict)
    prob_fake: float = 0.0
    item_scores: list[tuple[Item, float]] = field(default_factory=list)
    embeddings: list[tuple[Item, np.ndarray]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float64."""
    x = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


class ModelServer(BaseService):
    """Serves one branch model over deepfake.v1.BranchService."""

    branch: ClassVar[str] = ""
    wants: ClassVar[frozenset[str]] = frozenset()
    input_names: ClassVar[tuple[str, ...]] = ()
    output_names: ClassVar[tuple[str, ...]] = ("logit",)
    preprocessing_contract: ClassVar[dict[str, Any]] = {}
    """What this code's preprocessing makes (e.g. dfmesh.preprocess.audio.PREPROCESSING); a
    model whose manifest says otherwise for any shared key is refused at load."""
    cpu_memory_arena: ClassVar[bool] = True
    """ONNX Runtime's CPU arena keeps the largest run's buffers for the next one: faster, but
    a model with big intermediates (audio's graph attention) then holds its peak for good."""
    example_shapes: ClassVar[dict[str, tuple[int | None, ...]]] = {}
    """Typical input shapes (None = whatever the model fixes), used for dynamic axes at
    warm-up, e.g. tiny_gate's patch height and width."""
    health_names = (BRANCH_SERVICE,)

    def __init__(self, settings: ModelServerSettings) -> None:
        self.settings = settings
        self.name = self.branch
        self.ready = False
        self.manifest: ModelManifest | None = None
        self.session: ort.InferenceSession | None = None
        self.provider = ""
        self._slots: asyncio.Semaphore | None = None
        self.batcher: MicroBatcher | None = None

    def register(self, server: aio.Server) -> None:
        branch_pb2_grpc.add_BranchServiceServicer_to_server(BranchServicer(self), server)

    # --- load ---

    async def load(self) -> None:
        try:
            await asyncio.to_thread(self.load_model)
        except ModelIntegrityError as exc:
            log.error("refusing to start: %s", exc.message, extra={"branch": self.branch})
            raise
        self._slots = asyncio.Semaphore(self.settings.max_concurrent_inferences)
        if self.batchable():
            self.batcher = MicroBatcher(self.predict, self.settings.batch_window_ms / 1000.0,
                                        self.settings.max_batch_size, self.branch)
        self.ready = True

    def batchable(self) -> bool:
        """Whether requests can share a session run: every input's batch axis is dynamic."""
        assert self.session is not None
        return all(arg.shape and not isinstance(arg.shape[0], int)
                   for arg in self.session.get_inputs())

    def load_model(self) -> None:
        """Verify, open and warm up the model (blocking)."""
        s = self.settings
        manifest = load_verified(s.model_repo, self.branch, s.model_version)
        if manifest.format != "onnx":
            raise ModelIntegrityError(f"{manifest.directory}: format {manifest.format!r}, "
                                      "a branch serves onnx")
        check_preprocessing(manifest, self.preprocessing_contract)
        artifact = manifest.artifact_path.read_bytes()
        if hashlib.sha256(artifact).hexdigest() != manifest.sha256:
            raise ModelIntegrityError(f"{manifest.artifact_path} changed while loading")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = self.cpu_memory_arena
        options.intra_op_num_threads = s.intra_op_threads
        options.inter_op_num_threads = 1
        providers = choose_providers(s.execution_provider, ort.get_available_providers())
        session = ort.InferenceSession(artifact, sess_options=options, providers=providers)
        self._check_signature(manifest, session)
        self.load_extras(manifest)
        self.manifest, self.session = manifest, session
        self.provider = session.get_providers()[0]
        log.info("model loaded", extra={"branch": self.branch, "model": manifest.name,
                                        "version": manifest.version, "provider": self.provider,
                                        "intra_op_threads": s.intra_op_threads})
        start = time.perf_counter()
        self.predict(self.warmup_feeds())
        self.warm_up_preprocess()
        log.info("warm-up done", extra={"ms": round(1000 * (time.perf_counter() - start), 1)})
        metrics.MODEL_INFO.labels(self.branch, manifest.name, manifest.version,
                                  manifest.sha256[:12], self.provider).set(1)

    def load_extras(self, manifest: ModelManifest) -> None:
        """Read what the model needs beside its ONNX file from the verified manifest (before
        the warm-up, which then exercises it); raise ModelIntegrityError when it is unusable."""

    def _check_signature(self, manifest: ModelManifest, session: ort.InferenceSession) -> None:
        have_in = {i.name for i in session.get_inputs()}
        have_out = {o.name for o in session.get_outputs()}
        missing = [n for n in self.input_names if n not in have_in]
        missing += [n for n in self.output_names if n not in have_out]
        if missing:
            raise ModelIntegrityError(
                f"{manifest.artifact_path} lacks {', '.join(missing)}; the {self.branch} "
                f"service needs inputs {self.input_names} and outputs {self.output_names}")

    def warmup_feeds(self) -> dict[str, np.ndarray]:
        """Zeros shaped by the manifest's input spec (dynamic axes from `example_shapes`)."""
        assert self.session is not None and self.manifest is not None
        specs = {spec["name"]: spec for spec in self.manifest.inputs}
        feeds = {}
        for arg in self.session.get_inputs():
            spec = specs.get(arg.name, {})
            shape = warmup_shape(spec.get("shape") or arg.shape,
                                 self.example_shapes.get(arg.name, ()))
            feeds[arg.name] = np.zeros(shape, dtype=np.dtype(spec.get("dtype", "float32")))
        return feeds

    def warm_up_preprocess(self) -> None:
        """Run `preprocess` once on synthetic inputs, so the first request does not pay for
        first-use set-up (librosa's numba kernels took 4-5 s on the first audio and sync
        request). Whatever the synthetic input provokes is logged and ignored."""
        try:
            self.preprocess(synthetic_inputs(self.input_shape))
        except (NoUsableInput, DfmeshError, ValueError) as exc:
            log.info("preprocessing warm-up skipped: %s", exc)

    def input_shape(self, name: str) -> list[int | str | None]:
        """The loaded model's declared shape for input `name`."""
        assert self.session is not None
        return next(i.shape for i in self.session.get_inputs() if i.name == name)

    # --- per request ---

    def preprocess(self, inputs: BranchInputs) -> Prepared:
        raise NotImplementedError

    def predict(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model over all rows of `feeds`, at most max_batch_size rows per run."""
        assert self.session is not None
        check_feeds(self.session, feeds)
        runs = [self.session.run(list(self.output_names), part)
                for part in slice_batches(feeds, self.settings.max_batch_size)]
        return {name: np.concatenate([r[i] for r in runs])
                for i, name in enumerate(self.output_names)}

    def postprocess(self, prepared: Prepared, outputs: dict[str, np.ndarray]) -> BranchOutput:
        raise NotImplementedError

    @staticmethod
    def scored(prepared: Prepared, features: dict[str, float], prob_fake: float,
               item_probs: np.ndarray | list[float],
               embeddings: list[tuple[Item, np.ndarray]] | None = None) -> BranchOutput:
        """A BranchOutput carrying prepared's status and detail, one score per item."""
        if len(item_probs) != len(prepared.items):
            raise ValueError(f"{len(item_probs)} scores for {len(prepared.items)} items")
        return BranchOutput(
            prepared.status, prepared.detail, features=features, prob_fake=float(prob_fake),
            item_scores=[(item, float(p))
                         for item, p in zip(prepared.items, item_probs, strict=True)],
            embeddings=embeddings or [])

    async def analyze(self, inputs: BranchInputs) -> BranchOutput:
        """preprocess -> predict -> postprocess off the event loop, timed.

        At most max_concurrent_inferences requests preprocess at once. With a micro-batcher
        the slot is released before inference, so requests queue at the batcher and share
        session runs; without one, the slot covers inference too."""
        assert self._slots is not None and self.manifest is not None
        queued = time.perf_counter()
        async with contextlib.AsyncExitStack() as slot:
            await slot.enter_async_context(self._slots)
            slot_wait = time.perf_counter() - queued
            timings: dict[str, float] = {}
            start = time.perf_counter()
            try:
                with tracer.start_as_current_span(f"{self.branch}.preprocess"):
                    prepared = await asyncio.to_thread(self.preprocess, inputs)
            except NoUsableInput as exc:
                metrics.QUEUE_SECONDS.labels(self.branch).observe(slot_wait)
                return BranchOutput("NO_INPUT", exc.detail, timings_ms=timings)
            timings["preprocess"] = ms_since(start)
            if self.batcher is not None:
                await slot.aclose()
            start = time.perf_counter()
            with tracer.start_as_current_span(f"{self.branch}.inference") as span:
                span.set_attribute("batch_size", len(prepared.items))
                span.set_attributes({"model.name": self.manifest.name,
                                     "model.version": self.manifest.version,
                                     "model.provider": self.provider})
                batch_wait = 0.0
                if self.batcher is not None:
                    outputs, batch_wait = await self.batcher.predict_timed(prepared.feeds)
                else:
                    outputs = await asyncio.to_thread(self.predict, prepared.feeds)
            # Queue time: the wait for a slot plus the wait at the micro-batcher.
            metrics.QUEUE_SECONDS.labels(self.branch).observe(slot_wait + batch_wait)
            timings["inference"] = ms_since(start)
            start = time.perf_counter()
            output = self.postprocess(prepared, outputs)
            timings["postprocess"] = ms_since(start)
        output.timings_ms.update(timings)
        self._observe(prepared, output)
        return output

    def _observe(self, prepared: Prepared, output: BranchOutput) -> None:
        assert self.manifest is not None
        metrics.INFERENCE_SECONDS.labels(self.branch, self.manifest.version).observe(
            output.timings_ms["inference"] / 1000.0)
        metrics.BATCH_SIZE.labels(self.branch).observe(len(prepared.items))
        metrics.BRANCH_PROB.labels(self.branch, self.manifest.version).observe(output.prob_fake)
        for _, prob in output.item_scores:
            metrics.ITEM_PROB.labels(self.branch).observe(prob)

    def model_info(self) -> branch_pb2.ModelInfo:
        m = self.manifest
        if m is None:
            return branch_pb2.ModelInfo(provider=self.provider)
        return branch_pb2.ModelInfo(name=m.name, version=m.version, sha256=m.sha256,
                                    provider=self.provider)


def per_row(output: np.ndarray, rows: int, what: str) -> np.ndarray:
    """A model output with one value per row ([N] or [N, 1]) as a flat [N] array."""
    flat = np.asarray(output).reshape(len(output), -1)
    if flat.shape != (rows, 1):
        raise ModelIntegrityError(f"model output {what} has shape {output.shape}, expected "
                                  f"one value for each of {rows} rows")
    return flat[:, 0]


def face_crops_prepared(inputs: BranchInputs, max_faces_per_frame: int) -> Prepared:
    """Prepared (feeds still empty) over the crops a face branch scores; `context["crops"]`
    holds them and `context["num_faces"]` counts real faces (0 on the centre-crop fallback)."""
    faces = select_face_crops(inputs.frames, max_faces_per_frame)
    if not faces.crops:
        raise NoUsableInput("no face crops and no full frames to score")
    where = zip(faces.labels, faces.frame_indices, faces.timestamps, strict=True)
    items = [Item(label, f, t) for label, f, t in where]
    if faces.fallback:
        return Prepared({}, items, "FALLBACK", "no face found; scored centre crops of the frames",
                        context={"crops": faces.crops, "num_faces": 0})
    return Prepared({}, items, context={"crops": faces.crops, "num_faces": faces.num_faces})


def require_pcm(inputs: BranchInputs, sample_rate: int) -> np.ndarray:
    """The stream's PCM at `sample_rate`, or NoUsableInput where the clip has none."""
    if inputs.pcm is None or inputs.pcm.size == 0:
        detail = ("the clip has no audio track" if inputs.has_audio is False
                  else "no audio was sent")
        raise NoUsableInput(detail)
    if inputs.sample_rate != sample_rate:
        raise InvalidInput(f"audio must be mono float32 PCM at {sample_rate} Hz, "
                           f"got {inputs.sample_rate} Hz")
    return inputs.pcm
