"""Measure a service step by step: concurrency 1, 2, 4, … until it saturates or breaks the SLO.

Each step is a short closed-model run (``constant-vus``) with the load tester; the first
``warmup`` seconds of a step are left out so connection set-up does not count. The ladder stops
at the first step that misses the SLO or the error budget, or once throughput has stopped
growing (less than 5 % gain from doubling the concurrency) twice in a row: past that point more
steps add only queueing, which the USL fit does not need and the service does not enjoy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from scalewise.capacity.planner import Slo, Step
from scalewise.errors import LoadTestError
from scalewise.loadtest.executors import ConstantVus
from scalewise.loadtest.results import IntervalStats, RunResult
from scalewise.loadtest.runner import Runner, run
from scalewise.loadtest.scenario import LoadPlan

DEFAULT_LEVELS: Final = (1, 2, 4, 8, 16, 32, 64)
#: Doubling the concurrency must add at least this much throughput to count as growth.
MIN_GAIN: Final = 0.05


@dataclass(frozen=True, slots=True)
class Ladder:
    """How to step: the concurrency levels, seconds per step, and seconds of warm-up."""

    levels: tuple[int, ...] = DEFAULT_LEVELS
    step_duration: float = 5.0
    warmup: float = 1.0
    max_error_rate: float = 0.01
    stop_early: bool = True


@dataclass(slots=True)
class StepResult:
    """A measured step with the run behind it."""

    step: Step
    result: RunResult
    reason: str | None = None  # why the ladder stopped here, if it did


def measure_steps(
    plan: LoadPlan,
    ladder: Ladder,
    slo: Slo | None = None,
    *,
    on_step: Callable[[int, int, StepResult], None] | None = None,
    transport: Any = None,
) -> list[StepResult]:
    """Run the ladder against ``plan``'s requests; one :class:`StepResult` per step run."""
    if ladder.step_duration <= ladder.warmup:
        raise LoadTestError("each step must last longer than its warm-up")
    out: list[StepResult] = []
    flat = 0
    for index, level in enumerate(ladder.levels):
        executor = ConstantVus(name=f"step-{level}", vus=level, run_for=ladder.step_duration,
                               graceful_stop=min(5.0, ladder.step_duration))  # fmt: skip
        runner = Runner(replace(plan, executors=(executor,)), transport=transport)
        result = run(runner, handle_signals=transport is None)
        measured = StepResult(summarise(level, result, ladder.warmup, slo), result)
        out.append(measured)
        if runner.stop_reason and runner.stop_reason.startswith("interrupted"):
            measured.reason = runner.stop_reason
        elif ladder.stop_early:
            flat = flat + 1 if _flat(out) else 0
            measured.reason = _stop_reason(measured.step, slo, ladder, flat)
        if on_step is not None:
            on_step(index, len(ladder.levels), measured)
        if measured.reason:
            break
    return out


def summarise(level: float, result: RunResult, warmup: float, slo: Slo | None = None) -> Step:
    """A step from a run: throughput and latency after the warm-up, errors over the step."""
    kept = [iv for iv in result.series if iv.start >= warmup - 1e-9] or result.series
    if not kept:
        raise LoadTestError("a step produced no measurements")
    window = kept[0]
    for iv in kept[1:]:
        window = window.combine(iv, concurrent=False)
    return step_from_window(level, window, slo)


def step_from_window(level: float, window: IntervalStats, slo: Slo | None = None) -> Step:
    latency = window.trend("http_req_duration")
    quantiles = {0.5, 0.9, 0.99}
    if slo is not None:
        quantiles.add(slo.quantile)
    seconds = window.width or 1.0
    ok = window.requests - window.failed
    return Step(
        concurrency=float(level),
        throughput=ok / seconds,
        p95=latency.quantile(0.95) if latency.count else None,
        error_rate=window.failed / window.requests if window.requests else 1.0,
        latencies=tuple(sorted((q, latency.quantile(q)) for q in quantiles if latency.count)),
    )


def _flat(done: Sequence[StepResult]) -> bool:
    if len(done) < 2:
        return False
    before, now = done[-2].step.throughput, done[-1].step.throughput
    return before > 0 and now < before * (1 + MIN_GAIN)


def _stop_reason(step: Step, slo: Slo | None, ladder: Ladder, flat: int) -> str | None:
    if step.error_rate > ladder.max_error_rate:
        return f"error rate {step.error_rate:.1%} above {ladder.max_error_rate:.1%}"
    if slo is not None:
        latency = step.latency(slo.quantile)
        if latency is not None and latency > slo.seconds:
            return f"{slo.name} {latency * 1000:.0f} ms above the SLO ({slo})"
    if flat >= 2:
        return "saturated: doubling the concurrency twice added less than 5 % throughput"
    return None


def steps_from_result(data: Mapping[str, Any], slo: Slo | None = None) -> list[Step]:
    """Steps from a saved file: a ``scalewise plan --out`` file, or any load-test result.

    A load-test result is cut into steps by its VU level: every interval with the same number of
    active VUs (a ``ramping-vus`` staircase, or several ``constant-vus`` runs) is one step.
    """
    if data.get("kind") == STEPS_KIND:
        return [Step(**{**s, "latencies": tuple(map(tuple, s.get("latencies", ())))})
                for s in data["steps"]]  # fmt: skip
    result = RunResult.from_dict(data)
    groups: dict[int, IntervalStats] = {}
    for iv in result.series:
        if iv.requests and iv.vus:
            groups[iv.vus] = (
                groups[iv.vus].combine(iv, concurrent=False) if iv.vus in groups else iv
            )
    return [step_from_window(level, iv, slo) for level, iv in sorted(groups.items())]


STEPS_KIND: Final = "scalewise-capacity-steps"


def steps_document(target: str, steps: Sequence[Step]) -> dict[str, Any]:
    """What ``scalewise plan --out`` saves and ``--from`` reads back."""
    return {
        "kind": STEPS_KIND,
        "version": 1,
        "target": target,
        "steps": [
            {"concurrency": s.concurrency, "throughput": s.throughput, "p95": s.p95,
             "error_rate": s.error_rate, "latencies": [list(p) for p in s.latencies]}
            for s in steps
        ],
    }  # fmt: skip
