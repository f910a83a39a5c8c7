"""Single-flight with a TTL cache: identical concurrent calls share one execution.

The first caller for a key (the *leader*) starts the call as its own task; callers arriving
while it runs (*followers*) await the same task, so 1 000 identical requests cost one backend
call. The result is kept for ``ttl`` in a bounded :class:`~scalewise.guard.cache.TTLCache`.

Guarantees, because the seeds' hand-rolled versions (001's ``EnhancedRequestDeduplicationService``)
break each of them:

- **Nobody hangs.** Followers wait at most ``timeout`` and then get :class:`CoalesceTimeout`
  (the leader waits for its own call, exactly as it would without coalescing).
- **Errors reach every waiter.** If the call fails, the leader and followers get its exception
  (``on_error="raise"``), or followers start a fresh call, up to ``retries`` times
  (``on_error="retry"``). Errors are not cached unless ``error_ttl`` is set.
- **Cancelling the leader strands nobody.** The call runs in a task of its own that lives while
  anyone still waits for it; it is cancelled only when the last waiter has gone.
- **Bounded memory.** Entries and bytes are capped; in-flight calls are one per distinct key.

With ``stale_while_revalidate`` an expired entry is served while one background call refreshes
it (RFC 5861). With a ``backend`` (``backends.redis_coalesce.RedisCoalesceBackend``) the
leader of this process also coalesces with other processes before calling.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, ParamSpec, Protocol, TypeVar

from scalewise.clock import Clock
from scalewise.errors import ConfigError, GuardError
from scalewise.guard.cache import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL,
    CountSink,
    State,
    TTLCache,
    _duration,
)

T = TypeVar("T")
P = ParamSpec("P")
OnError = Literal["raise", "retry"]

DEFAULT_TIMEOUT: Final = "10s"
_SOURCE: Final = "coalesce"
_FAILURE_SIZE: Final = 512
logger = logging.getLogger("scalewise.guard")


class CoalesceTimeout(GuardError, TimeoutError):
    """A follower waited ``timeout`` seconds for the leader's result and gave up."""

    def __init__(self, key: object, timeout: float) -> None:
        self.key = key
        self.timeout = timeout
        super().__init__(
            f"coalesce: gave up after {timeout:g}s waiting for the in-flight call for key {key!r}"
        )


class CoalescedCallError(GuardError):
    """The leader's call failed in another process; its exception type and message.

    Within one process followers get the leader's exception object itself.
    """

    def __init__(self, key: object, error_type: str, message: str) -> None:
        self.key = key
        self.error_type = error_type
        self.message = message
        super().__init__(f"coalesce: the leader's call for {key!r} failed: {error_type}: {message}")


class CoalesceBackend(Protocol):
    """Coalescing across processes: run ``call`` once for ``key`` among every instance."""

    async def run(
        self, key: str, call: Callable[[], Awaitable[Any]], *, ttl: float, timeout: float
    ) -> Any: ...

    async def delete(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class CoalesceStats:
    """Cache counters plus what single-flight did; ``calls`` counts executions of the function."""

    hits: int
    stale_hits: int
    misses: int
    coalesced: int
    evictions: int
    expirations: int
    rejected: int
    entries: int
    bytes: int
    calls: int
    errors: int
    timeouts: int
    inflight: int


@dataclass(frozen=True, slots=True)
class _Failure:
    error: BaseException


class _LeaderGone(Exception):
    """The shared task was cancelled while this follower still wanted its result."""


class _Flight:
    """One running call: its task, the futures of those waiting, their deadlines in order.

    Each waiter awaits a future of its own, so a waiter's cancellation never touches the task,
    and one timer per flight (for the earliest deadline) replaces a timer per follower.
    """

    __slots__ = ("background", "deadlines", "futures", "key", "task", "timer", "waiters")

    def __init__(self, key: Hashable, background: bool) -> None:
        self.key = key
        self.task: asyncio.Task[Any]
        self.futures: list[asyncio.Future[Any]] = []
        self.deadlines: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.waiters = 0
        self.background = background


class Coalescer(Generic[T]):
    """Run at most one call per key at a time and cache results for ``ttl``.

    Example:
        >>> import asyncio
        >>> c = Coalescer[int](ttl="30s")
        >>> async def fetch() -> int:
        ...     await asyncio.sleep(0.01)
        ...     return 42
        >>> async def main() -> list[int]:
        ...     return await asyncio.gather(*(c.run("answer", fetch) for _ in range(100)))
        >>> set(asyncio.run(main())), c.stats().calls
        ({42}, 1)
    """

    def __init__(
        self,
        *,
        ttl: str | float = DEFAULT_TTL,
        stale_while_revalidate: str | float | None = None,
        timeout: str | float | None = DEFAULT_TIMEOUT,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: str | int = DEFAULT_MAX_BYTES,
        sizeof: Callable[[T], int] | None = None,
        on_error: OnError = "raise",
        retries: int = 1,
        error_ttl: str | float | None = None,
        backend: CoalesceBackend | None = None,
        recorder: CountSink | None = None,
        clock: Clock | None = None,
        metric_prefix: str = "cache",
    ) -> None:
        self.cache: TTLCache[Any] = TTLCache(
            ttl=ttl,
            max_entries=max_entries,
            max_bytes=max_bytes,
            stale_while_revalidate=stale_while_revalidate,
            sizeof=sizeof,
            clock=clock,
            recorder=recorder,
            metric_prefix=metric_prefix,
            source=_SOURCE,
        )
        self.timeout = (
            None if timeout is None else _duration(_SOURCE, "timeout", timeout, positive=True)
        )
        if on_error not in ("raise", "retry"):
            raise ConfigError(_SOURCE, "on_error", "'raise' or 'retry'", on_error)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(_SOURCE, "retries", "a whole number ≥ 0", retries)
        self.on_error: OnError = on_error
        self.retries = retries
        self.error_ttl = (
            None if error_ttl is None else _duration(_SOURCE, "error_ttl", error_ttl, positive=True)
        )
        self.backend = backend
        self._inflight: dict[Hashable, _Flight] = {}
        self._counts = {"calls": 0, "errors": 0, "timeouts": 0}
        self._recorder = recorder
        self._prefix = metric_prefix

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` unless a fresh result is cached or the same key is already running."""
        failures = 0
        while True:
            found = self.cache.lookup(key)
            if found.state is not State.MISS:
                if found.state is State.STALE and key not in self._inflight:
                    self._start(key, fn, background=True)
                return _unwrap(found.value)  # type: ignore[no-any-return]
            flight = self._inflight.get(key)
            if flight is None:
                return await self._wait(key, self._start(key, fn, background=False), leader=True)
            self.cache.record_coalesced()
            try:
                return await self._wait(key, flight, leader=False)
            except CoalesceTimeout:
                raise
            except _LeaderGone:
                failures += 1
                if failures > max(self.retries, 1):
                    raise GuardError(f"coalesce: the call for {key!r} was cancelled") from None
            except Exception:
                failures += 1
                if self.on_error == "raise" or failures > self.retries:
                    raise

    async def call(
        self, key: Hashable, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """:meth:`run` for a function with arguments."""
        return await self.run(key, functools.partial(fn, *args, **kwargs))

    async def invalidate(self, key: Hashable) -> None:
        """Forget the cached result here and, with a backend, in the shared store."""
        self.cache.delete(key)
        if self.backend is not None:
            await self.backend.delete(str(key))

    def stats(self) -> CoalesceStats:
        c = self.cache.stats()
        return CoalesceStats(
            hits=c.hits,
            stale_hits=c.stale_hits,
            misses=c.misses,
            coalesced=c.coalesced,
            evictions=c.evictions,
            expirations=c.expirations,
            rejected=c.rejected,
            entries=c.entries,
            bytes=c.bytes,
            **self._counts,
            inflight=len(self._inflight),
        )

    # -- the shared task ------------------------------------------------------------

    def _start(self, key: Hashable, fn: Callable[[], Awaitable[T]], *, background: bool) -> _Flight:
        flight = _Flight(key, background)
        flight.task = asyncio.ensure_future(self._fly(key, fn, flight))
        flight.task.add_done_callback(lambda task: _land(flight, task))
        self._inflight[key] = flight
        return flight

    async def _fly(self, key: Hashable, fn: Callable[[], Awaitable[T]], flight: _Flight) -> T:
        async def counted() -> T:
            self._bump("calls")
            return await fn()

        try:
            if self.backend is None:
                value = await counted()
            else:
                ttl, timeout = self.cache.ttl, self.timeout or 0.0
                value = await self.backend.run(str(key), counted, ttl=ttl, timeout=timeout)
        except Exception as exc:
            self._bump("errors")
            if self.error_ttl is not None:
                self.cache.set(key, _Failure(exc), ttl=self.error_ttl, size=_FAILURE_SIZE)
            raise
        else:
            if self.cache.ttl > 0:
                self.cache.set(key, value)
            return value
        finally:
            if self._inflight.get(key) is flight:
                del self._inflight[key]

    async def _wait(self, key: Hashable, flight: _Flight, *, leader: bool) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        flight.futures.append(future)
        flight.waiters += 1
        if not leader and self.timeout is not None:
            flight.deadlines.append((loop.time() + self.timeout, future))
            if flight.timer is None:
                self._arm(flight)
        try:
            return await future
        except _LeaderGone:
            if leader:
                raise asyncio.CancelledError from None  # what awaiting the call itself gives
            raise
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not (flight.task.done() or flight.background):
                flight.task.cancel()  # nobody wants the result any more

    def _arm(self, flight: _Flight) -> None:
        """Schedule the flight's one timer for its earliest deadline still pending."""
        deadlines = flight.deadlines
        loop = asyncio.get_running_loop()
        now = loop.time()
        while deadlines and (deadlines[0][0] <= now or deadlines[0][1].done()):
            _, future = deadlines.popleft()
            if not future.done():
                self._bump("timeouts")
                future.set_exception(CoalesceTimeout(flight.key, self.timeout or 0.0))
        flight.timer = loop.call_at(deadlines[0][0], self._arm, flight) if deadlines else None

    def _bump(self, name: str) -> None:
        self._counts[name] += 1
        if self._recorder is not None:
            self._recorder.count(f"{self._prefix}_{name}", 1)


def _unwrap(value: Any) -> Any:
    if isinstance(value, _Failure):
        raise value.error
    return value


def _land(flight: _Flight, task: asyncio.Task[Any]) -> None:
    """Hand the call's outcome to every waiter still waiting; stop the deadline timer."""
    if flight.timer is not None:
        flight.timer.cancel()
    if task.cancelled():
        outcome: BaseException | None = _LeaderGone()
    else:
        outcome = task.exception()
        if outcome is not None and not flight.futures:
            logger.debug("coalesced call failed with no one waiting", exc_info=outcome)
    for future in flight.futures:
        if future.done():
            continue
        if outcome is None:
            future.set_result(task.result())
        else:
            future.set_exception(outcome)


# -- the decorator -------------------------------------------------------------------

KeySpec = str | Callable[..., Hashable] | None


def coalesce(
    key: KeySpec = None,
    *,
    ttl: str | float = DEFAULT_TTL,
    stale_while_revalidate: str | float | None = None,
    timeout: str | float | None = DEFAULT_TIMEOUT,
    backend: CoalesceBackend | None = None,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_bytes: str | int = DEFAULT_MAX_BYTES,
    sizeof: Callable[[Any], int] | None = None,
    on_error: OnError = "raise",
    retries: int = 1,
    error_ttl: str | float | None = None,
    namespace: str | None = None,
    recorder: CountSink | None = None,
    clock: Clock | None = None,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Coalesce concurrent identical calls of an async function and cache results for ``ttl``.

    ``key`` is a template over the arguments (``"user:{user_id}"``), a callable taking the
    same arguments, or ``None`` for the repr of all arguments. Keys are prefixed with
    ``namespace`` (default: the function's module and qualified name), so a shared backend
    keeps functions apart. The wrapper has ``.coalescer`` and ``.key_for(*args, **kwargs)``.

    Example:
        >>> @coalesce(key="user:{user_id}", ttl="30s")
        ... async def load_profile(user_id: int) -> dict[str, int]:
        ...     return {"id": user_id}
    """

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigError(_SOURCE, "function", "an async function (async def)", fn)
        coalescer = Coalescer[T](
            ttl=ttl,
            stale_while_revalidate=stale_while_revalidate,
            timeout=timeout,
            max_entries=max_entries,
            max_bytes=max_bytes,
            sizeof=sizeof,
            on_error=on_error,
            retries=retries,
            error_ttl=error_ttl,
            backend=backend,
            recorder=recorder,
            clock=clock,
        )
        key_for = _key_builder(fn, key, namespace or f"{fn.__module__}.{fn.__qualname__}")

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await coalescer.run(
                key_for(*args, **kwargs), functools.partial(fn, *args, **kwargs)
            )

        wrapper.coalescer = coalescer  # type: ignore[attr-defined]
        wrapper.key_for = key_for  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _key_builder(fn: Callable[..., Any], spec: KeySpec, namespace: str) -> Callable[..., str]:
    signature = inspect.signature(fn)

    def bound(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        b = signature.bind(*args, **kwargs)
        b.apply_defaults()
        return b.arguments

    if callable(spec):
        user_key = spec
        return lambda *a, **kw: f"{namespace}:{user_key(*a, **kw)}"
    if isinstance(spec, str):
        template = spec
        return lambda *a, **kw: f"{namespace}:{template.format(**bound(a, kw))}"
    if spec is not None:
        raise ConfigError(_SOURCE, "key", "a template string, a callable or None", spec)

    def default(*a: Any, **kw: Any) -> str:
        parts = []
        for name, value in bound(a, kw).items():
            text = repr(value)
            if " at 0x" in text:
                raise ConfigError(
                    _SOURCE,
                    "key",
                    f"a key= for argument {name!r}, whose repr "
                    "is an address (not stable, may be reused)",
                    text,
                )
            parts.append(f"{name}={text}")
        return f"{namespace}:" + ",".join(parts)

    return default
