"""The ASGI and WSGI rate-limit middleware in-process (httpx transports, no sockets)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from tests.conftest import free_port

from scalewise.clock import ManualClock
from scalewise.guard.backends.memory import MemoryBackend
from scalewise.guard.backends.redis import AsyncRedisBackend, RedisBackend
from scalewise.guard.identity import IdentityResolver
from scalewise.guard.ratelimit import RateLimiter
from scalewise.guard.ratelimit_asgi import RateLimitMiddleware
from scalewise.guard.ratelimit_wsgi import RateLimitWSGIMiddleware
from scalewise.options import EndpointPaths

SECRET = "a-test-secret-that-is-at-least-32-bytes-long"


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hi", headers={"x-app": "yes"})


STARLETTE = Starlette(
    routes=[Route(p, hello, methods=["GET", "POST"]) for p in ("/", "/health", "/ready", "/login")]
)


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-App", "yes")])
    return [b"hi"]


def limiter(limit: str = "2/minute", **options: Any) -> RateLimiter:
    return RateLimiter(limit, MemoryBackend(clock=ManualClock()), **options)


Getter = Callable[..., list[httpx.Response]]


def asgi_get(app: Any) -> Getter:
    def run(path: str = "/", n: int = 1, method: str = "GET", **kw: Any) -> list[httpx.Response]:
        async def main() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=app, client=("198.51.100.2", 1234))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return [await client.request(method, path, **kw) for _ in range(n)]

        return asyncio.run(main())

    return run


def wsgi_get(app: Any) -> Getter:
    def run(path: str = "/", n: int = 1, method: str = "GET", **kw: Any) -> list[httpx.Response]:
        transport = httpx.WSGITransport(app=app, remote_addr="198.51.100.2")
        with httpx.Client(transport=transport, base_url="http://t") as client:
            return [client.request(method, path, **kw) for _ in range(n)]

    return run


def both(rl: RateLimiter | Callable[[], RateLimiter], **options: Any) -> list[Getter]:
    make = rl if callable(rl) else (lambda: rl)
    return [
        asgi_get(RateLimitMiddleware(STARLETTE, make(), **options)),
        wsgi_get(RateLimitWSGIMiddleware(wsgi_app, make(), **options)),
    ]


@pytest.mark.parametrize("shell", [0, 1], ids=["asgi", "wsgi"])
def test_429_with_json_body_retry_after_and_headers(shell: int) -> None:
    get = both(limiter)[shell]
    ok1, ok2, refused = get(n=3)
    assert (ok1.status_code, ok2.status_code, refused.status_code) == (200, 200, 429)
    assert ok1.headers["x-app"] == "yes"
    assert ok1.headers["ratelimit-policy"] == '"default";q=2;w=60'
    assert ok1.headers["ratelimit"] == '"default";r=1;t=30'
    assert refused.json() == {
        "error": "rate_limited",
        "retry_after": 30,
        "limit": 2,
        "policy": "default",
    }
    assert refused.headers["retry-after"] == "30"
    assert refused.headers["content-type"] == "application/json"
    assert refused.headers["ratelimit"] == '"default";r=0;t=30'


@pytest.mark.parametrize("shell", [0, 1], ids=["asgi", "wsgi"])
def test_health_ready_and_scalewise_endpoints_are_exempt(shell: int) -> None:
    get = both(lambda: limiter("1/minute"), exempt=["/static/"])[shell]
    assert [r.status_code for r in get("/health", n=5)] == [200] * 5
    assert [r.status_code for r in get("/ready", n=5)] == [200] * 5
    assert "ratelimit" not in get("/health")[0].headers
    assert [r.status_code for r in get("/", n=2)] == [200, 429]


def test_custom_endpoint_paths_are_exempt() -> None:
    app = RateLimitMiddleware(
        STARLETTE, limiter("1/minute"), paths=EndpointPaths(health="/login", ready=None)
    )
    assert [r.status_code for r in asgi_get(app)("/login", n=3)] == [200] * 3
    assert [r.status_code for r in asgi_get(app)("/ready", n=2)] == [200, 429]


@pytest.mark.parametrize("shell", [0, 1], ids=["asgi", "wsgi"])
def test_headers_can_be_switched_off(shell: int) -> None:
    get = both(limiter, headers=False)[shell]
    ok, _, refused = get(n=3)
    assert "ratelimit" not in ok.headers
    assert refused.status_code == 429  # a refusal still says when to come back
    assert refused.headers["retry-after"] == "30"


@pytest.mark.parametrize("shell", [0, 1], ids=["asgi", "wsgi"])
def test_callers_are_limited_separately(shell: int) -> None:
    get = both(limiter("1/minute"))[shell]
    assert get(headers={"x-api-key": "alice"})[0].status_code == 200
    assert get(headers={"x-api-key": "bob"})[0].status_code == 200
    assert get(headers={"x-api-key": "alice"})[0].status_code == 429
    assert get()[0].status_code == 200  # by IP


@pytest.mark.parametrize("shell", [0, 1], ids=["asgi", "wsgi"])
def test_per_route_and_tier_limits(shell: int) -> None:
    rl = limiter("10/minute", routes={"POST /login": "1/minute"}, tiers={"pro": "100/minute"})
    get = both(rl, resolver=IdentityResolver(jwt_key=SECRET))[shell]
    assert [r.status_code for r in get("/login", n=2, method="POST")] == [200, 429]
    assert get("/login")[0].headers["ratelimit-policy"] == '"default";q=10;w=60'
    pro = jwt.encode({"sub": "p", "tier": "pro", "exp": time.time() + 60}, SECRET)
    headers = {"authorization": f"Bearer {pro}"}
    assert get(headers=headers)[0].headers["ratelimit-policy"] == '"pro";q=100;w=60'


@pytest.mark.parametrize("shell", [0, 1], ids=["asgi", "wsgi"])
def test_invalid_token_rejected_or_ignored(shell: int) -> None:
    forged = jwt.encode({"sub": "admin", "exp": time.time() + 60}, "x" * 40)
    headers = {"authorization": f"Bearer {forged}"}
    reject = IdentityResolver(jwt_key=SECRET, invalid_token="reject")
    refused = both(limiter(), resolver=reject)[shell](headers=headers)[0]
    assert refused.status_code == 401
    assert refused.json() == {"error": "invalid_token"}
    fallback = both(limiter("1/minute"), resolver=IdentityResolver(jwt_key=SECRET))[shell]
    # a forged token does not buy a fresh bucket: it falls back to the caller's IP
    assert [fallback(headers=headers)[0].status_code for _ in range(2)] == [200, 429]
    assert fallback()[0].status_code == 429


@pytest.mark.parametrize("shell", [0, 1], ids=["asgi", "wsgi"])
def test_huge_and_odd_headers(shell: int) -> None:
    get = both(limiter("1/minute"), resolver=IdentityResolver(jwt_key=SECRET))[shell]
    huge = {"x-api-key": "k" * 60_000, "authorization": "Bearer " + "a.b." * 20_000}
    assert [r.status_code for r in get(headers=huge, n=2)] == [200, 429]
    # httpx's WSGI transport only passes ASCII headers; ASGI gets raw UTF-8 bytes
    odd = "a b\t%00\"'<>{}|\\" if shell else "ключé %00".encode()
    assert [r.status_code for r in get(headers={"x-api-key": odd}, n=2)] == [200, 429]


@pytest.mark.parametrize("fail_open", [True, False])
def test_backend_down_app_keeps_answering(fail_open: bool) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    asgi = RateLimitMiddleware(
        STARLETTE, RateLimiter("1/s", AsyncRedisBackend.from_url(url), fail_open=fail_open)
    )
    wsgi = RateLimitWSGIMiddleware(
        wsgi_app, RateLimiter("1/s", RedisBackend.from_url(url), fail_open=fail_open)
    )
    for get in (asgi_get(asgi), wsgi_get(wsgi)):
        responses = get(n=3)
        expected = 200 if fail_open else 503
        assert [r.status_code for r in responses] == [expected] * 3
        assert "ratelimit" not in responses[0].headers
        if not fail_open:
            assert responses[0].headers["retry-after"] == "1"
            assert responses[0].json()["error"] == "rate_limit_unavailable"
        assert get("/health")[0].status_code == 200


def test_websocket_and_lifespan_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = RateLimitMiddleware(app, limiter("1/minute"))

    async def main() -> None:
        for kind in ("lifespan", "websocket", "lifespan"):
            await middleware({"type": kind, "path": "/"}, None, None)  # type: ignore[arg-type]

    asyncio.run(main())
    assert seen == ["lifespan", "websocket", "lifespan"]
