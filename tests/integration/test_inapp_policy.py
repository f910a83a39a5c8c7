"""The policy evaluated inside a real uvicorn app: scalewise.yaml → store → /health/scaling."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scalewise.store.sqlite import SQLiteStore
from tests.conftest import ROOT, Server, free_port

pytestmark = pytest.mark.integration

EVALUATION = 2.0
CONFIG = """\
metrics: {{interval: 2s, multiprocess_dir: {multiprocess}}}
store: {{url: "sqlite:///{db}"}}
policy:
  evaluation_interval: 2s
  current_plan: starter
  rules:
    - {{name: busy, metric: rps, window: 10s, above: 5, for: 0s, action: scale_up}}
"""
TRAFFIC_SECONDS = 8.0
MAX_REQUESTS = 4000


def start_demo(tmp_path: Path, workers: int) -> Server:
    """The demo service under uvicorn, in ``tmp_path`` with its scalewise.yaml."""
    config = tmp_path / "scalewise.yaml"
    multiprocess = "off" if workers == 1 else "auto"
    config.write_text(CONFIG.format(multiprocess=multiprocess, db=tmp_path / "s.db"))
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "scalewise.demo.service:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--workers",
        str(workers),
    ]
    python_path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": python_path, "SCALEWISE_CONFIG": str(config), "TMPDIR": str(tmp_path)}
    server = Server(argv, port, env=env, cwd=tmp_path)
    server.wait_ready()
    return server


@pytest.fixture
def one_worker(tmp_path: Path) -> Iterator[Server]:
    server = start_demo(tmp_path, workers=1)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Server]:
    server = start_demo(tmp_path, workers=2)
    try:
        yield server
    finally:
        server.stop()


def drive(url: str, fresh_connections: bool = False) -> int:
    """Sequential GETs to /io?ms=5 for TRAFFIC_SECONDS, at most MAX_REQUESTS; how many."""
    headers = {"Connection": "close"} if fresh_connections else {}
    sent = 0
    deadline = time.monotonic() + TRAFFIC_SECONDS
    with httpx.Client(base_url=url, timeout=5) as client:
        while sent < MAX_REQUESTS and time.monotonic() < deadline:
            assert client.get("/io", params={"ms": 5}, headers=headers).status_code == 200
            sent += 1
    return sent


def policy_of(url: str) -> dict[str, Any] | None:
    doc: dict[str, Any] = httpx.get(url + "/health/scaling", timeout=5).json()
    return doc["policy"]


def wait_for_firing(url: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    policy = None
    while time.monotonic() < deadline:
        policy = policy_of(url)
        if policy is not None and policy["rules"][0]["state"] == "firing":
            return policy
        time.sleep(0.25)
    pytest.fail(f"the rule did not fire within {timeout:g}s; last policy status: {policy}")


def check_policy_document(policy: dict[str, Any]) -> None:
    (rule,) = policy["rules"]
    assert rule["name"] == "busy"
    assert rule["metric"] == "rps"
    assert rule["value"] > 5
    assert policy["evaluation_interval"] == EVALUATION
    rec = policy["recommendation"]
    assert rec is not None
    assert rec["current_plan"] == "Starter"
    assert rec["firing"] == ["busy"]
    assert "Standard" in str(rec)  # scale_up to it, or held by the cooldown on the way there


def check_store(db: Path) -> SQLiteStore:
    store = SQLiteStore(db)
    snapshots = store.read_snapshots(0, 1e12)
    assert snapshots
    assert sum(s.requests for s in snapshots) > 100
    assert {s.seconds for s in snapshots} == {2.0}  # closed intervals only
    states = store.load_rule_states()
    assert states["busy"].fired_at is not None
    decisions = store.decisions(0)
    assert [d for d in decisions if d.action == "scale_up" and d.target_plan == "Standard"]
    return store


def test_the_app_evaluates_its_policy_and_shows_it_on_health_scaling(
    one_worker: Server, tmp_path: Path
) -> None:
    before = policy_of(one_worker.url)  # not evaluated yet, or evaluated on no data
    assert before is None or before["rules"][0]["state"] == "inactive"
    sent = drive(one_worker.url)
    assert sent > 100
    check_policy_document(wait_for_firing(one_worker.url))
    one_worker.stop()
    with check_store(tmp_path / "s.db") as store:
        assert len({s.worker for s in store.read_snapshots(0, 1e12)}) == 1


def pid_and_policy(url: str) -> tuple[int, dict[str, Any] | None]:
    """Which worker answered, and its view of the policy (one connection, one worker)."""
    with httpx.Client(base_url=url, timeout=5) as client:
        pid = int(client.get("/health").json()["worker"])
        return pid, client.get("/health/scaling").json()["policy"]


def test_with_two_workers_one_evaluates_and_every_worker_shows_the_policy(
    two_workers: Server, tmp_path: Path
) -> None:
    sent = drive(two_workers.url, fresh_connections=True)
    assert sent > 100
    wait_for_firing(two_workers.url)
    views: dict[int, dict[str, Any] | None] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        len(views) < 2 or not all(v is not None for v in views.values())
    ):
        pid, policy = pid_and_policy(two_workers.url)
        views[pid] = policy
    assert len(views) == 2, "the kernel sent every connection to one worker; retry"
    for policy in views.values():
        assert policy is not None
        assert policy["rules"][0]["name"] == "busy"
        assert policy["rules"][0]["state"] in {"firing", "inactive"}  # after traffic: resolving
    two_workers.stop()
    with check_store(tmp_path / "s.db") as store:
        workers = {s.worker for s in store.read_snapshots(0, 1e12)}
        decisions = store.decisions(0)
    assert len(workers) == 2  # both workers persist their intervals
    slots = [math.floor(d.at / EVALUATION) for d in decisions]
    assert len(slots) == len(set(slots)), [(d.at, d.action) for d in decisions]
