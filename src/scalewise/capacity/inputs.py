"""What a capacity plan is asked for: the latency objective (:class:`Slo`) and the load
(:class:`Target`), parsed and checked at the boundary so the planner's arithmetic can trust them.

Re-exported by :mod:`scalewise.capacity.planner`, where they have always been importable.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

from scalewise.errors import ConfigError
from scalewise.policy.plans import SECONDS_PER_DAY, daily_requests_to_rps
from scalewise.units import format_duration, parse_duration

SLO_EXPECTED: Final = "an SLO like 'p95<300ms' or 'p99<1s' (quantile, '<', duration with a unit)"
_SLO = re.compile(r"^p\(?(\d{1,2}(?:\.\d+)?)\)?\s*<=?\s*(.+)$")


@dataclass(frozen=True, slots=True)
class Slo:
    """A latency objective: the ``quantile`` of response times stays under ``seconds``."""

    quantile: float
    seconds: float

    @property
    def name(self) -> str:
        """``p95``, ``p99.9``."""
        return f"p{round(self.quantile * 100, 6):g}"

    def __str__(self) -> str:
        return f"{self.name}<{format_duration(self.seconds)}"


def parse_slo(text: str, source: str = "argument", path: str = "--slo") -> Slo:
    """``'p95<300ms'``, ``'p99 < 1s'``, ``'p(99.9)<2s'`` → :class:`Slo`.

    Raises:
        ConfigError: naming ``source`` and ``path``; a bare number is refused (ms or s?).
    """
    match = _SLO.match(text.strip().lower())
    if match is None:
        raise ConfigError(source, path, SLO_EXPECTED, text)
    quantile = float(match.group(1)) / 100
    limit = match.group(2).strip()
    if re.fullmatch(r"[\d.]+", limit):
        raise ConfigError(source, path, f"{SLO_EXPECTED}; give the unit, e.g. 300ms", text)
    try:
        seconds = parse_duration(limit)
    except ValueError:
        raise ConfigError(source, path, SLO_EXPECTED, text) from None
    if not (0 < quantile < 1 and seconds > 0):
        raise ConfigError(source, path, SLO_EXPECTED, text)
    return Slo(quantile, seconds)


@dataclass(frozen=True, slots=True)
class Target:
    """The load to plan for, in requests per second at peak, and where the figure came from."""

    rps: float
    daily_users: float | None = None
    requests_per_user: float | None = None
    peak_factor: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rps) and self.rps > 0):
            raise ConfigError("argument", "target", "a positive request rate", self.rps)

    @classmethod
    def from_daily_users(
        cls, users: float, requests_per_user: float, peak_factor: float = 3.0
    ) -> Target:
        """Peak rate = users × requests per user per day ÷ 86 400 s × peak factor."""
        for name, value in (("daily users", users), ("requests per user", requests_per_user)):
            if not value > 0:
                raise ConfigError("argument", name, "a positive number", value)
        if not peak_factor >= 1:
            raise ConfigError("argument", "peak factor", "a number ≥ 1", peak_factor)
        average = daily_requests_to_rps(users * requests_per_user)
        return cls(average * peak_factor, users, requests_per_user, peak_factor)

    @property
    def conversion(self) -> str | None:
        """The arithmetic from daily users to a peak rate, for the output; ``None`` if given."""
        if self.daily_users is None or self.requests_per_user is None:
            return None
        daily = self.daily_users * self.requests_per_user
        return (
            f"{self.daily_users:,.0f} users × {self.requests_per_user:g} requests/day = "
            f"{daily:,.0f} requests/day ÷ {SECONDS_PER_DAY:,} s = "
            f"{daily / SECONDS_PER_DAY:.3g} req/s average × peak factor {self.peak_factor:g} = "
            f"{self.rps:.3g} req/s at peak"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rps": self.rps,
            "daily_users": self.daily_users,
            "requests_per_user": self.requests_per_user,
            "peak_factor": self.peak_factor,
            "conversion": self.conversion,
        }
