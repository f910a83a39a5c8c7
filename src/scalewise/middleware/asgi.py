"""Pure ASGI middleware: measures every HTTP request and serves scalewise's endpoints.

It wraps ``send`` (as Starlette's GZip middleware does) to see the status, the first body
bytes and the last, and reads the route template from the scope after the app ran. Nothing it
does can change the app's response: every step of its own is guarded, and an exception from
the app is recorded as a 500 and re-raised untouched.
"""

from __future__ import annotations

import time
from typing import Any

from scalewise.metrics.monitor import Monitor
from scalewise.metrics.recorder import UNMATCHED_ROUTE
from scalewise.middleware import endpoints
from scalewise.middleware._queue import HEADERS as QUEUE_HEADERS
from scalewise.middleware._queue import parse_request_start
from scalewise.middleware._setup import build_monitor
from scalewise.middleware.routes import (
    RouteResolver,
    StarletteRoutes,
    normalize_path,
    resolver_for,
)
from scalewise.options import MetricsOptions
from scalewise.types import ASGIApp, Message, Receive, Scope, Send


class ScalewiseMiddleware:
    """Measure an ASGI app (Starlette, FastAPI, Django, Quart…) and serve ``/health``,
    ``/ready``, ``/health/scaling`` and ``/metrics``.

    Example:
        >>> from starlette.applications import Starlette
        >>> app = Starlette()
        >>> app.add_middleware(ScalewiseMiddleware)               # Starlette / FastAPI
        >>> wrapped = ScalewiseMiddleware(Starlette(), interval=5)  # any ASGI app

    Keyword options are the fields of :class:`~scalewise.options.MetricsOptions` and win over
    ``scalewise.yaml`` and ``SCALEWISE_*`` variables, which are read when no ``options=``
    object is given. Pass ``monitor=`` to share one monitor between several middleware.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        options: MetricsOptions | None = None,
        monitor: Monitor | None = None,
        route_resolver: RouteResolver | None = None,
        **overrides: Any,
    ) -> None:
        self.app = app
        self.monitor = monitor = build_monitor("ScalewiseMiddleware", options, monitor, overrides)
        self.options = monitor.options
        self.recorder = monitor.recorder
        self.resolver = route_resolver or resolver_for(app)
        self.starlette_routes = StarletteRoutes()
        self.now = self.recorder.clock.monotonic
        paths = self.options.paths
        self.routes = {
            path: handler
            for path, handler in (
                (paths.health, endpoints.health),
                (paths.ready, endpoints.ready),
                (paths.scaling, endpoints.scaling),
                (paths.metrics, endpoints.metrics),
            )
            if path
        }
        self.exclude = self.options.exclude
        self.queue_headers = self.options.queue_time_header
        self.timing_headers = self.options.response_time_header or (
            self.options.server_timing_header
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                self._start_background()
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        handler = self.routes.get(path)
        if handler is not None:
            await self._serve(handler, send)
            return
        if self.exclude and path.startswith(self.exclude):
            await self.app(scope, receive, send)
            return
        await self._measure(scope, receive, send)

    async def _measure(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self._start_background()
            start = self.recorder.started()
            queue = self._queue_time(scope) if self.queue_headers else None
        except Exception:
            self.monitor.log_error("recording a request start failed")
            await self.app(scope, receive, send)
            return
        root_path = scope.get("root_path", "")
        state = _Exchange(send, start, self)
        try:
            await self.app(scope, receive, state.send)
        except BaseException:
            state.failed = True
            raise
        finally:
            self._finish(scope, state, root_path, queue)

    def _finish(self, scope: Scope, state: _Exchange, root_path: str, queue: float | None) -> None:
        end = self.now()
        status = 500 if state.failed and not state.complete else state.status
        disconnected = not state.failed and not state.complete
        if disconnected and not status:
            status = 499  # nginx's "client closed request"
        try:
            route = self._route(scope, root_path, status)
        except Exception:
            self.monitor.log_error("resolving a route template failed")
            route = UNMATCHED_ROUTE
        try:
            if state.failed:
                self.recorder.count("exceptions")
            self.recorder.finished(
                scope["method"], route, status, state.start, end, state.ttfb, queue, disconnected
            )
        except Exception:
            self.monitor.log_error("recording a request failed")

    def _route(self, scope: Scope, root_path: str, status: int) -> str:
        template = self.starlette_routes(scope, root_path)
        if template is None and self.resolver is not None:
            template = self.resolver(scope)
        if template is not None:
            return template
        if status == 404:
            return UNMATCHED_ROUTE
        return normalize_path(scope["path"])

    def _queue_time(self, scope: Scope) -> float | None:
        for name, value in scope["headers"]:
            if name in QUEUE_HEADERS:
                return parse_request_start(value, time.time())
        return None

    def _start_background(self) -> None:
        task = self.monitor.task
        if task is None or task.done():
            try:
                self.monitor.ensure_task()
            except Exception:
                self.monitor.log_error("starting the background task failed")

    async def _serve(self, handler: endpoints.Handler, send: Send) -> None:
        try:
            status, content_type, body = handler(self.monitor)
        except Exception:
            self.monitor.log_error("serving an endpoint failed")
            status, content_type, body = 500, "text/plain", b"scalewise endpoint failed\n"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _Exchange:
    """Per-request state: wraps ``send`` to see status, first body bytes and completion."""

    __slots__ = ("_send", "complete", "failed", "middleware", "start", "status", "ttfb")

    def __init__(self, send: Send, start: float, middleware: ScalewiseMiddleware) -> None:
        self._send = send
        self.start = start
        self.middleware = middleware
        self.status = 0
        self.ttfb: float | None = None
        self.complete = False
        self.failed = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self.ttfb is None and (message.get("body") or not message.get("more_body")):
                self.ttfb = self.middleware.now() - self.start
            if not message.get("more_body", False):
                self.complete = True
        elif kind == "http.response.start":
            self.status = message["status"]
            if self.middleware.timing_headers:
                self._add_timing(message)
        await self._send(message)

    def _add_timing(self, message: Message) -> None:
        try:
            elapsed = self.middleware.now() - self.start
            headers = list(message.get("headers", []))
            options = self.middleware.options
            if options.response_time_header:
                headers.append((b"x-response-time", f"{elapsed:.3f}s".encode()))
            if options.server_timing_header:
                headers.append((b"server-timing", f"app;dur={elapsed * 1000:.1f}".encode()))
            message["headers"] = headers
        except Exception:
            self.middleware.monitor.log_error("adding timing headers failed")
