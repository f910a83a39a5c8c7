"""M/M/c against closed forms, exact rational arithmetic, and a seeded simulation.

Sources for the known values:
- Erlang C, c = 3 servers, a = 2 erlangs: P(wait) = 4/9. By hand from the Erlang C formula
  (Kleinrock, *Queueing Systems* vol. 1, 1975, eq. 3.40): a^c/c! · c/(c−a) = 8/6 · 3 = 4,
  Σ_{k<3} a^k/k! = 1 + 2 + 2 = 5, so C = 4 / (5 + 4) = 4/9.
- M/M/1: P(wait) = ρ and the response time is exponential with rate μ − λ (Kleinrock §3.2).
- M/M/2: P(wait) = 2ρ² / (1 + ρ) (Gross & Harris, *Fundamentals of Queueing Theory*, M/M/c
  with c = 2).
"""

from __future__ import annotations

import heapq
import math
import random
from fractions import Fraction

import pytest

from scalewise.capacity.queueing import MMc, erlang_b, erlang_c, servers_for


def _erlang_c_exact(c: int, a: int) -> float:
    """The textbook formula with factorials, in exact rationals: independent of the code."""
    load = Fraction(a)
    top = load**c / math.factorial(c) * Fraction(c) / (c - load)
    return float(top / (sum(load**k / math.factorial(k) for k in range(c)) + top))


def test_textbook_value_three_servers_two_erlangs() -> None:
    assert erlang_c(3, 2.0) == pytest.approx(4 / 9, rel=1e-12)
    queue = MMc(arrival_rate=2.0, service_rate=1.0, servers=3)
    assert queue.p_wait == pytest.approx(4 / 9, rel=1e-12)
    assert queue.mean_wait() == pytest.approx((4 / 9) / (3 - 2))  # C / (cμ − λ)
    assert queue.utilisation == pytest.approx(2 / 3)


@pytest.mark.parametrize(("c", "a"), [(1, 0), (2, 1), (10, 8), (50, 45), (500, 480)])
def test_matches_exact_rational_formula(c: int, a: int) -> None:
    assert erlang_c(c, float(a)) == pytest.approx(_erlang_c_exact(c, a), rel=1e-12)


def test_large_c_is_stable_without_factorials() -> None:
    # 5000! overflows a float by thousands of orders of magnitude; the recursion does not care.
    value = erlang_c(5000, 4900.0)
    assert 0 < value < 1
    assert erlang_b(5000, 4900.0) < value
    # Monotone: one more server never makes waiting more likely.
    assert erlang_c(5001, 4900.0) < value


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.9])
def test_mm1_closed_forms(rho: float) -> None:
    queue = MMc(arrival_rate=rho * 10, service_rate=10.0, servers=1)
    assert queue.p_wait == pytest.approx(rho)
    rate = 10.0 - rho * 10
    for q in (0.5, 0.95, 0.99):
        assert queue.response_quantile(q) == pytest.approx(-math.log(1 - q) / rate, rel=1e-9)
    assert queue.mean_response() == pytest.approx(1 / rate)


@pytest.mark.parametrize("rho", [0.2, 0.6, 0.95])
def test_mm2_closed_form(rho: float) -> None:
    queue = MMc(arrival_rate=2 * rho, service_rate=1.0, servers=2)
    assert queue.p_wait == pytest.approx(2 * rho**2 / (1 + rho))


def test_survival_is_continuous_where_wait_and_service_rates_meet() -> None:
    # cμ − λ == μ is the removable singularity of the mixture's survival function.
    at = MMc(arrival_rate=1.0, service_rate=1.0, servers=2)  # θ = 2 − 1 = μ
    near = MMc(arrival_rate=1.0 + 1e-10, service_rate=1.0, servers=2)
    for t in (0.1, 1.0, 5.0):
        assert at.response_survival(t) == pytest.approx(near.response_survival(t), rel=1e-8)
    assert at.response_survival(0.0) == 1.0


def _simulate_responses(lam: float, mu: float, c: int, count: int, seed: int) -> list[float]:
    """FCFS M/M/c: each arrival takes the server that frees first."""
    rng = random.Random(seed)
    free_at = [0.0] * c
    now, responses = 0.0, []
    for _ in range(count):
        now += rng.expovariate(lam)
        start = max(now, heapq.heappop(free_at))
        end = start + rng.expovariate(mu)
        heapq.heappush(free_at, end)
        responses.append(end - now)
    return responses


def test_response_quantiles_match_a_seeded_simulation() -> None:
    lam, mu, c = 7.0, 1.0, 8  # ρ = 0.875: queueing matters
    samples = sorted(_simulate_responses(lam, mu, c, 200_000, seed=20)[10_000:])
    queue = MMc(lam, mu, c)
    for q in (0.5, 0.95, 0.99):
        simulated = samples[int(q * len(samples))]
        assert queue.response_quantile(q) == pytest.approx(simulated, rel=0.04), q
    assert queue.mean_response() == pytest.approx(sum(samples) / len(samples), rel=0.03)


def test_wait_quantile_is_zero_when_most_requests_do_not_queue() -> None:
    queue = MMc(arrival_rate=1.0, service_rate=1.0, servers=4)
    assert queue.p_wait < 0.05
    assert queue.wait_quantile(0.95) == 0.0
    assert queue.wait_quantile(0.999) > 0.0


def test_unstable_queue_reports_infinite_latency() -> None:
    queue = MMc(arrival_rate=5.0, service_rate=1.0, servers=4)
    assert not queue.stable
    assert queue.p_wait == 1.0
    assert math.isinf(queue.response_quantile(0.95))
    assert math.isinf(queue.mean_wait())
    doc = queue.to_dict()
    assert doc["mean_wait"] is None
    assert doc["response_quantiles"]["p95"] is None


def test_servers_for_is_the_smallest_count_meeting_the_slo() -> None:
    c = servers_for(arrival_rate=40.0, service_rate=5.0, slo_quantile=0.95, slo_seconds=0.8)
    assert c is not None
    assert MMc(40.0, 5.0, c).response_quantile(0.95) <= 0.8
    assert MMc(40.0, 5.0, c - 1).response_quantile(0.95) > 0.8


def test_servers_for_large_fleet() -> None:
    c = servers_for(arrival_rate=5000.0, service_rate=1.0, slo_quantile=0.99, slo_seconds=6.0)
    assert c is not None
    assert 5000 < c < 5100
    assert MMc(5000.0, 1.0, c - 1).response_quantile(0.99) > 6.0


def test_servers_for_refuses_an_slo_below_the_service_time() -> None:
    # p95 of an exponential service of mean 1 s is 3 s: no server count gets under 2 s.
    assert servers_for(1.0, 1.0, 0.95, 2.0) is None
    assert servers_for(1.0, 1.0, 0.95, 3.1) is not None


@pytest.mark.parametrize(
    "args", [(-1.0, 1.0, 1), (1.0, 0.0, 1), (1.0, 1.0, 0), (1.0, float("nan"), 1)]
)
def test_bad_parameters_are_value_errors(args: tuple[float, float, int]) -> None:
    with pytest.raises(ValueError, match="need arrival_rate"):
        MMc(*args)


def test_bad_quantile_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        MMc(1.0, 2.0, 1).response_quantile(95)
