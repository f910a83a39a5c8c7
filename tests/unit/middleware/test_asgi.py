"""The ASGI middleware in-process: labels, errors, isolation from its own failures, options."""

from __future__ import annotations

import asyncio
import random
import string
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from scalewise import ConfigError, MetricsOptions, ScalewiseMiddleware
from scalewise.metrics.recorder import OVERFLOW_ROUTE, UNMATCHED_ROUTE, Recorder
from scalewise.middleware._queue import QUEUE_MISSES_BEFORE_PROBING, QUEUE_PROBE_EVERY
from scalewise.options import EndpointPaths

OPTIONS = MetricsOptions(multiprocess_dir=None)


class Boom(Exception):
    pass


async def item(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["item_id"]}, headers={"x-app": "yes"})


async def boom(request: Request) -> PlainTextResponse:
    raise Boom("from the app")


def starlette_app(**options: Any) -> tuple[Starlette, ScalewiseMiddleware]:
    app = Starlette(routes=[Route("/items/{item_id}", item), Route("/boom", boom)])
    middleware = ScalewiseMiddleware(app, options=MetricsOptions(multiprocess_dir=None, **options))
    return app, middleware


def run(app: Any, *paths: str, raise_app_exceptions: bool = True) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get(p) for p in paths]

    return asyncio.run(go())


def counts(recorder: Recorder) -> dict[tuple[str, str, str], int]:
    return {k: s.duration.count for k, s in recorder.table.requests.items()}


def test_labels_are_route_templates_and_own_endpoints_are_not_counted() -> None:
    _, mw = starlette_app()
    responses = run(mw, *(f"/items/{i}" for i in range(30)), "/health", "/metrics", "/nope")
    assert [r.status_code for r in responses[-3:]] == [200, 200, 404]
    assert counts(mw.recorder) == {
        ("GET", "/items/{item_id}", "2xx"): 30,
        ("GET", UNMATCHED_ROUTE, "4xx"): 1,
    }


def test_app_exception_is_reraised_untouched_and_counted_as_500() -> None:
    raised = Boom("mine")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise raised

    mw = ScalewiseMiddleware(app, options=OPTIONS)
    with pytest.raises(Boom) as info:
        run(mw, "/x")
    assert info.value is raised
    assert counts(mw.recorder) == {("GET", "/x", "5xx"): 1}
    assert mw.recorder.table.counters["exceptions"] == 1
    assert mw.recorder.inflight == 0


def test_a_failure_inside_scalewise_never_changes_the_response(monkeypatch, caplog) -> None:
    _, mw = starlette_app(response_time_header=True)
    plain = run(Starlette(routes=[Route("/items/{item_id}", item)]), "/items/7")[0]

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("scalewise bug")

    monkeypatch.setattr(mw.recorder, "finished", broken)
    monkeypatch.setattr(mw.recorder, "started", broken)
    responses = run(mw, "/items/7", "/items/8")
    assert responses[0].status_code == plain.status_code == 200
    assert responses[0].content == plain.content
    assert responses[0].headers["x-app"] == "yes"
    assert responses[1].json() == {"id": "8"}
    assert mw.recorder.table.counters["internal_errors"] == 2
    assert sum("scalewise" in r.getMessage() for r in caplog.records) == 1  # once per minute


def test_unique_url_flood_cannot_grow_series_beyond_the_cap() -> None:
    async def bare(scope: Any, receive: Any, send: Any) -> None:  # no router to ask
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = ScalewiseMiddleware(bare, options=MetricsOptions(multiprocess_dir=None, max_routes=20))
    rng = random.Random(1)
    paths = ["/" + "".join(rng.choices(string.ascii_lowercase, k=12)) for _ in range(2000)]
    run(mw, *paths, "/users/123", "/users/9f1c2a3b-0000-4000-8000-000000000000")
    assert len(mw.recorder.routes()) == 20
    assert len(mw.recorder.table.requests) <= 21
    assert counts(mw.recorder)[("GET", OVERFLOW_ROUTE, "2xx")] == 2002 - 20
    assert mw.recorder.table.counters["route_overflow"] == 2002 - 20


def test_excluded_paths_and_custom_endpoint_paths() -> None:
    async def own_metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the app's own /metrics")

    app = Starlette(routes=[Route("/items/{item_id}", item), Route("/metrics", own_metrics)])
    paths = EndpointPaths(metrics=None, scaling="/_scaling", health="/_live")
    mw = ScalewiseMiddleware(
        app,
        options=MetricsOptions(multiprocess_dir=None, exclude=("/items/internal",), paths=paths),
    )
    responses = run(mw, "/items/internal", "/items/1", "/metrics", "/_scaling", "/_live", "/health")
    assert responses[2].text == "the app's own /metrics"  # scalewise's is switched off
    assert responses[3].json()["schema"] == "scalewise.health.scaling/v1"
    assert responses[4].json()["status"] == "ok"
    assert responses[5].status_code == 404
    assert ("GET", "/items/{item_id}", "2xx") in counts(mw.recorder)
    assert sum(counts(mw.recorder).values()) == 3  # /items/1, /metrics, /health (404)


def test_timing_headers_when_asked() -> None:
    _, mw = starlette_app(response_time_header=True, server_timing_header=True)
    response = run(mw, "/items/1")[0]
    assert response.headers["x-response-time"].endswith("s")
    assert response.headers["server-timing"].startswith("app;dur=")


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="intervall"):
        ScalewiseMiddleware(Starlette(), intervall=5)


def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    mw = ScalewiseMiddleware(app, options=OPTIONS)

    async def go() -> None:
        await mw({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
        await mw({"type": "websocket", "path": "/ws"}, None, None)  # type: ignore[arg-type]

    asyncio.run(go())
    assert seen == ["lifespan", "websocket"]
    assert counts(mw.recorder) == {}


def test_response_never_completed_counts_as_disconnect() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        # the client went away; Starlette's StreamingResponse returns quietly here

    mw = ScalewiseMiddleware(app, options=OPTIONS)
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/s", "headers": [], "root_path": ""}
    asyncio.run(mw(scope, receive, send))
    assert mw.recorder.table.counters["disconnects"] == 1
    assert counts(mw.recorder) == {("GET", "/s", "2xx"): 1}


def test_fastapi_route_templates() -> None:
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        return {"id": order_id}

    app.add_middleware(ScalewiseMiddleware, multiprocess_dir=None)
    run(app, "/orders/1", "/orders/2", "/health")
    stack = app.middleware_stack
    while not isinstance(stack, ScalewiseMiddleware):
        stack = stack.app
    assert counts(stack.recorder) == {("GET", "/orders/{order_id}", "2xx"): 2}


def test_quart_route_templates() -> None:
    quart = pytest.importorskip("quart")
    app = quart.Quart(__name__)

    @app.get("/things/<int:thing_id>")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    mw = ScalewiseMiddleware(app, options=OPTIONS)
    run(mw, "/things/1", "/things/2", "/missing")
    assert counts(mw.recorder) == {
        ("GET", "/things/<int:thing_id>", "2xx"): 2,
        ("GET", UNMATCHED_ROUTE, "4xx"): 1,
    }


def _queue_counts(mw: ScalewiseMiddleware, header_on: list[bool]) -> list[int]:
    """Queue-time samples recorded after each request; ``header_on[i]``: request i carries
    a fresh ``X-Request-Start``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw.app = app

    async def send(message: Any) -> None:
        return None

    async def go() -> list[int]:
        seen = []
        for on in header_on:
            stamp = f"t={int(time.time() * 1e6)}".encode()
            headers = [(b"host", b"x"), (b"x-request-start", stamp)] if on else [(b"host", b"x")]
            scope = {"type": "http", "method": "GET", "path": "/q", "headers": headers}
            await mw(scope, None, send)  # type: ignore[arg-type]
            seen.append(mw.recorder.table.queue_time.count)
        return seen

    return asyncio.run(go())


def test_queue_header_scans_back_off_only_after_a_long_run_of_misses() -> None:
    mw = ScalewiseMiddleware(lambda *a: None, options=OPTIONS)
    misses = QUEUE_MISSES_BEFORE_PROBING
    # No router header for a long run: from then on one request in QUEUE_PROBE_EVERY is
    # scanned, so a header that appears is found by the next probe, not on every request.
    seen = _queue_counts(mw, [False] * misses + [True] * (2 * QUEUE_PROBE_EVERY))
    assert seen[misses - 1] == 0
    probed = seen[misses:]
    assert probed[QUEUE_PROBE_EVERY - 2] == 0  # not scanned while backed off
    assert probed[QUEUE_PROBE_EVERY - 1] == 1  # the probe found it ...
    assert probed[-1] == 1 + QUEUE_PROBE_EVERY  # ... and every request is scanned again


def test_traffic_with_the_header_now_and_then_is_always_scanned() -> None:
    mw = ScalewiseMiddleware(lambda *a: None, options=OPTIONS)
    pattern = ([False] * (QUEUE_MISSES_BEFORE_PROBING - 1) + [True]) * 3
    assert _queue_counts(mw, pattern)[-1] == 3


def test_queue_time_header_off_never_scans() -> None:
    mw = ScalewiseMiddleware(
        lambda *a: None, options=MetricsOptions(multiprocess_dir=None, queue_time_header=False)
    )
    assert _queue_counts(mw, [True] * 5)[-1] == 0
