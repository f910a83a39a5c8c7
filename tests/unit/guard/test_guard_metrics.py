"""Guard counters end to end: ScalewiseMiddleware(guards(app)) → /metrics and /health/scaling.

The guards are built before the monitor exists (``ScalewiseMiddleware(guard(app))``), so they
count into the recorder the middleware puts in the scope; these tests check that every guard
does, that the counts come out as bounded Prometheus series and JSON, and that workers add up.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from scalewise.clock import ManualClock
from scalewise.guard.backends.memory import MemoryBackend
from scalewise.guard.cache_asgi import ResponseCacheMiddleware
from scalewise.guard.ratelimit import RateLimiter
from scalewise.guard.ratelimit_asgi import RateLimitMiddleware
from scalewise.guard.shed_asgi import LoadShedMiddleware
from scalewise.guard.timeouts import BodyLimitMiddleware, TimeoutMiddleware
from scalewise.metrics.exposition import guard_counts
from scalewise.metrics.recorder import SCOPE_KEY, Recorder
from scalewise.metrics.series import SeriesTable
from scalewise.middleware.asgi import ScalewiseMiddleware
from scalewise.options import MetricsOptions
from scalewise.types import Message

SAMPLE = re.compile(
    r'^(scalewise_(?:guard|cache)_events_total)\{(\w+)="(\w+)",event="(\w+)"\} (\S+)$'
)


class Stack:
    """The guards in guard()'s order under one ScalewiseMiddleware, plus a gate (no sleeps)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.entered = 0
        clock = ManualClock()
        limiter = RateLimiter("2/minute", MemoryBackend(clock=clock))
        app: Any = Starlette(
            routes=[
                Route("/gate", self.held),
                Route("/cached", self.cached),
                Route("/upload", self.upload, methods=["POST"]),
                Route("/limited", self.cached),
                Route("/hang", self.hang),
            ]
        )
        app = ResponseCacheMiddleware(app, routes=["/cached"], clock=clock)
        app = BodyLimitMiddleware(app, max_body=10)
        app = TimeoutMiddleware(app, timeout=0.05)
        app = LoadShedMiddleware(app, limit=1, max_queue=0)
        app = RateLimitMiddleware(app, limiter, exempt=("/gate", "/cached", "/upload", "/hang"))
        options = MetricsOptions(multiprocess_dir=None)
        self.app = ScalewiseMiddleware(app, options=options)

    async def held(self, request: Request) -> PlainTextResponse:
        self.entered += 1
        await self.gate.wait()
        return PlainTextResponse("done")

    async def cached(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse("fresh")

    async def upload(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"{len(await request.body())} bytes")

    async def hang(self, request: Request) -> PlainTextResponse:
        await asyncio.Event().wait()  # never set: the timeout guard cancels it
        return PlainTextResponse("unreachable")


async def _trigger(stack: Stack, client: httpx.AsyncClient) -> dict[str, int]:
    held = asyncio.create_task(client.get("/gate"))
    for _ in range(500):
        if stack.entered:
            break
        await asyncio.sleep(0)
    statuses = {"shed": (await client.get("/gate")).status_code}
    stack.gate.set()
    await held
    statuses["limited"] = [(await client.get("/limited")).status_code for _ in range(3)][-1]
    statuses["body"] = (await client.post("/upload", content=b"x" * 50)).status_code

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused while reading
        for _ in range(5):
            yield b"x" * 10

    statuses["chunked"] = (await client.post("/upload", content=chunks())).status_code
    statuses["hang"] = (await client.get("/hang")).status_code
    cached = [await client.get("/cached") for _ in range(3)]
    statuses["hit"] = cached[-1].status_code if cached[-1].headers["x-cache"] == "HIT" else 0
    return statuses


def _scrape(stack: Stack) -> tuple[dict[str, int], str, dict[str, Any]]:
    async def go() -> tuple[dict[str, int], str, dict[str, Any]]:
        transport = httpx.ASGITransport(app=stack.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            statuses = await _trigger(stack, client)
            text = (await client.get("/metrics")).text
            document = (await client.get("/health/scaling")).json()
        stack.app.monitor.stop()
        return statuses, text, document

    return asyncio.run(go())


def _samples(text: str) -> dict[tuple[str, str, str], float]:
    return {
        (m[1], m[3], m[4]): float(m[5])
        for m in (SAMPLE.match(line) for line in text.splitlines())
        if m
    }


def test_guards_count_into_the_outer_middleware_and_show_in_metrics_and_health() -> None:
    stack = Stack()
    statuses, text, document = _scrape(stack)
    assert statuses == {
        "shed": 503,
        "limited": 429,
        "body": 413,
        "chunked": 413,
        "hang": 504,
        "hit": 200,
    }
    samples = _samples(text)
    guard = "scalewise_guard_events_total"
    cache = "scalewise_cache_events_total"
    assert samples[(guard, "shed", "queue_full")] == 1
    assert samples[(guard, "shed", "queue_timeout")] == 0
    assert samples[(guard, "rate_limit", "rejected")] == 1
    assert samples[(guard, "body_limit", "rejected")] == 2
    assert samples[(guard, "timeout", "timed_out")] == 1
    assert samples[(cache, "response_cache", "misses")] == 1
    assert samples[(cache, "response_cache", "hits")] == 2
    assert samples[(cache, "response_cache", "evictions")] == 0  # siblings show as zeros
    assert not any(labels[1] == "cache" for labels in samples)  # no TTLCache counted anything
    assert "# TYPE scalewise_guard_events_total counter" in text
    assert "# TYPE scalewise_cache_events_total counter" in text
    guards = document["guards"]
    assert guards["shed"] == {"queue_full": 1, "queue_timeout": 0, "queued": 0}
    assert guards["rate_limit"]["rejected"] == 1
    assert guards["body_limit"] == {"rejected": 2}
    assert guards["timeout"] == {"timed_out": 1}
    assert (guards["response_cache"]["hits"], guards["response_cache"]["misses"]) == (2, 1)


def test_unknown_counters_never_become_series() -> None:
    stack = Stack()
    for i in range(50):
        stack.app.recorder.count(f"guard_made_up_{i}")
        stack.app.recorder.count(f"response_cache_made_up_{i}")
    _, text, document = _scrape(stack)
    assert "made_up" not in text
    assert "made_up" not in str(document["guards"])
    lines = [line for line in text.splitlines() if line.startswith("scalewise_")]
    assert len([line for line in lines if "_events_total{" in line]) == len(_samples(text))


def test_an_explicit_recorder_wins_over_the_scope() -> None:
    own = Recorder(MetricsOptions(multiprocess_dir=None), clock=ManualClock())
    scoped = Recorder(MetricsOptions(multiprocess_dir=None), clock=ManualClock())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a refused request must not reach the app")

    body_limit = BodyLimitMiddleware(app, max_body=1, recorder=own)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-length", b"5")],
        SCOPE_KEY: scoped,
    }
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    asyncio.run(body_limit(scope, receive, send))
    assert sent[0]["status"] == 413
    assert own.table.counters["guard_body_too_large"] == 1
    assert "guard_body_too_large" not in scoped.table.counters


def test_workers_guard_counts_add_up() -> None:
    tables = []
    for n in (2, 3):
        recorder = Recorder(MetricsOptions(multiprocess_dir=None), clock=ManualClock())
        recorder.count("guard_rate_limited", n)
        recorder.count("cache_calls", n)
        tables.append(SeriesTable.from_dict(recorder.table.to_dict()))  # as worker files do
    merged = SeriesTable.merged(tables)
    assert merged is not None
    counts = guard_counts(merged.counters)
    assert (counts["rate_limit"]["rejected"], counts["cache"]["calls"]) == (5, 5)
