"""Per-caller rate limiting as pure ASGI middleware (Starlette, FastAPI, Quart, …).

A refused request is answered here with ``429`` and a JSON body
``{"error": "rate_limited", "retry_after": 3, "limit": 100, "policy": "default"}`` plus
``Retry-After`` and the RateLimit fields; an admitted one gets the RateLimit fields added to
the app's response (``headers=False`` switches that off). When the backend is down and the
limiter fails closed the answer is ``503`` with ``Retry-After``; a JWT that fails
verification under ``invalid_token="reject"`` gets ``401``. ``/health``, ``/ready`` and
scalewise's other endpoints are never limited, so probes keep passing under a flood.

Example:
    >>> from starlette.applications import Starlette
    >>> app = RateLimitMiddleware(Starlette(), RateLimiter("100/minute"))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from scalewise.guard.identity import Identity, IdentityResolver
from scalewise.guard.ratelimit import Decision, RateLimiter, decision_headers, refusal
from scalewise.metrics.recorder import SCOPE_KEY
from scalewise.options import EndpointPaths
from scalewise.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from scalewise.guard.cache import CountSink

#: Recorder counters: 429s, 503s while the backend is down (fail closed), and rejected JWTs.
RATE_LIMITED_COUNTER: Final = "guard_rate_limited"
UNAVAILABLE_COUNTER: Final = "guard_rate_limit_unavailable"
INVALID_TOKEN_COUNTER: Final = "guard_invalid_token"


class RateLimitMiddleware:
    """Wrap ``app`` so every HTTP request is checked against ``limiter`` first.

    Args:
        app: the ASGI app.
        limiter: the :class:`RateLimiter` (use ``AsyncRedisBackend`` to share across
            instances; ``MemoryBackend`` limits per process).
        resolver: how callers are identified (default: API key, then user, then IP).
        headers: add ``RateLimit-Policy``/``RateLimit`` to admitted responses.
        paths: scalewise's endpoints, exempt from limiting.
        exempt: further path prefixes never limited (static files, webhooks).
        recorder: counts ``guard_rate_limited``, ``guard_rate_limit_unavailable`` and
            ``guard_invalid_token``; default: the one an outer ``ScalewiseMiddleware`` puts
            in the scope.
    """

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        *,
        resolver: IdentityResolver | None = None,
        headers: bool = True,
        paths: EndpointPaths | None = None,
        exempt: Sequence[str] = (),
        recorder: CountSink | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.resolver = resolver or IdentityResolver()
        self.headers = headers
        self.exempt_exact = frozenset((paths or EndpointPaths()).all())
        self.exempt_prefixes = tuple(exempt)
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._exempt(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        identity = self.resolver.resolve(scope)
        if identity.kind == "invalid":
            self._count(scope, INVALID_TOKEN_COUNTER)
            await _respond(send, 401, {"error": "invalid_token"}, [("www-authenticate", "Bearer")])
            return
        decision = await self._check(scope, identity)
        if not decision.allowed:
            self._count(scope, UNAVAILABLE_COUNTER if decision.degraded else RATE_LIMITED_COUNTER)
            await _respond(send, *refusal(decision))
            return
        if not self.headers or decision.degraded:
            await self.app(scope, receive, send)
            return
        extra = [(k.encode(), v.encode()) for k, v in decision_headers(decision)]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _count(self, scope: Scope, counter: str) -> None:
        recorder = self.recorder or scope.get(SCOPE_KEY)
        if recorder is not None:
            recorder.count(counter)

    def _exempt(self, path: str) -> bool:
        return path in self.exempt_exact or (
            bool(self.exempt_prefixes) and path.startswith(self.exempt_prefixes)
        )

    async def _check(self, scope: Scope, identity: Identity) -> Decision:
        return await self.limiter.acheck(
            identity.key, tier=identity.tier, path=scope.get("path"), method=scope.get("method")
        )


async def _respond(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
) -> None:
    payload = json.dumps(body, separators=(",", ":")).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((k.encode(), v.encode()) for k, v in headers),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
