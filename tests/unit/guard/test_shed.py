"""Load shedding in-process: 503 + Retry-After past the queue, probes exempt, counts, learning."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from scalewise.clock import ManualClock
from scalewise.errors import ConfigError
from scalewise.guard.adaptive import AIMDLimit
from scalewise.guard.shed_asgi import LoadShedMiddleware
from scalewise.metrics.recorder import Recorder
from scalewise.options import EndpointPaths, MetricsOptions
from scalewise.types import Message


class Gate:
    """Holds requests inside the handler until opened (no sleeps)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.entered = 0

    async def handler(self, request: Request) -> PlainTextResponse:
        self.entered += 1
        await self.event.wait()
        return PlainTextResponse("done")


def make_app(gate: Gate) -> Starlette:
    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def unavailable(request: Request) -> PlainTextResponse:
        return PlainTextResponse("busy downstream", status_code=503)

    async def boom(request: Request) -> PlainTextResponse:
        raise RuntimeError("app bug")

    routes = [
        Route("/gate", gate.handler),
        Route("/health", ok),
        Route("/ready", ok),
        Route("/livez", ok),
        Route("/unavailable", unavailable),
        Route("/boom", boom),
    ]
    return Starlette(routes=routes)


async def settle(condition: Callable[[], bool], rounds: int = 500) -> None:
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def test_over_the_queue_gets_503_at_once_while_probes_pass() -> None:
    gate = Gate()
    recorder = Recorder(MetricsOptions(multiprocess_dir=None), clock=ManualClock())
    shed = LoadShedMiddleware(
        make_app(gate), limit=2, max_queue=1, queue_timeout=30, retry_after=2, recorder=recorder
    )

    async def go() -> tuple[list[httpx.Response], list[httpx.Response], httpx.Response]:
        async with client(shed) as c:
            held = [asyncio.create_task(c.get("/gate")) for _ in range(3)]
            await settle(lambda: gate.entered == 2 and shed.limiter.waiting == 1)
            refused = await c.get("/gate")  # answered while the others are still held
            probes = [await c.get("/health"), await c.get("/ready")]
            gate.event.set()
            return list(await asyncio.gather(*held)), probes, refused

    held, probes, refused = asyncio.run(go())
    assert [r.status_code for r in held] == [200, 200, 200]
    assert [r.status_code for r in probes] == [200, 200]
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "2"
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["reason"] == "queue_full"
    stats = shed.stats()
    assert (stats.admitted, stats.queued, stats.shed, stats.timed_out, stats.exempt) == (
        3,
        1,
        1,
        0,
        2,
    )
    assert (stats.inflight, stats.waiting, stats.limit) == (0, 0, 2)
    counters = recorder.table.counters
    assert (counters["guard_shed"], counters["guard_queued"]) == (1, 1)


def test_a_queued_request_that_waits_too_long_gets_503() -> None:
    gate = Gate()
    recorder = Recorder(MetricsOptions(multiprocess_dir=None), clock=ManualClock())
    shed = LoadShedMiddleware(
        make_app(gate), limit=1, max_queue=4, queue_timeout=0.02, recorder=recorder
    )

    async def go() -> httpx.Response:
        async with client(shed) as c:
            held = asyncio.create_task(c.get("/gate"))
            await settle(lambda: gate.entered == 1)
            refused = await c.get("/gate")
            gate.event.set()
            assert (await held).status_code == 200
            return refused

    refused = asyncio.run(go())
    assert refused.status_code == 503
    assert refused.json()["reason"] == "queue_timeout"
    assert refused.headers["retry-after"] == "1"
    assert shed.stats().timed_out == 1
    assert recorder.table.counters["guard_shed_queue_timeout"] == 1


def test_a_shed_request_is_answered_without_reading_its_body_or_calling_the_app() -> None:
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await asyncio.Event().wait()  # never returns: holds the only slot

    shed = LoadShedMiddleware(app, limit=1, max_queue=0)
    sent: list[Message] = []
    received: list[str] = []

    async def receive() -> dict[str, Any]:
        received.append("read")
        return {"type": "http.request", "body": b"x" * 1000, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/upload", "method": "POST", "headers": []}

    async def go() -> None:
        holder = asyncio.create_task(shed(dict(scope), receive, send))
        await settle(lambda: calls == ["/upload"])
        await shed(dict(scope), receive, send)
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder

    asyncio.run(go())
    assert calls == ["/upload"]
    assert received == []
    assert sent[0]["status"] == 503
    assert json.loads(sent[1]["body"])["error"] == "overloaded"
    assert shed.limiter.inflight == 0  # the cancelled holder gave its slot back


def test_custom_endpoint_paths_and_extra_exempt_paths_are_never_limited() -> None:
    gate = Gate()
    paths = EndpointPaths(health="/livez", ready=None)
    shed = LoadShedMiddleware(make_app(gate), limit=1, max_queue=0, paths=paths, exempt=["/ready"])
    assert {"/livez", "/ready", "/metrics", "/health/scaling"} <= shed.exempt
    assert "/health" not in shed.exempt

    async def go() -> list[int]:
        async with client(shed) as c:
            held = asyncio.create_task(c.get("/gate"))
            await settle(lambda: gate.entered == 1)
            codes = [(await c.get(p)).status_code for p in ("/livez", "/ready", "/health")]
            gate.event.set()
            await held
            return codes

    assert asyncio.run(go()) == [200, 200, 503]


def test_an_adaptive_limit_learns_from_503s_but_not_from_app_errors() -> None:
    limit = AIMDLimit(10, min_limit=2, latency_threshold=60)
    shed = LoadShedMiddleware(make_app(Gate()), limit=limit)

    async def go() -> None:
        async with client(shed) as c:
            assert (await c.get("/boom")).status_code == 500
            assert limit.limit == 10
            assert (await c.get("/unavailable")).status_code == 503
            assert limit.limit == 9

    asyncio.run(go())
    assert shed.limiter.inflight == 0


def test_non_http_scopes_pass_through_untouched() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    shed = LoadShedMiddleware(app, limit=1)

    async def go() -> None:
        async def nothing() -> dict[str, Any]:
            return {}

        async def ignore(message: Any) -> None:
            return None

        await shed({"type": "lifespan"}, nothing, ignore)
        await shed({"type": "websocket", "path": "/ws"}, nothing, ignore)

    asyncio.run(go())
    assert seen == ["lifespan", "websocket"]
    assert shed.stats().admitted == 0


def test_configuration_mistakes_name_the_field() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    with pytest.raises(ConfigError) as info:
        LoadShedMiddleware(app)
    assert info.value.path == "limit"
    with pytest.raises(ConfigError) as info:
        LoadShedMiddleware(app, limit=0)
    assert info.value.path == "limit"
    with pytest.raises(ConfigError) as info:
        LoadShedMiddleware(app, limit=5, exempt=["health"])
    assert info.value.path == "exempt[0]"
    with pytest.raises(ConfigError) as info:
        LoadShedMiddleware(app, limit=5, queue_timeout="0s", retry_after="-1s")
    assert info.value.path == "retry_after"


def test_works_as_starlette_middleware() -> None:
    app = Starlette(routes=[Route("/", lambda r: JSONResponse({"ok": True}))])
    app.add_middleware(LoadShedMiddleware, limit=3, queue_timeout="100ms")

    async def go() -> httpx.Response:
        async with client(app) as c:
            return await c.get("/")

    assert asyncio.run(go()).json() == {"ok": True}
