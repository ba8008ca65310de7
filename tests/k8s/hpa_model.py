"""The HorizontalPodAutoscaler's arithmetic (autoscaling/v2, as kube-controller-manager does it)
and a small queueing model of one service under a load trace, to check the chosen targets.

HPA: every 15 s each metric proposes ceil(pods x metric / target), unless metric/target is
within 10% of 1; pods not ready count as 0 when scaling up (CPU), the largest proposal wins;
the proposal is stabilized (scale-up: the lowest over the up window; scale-down: the highest
over the down window), limited by the scaling policies, then clamped to [min, max].

Service: every pod serves one request at a time (DFMESH_MAX_CONCURRENT_INFERENCES=1) taking
cpu_seconds / min(1, cpu_limit) of wall time; requests are spread round-robin over the pods
that receive traffic. A pod starts `startup_seconds` after the HPA asks for it and receives
traffic only after its clients re-resolve the headless Service, at most
DFMESH_MAX_CONNECTION_AGE_SECONDS later. Wait = backlog drained at full speed (fluid) plus
the M/M/1 wait at the offered utilization (pessimistic: round-robin arrivals are more
regular than Poisson).
"""

from __future__ import annotations

import math
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
    cpu_seconds: float  # CPU time one request costs
    cpu_request: float
    cpu_limit: float
    startup_seconds: float = 45.0  # scheduling, model load and warm-up
    discovery_seconds: float = 60.0  # DFMESH_MAX_CONNECTION_AGE_SECONDS

    @property
    def wall_seconds(self) -> float:
        return self.cpu_seconds / min(1.0, self.cpu_limit)


@dataclass
class Trace:
    """What one simulation saw, sampled every `step` seconds."""

    times: list[float] = field(default_factory=list)
    replicas: list[int] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)  # queue wait of a request arriving now

    def max_wait(self, start: float = 0.0, end: float = math.inf) -> float:
        return max(w for t, w in zip(self.times, self.waits, strict=True) if start <= t < end)


def simulate(model: ServiceModel, spec: HpaSpec | None, load: Callable[[float], float],
             duration: float, start_replicas: int, step: float = 1.0) -> Trace:
    """Run a service under `load` (requests per second at time t) for `duration` seconds.
    With spec None the replica count stays at start_replicas (no autoscaler)."""
    scaler = Autoscaler(spec) if spec else None
    # each pod: the time it starts serving traffic; ready pods in `ready_at`
    ready_at = [0.0] * start_replicas
    serving_at = [0.0] * start_replicas
    backlog = 0.0  # requests waiting across serving pods (fluid)
    cpu_samples: list[tuple[float, float]] = []  # (time, cores used per ready pod)
    wait_samples: list[tuple[float, float]] = []
    trace = Trace()
    mu = 1.0 / model.wall_seconds  # requests per second one pod completes
    t = 0.0
    while t < duration:
        serving = sum(1 for s in serving_at if s <= t) or 1
        ready = sum(1 for r in ready_at if r <= t)
        lam = load(t)
        rho = lam / (serving * mu)
        capacity = serving * mu
        backlog = max(0.0, backlog + (lam - capacity) * step)
        busy = 1.0 if backlog > 0 else min(rho, 1.0)
        stationary = rho / (1 - rho) / mu if rho < 0.99 else 99 / mu
        wait = backlog / capacity + (stationary if backlog == 0 else 0.0)
        cores = busy * min(1.0, model.cpu_limit) * serving / max(ready, 1)
        cpu_samples.append((t, cores))
        wait_samples.append((t, wait))
        trace.times.append(t)
        trace.replicas.append(len(ready_at))
        trace.waits.append(wait)

        if scaler and t > 0 and t % SYNC_SECONDS == 0:
            current = len(ready_at)
            proposals = []
            if spec.cpu_utilization is not None:
                recent = [c for ts, c in cpu_samples if ts > t - CPU_WINDOW_SECONDS]
                utilization = 100 * sum(recent) / len(recent) / model.cpu_request
                proposals.append(metric_proposal([utilization] * ready, spec.cpu_utilization,
                                                 unready=current - ready))
            if "deepfake_inflight_requests" in spec.pod_targets:
                inflight_pod = (lam * (model.wall_seconds + wait)) / serving
                values = [inflight_pod] * serving + [0.0] * (current - serving)
                proposals.append(metric_proposal(values,
                                                 spec.pod_targets["deepfake_inflight_requests"]))
            if "deepfake_queue_seconds_avg" in spec.pod_targets:
                recent = [w for ts, w in wait_samples if ts > t - QUEUE_WINDOW_SECONDS]
                values = [sum(recent) / len(recent)] * serving + [0.0] * (current - serving)
                proposals.append(metric_proposal(values,
                                                 spec.pod_targets["deepfake_queue_seconds_avg"]))
            asked = [p for p in proposals if p is not None]
            proposal = max(asked) if asked else current
            desired = scaler.decide(t, current, proposal)
            if desired > current:
                for _ in range(desired - current):
                    ready_at.append(t + model.startup_seconds)
                    serving_at.append(t + model.startup_seconds + model.discovery_seconds)
            elif desired < current:
                # the newest pods go first; capacity leaves at once (conservative)
                del ready_at[desired:], serving_at[desired:]
        cpu_samples = [(ts, c) for ts, c in cpu_samples if ts > t - CPU_WINDOW_SECONDS]
        wait_samples = [(ts, w) for ts, w in wait_samples if ts > t - QUEUE_WINDOW_SECONDS]
        t += step
    return trace
