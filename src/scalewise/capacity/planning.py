"""``scalewise plan`` end to end: measure (or read) steps, then size the catalog.

The measured instance's CPU count matters: the planner scales capacity between tiers by CPU.
It comes from ``--cpu``, else from the target's own ``/health/scaling`` (the container's CPU
limit, as scalewise's middleware reports it), else 1 core — and the output says which.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from scalewise.capacity.planner import CapacityPlan, Step, Target, parse_slo, plan_capacity
from scalewise.capacity.stepped import (
    DEFAULT_LEVELS,
    Ladder,
    StepResult,
    measure_steps,
    steps_document,
    steps_from_result,
)
from scalewise.errors import LoadTestError
from scalewise.loadtest.scenario import LoadPlan, plan_from_dict
from scalewise.policy.plans import DEFAULT_PLANS, load_plans


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What the user asked for, as given on the command line."""

    url: str | None
    slo_text: str
    target_rps: float | None = None
    daily_users: float | None = None
    requests_per_user: float = 30.0
    peak_factor: float = 3.0
    headroom: float = 0.7
    levels: tuple[int, ...] | None = None
    step_duration: float = 5.0
    cpu: float | None = None
    plans_file: str | None = None

    @property
    def slo(self) -> Any:
        return parse_slo(self.slo_text)

    @property
    def target(self) -> Target:
        if self.daily_users is not None:
            return Target.from_daily_users(
                self.daily_users, self.requests_per_user, self.peak_factor
            )
        return Target(float(self.target_rps or 0))


def load_plan_for_url(url: str) -> LoadPlan:
    return plan_from_dict({"target": url, "requests": [{"url": url}]}, source=url)


def measure(
    request: PlanRequest,
    on_step: Callable[[int, int, StepResult], None] | None = None,
    plan: LoadPlan | None = None,
) -> tuple[list[Step], float]:
    """Run the ladder against the URL (or ``plan``'s requests); returns steps and CPU count."""
    if request.url is None and plan is None:
        raise LoadTestError("nothing to measure: give a URL")
    plan = plan or load_plan_for_url(str(request.url))
    ladder = Ladder(levels=request.levels or DEFAULT_LEVELS, step_duration=request.step_duration)
    measured = measure_steps(plan, ladder, request.slo, on_step=on_step)
    return [m.step for m in measured], request.cpu or instance_cpus(plan.target) or 1.0


def instance_cpus(url: str) -> float | None:
    """CPU cores of the target's container, from its /health/scaling, if it serves one."""
    parts = urlsplit(url)
    try:
        doc = httpx.get(f"{parts.scheme}://{parts.netloc}/health/scaling", timeout=3).json()
        cores = doc["process"].get("cpu_limit_cores") or doc["process"].get("host_cpus")
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return float(cores) if isinstance(cores, (int, float)) and cores > 0 else None


def steps_from_file(path: Path, request: PlanRequest) -> list[Step]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LoadTestError(f"{path}: not a JSON result ({exc})") from None
    if not isinstance(data, dict):
        raise LoadTestError(f"{path}: not a scalewise result")
    return steps_from_result(data, request.slo)


def steps_file(request: PlanRequest, steps: Sequence[Step]) -> dict[str, Any]:
    return steps_document(request.url or "", steps)


def plan_for(request: PlanRequest, steps: Sequence[Step], cpu: float) -> CapacityPlan:
    catalog = load_plans(request.plans_file) if request.plans_file else DEFAULT_PLANS
    return plan_capacity(
        steps, request.slo, request.target, catalog=catalog, measured_cpu=cpu,
        headroom=request.headroom,
    )  # fmt: skip
