"""The HorizontalPodAutoscaler's arithmetic (autoscaling/v2, as kube-controller-manager does it)
and a small queueing model of one service under a load trace, to check the chosen targets.

HPA: every 15 s each metric proposes ceil(pods x metric / target), unless metric/target is
within 10% of 1; pods not ready count as 0 when scaling up (CPU), the largest proposal wins;
the proposal is stabilized (scale-up: the lowest over the up window; scale-down: the highest
over the down window), limited by the scaling policies, then clamped to [min, max].

Service: a discrete-event simulation, one-second ticks. Requests arrive as a Poisson
process at the trace's rate and are dispatched round-robin (the orchestrator's channel
policy) over the pods that receive traffic; each pod serves one request at a time
(DFMESH_MAX_CONCURRENT_INFERENCES=1), first come first served, for a gamma-distributed time
of mean cpu_seconds / min(1, cpu_limit). A new pod is ready `startup_seconds` after the HPA
asks for it and receives traffic only once its clients re-resolve the headless Service, up
to DFMESH_MAX_CONNECTION_AGE_SECONDS later. CPU usage, in-flight counts and queue waits
are measured from the simulated requests, as metrics-server and Prometheus would see them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

TOLERANCE = 0.1
SYNC_SECONDS = 15
CPU_WINDOW_SECONDS = 30  # metrics-server's usage rate window, about
QUEUE_WINDOW_SECONDS = 120  # the [2m] rate window of the prometheus-adapter rule


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity ("250m", "2", 1) as a float."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


@dataclass(frozen=True)
class Policy:
    kind: str  # Pods | Percent
    value: int
    period_seconds: int


@dataclass(frozen=True)
class Rules:
    window_seconds: int
    select: str  # Max | Min | Disabled
    policies: tuple[Policy, ...]

    @classmethod
    def from_manifest(cls, rules: dict) -> Rules:
        return cls(rules["stabilizationWindowSeconds"], rules.get("selectPolicy", "Max"),
                   tuple(Policy(p["type"], p["value"], p["periodSeconds"])
                         for p in rules["policies"]))


@dataclass(frozen=True)
class HpaSpec:
    min_replicas: int
    max_replicas: int
    cpu_utilization: float | None  # percent of the CPU request
    pod_targets: dict[str, float]  # custom Pods metric -> average value target
    up: Rules
    down: Rules

    @classmethod
    def from_manifest(cls, hpa: dict) -> HpaSpec:
        spec = hpa["spec"]
        cpu, pods = None, {}
        for m in spec["metrics"]:
            if m["type"] == "Resource" and m["resource"]["name"] == "cpu":
                cpu = float(m["resource"]["target"]["averageUtilization"])
            elif m["type"] == "Pods":
                pods[m["pods"]["metric"]["name"]] = quantity(m["pods"]["target"]["averageValue"])
            else:
                raise ValueError(f"metric not modelled: {m}")
        return cls(spec.get("minReplicas", 1), spec["maxReplicas"], cpu, pods,
                   Rules.from_manifest(spec["behavior"]["scaleUp"]),
                   Rules.from_manifest(spec["behavior"]["scaleDown"]))


def metric_proposal(ready_values: list[float], target: float, unready: int = 0) -> int | None:
    """Replicas one metric asks for: ceil(pods x mean / target), None inside the tolerance.
    When scaling up, pods not ready yet are counted with a value of 0."""
    if not ready_values:
        return None
    ratio = sum(ready_values) / len(ready_values) / target
    if abs(ratio - 1) <= TOLERANCE:
        return None
    if ratio > 1 and unready:
        pods = len(ready_values) + unready
        ratio = sum(ready_values) / pods / target
        if ratio <= 1 + TOLERANCE:
            return None
        return math.ceil(ratio * pods)
    return math.ceil(ratio * len(ready_values))


@dataclass
class Autoscaler:
    """Stabilization windows, scaling policies and min/max, with the controller's memory."""

    spec: HpaSpec
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)  # (time, replica change)

    def decide(self, now: float, current: int, proposal: int) -> int:
        if not self.recommendations:  # the controller seeds a new HPA's history this way
            self.recommendations.append((now, current))
        desired = self._stabilize(now, current, proposal)
        desired = self._rate_limit(now, current, desired)
        desired = min(max(desired, self.spec.min_replicas), self.spec.max_replicas)
        if desired != current:
            self.events.append((now, desired - current))
        return desired

    def _stabilize(self, now: float, current: int, proposal: int) -> int:
        up_cut, down_cut = now - self.spec.up.window_seconds, now - self.spec.down.window_seconds
        up = min([proposal, *(r for t, r in self.recommendations if t > up_cut)])
        down = max([proposal, *(r for t, r in self.recommendations if t > down_cut)])
        self.recommendations.append((now, proposal))
        keep = now - max(self.spec.up.window_seconds, self.spec.down.window_seconds)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > keep]
        return min(max(current, up), down)

    def _change_in(self, now: float, period: int, sign: int) -> int:
        return sum(abs(d) for t, d in self.events if t > now - period and d * sign > 0)

    def _rate_limit(self, now: float, current: int, desired: int) -> int:
        if desired > current and self.spec.up.select != "Disabled":
            limits = []
            for p in self.spec.up.policies:
                start = (current - self._change_in(now, p.period_seconds, +1)
                         + self._change_in(now, p.period_seconds, -1))
                limits.append(start + p.value if p.kind == "Pods"
                              else math.ceil(start * (1 + p.value / 100)))
            cap = max(limits) if self.spec.up.select == "Max" else min(limits)
            return min(desired, cap)
        if desired < current and self.spec.down.select != "Disabled":
            limits = []
            for p in self.spec.down.policies:
                start = (current + self._change_in(now, p.period_seconds, -1)
                         - self._change_in(now, p.period_seconds, +1))
                limits.append(start - p.value if p.kind == "Pods"
                              else int(start * (1 - p.value / 100)))
            floor = min(limits) if self.spec.down.select == "Max" else max(limits)
            return max(desired, floor)
        return current  # no change asked for, or this direction is Disabled


@dataclass(frozen=True)
class ServiceModel:
    cpu_seconds: float  # CPU time one request costs (mean)
    cpu_request: float
    cpu_limit: float
    startup_seconds: float = 45.0  # scheduling, model load and warm-up
    discovery_seconds: float = 60.0  # DFMESH_MAX_CONNECTION_AGE_SECONDS
    service_cv: float = 0.3  # fixed-size tensors per clip: service time varies little

    @property
    def wall_seconds(self) -> float:
        return self.cpu_seconds / min(1.0, self.cpu_limit)


@dataclass
class Pod:
    ready_at: float
    serving_at: float
    free_at: float = 0.0
    work: list[tuple[float, float, float]] = field(default_factory=list)  # (arrival, start, end)

    def busy_seconds(self, start: float, end: float) -> float:
        return sum(max(0.0, min(e, end) - max(s, start)) for _, s, e in self.work)

    def inflight(self, now: float) -> int:
        return sum(1 for a, _, e in self.work if a <= now < e)

    def forget_before(self, horizon: float) -> None:
        self.work = [w for w in self.work if w[2] > horizon]


@dataclass
class Trace:
    """What one simulation saw: replicas each second, and every request's queue wait."""

    times: list[float] = field(default_factory=list)
    replicas: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)

    def max_wait(self, start: float = 0.0, end: float = math.inf) -> float:
        return max((w for a, w in zip(self.arrivals, self.waits, strict=True) if start <= a < end),
                   default=0.0)

    def wait_quantile(self, q: float, keep: Callable[[float], bool]) -> float:
        waits = sorted(w for a, w in zip(self.arrivals, self.waits, strict=True) if keep(a))
        return waits[min(len(waits) - 1, int(q * len(waits)))] if waits else 0.0


def simulate(model: ServiceModel, spec: HpaSpec | None, load: Callable[[float], float],
             duration: float, start_replicas: int, seed: int = 7) -> Trace:
    """Run a service under `load` (requests per second at time t) for `duration` seconds:
    Poisson arrivals, round-robin over the pods receiving traffic, one request at a time
    per pod, gamma-distributed service times. With spec None the replica count stays fixed."""
    rng = random.Random(seed)
    shape = 1 / model.service_cv ** 2
    scaler = Autoscaler(spec) if spec else None
    pods = [Pod(0.0, 0.0) for _ in range(start_replicas)]
    trace = Trace()
    turn = 0
    for second in range(int(duration)):
        t = float(second)
        serving = [p for p in pods if p.serving_at <= t] or pods[:1]
        arrivals = sorted(t + rng.random() for _ in range(poisson(rng, load(t))))
        for a in arrivals:
            pod = serving[turn % len(serving)]
            turn += 1
            start = max(a, pod.free_at)
            pod.free_at = start + rng.gammavariate(shape, model.wall_seconds / shape)
            pod.work.append((a, start, pod.free_at))
            trace.arrivals.append(a)
            trace.waits.append(start - a)
        trace.times.append(t)
        trace.replicas.append(len(pods))
        if scaler and second and second % SYNC_SECONDS == 0:
            desired = autoscale(scaler, model, pods, t)
            while len(pods) < desired:
                pods.append(Pod(t + model.startup_seconds,
                                t + model.startup_seconds + model.discovery_seconds))
            # the newest pods go first; each drains what it already holds (waits are
            # fixed at dispatch), it just receives nothing new
            del pods[desired:]
        for p in pods:
            p.forget_before(t - QUEUE_WINDOW_SECONDS)
    return trace


def autoscale(scaler: Autoscaler, model: ServiceModel, pods: list[Pod], t: float) -> int:
    """One HPA sync: every metric's proposal from what the pods report, the largest wins."""
    spec = scaler.spec
    ready = [p for p in pods if p.ready_at <= t]
    proposals = []
    if spec.cpu_utilization is not None:
        cores = min(1.0, model.cpu_limit)
        utilization = [100 * cores * p.busy_seconds(t - CPU_WINDOW_SECONDS, t)
                       / CPU_WINDOW_SECONDS / model.cpu_request for p in ready]
        proposals.append(metric_proposal(utilization, spec.cpu_utilization,
                                         unready=len(pods) - len(ready)))
    # custom metrics: every pod reports (a starting pod serves /metrics with zeros)
    if "deepfake_inflight_requests" in spec.pod_targets:
        proposals.append(metric_proposal([float(p.inflight(t)) for p in pods],
                                         spec.pod_targets["deepfake_inflight_requests"]))
    if "deepfake_queue_seconds_avg" in spec.pod_targets:
        means = []
        for p in pods:
            waits = [s - a for a, s, _ in p.work if s > t - QUEUE_WINDOW_SECONDS and s <= t]
            means.append(sum(waits) / len(waits) if waits else 0.0)
        proposals.append(metric_proposal(means, spec.pod_targets["deepfake_queue_seconds_avg"]))
    asked = [p for p in proposals if p is not None]
    return scaler.decide(t, len(pods), max(asked) if asked else len(pods))


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth; the means here are a few per second)."""
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k
