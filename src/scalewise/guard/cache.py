"""A bounded TTL cache: LRU over both an entry count and a byte budget, never more.

The seeds cap their result caches by entries (001's ``MAX_CACHE_ENTRIES``) *and* by memory
(000's ``MAX_CACHE_SIZE_MB``); a count alone does not bound memory when one value can be a
megabyte, so this cache enforces both. Sizes are:

- exact for ``bytes``/``bytearray``/``memoryview`` (their length) and ``str`` (UTF-8 length);
- otherwise :func:`estimate_size`: a deep ``sys.getsizeof`` over built-in containers and
  objects' ``__dict__``/``__slots__``, each object counted once, at most ``MAX_WALK`` objects
  (a value bigger than that is charged the whole byte budget, so it is never stored);
- or whatever the caller's ``sizeof(value)`` returns.

The key's own size is added to every entry, so a flood of long unique keys is bounded too.

An entry is *fresh* for ``ttl`` seconds; with ``stale_while_revalidate`` it is then *stale* for
that long (RFC 5861): a reader may serve it while someone refreshes it. Expired entries go
lazily on access, when the LRU end reaches them, or in a sweep at most once per ``ttl``.
Not thread-safe: one event loop owns a cache.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Generic, Protocol, TypeVar

from scalewise.clock import Clock, SystemClock
from scalewise.errors import ConfigError
from scalewise.units import DURATION_EXPECTED, SIZE_EXPECTED, parse_duration, parse_size

V = TypeVar("V")

DEFAULT_MAX_ENTRIES: Final = 1000
DEFAULT_MAX_BYTES: Final = "64MB"
DEFAULT_TTL: Final = "30s"
#: Objects :func:`estimate_size` visits before it gives up and reports "too big to know".
MAX_WALK: Final = 10_000
_TOO_BIG: Final = sys.maxsize
_ENTRY_OVERHEAD: Final = 120  # the entry object, its OrderedDict node and the key's slot
_CONTAINERS: Final = (list, tuple, set, frozenset)


class CountSink(Protocol):
    """Where counts go: :class:`scalewise.Recorder` has this ``count`` method."""

    def count(self, counter: str, n: float = 1) -> None: ...


class State(StrEnum):
    FRESH = "fresh"
    STALE = "stale"
    MISS = "miss"


@dataclass(frozen=True, slots=True)
class Lookup(Generic[V]):
    """What :meth:`TTLCache.lookup` found; ``value`` is ``None`` on a miss."""

    state: State
    value: V | None = None
    age: float = 0.0


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since the cache was made, plus its size now."""

    hits: int
    stale_hits: int
    misses: int
    coalesced: int
    evictions: int
    expirations: int
    rejected: int  # values larger than the byte budget (or max_entry_bytes), never stored
    entries: int
    bytes: int


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    size: int
    stored: float
    fresh_until: float
    stale_until: float


def estimate_size(value: object) -> int:
    """Approximate bytes held by ``value``: deep ``sys.getsizeof``, shared objects once.

    Returns ``sys.maxsize`` when the walk would exceed :data:`MAX_WALK` objects, so such a
    value is never admitted by mistake; pass ``sizeof=`` for big structured values.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    seen: set[int] = set()
    stack: list[Any] = [value]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if len(seen) > MAX_WALK:
            return _TOO_BIG
        total += sys.getsizeof(obj)
        stack.extend(_children(obj))
    return total


def _children(obj: Any) -> list[Any]:
    if isinstance(obj, str | bytes | bytearray | int | float | bool | complex | type(None)):
        return []
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, _CONTAINERS):
        return list(obj)
    found: list[Any] = []
    if hasattr(obj, "__dict__"):
        found.append(vars(obj))
    for name in getattr(type(obj), "__slots__", ()):
        if hasattr(obj, name):
            found.append(getattr(obj, name))
    return found


def _duration(source: str, field: str, value: str | float, *, positive: bool) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ConfigError(source, field, DURATION_EXPECTED, value) from None
    if positive and seconds <= 0:
        raise ConfigError(source, field, "a duration greater than 0", value)
    return seconds


def _size(source: str, field: str, value: str | int) -> int:
    try:
        size = parse_size(value)
    except ValueError:
        raise ConfigError(source, field, SIZE_EXPECTED, value) from None
    if size <= 0:
        raise ConfigError(source, field, "a size greater than 0", value)
    return size


def _count(source: str, field: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(source, field, "a whole number greater than 0", value)
    return value


class TTLCache(Generic[V]):
    """LRU cache bounded by ``max_entries`` and ``max_bytes``, entries living ``ttl`` seconds.

    Example:
        >>> from scalewise.clock import ManualClock
        >>> clock = ManualClock()
        >>> cache = TTLCache[str](ttl="10s", max_entries=2, clock=clock)
        >>> cache.set("a", "alpha")
        True
        >>> cache.get("a")
        'alpha'
        >>> clock.advance(11)
        >>> cache.get("a") is None
        True
    """

    def __init__(
        self,
        *,
        ttl: str | float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: str | int = DEFAULT_MAX_BYTES,
        stale_while_revalidate: str | float | None = None,
        sizeof: Callable[[V], int] | None = None,
        clock: Clock | None = None,
        recorder: CountSink | None = None,
        metric_prefix: str = "cache",
        source: str = "TTLCache",
    ) -> None:
        self.ttl = _duration(source, "ttl", ttl, positive=False)
        self.max_entries = _count(source, "max_entries", max_entries)
        self.max_bytes = _size(source, "max_bytes", max_bytes)
        swr = stale_while_revalidate
        self.stale_while_revalidate = (
            0.0 if swr is None else _duration(source, "stale_while_revalidate", swr, positive=False)
        )
        self._sizeof: Callable[[Any], int] = sizeof or estimate_size
        self._clock: Clock = clock or SystemClock()
        self._recorder = recorder
        self._names = {k: f"{metric_prefix}_{k}" for k in _COUNTERS}
        self._entries: OrderedDict[Hashable, _Entry[V]] = OrderedDict()
        self._bytes = 0
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._next_sweep = self._clock.monotonic() + max(self.ttl, 1.0)

    # -- reading ----------------------------------------------------------------------

    def lookup(self, key: Hashable) -> Lookup[V]:
        """Fresh, stale (inside the stale-while-revalidate window) or a miss; counts each."""
        entry = self._entries.get(key)
        if entry is None:
            self._bump("misses")
            return Lookup(State.MISS)
        now = self._clock.monotonic()
        if now < entry.fresh_until:
            self._entries.move_to_end(key)
            self._bump("hits")
            return Lookup(State.FRESH, entry.value, now - entry.stored)
        if now < entry.stale_until:
            self._entries.move_to_end(key)
            self._bump("stale_hits")
            return Lookup(State.STALE, entry.value, now - entry.stored)
        self._drop(key, "expirations")
        self._bump("misses")
        return Lookup(State.MISS)

    def get(self, key: Hashable, default: V | None = None) -> V | None:
        """The fresh value for ``key``, else ``default`` (a stale value counts as absent)."""
        found = self.lookup(key)
        return found.value if found.state is State.FRESH else default

    def __contains__(self, key: object) -> bool:
        """Whether a fresh or stale entry exists; does not count or reorder."""
        entry = self._entries.get(key)
        return entry is not None and self._clock.monotonic() < entry.stale_until

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Estimated bytes held by all entries, keys included."""
        return self._bytes

    # -- writing ----------------------------------------------------------------------

    def set(
        self, key: Hashable, value: V, ttl: float | None = None, size: int | None = None
    ) -> bool:
        """Store ``value``; ``False`` (and nothing stored) when it alone exceeds ``max_bytes``.

        ``ttl`` overrides the cache's for this entry; ``size`` skips the estimate.
        """
        if size is None:
            size = self._sizeof(value)
        size += estimate_size(key) + _ENTRY_OVERHEAD
        if key in self._entries:
            self._drop(key, None)
        if size > self.max_bytes:
            self._bump("rejected")
            return False
        now = self._clock.monotonic()
        if now >= self._next_sweep:
            self.purge_expired()
        while self._entries and (
            len(self._entries) >= self.max_entries or self._bytes + size > self.max_bytes
        ):
            self._evict_oldest(now)
        fresh_until = now + (self.ttl if ttl is None else ttl)
        stale_until = fresh_until + self.stale_while_revalidate
        self._entries[key] = _Entry(value, size, now, fresh_until, stale_until)
        self._bytes += size
        return True

    def delete(self, key: Hashable) -> bool:
        """Forget ``key``; whether it was there."""
        if key not in self._entries:
            return False
        self._drop(key, None)
        return True

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def purge_expired(self) -> int:
        """Drop every entry past its stale window; how many went. O(entries)."""
        now = self._clock.monotonic()
        self._next_sweep = now + max(self.ttl, 1.0)
        dead = [k for k, e in self._entries.items() if now >= e.stale_until]
        for key in dead:
            self._drop(key, "expirations")
        return len(dead)

    # -- counting ---------------------------------------------------------------------

    def record_coalesced(self, n: int = 1) -> None:
        """A caller shared an in-flight computation instead of starting its own."""
        self._bump("coalesced", n)

    def stats(self) -> CacheStats:
        return CacheStats(**self._counts, entries=len(self._entries), bytes=self._bytes)

    def _bump(self, name: str, n: int = 1) -> None:
        self._counts[name] += n
        if self._recorder is not None:
            self._recorder.count(self._names[name], n)

    def _evict_oldest(self, now: float) -> None:
        key, entry = next(iter(self._entries.items()))
        self._drop(key, "expirations" if now >= entry.stale_until else "evictions")

    def _drop(self, key: Hashable, reason: str | None) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size
        if reason is not None:
            self._bump(reason)


_COUNTERS: Final = (
    "hits",
    "stale_hits",
    "misses",
    "coalesced",
    "evictions",
    "expirations",
    "rejected",
)
