"""WSGI middleware: the ASGI middleware's twin for Flask, Django and any other WSGI app.

WSGI servers run requests on threads while the recorder is single-threaded, so every recorder
call (and every endpoint, which reads the recorder) holds ``monitor.lock`` for that call only,
never around the app. The response is seen by wrapping ``start_response`` (status, timing
headers, the legacy ``write``) and the returned iterable (first body bytes, then exhaustion or
``close()``, whichever comes first). Nothing here can change the app's response: each step of
its own is guarded, and an exception from the app is recorded as a 500 and re-raised untouched.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any, Unpack

from scalewise.metrics.monitor import Monitor
from scalewise.metrics.recorder import UNMATCHED_ROUTE
from scalewise.middleware import endpoints
from scalewise.middleware._queue import parse_request_start
from scalewise.middleware._setup import build_monitor
from scalewise.middleware.routes import RouteResolver, normalize_path, resolver_for
from scalewise.options import MetricsOptions, MetricsOverrides
from scalewise.types import Environ, StartResponse, WSGIApp

Write = Callable[[bytes], object]


class ScalewiseWSGIMiddleware:
    """Measure a WSGI app (Flask, Django, Falcon, Bottle…) and serve ``/health``, ``/ready``,
    ``/health/scaling`` and ``/metrics``.

    Example:
        >>> from flask import Flask
        >>> app = Flask(__name__)
        >>> app.wsgi_app = ScalewiseWSGIMiddleware(app.wsgi_app)   # Flask, keeps app.run()
        >>> from django.core.wsgi import get_wsgi_application     # doctest: +SKIP
        >>> application = ScalewiseWSGIMiddleware(get_wsgi_application())  # doctest: +SKIP

    Keyword options are the fields of :class:`~scalewise.options.MetricsOptions`; pass
    ``options=`` for a whole object, ``monitor=`` to share one monitor, and
    ``route_resolver=`` when the wrapped callable is neither a Flask/Django app nor a bound
    method of one (e.g. ``route_resolver=werkzeug_resolver(flask_app)`` under another
    middleware).
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        options: MetricsOptions | None = None,
        monitor: Monitor | None = None,
        route_resolver: RouteResolver | None = None,
        **overrides: Unpack[MetricsOverrides],
    ) -> None:
        self.app = app
        monitor = build_monitor("ScalewiseWSGIMiddleware", options, monitor, overrides)
        self.monitor = monitor
        self.lock = monitor.lock
        self.options = monitor.options
        self.recorder = monitor.recorder
        # The recorder's clock, not perf_counter: start and end must come from one clock.
        self.now = monitor.recorder.clock.monotonic
        self.resolver = route_resolver or _resolver_for(app)
        self.routes = endpoints.routes(self.options.paths)
        self.exclude = self.options.exclude
        self.queue_headers = self.options.queue_time_header
        self.timing_headers = self.options.response_time_header or (
            self.options.server_timing_header
        )

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        handler = self.routes.get(path)
        if handler is not None:
            return self._serve(handler, start_response)
        if self.exclude and path.startswith(self.exclude):
            return self.app(environ, start_response)
        return self._measure(environ, start_response)

    def _measure(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start = self._begin()
        if start is None:
            return self.app(environ, start_response)
        exchange = _Exchange(self, environ, start_response, start, self._queue_time(environ))
        try:
            result = self.app(environ, exchange.start_response)
            chunks = iter(result)
        except BaseException:
            exchange.failed = True
            exchange.finish()
            raise
        # A list keeps its len(): servers (wsgiref) use it to set Content-Length.
        body = _SizedBody if isinstance(result, list | tuple) else _Body
        return body(result, chunks, exchange)

    def _begin(self) -> float | None:
        """Start the background thread (again after a fork) and the request, in one lock."""
        with self.lock:
            self._ensure_thread()
            try:
                return self.recorder.started()
            except Exception:
                self.monitor.log_error("recording a request start failed")
                return None

    def _ensure_thread(self) -> None:
        """Called with the lock held; a thread that cannot start must not fail the request."""
        try:
            self.monitor.ensure_thread()
        except Exception:
            self.monitor.log_error("starting the background thread failed")

    def _queue_time(self, environ: Environ) -> float | None:
        # Read at the start: waiting in the router ends when the app gets the request.
        if not self.queue_headers:
            return None
        raw = environ.get("HTTP_X_REQUEST_START") or environ.get("HTTP_X_QUEUE_START")
        if not raw:
            return None
        try:
            return parse_request_start(raw, time.time())
        except Exception:
            self.log_error("reading the queue time failed")
            return None

    def route(self, environ: Environ, status: int, rule: Any = None) -> str:
        """The label: the framework's template, else ``__unmatched__`` (404) or a guess."""
        template = None
        try:
            if rule is not None:
                template = str(rule.rule)
            elif self.resolver is not None:
                template = self.resolver(environ)
        except Exception:
            self.log_error("resolving a route template failed")
        if template is not None:
            return template
        if status == 404:
            return UNMATCHED_ROUTE
        return normalize_path(environ.get("PATH_INFO") or "/")

    def log_error(self, what: str) -> None:
        """``Monitor.log_error`` bumps a recorder counter, so it takes the lock too."""
        with self.lock:
            self.monitor.log_error(what)

    def _serve(self, handler: endpoints.Handler, start_response: StartResponse) -> list[bytes]:
        try:
            with self.lock:
                self._ensure_thread()
                status, content_type, body = handler(self.monitor)
        except Exception:
            self.log_error("serving an endpoint failed")
            status, content_type, body = 500, "text/plain", b"scalewise endpoint failed\n"
        start_response(
            _status_line(status),
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]


class _Exchange:
    """Per-request state: sees status and first body bytes, and records exactly once."""

    __slots__ = (
        "_start_response",
        "_write",
        "complete",
        "disconnected",
        "done",
        "environ",
        "failed",
        "middleware",
        "queue",
        "rule",
        "start",
        "status",
        "ttfb",
    )

    def __init__(
        self,
        middleware: ScalewiseWSGIMiddleware,
        environ: Environ,
        start_response: StartResponse,
        start: float,
        queue: float | None,
    ) -> None:
        self.middleware = middleware
        self.environ = environ
        self._start_response = start_response
        self._write: Write | None = None
        self.start = start
        self.queue = queue
        self.status = 0
        self.rule: Any = None
        self.ttfb: float | None = None
        self.complete = False
        self.failed = False
        self.disconnected = False
        self.done = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Write:
        with contextlib.suppress(TypeError, ValueError):  # the server rejects a bad status
            self.status = int(status[:3])
        try:
            # Flask's request knows its matched rule, but Flask drops it from the environ
            # (``werkzeug.request`` = None) as soon as the app returns: take it now.
            request = self.environ.get("werkzeug.request")
            if request is not None:
                self.rule = getattr(request, "url_rule", None)
        except Exception:
            self.middleware.log_error("reading the Flask url rule failed")
        if self.middleware.timing_headers:
            headers = self._add_timing(headers)
        if exc_info is None:
            self._write = self._start_response(status, headers)
        else:
            self._write = self._start_response(status, headers, exc_info)
        return self.write

    def write(self, data: bytes) -> object:
        """The legacy ``write`` callable: its first bytes are the first byte too."""
        if data and self.ttfb is None:
            self.ttfb = self.middleware.now() - self.start
        assert self._write is not None  # start_response returned this method
        return self._write(data)

    def _add_timing(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        try:
            elapsed = self.middleware.now() - self.start
            options = self.middleware.options
            extra = []
            if options.response_time_header:
                extra.append(("X-Response-Time", f"{elapsed:.3f}s"))
            if options.server_timing_header:
                extra.append(("Server-Timing", f"app;dur={elapsed * 1000:.1f}"))
            return [*headers, *extra]
        except Exception:
            self.middleware.log_error("adding timing headers failed")
            return headers

    def finish(self) -> None:
        """Record the request once: at exhaustion, failure or ``close()``, whichever first."""
        if self.done:
            return
        self.done = True
        middleware = self.middleware
        try:
            end = middleware.now()
            ttfb = self.ttfb
            if ttfb is None and self.complete:
                ttfb = end - self.start  # an empty body: its first byte is its end
            status = 500 if self.failed and not self.complete else self.status
            disconnected = self.disconnected or (not self.failed and not self.complete)
            if disconnected and not status:
                status = 499  # nginx's "client closed request"
            route = middleware.route(self.environ, status, self.rule)
            method = self.environ.get("REQUEST_METHOD") or "GET"
            recorder = middleware.recorder
            with middleware.lock:
                if self.failed:
                    recorder.count("exceptions")
                recorder.finished(
                    method, route, status, self.start, end, ttfb, self.queue, disconnected
                )
        except Exception:
            middleware.log_error("recording a request failed")


class _Body:
    """The app's iterable, measured: forwards chunks and ``close()`` (PEP 3333), and records
    at exhaustion too, for servers that never call ``close()``.

    A ``wsgi.file_wrapper`` is iterated like any iterable, so the server cannot ``sendfile``
    it; the response is the same, only sent by the server's generic path.
    """

    __slots__ = ("_chunks", "_exchange", "_result")

    def __init__(
        self, result: Iterable[bytes], chunks: Iterator[bytes], exchange: _Exchange
    ) -> None:
        self._result = result
        self._chunks = chunks
        self._exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        exchange = self._exchange
        try:
            chunk = next(self._chunks)
        except StopIteration:
            exchange.complete = True
            exchange.finish()
            raise
        except (OSError, GeneratorExit):
            exchange.disconnected = True  # the client went away mid-body
            exchange.finish()
            raise
        except BaseException:
            exchange.failed = True
            exchange.finish()
            raise
        if chunk and exchange.ttfb is None:
            exchange.ttfb = exchange.middleware.now() - exchange.start
        return chunk

    def close(self) -> None:
        exchange = self._exchange
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        except BaseException:
            exchange.failed = True  # ignored if the request was already recorded
            raise
        finally:
            exchange.finish()  # before exhaustion: the client disconnected


class _SizedBody(_Body):
    """A measured list or tuple, which keeps ``len()``."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]


def _resolver_for(app: Any) -> RouteResolver | None:
    """``app.wsgi_app = ScalewiseWSGIMiddleware(app.wsgi_app)`` hands over a bound method:
    when the callable itself is not a known app, ask the object it is bound to."""
    resolver = resolver_for(app)
    owner = getattr(app, "__self__", None)
    if resolver is None and owner is not None:
        resolver = resolver_for(owner)
    return resolver


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"
