"""Rate-limit state in process memory: one float per key, bounded, thread-safe.

Bounded because a flood of unique keys (random API keys, spoofed addresses) must not grow
memory: keys live in an LRU of at most ``max_keys`` entries, and each check also drops up to
two least-recently-used keys whose state has fully replenished (a key at a full burst is the
same as a key never seen, so dropping it changes no decision). Only when the LRU is full of
*active* keys does eviction forget one, and then it errs towards admitting that caller.

Thread-safe for WSGI servers with threads: one lock around the read-modify-write. The lock
is held for about a microsecond, so it is not a point of contention at web request rates.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final

from scalewise.clock import Clock, SystemClock
from scalewise.errors import ConfigError
from scalewise.guard.algorithms import Outcome, Rate, gcra

DEFAULT_MAX_KEYS: Final = 100_000


class MemoryBackend:
    """GCRA state per key in this process (one instance per worker; not shared).

    Example:
        >>> from scalewise.clock import ManualClock
        >>> backend = MemoryBackend(clock=ManualClock())
        >>> backend.gcra("user:1", Rate.parse("2/s"), 1)[0]
        True
    """

    def __init__(self, *, clock: Clock | None = None, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ConfigError("MemoryBackend", "max_keys", "a whole number of at least 1", max_keys)
        self.max_keys = max_keys
        self._now = (clock or SystemClock()).monotonic
        self._tats: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def gcra(self, key: str, rate: Rate, cost: int) -> Outcome:
        """Check and, when allowed, consume ``cost`` units for ``key``."""
        tats = self._tats
        with self._lock:
            now = self._now()
            tat = tats.get(key)
            allowed, new_tat, remaining, reset, retry = gcra(tat, now, cost, rate)
            if tat is None:
                if allowed and cost:
                    tats[key] = new_tat
                    if len(tats) > self.max_keys:
                        tats.popitem(last=False)
            else:
                if allowed:
                    tats[key] = new_tat
                tats.move_to_end(key)
            self._sweep(now)
        return allowed, remaining, reset, retry

    async def agcra(self, key: str, rate: Rate, cost: int) -> Outcome:
        """The same check for async callers; memory needs no I/O, so nothing is awaited."""
        return self.gcra(key, rate, cost)

    def _sweep(self, now: float) -> None:
        # Amortised clean-up: the oldest entries are the likeliest to have replenished.
        tats = self._tats
        for _ in range(2):
            if not tats:
                return
            key = next(iter(tats))
            if tats[key] > now:
                return
            del tats[key]

    def reset(self, key: str | None = None) -> None:
        """Forget one key, or all of them (tests, or an operator lifting a block)."""
        with self._lock:
            if key is None:
                self._tats.clear()
            else:
                self._tats.pop(key, None)

    def __len__(self) -> int:
        return len(self._tats)
