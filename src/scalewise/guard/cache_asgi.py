"""Opt-in response cache for GET/HEAD routes, with identical in-flight requests coalesced.

Only routes you list are cached, each for its TTL. The key is method + path + sorted query +
the values of ``vary_headers`` + the caller's identity (``vary(scope)``; by default
:class:`~scalewise.guard.identity.IdentityResolver`'s key, plus a digest of ``Authorization``
and ``Cookie`` when the caller is known only by address, so two users behind one NAT never
share a private page). Stored are only responses that are safe to replay:

- status 200, body complete and at most ``max_entry_bytes`` (a larger streamed body passes
  through to the client untouched, and is simply not kept);
- no ``Set-Cookie``; no ``Cache-Control: no-store``, ``private`` or ``no-cache``;
- a ``Vary`` naming only headers in ``vary_headers`` (``Vary: *`` is never stored).

The response streams to the leader's client as the app sends it; the cache keeps a copy.
Requests arriving while it is in flight wait for it, like nginx's ``proxy_cache_lock``: they
get the stored response (``X-Cache: COALESCED``), or, when it turned out not storable or the
wait exceeded ``timeout``, go to the app themselves. Every answer carries ``X-Cache``:
``HIT`` (with ``Age``), ``MISS`` or ``COALESCED``. Request ``Cache-Control`` is ignored, as
shared caches commonly do, so a client cannot force the app to do the work.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode

from scalewise.clock import Clock
from scalewise.errors import ConfigError
from scalewise.guard.cache import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    CacheStats,
    CountSink,
    State,
    TTLCache,
    _duration,
    _size,
)
from scalewise.metrics.recorder import SCOPE_KEY
from scalewise.types import ASGIApp, Message, Receive, Scope, Send

_SOURCE: Final = "ResponseCacheMiddleware"
_UNSTORABLE: Final = frozenset({"no-store", "private", "no-cache"})
_HEADERS_OVERHEAD: Final = 32
Vary = Callable[[Scope], "str | None"]


@dataclass(frozen=True, slots=True)
class CachedResponse:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


class ResponseCacheMiddleware:
    """Cache GET/HEAD responses of the listed routes; coalesce identical in-flight requests.

    Counts (``<metric_prefix>_hits``, ``_misses``, ``_coalesced``, …) go to ``recorder``, or,
    without one, to the recorder an outer ``ScalewiseMiddleware`` puts in the scope.

    Example:
        >>> from starlette.applications import Starlette
        >>> app = ResponseCacheMiddleware(Starlette(), routes={"/items/{id}": "30s", "/feed": "5s"})
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Mapping[str, str | float] | Sequence[str],
        ttl: str | float = "30s",
        vary: Vary | None = None,
        vary_headers: Sequence[str] = (),
        methods: Sequence[str] = ("GET", "HEAD"),
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: str | int = DEFAULT_MAX_BYTES,
        max_entry_bytes: str | int = "1MB",
        timeout: str | float = "10s",
        header: str = "x-cache",
        recorder: CountSink | None = None,
        clock: Clock | None = None,
        metric_prefix: str = "response_cache",
    ) -> None:
        self.app = app
        default_ttl = _duration(_SOURCE, "ttl", ttl, positive=True)
        self._routes = _compile_routes(routes, default_ttl)
        self.vary: Vary = vary or identity_vary()
        self.vary_headers = tuple(sorted({h.lower().encode("latin-1") for h in vary_headers}))
        bad = [m for m in methods if m.upper() not in ("GET", "HEAD")]
        if bad:
            raise ConfigError(_SOURCE, "methods", "only GET and HEAD (safe methods)", bad)
        self.methods = frozenset(m.upper() for m in methods)
        self.max_entry_bytes = _size(_SOURCE, "max_entry_bytes", max_entry_bytes)
        self.timeout = _duration(_SOURCE, "timeout", timeout, positive=True)
        self.header = header.lower().encode("latin-1")
        # Without a recorder the cache counts into the scope's, bound per cached request.
        self._scope_sink = _ScopeSink() if recorder is None else None
        self.cache: TTLCache[CachedResponse] = TTLCache(
            ttl=default_ttl,
            max_entries=max_entries,
            max_bytes=max_bytes,
            clock=clock,
            recorder=recorder or self._scope_sink,
            metric_prefix=metric_prefix,
            source=_SOURCE,
        )
        self._inflight: dict[str, asyncio.Future[CachedResponse | None]] = {}

    def stats(self) -> CacheStats:
        return self.cache.stats()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ttl = self._ttl_for(scope)
        who = None if ttl is None else self.vary(scope)
        if ttl is None or who is None:
            await self.app(scope, receive, send)
            return
        sink = self._scope_sink
        if sink is not None:
            sink.bind(scope)
        key = self._key(scope, who)
        found = self.cache.lookup(key)
        if found.state is State.FRESH and found.value is not None:
            await self._replay(send, found.value, b"HIT", found.age)
            return
        flight = self._inflight.get(key)
        if flight is None:
            await self._lead(scope, receive, send, key, ttl)
            return
        self.cache.record_coalesced()
        try:
            async with asyncio.timeout(self.timeout):
                shared = await asyncio.shield(flight)
        except TimeoutError:
            shared = None
        if shared is not None:
            await self._replay(send, shared, b"COALESCED", None)
        else:
            await self.app(scope, receive, _tagging(send, self.header))

    def _ttl_for(self, scope: Scope) -> float | None:
        if scope["type"] != "http" or scope.get("method") not in self.methods:
            return None
        path = scope.get("root_path", "") + scope["path"]
        for pattern, ttl in self._routes:
            if pattern.fullmatch(path):
                return ttl
        return None

    def _key(self, scope: Scope, who: str) -> str:
        query = scope.get("query_string", b"").decode("latin-1")
        pairs = sorted(parse_qsl(query, keep_blank_values=True))
        parts = [scope["method"], scope.get("root_path", "") + scope["path"], urlencode(pairs)]
        if self.vary_headers:
            headers = dict(scope.get("headers") or ())
            parts += [headers.get(h, b"").decode("latin-1") for h in self.vary_headers]
        parts.append(who)
        return "\n".join(parts)

    async def _lead(self, scope: Scope, receive: Receive, send: Send, key: str, ttl: float) -> None:
        flight: asyncio.Future[CachedResponse | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = flight
        copy = _Copy(self)
        stored: CachedResponse | None = None
        try:
            await self.app(scope, receive, copy.wrap(send))
            stored = copy.result()
            if stored is not None:
                size = len(stored.body) + sum(len(a) + len(b) for a, b in stored.headers)
                self.cache.set(key, stored, ttl=ttl, size=size + _HEADERS_OVERHEAD)
        finally:
            flight.set_result(stored)  # followers never wait on a leader that has gone
            if self._inflight.get(key) is flight:
                del self._inflight[key]

    async def _replay(
        self, send: Send, stored: CachedResponse, tag: bytes, age: float | None
    ) -> None:
        headers = [(k, v) for k, v in stored.headers if k != b"age"]
        headers.append((self.header, tag))
        if age is not None:
            headers.append((b"age", str(int(age)).encode()))
        await send({"type": "http.response.start", "status": stored.status, "headers": headers})
        await send({"type": "http.response.body", "body": stored.body, "more_body": False})

    def storable(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """Whether response headers allow a shared cache to keep and replay the response."""
        for name, value in headers:
            lname = name.lower()
            if lname == b"set-cookie":
                return False
            if lname == b"cache-control":
                directives = {
                    d.strip().split("=")[0] for d in value.decode("latin-1").lower().split(",")
                }
                if directives & _UNSTORABLE:
                    return False
            elif lname == b"vary":
                named = {
                    v.strip().lower().encode("latin-1") for v in value.decode("latin-1").split(",")
                }
                if not named <= {*self.vary_headers, b""}:
                    return False
            elif lname == b"content-length" and not _within(value, self.max_entry_bytes):
                return False
        return True


class _ScopeSink:
    """Forwards the cache's counts to the recorder last seen in a cached request's scope.

    Every request through one ``ScalewiseMiddleware`` carries the same recorder, so the
    binding stays right across the awaits between a lookup and the store that follows it.
    """

    __slots__ = ("target",)

    def __init__(self) -> None:
        self.target: CountSink | None = None

    def bind(self, scope: Scope) -> None:
        target = scope.get(SCOPE_KEY)
        if target is not None:
            self.target = target

    def count(self, counter: str, n: float = 1) -> None:
        if self.target is not None:
            self.target.count(counter, n)


def _within(length: bytes, limit: int) -> bool:
    text = length.strip()
    return text.isdigit() and int(text) <= limit


class _Copy:
    """Wraps ``send``: forwards every message at once, keeps a bounded copy of a storable one."""

    def __init__(self, owner: ResponseCacheMiddleware) -> None:
        self.owner = owner
        self.keep = False
        self.done = False
        self.status = 0
        self.headers: tuple[tuple[bytes, bytes], ...] = ()
        self.chunks: list[bytes] = []
        self.size = 0

    def wrap(self, send: Send) -> Send:
        async def copying_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                message = self._start(message)
            elif kind == "http.response.body":
                self._body(message)
            else:
                self.keep = False  # trailers, pathsend, …: not replayable from bytes
            await send(message)

        return copying_send

    def _start(self, message: Message) -> Message:
        headers = list(message.get("headers") or ())
        self.status = message["status"]
        self.headers = tuple((bytes(k).lower(), bytes(v)) for k, v in headers)
        self.keep = (
            self.status == 200
            and not message.get("trailers", False)
            and self.owner.storable(self.headers)
        )
        return {**message, "headers": [*headers, (self.owner.header, b"MISS")]}

    def _body(self, message: Message) -> None:
        if not self.keep:
            return
        body = message.get("body", b"")
        self.size += len(body)
        if self.size > self.owner.max_entry_bytes:
            self.keep = False
            self.chunks.clear()
            return
        self.chunks.append(bytes(body))
        if not message.get("more_body", False):
            self.done = True

    def result(self) -> CachedResponse | None:
        if not (self.keep and self.done):
            return None
        return CachedResponse(self.status, self.headers, b"".join(self.chunks))


def _tagging(send: Send, header: bytes) -> Send:
    async def tagged(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*(message.get("headers") or ()), (header, b"MISS")]}
        await send(message)

    return tagged


def identity_vary(**resolver_options: object) -> Vary:
    """The default ``vary``: who the caller is, per :class:`IdentityResolver`.

    A caller known only by address gets a digest of its ``Authorization`` and ``Cookie`` added;
    a caller whose token was rejected (``invalid``) is never served from or into the cache.
    """
    from scalewise.guard.identity import IdentityResolver  # noqa: PLC0415 - PyJWT only if used

    resolver = IdentityResolver(**resolver_options)  # type: ignore[arg-type]

    def vary(scope: Scope) -> str | None:
        who = resolver.resolve(scope)
        if who.kind == "invalid":
            return None
        if who.kind not in ("ip", "anonymous"):
            return who.key
        secret = [v for k, v in scope.get("headers") or () if k in (b"authorization", b"cookie")]
        if not secret:
            return who.key
        return who.key + "|cred:" + hashlib.sha256(b"\n".join(secret)).hexdigest()[:32]

    return vary


def _compile_routes(
    routes: Mapping[str, str | float] | Sequence[str], default_ttl: float
) -> tuple[tuple[re.Pattern[str], float], ...]:
    if isinstance(routes, str):
        raise ConfigError(
            _SOURCE, "routes", "a list of route patterns or a pattern → TTL map", routes
        )
    items = (
        [(p, _duration(_SOURCE, f"routes[{p!r}]", t, positive=True)) for p, t in routes.items()]
        if isinstance(routes, Mapping)
        else [(p, default_ttl) for p in routes]
    )
    compiled = []
    for pattern, ttl in items:
        if not isinstance(pattern, str) or not pattern.startswith("/"):
            raise ConfigError(_SOURCE, "routes", "patterns starting with '/'", pattern)
        compiled.append((_pattern(pattern), ttl))
    return tuple(compiled)


def _pattern(route: str) -> re.Pattern[str]:
    """``/items/{id}`` matches one segment, ``{rest:path}`` and a trailing ``*`` match the rest."""
    out = []
    for token in re.split(r"(\{[^}]*\}|\*)", route):
        if token == "*" or (token.startswith("{") and token.endswith(":path}")):
            out.append(".*")
        elif token.startswith("{") and token.endswith("}"):
            out.append("[^/]+")
        else:
            out.append(re.escape(token))
    return re.compile("".join(out))
