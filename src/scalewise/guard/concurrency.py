"""Concurrency limit with a bounded FIFO wait queue: the core of load shedding.

A service has a concurrency it can sustain (Little's law: throughput × latency). Past it,
extra requests only queue inside the server, so every response gets slower and then times
out. The limiter admits at most ``limit`` at once, lets at most ``max_queue`` more wait up to
``queue_timeout`` for a slot (to absorb short bursts), and refuses the rest at once, so a
refusal costs microseconds instead of a slow failure.

Refusals are values (:class:`Admission`), never exceptions; only the ASGI adapter turns one
into a 503. The bookkeeping lives in a small synchronous core that both shells share: an
asyncio shell (:class:`ConcurrencyLimiter`) and a threading one for WSGI
(:class:`SyncConcurrencyLimiter`). ``limit`` is an int or an adaptive limit from
:mod:`scalewise.guard.adaptive`, which then learns from every finished request.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NamedTuple

from scalewise.clock import Clock, SystemClock
from scalewise.errors import ConfigError
from scalewise.guard.adaptive import AdaptiveLimit, FixedLimit
from scalewise.units import DURATION_EXPECTED, parse_duration

DEFAULT_QUEUE_TIMEOUT: Final = 1.0
DEFAULT_RETRY_AFTER: Final = 1.0


class Outcome(StrEnum):
    """How an attempt to get a slot ended."""

    ADMITTED = "admitted"
    SHED = "shed"  # the wait queue was full (or queueing was not allowed): refused at once
    TIMED_OUT = "timed_out"  # waited queue_timeout in the queue without getting a slot


class _Ticket:
    """One admission's slot; ``wake`` is called by the core when a queued ticket is granted."""

    __slots__ = ("granted", "inflight", "released", "start", "wake")

    def __init__(self, wake: Callable[[], None] | None = None) -> None:
        self.granted = False
        self.released = False
        self.start = 0.0
        self.inflight = 0
        self.wake = wake


class Admission(NamedTuple):
    """The answer to "may this request run now?" (immutable).

    A NamedTuple rather than a frozen dataclass: it is built on every request, and builds
    in a quarter of the time.

    Attributes:
        outcome: admitted, shed (queue full) or timed_out (waited too long).
        waited: seconds spent in the wait queue (0 when admitted or shed at once).
        limit: the concurrency limit when the decision was made.
        inflight: requests running when the decision was made (including this one if admitted).
        retry_after: seconds a refused client should wait before trying again.
        queued: whether it waited in the queue (then admitted or timed out).
    """

    outcome: Outcome
    waited: float
    limit: int
    inflight: int
    retry_after: float
    queued: bool = False
    ticket: _Ticket | None = None  # the slot to give back; None for refusals

    @property
    def admitted(self) -> bool:
        return self.outcome is Outcome.ADMITTED

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` takes whole seconds (RFC 9110), so round up and never say 0."""
        return str(max(1, math.ceil(self.retry_after)))


@dataclass(frozen=True, slots=True)
class ConcurrencyStats:
    """Counts since the limiter was created, and its state now."""

    admitted: int
    queued: int  # had to wait (then admitted or timed out)
    shed: int
    timed_out: int
    inflight: int
    waiting: int
    limit: int


class _Core:
    """The bookkeeping shared by both shells; not thread-safe (the sync shell locks it)."""

    def __init__(self, limit: AdaptiveLimit, max_queue: int) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.inflight = 0
        self.waiters: deque[_Ticket] = deque()
        self.counts = {"admitted": 0, "queued": 0, "shed": 0, "timed_out": 0}

    def try_admit(self, ticket: _Ticket) -> bool:
        """Take a free slot unless others are already waiting for one (FIFO: no overtaking)."""
        if self.waiters or self.inflight >= self.limit.limit:
            return False
        self._grant(ticket)
        return True

    def enqueue(self, ticket: _Ticket) -> bool:
        if len(self.waiters) >= self.max_queue:
            self.counts["shed"] += 1
            return False
        self.waiters.append(ticket)
        self.counts["queued"] += 1
        return True

    def withdraw(self, ticket: _Ticket) -> bool:
        """Leave the queue after a timeout; False if a slot was granted in the meantime."""
        if ticket.granted:
            return False
        self.waiters.remove(ticket)
        self.counts["timed_out"] += 1
        return True

    def release(self, ticket: _Ticket) -> None:
        if ticket.released or not ticket.granted:
            return
        ticket.released = True
        self.inflight -= 1
        self.pump()

    def pump(self) -> None:
        """Hand free slots to the oldest waiters (also after an adaptive limit grew)."""
        while self.waiters and self.inflight < self.limit.limit:
            ticket = self.waiters.popleft()
            self._grant(ticket)
            if ticket.wake is not None:
                ticket.wake()

    def _grant(self, ticket: _Ticket) -> None:
        self.inflight += 1
        self.counts["admitted"] += 1
        ticket.granted = True
        ticket.inflight = self.inflight

    def stats(self) -> ConcurrencyStats:
        return ConcurrencyStats(
            **self.counts, inflight=self.inflight, waiting=len(self.waiters), limit=self.limit.limit
        )


def _checked_limit(owner: str, limit: object) -> AdaptiveLimit:
    if isinstance(limit, AdaptiveLimit):
        return limit
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(
            owner, "limit", "a whole number of at least 1 or an adaptive limit", limit
        )
    return FixedLimit(limit)


def _checked_queue(owner: str, max_queue: object, limit: AdaptiveLimit) -> int:
    if max_queue is None:
        # A full queue drains in a quarter of a service time, so under sustained overload an
        # admitted request waits ~0.25× the handler's latency: p99 stays under 2× unloaded.
        return limit.limit // 4
    if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
        raise ConfigError(owner, "max_queue", "a whole number of at least 0", max_queue)
    return max_queue


def seconds_option(owner: str, name: str, value: float | str, *, zero: bool = False) -> float:
    """A duration in human units; zero only where ``zero`` allows it (e.g. "do not wait")."""
    try:
        seconds = parse_duration(value)
    except (ValueError, TypeError, AttributeError):
        raise ConfigError(owner, name, DURATION_EXPECTED, value) from None
    if seconds <= 0 and not (zero and seconds == 0):
        raise ConfigError(owner, name, "a duration greater than 0", value)
    return seconds


class _Limiter:
    """What both shells share: validation, decisions as values, and feeding the limit."""

    def __init__(
        self,
        limit: int | AdaptiveLimit,
        *,
        max_queue: int | None = None,
        queue_timeout: float | str = DEFAULT_QUEUE_TIMEOUT,
        retry_after: float | str = DEFAULT_RETRY_AFTER,
        clock: Clock | None = None,
    ) -> None:
        owner = type(self).__name__
        adaptive = _checked_limit(owner, limit)
        self.max_queue = _checked_queue(owner, max_queue, adaptive)
        self.queue_timeout = seconds_option(owner, "queue_timeout", queue_timeout, zero=True)
        self.retry_after = seconds_option(owner, "retry_after", retry_after)
        self.clock: Clock = clock or SystemClock()
        self._core = _Core(adaptive, self.max_queue)
        # A fixed limit learns nothing: skip the clock reads and samples on the hot path.
        self._learns = not isinstance(adaptive, FixedLimit)

    @property
    def limit(self) -> int:
        return self._core.limit.limit

    @property
    def adaptive(self) -> AdaptiveLimit:
        return self._core.limit

    @property
    def inflight(self) -> int:
        return self._core.inflight

    @property
    def waiting(self) -> int:
        return len(self._core.waiters)

    def stats(self) -> ConcurrencyStats:
        return self._core.stats()

    def _decision(
        self, outcome: Outcome, ticket: _Ticket, waited: float | None = None
    ) -> Admission:
        """The value handed back; ``waited`` is None unless the request sat in the queue."""
        core = self._core
        if outcome is Outcome.ADMITTED:
            if self._learns:
                ticket.start = self.clock.monotonic()
            return Admission(
                outcome, waited or 0.0, core.limit.limit, core.inflight, self.retry_after,
                waited is not None, ticket,
            )  # fmt: skip
        return Admission(
            outcome, waited or 0.0, core.limit.limit, core.inflight, self.retry_after,
            waited is not None,
        )  # fmt: skip

    def _try(self) -> Admission:
        ticket = _Ticket()
        if self._core.try_admit(ticket):
            return self._decision(Outcome.ADMITTED, ticket)
        self._core.counts["shed"] += 1
        return self._decision(Outcome.SHED, ticket)

    def _release(self, admission: Admission, dropped: bool, ignore: bool) -> None:
        ticket = admission.ticket
        if ticket is None or ticket.released:
            return
        self._core.release(ticket)
        if self._learns and not ignore:
            now = self.clock.monotonic()
            self._core.limit.sample(now - ticket.start, ticket.inflight, dropped, now)
            self._core.pump()  # the limit may have grown


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ConcurrencyLimiter(_Limiter):
    """At most ``limit`` concurrent holders on one asyncio event loop; FIFO queue beyond.

    Args:
        limit: maximum in flight, or an adaptive limit (``Gradient2Limit``, ``AIMDLimit``).
        max_queue: requests allowed to wait for a slot; default ``limit // 4``; 0: none wait.
        queue_timeout: longest wait for a slot (``"250ms"``, ``1``); then the caller is refused.
        retry_after: seconds suggested to refused callers (``Retry-After``).
        clock: measures waits and request durations (fed to an adaptive limit).

    Example:
        >>> import asyncio
        >>> limiter = ConcurrencyLimiter(2, max_queue=0)
        >>> async def handle():
        ...     async with limiter.acquire() as admission:
        ...         return admission.outcome.value if admission.admitted else "503"
        >>> asyncio.run(handle())
        'admitted'
    """

    def try_acquire(self) -> Admission:
        """A slot now or a refusal now (never waits); release admitted ones with ``release``."""
        return self._try()

    async def wait(self) -> Admission:
        """A slot, waiting up to ``queue_timeout`` in the FIFO queue when none is free."""
        core = self._core
        ticket = _Ticket()
        if core.try_admit(ticket):
            return self._decision(Outcome.ADMITTED, ticket)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket.wake = lambda: _resolve(future)
        if not core.enqueue(ticket):
            return self._decision(Outcome.SHED, ticket)
        began = self.clock.monotonic()
        try:
            async with asyncio.timeout(self.queue_timeout):
                await future
        except TimeoutError:
            if core.withdraw(ticket):
                return self._decision(Outcome.TIMED_OUT, ticket, self.clock.monotonic() - began)
        except BaseException:  # cancelled while waiting: give back a slot granted meanwhile
            if not core.withdraw(ticket):
                core.release(ticket)
            raise
        return self._decision(Outcome.ADMITTED, ticket, self.clock.monotonic() - began)

    def release(self, admission: Admission, *, dropped: bool = False, ignore: bool = False) -> None:
        """Give the slot back (idempotent; a refusal holds none).

        ``dropped``: the request timed out or was refused downstream, which an adaptive limit
        reads as overload. ``ignore``: it failed for its own reasons (an exception), so its
        duration says nothing about load and is not sampled (Netflix's ``onIgnore``).
        """
        self._release(admission, dropped, ignore)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Admission]:
        """``async with limiter.acquire() as a:`` waits for a slot and always gives it back.

        A block that times out or is cancelled counts as dropped; one that raises anything
        else is not sampled (see :meth:`release`).
        """
        admission = await self.wait()
        try:
            yield admission
        except (TimeoutError, asyncio.CancelledError):
            self.release(admission, dropped=True)
            raise
        except BaseException:
            self.release(admission, ignore=True)
            raise
        self.release(admission)


class SyncConcurrencyLimiter(_Limiter):
    """The same limiter for threads (WSGI servers such as gunicorn's gthread workers)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lock = threading.Lock()

    def try_acquire(self) -> Admission:
        with self._lock:
            return self._try()

    def wait(self) -> Admission:
        event = threading.Event()
        ticket = _Ticket(event.set)
        core = self._core
        with self._lock:
            if core.try_admit(ticket):
                return self._decision(Outcome.ADMITTED, ticket)
            if not core.enqueue(ticket):
                return self._decision(Outcome.SHED, ticket)
        began = self.clock.monotonic()
        event.wait(self.queue_timeout)
        with self._lock:
            if not ticket.granted and core.withdraw(ticket):
                return self._decision(Outcome.TIMED_OUT, ticket, self.clock.monotonic() - began)
            return self._decision(Outcome.ADMITTED, ticket, self.clock.monotonic() - began)

    def release(self, admission: Admission, *, dropped: bool = False, ignore: bool = False) -> None:
        with self._lock:
            self._release(admission, dropped, ignore)

    @contextmanager
    def acquire(self) -> Iterator[Admission]:
        admission = self.wait()
        try:
            yield admission
        except TimeoutError:
            self.release(admission, dropped=True)
            raise
        except BaseException:
            self.release(admission, ignore=True)
            raise
        self.release(admission)
