"""Pure ASGI middleware: measures every HTTP request and serves scalewise's endpoints.

It wraps ``send`` (as Starlette's GZip middleware does) to see the status, the first body
bytes and the last, and reads the route template from the scope after the app ran. Nothing it
does can change the app's response: every step of its own is guarded, and an exception from
the app is recorded as a 500 and re-raised untouched.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable
from typing import Unpack

from scalewise.metrics.monitor import Monitor
from scalewise.metrics.recorder import SCOPE_KEY, UNMATCHED_ROUTE
from scalewise.middleware import endpoints
from scalewise.middleware._queue import HEADERS as QUEUE_HEADERS
from scalewise.middleware._queue import (
    QUEUE_MISSES_BEFORE_PROBING,
    QUEUE_PROBE_EVERY,
    parse_request_start,
)
from scalewise.middleware._setup import build_monitor
from scalewise.middleware.routes import (
    RouteResolver,
    StarletteRoutes,
    normalize_path,
    resolver_for,
)
from scalewise.options import MetricsOptions, MetricsOverrides
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
        **overrides: Unpack[MetricsOverrides],
    ) -> None:
        self.app = app
        self.monitor = monitor = build_monitor("ScalewiseMiddleware", options, monitor, overrides)
        self.options = monitor.options
        self.recorder = monitor.recorder
        self.resolver = route_resolver or resolver_for(app)
        self.starlette_routes = StarletteRoutes()
        self.templates = self.starlette_routes.plain  # id(route) -> (route, template)
        self.now = self.recorder.clock.monotonic
        self.routes = endpoints.routes(self.options.paths)
        self.exclude = self.options.exclude
        self.queue_headers = self.options.queue_time_header
        self.queue_wait = 0  # requests until the next header scan (0: scan this one)
        self.queue_misses = 0  # scans in a row that found no queue header
        self.timing_headers = self.options.response_time_header or (
            self.options.server_timing_header
        )

    async def __call__(  # noqa: PLR0915 - the hot path, kept in one frame on purpose
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        # Every request runs these lines, so they avoid calls and attribute chains: each
        # Python-level call costs hundreds of instructions (benchmarks/instructions.py).
        if scope["type"] != "http":
            await self._other(scope, receive, send)
            return
        path = scope["path"]
        if path in self.routes:
            await self._serve(self.routes[path], send)
            return
        recorder = scope[SCOPE_KEY] = self.recorder  # inner guards count into it (guard/setup.py)
        if self.exclude and path.startswith(self.exclude):
            await self.app(scope, receive, send)
            return
        if self.monitor.task is None:  # cleared when the task ends (Monitor._task_ended)
            self._start_background()
        try:
            start = recorder.started()
            queue = None
            if self.queue_headers:
                # The scan costs ~700 instructions a header, so an app that gets no
                # X-Request-Start scans one request in QUEUE_PROBE_EVERY (_queue.py).
                wait = self.queue_wait = self.queue_wait - 1
                if wait <= 0:
                    queue = self._queue_time(scope["headers"])
        except Exception:
            self.monitor.log_error("recording a request start failed")
            await self.app(scope, receive, send)
            return
        root_path = scope.get("root_path", "")
        now = self.now
        timing = self.timing_headers
        status = 0
        ttfb: float | None = None
        complete = False

        # A plain function returning the inner send's awaitable: no coroutine of its own.
        def send_wrapper(message: Message) -> Awaitable[None]:
            nonlocal status, ttfb, complete
            kind = message["type"]
            if kind == "http.response.body":
                if "more_body" not in message or not message["more_body"]:
                    complete = True  # sent in one piece: TTFB is the latency (None)
                elif ttfb is None and message.get("body"):
                    ttfb = now() - start
            elif kind == "http.response.start":
                status = message["status"]
                if timing:
                    self._add_timing(message, now() - start)
            return send(message)

        failed = False
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            failed = True
            raise
        finally:
            end = now()
            if complete:
                disconnected = False
            elif failed:
                status, disconnected = 500, False
            else:
                disconnected = True
                if not status:
                    status = 499  # nginx's "client closed request"
            # A Starlette route seen before, outside any mount: one dict lookup. The cache
            # holds the route itself, so a hit on its id() is this very route.
            hit = self.templates.get(id(scope.get("route")))
            if hit is None or scope.get("root_path", "") is not root_path:
                hit = (None, self._route(scope, root_path, status))
            try:
                if failed:
                    recorder.count("exceptions")
                recorder.finished(
                    scope["method"], hit[1], status, start, end, ttfb, queue, disconnected
                )
            except Exception:
                self.monitor.log_error("recording a request failed")

    def _queue_time(self, headers: Iterable[tuple[bytes, bytes]]) -> float | None:
        """Queue time from this request's router header; sets when to look again."""
        for name, value in headers:
            if name in QUEUE_HEADERS:  # a frozenset: one hash probe per header
                self.queue_misses = 0
                return parse_request_start(value, time.time())
        self.queue_misses += 1
        if self.queue_misses >= QUEUE_MISSES_BEFORE_PROBING:
            self.queue_wait = QUEUE_PROBE_EVERY
        return None

    def _route(self, scope: Scope, root_path: str, status: int) -> str:
        """The route template, when the fast lookup in ``__call__`` missed."""
        try:
            template = self.starlette_routes(scope, root_path)
            if template is None and self.resolver is not None:
                template = self.resolver(scope)
            if template is not None:
                return template
            if status == 404:
                return UNMATCHED_ROUTE
            return normalize_path(scope["path"])
        except Exception:
            self.monitor.log_error("resolving a route template failed")
            return UNMATCHED_ROUTE

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Lifespan, websocket and other scopes pass through (lifespan starts the ticker)."""
        if scope["type"] == "lifespan":
            self._start_background()
        await self.app(scope, receive, send)

    def _start_background(self) -> None:
        task = self.monitor.task
        if task is None or task.done():
            try:
                self.monitor.ensure_task()
            except Exception:
                self.monitor.log_error("starting the background task failed")

    def _add_timing(self, message: Message, elapsed: float) -> None:
        try:
            headers = list(message.get("headers", []))
            if self.options.response_time_header:
                headers.append((b"x-response-time", f"{elapsed:.3f}s".encode()))
            if self.options.server_timing_header:
                headers.append((b"server-timing", f"app;dur={elapsed * 1000:.1f}".encode()))
            message["headers"] = headers
        except Exception:
            self.monitor.log_error("adding timing headers failed")

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
