"""M/M/c (Erlang C): waiting probability, mean wait and response-time quantiles for c servers.

Poisson arrivals at rate λ, c servers each completing exponential work at rate μ, one FCFS
queue. Why latency and not only throughput: at 90 % utilisation a fleet still "has capacity",
but the p95 of requests already waits several service times.

Erlang C comes from the Erlang B recursion B(k) = aB(k−1) / (k + aB(k−1)) — no factorials and
no powers, so it stays exact to rounding at thousands of servers. The response time T = W + S
is a mixture: W = 0 with probability 1 − C, else Exp(cμ − λ); S ~ Exp(μ). Its quantiles are
found numerically from the closed-form survival function.

Example:
    >>> q = MMc(arrival_rate=2.0, service_rate=1.0, servers=3)
    >>> round(q.p_wait, 4)
    0.4444
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

from scipy.optimize import brentq

#: Upper bound on servers searched by :func:`servers_for`.
MAX_SERVERS: Final = 100_000


def erlang_b(servers: int, offered_load: float) -> float:
    """Blocking probability of an M/M/c/c loss system (iterative, stable for large c)."""
    if servers < 0 or offered_load < 0:
        raise ValueError("servers and offered load must be ≥ 0")
    b = 1.0
    for k in range(1, servers + 1):
        b = offered_load * b / (k + offered_load * b)
    return b


def _erlang_c_from_b(servers: int, offered_load: float, b: float) -> float:
    return servers * b / (servers - offered_load * (1 - b))


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (``offered_load`` = λ/μ < c)."""
    if servers < 1:
        raise ValueError("an M/M/c queue needs at least one server")
    if offered_load >= servers:
        return 1.0
    return _erlang_c_from_b(servers, offered_load, erlang_b(servers, offered_load))


@dataclass(frozen=True, slots=True)
class MMc:
    """An M/M/c queue; every time is in the unit of 1/rate (seconds when rates are per second)."""

    arrival_rate: float
    service_rate: float
    servers: int
    _p_wait: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.arrival_rate >= 0 and self.service_rate > 0 and self.servers >= 1):
            raise ValueError(
                "need arrival_rate ≥ 0, service_rate > 0 and servers ≥ 1, got "
                f"{self.arrival_rate!r}, {self.service_rate!r}, {self.servers!r}"
            )
        # Computed once: quantile searches evaluate the survival function many times.
        object.__setattr__(self, "_p_wait", erlang_c(self.servers, self.offered_load))

    @property
    def offered_load(self) -> float:
        """a = λ/μ, in erlangs: how many servers the work keeps busy on average."""
        return self.arrival_rate / self.service_rate

    @property
    def utilisation(self) -> float:
        """ρ = λ/(cμ); the queue is stable only below 1."""
        return self.offered_load / self.servers

    @property
    def stable(self) -> bool:
        return self.utilisation < 1

    @property
    def p_wait(self) -> float:
        """Erlang C: the probability that a request queues before service."""
        return self._p_wait

    @property
    def _drain(self) -> float:
        """cμ − λ, the rate of the exponential wait of a request that queues."""
        return self.servers * self.service_rate - self.arrival_rate

    def mean_wait(self) -> float:
        """E[W] = C / (cμ − λ); ∞ when unstable."""
        return self.p_wait / self._drain if self.stable else math.inf

    def mean_response(self) -> float:
        """E[T] = E[W] + 1/μ."""
        return self.mean_wait() + 1 / self.service_rate

    def wait_quantile(self, q: float) -> float:
        """The q-quantile of the wait W (0 when fewer than 1 − q of requests queue)."""
        _check_quantile(q)
        if not self.stable:
            return math.inf
        c = self.p_wait
        return 0.0 if c <= 1 - q else math.log(c / (1 - q)) / self._drain

    def response_survival(self, t: float) -> float:
        """P(T > t) for the response time T = W + S."""
        if t <= 0:
            return 1.0
        mu, theta, c = self.service_rate, self._drain, self.p_wait
        d = theta - mu
        # P(W' + S > t) for W' ~ Exp(θ): e^{−μt}(1 + μ(1 − e^{−dt})/d), written with expm1 so
        # that θ ≈ μ loses no digits (the limit d → 0 is (1 + μt)e^{−μt}).
        ratio = t if d == 0 else -math.expm1(-d * t) / d
        queued = math.exp(-mu * t) * (1 + mu * ratio)
        return (1 - c) * math.exp(-mu * t) + c * queued

    def response_quantile(self, q: float) -> float:
        """The q-quantile of the response time (wait + service), found by root bracketing."""
        _check_quantile(q)
        if not self.stable:
            return math.inf
        tail = 1 - q
        hi = 1 / min(self.service_rate, self._drain)
        for _ in range(200):
            if self.response_survival(hi) < tail:
                break
            hi *= 2
        return float(brentq(lambda t: self.response_survival(t) - tail, 0.0, hi, xtol=1e-12))

    def to_dict(self, quantiles: tuple[float, ...] = (0.5, 0.95, 0.99)) -> dict[str, Any]:
        stable = self.stable
        return {
            "arrival_rate": self.arrival_rate,
            "service_rate": self.service_rate,
            "servers": self.servers,
            "utilisation": self.utilisation,
            "p_wait": self.p_wait,
            "mean_wait": self.mean_wait() if stable else None,
            "mean_response": self.mean_response() if stable else None,
            "response_quantiles": {
                f"p{round(q * 100, 3):g}": self.response_quantile(q) if stable else None
                for q in quantiles
            },
        }


def _check_quantile(q: float) -> None:
    if not 0 < q < 1:
        raise ValueError(f"a quantile is between 0 and 1 (0.95 for p95), got {q!r}")


def servers_for(
    arrival_rate: float,
    service_rate: float,
    slo_quantile: float,
    slo_seconds: float,
    max_servers: int = MAX_SERVERS,
) -> int | None:
    """Smallest c whose response-time ``slo_quantile`` is at most ``slo_seconds``.

    ``None`` when no number of servers can do it: the service time alone (what c → ∞ leaves)
    already exceeds the SLO, or more than ``max_servers`` would be needed.
    """
    _check_quantile(slo_quantile)
    if not (arrival_rate >= 0 and service_rate > 0 and slo_seconds > 0):
        raise ValueError("need arrival_rate ≥ 0, service_rate > 0 and slo_seconds > 0")
    if -math.log(1 - slo_quantile) / service_rate > slo_seconds:
        return None
    # The answer is a few √a above the offered load a, so start at the first stable size.
    first = math.floor(arrival_rate / service_rate) + 1
    for c in range(first, max_servers + 1):
        if MMc(arrival_rate, service_rate, c).response_quantile(slo_quantile) <= slo_seconds:
            return c
    return None
