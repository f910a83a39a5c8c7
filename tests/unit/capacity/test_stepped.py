"""The stepped load behind ``scalewise plan``: steps, early stops, and saved results."""

from __future__ import annotations

import asyncio
from typing import Any

from scalewise.capacity.planner import Slo
from scalewise.capacity.stepped import Ladder, measure_steps, steps_document, steps_from_result
from scalewise.loadtest.client import MockTransport, Request
from scalewise.loadtest.scenario import plan_from_dict

PLAN = plan_from_dict({"target": "http://127.0.0.1:9", "requests": [{"url": "/"}]}, source="t")


def server(capacity: int, service: float) -> Any:
    """A fake service with ``capacity`` workers, each taking ``service`` seconds a request."""
    gate = asyncio.Semaphore(capacity)

    async def handler(request: Request) -> tuple[int, bytes]:
        async with gate:
            await asyncio.sleep(service)
        return 200, b"ok"

    return handler


def test_throughput_grows_then_the_ladder_stops_at_the_slo() -> None:
    steps = measure_steps(
        PLAN, Ladder(levels=(1, 2, 4, 8, 16, 32), step_duration=1.2, warmup=0.2),
        Slo(0.95, 0.016), transport=MockTransport(server(4, 0.01)),
    )  # fmt: skip
    x = [m.step.throughput for m in steps]
    assert x[1] > 1.5 * x[0]  # two users do nearly twice the work of one
    # 8 users queue for 4 workers: each waits a turn, p95 ≈ 20 ms > 16 ms.
    assert [m.step.concurrency for m in steps] == [1, 2, 4, 8]
    assert "SLO" in (steps[-1].reason or "")


def test_errors_stop_the_ladder() -> None:
    async def failing(request: Request) -> tuple[int, bytes]:
        await asyncio.sleep(0.001)
        return 500, b""

    steps = measure_steps(PLAN, Ladder(levels=(1, 2), step_duration=1.0, warmup=0.2), None,
                          transport=MockTransport(failing))  # fmt: skip
    assert len(steps) == 1
    assert "error rate" in (steps[0].reason or "")


def test_saved_steps_round_trip() -> None:
    steps = measure_steps(PLAN, Ladder(levels=(1, 2), step_duration=1.0, warmup=0.2),
                          transport=MockTransport(server(8, 0.005)))  # fmt: skip
    doc = steps_document("http://x", [m.step for m in steps])
    back = steps_from_result(doc)
    assert [s.concurrency for s in back] == [1.0, 2.0]
    assert back[0].throughput == steps[0].step.throughput


def test_a_load_test_result_is_cut_into_steps_by_vu_level() -> None:
    result = measure_steps(PLAN, Ladder(levels=(3,), step_duration=2.2, warmup=0.2),
                           transport=MockTransport(server(8, 0.005)))[0].result  # fmt: skip
    steps = steps_from_result(result.to_dict())
    assert [s.concurrency for s in steps] == [3.0]
    assert steps[0].throughput > 0
