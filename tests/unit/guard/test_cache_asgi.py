"""The response cache middleware in-process: what is stored, keyed, coalesced and passed by."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from scalewise.clock import ManualClock
from scalewise.errors import ConfigError
from scalewise.guard.cache_asgi import ResponseCacheMiddleware


class App:
    """A Starlette app that counts how often each endpoint really ran."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.gate = asyncio.Event()
        self.gate.set()
        routes = [
            Route("/items/{id}", self.item),
            Route("/slow", self.slow),
            Route("/nocache/{kind}", self.nocache),
            Route("/cookie", self.cookie),
            Route("/missing", self.missing),
            Route("/stream", self.stream),
            Route("/boom", self.boom),
            Route("/vary", self.vary),
            Route("/other", self.item),
        ]
        self.app = Starlette(routes=routes)

    def _count(self, name: str) -> int:
        self.calls[name] = self.calls.get(name, 0) + 1
        return self.calls[name]

    async def item(self, request: Request) -> JSONResponse:
        n = self._count(request.url.path)
        return JSONResponse({"path": request.url.path, "q": str(request.query_params), "n": n})

    async def slow(self, request: Request) -> PlainTextResponse:
        n = self._count("slow")
        await self.gate.wait()
        return PlainTextResponse(f"slow {n}")

    async def nocache(self, request: Request) -> PlainTextResponse:
        n = self._count("nocache")
        header = {"store": "no-store", "private": "private, max-age=60", "nc": "no-cache"}
        return PlainTextResponse(
            f"n={n}", headers={"cache-control": header[request.path_params["kind"]]}
        )

    async def cookie(self, request: Request) -> PlainTextResponse:
        n = self._count("cookie")
        response = PlainTextResponse(f"n={n}")
        response.set_cookie("session", f"s{n}")
        return response

    async def missing(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"n={self._count('missing')}", status_code=404)

    async def stream(self, request: Request) -> StreamingResponse:
        n = self._count("stream")
        size = int(request.query_params["size"])

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(size // 1000):
                yield bytes([48 + n]) * 1000

        return StreamingResponse(chunks())

    async def boom(self, request: Request) -> Response:
        self._count("boom")
        await self.gate.wait()
        raise RuntimeError("app failed")

    async def vary(self, request: Request) -> PlainTextResponse:
        n = self._count("vary")
        return PlainTextResponse(f"n={n}", headers={"vary": "Accept-Language"})


ROUTES = {
    "/items/{id}": "30s",
    "/slow": "30s",
    "/nocache/*": "30s",
    "/cookie": "30s",
    "/missing": "30s",
    "/stream": "30s",
    "/boom": "30s",
    "/vary": "30s",
}


def setup(**kw: Any) -> tuple[App, ResponseCacheMiddleware, ManualClock]:
    app, clock = App(), ManualClock()
    options: dict[str, Any] = {"routes": ROUTES, "clock": clock, **kw}
    return app, ResponseCacheMiddleware(app.app, **options), clock


def client(mw: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=mw, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def get(mw: Any, *paths: str, headers: dict[str, str] | None = None) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        async with client(mw) as c:
            return [await c.get(p, headers=headers) for p in paths]

    return asyncio.run(main())


def test_miss_then_hit_with_age_until_ttl() -> None:
    app, mw, clock = setup()

    async def main() -> list[httpx.Response]:
        async with client(mw) as c:
            first = await c.get("/items/1")
            clock.advance(12)
            second = await c.get("/items/1")
            clock.advance(20)
            third = await c.get("/items/1")
            return [first, second, third]

    first, second, third = asyncio.run(main())
    assert (first.headers["x-cache"], second.headers["x-cache"], third.headers["x-cache"]) == (
        "MISS",
        "HIT",
        "MISS",
    )
    assert first.json() == second.json()
    assert second.headers["age"] == "12"
    assert second.headers["content-type"] == "application/json"
    assert third.json()["n"] == 2
    assert app.calls["/items/1"] == 2


def test_query_order_does_not_matter_but_values_do() -> None:
    app, mw, _ = setup()
    r = get(mw, "/items/1?a=1&b=2", "/items/1?b=2&a=1", "/items/1?a=1&b=3")
    assert [x.headers["x-cache"] for x in r] == ["MISS", "HIT", "MISS"]
    assert app.calls["/items/1"] == 2


def test_unlisted_routes_and_other_methods_pass_through_untagged() -> None:
    app, mw, _ = setup()

    async def main() -> list[httpx.Response]:
        async with client(mw) as c:
            return [await c.get("/other"), await c.get("/other"), await c.post("/items/1")]

    responses = asyncio.run(main())
    assert all("x-cache" not in r.headers for r in responses)
    assert app.calls["/other"] == 2


def test_head_is_cached_separately_from_get() -> None:
    _app, mw, _ = setup()

    async def main() -> list[httpx.Response]:
        async with client(mw) as c:
            return [await c.head("/items/1"), await c.head("/items/1"), await c.get("/items/1")]

    head1, head2, got = asyncio.run(main())
    assert (head1.headers["x-cache"], head2.headers["x-cache"], got.headers["x-cache"]) == (
        "MISS",
        "HIT",
        "MISS",
    )
    assert head2.content == b""
    assert got.json()["n"] == 2


@pytest.mark.parametrize("kind", ["store", "private", "nc"])
def test_app_cache_control_no_store_private_no_cache_are_respected(kind: str) -> None:
    _app, mw, _ = setup()
    r = get(mw, f"/nocache/{kind}", f"/nocache/{kind}")
    assert [x.headers["x-cache"] for x in r] == ["MISS", "MISS"]
    assert [x.text for x in r] == ["n=1", "n=2"]


def test_responses_that_set_cookies_are_never_cached() -> None:
    _, mw, _ = setup()
    r = get(mw, "/cookie", "/cookie")
    assert [x.text for x in r] == ["n=1", "n=2"]
    assert r[1].cookies["session"] == "s2"


def test_only_200_is_cached() -> None:
    _, mw, _ = setup()
    r = get(mw, "/missing", "/missing")
    assert [(x.status_code, x.text) for x in r] == [(404, "n=1"), (404, "n=2")]


def test_streamed_body_over_the_cap_passes_through_whole_and_uncached() -> None:
    _, mw, _ = setup(max_entry_bytes="10KB")
    big = get(mw, "/stream?size=50000", "/stream?size=50000")
    assert [len(x.content) for x in big] == [50_000, 50_000]
    assert big[1].content[:1] == b"2"  # ran again: not cached
    small = get(mw, "/stream?size=5000", "/stream?size=5000")
    assert [x.headers["x-cache"] for x in small] == ["MISS", "HIT"]
    assert small[1].content == small[0].content


def test_storable_rules_on_raw_headers() -> None:
    _, mw, _ = setup(max_entry_bytes="1KB")
    assert mw.storable([(b"content-type", b"text/plain"), (b"cache-control", b"max-age=60")])
    assert not mw.storable([(b"content-length", b"5000")])
    assert not mw.storable([(b"content-length", b"nonsense")])
    assert not mw.storable([(b"Cache-Control", b"public, No-Store")])
    assert not mw.storable([(b"vary", b"*")])


def test_vary_header_from_the_app_is_honoured() -> None:
    _, mw, _ = setup()
    assert [x.text for x in get(mw, "/vary", "/vary")] == ["n=1", "n=2"]  # not in vary_headers
    _, mw, _ = setup(vary_headers=["accept-language"])
    en = get(mw, "/vary", "/vary", headers={"accept-language": "en"})
    de = get(mw, "/vary", headers={"accept-language": "de"})
    assert [x.text for x in en] == ["n=1", "n=1"]
    assert de[0].text == "n=2"


def test_callers_with_different_identities_do_not_share() -> None:
    app, mw, _ = setup()
    a = get(mw, "/items/1", "/items/1", headers={"x-api-key": "alice"})
    b = get(mw, "/items/1", headers={"x-api-key": "bob"})
    assert [x.headers["x-cache"] for x in a + b] == ["MISS", "HIT", "MISS"]
    # Same address, different unverified bearer tokens: never the same entry.
    c = get(mw, "/items/2", headers={"authorization": "Bearer one"})
    d = get(mw, "/items/2", headers={"authorization": "Bearer two"})
    assert (c[0].json()["n"], d[0].json()["n"]) == (1, 2)
    assert app.calls["/items/1"] == 2


def test_verified_jwt_identity_shares_across_tokens_of_one_user() -> None:
    import jwt

    from scalewise.guard.cache_asgi import identity_vary

    secret = "s3cret-key-of-at-least-32-bytes-long!"
    app, mw, _ = setup(vary=identity_vary(jwt_key=secret))

    def bearer(sub: str, n: int) -> dict[str, str]:
        claims = {"sub": sub, "n": n, "exp": time.time() + 600}
        token = jwt.encode(claims, secret, algorithm="HS256")
        return {"authorization": f"Bearer {token}"}

    a1 = get(mw, "/items/1", headers=bearer("alice", 1))
    a2 = get(mw, "/items/1", headers=bearer("alice", 2))  # another token, same user
    b1 = get(mw, "/items/1", headers=bearer("bob", 1))
    assert [r.headers["x-cache"] for r in a1 + a2 + b1] == ["MISS", "HIT", "MISS"]
    assert app.calls["/items/1"] == 2


def test_custom_vary_and_none_means_do_not_cache() -> None:
    app, mw, _ = setup(vary=lambda scope: None)
    get(mw, "/items/1", "/items/1")
    assert app.calls["/items/1"] == 2
    app, mw, _ = setup(vary=lambda scope: "everyone")
    get(mw, "/items/1", headers={"x-api-key": "alice"})
    r = get(mw, "/items/1", headers={"x-api-key": "bob"})
    assert r[0].headers["x-cache"] == "HIT"


async def _burst(mw: ResponseCacheMiddleware, app: App, path: str, n: int) -> list[httpx.Response]:
    app.gate.clear()
    async with client(mw) as c:
        tasks = [asyncio.ensure_future(c.get(path)) for _ in range(n)]
        for _ in range(1000):
            if mw.stats().coalesced == n - 1:
                break
            await asyncio.sleep(0)
        app.gate.set()
        return await asyncio.gather(*tasks)


def test_identical_in_flight_requests_coalesce() -> None:
    app, mw, _ = setup()
    responses = asyncio.run(_burst(mw, app, "/slow", 50))
    assert app.calls["slow"] == 1
    tags = sorted(r.headers["x-cache"] for r in responses)
    assert tags == ["COALESCED"] * 49 + ["MISS"]
    assert {r.text for r in responses} == {"slow 1"}


def test_followers_of_a_failed_leader_go_to_the_app_themselves() -> None:
    app, mw, _ = setup()
    responses = asyncio.run(_burst(mw, app, "/boom", 5))
    assert [r.status_code for r in responses] == [500] * 5
    assert app.calls["boom"] == 5
    assert not mw._inflight


def test_follower_timeout_falls_through_to_the_app() -> None:
    app, mw, _ = setup(timeout=0.05)

    async def main() -> list[httpx.Response]:
        app.gate.clear()
        async with client(mw) as c:
            leader = asyncio.ensure_future(c.get("/slow"))
            for _ in range(100):
                if app.calls.get("slow"):
                    break
                await asyncio.sleep(0)
            follower = asyncio.ensure_future(c.get("/slow"))
            while not follower.done() and app.calls.get("slow", 0) < 2:
                await asyncio.sleep(0.01)
            app.gate.set()
            return [await leader, await follower]

    leader, follower = asyncio.run(main())
    assert (leader.text, follower.text) == ("slow 1", "slow 2")
    assert follower.headers["x-cache"] == "MISS"


def test_memory_stays_bounded_under_unique_urls() -> None:
    _, mw, _ = setup(max_entries=20, max_bytes="50KB")
    get(mw, *(f"/items/{i}?pad={'x' * (i % 200)}" for i in range(300)))
    s = mw.stats()
    assert s.entries <= 20
    assert s.bytes <= 50_000
    assert s.evictions >= 280


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"routes": "/x"}, "routes"),
        ({"routes": ["x"]}, "routes"),
        ({"routes": {"/x": "soon"}}, "routes"),
        ({"methods": ["POST"]}, "methods"),
        ({"max_entry_bytes": 0}, "max_entry_bytes"),
    ],
)
def test_bad_settings_name_the_field(kw: dict[str, Any], field: str) -> None:
    options = {"routes": ["/x"], **kw}
    with pytest.raises(ConfigError, match=field):
        ResponseCacheMiddleware(Starlette(), **options)
