"""The bounded TTL cache: expiry on a manual clock, LRU order, entry and byte bounds, counts."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from scalewise.clock import ManualClock
from scalewise.errors import ConfigError
from scalewise.guard.cache import MAX_WALK, State, TTLCache, estimate_size


class Counts:
    """A real sink with the Recorder's ``count`` signature."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def count(self, counter: str, n: float = 1) -> None:
        self.seen[counter] = self.seen.get(counter, 0) + n


def make(**kw: object) -> tuple[TTLCache[object], ManualClock]:
    clock = ManualClock()
    return TTLCache(clock=clock, **kw), clock  # type: ignore[arg-type]


def test_entries_expire_after_ttl() -> None:
    cache, clock = make(ttl="10s")
    cache.set("k", "v")
    clock.advance(9.9)
    assert cache.get("k") == "v"
    clock.advance(0.1)
    assert cache.get("k") is None
    s = cache.stats()
    assert (s.hits, s.misses, s.expirations, s.entries, s.bytes) == (1, 1, 1, 0, 0)


def test_per_entry_ttl_overrides_the_default() -> None:
    cache, clock = make(ttl="10s")
    cache.set("short", 1, ttl=1)
    cache.set("long", 2)
    clock.advance(2)
    assert cache.get("short") is None
    assert cache.get("long") == 2


def test_lru_eviction_by_entry_count_keeps_recently_used() -> None:
    cache, _ = make(max_entries=3)
    for k in "abc":
        cache.set(k, k)
    assert cache.get("a") == "a"  # a is now most recent; b is the oldest
    cache.set("d", "d")
    assert "b" not in cache
    assert all(k in cache for k in "acd")
    assert cache.stats().evictions == 1
    assert len(cache) == 3


def test_byte_budget_evicts_until_the_new_value_fits() -> None:
    overhead = estimate_size("k0") + 120
    cache, _ = make(max_entries=100, max_bytes=3 * (1000 + overhead))
    for i in range(3):
        assert cache.set(f"k{i}", b"x" * 1000)
    assert len(cache) == 3
    cache.set("k3", b"y" * 1500)  # needs the room of two old entries
    assert [k for k in ("k0", "k1", "k2", "k3") if k in cache] == ["k2", "k3"]
    assert cache.bytes <= cache.max_bytes
    assert cache.stats().evictions == 2


def test_a_value_bigger_than_the_budget_is_rejected_and_nothing_is_evicted() -> None:
    cache, _ = make(max_bytes="10KB")
    cache.set("small", b"s")
    assert cache.set("huge", b"h" * 20_000) is False
    assert "huge" not in cache
    assert "small" in cache
    assert cache.stats().rejected == 1


def test_replacing_a_key_does_not_double_count_bytes() -> None:
    cache, _ = make()
    cache.set("k", b"a" * 100)
    before = cache.bytes
    cache.set("k", b"b" * 100)
    assert cache.bytes == before
    assert len(cache) == 1


def test_flood_of_unique_keys_stays_bounded() -> None:
    cache, _ = make(max_entries=50, max_bytes="20KB")
    for i in range(5000):
        cache.set(f"/search?q={i}" + "z" * (i % 300), str(i))
    assert len(cache) <= 50
    assert cache.bytes <= 20_000


def test_stale_while_revalidate_window() -> None:
    cache, clock = make(ttl="10s", stale_while_revalidate="5s")
    cache.set("k", "v")
    clock.advance(12)
    found = cache.lookup("k")
    assert (found.state, found.value, found.age) == (State.STALE, "v", 12)
    assert cache.get("k") is None  # get() serves only fresh values
    clock.advance(3)
    assert cache.lookup("k").state is State.MISS
    assert cache.stats().stale_hits == 2


def test_sizes_exact_for_bytes_and_str_and_custom_sizeof() -> None:
    assert estimate_size(b"abc") == 3
    assert estimate_size("héllo") == 6  # UTF-8 bytes
    cache, _ = make(sizeof=lambda v: 10_000)
    cache.set("k", object())
    assert cache.bytes >= 10_000


def test_estimate_counts_nested_containers_and_objects() -> None:
    @dataclass
    class Row:
        name: str
        payload: bytes

    rows = [Row(str(i), bytes([i]) * 1000) for i in range(10)]
    assert estimate_size(rows) > 10 * 1000
    shared = b"y" * 5000
    assert estimate_size([shared, shared]) < estimate_size([shared, b"z" * 5000])


def test_estimate_of_a_huge_structure_refuses_rather_than_guesses() -> None:
    assert estimate_size(list(range(MAX_WALK + 10))) == sys.maxsize
    cache, _ = make()
    assert cache.set("k", list(range(MAX_WALK + 10))) is False


def test_purge_expired_and_periodic_sweep() -> None:
    cache, clock = make(ttl="10s")
    for i in range(5):
        cache.set(i, i)
    clock.advance(11)
    cache.set("new", 1)  # the sweep is due: old entries go as expirations
    assert len(cache) == 1
    assert cache.stats().expirations == 5


def test_counts_go_to_the_recorder() -> None:
    sink = Counts()
    cache, _ = make(recorder=sink, metric_prefix="cache", max_entries=1)
    cache.get("a")
    cache.set("a", 1)
    cache.get("a")
    cache.set("b", 2)
    cache.record_coalesced(3)
    assert sink.seen == {
        "cache_misses": 1,
        "cache_hits": 1,
        "cache_evictions": 1,
        "cache_coalesced": 3,
    }


def test_delete_and_clear() -> None:
    cache, _ = make()
    cache.set("a", 1)
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    cache.set("b", 2)
    cache.clear()
    assert (len(cache), cache.bytes) == (0, 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ttl", "soon"),
        ("max_entries", 0),
        ("max_entries", -1),
        ("max_bytes", "lots"),
        ("max_bytes", 0),
        ("stale_while_revalidate", "-5s"),
    ],
)
def test_bad_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        TTLCache(**{field: value})  # type: ignore[arg-type]
