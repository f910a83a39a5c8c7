"""Rate-limit algorithms as pure functions: no clock, no storage, no I/O.

Storage lives in ``backends/`` (process memory, Redis), as ``alisaifee/limits`` keeps
strategies apart from storage. The memory backend calls :func:`gcra` directly; the Redis
backend runs the same arithmetic in ``backends/gcra.lua`` (it must be atomic on the server)
and turns the script's answer back into the same tuple with :func:`outcome_after`, so the
two cannot drift on what ``remaining`` or ``retry_after`` mean. The conformance suite runs
one set of expectations over both.

Why GCRA (the generic cell rate algorithm, as in ATM networks, redis-cell and throttled):
one number of state per key (the *theoretical arrival time*, TAT), O(1) time, and an exact,
stated bound. A rate of ``limit`` per ``period`` with burst ``b`` is a token bucket that
holds ``b`` units and refills one every ``T = period / limit`` seconds, so:

* a caller idle long enough may send ``b`` requests at once, then one every ``T``;
* in any span of length ``L`` it gets at most ``b + ⌈L / T⌉ - 1`` admissions, and over a
  long run exactly ``limit`` per ``period`` on average.

With the default ``b = limit`` that is at most ``2·limit - 1`` in the worst ``period``-long
span (only right after an idle period; a fixed window allows the same at every window edge),
and ``limit`` per ``period`` sustained. Set ``burst`` lower when the peak matters more than
absorbing bursts: ``burst=1`` spaces requests exactly ``T`` apart.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Final

from scalewise.errors import ConfigError

#: Slack on the admission test, far below any emission interval we accept (see
#: ``MIN_INTERVAL``), so float rounding of accumulated TATs never refuses a request that a
#: human would count as allowed, and never admits one more than the burst.
EPSILON: Final = 1e-7
#: Finest emission interval accepted: one request per microsecond (10^6 per second).
MIN_INTERVAL: Final = 1e-6
#: Longest period accepted (a year); longer ones are almost surely unit mistakes.
MAX_PERIOD: Final = 366 * 86400.0

_UNITS: Final = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "secs": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip
_RATE: Final = re.compile(r"^\s*(\S+?)\s*(?:/|\s+per\s+)\s*(\d+(?:\.\d+)?)?\s*([A-Za-z]+)\s*$")
RATE_EXPECTED: Final = "a rate like '100/minute', '10/s', '1000/hour' or '50/10s' (limit > 0)"

#: (allowed, new_tat, remaining, reset_after, retry_after), see :func:`gcra`.
GcraStep = tuple[bool, float, int, float, float]
#: (allowed, remaining, reset_after, retry_after): what a backend answers for one check.
Outcome = tuple[bool, int, float, float]


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` requests per ``period`` seconds, with bursts of up to ``burst`` at once.

    Example:
        >>> Rate.parse("100/minute")
        Rate(limit=100, period=60.0, burst=100)
        >>> Rate.parse("10/s", burst=20).emission_interval
        0.1
    """

    limit: int
    period: float
    burst: int = 0  # 0 means "same as limit"
    emission_interval: float = field(init=False, repr=False, compare=False)
    tolerance: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_limit("limit", self.limit)
        period = self.period
        if (
            isinstance(period, bool)
            or not isinstance(period, int | float)
            or not (math.isfinite(period) and 0 < period <= MAX_PERIOD)
        ):
            raise ConfigError("Rate", "period", "seconds above 0 and at most a year", period)
        if self.burst == 0:
            object.__setattr__(self, "burst", self.limit)
        _check_limit("burst", self.burst)
        interval = float(period) / self.limit
        if interval < MIN_INTERVAL:
            expected = "at most 1,000,000 requests per second"
            raise ConfigError("Rate", "limit", expected, f"{self.limit}/{period}s")
        object.__setattr__(self, "period", float(period))
        object.__setattr__(self, "emission_interval", interval)
        object.__setattr__(self, "tolerance", interval * self.burst)

    @classmethod
    def parse(cls, text: str | Rate, *, burst: int = 0, field_name: str = "rate") -> Rate:
        """``"100/minute"``, ``"10/s"``, ``"50/10s"``, ``"1000 per hour"`` → :class:`Rate`.

        Raises:
            ConfigError: naming ``field_name`` when the text is not a positive rate.
        """
        if isinstance(text, Rate):
            return cls(text.limit, text.period, burst) if burst else text
        match = _RATE.match(text) if isinstance(text, str) else None
        unit = _UNITS.get(match.group(3).lower()) if match else None
        if match is None or unit is None or not match.group(1).isdigit():
            raise ConfigError("Rate", field_name, RATE_EXPECTED, text)
        limit, count = int(match.group(1)), float(match.group(2) or 1)
        if limit <= 0 or count <= 0:
            raise ConfigError("Rate", field_name, RATE_EXPECTED, text)
        try:
            return cls(limit, count * unit, burst)
        except ConfigError as exc:
            if exc.path == "burst":
                raise
            raise ConfigError("Rate", field_name, exc.expected, text) from None

    @property
    def window(self) -> int:
        """The period as whole seconds (at least 1), as ``RateLimit-Policy``'s ``w`` needs."""
        return max(1, math.ceil(self.period))

    def __str__(self) -> str:
        period = f"{self.period:g}s"
        extra = f" burst {self.burst}" if self.burst != self.limit else ""
        return f"{self.limit}/{period}{extra}"


def _check_limit(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError("Rate", name, "a whole number greater than 0", value)


def gcra(tat: float | None, now: float, cost: int, rate: Rate) -> GcraStep:
    """One GCRA decision: is a request of ``cost`` units at ``now`` within ``rate``?

    Args:
        tat: the key's theoretical arrival time, or ``None`` for a key never seen.
        now: current time in seconds on the same clock as ``tat``.
        cost: units this request consumes (0 peeks without consuming).
        rate: the limit.

    Returns:
        ``(allowed, new_tat, remaining, reset_after, retry_after)``: ``new_tat`` is the state
        to store (unchanged when refused); ``remaining`` is how many unit-cost requests could
        follow at once; ``reset_after`` is seconds until the key is back to a full burst;
        ``retry_after`` is seconds until this request would be admitted (0 when allowed).
    """
    interval = rate.emission_interval
    if tat is None or tat < now:
        tat = now
    new_tat = tat + cost * interval
    allow_at = new_tat - rate.tolerance
    if now < allow_at - EPSILON:
        reset = tat - now
        remaining = int((rate.tolerance - reset) / interval + EPSILON)
        return False, tat, remaining if remaining > 0 else 0, reset, allow_at - now
    reset = new_tat - now
    return True, new_tat, int((rate.tolerance - reset) / interval + EPSILON), reset, 0.0


def outcome_after(allowed: bool, reset_after: float, cost: int, rate: Rate) -> Outcome:
    """Rebuild a full outcome from what a store reports: the verdict and ``tat - now``.

    The Redis script returns only these two numbers (computed against server time); the
    rest follows from them exactly as in :func:`gcra`.
    """
    interval = rate.emission_interval
    reset_after = max(reset_after, 0.0)
    remaining = int((rate.tolerance - reset_after) / interval + EPSILON)
    if allowed:
        return True, max(remaining, 0), reset_after, 0.0
    retry = reset_after + cost * interval - rate.tolerance
    return False, max(remaining, 0), reset_after, max(retry, 0.0)
