"""Internals of the load-test HTTP client: request heads, one connection, pools, the timeout sweep.

Why it is built this way: a load generator must spend little CPU per request, or it measures
itself instead of the target. So a request's bytes are built once (``build_head``), a
connection is an ``asyncio.Protocol`` fed straight into the C parser of httptools, the parser
calls back into Python only once per response unless headers or the body are wanted, and
timeouts are checked by one periodic sweep over the open connections instead of one timer or
``wait_for`` per request.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
from collections.abc import Iterable
from time import perf_counter
from typing import Any
from urllib.parse import quote, urlsplit

from httptools import HttpParserCallbackError, HttpParserError, HttpResponseParser

from scalewise.errors import LoadTestError

INF = float("inf")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_OWN_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
_BODYLESS_LENGTH = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_FRAMING = (b"\ncontent-length:", b"\ntransfer-encoding:")
_UNREACHABLE = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})


# -- request heads ---------------------------------------------------------------------------


def parse_url(url: str) -> tuple[str, str, int, str]:
    """``url`` → (scheme, host, port, request target); a clear LoadTestError when unusable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise LoadTestError(f"invalid URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise LoadTestError(f"invalid URL {url!r}: expected an http:// or https:// URL")
    host = parts.hostname
    if not host:
        raise LoadTestError(f"invalid URL {url!r}: no host")
    if parts.username is not None or parts.password is not None:
        raise LoadTestError(
            f"invalid URL {url!r}: credentials in URLs are not sent; use an Authorization header"
        )
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise LoadTestError(f"invalid URL {url!r}: host is not a valid name") from None
    path = quote(parts.path or "/", safe="/:@!$&'()*+,;=%-._~")
    if parts.query:
        path += "?" + quote(parts.query, safe="/?:@!$&'()*+,;=%-._~")
    return scheme, host, port or (443 if scheme == "https" else 80), path


def _header_lines(
    headers: Iterable[tuple[str, str]], defaults: dict[str, str], body_len: int
) -> list[str]:
    """Validated ``Name: value`` lines; user values replace the defaults of the same name."""
    lines: dict[str, str] = {k.lower(): f"{k}: {v}" for k, v in defaults.items()}
    extra: list[str] = []
    for name, value in headers:
        if not _TOKEN.match(name):
            raise LoadTestError(f"invalid header name {name!r}")
        if _BAD_VALUE.search(value):
            raise LoadTestError(f"header {name!r} has a line break or NUL in its value")
        low = name.lower()
        if low == "content-length" and value.strip() != str(body_len):
            raise LoadTestError(
                f"Content-Length {value!r} does not match the body ({body_len} bytes); "
                "leave it out and the client sets it"
            )
        if low in _OWN_HEADERS:
            if low == "transfer-encoding":
                raise LoadTestError("Transfer-Encoding is not supported; bodies are sent whole")
            continue
        if low in lines:
            lines[low] = f"{name}: {value}"
        else:
            extra.append(f"{name}: {value}")
    return [*lines.values(), *extra]


def build_head(
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    user_agent: str,
) -> tuple[str, str, int, bytes]:
    """(scheme, host, port, bytes to write): the request head plus body, built once."""
    if not _TOKEN.match(method):
        raise LoadTestError(f"invalid HTTP method {method!r}")
    scheme, host, port, target = parse_url(url)
    default_port = 443 if scheme == "https" else 80
    host_header = f"[{host}]" if ":" in host else host
    if port != default_port:
        host_header += f":{port}"
    defaults = {"Host": host_header, "User-Agent": user_agent}
    lines = _header_lines(headers, defaults, len(body))
    if body or method.upper() not in _BODYLESS_LENGTH:
        lines.append(f"Content-Length: {len(body)}")
    text = f"{method} {target} HTTP/1.1\r\n" + "".join(line + "\r\n" for line in lines) + "\r\n"
    try:
        head = text.encode("latin-1")
    except UnicodeEncodeError:
        raise LoadTestError("header values must be Latin-1 text") from None
    return scheme, host, port, head + body


# -- errors ----------------------------------------------------------------------------------


def error_kind(exc: BaseException | None) -> str:
    """Map a connection's exception to one of ERROR_KINDS (None means a clean close)."""
    if exc is None:
        return "closed"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
        return "refused"
    return "other"


# -- one connection --------------------------------------------------------------------------


class _HeadersDone(Exception):
    """Raised from the parser callback to end a HEAD response at its headers."""


class _Sink:
    """Parser callbacks used only when headers/body are wanted or the request is HEAD."""

    __slots__ = ("body", "conn", "done", "headers", "kept", "limit")

    def __init__(self, conn: Connection, limit: int) -> None:
        self.conn = conn
        self.limit = limit
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.kept = 0
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.done = True
        if self.conn.is_head:
            raise _HeadersDone

    def on_body(self, chunk: bytes) -> None:
        room = self.limit - self.kept
        if room > 0:
            if len(chunk) > room:
                chunk = chunk[:room]
            self.body.append(chunk)
            self.kept += len(chunk)

    def on_message_complete(self) -> None:
        self.conn.on_message_complete()


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    __slots__ = (
        "body_limit",
        "deadline",
        "ended",
        "error",
        "first",
        "first_byte",
        "head_seen",
        "is_head",
        "keep",
        "lean",
        "live",
        "parser",
        "pool",
        "received",
        "sink",
        "status",
        "transport",
        "waiter",
    )

    def __init__(self, pool: Pool, live: set[Connection], body_limit: int) -> None:
        self.pool = pool
        self.live = live
        self.body_limit = body_limit
        self.transport: Any = None
        # The lean parser has only on_message_complete: llhttp then never calls into Python
        # for headers or body, which is most of the saving on the hot path.
        self.lean = HttpResponseParser(self)
        self.parser = self.lean
        self.sink: _Sink | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.deadline = INF
        self.is_head = False
        self.keep = False
        self.reset_state()

    def reset_state(self) -> None:
        self.status = 0
        self.error: str | None = None
        self.first_byte = 0.0
        self.ended = 0.0
        self.received = 0
        self.first = b""
        self.head_seen = False

    # asyncio callbacks
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.live.add(self)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self.drop()
            return
        if self.first_byte == 0.0:
            self.first_byte = perf_counter()
            self.first = data
        elif not self.head_seen:  # keep the head for close_delimited(); rarely split
            if b"\r\n\r\n" in self.first or len(self.first) > 65536:
                self.head_seen = True
            else:
                self.first += data
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadersDone):
                self.finish_head()
            else:
                self.fail("protocol")
        except HttpParserError:
            self.fail("protocol")

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        self.keep = False  # a sender that has not resumed yet must not pool a dead connection
        idle = self.pool.idle
        if self in idle:
            idle.remove(self)
        if self.waiter is not None:
            if exc is None and self.close_delimited():
                self.complete(self.parser.get_status_code(), keep=False)
            else:
                self.fail(error_kind(exc))

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 1xx interim response: the real one follows
            if status == 101:
                self.fail("protocol")
            return
        self.complete(status, self.parser.should_keep_alive())

    # request lifecycle
    def begin(
        self, data: bytes, waiter: asyncio.Future[None], deadline: float, want: bool, head: bool
    ) -> None:
        """Start one request: pick the parser, write the prepared bytes."""
        self.reset_state()
        self.waiter = waiter
        self.deadline = deadline
        self.is_head = head
        if want or head:
            self.sink = _Sink(self, self.body_limit)
            self.parser = HttpResponseParser(self.sink)
        else:
            self.sink = None
            self.parser = self.lean
        try:
            self.transport.write(data)
        except Exception:  # a transport closed under us: a result, never an exception
            self.fail("closed")

    def complete(self, status: int, keep: bool) -> None:
        self.ended = perf_counter()
        self.status = status
        self.keep = keep
        self.deadline = INF
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def finish_head(self) -> None:
        """End a HEAD response at its headers; the parser is spent, so the next gets a new one."""
        keep = self.parser.should_keep_alive()
        self.complete(self.parser.get_status_code(), keep)

    def fail(self, kind: str) -> None:
        """Record the failure, drop the connection, wake the sender."""
        if self.waiter is None:  # e.g. garbage after a complete response: just don't reuse
            self.keep = False
            return
        self.error = kind
        self.complete(0, keep=False)
        self.abort()

    def abort(self) -> None:
        self.keep = False
        if self.transport is not None:
            self.transport.abort()

    def drop(self) -> None:
        """Close an idle connection now, out of the pool first so no sender can take it."""
        self.keep = False
        idle = self.pool.idle
        if self in idle:
            idle.remove(self)
        self.transport.close()

    def close_delimited(self) -> bool:
        """A response without Content-Length or chunking ends at EOF (RFC 9112 §6.3)."""
        if self.sink is not None:
            names = {name.lower() for name, _ in self.sink.headers}
            framed = b"content-length" in names or b"transfer-encoding" in names
            return self.sink.done and not framed and self.parser.get_status_code() >= 200
        end = self.first.find(b"\r\n\r\n")
        if end < 0 or self.parser.get_status_code() < 200:
            return False  # headers incomplete (or spread over several reads): not a response
        head = self.first[:end].lower()
        return not any(marker in head for marker in _FRAMING)


# -- pools and the timeout sweep -------------------------------------------------------------


class Pool:
    """Idle keep-alive connections of one origin (scheme, host, port), newest last."""

    __slots__ = ("addresses", "host", "idle", "port", "scheme")

    def __init__(self, scheme: str, host: str, port: int) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.addresses: list[str] | None = None  # resolved once: a load test hits one host
        self.idle: list[Connection] = []


class Sweeper:
    """One periodic timer fails every request past its deadline (no timer per request)."""

    def __init__(self, live: set[Connection], period: float) -> None:
        self.live = live
        self.period = period
        self.handle: asyncio.TimerHandle | None = None

    def ensure(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.handle is None:
            self.handle = loop.call_later(self.period, self.sweep, loop)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self.handle = None
        now = perf_counter()
        for conn in [c for c in self.live if c.deadline <= now]:
            conn.fail("timeout")
        if self.live:
            self.ensure(loop)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
