"""The runner with an in-process transport: executor counts, stops, and open-model latency."""

from __future__ import annotations

import asyncio
from pathlib import Path
from time import perf_counter
from typing import Any

import pytest
from tests.conftest import free_port

from scalewise.errors import LoadTestError
from scalewise.loadtest.client import MockTransport, Request
from scalewise.loadtest.executors import Segment
from scalewise.loadtest.results import RunResult
from scalewise.loadtest.runner import Runner, preflight, run
from scalewise.loadtest.scenario import plan_from_dict
from scalewise.loadtest.thresholds import parse_thresholds
from scalewise.loadtest.watch import Watch


def delayed(seconds: float, status: int = 200) -> Any:
    async def handler(request: Request) -> tuple[int, bytes]:
        await asyncio.sleep(seconds)
        return status, b"ok"

    return handler


def go(scenario: dict[str, Any], handler: Any, **extra: Any) -> RunResult:
    raw = {"target": "http://127.0.0.1:9", "requests": [{"url": "/"}], **extra}
    raw["scenarios"] = {"s": scenario}
    plan = plan_from_dict(raw, source="test")
    thresholds = parse_thresholds(plan.thresholds, source="test")
    runner = Runner(plan, transport=MockTransport(handler), watch=Watch(plan, thresholds))
    result = run(runner, handle_signals=False)
    result.meta["_runner"] = runner
    return result


def test_per_vu_iterations_runs_exactly_vus_times_iterations() -> None:
    result = go({"executor": "per-vu-iterations", "vus": 3, "iterations": 4}, delayed(0.001))
    assert result.totals.requests == 12
    assert result.totals.iterations == 12


def test_shared_iterations_are_shared_not_multiplied() -> None:
    result = go({"executor": "shared-iterations", "vus": 3, "iterations": 10}, delayed(0.001))
    assert result.totals.requests == 10


def test_constant_vus_is_a_closed_loop_bounded_by_duration() -> None:
    started = perf_counter()
    result = go({"executor": "constant-vus", "vus": 2, "duration": "0.5s"}, delayed(0.01))
    assert perf_counter() - started < 2.0
    # Two users, 10 ms per request, half a second: the closed loop sends about 100.
    assert 40 <= result.totals.requests <= 110
    assert result.totals.vus_max == 2


def test_constant_arrival_rate_starts_every_scheduled_iteration() -> None:
    scenario = {
        "executor": "constant-arrival-rate",
        "rate": 100,
        "duration": "1s",
        "preAllocatedVUs": 10,
    }
    result = go(scenario, delayed(0.002))
    assert result.totals.requests == 100
    assert result.totals.dropped == 0


def test_arrival_rate_drops_iterations_when_vus_run_out() -> None:
    scenario = {
        "executor": "constant-arrival-rate",
        "rate": 100,
        "duration": "1s",
        "preAllocatedVUs": 2,
        "maxVUs": 2,
    }
    result = go(scenario, delayed(0.1))
    totals = result.totals
    assert totals.dropped > 50
    assert totals.requests + totals.dropped == 100  # every scheduled iteration is accounted for


def test_ramping_arrival_rate_sends_the_integral_of_its_stages() -> None:
    scenario = {
        "executor": "ramping-arrival-rate",
        "startRate": 0,
        "preAllocatedVUs": 10,
        "stages": [{"duration": "1s", "target": 100}, {"duration": "0.5s", "target": 100}],
    }
    result = go(scenario, delayed(0.001))
    assert result.totals.requests == pytest.approx(100, abs=1)


def test_graceful_stop_interrupts_iterations_that_hang() -> None:
    scenario = {"executor": "constant-vus", "vus": 1, "duration": "0.2s", "gracefulStop": "0.2s"}
    started = perf_counter()
    go(scenario, delayed(30))
    assert perf_counter() - started < 2.0


def test_open_model_measures_a_stall_that_the_closed_model_hides() -> None:
    """Coordinated omission: a 0.5 s stall seen by 1 closed-loop request vs 50 open-model ones."""
    t0: list[float] = []

    async def stalls(request: Request) -> tuple[int, bytes]:
        now = perf_counter()
        if not t0:
            t0.append(now)
        stall_end = t0[0] + 0.8
        if t0[0] + 0.3 <= now < stall_end:
            await asyncio.sleep(stall_end - now)
        else:
            await asyncio.sleep(0.005)
        return 200, b"ok"

    open_model = go(
        {
            "executor": "constant-arrival-rate",
            "rate": 100,
            "duration": "1.5s",
            "preAllocatedVUs": 100,
        },
        stalls,
    )
    t0.clear()
    closed = go({"executor": "constant-vus", "vus": 1, "duration": "1.5s"}, stalls)
    open_p90 = open_model.totals.trend("http_req_duration").quantile(0.90)
    closed_p90 = closed.totals.trend("http_req_duration").quantile(0.90)
    assert open_p90 > 0.2  # a tenth of the open-model requests waited in the stall
    assert closed_p90 < 0.05  # the closed loop sent one request during it, and waited
    # Service time is measured from the actual send; in the open model they coincide here.
    assert open_model.totals.trend("send_lag").quantile(0.5) < 0.05


def test_abort_on_fail_stops_the_run_early() -> None:
    scenario = {"executor": "constant-vus", "vus": 2, "duration": "10s"}
    started = perf_counter()
    result = go(
        scenario,
        delayed(0.005, status=500),
        thresholds={"http_req_failed": [{"threshold": "rate<0.1", "abortOnFail": True}]},
    )
    assert perf_counter() - started < 5
    assert "abortOnFail" in result.meta["stopped"]


def test_break_when_reports_the_breaking_point() -> None:
    counter = [0]

    async def degrades(request: Request) -> tuple[int, bytes]:
        counter[0] += 1
        await asyncio.sleep(0.001)
        return (500 if counter[0] > 150 else 200), b""

    scenario = {
        "executor": "ramping-arrival-rate",
        "startRate": 50,
        "preAllocatedVUs": 20,
        "stages": [{"duration": "10s", "target": 200}],
    }
    result = go(scenario, degrades, break_when={"http_req_failed": ["rate>0.5"]}, break_window=2)
    runner = result.meta["_runner"]
    assert result.meta["stopped"].startswith("breaking point")
    point = runner.watch.breaking_point
    assert point is not None
    assert point["error_rate"] > 0.5
    assert 50 <= point["offered_rps"] <= 200


def test_segments_together_send_what_one_process_sends() -> None:
    raw = {
        "target": "http://127.0.0.1:9",
        "requests": [{"url": "/"}],
        "scenarios": {
            "s": {
                "executor": "constant-arrival-rate",
                "rate": 60,
                "duration": "1s",
                "preAllocatedVUs": 5,
            }
        },
    }
    plan = plan_from_dict(raw, source="test")
    counts = []
    for i in range(2):
        runner = Runner(plan, transport=MockTransport(delayed(0.001)), segment=Segment(i, 2))
        counts.append(run(runner, handle_signals=False).totals.requests)
    assert counts == [30, 30]


def test_flows_log_in_and_reuse_the_token(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(
        "async def on_start(vu):\n"
        "    r = await vu.post('/login', json={'user': 'ann'})\n"
        "    vu.store['token'] = r.json()['token']\n\n"
        "async def browse(vu):\n"
        "    r = await vu.get('/items', headers={'Authorization': 'Bearer ' + vu.store['token']})\n"
        "    vu.check('authorised', r.status == 200)\n"
    )
    seen: list[str] = []

    async def app(request: Request) -> tuple[int, bytes]:
        await asyncio.sleep(0)
        if request.url.endswith("/login"):
            return 200, b'{"token": "t-1"}'
        auth = dict(request.headers).get("Authorization", "")
        seen.append(auth)
        return (200 if auth == "Bearer t-1" else 401), b"[]"

    from scalewise.loadtest.scenario import load_plan

    (tmp_path / "s.yaml").write_text(
        "target: http://127.0.0.1:9\nflows: flows.py\n"
        "scenarios: {a: {executor: per-vu-iterations, vus: 2, iterations: 3, exec: browse}}\n"
    )
    plan = load_plan(tmp_path / "s.yaml")
    result = run(Runner(plan, transport=MockTransport(app)), handle_signals=False)
    assert seen == ["Bearer t-1"] * 6
    assert result.totals.checks == {"authorised": [6, 0]}
    assert set(result.totals.names) == {"POST /login", "GET /items"}


def test_preflight_fails_fast_on_a_closed_port() -> None:
    port = free_port()
    with pytest.raises(LoadTestError, match=f"cannot reach .*127.0.0.1:{port}.*running"):
        asyncio.run(preflight(f"http://127.0.0.1:{port}/", 2.0))


def test_several_scenarios_run_together_from_their_start_times() -> None:
    raw = {
        "target": "http://127.0.0.1:9",
        "requests": [{"url": "/"}],
        "scenarios": {
            "early": {"executor": "per-vu-iterations", "vus": 1, "iterations": 5},
            "late": {"executor": "constant-arrival-rate", "rate": 20, "duration": "0.5s",
                     "preAllocatedVUs": 2, "startTime": "0.5s"},
        },
    }  # fmt: skip
    plan = plan_from_dict(raw, source="test")
    started = perf_counter()
    result = run(Runner(plan, transport=MockTransport(delayed(0.001))), handle_signals=False)
    assert perf_counter() - started >= 0.9  # the late one began at 0.5 s and ran 0.5 s
    scenarios = result.totals.scenarios
    assert (scenarios["early"].requests, scenarios["late"].requests) == (5, 10)
    assert [s["name"] for s in result.meta["scenarios"]] == ["early", "late"]
