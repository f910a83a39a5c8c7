"""The load tester's HTTP/1.1 client: prepared requests, keep-alive pools, errors as values.

Why not httpx or aiohttp: a load generator that spends 50–90 µs of CPU per request saturates
its own core long before a fast target does (see ``benchmarks/loadgen.py``). This client keeps
the per-request work to a write of pre-built bytes, one C parser pass and one future, so one
process can drive several times more traffic than Locust's FastHttpUser.

Example::

    client = HttpClient(timeout=5.0)
    ok = client.prepare(Request("GET", "http://127.0.0.1:8000/ok"))
    response = await client.send(ok)          # never raises for network or HTTP problems
    if response.error is None and response.status == 200:
        latency = response.ended - response.started
    await client.aclose()

Semantics worth knowing:

* ``send`` takes an idle keep-alive connection of the request's origin or opens a new one, so
  the number of connections equals the number of concurrent sends (idle ones above
  ``max_idle_per_origin`` are closed).
* A reused connection that the server closed before answering (nothing received) is retried
  once on a fresh connection; anything else is reported, not retried.
* ``connect_timeout`` bounds resolving and connecting (TLS handshake included); ``timeout``
  bounds the rest, from writing the request to the end of the response. Timeouts are checked
  by a sweep every ``timeout / 20`` seconds (5 ms–250 ms), so one is reported up to a sweep
  period late; the timed-out connection is dropped.
* With ``want_body=True`` the body is kept up to ``max_body_bytes`` (10 MiB by default); the
  rest is read and counted in ``received`` but not kept. Without it nothing is kept.
* ``status`` is 0 whenever ``error`` is set, even if a status line had arrived.
* A host name is resolved once per origin and its addresses reused (tried in order).
* It runs on any asyncio loop; run it under ``uvloop.run`` for the figures above (the client
  does not install a loop policy: that is the caller's choice, made once per process).
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Final, Protocol, TypeAlias

from scalewise.errors import ConfigError
from scalewise.loadtest._http import Connection, Pool, Sweeper, build_head, error_kind

__all__ = [
    "ERROR_KINDS",
    "HttpClient",
    "MockTransport",
    "Prepared",
    "Request",
    "Response",
    "Transport",
]

ERROR_KINDS: Final = ("timeout", "refused", "reset", "tls", "dns", "protocol", "closed", "other")
DEFAULT_MAX_BODY: Final = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    """What a scenario describes; turned into bytes once by ``prepare``."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    name: str | None = None


@dataclass(slots=True)
class Response:
    """The outcome of one send; times are ``time.perf_counter()`` values."""

    status: int
    error: str | None
    started: float
    connected: float
    first_byte: float
    ended: float
    received: int
    sent: int
    body: bytes | None = None
    headers: list[tuple[bytes, bytes]] | None = None


class Prepared:
    """A request turned into the exact bytes to write, reusable for any number of sends."""

    __slots__ = ("data", "host", "is_head", "owner", "pool", "port", "request", "scheme", "sent")

    def __init__(self, request: Request, user_agent: str, owner: object = None) -> None:
        scheme, host, port, data = build_head(
            request.method, request.url, request.headers, request.body, user_agent
        )
        self.request = request
        self.scheme = scheme
        self.host = host
        self.port = port
        self.data = data
        self.sent = len(data)
        self.is_head = request.method.upper() == "HEAD"
        self.owner = owner
        self.pool: Pool | None = None

    def __repr__(self) -> str:
        return f"Prepared({self.request.method} {self.request.url}, {self.sent} bytes)"


class Transport(Protocol):
    """The seam the runner sends through: ``HttpClient`` for real, ``MockTransport`` in tests."""

    def prepare(self, request: Request) -> Prepared: ...

    async def send(self, prepared: Prepared, *, want_body: bool = False) -> Response: ...

    async def aclose(self) -> None: ...


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ConfigError("HttpClient", name, "a positive number", value)
    return value


class HttpClient:
    """Keep-alive HTTP/1.1 client over asyncio protocols, httptools and (if used) uvloop."""

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_idle_per_origin: int = 1024,
        insecure_tls: bool = False,
        user_agent: str = "scalewise-loadtest/0.1",
        max_body_bytes: int = DEFAULT_MAX_BODY,
    ) -> None:
        self._timeout = _positive("timeout", timeout)
        self._connect_timeout = _positive("connect_timeout", connect_timeout)
        self._max_idle = int(_positive("max_idle_per_origin", max_idle_per_origin))
        self._max_body = int(_positive("max_body_bytes", max_body_bytes))
        self._insecure = insecure_tls
        self._user_agent = user_agent
        self._ssl: ssl.SSLContext | None = None
        self._pools: dict[tuple[str, str, int], Pool] = {}
        self._live: set[Connection] = set()
        self._sweeper = Sweeper(self._live, min(0.25, max(0.005, timeout / 20)))
        self._closed = False

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def prepare(self, request: Request) -> Prepared:
        """Validate the URL and headers and build the request bytes (LoadTestError if bad)."""
        prepared = Prepared(request, self._user_agent, self)
        key = (prepared.scheme, prepared.host, prepared.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool(*key)
        prepared.pool = pool
        return prepared

    async def send(self, prepared: Prepared, *, want_body: bool = False) -> Response:
        """Send one prepared request; network and HTTP problems come back in ``error``."""
        started = perf_counter()
        pool = prepared.pool if prepared.owner is self else self.prepare(prepared.request).pool
        if self._closed or pool is None:
            return Response(0, "closed", started, started, 0.0, started, 0, 0)
        loop = asyncio.get_running_loop()
        idle = pool.idle
        may_retry = True
        while True:
            if idle:
                conn = idle.pop()
                connected = perf_counter() if not may_retry else started
                reused = True
            else:
                opened = await self._connect(pool, loop)
                connected = perf_counter()
                if isinstance(opened, str):
                    return Response(0, opened, started, connected, 0.0, connected, 0, 0)
                conn = opened
                reused = False
            waiter = loop.create_future()
            conn.begin(
                prepared.data, waiter, connected + self._timeout, want_body, prepared.is_head
            )
            try:
                await waiter
            except asyncio.CancelledError:
                conn.abort()
                raise
            error = conn.error
            if error is None or not (reused and may_retry and conn.received == 0):
                break
            if error not in {"closed", "reset"}:
                break
            may_retry = False  # the server closed an idle connection just as we reused it
        return self._finish(conn, prepared, want_body, started, connected, idle)

    def _finish(
        self,
        conn: Connection,
        prepared: Prepared,
        want_body: bool,
        started: float,
        connected: float,
        idle: list[Connection],
    ) -> Response:
        """Build the Response, then hand the connection back (or close it)."""
        error = conn.error
        response = Response(
            0 if error else conn.status,
            error,
            started,
            connected,
            conn.first_byte,
            conn.ended,
            conn.received,
            prepared.sent,
        )
        if want_body and conn.sink is not None:
            response.body = b"".join(conn.sink.body)
            response.headers = conn.sink.headers
        if error is None:
            if conn.keep and len(idle) < self._max_idle and not self._closed:
                idle.append(conn)
            else:
                conn.transport.close()
        return response

    async def _connect(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> Connection | str:
        """A new connection to the pool's origin, or the error kind that prevented it."""
        tls = self._tls_context() if pool.scheme == "https" else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                addresses = pool.addresses or await _resolve(pool, loop)
                for index, address in enumerate(addresses):
                    try:
                        _, conn = await loop.create_connection(
                            lambda: Connection(pool, self._live, self._max_body),
                            address,
                            pool.port,
                            ssl=tls,
                            server_hostname=pool.host if tls else None,
                        )
                    except OSError:
                        if index == len(addresses) - 1:
                            raise
                        continue
                    if index:  # remember the address that answered
                        addresses.insert(0, addresses.pop(index))
                    break
        except Exception as exc:  # every failure to connect is a result, not a crash
            return error_kind(exc)
        self._sweeper.ensure(loop)
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            context = ssl.create_default_context()
            if self._insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["http/1.1"])
            self._ssl = context
        return self._ssl

    async def aclose(self) -> None:
        """Close every connection; sends in flight end with error "closed"."""
        self._closed = True
        self._sweeper.stop()
        for conn in list(self._live):
            if conn.waiter is not None:
                conn.fail("closed")
            elif conn.transport is not None:
                conn.transport.close()
        for pool in self._pools.values():
            pool.idle.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks


async def _resolve(pool: Pool, loop: asyncio.AbstractEventLoop) -> list[str]:
    """Resolve the host once per pool: a load test should not measure its resolver."""
    try:
        ipaddress.ip_address(pool.host)
        addresses = [pool.host]
    except ValueError:
        infos = await loop.getaddrinfo(pool.host, pool.port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    pool.addresses = addresses
    return addresses


Handler: TypeAlias = Callable[
    [Request], "tuple[int, bytes] | Response | Awaitable[tuple[int, bytes] | Response]"
]


class MockTransport:
    """A Transport without sockets: ``handler(request)`` answers ``(status, body)`` or a Response.

    The handler may be sync or async and receives the :class:`Request`. Prepared requests are
    validated exactly as ``HttpClient`` validates them, so a bad URL fails the same way.
    """

    def __init__(self, handler: Handler, *, user_agent: str = "scalewise-loadtest/0.1") -> None:
        self._handler = handler
        self._user_agent = user_agent

    def prepare(self, request: Request) -> Prepared:
        return Prepared(request, self._user_agent)

    async def send(self, prepared: Prepared, *, want_body: bool = False) -> Response:
        started = perf_counter()
        result = self._handler(prepared.request)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Response):
            return result
        status, body = result
        ended = perf_counter()
        return Response(
            status,
            None,
            started,
            started,
            ended,
            ended,
            len(body),
            prepared.sent,
            body if want_body else None,
            [] if want_body else None,
        )

    async def aclose(self) -> None:
        return None
