"""Per-caller rate limiting as WSGI middleware (Flask, Django, any WSGI app).

Same answers as :mod:`scalewise.guard.ratelimit_asgi`: 429 with a JSON body, Retry-After and
the RateLimit fields on refusal; the fields added to admitted responses; 503 when the backend
is down and the limiter fails closed; 401 for a rejected token; scalewise's endpoints exempt.
Use ``MemoryBackend`` (thread-safe) or the sync ``RedisBackend``.

Example:
    >>> from flask import Flask
    >>> app = Flask(__name__)
    >>> app.wsgi_app = RateLimitWSGIMiddleware(app.wsgi_app, RateLimiter("100/minute"))
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from scalewise.guard.identity import IdentityResolver
from scalewise.guard.ratelimit import RateLimiter, decision_headers, refusal
from scalewise.options import EndpointPaths
from scalewise.types import Environ, StartResponse, WSGIApp

_REASONS = {401: "Unauthorized", 429: "Too Many Requests", 503: "Service Unavailable"}
_NAMES = {
    "ratelimit-policy": "RateLimit-Policy",
    "ratelimit": "RateLimit",
    "retry-after": "Retry-After",
    "www-authenticate": "WWW-Authenticate",
}


class RateLimitWSGIMiddleware:
    """Wrap a WSGI ``app`` so every request is checked against ``limiter`` first.

    Args mirror :class:`~scalewise.guard.ratelimit_asgi.RateLimitMiddleware`.
    """

    def __init__(
        self,
        app: WSGIApp,
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

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path in self.exempt_exact or (
            self.exempt_prefixes and path.startswith(self.exempt_prefixes)
        ):
            return self.app(environ, start_response)
        identity = self.resolver.resolve_environ(environ)
        if identity.kind == "invalid":
            body = {"error": "invalid_token"}
            return _respond(start_response, 401, body, [("www-authenticate", "Bearer")])
        decision = self.limiter.check(
            identity.key, tier=identity.tier, path=path, method=environ.get("REQUEST_METHOD")
        )
        if not decision.allowed:
            return _respond(start_response, *refusal(decision))
        if not self.headers or decision.degraded:
            return self.app(environ, start_response)
        extra = [(_NAMES.get(name, name), value) for name, value in decision_headers(decision)]

        def start_with_headers(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            return start_response(status, [*headers, *extra], *exc)

        return self.app(environ, start_with_headers)


def _respond(
    start_response: StartResponse,
    status: int,
    body: dict[str, Any],
    headers: list[tuple[str, str]],
) -> list[bytes]:
    payload = json.dumps(body, separators=(",", ":")).encode()
    start_response(
        f"{status} {_REASONS[status]}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            *((_NAMES.get(name, name), value) for name, value in headers),
        ],
    )
    return [payload]
