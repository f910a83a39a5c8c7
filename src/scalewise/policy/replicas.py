"""Replica math of the Kubernetes Horizontal Pod Autoscaler (autoscaling/v2), without a cluster.

Where this follows Kubernetes (the "Algorithm details" and "Configurable scaling behavior"
sections of the HPA docs, and ``pkg/controller/podautoscaler/horizontal.go`` /
``replica_calculator.go``), per evaluation at time ``now``:

- Per metric: ``ratio = value / target``; inside the tolerance (``|ratio − 1| ≤ 0.1``) the
  proposal is the current count, else ``ceil(current × ratio)`` (``ceil(ratio)`` from zero).
  Several metrics: the largest proposal wins.
- Missing metrics: when every metric is missing, or some are and the others propose fewer
  replicas, nothing is decided (the HPA's ``FailedGetMetrics``); a scale-up still happens.
- Outside ``[min_replicas, max_replicas]`` the count goes straight to the bound.
- Stabilization (``stabilizeRecommendationWithBehaviors``): every raw proposal is remembered;
  the result may not go below the *lowest* proposal of the scale-up window nor above the
  *highest* of the scale-down window (default 300 s: "use the highest recommendation in the
  last 5 minutes"). A new autoscaler starts with the current count as its first proposal.
- Rate (``convertDesiredReplicasWithBehaviorRate``): each ``Pods``/``Percent`` policy limits the
  change against the count at the start of its period (current − added + removed within
  ``period``); ``selectPolicy`` ``Max`` takes the policy allowing the largest change, ``Min``
  the smallest, ``Disabled`` none. Up: ``ceil(start × (1 + p/100))``; down:
  ``int(start × (1 − p/100))``, as Kubernetes rounds.

Where it differs: values are already per replica (no pod readiness or missing-pod
assumptions); products are rounded to 1e-9 before ``ceil``/``int`` so binary noise does not add
a replica (10 × 110 % is 11, where Go's float64 gives 12); time is always passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from scalewise.errors import RuleError
from scalewise.policy.model import Horizontal, HPARules

#: Decimal places kept before rounding up/down: removes float noise, keeps real fractions.
_PRECISION: Final = 9


def _ceil(x: float) -> int:
    return math.ceil(round(x, _PRECISION))


def _trunc(x: float) -> int:
    return int(round(x, _PRECISION))


def metric_proposal(current: int, value: float, target: float, tolerance: float = 0.1) -> int:
    """One metric's replica count: ``ceil(current × value / target)``, or ``current`` when the
    ratio is within ``tolerance`` of 1 (the HPA's ``getUsageRatioReplicaCount``)."""
    if not target > 0:
        raise RuleError(f"an HPA target must be a positive number, got {target!r}")
    ratio = value / target
    if current == 0:
        return _ceil(ratio)
    if abs(ratio - 1.0) <= tolerance + 1e-12:
        return current
    return _ceil(current * ratio)


def propose(
    current: int, values_and_targets: Iterable[tuple[float | None, float]], tolerance: float = 0.1
) -> int | None:
    """The largest proposal over metrics, or ``None`` when missing data forbids a decision."""
    best, missing, count = 0, 0, 0
    for value, target in values_and_targets:
        count += 1
        if value is None or math.isnan(value):
            missing += 1
            continue
        best = max(best, metric_proposal(current, value, target, tolerance))
    if missing >= count or (missing and best < current):
        return None
    return best


def desired_replicas(
    current: int, values_and_targets: Iterable[tuple[float | None, float]], tolerance: float = 0.1
) -> int:
    """The HPA formula over several metrics: the max of ``ceil(current × value / target)``.

    A metric whose value is ``None`` is missing: the result never goes below ``current`` then,
    and with every metric missing it is ``current``.
    """
    proposal = propose(current, values_and_targets, tolerance)
    return current if proposal is None else proposal


@dataclass(slots=True)
class HPAState:
    """The autoscaler's memory: raw proposals and scale events, as ``(time, replicas)`` pairs.

    Persist it between evaluations (``to_dict``/``from_dict``); a fresh one behaves like a
    newly created HPA (no scale-down before the stabilization window has passed).
    """

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_up_events: list[tuple[float, int]] = field(default_factory=list)
    scale_down_events: list[tuple[float, int]] = field(default_factory=list)
    last_replicas: int | None = None
    started: bool = False

    def record_scale(self, at: float, before: int, after: int) -> None:
        """Remember a change of replica count (the HPA's ``storeScaleEvent``)."""
        if after > before:
            self.scale_up_events.append((at, after - before))
        elif after < before:
            self.scale_down_events.append((at, before - after))
        self.last_replicas = after

    def observe(self, current: int, now: float) -> None:
        """Record a change nobody reported, at the first time it is seen."""
        if self.last_replicas is not None and current != self.last_replicas:
            self.record_scale(now, self.last_replicas, current)
        self.last_replicas = current

    def prune(self, horizontal: Horizontal, now: float) -> None:
        """Drop entries no window or policy period can see again, so memory stays bounded."""
        keep = max(
            horizontal.scale_up.stabilization_window, horizontal.scale_down.stabilization_window
        )
        self.recommendations = [r for r in self.recommendations if r[0] > now - keep]
        up, down = _longest_period(horizontal.scale_up), _longest_period(horizontal.scale_down)
        self.scale_up_events = [e for e in self.scale_up_events if e[0] > now - up]
        self.scale_down_events = [e for e in self.scale_down_events if e[0] > now - down]

    def to_dict(self) -> dict[str, Any]:
        return {
            "recommendations": [list(r) for r in self.recommendations],
            "scale_up_events": [list(e) for e in self.scale_up_events],
            "scale_down_events": [list(e) for e in self.scale_down_events],
            "last_replicas": self.last_replicas,
            "started": self.started,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HPAState:
        def pairs(key: str) -> list[tuple[float, int]]:
            return [(float(t), int(n)) for t, n in data.get(key, ())]

        last = data.get("last_replicas")
        return cls(
            recommendations=pairs("recommendations"),
            scale_up_events=pairs("scale_up_events"),
            scale_down_events=pairs("scale_down_events"),
            last_replicas=None if last is None else int(last),
            started=bool(data.get("started", False)),
        )


@dataclass(frozen=True, slots=True)
class ReplicaDecision:
    """One evaluation: the raw proposal, after stabilization, and the final count with why.

    ``reason`` uses the HPA's condition reasons: ``DesiredWithinRange``, ``ScaleUpStabilized``,
    ``ScaleDownStabilized``, ``ScaleUpLimit``, ``ScaleDownLimit``, ``TooManyReplicas``,
    ``TooFewReplicas``, ``MissingMetrics``, ``ScalingDisabled``.
    """

    current: int
    proposal: int | None
    stabilized: int
    desired: int
    reason: str
    missing: tuple[str, ...] = ()

    @property
    def change(self) -> int:
        return self.desired - self.current


def _longest_period(rules: HPARules) -> float:
    return max((p.period for p in rules.policies), default=0.0)


def _changed_within(events: list[tuple[float, int]], period: float, now: float) -> int:
    return sum(n for t, n in events if t > now - period)


class ReplicaCalculator:
    """Applies a :class:`Horizontal` spec to metric values, as the HPA controller would."""

    def __init__(self, horizontal: Horizontal) -> None:
        self.horizontal = horizontal
        self._targets = {t.metric: t.target for t in horizontal.targets}

    def step(
        self, state: HPAState, current: int, values: Mapping[str, float | None], now: float
    ) -> ReplicaDecision:
        """Evaluate once at ``now``; updates ``state`` (proposal history) in place.

        Call ``state.record_scale(now, current, decision.desired)`` when the change is made;
        otherwise the next step records it when it sees the new count.
        """
        hz = self.horizontal
        state.observe(current, now)
        state.prune(hz, now)
        if not state.started:  # recordInitialRecommendation
            state.recommendations.append((now, current))
            state.started = True
        if current == 0 and hz.min_replicas != 0:
            return ReplicaDecision(current, None, 0, 0, "ScalingDisabled")
        if current > hz.max_replicas:
            return ReplicaDecision(
                current, None, hz.max_replicas, hz.max_replicas, "TooManyReplicas"
            )
        if current < hz.min_replicas:
            return ReplicaDecision(
                current, None, hz.min_replicas, hz.min_replicas, "TooFewReplicas"
            )
        missing = tuple(m for m in self._targets if _absent(values.get(m)))
        pairs = [(values.get(m), target) for m, target in self._targets.items()]
        proposal = propose(current, pairs, hz.tolerance)
        if proposal is None:
            return ReplicaDecision(current, None, current, current, "MissingMetrics", missing)
        stabilized, reason = self._stabilize(state, current, proposal, now)
        desired, limit = self._limit_rate(state, current, stabilized, now)
        if desired != stabilized or stabilized == proposal:
            reason = limit
        return ReplicaDecision(current, proposal, stabilized, desired, reason, missing)

    def _stabilize(
        self, state: HPAState, current: int, proposal: int, now: float
    ) -> tuple[int, str]:
        up_cut = now - self.horizontal.scale_up.stabilization_window
        down_cut = now - self.horizontal.scale_down.stabilization_window
        up = min((n for t, n in state.recommendations if t > up_cut), default=proposal)
        down = max((n for t, n in state.recommendations if t > down_cut), default=proposal)
        up, down = min(up, proposal), max(down, proposal)
        state.recommendations.append((now, proposal))
        recommendation = max(current, up)
        recommendation = min(recommendation, down)
        reason = "ScaleUpStabilized" if proposal >= current else "ScaleDownStabilized"
        return recommendation, reason

    def _limit_rate(
        self, state: HPAState, current: int, desired: int, now: float
    ) -> tuple[int, str]:
        hz = self.horizontal
        if desired > current:
            limit = max(current, self._up_limit(state, current, now))
            if hz.max_replicas > limit:
                allowed, reason = limit, "ScaleUpLimit"
            else:
                allowed, reason = hz.max_replicas, "TooManyReplicas"
            if desired > allowed:
                return allowed, reason
        elif desired < current:
            limit = min(current, self._down_limit(state, current, now))
            if hz.min_replicas < limit:
                allowed, reason = limit, "ScaleDownLimit"
            else:
                allowed, reason = hz.min_replicas, "TooFewReplicas"
            if desired < allowed:
                return allowed, reason
        return desired, "DesiredWithinRange"

    def _period_start(self, state: HPAState, current: int, period: float, now: float) -> int:
        added = _changed_within(state.scale_up_events, period, now)
        removed = _changed_within(state.scale_down_events, period, now)
        return current - added + removed

    def _up_limit(self, state: HPAState, current: int, now: float) -> int:
        rules = self.horizontal.scale_up
        if rules.select_policy == "Disabled":
            return current
        proposals = []
        for policy in rules.policies:
            start = self._period_start(state, current, policy.period, now)
            if policy.type == "Pods":
                proposals.append(start + policy.value)
            else:
                proposals.append(_ceil(start * (1 + policy.value / 100)))
        if not proposals:
            return self.horizontal.max_replicas
        return min(proposals) if rules.select_policy == "Min" else max(proposals)

    def _down_limit(self, state: HPAState, current: int, now: float) -> int:
        rules = self.horizontal.scale_down
        if rules.select_policy == "Disabled":
            return current
        proposals = []
        for policy in rules.policies:
            start = self._period_start(state, current, policy.period, now)
            if policy.type == "Pods":
                proposals.append(start - policy.value)
            else:
                proposals.append(_trunc(start * (1 - policy.value / 100)))
        if not proposals:
            return self.horizontal.min_replicas
        return max(proposals) if rules.select_policy == "Min" else min(proposals)


def _absent(value: float | None) -> bool:
    return value is None or math.isnan(value)
