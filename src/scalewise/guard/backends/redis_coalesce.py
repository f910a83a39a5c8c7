"""Coalescing across instances through Redis: one call per key among every process.

Protocol, per key (all of a key's Redis keys share one ``{hash tag}``, so it works on a cluster):

1. One round trip (Lua): return the cached result if there is one, else try
   ``SET lock token NX PX lock_ttl``. The winner is the *leader*.
2. The leader calls the function, renewing its lock every ``lock_ttl / 3`` (compare-and-
   ``PEXPIRE``), so a slow call keeps its lock but a crashed leader loses it within
   ``lock_ttl``. When done, one script stores the outcome, deletes the lock if it still owns it
   and ``PUBLISH``-es a wake-up: a result goes under the result key for ``ttl`` (or, with
   ``ttl=0`` or for an error, under ``out:<token>`` for ``handoff_ttl``, so errors reach
   followers without being cached).
3. Followers subscribe (one shared subscription per backend) and also poll with exponential
   backoff (``poll_min`` to ``poll_max``), so a lost message costs latency, never a hang. Each
   poll is one ``MGET`` of result, outcome and lock. If the lock is gone with no outcome, the
   leader died: the follower goes back to step 1 and may lead. A follower waits at most
   ``timeout`` for a leader and then raises :class:`~scalewise.guard.coalesce.CoalesceTimeout`.

Values cross processes through a codec: :class:`JsonCodec` by default. :class:`PickleCodec`
keeps Python types but must be opted into, because unpickling runs code chosen by whoever can
write to the Redis keys: use it only with a Redis that only your services can reach and write.
A leader's exception reaches other processes as
:class:`~scalewise.guard.coalesce.CoalescedCallError` (type name and message).

Redis down: with ``fail_open=True`` (default) the call runs locally and the error is logged at
most once per ``log_interval``; with ``fail_open=False`` it raises
:class:`~scalewise.errors.GuardError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import pickle
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from scalewise.errors import GuardError
from scalewise.guard.cache import _duration
from scalewise.guard.coalesce import CoalescedCallError, CoalesceTimeout

_SOURCE: Final = "RedisCoalesceBackend"
_SAFE_KEY: Final = re.compile(r"[A-Za-z0-9_.:/@=,+\-]{1,128}")
_TAKEOVER: Final = object()
_LISTEN_TICK: Final = 1.0  # seconds a subscriber blocks before re-checking that it should run
logger = logging.getLogger("scalewise.guard")

_ACQUIRE: Final = """
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, ''} end
return {3, redis.call('GET', KEYS[2]) or ''}
"""
_FINISH: Final = """
if ARGV[2] ~= '0' and string.sub(ARGV[1], 1, 1) == 'v' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
end
if redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""


class Codec(Protocol):
    """Turns results into bytes for Redis and back."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonCodec:
    """JSON (UTF-8): safe to load from anyone; tuples come back as lists, dict keys as str."""

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


class PickleCodec:
    """Pickle: any Python value, but loading runs code: only with a Redis nobody else can write."""

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)  # opt-in: see the class docstring


class _Down(Exception):
    """Redis could not be reached; wraps the driver's error."""


class _Keys:
    __slots__ = ("id", "lock", "result")

    def __init__(self, prefix: str, key: str) -> None:
        ident = key if _SAFE_KEY.fullmatch(key) else "h:" + hashlib.sha256(key.encode()).hexdigest()
        self.id = ident
        self.result = f"{prefix}{{{ident}}}:val"
        self.lock = f"{prefix}{{{ident}}}:lock"

    def out(self, token: str) -> str:
        return self.lock[: -len("lock")] + "out:" + token


class RedisCoalesceBackend:
    """Cross-process single-flight and shared result store for a ``Coalescer``.

    Example:
        >>> backend = RedisCoalesceBackend.from_url("redis://127.0.0.1:6379/0")
        >>> # @coalesce(key="report:{day}", ttl="5m", backend=backend)
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "scalewise:coalesce:",
        codec: Codec | None = None,
        lock_ttl: str | float = "5s",
        handoff_ttl: str | float = "30s",
        max_wait: str | float = "30s",
        poll_min: str | float = "10ms",
        poll_max: str | float = "250ms",
        fail_open: bool = True,
        log_interval: str | float = "60s",
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.codec: Codec = codec or JsonCodec()
        self.lock_ms = max(1, round(_duration(_SOURCE, "lock_ttl", lock_ttl, positive=True) * 1000))
        self.handoff_ms = max(
            1, round(_duration(_SOURCE, "handoff_ttl", handoff_ttl, positive=True) * 1000)
        )
        self.max_wait = _duration(_SOURCE, "max_wait", max_wait, positive=True)
        self.poll_min = _duration(_SOURCE, "poll_min", poll_min, positive=True)
        self.poll_max = max(self.poll_min, _duration(_SOURCE, "poll_max", poll_max, positive=True))
        self.fail_open = fail_open
        self.log_interval = _duration(_SOURCE, "log_interval", log_interval, positive=False)
        self.channel = f"{prefix}done"
        self._scripts = {
            name: client.register_script(body)
            for name, body in (
                ("acquire", _ACQUIRE),
                ("finish", _FINISH),
                ("renew", _RENEW),
                ("release", _RELEASE),
            )
        }
        self._waker = _Waker(client, self.channel)
        self._last_log = -float("inf")
        self.leader_calls = 0
        self.takeovers = 0

    @classmethod
    def from_url(
        cls, url: str, *, connect_timeout: float = 2.0, **options: Any
    ) -> RedisCoalesceBackend:
        """A backend on its own client for ``redis://`` / ``rediss://`` / ``unix://`` URLs.

        ``connect_timeout`` bounds how long an unreachable Redis can hold a call up.
        """
        client = aioredis.Redis.from_url(url, socket_connect_timeout=connect_timeout)
        return cls(client, **options)

    async def aclose(self) -> None:
        """Stop the shared subscription and close the client."""
        await self._waker.aclose()
        await self.client.aclose()

    async def delete(self, key: str) -> None:
        keys = _Keys(self.prefix, key)
        try:
            await self.client.delete(keys.result)
        except (RedisError, OSError) as exc:
            self._down(exc)

    async def run(
        self, key: str, call: Callable[[], Awaitable[Any]], *, ttl: float, timeout: float
    ) -> Any:
        """The cached result, another instance's result, or ``await call()`` as the leader."""
        keys = _Keys(self.prefix, key)
        wait = timeout or self.max_wait
        deadline = time.monotonic() + wait
        token = secrets.token_hex(8)
        try:
            while True:
                kind, data = await self._redis(
                    self._scripts["acquire"](
                        keys=[keys.result, keys.lock], args=[token, self.lock_ms]
                    )
                )
                if kind == 1:
                    return self._decode(key, data)
                if kind == 2:
                    return await self._lead(keys, token, call, ttl)
                found = await self._follow(key, keys, data.decode(), deadline, wait)
                if found is not _TAKEOVER:
                    return found
                self.takeovers += 1
                if time.monotonic() >= deadline:  # leaders keep vanishing: stay bounded
                    raise CoalesceTimeout(key, wait)
        except _Down as exc:
            self._down(exc.__cause__ or exc)
            return await call()

    # -- leader ---------------------------------------------------------------------

    async def _lead(
        self, keys: _Keys, token: str, call: Callable[[], Awaitable[Any]], ttl: float
    ) -> Any:
        self.leader_calls += 1
        renew = asyncio.ensure_future(self._renew(keys, token))
        try:
            value = await call()
        except Exception as exc:
            error = {"type": type(exc).__qualname__, "message": str(exc)[:2000]}
            await self._finish(keys, token, b"e" + json.dumps(error).encode(), 0)
            raise
        except BaseException:
            # Cancelled: free the lock now so a follower leads without waiting for expiry.
            await asyncio.shield(self._release(keys, token))
            raise
        finally:
            renew.cancel()
        try:
            payload = b"v" + self.codec.dumps(value)
        except (TypeError, ValueError, pickle.PicklingError) as exc:
            error = {"type": "GuardError", "message": f"result not encodable: {exc}"}
            await self._finish(keys, token, b"e" + json.dumps(error).encode(), 0)
            raise GuardError(
                f"coalesce: the result for {keys.id!r} cannot be encoded with "
                f"{type(self.codec).__name__} ({exc}); return JSON-friendly values or pass codec="
            ) from exc
        await self._finish(keys, token, payload, ttl)
        return value

    async def _finish(self, keys: _Keys, token: str, payload: bytes, ttl: float) -> None:
        ttl_ms = max(1, round(ttl * 1000)) if ttl > 0 else 0
        args: list[bytes | str | int] = [
            payload,
            ttl_ms,
            self.handoff_ms,
            token,
            self.channel,
            f"{keys.id} {token}",
        ]
        try:
            await self._scripts["finish"](keys=[keys.result, keys.out(token), keys.lock], args=args)
        except (RedisError, OSError) as exc:
            self._down(exc)  # followers elsewhere see the lock expire and take over

    async def _release(self, keys: _Keys, token: str) -> None:
        try:
            await self._scripts["release"](
                keys=[keys.lock], args=[token, self.channel, f"{keys.id} {token}"]
            )
        except (RedisError, OSError) as exc:
            self._log_down(exc)  # the lock expires by itself

    async def _renew(self, keys: _Keys, token: str) -> None:
        while True:
            await asyncio.sleep(self.lock_ms / 3000)
            try:
                if not await self._scripts["renew"](keys=[keys.lock], args=[token, self.lock_ms]):
                    return  # lost the lock (a long pause): another instance may lead too
            except (RedisError, OSError) as exc:
                self._log_down(exc)  # the lock expires by itself

    # -- follower -------------------------------------------------------------------

    async def _follow(self, key: str, keys: _Keys, token: str, deadline: float, wait: float) -> Any:
        if not token:
            return _TAKEOVER  # the lock vanished between our SET and GET
        event = self._waker.register(keys.id)
        delay = self.poll_min
        try:
            while True:
                event.clear()
                result, out, lock = await self._redis(
                    self.client.mget(keys.result, keys.out(token), keys.lock)
                )
                if result is not None:
                    return self._decode(key, result)
                if out is not None:
                    return self._decode(key, out)
                if lock != token.encode():
                    return _TAKEOVER
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CoalesceTimeout(key, wait)
                try:
                    await asyncio.wait_for(event.wait(), min(delay, remaining))
                except TimeoutError:
                    delay = min(delay * 2, self.poll_max)
        finally:
            self._waker.unregister(keys.id, event)

    def _decode(self, key: str, data: bytes) -> Any:
        if data[:1] == b"e":
            error = json.loads(data[1:])
            raise CoalescedCallError(key, error["type"], error["message"])
        try:
            return self.codec.loads(data[1:])
        except Exception as exc:  # another codec or version wrote it
            raise GuardError(
                f"coalesce: stored result for {key!r} does not decode with "
                f"{type(self.codec).__name__}: {exc}"
            ) from exc

    # -- Redis errors ---------------------------------------------------------------

    async def _redis(self, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise _Down from exc

    def _log_down(self, exc: BaseException) -> None:
        """Log a Redis failure at most once per ``log_interval``, not once per call."""
        now = time.monotonic()
        if now - self._last_log >= self.log_interval:
            self._last_log = now
            logger.warning("scalewise coalesce: Redis unavailable (%s)", exc)

    def _down(self, exc: BaseException) -> None:
        self._log_down(exc)
        if not self.fail_open:
            raise GuardError(f"coalesce: Redis unavailable and fail_open=False: {exc}") from exc


class _Waker:
    """One Pub/Sub subscription per backend; wakes the local followers of a finished key."""

    def __init__(self, client: aioredis.Redis, channel: str) -> None:
        self._client = client
        self._channel = channel
        self._events: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def register(self, ident: str) -> asyncio.Event:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._listen())
        event = asyncio.Event()
        self._events.setdefault(ident, set()).add(event)
        return event

    def unregister(self, ident: str, event: asyncio.Event) -> None:
        waiting = self._events.get(ident)
        if waiting is not None:
            waiting.discard(event)
            if not waiting:
                del self._events[ident]

    async def aclose(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            # The driver can swallow a cancel that lands mid-connect; the flag ends it anyway.
            await asyncio.wait([self._task], timeout=2 * _LISTEN_TICK)

    async def _listen(self) -> None:
        backoff = 0.1
        while not self._closed:
            try:
                async with self._client.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    backoff = 0.1
                    while not self._closed:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=_LISTEN_TICK
                        )
                        if message is not None and message.get("type") == "message":
                            self._wake(message["data"])
            except (RedisError, OSError):
                await asyncio.sleep(backoff)  # polling keeps followers going meanwhile
                backoff = min(backoff * 2, 5.0)

    def _wake(self, data: bytes) -> None:
        ident = data.rsplit(b" ", 1)[0].decode(errors="replace")
        for event in self._events.get(ident, ()):
            event.set()
