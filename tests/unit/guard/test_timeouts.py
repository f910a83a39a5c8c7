"""Timeouts (504, or an incomplete response once started) and body limits (413), ASGI and WSGI."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from scalewise.errors import ConfigError
from scalewise.guard.timeouts import (
    BodyLimitMiddleware,
    BodyLimitWSGIMiddleware,
    BodyTooLarge,
    TimeoutMiddleware,
)

Message = dict[str, Any]


async def drive(
    app: Any, scope: dict[str, Any], chunks: Iterable[bytes] = (b"",)
) -> tuple[list[Message], int]:
    """Call an ASGI app directly; returns what it sent and how many body chunks it read."""
    sent: list[Message] = []
    pending = list(chunks)
    read = 0

    async def receive() -> Message:
        nonlocal read
        if read >= len(pending):
            await asyncio.Event().wait()  # a client that sends nothing more
        read += 1
        return {"type": "http.request", "body": pending[read - 1], "more_body": read < len(pending)}

    async def send(message: Message) -> None:
        sent.append(message)

    base = {"type": "http", "method": "POST", "path": "/", "headers": []}
    await app({**base, **scope}, receive, send)
    return sent, read


# -- TimeoutMiddleware -------------------------------------------------------------------


def test_a_slow_handler_is_cancelled_and_the_client_gets_504() -> None:
    cancelled: list[bool] = []

    async def slow(request: Request) -> PlainTextResponse:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return PlainTextResponse("never")

    app = TimeoutMiddleware(Starlette(routes=[Route("/slow", slow)]), timeout="50ms")

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/slow")

    response = asyncio.run(go())
    assert response.status_code == 504
    assert response.json() == {
        "error": "timeout",
        "detail": "the request took too long",
        "timeout": 0.05,
    }
    assert cancelled == [True]
    assert app.timed_out == 1


def test_a_timeout_after_the_response_started_leaves_it_incomplete_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await asyncio.Event().wait()

    app = TimeoutMiddleware(streaming, timeout=0.02)
    with caplog.at_level(logging.WARNING, logger="scalewise.guard"):
        sent, _ = asyncio.run(drive(app, {"method": "GET", "path": "/feed"}))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[-1]["more_body"] is True  # never finished: the server drops the connection
    assert "GET /feed passed its 0.02s timeout" in caplog.text


def test_work_after_a_complete_response_is_not_cut_short() -> None:
    finished: list[bool] = []

    async def with_background(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        await asyncio.sleep(0.05)  # e.g. a Starlette BackgroundTask, past the timeout
        finished.append(True)

    sent, _ = asyncio.run(drive(TimeoutMiddleware(with_background, timeout=0.01), {}))
    assert finished == [True]
    assert sent[0]["status"] == 200


def test_the_apps_own_timeout_error_is_not_turned_into_504() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise TimeoutError("database")

    with pytest.raises(TimeoutError, match="database"):
        asyncio.run(drive(TimeoutMiddleware(app, timeout=10), {}))


def test_excluded_prefixes_have_no_timeout() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.03)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = TimeoutMiddleware(app, timeout=0.01, exclude=["/events"])
    sent, _ = asyncio.run(drive(middleware, {"path": "/events/live"}))
    assert sent[0]["status"] == 200


async def respond(send: Any, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_only_requests_past_their_deadline_are_cancelled() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/stuck":
            await asyncio.Event().wait()
        await asyncio.sleep(0)
        await respond(send)

    middleware = TimeoutMiddleware(app, timeout=0.05)

    async def go() -> list[int]:
        paths = ["/fast", "/stuck", "/fast", "/stuck", "/fast"]
        results = await asyncio.gather(*(drive(middleware, {"path": p}) for p in paths))
        return [sent[0]["status"] for sent, _ in results]

    assert asyncio.run(go()) == [200, 504, 200, 504, 200]
    assert middleware.timed_out == 2
    assert len(middleware._watchdog.entries) == 0  # nothing kept once requests end


def test_an_outside_cancellation_is_not_a_timeout() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.Event().wait()

    middleware = TimeoutMiddleware(app, timeout=30)

    async def go() -> None:
        task = asyncio.create_task(drive(middleware, {}))
        for _ in range(10):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert middleware.timed_out == 0


def test_an_app_that_swallows_the_cancellation_still_gets_a_504() -> None:
    async def stubborn(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return  # no response at all

    sent, _ = asyncio.run(drive(TimeoutMiddleware(stubborn, timeout=0.02), {}))
    assert sent[0]["status"] == 504


def test_one_middleware_serves_successive_event_loops() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.Event().wait()

    middleware = TimeoutMiddleware(app, timeout=0.02)
    for _ in range(2):
        sent, _ = asyncio.run(drive(middleware, {}))
        assert sent[0]["status"] == 504


@pytest.mark.parametrize("bad", [0, -1, "0s", "soon", True])
def test_timeout_must_be_a_positive_duration(bad: Any) -> None:
    with pytest.raises(ConfigError) as info:
        TimeoutMiddleware(lambda *a: None, timeout=bad)  # type: ignore[arg-type]
    assert (info.value.source, info.value.path) == ("TimeoutMiddleware", "timeout")


# -- BodyLimitMiddleware -----------------------------------------------------------------


async def upload(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


async def forgiving(request: Request) -> PlainTextResponse:
    try:
        await request.body()
    except Exception:
        return PlainTextResponse("the app's own error page", status_code=500)
    return PlainTextResponse("fine")


def upload_app(max_body: int | str) -> BodyLimitMiddleware:
    routes = [
        Route("/upload", upload, methods=["POST"]),
        Route("/forgiving", forgiving, methods=["POST"]),
    ]
    return BodyLimitMiddleware(Starlette(routes=routes), max_body=max_body)


def post(
    app: Any, path: str, content: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post(path, content=content, headers=headers)

    return asyncio.run(go())


def test_a_declared_length_over_the_limit_is_refused_before_the_app_runs() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not run")

    middleware = BodyLimitMiddleware(app, max_body="1KB")
    headers = [(b"content-length", b"1001")]
    sent, read = asyncio.run(drive(middleware, {"headers": headers}, [b"x" * 1001]))
    assert read == 0
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    body = json.loads(sent[1]["body"])
    assert body == {"error": "body_too_large", "detail": body["detail"], "limit": 1000}
    assert middleware.rejected == 1


def test_a_streamed_body_is_cut_off_as_soon_as_it_passes_the_limit() -> None:
    produced = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal produced
        for _ in range(100):
            produced += 1
            yield b"x" * 300

    response = post(upload_app(1000), "/upload", chunks())
    assert response.status_code == 413
    assert response.json()["limit"] == 1000
    assert produced <= 5  # 4 × 300 > 1000: the other 95 chunks were never asked for


def test_a_body_within_the_limit_reaches_the_app_whole() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * 300

    assert post(upload_app(1000), "/upload", chunks()).text == "900"
    assert post(upload_app(1000), "/upload", b"y" * 1000).text == "1000"


def test_an_app_that_swallows_the_error_still_answers_413() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 300

    response = post(upload_app(1000), "/forgiving", chunks())
    assert response.status_code == 413


def test_a_response_started_before_the_limit_is_left_incomplete() -> None:
    async def echo(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            await send({"type": "http.response.body", "body": message["body"], "more_body": True})

    chunked = {"headers": [(b"transfer-encoding", b"chunked")]}
    sent, _ = asyncio.run(drive(BodyLimitMiddleware(echo, max_body=10), chunked, [b"12345"] * 5))
    assert sent[0]["status"] == 200
    assert len(sent) == 3  # start + two echoed chunks; nothing after the limit, no final part
    assert all(m.get("more_body") for m in sent[1:])


def test_http2_bodies_without_a_length_are_counted_and_http1_gets_are_left_alone() -> None:
    async def reader(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await respond(send)

    middleware = BodyLimitMiddleware(reader, max_body=10)
    sent, _ = asyncio.run(drive(middleware, {"http_version": "2"}, [b"123456"] * 3))
    assert sent[0]["status"] == 413
    sent, read = asyncio.run(drive(middleware, {"method": "GET"}))
    assert (sent[0]["status"], read) == (200, 1)


def test_a_malformed_content_length_is_a_400() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not run")

    sent, _ = asyncio.run(
        drive(BodyLimitMiddleware(app), {"headers": [(b"content-length", b"12x")]})
    )
    assert sent[0]["status"] == 400


@pytest.mark.parametrize(("value", "size"), [("10MB", 10_000_000), ("2KiB", 2048), (512, 512)])
def test_sizes_accept_human_units(value: Any, size: int) -> None:
    assert BodyLimitMiddleware(upload, max_body=value).max_body == size  # type: ignore[arg-type]
    assert BodyLimitWSGIMiddleware(lambda e, s: [], max_body=value).max_body == size


@pytest.mark.parametrize("bad", [0, -5, "0MB", "lots", None])
def test_body_limit_must_be_a_positive_size(bad: Any) -> None:
    with pytest.raises(ConfigError) as info:
        BodyLimitMiddleware(upload, max_body=bad)  # type: ignore[arg-type]
    assert info.value.path == "max_body"
    with pytest.raises(ConfigError) as info:
        BodyLimitWSGIMiddleware(lambda e, s: [], max_body=bad)
    assert info.value.source == "BodyLimitWSGIMiddleware"


# -- BodyLimitWSGIMiddleware -------------------------------------------------------------


def wsgi_call(app: Any, environ: dict[str, Any]) -> tuple[str, bytes]:
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    body = b"".join(app({"REQUEST_METHOD": "POST", "PATH_INFO": "/", **environ}, start_response))
    return statuses[-1], body


def reader(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    data = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(len(data)).encode()]


def line_reader(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    lines = list(environ["wsgi.input"])
    start_response("200 OK", [])
    return [str(len(lines)).encode()]


def swallower(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    try:
        environ["wsgi.input"].read(4096)
    except Exception:
        start_response("500 Internal Server Error", [])
        return [b"oops"]
    start_response("200 OK", [])
    return [b"fine"]


def test_wsgi_declared_length_over_the_limit_is_refused_before_the_app_runs() -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        raise AssertionError("the app must not run")

    stream = io.BytesIO(b"x" * 2000)
    status, body = wsgi_call(
        BodyLimitWSGIMiddleware(app, max_body=1000),
        {"CONTENT_LENGTH": "2000", "wsgi.input": stream},
    )
    assert status == "413 Content Too Large"
    assert json.loads(body)["limit"] == 1000
    assert stream.tell() == 0


def test_wsgi_chunked_body_stops_one_byte_past_the_limit() -> None:
    stream = io.BytesIO(b"x" * 100_000)
    environ = {"wsgi.input": stream, "wsgi.input_terminated": True}
    status, _ = wsgi_call(BodyLimitWSGIMiddleware(reader, max_body=1000), environ)
    assert status == "413 Content Too Large"
    assert stream.tell() == 1001  # never more than one byte past the limit


def test_wsgi_app_that_swallows_the_error_still_answers_413() -> None:
    environ = {"wsgi.input": io.BytesIO(b"x" * 5000), "wsgi.input_terminated": True}
    status, body = wsgi_call(BodyLimitWSGIMiddleware(swallower, max_body=1000), environ)
    assert status == "413 Content Too Large"
    assert b"oops" not in body


def test_wsgi_bodies_within_the_limit_pass_in_every_reading_style() -> None:
    middleware = BodyLimitWSGIMiddleware(reader, max_body=1000)
    chunked = {"wsgi.input": io.BytesIO(b"x" * 1000), "wsgi.input_terminated": True}
    assert wsgi_call(middleware, chunked) == ("200 OK", b"1000")
    sized = {"wsgi.input": io.BytesIO(b"x" * 10), "CONTENT_LENGTH": "10"}
    assert wsgi_call(middleware, sized) == ("200 OK", b"10")
    lines = {"wsgi.input": io.BytesIO(b"a\nb\nc\n"), "wsgi.input_terminated": True}
    assert wsgi_call(BodyLimitWSGIMiddleware(line_reader, max_body=10), lines) == ("200 OK", b"3")
    many = {"wsgi.input": io.BytesIO(b"a\n" * 100), "wsgi.input_terminated": True}
    assert wsgi_call(BodyLimitWSGIMiddleware(line_reader, max_body=10), many)[0].startswith("413")


def test_wsgi_malformed_content_length_is_a_400() -> None:
    status, _ = wsgi_call(BodyLimitWSGIMiddleware(reader), {"CONTENT_LENGTH": "ten"})
    assert status == "400 Bad Request"


def test_body_too_large_names_the_limit() -> None:
    assert str(BodyTooLarge(10)) == "request body exceeds 10 bytes"
