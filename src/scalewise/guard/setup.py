"""Every configured guard around an ASGI app, in the order that keeps each one cheap.

Outermost first: the rate limit (a refused caller costs one check), the load shedder (a shed
request is answered before anything reads its body), the timeout, the body limit, then the
response cache next to the app (a hit still counted against the caller's rate, never shed
because it is cheap). ``ScalewiseMiddleware``, if used, goes outside all of them so shed and
limited requests still show in the figures::

    app = guard(app)                       # from scalewise.yaml / SCALEWISE_* variables
    app.add_middleware(ScalewiseMiddleware)  # or ScalewiseMiddleware(guard(app))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scalewise.guard.identity import IdentityResolver
from scalewise.guard.ratelimit import RateLimiter
from scalewise.guard.ratelimit_asgi import RateLimitMiddleware
from scalewise.guard.shed_asgi import LoadShedMiddleware
from scalewise.guard.timeouts import BodyLimitMiddleware, TimeoutMiddleware
from scalewise.options import EndpointPaths
from scalewise.types import ASGIApp

if TYPE_CHECKING:
    from scalewise.config.guards_model import GuardsSection
    from scalewise.config.model import ScalewiseConfig


def guard(
    app: ASGIApp,
    config: ScalewiseConfig | None = None,
    *,
    recorder: Any = None,
) -> ASGIApp:
    """Wrap ``app`` in the guards ``config.guards`` switches on (default: load the config)."""
    if config is None:
        from scalewise.config import load_config  # noqa: PLC0415 - pydantic only when asked

        config = load_config()
    g = config.guards
    paths = EndpointPaths(**config.endpoints.model_dump())
    resolver = _resolver(g)
    if g.cache_routes:
        from scalewise.guard.cache_asgi import ResponseCacheMiddleware  # noqa: PLC0415

        app = ResponseCacheMiddleware(
            app, routes=g.cache_routes, ttl=g.cache_ttl, vary=lambda s: resolver.resolve(s).key,
            max_entries=g.cache_max_entries, max_bytes=g.cache_max_bytes, recorder=recorder,
        )  # fmt: skip
    if g.max_body is not None:
        app = BodyLimitMiddleware(app, max_body=g.max_body, recorder=recorder)
    if g.request_timeout is not None:
        app = TimeoutMiddleware(app, timeout=g.request_timeout, recorder=recorder)
    if g.max_concurrent is not None:
        app = LoadShedMiddleware(
            app, limit=_limit(g), max_queue=g.max_queue, queue_timeout=g.queue_timeout,
            paths=paths, exempt=g.shed_exempt, recorder=recorder,
        )  # fmt: skip
    if g.rate_limit is not None:
        limiter = RateLimiter(
            g.rate_limit, _backend(g), burst=g.rate_limit_burst or 0,
            tiers=g.rate_limit_tiers or None, routes=g.rate_limit_routes or None,
            fail_open=g.rate_limit_fail_open,
        )  # fmt: skip
        app = RateLimitMiddleware(
            app, limiter, resolver=resolver, headers=g.rate_limit_headers, paths=paths,
            exempt=g.rate_limit_exempt, recorder=recorder,
        )  # fmt: skip
    return app


def _resolver(g: GuardsSection) -> IdentityResolver:
    return IdentityResolver(
        api_key_header=g.api_key_header, jwt_key=g.jwt_key, jwt_algorithms=g.jwt_algorithms,
        jwt_claim=g.jwt_claim, jwt_audience=g.jwt_audience, jwt_issuer=g.jwt_issuer,
        tier_claim=g.tier_claim, trusted_proxies=g.trusted_proxies, invalid_token=g.invalid_token,
    )  # fmt: skip


def _limit(g: GuardsSection) -> Any:
    if not g.adaptive:
        return g.max_concurrent
    from scalewise.guard.adaptive import adaptive_limit  # noqa: PLC0415

    limit = int(g.max_concurrent or 1)
    return adaptive_limit(g.adaptive, initial_limit=limit, max_limit=limit * 10)


def _backend(g: GuardsSection) -> Any:
    if g.rate_limit_backend == "memory":
        from scalewise.guard.backends.memory import MemoryBackend  # noqa: PLC0415

        return MemoryBackend()
    from scalewise.guard.backends.redis import AsyncRedisBackend  # noqa: PLC0415 - optional dep

    return AsyncRedisBackend.from_url(g.rate_limit_backend)
