"""From measured load steps to "N × plan, $/month, and the latency you will see".

The per-instance capacity is *measured*: the highest throughput whose latency met the SLO
(refined between the last passing and first failing step with the USL curve). The USL fit and
the M/M/c queue explain and extrapolate; they never replace a measurement with a guess. Every
assumption the arithmetic makes is returned in words, because a plan is only as good as them.

Example:
    >>> steps = [Step(n, x, p) for n, x, p in [(1, 50, .03), (2, 95, .035), (4, 170, .05),
    ...          (8, 260, .12), (16, 280, .4)]]
    >>> plan = plan_capacity(steps, parse_slo("p95<300ms"), Target(200.0))
    >>> plan.recommended.plan.name, plan.recommended.instances, plan.recommended.monthly_cost
    ('Starter', 3, 21.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

# The plan's inputs moved to .inputs; re-exported (``X as X``) so existing imports keep working.
from scalewise.capacity.inputs import SLO_EXPECTED as SLO_EXPECTED  # noqa: PLC0414
from scalewise.capacity.inputs import Slo as Slo  # noqa: PLC0414
from scalewise.capacity.inputs import Target as Target  # noqa: PLC0414
from scalewise.capacity.inputs import parse_slo as parse_slo  # noqa: PLC0414
from scalewise.capacity.queueing import MMc
from scalewise.capacity.usl import UslFit, fit_points
from scalewise.errors import ConfigError, FitError
from scalewise.policy.model import Plan
from scalewise.policy.plans import DEFAULT_PLANS, monthly_cost, tiers
from scalewise.units import format_duration

#: Plan for this share of the measured capacity (the rest absorbs spikes, deploys, neighbours).
DEFAULT_HEADROOM: Final = 0.7
#: A step with more errors than this does not count as meeting the SLO.
DEFAULT_MAX_ERROR_RATE: Final = 0.01


@dataclass(frozen=True, slots=True)
class Step:
    """One load step: concurrency (or offered rate), throughput, latency and errors.

    ``p95`` is in seconds; ``latencies`` may add other quantiles as ``((0.99, 0.8), …)``.
    """

    concurrency: float
    throughput: float
    p95: float | None = None
    error_rate: float = 0.0
    latencies: tuple[tuple[float, float], ...] = ()

    def latency(self, quantile: float) -> float | None:
        """The measured latency at ``quantile`` (0.95 → ``p95``), ``None`` when not measured."""
        if math.isclose(quantile, 0.95) and self.p95 is not None:
            return self.p95
        return next((s for q, s in self.latencies if math.isclose(q, quantile)), None)


@dataclass(frozen=True, slots=True)
class PlanOption:
    """One catalog plan sized for the target: instances, cost and predicted latency."""

    plan: Plan
    instances: int
    monthly_cost: float
    capacity_rps: float  # one instance of this plan at the SLO
    usable_rps: float  # all instances, after headroom
    fits: bool  # instances ≤ plan.max_instances
    servers: int  # M/M/c servers per instance
    utilisation: float  # predicted, per instance, at the target
    predicted_latency: float | None  # SLO quantile from M/M/c; None when unstable
    meets_slo: bool  # predicted_latency within the SLO
    instances_for_rate: int  # what throughput and headroom alone need (≤ instances)

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.name,
            "cpu": self.plan.cpu,
            "memory_bytes": self.plan.memory_bytes,
            "instances": self.instances,
            "max_instances": self.plan.max_instances,
            "fits": self.fits,
            "monthly_cost": round(self.monthly_cost, 2),
            "capacity_rps_per_instance": self.capacity_rps,
            "usable_rps": self.usable_rps,
            "servers_per_instance": self.servers,
            "utilisation": self.utilisation,
            "predicted_latency_seconds": self.predicted_latency,
            "predicted_meets_slo": self.meets_slo,
            "instances_for_rate": self.instances_for_rate,
        }


@dataclass(frozen=True, slots=True)
class CapacityPlan:
    """The answer to "what do I need for this load, and what will it cost?"."""

    slo: Slo
    target: Target
    headroom: float
    measured_cpu: float
    steps: tuple[Step, ...]
    usl: UslFit | None
    usl_error: str | None
    capacity_rps: float  # the measured instance at the SLO
    capacity_basis: str
    usable_rps: float  # capacity_rps × headroom
    service_time: float  # mean seconds per request at concurrency 1 (M/M/c 1/μ)
    options: tuple[PlanOption, ...]
    recommended: PlanOption | None
    shortfall: str | None
    assumptions: tuple[str, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json``)."""
        return {
            "slo": {"text": str(self.slo), "quantile": self.slo.quantile,
                    "seconds": self.slo.seconds},
            "target": self.target.to_dict(),
            "headroom": self.headroom,
            "measured_cpu": self.measured_cpu,
            "steps": [
                {"concurrency": s.concurrency, "throughput": s.throughput, "p95": s.p95,
                 "error_rate": s.error_rate, "latency_at_slo": s.latency(self.slo.quantile)}
                for s in self.steps
            ],
            "usl": self.usl.to_dict() if self.usl else None,
            "usl_error": self.usl_error,
            "capacity_rps": self.capacity_rps,
            "capacity_basis": self.capacity_basis,
            "usable_rps": self.usable_rps,
            "service_time_seconds": self.service_time,
            "options": [o.to_dict() for o in self.options],
            "recommended": self.recommended.to_dict() if self.recommended else None,
            "shortfall": self.shortfall,
            "assumptions": list(self.assumptions),
            "notes": list(self.notes),
        }  # fmt: skip


def capacity_at_slo(
    steps: Sequence[Step], slo: Slo, fit: UslFit | None, max_error_rate: float
) -> tuple[float, str]:
    """Highest throughput meeting the SLO, and a sentence saying how it was found.

    Between the last passing and the first failing step the latency is interpolated linearly
    in concurrency and the throughput read off the USL curve (or interpolated without one).
    """
    ordered = sorted(steps, key=lambda s: s.concurrency)
    judged = [s for s in ordered if s.latency(slo.quantile) is not None]
    if not judged:
        raise FitError(
            f"no step has a {slo.name} latency: measure it (or plan for a p95 SLO) so the "
            "capacity at the SLO can be read off"
        )
    passing = [s for s in judged if _meets(s, slo, max_error_rate)]
    if not passing:
        best = min(judged, key=lambda s: s.latency(slo.quantile) or math.inf)
        raise FitError(
            f"no measured step met {slo} (best: {slo.name} "
            f"{format_duration(best.latency(slo.quantile) or 0)} at concurrency "
            f"{best.concurrency:g}, {best.error_rate:.1%} errors); more instances cannot make "
            "one request faster: make requests cheaper, or relax the SLO"
        )
    top = max(passing, key=lambda s: s.throughput)
    measured = (
        f"measured: {top.throughput:.4g} req/s at concurrency {top.concurrency:g} "
        f"({slo.name} {format_duration(top.latency(slo.quantile) or 0)})"
    )
    above = [s for s in judged if s.concurrency > top.concurrency]
    failing = next((s for s in above if not _meets(s, slo, max_error_rate)), None)
    if failing is None:
        return top.throughput, (
            f"{measured}; the SLO held at every step measured, so this is a lower bound — "
            "measure higher steps"
        )
    if _meets(failing, slo, math.inf):
        return top.throughput, (
            f"{measured}; the next step ({failing.concurrency:g}) had {failing.error_rate:.1%} "
            "errors"
        )
    return _interpolate(top, failing, slo, fit)


def _meets(step: Step, slo: Slo, max_error_rate: float) -> bool:
    latency = step.latency(slo.quantile)
    return latency is not None and latency <= slo.seconds and step.error_rate <= max_error_rate


def _interpolate(low: Step, high: Step, slo: Slo, fit: UslFit | None) -> tuple[float, str]:
    l1, l2 = low.latency(slo.quantile) or 0.0, high.latency(slo.quantile) or 0.0
    frac = (slo.seconds - l1) / (l2 - l1) if l2 > l1 else 0.0
    n = low.concurrency + frac * (high.concurrency - low.concurrency)
    raw = fit.throughput(n) if fit else low.throughput + frac * (high.throughput - low.throughput)
    capacity = max(low.throughput, min(raw, max(low.throughput, high.throughput)))
    how = "the USL curve" if fit else "linear interpolation"
    return capacity, (
        f"{capacity:.4g} req/s at concurrency {n:.3g}, where {slo.name} crosses "
        f"{format_duration(slo.seconds)} between the measured steps {low.concurrency:g} "
        f"({format_duration(l1)}) and {high.concurrency:g} ({format_duration(l2)}); "
        f"throughput from {how}"
    )


def plan_capacity(
    steps: Sequence[Step],
    slo: Slo,
    target: Target,
    *,
    catalog: Sequence[Plan] = DEFAULT_PLANS,
    measured_cpu: float = 1.0,
    headroom: float = DEFAULT_HEADROOM,
    scale_with_cpu: bool = True,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
) -> CapacityPlan:
    """Size every plan in ``catalog`` for ``target`` under ``slo`` from measured ``steps``.

    Raises:
        FitError: no step meets the SLO, or no step carries the SLO's latency quantile.
        ConfigError: headroom outside (0, 1], a non-positive CPU count, an empty catalog.
    """
    _check_inputs(steps, catalog, measured_cpu, headroom)
    usl, usl_error = _try_fit(steps)
    capacity, basis = capacity_at_slo(steps, slo, usl, max_error_rate)
    mu, saturation = _service_model(steps, usl)
    options = tuple(
        _option(plan, target, capacity, headroom, mu, saturation, slo,
                plan.cpu / measured_cpu if scale_with_cpu else 1.0)
        for plan in tiers(catalog)
    )  # fmt: skip
    # Prefer a size that meets the SLO by measurement *and* by the queue model.
    fitting = [o for o in options if o.fits and o.meets_slo] or [o for o in options if o.fits]
    recommended = min(fitting, key=lambda o: (o.monthly_cost, o.instances)) if fitting else None
    shortfall = None if recommended else _shortfall(options, target)
    return CapacityPlan(
        slo, target, headroom, measured_cpu, tuple(steps), usl, usl_error, capacity, basis,
        capacity * headroom, 1 / mu, options, recommended, shortfall,
        _assumptions(target, headroom, measured_cpu, scale_with_cpu, mu, saturation,
                     max_error_rate),
        _notes(usl, usl_error, recommended, slo),
    )  # fmt: skip


def _check_inputs(
    steps: Sequence[Step], catalog: Sequence[Plan], measured_cpu: float, headroom: float
) -> None:
    if not steps:
        raise FitError("no load steps: run a stepped load test first (e.g. concurrency 1…16)")
    if not 0 < headroom <= 1:
        raise ConfigError("argument", "headroom", "a fraction in (0, 1], e.g. 0.7", headroom)
    if not measured_cpu > 0:
        raise ConfigError("argument", "measured_cpu", "a positive CPU count", measured_cpu)
    if not catalog:
        raise ConfigError("argument", "catalog", "at least one plan")


def _try_fit(steps: Sequence[Step]) -> tuple[UslFit | None, str | None]:
    """The USL explains the curve; the plan still works from measurements without it."""
    usable = [s for s in steps if s.throughput > 0]
    try:
        return fit_points([s.concurrency for s in usable], [s.throughput for s in usable]), None
    except FitError as exc:
        return None, str(exc)


def _service_model(steps: Sequence[Step], usl: UslFit | None) -> tuple[float, float]:
    """μ (1 / mean service time at concurrency 1) and the saturation throughput."""
    measured_max = max(s.throughput for s in steps)
    if usl is not None:
        mu = usl.lam
        peak_in_range = math.isfinite(usl.x_max) and usl.n_max <= 2 * usl.max_load
        return mu, max(measured_max, usl.x_max) if peak_in_range else measured_max
    first = min(steps, key=lambda s: s.concurrency)
    return first.throughput / first.concurrency, measured_max  # Little: X = N / R


def _option(
    plan: Plan, target: Target, capacity: float, headroom: float, mu: float,
    saturation: float, slo: Slo, scale: float,
) -> PlanOption:  # fmt: skip
    per_instance = capacity * scale
    for_rate = max(1, math.ceil(target.rps / (per_instance * headroom) - 1e-9))
    servers = max(1, round(saturation / mu * scale))
    rate = saturation * scale / servers
    instances, queue, meets = _size_for_latency(for_rate, plan, target.rps, rate, servers, slo)
    return PlanOption(
        plan, instances, monthly_cost(plan, instances), per_instance,
        per_instance * headroom * instances, instances <= plan.max_instances, servers,
        queue.utilisation, queue.response_quantile(slo.quantile) if queue.stable else None,
        meets, for_rate,
    )  # fmt: skip


def _size_for_latency(
    start: int, plan: Plan, rps: float, service_rate: float, servers: int, slo: Slo
) -> tuple[int, MMc, bool]:
    """Add instances (up to the plan's limit) until M/M/c predicts the SLO is met."""
    for n in range(start, max(start, plan.max_instances) + 1):
        queue = MMc(rps / n, service_rate, servers)
        if queue.stable and queue.response_quantile(slo.quantile) <= slo.seconds:
            return n, queue, True
    return start, MMc(rps / start, service_rate, servers), False


def _shortfall(options: Sequence[PlanOption], target: Target) -> str:
    best = min(options, key=lambda o: (o.instances / o.plan.max_instances, o.monthly_cost))
    return (
        f"no plan in the catalog serves {target.rps:.4g} req/s within its instance limit: "
        f"it needs {best.instances} × {best.plan.name}; catalog max is "
        f"{best.plan.max_instances} — raise max_instances, add a larger tier, or make each "
        "request cheaper"
    )


def _assumptions(
    target: Target, headroom: float, cpu: float, scale_with_cpu: bool, mu: float,
    saturation: float, max_error_rate: float,
) -> tuple[str, ...]:  # fmt: skip
    said = [
        f"capacity scales linearly with CPU count between tiers relative to the measured "
        f"instance ({cpu:g} CPU): a plan with twice the CPUs serves twice the rate (true for "
        "CPU-bound work with one worker per CPU; pessimistic for I/O-bound work)"
        if scale_with_cpu
        else "every plan serves the measured rate per instance (CPU count ignored)",
        f"plans are sized for {headroom:.0%} of the capacity at the SLO; the rest absorbs "
        "spikes, deploys and noisy neighbours",
        f"requests are spread evenly over instances; each instance is an M/M/c queue with "
        f"c = {saturation / mu:.3g} × (plan CPU ÷ measured CPU) servers and exponential "
        f"service times of mean {format_duration(1 / mu)} (the response time at concurrency "
        "1) — a pessimistic tail if real service times vary less",
        f"a step with more than {max_error_rate:.0%} errors does not meet the SLO",
        "the load test's request mix is the production mix, and the measured instance is "
        "like the production one",
        "memory is not modelled: check each plan's memory against the process RSS",
    ]
    if target.conversion:
        said.append(f"peak load: {target.conversion}")
    return tuple(said)


def _notes(
    usl: UslFit | None, usl_error: str | None, recommended: PlanOption | None, slo: Slo
) -> tuple[str, ...]:
    notes = list(usl.notes) if usl else [f"no USL fit: {usl_error}"]
    rec = recommended
    if rec is None:
        return tuple(notes)
    if rec.instances > rec.instances_for_rate:
        notes.append(
            f"{rec.plan.name} sized up from {rec.instances_for_rate} to {rec.instances} "
            f"instances so that M/M/c predicts {slo.name} within {format_duration(slo.seconds)}"
        )
    if not rec.meets_slo:
        predicted = "∞" if rec.predicted_latency is None else format_duration(rec.predicted_latency)
        notes.append(
            f"M/M/c predicts {slo.name} {predicted} at {rec.instances} × {rec.plan.name}, above "
            "the SLO, for every plan within its instance limit: its exponential service times "
            "may be too pessimistic — confirm with a load test at the planned per-instance rate"
        )
    return tuple(notes)
