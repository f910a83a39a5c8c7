"""Runs a :class:`LoadPlan`: executors start iterations, a ticker rolls intervals and watches.

Open-model executors schedule every iteration at its *intended* time on ``perf_counter`` and
hand that time to the recorder, so latency includes any wait the target caused (no coordinated
omission); an iteration that finds no free VU is dropped and counted, as in k6. Closed-model
executors loop their VUs until their duration or iteration count is spent. Every executor ends
by its duration plus its graceful stop, so every run is bounded.

The ticker also watches the load generator itself: CPU share and event-loop lag per interval.
When the generator is saturated its latencies are its own, not the target's, and the result
says so rather than blaming the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from time import perf_counter
from typing import Any, Final
from urllib.parse import urlsplit

from scalewise.errors import LoadTestError
from scalewise.loadtest.client import HttpClient, Transport
from scalewise.loadtest.executors import (
    ArrivalRate,
    ConstantVus,
    Executor,
    PerVuIterations,
    RampingVus,
    Segment,
    SharedIterations,
)
from scalewise.loadtest.results import IntervalStats, ResultRecorder, RunResult
from scalewise.loadtest.scenario import LoadPlan
from scalewise.loadtest.vu import Shared, VirtualUser
from scalewise.loadtest.watch import Watch

#: Share of one core above which the generator, not the target, may be the bottleneck.
CPU_SATURATED: Final = 0.9
#: Event-loop lag above which scheduled sends are late because of the generator.
LAG_SATURATED: Final = 0.050
#: Longest a scheduler sleeps before looking at the stop flag again.
_MAX_NAP: Final = 0.25


@dataclass(slots=True)
class Progress:
    """What the live display shows after each interval."""

    interval: IntervalStats
    elapsed: float
    planned: float
    vus: int
    vus_allocated: int
    cpu: float
    loop_lag: float
    recorder: ResultRecorder


@dataclass(slots=True)
class _Pool:
    active: int = 0
    allocated: int = 0


@dataclass(slots=True)
class _Generator:
    """The load generator's own health, interval by interval."""

    cpu_max: float = 0.0
    lag_max: float = 0.0
    saturated: int = 0
    intervals: int = 0

    def to_dict(self) -> dict[str, Any]:
        share = self.saturated / self.intervals if self.intervals else 0.0
        out: dict[str, Any] = {
            "cpu_max": round(self.cpu_max, 3),
            "loop_lag_max_ms": round(self.lag_max * 1000, 2),
            "saturated_intervals": self.saturated,
        }
        if share > 0.2:
            out["warning"] = (
                f"the load generator itself was saturated in {self.saturated} of "
                f"{self.intervals} intervals (CPU up to {self.cpu_max:.0%}, loop lag up to "
                f"{self.lag_max * 1000:.0f} ms): latencies include its own delay; "
                "run with --processes N or on a bigger machine"
            )
        return out


@dataclass(slots=True)
class Runner:
    """One run of a plan. ``await run()`` returns the result, also after an early stop."""

    plan: LoadPlan
    transport: Transport | None = None
    interval: float = 1.0
    segment: Segment = field(default_factory=Segment)
    seed: int | None = None
    start_at: float | None = None
    on_interval: Callable[[Progress], None] | None = None
    watch: Watch | None = None
    #: Runs beside the load for at most the plan's duration (the soak preset's poller).
    companion: Callable[[asyncio.Event, float], Awaitable[None]] | None = None
    stop_reason: str | None = None
    _stop: asyncio.Event | None = None
    _pools: dict[str, _Pool] = field(default_factory=dict)
    _generator: _Generator = field(default_factory=_Generator)

    def request_stop(self, reason: str) -> None:
        """Stop starting iterations and cancel running ones (Ctrl-C, abortOnFail, a break)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._stop is not None:
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def run(self) -> RunResult:
        plan = self.plan
        self._stop = asyncio.Event()
        client = self.transport or HttpClient(
            timeout=plan.timeout,
            connect_timeout=plan.connect_timeout,
            insecure_tls=plan.insecure_tls,
        )
        if self.transport is None:
            await preflight(plan.target, plan.connect_timeout)
        if self.start_at is not None:
            await asyncio.sleep(max(0.0, self.start_at - time.time()))
        started_wall = time.time()
        origin = perf_counter()
        recorder = ResultRecorder(origin=origin, interval=self.interval)
        shared = Shared(plan, client, recorder, self.seed)
        executors = [ex.split(self.segment.index, self.segment.count) for ex in plan.executors]
        ticker = asyncio.ensure_future(self._tick(recorder, origin))
        tasks = [asyncio.ensure_future(self._execute(ex, shared, origin)) for ex in executors]
        helpers = [ticker]
        if self.companion is not None:
            helpers.append(asyncio.ensure_future(self.companion(self._stop, plan.duration)))
        try:
            await asyncio.wait(tasks)
        finally:
            self._stop.set()
            for task in (*tasks, *helpers):
                task.cancel()
            await asyncio.gather(*tasks, *helpers, return_exceptions=True)
            if self.transport is None:
                await client.aclose()
        self._note_vus(recorder)
        now = perf_counter()
        return recorder.result(self._meta(executors, started_wall, now - origin), now=now)

    def _meta(self, executors: list[Executor], started: float, elapsed: float) -> dict[str, Any]:
        return {
            "target": self.plan.target,
            "source": self.plan.source,
            "preset": self.plan.preset,
            "started_at": started,
            "duration": elapsed,
            "segment": str(self.segment),
            "scenarios": [_describe(ex) for ex in executors],
            "thresholds": {k: list(v) for k, v in self.plan.thresholds.items()},
            "stopped": self.stop_reason,
            "generator": self._generator.to_dict(),
        }

    # -- executors ------------------------------------------------------------------------

    async def _execute(self, ex: Executor, shared: Shared, origin: float) -> None:
        if not await self._nap_until(origin + ex.start_time):
            return
        pool = self._pools.setdefault(ex.name, _Pool())
        flow = self.plan.flows.get(ex.exec) if ex.exec != "default" else None
        ids = iter(range(1, 10**9))

        def new_vu() -> VirtualUser:
            pool.allocated += 1
            return VirtualUser(next(ids), ex.name, shared, flow)

        if isinstance(ex, ArrivalRate):
            await self._arrivals(ex, new_vu, pool, shared.recorder)
        else:
            await self._closed(ex, new_vu, pool, shared.recorder)

    async def _closed(
        self,
        ex: Executor,
        new_vu: Callable[[], VirtualUser],
        pool: _Pool,
        recorder: ResultRecorder,
    ) -> None:
        start = perf_counter()
        deadline = start + ex.duration
        budget = [ex.local_iterations] if isinstance(ex, SharedIterations) else None

        def go(vu: VirtualUser, limit: int | None) -> bool:
            if self.stopping or perf_counter() >= deadline or vu.retired:
                return False
            if budget is not None:
                if budget[0] <= 0:
                    return False
                budget[0] -= 1
            return limit is None or vu.iteration < limit

        limit = ex.iterations if isinstance(ex, PerVuIterations) else None
        running: dict[asyncio.Future[None], VirtualUser] = {}

        def spawn(n: int) -> None:
            for _ in range(n):
                vu = new_vu()
                loop = self._vu_loop(vu, go, limit, pool, recorder)
                running[asyncio.ensure_future(loop)] = vu

        if isinstance(ex, RampingVus):
            spawn(ex.target_vus(0.0))
            await self._ramp(ex, start, spawn, running)
        elif isinstance(ex, ConstantVus | SharedIterations | PerVuIterations):
            spawn(ex.local_vus)
        await self._finish(list(running), deadline + ex.graceful_stop)

    async def _vu_loop(
        self,
        vu: VirtualUser,
        go: Callable[[VirtualUser, int | None], bool],
        limit: int | None,
        pool: _Pool,
        recorder: ResultRecorder,
    ) -> None:
        pool.active += 1
        self._note_vus(recorder)  # VUs start rarely in the closed model: show them at once
        try:
            if self.plan.on_start is not None:
                vu.started = True
                await self.plan.on_start(vu)
            while go(vu, limit):
                await vu.run(None)
        finally:
            pool.active -= 1

    async def _ramp(
        self,
        ex: RampingVus,
        start: float,
        spawn: Callable[[int], None],
        running: dict[asyncio.Future[None], VirtualUser],
    ) -> None:
        """Follow the stages: start VUs as the target climbs, retire the newest as it falls."""
        while not self.stopping:
            elapsed = perf_counter() - start
            if elapsed >= ex.duration:
                return
            live = [t for t, vu in running.items() if not t.done() and not vu.retired]
            want = ex.target_vus(elapsed)
            if want > len(live):
                spawn(want - len(live))
            # k6 lets retired VUs finish their iteration (gracefulRampDown).
            for task in live[want:]:
                running[task].retired = True
            await self._nap(min(0.1, ex.duration - elapsed))

    async def _arrivals(
        self,
        ex: ArrivalRate,
        new_vu: Callable[[], VirtualUser],
        pool: _Pool,
        recorder: ResultRecorder,
    ) -> None:
        idle = [new_vu() for _ in range(ex.local_pre_allocated)]
        tasks: set[asyncio.Future[None]] = set()
        start = perf_counter()

        async def iterate(vu: VirtualUser, intended: float) -> None:
            pool.active += 1
            try:
                if self.plan.on_start is not None and not vu.started:
                    vu.started = True
                    await self.plan.on_start(vu)
                await vu.run(intended)
            finally:
                pool.active -= 1
                idle.append(vu)

        for offset in ex.start_times():
            intended = start + offset
            if not await self._nap_until(intended):
                break
            if idle:
                vu = idle.pop()
            elif pool.allocated < ex.local_max_vus:
                vu = new_vu()
            else:
                recorder.record_dropped()
                continue
            task = asyncio.ensure_future(iterate(vu, intended))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await self._finish(list(tasks), start + ex.duration + ex.graceful_stop)

    async def _finish(self, tasks: Iterable[asyncio.Future[None]], hard_stop: float) -> None:
        """Let running iterations end until the graceful stop, then interrupt them (as k6)."""
        tasks = list(tasks)
        pending = [t for t in tasks if not t.done()]
        if pending and self._stop is not None and not self.stopping:
            stop_wait = asyncio.ensure_future(self._stop.wait())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(_all_or_stop(pending, stop_wait), hard_stop - perf_counter())
            stop_wait.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- time -----------------------------------------------------------------------------

    async def _nap_until(self, when: float) -> bool:
        """Sleep until ``when`` (perf_counter); False if a stop came first."""
        while not self.stopping:
            delay = when - perf_counter()
            if delay <= 0:
                return True
            await asyncio.sleep(min(delay, _MAX_NAP))
        return False

    async def _nap(self, seconds: float) -> None:
        await self._nap_until(perf_counter() + max(0.0, seconds))

    async def _tick(self, recorder: ResultRecorder, origin: float) -> None:
        """Once per interval: roll the recorder, watch the generator, check stop conditions."""
        planned = max((ex.start_time + ex.duration for ex in self.plan.executors), default=0.0)
        due = origin + self.interval
        cpu_before, wall_before = time.process_time(), perf_counter()
        while True:
            # Timers may fire a little early; an interval closes only once it has passed.
            while (now := perf_counter()) < due:
                await asyncio.sleep(due - now)
            lag = max(0.0, now - due)
            cpu_now = time.process_time()
            cpu = (cpu_now - cpu_before) / max(now - wall_before, 1e-9)
            cpu_before, wall_before = cpu_now, now
            self._note_generator(cpu, lag)
            active, allocated = self._note_vus(recorder)
            finished = recorder.roll(now)
            if finished is not None:
                progress = Progress(
                    finished, now - origin, planned, active, allocated, cpu, lag, recorder
                )
                if self.watch is not None:
                    reason = self.watch.check(progress)
                    if reason:
                        self.request_stop(reason)
                if self.on_interval is not None:
                    self.on_interval(progress)
            due += self.interval
            if due < now:
                due = now + self.interval

    def _note_vus(self, recorder: ResultRecorder) -> tuple[int, int]:
        active = sum(p.active for p in self._pools.values())
        allocated = sum(p.allocated for p in self._pools.values())
        recorder.set_vus(active, allocated)
        return active, allocated

    def _note_generator(self, cpu: float, lag: float) -> None:
        gen = self._generator
        gen.intervals += 1
        gen.cpu_max = max(gen.cpu_max, cpu)
        gen.lag_max = max(gen.lag_max, lag)
        if cpu >= CPU_SATURATED or lag >= LAG_SATURATED:
            gen.saturated += 1


async def _all_or_stop(pending: list[asyncio.Future[None]], stop_wait: asyncio.Future[Any]) -> None:
    """Return when every task is done or a stop was requested, whichever comes first."""
    while pending and not stop_wait.done():
        await asyncio.wait([*pending, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        pending = [t for t in pending if not t.done()]


def _describe(ex: Executor) -> dict[str, Any]:
    out: dict[str, Any] = {"name": ex.name, "executor": ex.kind, "exec": ex.exec}
    for key in ex.__dataclass_fields__:
        if key not in ("name", "exec", "segment"):
            value = getattr(ex, key)
            out[key] = [asdict(s) for s in value] if key == "stages" else value
    return out


async def preflight(target: str, timeout: float) -> None:
    """Fail fast, with one message, when the target does not accept connections."""
    parts = urlsplit(target)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError) as exc:
        reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else exc.strerror or exc
        raise LoadTestError(
            f"cannot reach {target} ({host}:{port}): {reason}; is the service running?"
        ) from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def run(runner: Runner, *, handle_signals: bool = True) -> RunResult:
    """Run on uvloop when installed; Ctrl-C stops cleanly and still returns the partial result."""

    async def main() -> RunResult:
        loop = asyncio.get_running_loop()
        if handle_signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGINT, runner.request_stop, "interrupted (Ctrl-C)")
                loop.add_signal_handler(signal.SIGTERM, runner.request_stop, "terminated")
        return await runner.run()

    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())
