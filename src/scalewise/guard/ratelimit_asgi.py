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
from typing import Any

from scalewise.guard.identity import Identity, IdentityResolver
from scalewise.guard.ratelimit import Decision, RateLimiter, decision_headers, refusal
from scalewise.options import EndpointPaths
from scalewise.types import ASGIApp, Message, Receive, Scope, Send


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
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.resolver = resolver or IdentityResolver()
        self.headers = headers
        self.exempt_exact = frozenset((paths or EndpointPaths()).all())
        self.exempt_prefixes = tuple(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._exempt(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        identity = self.resolver.resolve(scope)
        if identity.kind == "invalid":
            await _respond(send, 401, {"error": "invalid_token"}, [("www-authenticate", "Bearer")])
            return
        decision = await self._check(scope, identity)
        if not decision.allowed:
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
