"""Fleet mode end to end: a real Prometheus scrapes two real app instances on loopback, and a
rule evaluated through PrometheusSource fires on their combined load, not on either alone."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scalewise.errors import RuleError
from scalewise.policy.engine import step
from scalewise.policy.model import Action, Comparison, Rule, RuleState, Status
from scalewise.policy.prometheus import PrometheusSource, promql_for
from tests.conftest import Server, free_port, require_command, uvicorn_argv

pytestmark = pytest.mark.integration

THREADS = 4  # per instance
PER_THREAD = 50  # 200 requests to /slow per instance
BOOMS = 5  # 5xx per instance, for error_rate
WINDOW = 30.0
# Each instance serves 205 requests inside the 30 s window: 6.8 rps, up to ~8.7 with rate()'s
# extrapolation (never less); both together ≥ 13.7 rps. 11.5 sits between one and the fleet.
THRESHOLD = 11.5
SETTLE = 3.0
WARMUP = 4  # one 2xx and one 5xx per instance
TOTAL = WARMUP + 2 * (THREADS * PER_THREAD + BOOMS)
# Figures that must exist after the load; process gauges may be absent on some platforms.
TRAFFIC = (
    "rps",
    "requests_per_day",
    "error_rate",
    "latency_avg",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "latency_max",
    "concurrency_avg",
    "concurrency_peak",
    "busy_ratio",
)
# Process gauges may be absent on some platforms; nobody sent X-Request-Start (no queue time).
MAYBE = ("cpu_percent", "memory_mb", "memory_percent", "event_loop_lag", "queue_time_p95")


@dataclass
class Fleet:
    apps: list[Server]
    prometheus: Server
    source: PrometheusSource

    def instance(self, app: Server) -> str:
        return f"127.0.0.1:{app.port}"


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll a real server (bounded); scrapes happen on Prometheus's clock, not ours."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def write_config(path: Path, apps: list[Server]) -> Path:
    config = {  # JSON is YAML
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "scalewise",
                "static_configs": [{"targets": [f"127.0.0.1:{a.port}" for a in apps]}],
            }
        ],
    }
    path.write_text(json.dumps(config, indent=2))
    return path


def start_prometheus(binary: str, tmp_path: Path, apps: list[Server]) -> Server:
    port = free_port()
    argv = [
        binary,
        f"--config.file={write_config(tmp_path / 'prometheus.yml', apps)}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=error",  # stderr is a pipe nobody reads while the test runs
    ]
    return Server(argv, port, cwd=tmp_path)


def targets_up(prometheus: Server, count: int) -> bool:
    targets = httpx.get(prometheus.url + "/api/v1/targets").json()["data"]["activeTargets"]
    return len(targets) == count and all(t["health"] == "up" for t in targets)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    binary = require_command("prometheus", "prometheus")
    servers: list[Server] = []
    try:
        apps = []
        for _ in range(2):
            port = free_port()
            argv = uvicorn_argv("starlette_app:app", port)
            apps.append(Server(argv, port, env={"SCALEWISE_MULTIPROCESS_DIR": "off"}))
            servers.append(apps[-1])
        for app in apps:
            app.wait_ready()
        prometheus = start_prometheus(binary, tmp_path, apps)
        servers.append(prometheus)
        prometheus.wait_ready("/-/ready")
        wait_for(lambda: targets_up(prometheus, 2), "both targets up")
        with PrometheusSource(prometheus.url, timeout=5.0) as source:
            yield Fleet(apps, prometheus, source)
    finally:
        for server in servers:
            server.stop()


def scraped_total(fleet: Fleet) -> float:
    values = fleet.source.query("sum(scalewise_http_requests_total)", time.time())
    return values[0] if values else 0.0


def drive(url: str) -> None:
    """Bounded load on one instance: THREADS × PER_THREAD requests to /slow, then BOOMS 5xx."""

    def worker(_: int) -> None:
        with httpx.Client(base_url=url) as client:
            for _ in range(PER_THREAD):
                assert client.get("/slow", params={"s": "0.02"}).status_code == 200

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(worker, range(THREADS)))
    for _ in range(BOOMS):  # uvicorn closes the connection after an app exception
        assert httpx.get(url + "/boom", headers={"Connection": "close"}).status_code == 500


def rule(name: str, promql: str | None = None, metric: str = "rps") -> Rule:
    return Rule(
        name=name,
        metric=metric,
        op=Comparison.GT,
        threshold=THRESHOLD,
        action=Action.SCALE_UP,
        window=WINDOW,
        promql=promql,
    )


def load_the_fleet(fleet: Fleet) -> None:
    # Series appear with their first request; make Prometheus see each (2xx and 5xx) at 1
    # before the load, or rate() would miss what came before a series' first sample.
    for app in fleet.apps:
        assert httpx.get(app.url + "/slow", params={"s": "0"}).status_code == 200
        assert httpx.get(app.url + "/boom", headers={"Connection": "close"}).status_code == 500
    wait_for(lambda: scraped_total(fleet) == WARMUP, "the warm-up requests scraped")
    # rate() extrapolates each series to the query time in proportion to its sampled span;
    # a few flat scrapes first keep that small (≤ ~25 %) whatever the scrape phase.
    time.sleep(SETTLE)
    with ThreadPoolExecutor(len(fleet.apps)) as pool:
        list(pool.map(drive, [app.url for app in fleet.apps]))
    wait_for(lambda: scraped_total(fleet) == TOTAL, f"{TOTAL} requests scraped")


def test_a_rule_fires_on_the_combined_load_of_two_instances(fleet: Fleet) -> None:
    load_the_fleet(fleet)
    now = time.time()
    combined = rule("fleet_busy", promql="sum(rate(scalewise_http_requests_total[30s]))")
    value = fleet.source.value(combined, now)
    assert value is not None
    assert step(combined, RuleState(combined.name), value, now).status == Status.FIRING, value
    singles = []
    for app in fleet.apps:
        series = f'scalewise_http_requests_total{{instance="{fleet.instance(app)}"}}'
        alone = rule("one_busy", promql=f"sum(rate({series}[30s]))")
        one = fleet.source.value(alone, now)
        assert one is not None
        assert step(alone, RuleState(alone.name), one, now).status == Status.INACTIVE, one
        singles.append(one)
    assert value == pytest.approx(sum(singles), rel=1e-9)
    # The catalog's own translation of rps is the same figure.
    assert fleet.source.value(rule("rps"), now) == pytest.approx(value, rel=1e-9)
    check_catalog(fleet, now, value)
    check_bad_queries(fleet, now)


def check_catalog(fleet: Fleet, now: float, rps: float) -> None:
    """Every catalog translation is valid PromQL on the live server and gives a sane figure."""
    values: dict[str, float | None] = {}
    for metric in (*TRAFFIC, *MAYBE):
        value = fleet.source.value(rule(metric, metric=metric), now)
        assert value is None or (math.isfinite(value) and value >= 0), (metric, value)
        values[metric] = value
    missing = [m for m in TRAFFIC if values[m] is None]
    assert not missing, values
    got = {k: v for k, v in values.items() if v is not None}
    assert got["requests_per_day"] == pytest.approx(86400 * rps, rel=1e-9)
    # rate() counts increases after each series' first sample: the warm-up boom is not in it.
    in_window = 2 * (THREADS * PER_THREAD + BOOMS)
    assert got["error_rate"] == pytest.approx(2 * BOOMS / in_window, abs=0.01)
    assert 0.015 <= got["latency_avg"] <= 0.5
    assert 0.01 <= got["latency_p95"] <= 1.0  # linear interpolation inside a bucket
    assert got["latency_p50"] <= got["latency_p95"] <= got["latency_p99"]
    assert got["concurrency_avg"] > 0
    assert got["latency_p99"] <= got["latency_max"]
    assert 0 < got["busy_ratio"] <= 1
    assert got.get("memory_mb", math.inf) > 1  # MiB
    assert 0 < got.get("memory_percent", 50) <= 100


def check_bad_queries(fleet: Fleet, now: float) -> None:
    """The real server's error replies map to RuleError, with the fix in the message."""
    with pytest.raises(RuleError, match="bad_data"):
        fleet.source.value(rule("typo", promql="sum(rate(scalewise_http_requests_total[1m]"), now)
    with pytest.raises(RuleError, match="returned 2 series; aggregate it"):
        fleet.source.value(rule("per_instance", promql="scalewise_workers"), now)
    with pytest.raises(RuleError, match="returned a matrix"):
        fleet.source.value(rule("range", promql="scalewise_workers[1m]"), now)
    assert fleet.source.value(rule("nothing", promql="absent_metric_name_xyz"), now) is None
    assert promql_for("rps", WINDOW) == fleet.source.expression(rule("rps"))
