"""Several workers, one view: /metrics and /health/scaling merge every worker's figures."""

from __future__ import annotations

import os
import signal
import sys
import time

import httpx
import pytest

from tests.conftest import Server, free_port, uvicorn_argv
from tests.integration.test_uvicorn import requests_total, samples

pytestmark = pytest.mark.integration
REQUESTS = 200


def drive_until_both_workers_served(url: str) -> set[int]:
    """Send REQUESTS on fresh connections; the kernel spreads them over the workers."""
    pids: set[int] = set()
    for i in range(REQUESTS):
        response = httpx.get(f"{url}/items/{i}", headers={"Connection": "close"})
        assert response.status_code == 200
    for _ in range(40):
        pids.add(httpx.get(f"{url}/health", headers={"Connection": "close"}).json()["worker"])
    return pids


def merged_views(url: str) -> list[tuple[float, int, int]]:
    """Ask several times (different workers answer) for the total and the worker count."""
    views = []
    for _ in range(12):
        text = httpx.get(url + "/metrics", headers={"Connection": "close"}).text
        doc = httpx.get(url + "/health/scaling", headers={"Connection": "close"}).json()
        views.append(
            (
                requests_total(text, "/items/{item_id:int}", "2xx"),
                doc["windows"]["1m"]["requests"],
                doc["workers"]["count"],
            )
        )
    return views


def check_merged(url: str, workers: int) -> None:
    pids = drive_until_both_workers_served(url)
    assert len(pids) == workers, "the kernel sent every request to one worker; retry"
    deadline = time.monotonic() + 10
    while True:  # siblings publish their state every flush_interval (0.2 s here)
        views = merged_views(url)
        if all(v == (REQUESTS, REQUESTS, workers) for v in views) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert all(v == (REQUESTS, REQUESTS, workers) for v in views), views
    text = httpx.get(url + "/metrics").text
    assert samples(text, "scalewise_workers")[()] == workers


def test_uvicorn_workers_show_one_merged_view(tmp_path) -> None:
    port = free_port()
    server = Server(
        uvicorn_argv("starlette_app:app", port, "--workers", "2"),
        port,
        env={"SCALEWISE_FLUSH_INTERVAL": "0.2", "TMPDIR": str(tmp_path)},
    )
    try:
        server.wait_ready()
        check_merged(server.url, workers=2)
    finally:
        server.stop()


def test_gunicorn_wsgi_workers_show_one_merged_view(tmp_path) -> None:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--chdir",
        "tests/apps",
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "flask_app:app",
    ]
    server = Server(argv, port, env={"SCALEWISE_FLUSH_INTERVAL": "0.2", "TMPDIR": str(tmp_path)})
    try:
        server.wait_ready()
        pytest.importorskip("flask")
        check_merged_flask(server.url)
        kill_one_worker_and_check_counts_survive(server.url)
    finally:
        server.stop()


def check_merged_flask(url: str) -> None:
    for i in range(REQUESTS):
        assert httpx.get(f"{url}/items/{i}", headers={"Connection": "close"}).status_code == 200
    deadline = time.monotonic() + 10
    while True:
        totals = set()
        for _ in range(12):
            text = httpx.get(url + "/metrics", headers={"Connection": "close"}).text
            totals.add(requests_total(text, "/items/<int:item_id>", "2xx"))
        if totals == {REQUESTS} or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert totals == {REQUESTS}
    assert samples(text, "scalewise_workers")[()] == 2


def kill_one_worker_and_check_counts_survive(url: str) -> None:
    """A worker that dies keeps its counts in the sums: counters never go backwards."""
    victim = httpx.get(url + "/health", headers={"Connection": "close"}).json()["worker"]
    os.kill(victim, signal.SIGKILL)  # a worker of the gunicorn we started, by its PID
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            doc = httpx.get(url + "/health/scaling", headers={"Connection": "close"}).json()
            text = httpx.get(url + "/metrics", headers={"Connection": "close"}).text
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if victim in doc["workers"]["exited"] and doc["workers"]["count"] == 2:
            break
        time.sleep(0.2)
    assert victim in doc["workers"]["exited"]
    assert doc["workers"]["count"] == 2  # gunicorn replaced it
    assert requests_total(text, "/items/<int:item_id>", "2xx") == REQUESTS
    assert doc["windows"]["1m"]["requests"] == REQUESTS
