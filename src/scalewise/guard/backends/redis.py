"""Rate-limit state in Redis, shared by every instance: one Lua script, one round trip.

Each check is exactly one ``EVALSHA`` of ``gcra.lua``. The first check of a backend sends the
script with ``EVAL`` instead (which also caches it on the server), so there is no separate
``SCRIPT LOAD`` trip; after a Redis restart or ``SCRIPT FLUSH`` the ``NOSCRIPT`` reply is
answered with one ``EVAL`` and ``EVALSHA`` resumes. The script reads the server's ``TIME``,
so the clocks of app instances do not matter.

The sync (:class:`RedisBackend`, for ``redis.Redis``) and async (:class:`AsyncRedisBackend`,
for ``redis.asyncio.Redis``) classes share the script, key scheme, result parsing and error
handling; only the call differs.

When Redis fails, the backend raises :class:`~scalewise.errors.GuardError` at once, and for
``cooldown`` seconds after a failure it does not try Redis again (no pile-up of connection
attempts while Redis is away). The error is logged once per ``log_interval`` with a count of
the failures in between, not once per request. Whether the request is then admitted (fail
open) or refused (fail closed) is the :class:`~scalewise.guard.ratelimit.RateLimiter`'s
choice. Keys are hashed (BLAKE2b, 128 bits) under a prefix, so any characters and any length
of caller key make a short, safe Redis key.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, Final

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from scalewise.errors import ConfigError, GuardError
from scalewise.guard.algorithms import Outcome, Rate, outcome_after

DEFAULT_PREFIX: Final = "scalewise:rl:"
SCRIPT: Final = resources.files("scalewise.guard.backends").joinpath("gcra.lua").read_text()
SCRIPT_SHA: Final = hashlib.sha1(SCRIPT.encode()).hexdigest()
logger = logging.getLogger("scalewise.guard.redis")


class _Health:
    """Remembers failures: a cool-down before retrying, and one log line per interval."""

    def __init__(self, cooldown: float, log_interval: float, now: Callable[[], float]) -> None:
        for name, value in (("cooldown", cooldown), ("log_interval", log_interval)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError("RedisBackend", name, "seconds of at least 0", value)
        self.cooldown = cooldown
        self.log_interval = log_interval
        self.now = now
        self.down_until = float("-inf")
        self.next_log = float("-inf")
        self.suppressed = 0

    def check(self) -> None:
        if self.now() < self.down_until:
            raise GuardError("redis rate-limit backend unavailable (cooling down)")

    def failed(self, exc: Exception) -> GuardError:
        now = self.now()
        self.down_until = now + self.cooldown
        if now >= self.next_log:
            extra = f" ({self.suppressed} more since the last report)" if self.suppressed else ""
            logger.error("redis rate-limit backend failed: %s%s", exc, extra)
            self.next_log = now + self.log_interval
            self.suppressed = 0
        else:
            self.suppressed += 1
        return GuardError(f"redis rate-limit backend failed: {exc}")


class _Base:
    def __init__(
        self,
        client: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        cooldown: float = 1.0,
        log_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(prefix, str):
            raise ConfigError("RedisBackend", "prefix", "a string", prefix)
        self.client = client
        self.prefix = prefix
        self._health = _Health(cooldown, log_interval, clock)
        self._loaded = False

    def key(self, key: str) -> str:
        """The Redis key for a caller key: prefix + 32 hex digits, whatever the input."""
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16)
        return self.prefix + digest.hexdigest()

    @staticmethod
    def _args(rate: Rate, cost: int) -> tuple[str, str, int]:
        return repr(rate.emission_interval), repr(rate.tolerance), cost

    @staticmethod
    def _outcome(reply: Any, rate: Rate, cost: int) -> Outcome:
        allowed, reset = reply
        return outcome_after(int(allowed) == 1, float(reset), cost, rate)


class RedisBackend(_Base):
    """GCRA state in Redis for sync callers (WSGI, threads): ``redis.Redis`` client.

    Example:
        >>> backend = RedisBackend.from_url("redis://127.0.0.1:6379/0")  # doctest: +SKIP
    """

    def __init__(self, client: redis.Redis, **options: Any) -> None:
        super().__init__(client, **options)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 0.25, **options: Any) -> RedisBackend:
        """A client with short timeouts and no retries: a rate-limit check must not hang a
        request (redis-py retries three times with backoff by default, seconds in all); the
        backend's cool-down handles an outage instead."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, **options)

    def gcra(self, key: str, rate: Rate, cost: int) -> Outcome:
        """Check and consume in one round trip; :class:`GuardError` when Redis fails."""
        self._health.check()
        name, args = self.key(key), self._args(rate, cost)
        try:
            try:
                if self._loaded:
                    reply = self.client.evalsha(SCRIPT_SHA, 1, name, *args)
                else:
                    reply = self.client.eval(SCRIPT, 1, name, *args)
                    self._loaded = True
            except NoScriptError:
                reply = self.client.eval(SCRIPT, 1, name, *args)
        except RedisError as exc:
            raise self._health.failed(exc) from exc
        return self._outcome(reply, rate, cost)

    async def agcra(self, key: str, rate: Rate, cost: int) -> Outcome:
        raise GuardError("RedisBackend is synchronous; use AsyncRedisBackend under ASGI")


class AsyncRedisBackend(_Base):
    """GCRA state in Redis for async callers (ASGI): ``redis.asyncio.Redis`` client."""

    def __init__(self, client: redis.asyncio.Redis, **options: Any) -> None:
        super().__init__(client, **options)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 0.25, **options: Any) -> AsyncRedisBackend:
        """A client with short timeouts and no retries (see :meth:`RedisBackend.from_url`)."""
        client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
        )
        return cls(client, **options)

    async def agcra(self, key: str, rate: Rate, cost: int) -> Outcome:
        """Check and consume in one round trip; :class:`GuardError` when Redis fails."""
        self._health.check()
        name, args = self.key(key), self._args(rate, cost)
        try:
            try:
                if self._loaded:
                    reply = await self.client.evalsha(SCRIPT_SHA, 1, name, *args)
                else:
                    reply = await self.client.eval(SCRIPT, 1, name, *args)
                    self._loaded = True
            except NoScriptError:
                reply = await self.client.eval(SCRIPT, 1, name, *args)
        except RedisError as exc:
            raise self._health.failed(exc) from exc
        return self._outcome(reply, rate, cost)

    def gcra(self, key: str, rate: Rate, cost: int) -> Outcome:
        raise GuardError("AsyncRedisBackend is asynchronous; use RedisBackend under WSGI")
