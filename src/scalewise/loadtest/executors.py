"""k6's executors as frozen values: who starts an iteration, and when.

Closed model (the next iteration waits for the previous one on the same VU):
``constant-vus``, ``ramping-vus``, ``shared-iterations``, ``per-vu-iterations``.
Open model (iterations start on a clock, whatever the target does):
``constant-arrival-rate``, ``ramping-arrival-rate``. In the open model an iteration that finds
no free VU is not queued but counted in ``dropped_iterations``, exactly as k6 does, and its
latency is measured from the *intended* start, so a stalled target cannot hide its stall.

Execution segments (``segment(i, n)``) split one scenario across processes or machines the way
k6's ``--execution-segment`` does: VUs and iteration counts are divided as evenly as integers
allow, and open-model iterations are striped (iteration ``k`` belongs to segment ``k mod n``), so
the segments of one scenario together send exactly what one process would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import ClassVar, Final

#: k6's default gracefulStop: how long running iterations may finish after the executor ends.
DEFAULT_GRACEFUL_STOP: Final = 30.0
#: k6's default maxDuration for the iteration-count executors.
DEFAULT_MAX_DURATION: Final = 600.0


@dataclass(frozen=True, slots=True)
class Stage:
    """Ramp linearly to ``target`` (VUs or iterations per time unit) over ``duration`` seconds."""

    duration: float
    target: float


@dataclass(frozen=True, slots=True)
class Segment:
    """Part ``index`` (0-based) of ``count`` equal parts of a scenario."""

    index: int = 0
    count: int = 1

    def share(self, total: int) -> int:
        """This segment's part of an integer total; the parts sum to the total exactly."""
        return total // self.count + (1 if self.index < total % self.count else 0)

    def owns(self, iteration: int) -> bool:
        return iteration % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"


@dataclass(frozen=True, slots=True)
class Executor:
    """Fields every executor has (k6: startTime, gracefulStop, exec)."""

    kind: ClassVar[str] = ""
    closed: ClassVar[bool] = True
    name: str = "default"
    start_time: float = 0.0
    graceful_stop: float = DEFAULT_GRACEFUL_STOP
    exec: str = "default"
    segment: Segment = Segment()

    @property
    def duration(self) -> float:
        """Seconds the executor starts iterations for (before the graceful stop)."""
        raise NotImplementedError

    def split(self, index: int, count: int) -> Executor:
        """The executor for segment ``index`` of ``count``."""
        return replace(self, segment=Segment(index, count))

    @property
    def end(self) -> float:
        """Latest moment, from the run's start, at which this executor's work can still run."""
        return self.start_time + self.duration + self.graceful_stop


@dataclass(frozen=True, slots=True)
class ConstantVus(Executor):
    kind: ClassVar[str] = "constant-vus"
    vus: int = 1
    run_for: float = 30.0

    @property
    def duration(self) -> float:
        return self.run_for

    @property
    def local_vus(self) -> int:
        return self.segment.share(self.vus)


@dataclass(frozen=True, slots=True)
class RampingVus(Executor):
    kind: ClassVar[str] = "ramping-vus"
    start_vus: int = 1
    stages: tuple[Stage, ...] = ()
    graceful_ramp_down: float = DEFAULT_GRACEFUL_STOP

    @property
    def duration(self) -> float:
        return sum(stage.duration for stage in self.stages)

    @property
    def max_vus(self) -> int:
        return self.segment.share(max([self.start_vus, *(int(s.target) for s in self.stages)]))

    def target_vus(self, elapsed: float) -> int:
        """VUs this segment should run ``elapsed`` seconds in (linear between stages, as k6)."""
        return self.segment.share(round(_ramp(self.start_vus, self.stages, elapsed)))


@dataclass(frozen=True, slots=True)
class _Iterations(Executor):
    """Shared by the two iteration-count executors: VUs, a count, and a time limit."""

    vus: int = 1
    iterations: int = 1
    max_duration: float = DEFAULT_MAX_DURATION

    @property
    def duration(self) -> float:
        return self.max_duration

    @property
    def local_vus(self) -> int:
        return self.segment.share(self.vus)


@dataclass(frozen=True, slots=True)
class SharedIterations(_Iterations):
    """``iterations`` in all, taken by whichever VU is free."""

    kind: ClassVar[str] = "shared-iterations"

    @property
    def local_vus(self) -> int:
        return min(self.segment.share(self.vus), self.local_iterations)

    @property
    def local_iterations(self) -> int:
        return self.segment.share(self.iterations)


@dataclass(frozen=True, slots=True)
class PerVuIterations(_Iterations):
    """``iterations`` for each VU."""

    kind: ClassVar[str] = "per-vu-iterations"


@dataclass(frozen=True, slots=True)
class ArrivalRate(Executor):
    """Shared by both open-model executors: a VU pool and a schedule of start times."""

    closed: ClassVar[bool] = False
    time_unit: float = 1.0
    pre_allocated_vus: int = 1
    max_vus: int = 0

    @property
    def local_pre_allocated(self) -> int:
        return max(1, self.segment.share(self.pre_allocated_vus))

    @property
    def local_max_vus(self) -> int:
        return max(self.local_pre_allocated, self.segment.share(self.max_vus))

    def cumulative(self, elapsed: float) -> float:
        """Iterations that should have started ``elapsed`` seconds in, over all segments."""
        raise NotImplementedError

    def start_times(self) -> Iterator[float]:
        """Intended start offsets (seconds from the executor's start) of this segment's iterations.

        Iteration ``k`` starts when the integral of the rate reaches ``k`` (the first at 0), which
        is how k6 spaces arrivals; this segment yields only the iterations it owns.
        """
        k = self.segment.index
        step = self.segment.count
        while True:
            at = self.time_of(k)
            if at is None or at >= self.duration:
                return
            yield at
            k += step

    def time_of(self, iteration: int) -> float | None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ConstantArrivalRate(ArrivalRate):
    kind: ClassVar[str] = "constant-arrival-rate"
    rate: float = 1.0
    run_for: float = 30.0

    @property
    def duration(self) -> float:
        return self.run_for

    def cumulative(self, elapsed: float) -> float:
        return self.rate / self.time_unit * min(elapsed, self.run_for)

    def time_of(self, iteration: int) -> float | None:
        per_second = self.rate / self.time_unit
        return iteration / per_second if per_second > 0 else None


@dataclass(frozen=True, slots=True)
class RampingArrivalRate(ArrivalRate):
    kind: ClassVar[str] = "ramping-arrival-rate"
    start_rate: float = 0.0
    stages: tuple[Stage, ...] = ()

    @property
    def duration(self) -> float:
        return sum(stage.duration for stage in self.stages)

    def rate_at(self, elapsed: float) -> float:
        """Iterations per second at ``elapsed`` seconds in (all segments together)."""
        return _ramp(self.start_rate, self.stages, elapsed) / self.time_unit

    def cumulative(self, elapsed: float) -> float:
        total = 0.0
        begin, rate = 0.0, self.start_rate / self.time_unit
        for stage in self.stages:
            target = stage.target / self.time_unit
            span = min(stage.duration, max(0.0, elapsed - begin))
            if stage.duration > 0:
                total += rate * span + (target - rate) * span * span / (2 * stage.duration)
            begin += stage.duration
            rate = target
        return total

    def time_of(self, iteration: int) -> float | None:
        """Invert the piecewise-quadratic integral of the rate for iteration ``k``."""
        done, begin, rate = 0.0, 0.0, self.start_rate / self.time_unit
        for stage in self.stages:
            target = stage.target / self.time_unit
            d = stage.duration
            area = (rate + target) * d / 2
            if d > 0 and done + area > iteration:
                return begin + _solve_ramp(rate, (target - rate) / d, iteration - done)
            done += area
            begin += d
            rate = target
        return None


def _solve_ramp(rate: float, slope: float, need: float) -> float:
    """Smallest t ≥ 0 with rate·t + slope·t²/2 = need (need ≥ 0)."""
    if need <= 0:
        return 0.0
    if abs(slope) < 1e-12:
        return need / rate if rate > 0 else math.inf
    disc = rate * rate + 2 * slope * need
    # Numerically stable root of the quadratic (no cancellation when slope is tiny).
    return 2 * need / (rate + math.sqrt(max(disc, 0.0)))


def _ramp(start: float, stages: tuple[Stage, ...], elapsed: float) -> float:
    """Value of a linear stage ramp at ``elapsed`` seconds (the last target after the end)."""
    value = start
    for stage in stages:
        if elapsed < stage.duration:
            return value + (stage.target - value) * (elapsed / stage.duration)
        elapsed -= stage.duration
        value = stage.target
    return value
