"""Run the demo: start the example service on 127.0.0.1, drive a bounded load, read back.

Everything stays on loopback; the load stops on its own after ``duration`` seconds or
``max_requests`` requests, whichever comes first, and the server is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from scalewise.errors import ScalewiseError

# (weight, method, path factory): a mix of the service's route kinds.
_MIX: list[tuple[int, str, Callable[[int], str]]] = [
    (40, "GET", lambda n: f"/io?ms={10 + n % 30}"),
    (25, "GET", lambda n: "/cpu?rounds=400"),
    (20, "GET", lambda n: f"/cached/{n % 64}"),
    (10, "GET", lambda n: f"/flaky/{n}"),
    (5, "POST", lambda n: "/upload"),
]
_UPLOAD = b"x" * 64_000


@dataclass
class LoadResult:
    """What the client saw (the server's own view comes from /health/scaling)."""

    sent: int = 0
    failed: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_service(port: int, app: str = "scalewise.demo.service:app") -> subprocess.Popen[bytes]:
    """Start uvicorn on loopback in a child process and wait until it answers /health."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise ScalewiseError(f"the demo service exited at start-up:\n{err}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    stop_service(proc)
    raise ScalewiseError("the demo service did not answer /health within 20 s")


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    """Stop the child we started, by its PID: SIGTERM, then SIGKILL after 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


async def drive(
    base_url: str,
    duration: float,
    concurrency: int,
    max_requests: int,
    progress: Callable[[LoadResult, float], None] | None = None,
) -> LoadResult:
    """Closed-model load: ``concurrency`` users, each sending the next request on reply."""
    result = LoadResult()
    weights = [w for w, _, _ in _MIX]
    rng = random.Random(7)
    deadline = time.monotonic() + duration
    started = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def user(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline and result.sent < max_requests:
            n = result.sent
            result.sent += 1
            _, method, path = rng.choices(_MIX, weights)[0]
            try:
                body = _UPLOAD if method == "POST" else None
                response = await client.request(method, path(n), content=body)
                result.statuses[response.status_code] = (
                    result.statuses.get(response.status_code, 0) + 1
                )
            except httpx.HTTPError:
                result.failed += 1

    async def report() -> None:
        while time.monotonic() < deadline and result.sent < max_requests:
            await asyncio.sleep(0.25)
            if progress is not None:
                progress(result, time.monotonic() - started)

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=10) as client:
        reporter = asyncio.create_task(report())
        await asyncio.gather(*(user(client) for _ in range(concurrency)))
        reporter.cancel()
    result.seconds = time.monotonic() - started
    return result


def fetch(base_url: str, path: str) -> Any:
    response = httpx.get(base_url + path, timeout=10)
    response.raise_for_status()
    return response.json() if path != "/metrics" else response.text
