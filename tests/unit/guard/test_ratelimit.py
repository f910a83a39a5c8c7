"""RateLimiter over the memory backend: tiers, routes, headers, bounds, failure modes."""

from __future__ import annotations

import asyncio
import logging
import re
import threading

import pytest
from tests.conftest import free_port

from scalewise.clock import ManualClock
from scalewise.errors import ConfigError
from scalewise.guard.backends.memory import MemoryBackend
from scalewise.guard.backends.redis import AsyncRedisBackend, RedisBackend
from scalewise.guard.ratelimit import (
    HEADERS_DRAFT,
    Decision,
    Rate,
    RateLimiter,
    decision_headers,
    refusal,
)


def limiter(limit: str = "3/s", **options: object) -> tuple[RateLimiter, ManualClock]:
    clock = ManualClock()
    return RateLimiter(limit, MemoryBackend(clock=clock), **options), clock  # type: ignore[arg-type]


def test_check_returns_decisions_not_exceptions() -> None:
    rl, clock = limiter()
    decisions = [rl.check("u") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[-1].retry_after == pytest.approx(1 / 3)
    assert decisions[-1].limit == 3
    assert decisions[-1].window == 1
    clock.advance(1 / 3)
    assert rl.check("u").allowed
    assert rl.check("other").allowed  # keys are independent


def test_async_check_shares_state() -> None:
    rl, _ = limiter("2/minute")

    async def main() -> list[bool]:
        return [(await rl.acheck("u")).allowed for _ in range(2)] + [rl.check("u").allowed]

    assert asyncio.run(main()) == [True, True, False]


def test_tiers() -> None:
    rl, _ = limiter("1/minute", tiers={"free": "2/minute", "pro": "5/minute"})
    assert sum(rl.check("a", tier="free").allowed for _ in range(10)) == 2
    assert sum(rl.check("b", tier="pro").allowed for _ in range(10)) == 5
    assert sum(rl.check("c", tier="unknown").allowed for _ in range(10)) == 1
    assert rl.check("b", tier="pro").policy == "pro"


def test_routes_have_their_own_buckets_and_first_match_wins() -> None:
    rl, _ = limiter(
        "100/minute",
        routes={"POST /login": "2/minute", "/items/{id}": "3/minute", "/export/*": "1/hour"},
    )
    login = [rl.check("u", path="/login", method="POST") for _ in range(3)]
    assert [d.allowed for d in login] == [True, True, False]
    assert login[0].policy == "POST /login"
    assert rl.check("u", path="/login", method="GET").policy == "default"
    items = [rl.check("u", path=f"/items/{i}", method="GET").allowed for i in range(4)]
    assert items == [True, True, True, False]  # one bucket for the template, not per id
    assert rl.check("u", path="/items/1/parts", method="GET").policy == "default"
    assert rl.check("u", path="/export/a/b.csv").policy == "/export/*"
    # only the two requests that matched no route went to the default bucket
    assert rl.check("u", path="/search").remaining == 97


def test_cost() -> None:
    rl, _ = limiter("10/s")
    assert rl.check("u", cost=7).remaining == 3
    assert not rl.check("u", cost=4).allowed
    assert rl.check("u", cost=0).remaining == 3
    for bad in (-1, 11, 1.5, True):
        with pytest.raises(ConfigError, match="cost"):
            rl.check("u", cost=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"limit": "0/minute"}, "limit"),
        ({"limit": "-5/s"}, "limit"),
        ({"limit": "ten/minute"}, "limit"),
        ({"tiers": {"free": "0/s"}}, "tiers.free"),
        ({"tiers": {"": "1/s"}}, "tiers"),
        ({"routes": {"/a": "garbled"}}, "routes['/a']"),
        ({"routes": {"items": "1/s"}}, "routes['items']"),
        ({"routes": {"FETCH /a": "1/s"}}, "routes['FETCH /a']"),
        ({"burst": -2}, "burst"),
    ],
)
def test_bad_limits_name_the_field(options: dict[str, object], field: str) -> None:
    options.setdefault("limit", "1/s")
    with pytest.raises(ConfigError) as info:
        RateLimiter(**options)  # type: ignore[arg-type]
    assert info.value.path == field


def test_headers_follow_the_draft() -> None:
    assert HEADERS_DRAFT.endswith("-11")
    rl, _ = limiter("100/minute")
    ok = decision_headers(rl.check("u"))
    assert ok == [
        ("ratelimit-policy", '"default";q=100;w=60'),
        ("ratelimit", '"default";r=99;t=1'),
    ]
    rl2, _ = limiter("2/minute")
    rl2.check("u")
    rl2.check("u")
    refused = dict(decision_headers(rl2.check("u")))
    assert refused["retry-after"] == "30"
    assert refused["ratelimit"] == '"default";r=0;t=30'  # t never before Retry-After
    # structured-field syntax: sf-string item with integer parameters
    item = re.compile(r'^"[^"\\]*";[a-z]=\d+;[a-z]=\d+$')
    assert all(item.match(value) for name, value in ok)


def test_policy_names_are_escaped_as_sf_strings() -> None:
    d = Decision(True, 1, 0, 0.5, 0.0, 'odd "name" \\', 1)
    assert decision_headers(d)[0][1] == '"odd \\"name\\" \\\\";q=1;w=1'


def test_refusal_body() -> None:
    rl, _ = limiter("1/minute")
    rl.check("u")
    status, body, headers = refusal(rl.check("u"))
    assert status == 429
    assert body == {"error": "rate_limited", "retry_after": 60, "limit": 1, "policy": "default"}
    assert ("retry-after", "60") in headers


def test_long_keys_are_bounded() -> None:
    backend = MemoryBackend(clock=ManualClock())
    rl = RateLimiter("1/minute", backend)
    assert rl.check("x" * 100_000).allowed
    assert not rl.check("x" * 100_000).allowed
    assert rl.check("x" * 99_999 + "y").allowed
    assert max(len(k) for k in backend._tats) < 50


def test_flood_of_unique_keys_cannot_grow_memory() -> None:
    clock = ManualClock()
    backend = MemoryBackend(clock=clock, max_keys=1000)
    rl = RateLimiter("5/s", backend)
    for i in range(20_000):
        rl.check(f"attacker-{i}")
    assert len(backend) <= 1000
    rl.check("victim")
    clock.advance(10)  # every key replenished: idle keys are swept as traffic flows
    for i in range(600):
        rl.check(f"late-{i}")
    assert len(backend) <= 1000


def test_idle_keys_are_swept_without_eviction_pressure() -> None:
    clock = ManualClock()
    backend = MemoryBackend(clock=clock)
    rl = RateLimiter("5/s", backend)
    for i in range(100):
        rl.check(f"k{i}")
    clock.advance(5)
    for _ in range(60):
        rl.check("steady")
        clock.advance(0.2)
    assert len(backend) <= 2


def test_memory_backend_is_thread_safe() -> None:
    clock = ManualClock()
    rl = RateLimiter("100/minute", MemoryBackend(clock=clock))
    admitted = []
    lock = threading.Lock()

    def worker() -> None:
        n = sum(rl.check("shared").allowed for _ in range(200))
        with lock:
            admitted.append(n)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sum(admitted) == 100


def test_memory_backend_rejects_bad_size() -> None:
    with pytest.raises(ConfigError, match="max_keys"):
        MemoryBackend(max_keys=0)


def test_backend_down_fail_open_and_closed(caplog: pytest.LogCaptureFixture) -> None:
    """A Redis nobody listens on: decisions still come back, degraded, and one log line."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    caplog.set_level(logging.ERROR, "scalewise.guard.redis")
    open_rl = RateLimiter("1/s", RedisBackend.from_url(url, cooldown=0), fail_open=True)
    decisions = [open_rl.check("u") for _ in range(5)]
    assert all(d.allowed and d.degraded for d in decisions)
    assert decision_headers(decisions[0]) == []
    closed_rl = RateLimiter("1/s", RedisBackend.from_url(url), fail_open=False)
    refused = closed_rl.check("u")
    assert (refused.allowed, refused.degraded) == (False, True)
    status, body, headers = refusal(refused)
    assert (status, body["error"], headers) == (
        503,
        "rate_limit_unavailable",
        [("retry-after", "1")],
    )
    assert len([r for r in caplog.records if r.name == "scalewise.guard.redis"]) == 2  # one each


def test_async_backend_down() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    rl = RateLimiter("1/s", AsyncRedisBackend.from_url(url), fail_open=False)
    decision = asyncio.run(rl.acheck("u"))
    assert (decision.allowed, decision.degraded) == (False, True)


def test_rate_is_reexported() -> None:
    assert RateLimiter("5/s").rate == Rate(5, 1.0)
