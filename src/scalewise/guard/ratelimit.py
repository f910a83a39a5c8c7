"""Per-caller rate limits: a :class:`Rate`, a backend, tiers and per-route limits.

A check returns a :class:`Decision` (a value, never an exception); only the middleware turns
a refusal into a 429. The algorithm is GCRA (see :mod:`scalewise.guard.algorithms`): "100/minute"
sustains 100 requests a minute and lets an idle caller burst up to ``burst`` (default 100)
at once; the exact bound on any span is stated there.

Response fields follow the IETF RateLimit header fields, draft-ietf-httpapi-ratelimit-headers-11
(23 May 2026), which replaced the older ``RateLimit-Limit``/``-Remaining``/``-Reset`` trio
with two Structured Fields (RFC 9651 lists of items with parameters)::

    RateLimit-Policy: "default";q=100;w=60
    RateLimit: "default";r=42;t=35

``q`` is the quota and ``w`` the window in whole seconds; ``r`` is the quota available now and
``t`` the seconds within which no more than ``r`` can be used. For an admitted request ``t``
is the time until the caller is back to a full burst (an upper bound: GCRA refills one unit
every ``period / limit`` seconds, so a client that waits ``t`` is never refused for this
policy). For a refusal ``t`` equals ``Retry-After``, as the draft asks (section 6: Retry-After
must not point before the end of the effective window).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

from scalewise.errors import ConfigError, GuardError
from scalewise.guard.algorithms import Outcome, Rate
from scalewise.guard.backends.memory import MemoryBackend

__all__ = ["Decision", "Rate", "RateLimitBackend", "RateLimiter", "decision_headers", "refusal"]

HEADERS_DRAFT: Final = "draft-ietf-httpapi-ratelimit-headers-11"
MAX_KEY_CHARS: Final = 200
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_POLICY_NAME: Final = re.compile(r"^[\x20-\x7e]{1,64}$")


class RateLimitBackend(Protocol):
    """Storage for rate-limit state. Memory serves both methods; ``RedisBackend`` serves
    ``gcra`` and ``AsyncRedisBackend`` serves ``agcra`` (the other raises GuardError).
    A failing store raises :class:`~scalewise.errors.GuardError` after logging."""

    def gcra(self, key: str, rate: Rate, cost: int) -> Outcome: ...

    async def agcra(self, key: str, rate: Rate, cost: int) -> Outcome: ...


class Decision(NamedTuple):
    """The answer for one request (a NamedTuple: immutable, and four times cheaper to build
    than a frozen dataclass, which matters on a check budget of a few microseconds).

    Attributes:
        allowed: whether to serve it.
        limit: the quota of the policy applied (requests per ``window``).
        remaining: unit-cost requests that would be admitted right now.
        reset_after: seconds until the caller is back to a full burst.
        retry_after: seconds until this request would be admitted (0 when allowed).
        policy: the policy's name (``default``, a tier, or a route pattern).
        window: the policy's period in whole seconds.
        degraded: the backend failed; ``allowed`` is the configured fail-open/closed answer.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float
    policy: str = "default"
    window: int = 0
    degraded: bool = False


@dataclass(frozen=True, slots=True)
class _Route:
    method: str | None
    pattern: re.Pattern[str]
    text: str
    rate: Rate


class RateLimiter:
    """A rate limit per caller key, with tiers and per-route limits.

    Args:
        limit: the default rate, a :class:`Rate` or text such as ``"100/minute"``.
        backend: a :class:`~scalewise.guard.backends.memory.MemoryBackend` (the default),
            ``RedisBackend`` or ``AsyncRedisBackend``.
        burst: requests admitted at once (defaults to the limit).
        tiers: tier name → rate, e.g. ``{"free": "60/minute", "pro": "600/minute"}``; a
            caller whose tier is unknown gets ``limit``.
        routes: route pattern → rate, e.g. ``{"POST /login": "5/minute", "/search": "10/s",
            "/items/{id}": "50/s", "/export/*": "1/minute"}``. ``{name}`` matches one path
            segment, a trailing ``*`` the rest; an optional method comes first. The first
            match wins and replaces the default (and tier) limit with a bucket of its own.
        fail_open: when the backend fails, admit (True) or refuse (False) requests.

    Example:
        >>> from scalewise.clock import ManualClock
        >>> from scalewise.guard.backends.memory import MemoryBackend
        >>> limiter = RateLimiter("2/minute", MemoryBackend(clock=ManualClock()))
        >>> [limiter.check("user:1").allowed for _ in range(3)]
        [True, True, False]
    """

    def __init__(
        self,
        limit: Rate | str,
        backend: RateLimitBackend | None = None,
        *,
        burst: int = 0,
        tiers: Mapping[str, Rate | str] | None = None,
        routes: Mapping[str, Rate | str] | None = None,
        fail_open: bool = True,
    ) -> None:
        self.rate = Rate.parse(limit, burst=burst, field_name="limit")
        self.backend: RateLimitBackend = backend if backend is not None else MemoryBackend()
        self.tiers = {
            _policy_name(name, "tiers"): Rate.parse(rate, field_name=f"tiers.{name}")
            for name, rate in (tiers or {}).items()
        }
        self.routes = tuple(_route(text, rate) for text, rate in (routes or {}).items())
        self.fail_open = bool(fail_open)

    def policy_for(
        self, tier: str | None = None, path: str | None = None, method: str | None = None
    ) -> tuple[str, Rate, str]:
        """(policy name, rate, bucket prefix) for a request; routes first, then tiers."""
        if path is not None:
            for route in self.routes:
                if (route.method is None or route.method == method) and route.pattern.match(path):
                    # keyed by the pattern, so reordering routes keeps Redis state meaningful
                    return route.text, route.rate, route.text + "|"
        if tier is not None:
            rate = self.tiers.get(tier)
            if rate is not None:
                return tier, rate, ""
        return "default", self.rate, ""

    def check(
        self,
        key: str,
        cost: int = 1,
        *,
        tier: str | None = None,
        path: str | None = None,
        method: str | None = None,
    ) -> Decision:
        """Check and consume ``cost`` units for ``key`` (sync backends)."""
        policy, rate, bucket = self.policy_for(tier, path, method)
        _check_cost(cost, rate)
        try:
            allowed, remaining, reset, retry = self.backend.gcra(
                _bucket_key(bucket, key), rate, cost
            )
        except GuardError:
            return self._degraded(policy, rate)
        return Decision(allowed, rate.limit, remaining, reset, retry, policy, rate.window)

    async def acheck(
        self,
        key: str,
        cost: int = 1,
        *,
        tier: str | None = None,
        path: str | None = None,
        method: str | None = None,
    ) -> Decision:
        """Check and consume ``cost`` units for ``key`` (async backends)."""
        policy, rate, bucket = self.policy_for(tier, path, method)
        _check_cost(cost, rate)
        try:
            allowed, remaining, reset, retry = await self.backend.agcra(
                _bucket_key(bucket, key), rate, cost
            )
        except GuardError:
            return self._degraded(policy, rate)
        return Decision(allowed, rate.limit, remaining, reset, retry, policy, rate.window)

    def _degraded(self, policy: str, rate: Rate) -> Decision:
        # The backend already logged (once per interval); here we only pick the answer.
        retry = 0.0 if self.fail_open else 1.0
        return Decision(self.fail_open, rate.limit, 0, 0.0, retry, policy, rate.window, True)


def decision_headers(decision: Decision) -> list[tuple[str, str]]:
    """``RateLimit-Policy``, ``RateLimit`` and, on refusal, ``Retry-After`` (see module doc).

    A degraded decision (backend down) carries no RateLimit fields: there are no figures to
    report, and made-up ones would mislead clients. A fail-closed refusal keeps Retry-After.
    """
    if decision.degraded:
        return [] if decision.allowed else [("retry-after", _seconds(decision.retry_after))]
    name = _sf_string(decision.policy)
    policy = f"{name};q={decision.limit};w={decision.window}"
    if decision.allowed:
        return [
            ("ratelimit-policy", policy),
            ("ratelimit", f"{name};r={decision.remaining};t={_seconds(decision.reset_after)}"),
        ]
    retry = _seconds(decision.retry_after)
    return [
        ("ratelimit-policy", policy),
        ("ratelimit", f"{name};r={decision.remaining};t={retry}"),
        ("retry-after", retry),
    ]


def refusal(decision: Decision) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    """Status, JSON body and headers for a refused decision (the ASGI and WSGI shells share it).

    429 for a refusal; 503 when the backend is down and the limiter fails closed.
    """
    headers = decision_headers(decision)
    retry = int(dict(headers).get("retry-after", "1"))
    if decision.degraded:
        return 503, {"error": "rate_limit_unavailable", "retry_after": retry}, headers
    body = {
        "error": "rate_limited",
        "retry_after": retry,
        "limit": decision.limit,
        "policy": decision.policy,
    }
    return 429, body, headers


def _seconds(value: float) -> str:
    """Whole seconds, rounded up: a client that waits this long is not refused early."""
    return str(max(0, math.ceil(value - 1e-9)))


def _sf_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bucket_key(bucket: str, key: str) -> str:
    # Bounded memory per key, whatever a caller passes; Redis hashes every key anyway.
    if len(key) > MAX_KEY_CHARS:
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16)
        key = "h:" + digest.hexdigest()
    return bucket + key if bucket else key


def _check_cost(cost: int, rate: Rate) -> None:
    if isinstance(cost, bool) or not isinstance(cost, int) or not 0 <= cost <= rate.burst:
        expected = f"a whole number from 0 to the burst ({rate.burst})"
        raise ConfigError("RateLimiter.check", "cost", expected, cost)


def _policy_name(name: object, field: str) -> str:
    if not isinstance(name, str) or not _POLICY_NAME.match(name):
        raise ConfigError("RateLimiter", field, "names of printable ASCII, 1-64 characters", name)
    return name


def _route(text: object, rate: Rate | str) -> _Route:
    field = f"routes[{text!r}]"
    if not isinstance(text, str):
        raise ConfigError("RateLimiter", field, "a route pattern such as '/items/{id}'", text)
    head, _, path = text.strip().rpartition(" ")
    method = head.strip().upper() or None
    if (method is not None and method not in _METHODS) or not path.startswith("/"):
        expected = "an optional method and a path starting with '/', like 'POST /login'"
        raise ConfigError("RateLimiter", field, expected, text)
    _policy_name(text, field)
    return _Route(method, _compile(path), text.strip(), Rate.parse(rate, field_name=field))


def _compile(path: str) -> re.Pattern[str]:
    """``/items/{id}`` → one segment per placeholder; a trailing ``*`` matches the rest."""
    tail = path.endswith("*")
    parts = re.split(r"(\{[^{}/]*\})", path[:-1] if tail else path)
    body = "".join("[^/]+" if p[:1] == "{" and p[-1:] == "}" else re.escape(p) for p in parts)
    return re.compile(body + (".*" if tail else "/?") + r"\Z")
