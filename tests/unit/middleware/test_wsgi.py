"""The WSGI middleware, driven in-process: Flask and Django from ``examples/``, raw WSGI apps."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
from flask import Flask

from scalewise import ConfigError, MetricsOptions, ScalewiseMiddleware, ScalewiseWSGIMiddleware
from scalewise.metrics.recorder import UNMATCHED_ROUTE, Recorder

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
BASE = "http://testserver"
Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def options(**fields: Any) -> MetricsOptions:
    """Per-test figures: nothing shared through files with other processes."""
    return MetricsOptions(multiprocess_dir=None, **fields)


def load_example(name: str) -> types.ModuleType:
    """Import ``examples/<name>.py`` once per process (Django settings configure once)."""
    module_name = f"example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # Django imports ROOT_URLCONF by this name
    spec.loader.exec_module(module)
    return module


def count(
    mw: ScalewiseWSGIMiddleware | ScalewiseMiddleware,
    route: str,
    status: str = "2xx",
    method: str = "GET",
) -> int:
    cell = mw.recorder.table.requests.get((method, route, status))
    return 0 if cell is None else cell.duration.count


def total(mw: ScalewiseWSGIMiddleware) -> int:
    return sum(s.duration.count for s in mw.recorder.table.requests.values())


def client(app: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE)


@pytest.fixture
def stop_monitors() -> Iterator[list[ScalewiseWSGIMiddleware]]:
    """Middleware built by a test; their background threads stop at teardown."""
    built: list[ScalewiseWSGIMiddleware] = []
    yield built
    for mw in built:
        mw.monitor.stop()


@pytest.fixture
def wrap(stop_monitors: list[ScalewiseWSGIMiddleware]) -> Callable[..., ScalewiseWSGIMiddleware]:
    def make(app: Any, **fields: Any) -> ScalewiseWSGIMiddleware:
        mw = ScalewiseWSGIMiddleware(app, options=options(**fields))
        stop_monitors.append(mw)
        return mw

    return make


@pytest.fixture
def flask_app(
    monkeypatch: pytest.MonkeyPatch, wrap: Callable[..., ScalewiseWSGIMiddleware]
) -> tuple[Flask, ScalewiseWSGIMiddleware]:
    """The example's app, re-wrapped the example's way (a bound method) with test options."""
    app: Flask = load_example("flask_app").app
    mw = wrap(types.MethodType(Flask.wsgi_app, app))
    monkeypatch.setattr(app, "wsgi_app", mw)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", True)
    return app, mw


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Callable[[ScalewiseWSGIMiddleware], list[tuple]]:
    """Capture the arguments of every ``Recorder.finished`` call of one middleware."""

    def attach(mw: ScalewiseWSGIMiddleware) -> list[tuple]:
        calls: list[tuple] = []
        original = mw.recorder.finished

        def finished(*args: Any) -> None:
            calls.append(args)
            original(*args)

        monkeypatch.setattr(mw.recorder, "finished", finished)
        return calls

    return attach


def call(app: Any, path: str = "/x", **environ: Any) -> tuple[list[str], Iterable[bytes]]:
    """Call a WSGI app as a server would, without iterating its body."""
    env: Environ = {"PATH_INFO": path, **environ}
    setup_testing_defaults(env)
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append(status)
        return lambda data: None

    return seen, app(env, start_response)


def generator_app(
    chunks: Iterable[bytes], *, fail: BaseException | None = None, closed: list[bool] | None = None
) -> Callable[[Environ, StartResponse], Any]:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        try:
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield from chunks
            if fail is not None:
                raise fail
        finally:
            if closed is not None:
                closed.append(True)

    return app


# -- Flask ---------------------------------------------------------------------------------


def test_flask_labels_the_route_template(flask_app: tuple[Flask, ScalewiseWSGIMiddleware]) -> None:
    app, mw = flask_app
    with client(app) as c:
        assert c.get("/items/42").json() == {"id": 42}
        c.get("/items/43")
    assert count(mw, "/items/<int:item_id>") == 2
    assert "/items/42" not in mw.recorder.routes()
    assert mw.recorder.inflight == 0


def test_flask_404_is_unmatched(flask_app: tuple[Flask, ScalewiseWSGIMiddleware]) -> None:
    app, mw = flask_app
    with client(app) as c:
        assert c.get("/nope/123").status_code == 404
    assert count(mw, UNMATCHED_ROUTE, "4xx") == 1
    assert mw.recorder.routes() == {UNMATCHED_ROUTE}


def test_flask_exception_is_a_counted_500_and_reraised(
    flask_app: tuple[Flask, ScalewiseWSGIMiddleware],
) -> None:
    app, mw = flask_app
    with client(app) as c, pytest.raises(RuntimeError, match="boom"):
        c.get("/boom")
    assert count(mw, "/boom", "5xx") == 1
    assert mw.recorder.table.counters["exceptions"] == 1
    assert mw.recorder.inflight == 0


def test_flask_streaming_measures_first_byte_before_the_end(
    flask_app: tuple[Flask, ScalewiseWSGIMiddleware],
    spy: Callable[..., list[tuple]],
) -> None:
    app, mw = flask_app
    calls = spy(mw)
    with client(app) as c:
        assert c.get("/stream").text == "chunk 0\nchunk 1\nchunk 2\n"
    [(method, route, status, start, end, ttfb, _queue, disconnected)] = calls
    assert (method, route, status, disconnected) == ("GET", "/stream", 200, False)
    assert ttfb is not None
    assert 0 < ttfb < end - start


def test_flask_endpoints_are_served_and_not_counted(
    flask_app: tuple[Flask, ScalewiseWSGIMiddleware],
) -> None:
    app, mw = flask_app
    with client(app) as c:
        c.get("/items/42")
        health = c.get("/health")
        ready = c.get("/ready")
        metrics = c.get("/metrics")
        scaling = c.get("/health/scaling")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert ready.status_code == 200
    assert health.headers["cache-control"] == "no-store"
    line = 'scalewise_http_requests_total{method="GET",route="/items/<int:item_id>",status="2xx"} 1'
    assert line in metrics.text.splitlines()
    assert metrics.headers["content-type"].startswith("text/plain")
    assert scaling.json()["schema"] == "scalewise.health.scaling/v1"
    assert total(mw) == 1
    assert mw.recorder.routes() == {"/items/<int:item_id>"}
    assert mw.monitor._thread is not None
    assert mw.monitor._thread.is_alive()


def test_flask_broken_recorder_leaves_the_response_unchanged(
    flask_app: tuple[Flask, ScalewiseWSGIMiddleware],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, mw = flask_app
    with client(app) as c:
        before = c.get("/items/7")

        def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("recorder broke")

        monkeypatch.setattr(Recorder, "finished", broken)
        after = c.get("/items/7")
        streamed = c.get("/stream")
    assert (after.status_code, after.content) == (before.status_code, before.content)
    assert after.headers["content-type"] == before.headers["content-type"]
    assert streamed.text == "chunk 0\nchunk 1\nchunk 2\n"
    assert mw.recorder.table.counters["internal_errors"] == 2


def test_broken_start_and_resolver_still_serve(
    stop_monitors: list[ScalewiseWSGIMiddleware],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def resolver(environ: Any) -> str:
        raise LookupError("resolver broke")

    mw = ScalewiseWSGIMiddleware(generator_app([b"a"]), options=options(), route_resolver=resolver)
    stop_monitors.append(mw)
    with client(mw) as c:
        assert c.get("/items/5").text == "a"
    assert count(mw, "/items/{id}") == 1  # fell back to the guessed template
    assert mw.recorder.table.counters["internal_errors"] == 1

    def broken(self: Recorder) -> float:
        raise RuntimeError("started broke")

    monkeypatch.setattr(Recorder, "started", broken)
    with client(mw) as c:
        assert c.get("/items/5").text == "a"
    assert mw.recorder.table.counters["internal_errors"] == 2


def test_concurrent_requests_are_each_counted_once(
    flask_app: tuple[Flask, ScalewiseWSGIMiddleware],
) -> None:
    app, mw = flask_app
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with client(app) as c:
                for i in range(50):
                    c.get(f"/items/{n * 100 + i}").raise_for_status()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(mw, "/items/<int:item_id>") == 500
    assert mw.recorder.inflight == 0
    assert mw.recorder.table.counters["internal_errors"] == 0


def test_example_flask_app_resolves_through_its_bound_method() -> None:
    mw = load_example("flask_app").app.wsgi_app
    assert isinstance(mw, ScalewiseWSGIMiddleware)
    assert mw.resolver is not None
    assert mw.resolver({"PATH_INFO": "/items/3", "REQUEST_METHOD": "GET"}) == (
        "/items/<int:item_id>"
    )


def test_flask_under_another_middleware_uses_the_request_rule(
    wrap: Callable[..., ScalewiseWSGIMiddleware],
) -> None:
    app: Flask = load_example("flask_app").app
    inner = types.MethodType(Flask.wsgi_app, app)

    def other_middleware(environ: Environ, start_response: StartResponse) -> Any:
        return inner(environ, start_response)

    mw = wrap(other_middleware)
    assert mw.resolver is None
    with client(mw) as c:
        c.get("/items/9")
        c.get("/users/12345")
    assert count(mw, "/items/<int:item_id>") == 1
    assert count(mw, UNMATCHED_ROUTE, "4xx") == 1


# -- raw WSGI apps: the iterable protocol ----------------------------------------------------


def test_exception_from_the_app_call_is_a_500(wrap: Callable[..., ScalewiseWSGIMiddleware]) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        raise KeyError("broken app")

    mw = wrap(app)
    with pytest.raises(KeyError, match="broken app"):
        call(mw)
    assert count(mw, "/x", "5xx") == 1
    assert mw.recorder.table.counters["exceptions"] == 1
    assert mw.recorder.inflight == 0


def test_exception_during_iteration_is_a_500(
    wrap: Callable[..., ScalewiseWSGIMiddleware],
    spy: Callable[..., list[tuple]],
) -> None:
    mw = wrap(generator_app([b"a"], fail=ValueError("mid-body")))
    calls = spy(mw)
    _, body = call(mw)
    it = iter(body)
    assert next(it) == b"a"
    with pytest.raises(ValueError, match="mid-body"):
        next(it)
    body.close()  # type: ignore[attr-defined]
    assert len(calls) == 1
    assert calls[0][2] == 500
    assert mw.recorder.table.counters["exceptions"] == 1


def test_early_close_is_a_disconnect(
    wrap: Callable[..., ScalewiseWSGIMiddleware],
    spy: Callable[..., list[tuple]],
) -> None:
    closed: list[bool] = []
    mw = wrap(generator_app([b"a", b"b", b"c"], closed=closed))
    calls = spy(mw)
    _, body = call(mw)
    assert next(iter(body)) == b"a"
    body.close()  # type: ignore[attr-defined]
    body.close()  # type: ignore[attr-defined]
    assert closed == [True]  # the app's close() was forwarded
    [(_, _, status, _, _, ttfb, _, disconnected)] = calls
    assert (status, disconnected) == (200, True)
    assert ttfb is not None
    assert mw.recorder.table.counters["disconnects"] == 1
    assert mw.recorder.table.counters["exceptions"] == 0


def test_close_before_any_status_is_a_499(wrap: Callable[..., ScalewiseWSGIMiddleware]) -> None:
    mw = wrap(generator_app([b"a"]))  # a generator calls start_response on first next()
    seen, body = call(mw)
    body.close()  # type: ignore[attr-defined]
    assert seen == []
    assert count(mw, "/x", "4xx") == 1
    assert mw.recorder.table.counters["disconnects"] == 1


def test_oserror_during_iteration_is_a_disconnect(
    wrap: Callable[..., ScalewiseWSGIMiddleware],
) -> None:
    mw = wrap(generator_app([b"a"], fail=BrokenPipeError()))
    _, body = call(mw)
    with pytest.raises(BrokenPipeError):
        list(body)
    assert count(mw, "/x", "2xx") == 1
    assert mw.recorder.table.counters["disconnects"] == 1
    assert mw.recorder.table.counters["exceptions"] == 0


def test_server_that_never_closes_is_counted_at_exhaustion(
    wrap: Callable[..., ScalewiseWSGIMiddleware],
    spy: Callable[..., list[tuple]],
) -> None:
    mw = wrap(generator_app([b"", b"a", b"b"]))
    calls = spy(mw)
    _, body = call(mw)
    assert list(body) == [b"", b"a", b"b"]
    assert len(calls) == 1
    body.close()  # type: ignore[attr-defined]
    assert len(calls) == 1
    [(_, _, status, start, end, ttfb, _, disconnected)] = calls
    assert (status, disconnected) == (200, False)
    assert ttfb is not None
    assert ttfb <= end - start


def test_empty_body_first_byte_is_its_end(
    wrap: Callable[..., ScalewiseWSGIMiddleware],
    spy: Callable[..., list[tuple]],
) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("204 No Content", [])
        return []

    mw = wrap(app)
    calls = spy(mw)
    _, body = call(mw)
    assert len(body) == 0  # type: ignore[arg-type]
    assert list(body) == []
    [(_, _, status, start, end, ttfb, _, _)] = calls
    assert status == 204
    assert ttfb == end - start


def test_legacy_write_marks_the_first_byte(
    wrap: Callable[..., ScalewiseWSGIMiddleware],
    spy: Callable[..., list[tuple]],
) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])(b"hello")
        return []

    mw = wrap(app)
    calls = spy(mw)
    _, body = call(mw)
    list(body)
    [(_, _, _, start, end, ttfb, _, _)] = calls
    assert ttfb is not None
    assert ttfb <= end - start


def test_list_body_keeps_its_length(wrap: Callable[..., ScalewiseWSGIMiddleware]) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        return [b"one"]

    _, body = call(wrap(app))
    assert len(body) == 1  # type: ignore[arg-type]
    assert list(body) == [b"one"]


def test_timing_headers_and_queue_time(
    wrap: Callable[..., ScalewiseWSGIMiddleware],
    spy: Callable[..., list[tuple]],
) -> None:
    mw = wrap(generator_app([b"a"]), response_time_header=True, server_timing_header=True)
    calls = spy(mw)
    with client(mw) as c:
        response = c.get("/x", headers={"X-Request-Start": "t=1000000000.0"})  # absurd: ignored
        c.get("/x", headers={"X-Queue-Start": "t=0.5"})  # unparsable as a time: ignored
    assert response.headers["x-response-time"].endswith("s")
    assert response.headers["server-timing"].startswith("app;dur=")
    assert [args[6] for args in calls] == [None, None]


def test_queue_time_is_read_from_x_request_start(
    wrap: Callable[..., ScalewiseWSGIMiddleware],
    spy: Callable[..., list[tuple]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mw = wrap(generator_app([b"a"]))
    calls = spy(mw)
    monkeypatch.setattr("scalewise.middleware.wsgi.time.time", lambda: 1_700_000_000.25)
    with client(mw) as c:
        c.get("/x", headers={"X-Request-Start": "1700000000000"})  # Heroku: milliseconds
    assert calls[0][6] == pytest.approx(0.25)


def test_excluded_paths_pass_through_unmeasured(
    wrap: Callable[..., ScalewiseWSGIMiddleware],
) -> None:
    mw = wrap(generator_app([b"a"]), exclude=("/static",))
    with client(mw) as c:
        assert c.get("/static/app.js").text == "a"
        c.get("/x")
    assert total(mw) == 1
    assert count(mw, "/x") == 1


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        ScalewiseWSGIMiddleware(generator_app([]), intervall=5)


def test_endpoint_failure_is_a_500_and_logged(
    wrap: Callable[..., ScalewiseWSGIMiddleware],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mw = wrap(generator_app([b"a"]))

    def broken(monitor: Any) -> Any:
        raise RuntimeError("endpoint broke")

    monkeypatch.setitem(mw.routes, "/health", broken)
    with client(mw) as c:
        response = c.get("/health")
    assert response.status_code == 500
    assert mw.recorder.table.counters["internal_errors"] == 1


# -- Django ------------------------------------------------------------------------------------


def test_django_wsgi_labels_the_route_template(
    wrap: Callable[..., ScalewiseWSGIMiddleware],
) -> None:
    example = load_example("django_app")
    assert isinstance(example.application, ScalewiseWSGIMiddleware)
    mw = wrap(example.application.app)
    with client(mw) as c:
        assert c.get("/items/42/").json() == {"id": 42}
        assert c.get("/nope/42/").status_code == 404
        assert c.get("/health/scaling").json()["schema"] == "scalewise.health.scaling/v1"
    assert count(mw, "/items/<int:pk>/") == 1
    assert count(mw, UNMATCHED_ROUTE, "4xx") == 1
    assert total(mw) == 2


def test_django_asgi_labels_the_route_template() -> None:
    example = load_example("django_app")
    assert isinstance(example.asgi_application, ScalewiseMiddleware)
    mw = ScalewiseMiddleware(example.asgi_application.app, options=options())

    async def main() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=mw)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            return await c.get("/items/42/"), await c.get("/metrics")

    try:
        item, metrics = asyncio.run(main())
    finally:
        mw.monitor.stop()
    assert json.loads(item.content) == {"id": 42}
    line = 'scalewise_http_requests_total{method="GET",route="/items/<int:pk>/",status="2xx"} 1'
    assert line in metrics.text.splitlines()
    assert count(mw, "/items/<int:pk>/") == 1
