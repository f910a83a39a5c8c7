"""Clocks: the core reads time only through these, so tests advance time instead of sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds for intervals, wall seconds for timestamps."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    """The real clock: ``time.perf_counter`` for intervals, ``time.time`` for timestamps."""

    monotonic = staticmethod(time.perf_counter)
    wall = staticmethod(time.time)


class ManualClock:
    """A clock that moves only when told to; wall time follows monotonic time."""

    def __init__(self, start: float = 0.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward; never backwards, like a real monotonic clock."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
