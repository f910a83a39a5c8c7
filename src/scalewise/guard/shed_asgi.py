"""Load shedding for ASGI apps: a concurrency limit with a short queue, then a fast 503.

Under overload a server that accepts everything serves everyone slowly and then fails
everyone. :class:`LoadShedMiddleware` keeps the work in progress at the limit, lets a few
requests wait (FIFO, up to ``queue_timeout``) to ride out bursts, and answers the rest with
``503 Service Unavailable``, a JSON body and ``Retry-After`` at once — without reading their
body or calling the app — so admitted requests keep their normal latency and refused clients
learn immediately that they should back off or try another instance.

Health and readiness probes are never queued or shed: an orchestrator that sees a busy
instance fail ``/health`` would restart it exactly when it is needed most.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from scalewise.errors import ConfigError
from scalewise.guard.adaptive import AdaptiveLimit, FixedLimit
from scalewise.guard.concurrency import (
    DEFAULT_QUEUE_TIMEOUT,
    DEFAULT_RETRY_AFTER,
    Admission,
    ConcurrencyLimiter,
    Outcome,
)
from scalewise.guard.timeouts import json_body
from scalewise.metrics.recorder import SCOPE_KEY, Recorder
from scalewise.options import EndpointPaths
from scalewise.types import ASGIApp, Message, Receive, Scope, Send

#: Recorder counters: refusals because the queue was full, and because the wait ran out.
SHED_COUNTER: Final = "guard_shed"
SHED_TIMEOUT_COUNTER: Final = "guard_shed_queue_timeout"
QUEUED_COUNTER: Final = "guard_queued"
_OVERLOAD_STATUSES: Final = frozenset({503, 504})


@dataclass(frozen=True, slots=True)
class ShedStats:
    """What the shedder did since it started, and its state now."""

    admitted: int
    queued: int  # waited for a slot (then admitted or timed out)
    shed: int  # refused at once: the queue was full
    timed_out: int  # refused after waiting queue_timeout
    exempt: int  # health/readiness and other exempt requests, never limited
    inflight: int
    waiting: int
    limit: int


class LoadShedMiddleware:
    """Limit concurrent requests; queue a few; refuse the rest with 503 + ``Retry-After``.

    Args:
        app: the ASGI app.
        limit: maximum requests in flight (an int), or an adaptive limit from
            :mod:`scalewise.guard.adaptive`.
        max_queue: requests allowed to wait for a slot; default ``limit // 4``; 0: none wait.
        queue_timeout: longest wait in the queue (``"250ms"``); then 503.
        retry_after: seconds sent in ``Retry-After`` (rounded up to whole seconds).
        paths: scalewise's endpoint paths (``/health``, ``/ready``…), never limited.
        exempt: further exact paths never limited (e.g. ``/livez``).
        limiter: share one :class:`ConcurrencyLimiter` instead of ``limit``/``max_queue``/….
        recorder: a :class:`~scalewise.Recorder` that counts ``guard_shed``,
            ``guard_shed_queue_timeout`` and ``guard_queued``; default: the one an outer
            ``ScalewiseMiddleware`` puts in the scope.

    Example:
        >>> from starlette.applications import Starlette
        >>> app = Starlette()
        >>> app.add_middleware(LoadShedMiddleware, limit=20, queue_timeout="100ms")
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int | AdaptiveLimit | None = None,
        max_queue: int | None = None,
        queue_timeout: float | str = DEFAULT_QUEUE_TIMEOUT,
        retry_after: float | str = DEFAULT_RETRY_AFTER,
        paths: EndpointPaths | None = None,
        exempt: Iterable[str] = (),
        limiter: ConcurrencyLimiter | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.app = app
        if limiter is None:
            if limit is None:
                expected = "a concurrency limit (a whole number of at least 1) or limiter="
                raise ConfigError("LoadShedMiddleware", "limit", expected, None)
            limiter = ConcurrencyLimiter(
                limit, max_queue=max_queue, queue_timeout=queue_timeout, retry_after=retry_after
            )
        self.limiter = limiter
        self.exempt = _exempt_paths(paths or EndpointPaths(), exempt)
        self.recorder = recorder
        self._exempt_count = 0
        # Only an adaptive limit needs each response's status; a fixed one skips the wrapper.
        self._learns = not isinstance(limiter.adaptive, FixedLimit)
        self._refusals = (self._refusal("queue_full"), self._refusal("queue_timeout"))

    def stats(self) -> ShedStats:
        s = self.limiter.stats()
        return ShedStats(
            s.admitted,
            s.queued,
            s.shed,
            s.timed_out,
            self._exempt_count,
            s.inflight,
            s.waiting,
            s.limit,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            if scope["type"] == "http":
                self._exempt_count += 1
            await self.app(scope, receive, send)
            return
        limiter = self.limiter
        admission = limiter.try_acquire() if limiter.max_queue == 0 else await limiter.wait()
        if admission.queued:
            _count(self.recorder or scope.get(SCOPE_KEY), QUEUED_COUNTER)
        if not admission.admitted:
            await self._refuse(scope, send, admission)
            return
        if not self._learns:
            try:
                await self.app(scope, receive, send)
            finally:
                limiter.release(admission)
            return
        await self._run_and_learn(scope, receive, send, admission)

    async def _run_and_learn(
        self, scope: Scope, receive: Receive, send: Send, admission: Admission
    ) -> None:
        """Run the app and tell the adaptive limit how it went (503/504 mean overload)."""
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except BaseException:
            self.limiter.release(admission, ignore=True)
            raise
        self.limiter.release(admission, dropped=status in _OVERLOAD_STATUSES)

    async def _refuse(self, scope: Scope, send: Send, admission: Admission) -> None:
        timed_out = admission.outcome is Outcome.TIMED_OUT
        recorder = self.recorder or scope.get(SCOPE_KEY)
        _count(recorder, SHED_TIMEOUT_COUNTER if timed_out else SHED_COUNTER)
        start, body = self._refusals[timed_out]
        # Copies: middleware further out may add headers to the message it is given.
        await send({**start, "headers": list(start["headers"])})
        await send(dict(body))

    def _refusal(self, reason: str) -> tuple[Message, Message]:
        """A 503's two ASGI messages, built once: refusing must cost next to nothing."""
        retry_after = self.limiter.retry_after
        payload = {
            "error": "overloaded",
            "detail": "the service is at capacity; retry later",
            "reason": reason,
            "retry_after": retry_after,
        }
        body = json_body(payload)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(max(1, math.ceil(retry_after))).encode()),
        ]
        start = {"type": "http.response.start", "status": 503, "headers": headers}
        return start, {"type": "http.response.body", "body": body}


def _count(recorder: Recorder | None, counter: str) -> None:
    if recorder is not None:
        recorder.count(counter)


def _exempt_paths(paths: EndpointPaths, exempt: Iterable[str]) -> frozenset[str]:
    if not isinstance(paths, EndpointPaths):
        raise ConfigError("LoadShedMiddleware", "paths", "an EndpointPaths", paths)
    extra = (exempt,) if isinstance(exempt, str) else tuple(exempt)
    for index, path in enumerate(extra):
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError(
                "LoadShedMiddleware", f"exempt[{index}]", "a path starting with '/'", path
            )
    return frozenset((*paths.all(), *extra))
