"""Request timeouts (504) and body-size limits (413) as pure ASGI middleware, plus WSGI.

A request that runs forever holds a worker slot forever; a body larger than the app expects
fills memory before the app can say no. Both checks belong in front of the app:

* :class:`TimeoutMiddleware` cancels the handler after ``timeout`` seconds. If no response
  has started the client gets a 504 with a JSON body; if one has, the response cannot be
  honestly finished, so it is left incomplete (the server then closes the connection and the
  client sees a truncated response rather than a "successful" partial one) and a warning is
  logged, at most once per minute.
* :class:`BodyLimitMiddleware` answers 413 as soon as ``Content-Length`` is too large — before
  the app runs, before a byte of body is read — or, for bodies without a length (chunked),
  the moment the running total passes the limit, while the rest is still on its way. A body
  sent too slowly is the timeout's job, so use both.
* :class:`BodyLimitWSGIMiddleware` does the same for WSGI: a ``Content-Length`` check, and a
  ``wsgi.input`` wrapper that refuses to read past the limit.

Sizes accept ``"10MB"``/``"2MiB"``, durations ``"30s"``/``"500ms"``; zero or negative values
raise :class:`~scalewise.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, Final

from scalewise.errors import ConfigError, ScalewiseError
from scalewise.guard.concurrency import seconds_option
from scalewise.metrics.recorder import SCOPE_KEY, Recorder
from scalewise.types import ASGIApp, Environ, Message, Receive, Scope, Send, StartResponse, WSGIApp
from scalewise.units import SIZE_EXPECTED, parse_size

DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_MAX_BODY: Final = 10 * 10**6  # 10 MB, like the seeds' MAX_UPLOAD_SIZE_MB
_READ_CHUNK: Final = 64 * 1024
_H1: Final = frozenset({"1.0", "1.1"})

logger = logging.getLogger("scalewise.guard")


class BodyTooLarge(ScalewiseError):
    """Raised from ``receive``/``wsgi.input`` when a body passes the limit; the middleware
    turns it into a 413, so apps normally never see it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"request body exceeds {limit} bytes")


class LogThrottle:
    """Log a recurring problem once per ``interval`` with a count, not once per request."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last = -float("inf")
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            self._suppressed += 1
            return
        suffix = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        self._last, self._suppressed = now, 0
        logger.warning(message + suffix, *args)


def json_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


async def send_json(
    send: Send, status: int, payload: dict[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """A complete JSON response in two ASGI messages (a refusal must stay cheap)."""
    body = json_body(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def size_option(owner: str, name: str, value: int | str) -> int:
    """Bytes from ``"10MB"`` or an int; zero and negative sizes are configuration mistakes."""
    try:
        size = parse_size(value)
    except (ValueError, TypeError, AttributeError):
        raise ConfigError(owner, name, SIZE_EXPECTED, value) from None
    if size <= 0:
        raise ConfigError(owner, name, "a size greater than 0", value)
    return size


def body_framing(headers: Iterable[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """``(Content-Length, chunked)``; the length is ``-1`` when present but not a number."""
    length: int | None = None
    chunked = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length" and length is None:
            text = value.strip()
            length = int(text) if text.isdigit() else -1
        elif lowered == b"transfer-encoding":
            chunked = True
    return length, chunked


class _Deadline:
    """One request's deadline; ``done`` once its response is complete or its handler ended."""

    __slots__ = ("at", "cancelling", "done", "fired", "task")

    def __init__(self, at: float, task: asyncio.Task[Any]) -> None:
        self.at = at
        self.task = task
        self.cancelling = task.cancelling()
        self.done = False
        self.fired = False


class _Watchdog:
    """One timer for all of a middleware's requests, instead of one per request.

    Every request gets the same timeout, so deadlines arrive in order: a FIFO holds them and
    only its head needs a timer. That costs a ``deque.append`` per request where
    ``asyncio.timeout`` pushes and cancels a heap entry (about 5 µs here). Memory is bounded
    by requests started within one timeout.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.loop: asyncio.AbstractEventLoop | None = None
        self.entries: deque[_Deadline] = deque()
        self.handle: asyncio.TimerHandle | None = None

    def watch(self) -> _Deadline:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:  # a new event loop (tests): the old timer is gone with it
            self.loop, self.entries, self.handle = loop, deque(), None
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("TimeoutMiddleware must run inside an asyncio task")
        entry = _Deadline(loop.time() + self.timeout, task)
        self.entries.append(entry)
        if self.handle is None:
            self.handle = loop.call_at(entry.at, self._fire)
        return entry

    def finish(self, entry: _Deadline) -> None:
        entry.done = True
        entries = self.entries
        while entries and entries[0].done:
            entries.popleft()

    def _fire(self) -> None:
        loop = self.loop
        self.handle = None
        if loop is None:
            return
        now = loop.time()
        entries = self.entries
        while entries and (entries[0].done or entries[0].at <= now):
            entry = entries.popleft()
            if not entry.done:
                entry.done = entry.fired = True
                entry.task.cancel()
        if entries:
            self.handle = loop.call_at(entries[0].at, self._fire)


def _withdraw_cancel(deadline: _Deadline) -> bool:
    """Take back the watchdog's cancellation; True if the request timed out and nothing
    else asked to cancel its task meanwhile (the rule ``asyncio.timeout`` follows)."""
    return deadline.fired and deadline.task.uncancel() <= deadline.cancelling


class _Responding:
    """Wraps ``send`` to know whether the response started, and to stop the clock at its end."""

    __slots__ = ("deadline", "send", "started")

    def __init__(self, send: Send, deadline: _Deadline) -> None:
        self.send = send
        self.deadline = deadline
        self.started = False

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True  # before awaiting: a timeout mid-send must not start twice
        elif kind == "http.response.body" and not message.get("more_body", False):
            # The response is out; work after it (background tasks) is not the client's wait.
            self.deadline.done = True
        await self.send(message)


class TimeoutMiddleware:
    """Cancel a request's handler after ``timeout``; 504 if no response has started.

    Args:
        app: the ASGI app.
        timeout: seconds or a duration (``"30s"``); measured from when the request reaches
            this middleware, so place it inside the load shedder to exclude queue waits.
        exclude: path prefixes without a timeout (server-sent events, long polls).
        recorder: counts ``guard_request_timeouts`` on a :class:`~scalewise.Recorder`;
            default: the one an outer ``ScalewiseMiddleware`` puts in the scope.

    Example:
        >>> from starlette.applications import Starlette
        >>> app = TimeoutMiddleware(Starlette(), timeout="10s")
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        timeout: float | str = DEFAULT_TIMEOUT,
        exclude: Iterable[str] = (),
        recorder: Recorder | None = None,
    ) -> None:
        self.app = app
        self.timeout = seconds_option("TimeoutMiddleware", "timeout", timeout)
        self.exclude = _prefixes("TimeoutMiddleware", exclude)
        self.recorder = recorder
        self.timed_out = 0
        self._log = LogThrottle()
        self._watchdog = _Watchdog(self.timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exclude and scope["path"].startswith(self.exclude)):
            await self.app(scope, receive, send)
            return
        watchdog = self._watchdog
        deadline = watchdog.watch()
        responding = _Responding(send, deadline)
        try:
            await self.app(scope, receive, responding)
        except asyncio.CancelledError:
            if not _withdraw_cancel(deadline):
                raise  # not ours, or someone else cancelled the request too
        except BaseException:
            _withdraw_cancel(deadline)  # the app turned our cancellation into another error
            raise
        else:
            if not _withdraw_cancel(deadline):
                return  # the usual case: finished in time
        finally:
            watchdog.finish(deadline)
        await self._timed_out(scope, responding, send)

    async def _timed_out(self, scope: Scope, responding: _Responding, send: Send) -> None:
        self.timed_out += 1
        recorder = self.recorder or scope.get(SCOPE_KEY)
        if recorder is not None:
            recorder.count("guard_request_timeouts")
        if not responding.started:
            payload = {"error": "timeout", "detail": "the request took too long"}
            await send_json(send, 504, {**payload, "timeout": self.timeout})
            return
        # Headers are out: ending the body now would pass a partial response off as whole.
        self._log.warning(
            "scalewise: %s %s passed its %ss timeout after the response started; "
            "the connection is closed with the response incomplete",
            scope.get("method", ""),
            scope.get("path", ""),
            self.timeout,
        )


class _BodyGuard:
    """Per-request state of :class:`BodyLimitMiddleware` for bodies without a length."""

    __slots__ = (
        "exceeded",
        "middleware",
        "receive_",
        "refused",
        "remaining",
        "scope",
        "send_",
        "started",
    )

    def __init__(
        self, middleware: BodyLimitMiddleware, receive: Receive, send: Send, scope: Scope
    ) -> None:
        self.middleware = middleware
        self.scope = scope
        self.remaining = middleware.max_body
        self.receive_ = receive
        self.send_ = send
        self.exceeded = False
        self.started = False
        self.refused = False

    async def receive(self) -> Message:
        message = await self.receive_()
        if message["type"] == "http.request":
            self.remaining -= len(message.get("body", b""))
            if self.remaining < 0:
                self.exceeded = True
                raise BodyTooLarge(self.middleware.max_body)
        return message

    async def send(self, message: Message) -> None:
        if self.exceeded:
            # Whatever the app answers after the limit (often a 500 for the exception) is
            # replaced by the 413; after a response that started earlier, nothing more goes.
            if not self.started:
                await self.refuse()
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self.send_(message)

    async def refuse(self) -> None:
        if not self.started:
            self.started = self.refused = True
            await self.middleware.reject(self.send_, self.scope)


class BodyLimitMiddleware:
    """Answer 413 for request bodies over ``max_body``, without reading them first.

    Args:
        app: the ASGI app.
        max_body: bytes or a size (``"10MB"``, ``"512KiB"``).
        exclude: path prefixes without a limit (an upload endpoint with its own).
        recorder: counts ``guard_body_too_large`` on a :class:`~scalewise.Recorder`;
            default: the one an outer ``ScalewiseMiddleware`` puts in the scope.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int | str = DEFAULT_MAX_BODY,
        exclude: Iterable[str] = (),
        recorder: Recorder | None = None,
    ) -> None:
        self.app = app
        self.max_body = size_option("BodyLimitMiddleware", "max_body", max_body)
        self.exclude = _prefixes("BodyLimitMiddleware", exclude)
        self.recorder = recorder
        self.rejected = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exclude and scope["path"].startswith(self.exclude)):
            await self.app(scope, receive, send)
            return
        length, chunked = body_framing(scope["headers"])
        if length is None and not chunked and scope.get("http_version", "1.1") in _H1:
            await self.app(scope, receive, send)  # HTTP/1: no length, no chunks, no body
            return
        if length is not None:
            if length < 0:
                payload = {"error": "bad_request", "detail": "Content-Length is not a number"}
                await send_json(send, 400, payload, [(b"connection", b"close")])
            elif length > self.max_body:
                await self.reject(send, scope)
            else:  # the server's HTTP framing stops the body at its declared length
                await self.app(scope, receive, send)
            return
        guard = _BodyGuard(self, receive, send, scope)
        try:
            await self.app(scope, guard.receive, guard.send)
        except BodyTooLarge:
            if not guard.started:
                await guard.refuse()
            return
        if guard.exceeded:  # the app swallowed the exception
            await guard.refuse()

    async def reject(self, send: Send, scope: Scope | None = None) -> None:
        """413, and close the connection: the rest of the body is not worth reading."""
        self.rejected += 1
        recorder = self.recorder or (scope.get(SCOPE_KEY) if scope is not None else None)
        if recorder is not None:
            recorder.count("guard_body_too_large")
        payload = {
            "error": "body_too_large",
            "detail": f"request body exceeds {self.max_body} bytes",
        }
        await send_json(send, 413, {**payload, "limit": self.max_body}, [(b"connection", b"close")])


class _LimitedInput:
    """A ``wsgi.input`` that raises :class:`BodyTooLarge` instead of reading past the limit."""

    def __init__(self, stream: Any, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.total = 0
        self.exceeded = False

    def _take(self, data: bytes) -> bytes:
        self.total += len(data)
        if self.total > self.limit:
            self.exceeded = True
            raise BodyTooLarge(self.limit)
        return data

    def _cap(self, size: int | None) -> int:
        """Never ask the server for more than one byte past the limit."""
        room = self.limit - self.total + 1
        return room if size is None or size < 0 else min(size, room)

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size >= 0:
            return self._take(self.stream.read(self._cap(size)))
        chunks = []
        while chunk := self._take(self.stream.read(min(_READ_CHUNK, self._cap(None)))):
            chunks.append(chunk)
        return b"".join(chunks)

    def readline(self, size: int | None = -1) -> bytes:
        return self._take(self.stream.readline(self._cap(size)))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class BodyLimitWSGIMiddleware:
    """The WSGI twin of :class:`BodyLimitMiddleware` (Flask, Django under gunicorn…).

    A ``Content-Length`` over the limit is refused before the app runs. A body without one
    (chunked; the server sets ``wsgi.input_terminated``) is read through a wrapper that
    raises :class:`BodyTooLarge` one byte past the limit; the middleware answers 413 whether
    the app lets the exception through or turns it into its own error response.
    """

    def __init__(self, app: WSGIApp, *, max_body: int | str = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body = size_option("BodyLimitWSGIMiddleware", "max_body", max_body)
        self.rejected = 0

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared.strip():
            length = int(declared) if declared.strip().isdigit() else -1
            if length < 0 or length > self.max_body:
                return self._reject(start_response, 400 if length < 0 else 413)
            return self.app(environ, start_response)
        if not environ.get("wsgi.input_terminated"):
            return self.app(environ, start_response)  # no length, no terminator: no body (PEP 3333)
        guard = _LimitedInput(environ["wsgi.input"], self.max_body)
        environ["wsgi.input"] = guard
        try:
            result = self.app(environ, start_response)
        except BodyTooLarge:
            return self._reject(start_response, 413, sys.exc_info())
        if guard.exceeded:
            close = getattr(result, "close", None)
            if close is not None:
                close()
            error = BodyTooLarge(self.max_body)
            return self._reject(start_response, 413, (BodyTooLarge, error, None))
        return result

    def _reject(
        self, start_response: StartResponse, status: int, exc_info: Any = None
    ) -> list[bytes]:
        if status == 413:
            self.rejected += 1
            detail = f"request body exceeds {self.max_body} bytes"
            body = json_body({"error": "body_too_large", "detail": detail, "limit": self.max_body})
            line = "413 Content Too Large"
        else:
            body = json_body({"error": "bad_request", "detail": "Content-Length is not a number"})
            line = "400 Bad Request"
        # No "Connection: close": hop-by-hop headers are the WSGI server's (PEP 3333).
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(line, headers, exc_info)  # exc_info replaces a status the app set
        return [body]


def _prefixes(owner: str, values: Iterable[str]) -> tuple[str, ...]:
    prefixes = (values,) if isinstance(values, str) else tuple(values)
    for index, value in enumerate(prefixes):
        if not isinstance(value, str) or not value.startswith("/"):
            raise ConfigError(owner, f"exclude[{index}]", "a path starting with '/'", value)
    return prefixes
