"""The log-bucketed latency histogram: accuracy, merging, edges, freezing and encoding."""

from __future__ import annotations

import math
import struct
import sys

import numpy as np
import pytest

from scalewise.errors import HistogramError
from scalewise.metrics.histogram import (
    BUCKETS,
    EMPTY,
    MAX_VALUE,
    MIN_VALUE,
    RELATIVE_ACCURACY,
    FrozenHistogram,
    Histogram,
    bucket_upper_bound,
    bucket_value,
    merge_all,
)

STANDARD_QS = (0.5, 0.9, 0.95, 0.99, 0.999)
# Exactly α at a bucket edge, plus room for the last bit of float rounding.
TOLERANCE = RELATIVE_ACCURACY + 1e-9
OVERFLOW_INDEX = BUCKETS - 1
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)


def histogram_of(values: np.ndarray | list[float]) -> Histogram:
    h = Histogram()
    for v in values:
        h.record(float(v))
    return h


def h_index(value: float) -> int:
    """The bucket index one recorded ``value`` lands in."""
    return next(histogram_of([value]).buckets())[0]


def assert_quantiles_accurate(h: Histogram, values: np.ndarray, qs: np.ndarray | tuple) -> None:
    exact = np.quantile(values, qs, method="lower")
    for q, want in zip(qs, exact, strict=True):
        got = h.quantile(float(q))
        assert abs(got - want) <= TOLERANCE * want, (q, got, want)


@pytest.fixture(scope="module")
def lognormal() -> np.ndarray:
    rng = np.random.default_rng(20240601)
    body = rng.lognormal(mean=math.log(0.05), sigma=0.8, size=100_000)
    outliers = rng.uniform(5.0, 60.0, size=500)  # 0.5 % slow outliers
    values = np.concatenate([body, outliers])
    rng.shuffle(values)
    return values


@pytest.fixture(scope="module")
def lognormal_hist(lognormal: np.ndarray) -> Histogram:
    return histogram_of(lognormal)


# -- accuracy ----------------------------------------------------------------------------


def test_standard_quantiles_within_one_percent_on_lognormal_with_outliers(
    lognormal: np.ndarray, lognormal_hist: Histogram
) -> None:
    assert lognormal_hist.count == len(lognormal)
    assert_quantiles_accurate(lognormal_hist, lognormal, STANDARD_QS)
    # The tail is really in the outliers, so p99.9 is checked where it matters.
    assert lognormal_hist.quantile(0.999) > 5.0


def test_many_quantiles_within_one_percent_on_lognormal(
    lognormal: np.ndarray, lognormal_hist: Histogram
) -> None:
    assert_quantiles_accurate(lognormal_hist, lognormal, np.linspace(0.0, 1.0, 401))


def test_min_max_mean_are_exact(lognormal: np.ndarray, lognormal_hist: Histogram) -> None:
    assert lognormal_hist.min == lognormal.min()
    assert lognormal_hist.max == lognormal.max()
    assert math.isclose(lognormal_hist.mean, float(lognormal.mean()), rel_tol=1e-9)
    # Quantiles never leave [min, max].
    values = lognormal_hist.quantiles(np.linspace(0.0, 1.0, 101).tolist())
    assert all(lognormal_hist.min <= v <= lognormal_hist.max for v in values)


def test_quantile_one_is_exactly_max(lognormal: np.ndarray, lognormal_hist: Histogram) -> None:
    assert lognormal_hist.quantile(1.0) == lognormal.max()
    assert lognormal_hist.quantiles([1.0]) == [lognormal.max()]


def test_log_uniform_over_the_whole_range_1us_to_1h() -> None:
    rng = np.random.default_rng(7)
    values = np.exp(rng.uniform(math.log(MIN_VALUE), math.log(MAX_VALUE), size=20_000))
    values = np.concatenate([values, [MIN_VALUE, MAX_VALUE]])
    h = histogram_of(values)
    assert_quantiles_accurate(h, values, np.linspace(0.0, 1.0, 1001))


def test_linear_uniform_over_1us_to_1h() -> None:
    rng = np.random.default_rng(11)
    values = rng.uniform(MIN_VALUE, MAX_VALUE, size=20_000)
    h = histogram_of(values)
    assert_quantiles_accurate(h, values, np.linspace(0.0, 1.0, 1001))


def test_every_bucket_value_is_within_alpha_of_its_bucket_edges() -> None:
    for index in range(1, OVERFLOW_INDEX):
        upper = bucket_upper_bound(index)
        lower = upper / GAMMA
        rep = bucket_value(index)
        assert lower <= rep < upper
        assert abs(rep - lower) <= TOLERANCE * lower
        assert abs(rep - upper) <= TOLERANCE * upper
    assert bucket_value(0) == 0.0
    assert bucket_upper_bound(0) == MIN_VALUE
    assert bucket_upper_bound(OVERFLOW_INDEX) == math.inf


def test_quantiles_matches_individual_quantile_calls(lognormal_hist: Histogram) -> None:
    qs = [0.99, 0.0, 0.5, 1.0, 0.5, 0.123, 0.999, 0.25, 0.9, 0.95]
    assert lognormal_hist.quantiles(qs) == [lognormal_hist.quantile(q) for q in qs]
    assert lognormal_hist.quantiles([]) == []


def test_quantile_rank_is_lower_on_a_tiny_sample() -> None:
    h = histogram_of([0.001, 0.002, 0.003, 0.004])
    # rank q·(n−1): q=0.5 -> rank 1.5 -> the second value (numpy's "lower").
    assert math.isclose(h.quantile(0.5), 0.002, rel_tol=RELATIVE_ACCURACY)
    assert math.isclose(h.quantile(0.34), 0.002, rel_tol=RELATIVE_ACCURACY)
    assert math.isclose(h.quantile(0.33), 0.001, rel_tol=RELATIVE_ACCURACY)


# -- merging -----------------------------------------------------------------------------


def test_sum_of_two_is_the_histogram_of_the_concatenated_samples() -> None:
    rng = np.random.default_rng(3)
    xs = rng.lognormal(math.log(0.02), 1.0, size=3000)
    ys = np.concatenate([rng.lognormal(math.log(0.3), 0.5, size=2000), [0.0, 1e9]])
    a, b = histogram_of(xs), histogram_of(ys)
    both = histogram_of(np.concatenate([xs, ys]))
    total = a + b
    assert total == both
    assert list(total.buckets()) == list(both.buckets())
    assert total.count == both.count == len(xs) + len(ys)
    assert math.isclose(total.sum, both.sum, rel_tol=1e-12)
    assert total.min == both.min == 0.0
    assert total.max == both.max == 1e9
    # + leaves its operands untouched.
    assert a == histogram_of(xs)
    assert b == histogram_of(ys)


def test_merge_is_commutative_and_associative() -> None:
    rng = np.random.default_rng(5)
    a, b, c = (histogram_of(rng.exponential(s, size=500)) for s in (0.01, 0.1, 1.0))
    assert a + b == b + a
    assert (a + b) + c == a + (b + c)
    assert (a + b) + c == merge_all([c, b, a])


def test_merge_in_place_returns_self_and_empty_is_neutral() -> None:
    a = histogram_of([0.1, 0.2])
    before = a.copy()
    assert a.merge(Histogram()) is a
    assert a == before
    assert Histogram() + a == a
    assert (Histogram() + Histogram()).count == 0


def test_merge_all() -> None:
    parts = [[0.001, 0.002], [], [5.0], [0.0, 0.5, 3000.0]]
    merged = merge_all(histogram_of(p) for p in parts)
    assert merged == histogram_of([v for p in parts for v in p])
    empty = merge_all([])
    assert empty.count == 0
    assert empty.quantile(0.5) == 0.0
    # Frozen histograms merge into the (live) total too.
    assert merge_all(histogram_of(p).freeze() for p in parts) == merged


def test_merge_rejects_other_types() -> None:
    with pytest.raises(HistogramError):
        Histogram().merge([1, 2, 3])  # type: ignore[arg-type]


# -- edge values -------------------------------------------------------------------------


def test_zero_goes_to_the_zero_bucket_and_reports_zero() -> None:
    h = histogram_of([0.0, 0.0, 0.0])
    assert list(h.buckets()) == [(0, 3)]
    assert h.quantile(0.5) == 0.0
    assert h.quantile(1.0) == 0.0
    assert h.min == h.max == 0.0
    tiny = histogram_of([5e-7])
    assert list(tiny.buckets()) == [(0, 1)]
    assert tiny.quantile(0.5) == 5e-7  # clamped to the exact min


def test_exactly_the_range_edges() -> None:
    low = histogram_of([MIN_VALUE])
    assert list(low.buckets()) == [(1, 1)]
    assert low.quantile(0.5) == MIN_VALUE
    high = histogram_of([MAX_VALUE])
    assert list(high.buckets()) == [(OVERFLOW_INDEX - 1, 1)]
    assert high.quantile(0.5) == MAX_VALUE


def test_huge_values_go_to_the_overflow_bucket() -> None:
    h = histogram_of([1.0, 1e9])
    assert list(h.buckets()) == [(h_index(1.0), 1), (OVERFLOW_INDEX, 1)]
    assert h.max == 1e9
    assert math.isclose(h.quantile(0.0), 1.0, rel_tol=RELATIVE_ACCURACY)
    only = histogram_of([1e9, 1e9])
    assert list(only.buckets()) == [(OVERFLOW_INDEX, 2)]
    assert only.quantile(0.5) == 1e9
    assert only.quantile(1.0) == 1e9


def test_overflow_quantile_one_is_exact_max() -> None:
    h = histogram_of([1.0, 1e9])
    assert h.quantile(1.0) == 1e9


@pytest.mark.parametrize("bad", [-1e-9, -1.0, -math.inf, math.nan])
def test_negative_and_nan_raise_and_leave_the_histogram_unchanged(bad: float) -> None:
    h = histogram_of([0.1])
    before = h.copy()
    with pytest.raises(ValueError, match="latency"):
        h.record(bad)
    with pytest.raises(ValueError, match="latency"):
        h.record_many(bad, 3)
    assert h == before


def test_empty_histogram() -> None:
    h = Histogram()
    assert h.count == 0
    assert h.quantile(0.0) == 0.0
    assert h.quantile(0.5) == 0.0
    assert h.quantile(1.0) == 0.0
    assert h.quantiles([0.5, 0.99]) == [0.0, 0.0]
    assert h.mean == 0.0
    assert list(h.buckets()) == []
    assert h.count_at_most(1.0) == 0
    assert repr(h) == "Histogram(empty)"


@pytest.mark.parametrize("q", [-0.01, 1.01, -math.inf, math.inf, math.nan])
def test_quantile_outside_0_1_raises(q: float) -> None:
    for h in (histogram_of([0.1, 0.2]), Histogram()):
        with pytest.raises(ValueError, match="quantile"):
            h.quantile(q)
    with pytest.raises(ValueError, match="quantile"):
        histogram_of([0.1]).quantiles([0.5, q])


def test_quantiles_validates_even_when_empty() -> None:
    with pytest.raises(ValueError, match="quantile"):
        Histogram().quantiles([1.5])


# -- memory and freezing -----------------------------------------------------------------


def test_memory_is_bounded_by_the_fixed_layout(lognormal_hist: Histogram) -> None:
    h = Histogram()
    assert len(h._counts) == BUCKETS
    rng = np.random.default_rng(1)
    for v in rng.uniform(0.0, 2 * MAX_VALUE, size=100_000):
        h.record(float(v))
    assert len(h._counts) == BUCKETS
    assert len(lognormal_hist._counts) == BUCKETS
    assert not hasattr(h, "__dict__")


def test_freeze_keeps_quantiles_and_is_smaller(lognormal_hist: Histogram) -> None:
    frozen = lognormal_hist.freeze()
    assert isinstance(frozen, FrozenHistogram)
    qs = np.linspace(0.0, 1.0, 201).tolist()
    assert frozen.quantiles(qs) == lognormal_hist.quantiles(qs)
    assert [frozen.quantile(q) for q in qs] == [lognormal_hist.quantile(q) for q in qs]
    assert frozen == lognormal_hist
    assert list(frozen.buckets()) == list(lognormal_hist.buckets())
    assert (frozen.count, frozen.sum, frozen.min, frozen.max, frozen.mean) == (
        lognormal_hist.count,
        lognormal_hist.sum,
        lognormal_hist.min,
        lognormal_hist.max,
        lognormal_hist.mean,
    )
    assert len(frozen._counts) < BUCKETS
    assert sys.getsizeof(frozen._counts) < sys.getsizeof(lognormal_hist._counts)
    for bound in (0.001, 0.05, 1.0, 30.0):
        assert frozen.count_at_most(bound) == lognormal_hist.count_at_most(bound)
    assert frozen.freeze() is frozen


def test_frozen_rejects_changes_and_copy_is_live() -> None:
    live = histogram_of([0.01, 0.02, 0.03])
    frozen = live.freeze()
    with pytest.raises(TypeError):
        frozen.record(0.1)
    with pytest.raises(TypeError):
        frozen.record_many(0.1, 2)
    with pytest.raises(TypeError):
        frozen.merge(live)
    assert frozen == live
    # + copies first, so adding to a frozen one works and gives a live histogram.
    total = frozen + live
    assert type(total) is Histogram
    assert total.count == 6


def test_frozen_plus_live_and_copy_of_frozen() -> None:
    live = histogram_of([0.01, 0.02, 0.03])
    frozen = live.freeze()
    thawed = frozen.copy()
    assert type(thawed) is Histogram
    assert thawed == live
    thawed.record(0.5)
    assert thawed.count == 4
    assert frozen.count == 3
    assert live.count == 3
    # freezing did not tie the two together either
    live.record(1.0)
    assert frozen.count == 3


def test_freeze_of_empty_and_the_shared_empty() -> None:
    frozen = Histogram().freeze()
    assert frozen.count == 0
    assert frozen.quantile(0.5) == 0.0
    assert frozen == Histogram()
    assert Histogram() == EMPTY
    assert EMPTY.count == 0


# -- encoding ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["live", "frozen"])
@pytest.mark.parametrize("values", [[], [0.0], [1e-6, 3600.0, 1e9], [0.001, 0.5, 0.5, 7.0]])
def test_bytes_and_text_round_trip(kind: str, values: list[float]) -> None:
    h = histogram_of(values)
    source = h.freeze() if kind == "frozen" else h
    from_bytes = Histogram.from_bytes(source.to_bytes())
    from_text = Histogram.from_text(source.to_text())
    for decoded in (from_bytes, from_text):
        assert decoded == h
        assert list(decoded.buckets()) == list(h.buckets())
        assert (decoded.count, decoded.sum, decoded.min, decoded.max) == (
            h.count,
            h.sum,
            h.min,
            h.max,
        )
        assert decoded.quantiles(STANDARD_QS) == h.quantiles(STANDARD_QS)
        decoded.record(0.1)  # decoding always gives a live histogram
    assert source.to_text().isascii()


def test_encoded_size_is_small(lognormal_hist: Histogram) -> None:
    data = lognormal_hist.to_bytes()
    assert len(data) < 2048
    assert Histogram.from_bytes(data) == lognormal_hist
    assert len(Histogram().to_bytes()) < 64


def test_every_truncation_raises_histogram_error() -> None:
    rng = np.random.default_rng(9)
    h = histogram_of(np.concatenate([rng.lognormal(-3, 1, 300), [1e9] * 200, [0.0] * 130]))
    data = h.to_bytes()
    for cut in range(len(data)):
        with pytest.raises(HistogramError):
            Histogram.from_bytes(data[:cut])


def test_foreign_version_raises() -> None:
    data = bytearray(histogram_of([0.1]).to_bytes())
    data[0] = 2
    with pytest.raises(HistogramError, match="version"):
        Histogram.from_bytes(bytes(data))


def test_corrupt_bytes_raise() -> None:
    h = histogram_of([0.1, 0.1, 0.2])
    data = h.to_bytes()
    # A count byte changed: the buckets no longer add up to the header's count.
    changed = bytearray(data)
    changed[-1] += 1
    with pytest.raises(HistogramError):
        Histogram.from_bytes(bytes(changed))
    # A bucket index past the layout.
    header = struct.pack("<BdddQ", 1, 0.1, 0.1, 0.1, 1)
    with pytest.raises(HistogramError):
        Histogram.from_bytes(header + bytes([0xFF, 0x7F, 0x01]))  # gap 16383, count 1
    # A varint that never ends.
    with pytest.raises(HistogramError):
        Histogram.from_bytes(header + b"\x80\x80\x80")
    with pytest.raises(HistogramError):
        Histogram.from_bytes(b"")


@pytest.mark.parametrize("text", ["", "!!!!", "abc", "é", "AAAA"])
def test_bad_text_raises_histogram_error(text: str) -> None:
    with pytest.raises(HistogramError):
        Histogram.from_text(text)


def test_histogram_error_is_a_value_error() -> None:
    assert issubclass(HistogramError, ValueError)


def test_frozen_histogram_from_text() -> None:
    h = histogram_of([0.1, 0.2])
    decoded = FrozenHistogram.from_text(h.to_text())
    assert decoded.quantile(1.0) == 0.2


# -- count_at_most and record_many -------------------------------------------------------


def test_count_at_most_is_exact_up_to_the_straddling_bucket(
    lognormal: np.ndarray, lognormal_hist: Histogram
) -> None:
    for bound in (1e-4, 0.003, 0.01, 0.05, 0.0501, 0.2, 1.0, 4.0, 10.0, 59.0, 3000.0):
        got = lognormal_hist.count_at_most(bound)
        assert (
            int(np.sum(lognormal <= bound / GAMMA))
            <= got
            <= int(np.sum(lognormal <= bound * GAMMA))
        )
    assert lognormal_hist.count_at_most(1e-9) == 0
    assert lognormal_hist.count_at_most(MAX_VALUE) == lognormal_hist.count
    assert lognormal_hist.count_at_most(math.inf) == lognormal_hist.count


def test_count_at_most_on_millisecond_steps() -> None:
    h = histogram_of([ms / 1000 for ms in range(1, 101)])
    assert 49 <= h.count_at_most(0.05) <= 50
    assert h.count_at_most(0.0005) == 0
    assert h.count_at_most(0.1) >= 99
    assert h.count_at_most(1.0) == 100
    with_overflow = histogram_of([0.01, 1e9])
    assert with_overflow.count_at_most(math.inf) == 2


def test_count_at_most_counts_zeros() -> None:
    h = histogram_of([0.0, 0.0, 0.0])
    assert h.count_at_most(0.0) == 3


def test_record_many_equals_repeated_record() -> None:
    many = Histogram()
    many.record_many(0.25, 7)
    many.record_many(0.0, 2)
    many.record_many(1e9, 1)
    many.record_many(0.5, 0)
    many.record_many(0.5, -3)
    one_by_one = histogram_of([0.25] * 7 + [0.0] * 2 + [1e9])
    assert many == one_by_one
    assert many.count == 10
    assert many.max == 1e9
    assert many.min == 0.0
    assert math.isclose(many.sum, 0.25 * 7 + 1e9)


def test_pack_round_trips_and_is_read_only() -> None:
    h = Histogram()
    for i in range(1, 5000):
        h.record(i * 1e-5)
    packed = h.pack()
    back = Histogram.unpack(packed)
    assert back == h
    assert back.quantile(0.99) == h.quantile(0.99)
    assert len(packed) < len(h.freeze()._counts) * 8
    with pytest.raises(TypeError):
        back.record(1.0)
    assert Histogram.unpack(Histogram().pack()).count == 0


def test_record_all_equals_record_one_by_one() -> None:
    values = [0.0, 5e-7, 1e-6, 0.0123, 0.5, 2.0, 4000.0, 1e-6]
    one, batch = Histogram(), Histogram()
    for v in values:
        one.record(v)
    batch.record_all(values)
    assert batch == one
    only_in_range = [0.001 * i for i in range(1, 500)]
    one2, batch2 = Histogram(), Histogram()
    for v in only_in_range:
        one2.record(v)
    batch2.record_all(only_in_range)
    assert batch2 == one2


def test_record_all_refuses_negative_or_nan_without_recording() -> None:
    h = Histogram()
    for bad in ([0.1, -0.001], [0.1, float("nan")]):
        with pytest.raises(ValueError, match=">= 0"):
            h.record_all(bad)
    assert h.count == 0
    with pytest.raises(TypeError):
        h.freeze().record_all([0.1])
