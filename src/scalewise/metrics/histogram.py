"""A log-bucketed, mergeable latency histogram with a fixed 1 % relative error bound.

Scheme: DDSketch's logarithmic mapping (Masson, Rim & Lee, VLDB 2019) over a dense, fixed
layout. A value ``v`` in [1 µs, 1 h] lands in bucket ``floor(ln v / ln γ)`` with
``γ = (1 + α) / (1 − α)`` and ``α = 0.01``; the bucket is reported by the value
``2 γ^(k+1) / (γ + 1)``, which is within ``α`` (relative) of every value the bucket holds.
Values below 1 µs (including 0) share one zero bucket; values above 1 h share an overflow
bucket and are reported clamped to the exact maximum, which is kept separately.

Why this scheme: the relative error bound holds for *every* quantile (HDR's holds only to its
significant-digit setting and needs a tracked range), recording is one ``log`` and one list
increment (O(1), no search), and because the layout is fixed, two histograms merge by adding
their counts: the sum of two is exactly the histogram of the union. Memory is the ~1,100
buckets of the layout whatever the number of samples; serialisation stores only non-zero
buckets, as varint deltas.

Recording runs on every request, so its half of the class (the fields, ``record`` and
``record_all``) is also written in C (``_speedups.c``, built when the package is installed
and a compiler is there); the pure-Python ``_PyCore`` below is the fallback and the
reference, and both place every value in the same bucket. ``SCALEWISE_PURE_PYTHON=1`` forces
the fallback; ``CORE`` says which one is in use.
"""

from __future__ import annotations

import base64
import math
import os
import struct
import zlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeAlias

from scalewise.errors import HistogramError

RELATIVE_ACCURACY: float = 0.01
MIN_VALUE: float = 1e-6
MAX_VALUE: float = 3600.0

_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_INV_LOG_GAMMA = 1.0 / _LOG_GAMMA
_KEY_MIN = math.floor(math.log(MIN_VALUE) * _INV_LOG_GAMMA)
_KEY_MAX = math.floor(math.log(MAX_VALUE) * _INV_LOG_GAMMA)
# Index 0 is the zero bucket, the last index the overflow bucket.
_OFFSET = 1 - _KEY_MIN
_OVERFLOW = _KEY_MAX + _OFFSET + 1
BUCKETS: int = _OVERFLOW + 1
_FORMAT_VERSION = 1
_HEADER = struct.Struct("<BdddQ")  # version, sum, min, max, count
_PACKED = struct.Struct("<qqddd")  # lo, count, sum, min, max

_log = math.log


def bucket_index(value: float) -> int:
    """The bucket a value lands in (``record`` inlines the same arithmetic for speed)."""
    if not value >= 0.0:
        raise ValueError(f"a latency must be a number >= 0, got {value!r}")
    if value < MIN_VALUE:
        return 0
    if value > MAX_VALUE:
        return _OVERFLOW
    return int(_log(value) * _INV_LOG_GAMMA + _OFFSET)


def bucket_value(index: int) -> float:
    """The value that represents bucket ``index`` (within α of anything in it)."""
    if index <= 0:
        return 0.0
    key = min(index, _OVERFLOW - 1) - _OFFSET
    return 2.0 * _GAMMA ** (key + 1) / (_GAMMA + 1)


def bucket_upper_bound(index: int) -> float:
    """The exclusive upper edge of bucket ``index`` (``inf`` for the overflow bucket)."""
    if index <= 0:
        return MIN_VALUE
    if index >= _OVERFLOW:
        return math.inf
    return _GAMMA ** (index - _OFFSET + 1)


class _PyCore:
    """The fields and the recording half of :class:`Histogram`, in Python: the reference for
    the C core in ``_speedups.c`` and the fallback where it is not built."""

    __slots__ = ("_counts", "count", "max", "min", "sum")

    def __init__(self) -> None:
        self._counts: list[int] = [0] * BUCKETS
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = 0.0

    def record(self, value: float) -> None:
        """Add one observation (seconds, ≥ 0). Raises ``ValueError`` on negative or NaN."""
        if value >= MIN_VALUE:
            if value <= MAX_VALUE:
                self._counts[int(_log(value) * _INV_LOG_GAMMA + _OFFSET)] += 1  # >0: int() floors
            else:
                self._counts[_OVERFLOW] += 1
        elif value >= 0.0:
            self._counts[0] += 1
        else:
            raise ValueError(f"a latency must be a number >= 0, got {value!r}")
        self.count += 1
        self.sum += value
        if value > self.max:
            self.max = value
        if value < self.min:
            self.min = value

    def record_all(self, values: Sequence[float]) -> None:
        """``record(v)`` for each of ``values``, for batch folds on hot paths: per value only the
        bucket bump; count, sum, min and max once, in C. Negative or NaN values are refused
        (``ValueError``) before anything is recorded, as ``record`` refuses them."""
        if not values:
            return
        low, high, total = min(values), max(values), sum(values)
        if not low >= 0.0 or math.isnan(total):
            raise ValueError(f"latencies must be numbers >= 0, got {low!r} among them")
        counts = self._counts
        if high < MIN_VALUE:  # all zero: connect time on kept-alive connections, say
            counts[0] += len(values)
        elif low >= MIN_VALUE and high <= MAX_VALUE:
            log, scale, offset = _log, _INV_LOG_GAMMA, _OFFSET
            for value in values:
                counts[int(log(value) * scale + offset)] += 1
        else:
            for value in values:
                counts[bucket_index(value)] += 1
        self.count += len(values)
        self.sum += total
        if high > self.max:
            self.max = high
        if low < self.min:
            self.min = low


def _load_core() -> tuple[type, str]:
    """The C core when it was built (and not switched off), else the Python one."""
    if os.environ.get("SCALEWISE_PURE_PYTHON", "") not in ("", "0"):
        return _PyCore, "python"
    try:
        from scalewise.metrics import _speedups  # noqa: PLC0415 - optional, and switchable
    except ImportError:
        return _PyCore, "python"
    _speedups.configure(MIN_VALUE, MAX_VALUE, _INV_LOG_GAMMA, float(_OFFSET), BUCKETS)
    return _speedups.HistogramCore, "c"


if TYPE_CHECKING:  # the C core has the same fields and methods
    _Core: TypeAlias = _PyCore
    CORE = "python"
else:
    _Core, CORE = _load_core()


class Histogram(_Core):
    """Latency histogram in seconds. ``record`` is O(1); ``h1 + h2`` is the union's histogram.

    Example:
        >>> h = Histogram()
        >>> for ms in range(1, 101):
        ...     h.record(ms / 1000)
        >>> round(h.quantile(0.5), 3), h.count, h.max
        (0.05, 100, 0.1)
    """

    __slots__ = ()
    _lo = 0  # index of _counts[0]; non-zero only in frozen, trimmed copies

    def record_many(self, value: float, times: int) -> None:
        """Add ``times`` observations of the same value (used when replaying summaries)."""
        if times <= 0:
            return
        self._counts[bucket_index(value)] += times
        self.count += times
        self.sum += value * times
        self.max = max(self.max, value)
        self.min = min(self.min, value)

    @property
    def mean(self) -> float:
        """Exact arithmetic mean (0 when empty)."""
        return self.sum / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """The value at rank ``q·(n−1)`` within 1 % relative error; 0 when empty.

        ``quantile(0)`` and ``quantile(1)`` are the exact minimum and maximum; other results
        are clamped to them, and a rank in the overflow bucket (over 1 h) reports the maximum.
        """
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Iterable[float]) -> list[float]:
        """Several quantiles in one pass over the buckets."""
        wanted = sorted((q, i) for i, q in enumerate(qs))
        for q, _ in wanted:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"a quantile is between 0 and 1, got {q!r}")
        out = [0.0] * len(wanted)
        if self.count == 0 or not wanted:
            return out
        position, seen, last = 0, 0, self.count - 1
        for index, n in enumerate(self._counts, self._lo):
            if not n:
                continue
            seen += n
            while position < len(wanted) and seen > wanted[position][0] * last:
                q, slot = wanted[position]
                out[slot] = self._value_at(index, q)
                position += 1
            if position == len(wanted):
                break
        return out

    def _value_at(self, index: int, q: float) -> float:
        if q >= 1.0 or index >= _OVERFLOW:
            return self.max
        if q <= 0.0:
            return self.min
        return min(max(bucket_value(index), self.min), self.max)

    def count_at_most(self, bound: float) -> int:
        """Observations ≤ ``bound``, exact up to the one bucket that straddles it."""
        if bound < 0:
            return 0
        total = 0
        for index, n in enumerate(self._counts, self._lo):
            if n and (index == 0 or bucket_value(index) <= bound):
                total += n
        return total

    def buckets(self) -> Iterator[tuple[int, int]]:
        """Non-zero ``(index, count)`` pairs in increasing order."""
        return ((i, n) for i, n in enumerate(self._counts, self._lo) if n)

    def merge(self, other: Histogram) -> Histogram:
        """Add ``other`` into this histogram in place and return self."""
        if not isinstance(other, Histogram):
            raise HistogramError(f"cannot merge a Histogram with {type(other).__name__}")
        if other.count:
            counts = self._counts
            for index, n in enumerate(other._counts, other._lo):
                if n:
                    counts[index] += n
            self.count += other.count
            self.sum += other.sum
            self.max = max(self.max, other.max)
            self.min = min(self.min, other.min)
        return self

    def subtract(self, part: Histogram) -> Histogram:
        """Remove ``part`` (a sub-multiset recorded into self as well) in place; the rest's
        min and max are known to bucket precision (1 %) only."""
        if part.count:
            counts = self._counts
            for index, n in enumerate(part._counts, part._lo):
                if n:
                    counts[index] -= n
            self.count -= part.count
            self.sum -= part.sum
            nonzero = [i for i, n in enumerate(counts, self._lo) if n]
            if not nonzero:
                self.sum, self.min, self.max = 0.0, math.inf, 0.0
            else:  # the rest's extremes, to bucket precision, inside the whole's
                self.max = min(self.max, bucket_value(nonzero[-1]) * _GAMMA)
                self.min = max(self.min, bucket_value(nonzero[0]) / _GAMMA)
        return self

    def __add__(self, other: Histogram) -> Histogram:
        return self.copy().merge(other)

    def freeze(self) -> FrozenHistogram:
        """A read-only copy holding only the span of non-zero buckets (a few hundred bytes)."""
        frozen = FrozenHistogram.__new__(FrozenHistogram)
        nonzero = [i for i, n in enumerate(self._counts, self._lo) if n]
        lo, hi = (nonzero[0], nonzero[-1] + 1) if nonzero else (0, 0)
        frozen._counts = self._counts[lo - self._lo : hi - self._lo]
        frozen._lo = lo
        frozen.count, frozen.sum, frozen.min, frozen.max = self.count, self.sum, self.min, self.max
        return frozen

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (list(self.buckets()), self.count, self.max, self.min) == (
            list(other.buckets()),
            other.count,
            other.max,
            other.min,
        ) and math.isclose(self.sum, other.sum, rel_tol=1e-9, abs_tol=1e-12)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if not self.count:
            return "Histogram(empty)"
        p50, p99 = self.quantiles((0.5, 0.99))
        return f"Histogram(count={self.count}, p50={p50:.6g}, p99={p99:.6g}, max={self.max:.6g})"

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        """Pickle through :meth:`to_bytes` (the C core's fields are not in ``__slots__``)."""
        return (type(self).from_bytes, (self.to_bytes(),))

    def copy(self) -> Histogram:
        """A live (recordable) copy, whether self is live or frozen."""
        return Histogram().merge(self)

    def to_bytes(self) -> bytes:
        """Compact form: a header plus (index gap, count) varint pairs for non-zero buckets."""
        out = bytearray(_HEADER.pack(_FORMAT_VERSION, self.sum, self.min, self.max, self.count))
        previous = -1
        for index, n in self.buckets():
            _put_varint(out, index - previous - 1)
            _put_varint(out, n)
            previous = index
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> Histogram:
        """Inverse of :meth:`to_bytes`; raises :class:`HistogramError` on foreign or bad data."""
        try:
            version, total, low, high, count = _HEADER.unpack_from(data)
        except struct.error as exc:
            raise HistogramError("histogram bytes are truncated") from exc
        if version != _FORMAT_VERSION:
            raise HistogramError(f"unknown histogram format version {version}")
        hist = Histogram()
        position, index, seen = _HEADER.size, -1, 0
        try:
            while position < len(data):
                gap, position = _get_varint(data, position)
                n, position = _get_varint(data, position)
                index += gap + 1
                hist._counts[index] += n
                seen += n
        except IndexError as exc:
            raise HistogramError("histogram bytes are corrupt") from exc
        if seen != count:
            raise HistogramError(f"histogram bytes hold {seen} samples, header says {count}")
        hist.count, hist.sum, hist.min, hist.max = count, total, low, high
        return hist.freeze() if issubclass(cls, FrozenHistogram) else hist

    def pack(self) -> bytes:
        """A compact in-memory form: the trimmed counts as 8-byte integers, zlib-compressed.

        Not a wire format (that is :meth:`to_bytes`): it trades a little size for unpacking
        in C (about 10 µs against about 500 µs for the varint form), for histograms that are
        stored by the thousand and read in bulk, like a load test's per-interval series.
        """
        frozen = self.freeze()
        counts = array("Q", frozen._counts).tobytes()
        head = _PACKED.pack(frozen._lo, self.count, self.sum, self.min, self.max)
        return head + zlib.compress(counts, 1)

    @staticmethod
    def unpack(data: bytes) -> FrozenHistogram:
        """Inverse of :meth:`pack` (a read-only histogram)."""
        lo, count, total, low, high = _PACKED.unpack_from(data)
        counts = array("Q")
        counts.frombytes(zlib.decompress(data[_PACKED.size :]))
        frozen = FrozenHistogram.__new__(FrozenHistogram)
        frozen._counts = counts.tolist()
        frozen._lo = lo
        frozen.count, frozen.sum, frozen.min, frozen.max = count, total, low, high
        return frozen

    def to_text(self) -> str:
        """:meth:`to_bytes` as URL-safe base64, for JSON payloads."""
        return base64.urlsafe_b64encode(self.to_bytes()).decode("ascii")

    @classmethod
    def from_text(cls, text: str) -> Histogram:
        try:
            raw = base64.urlsafe_b64decode(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise HistogramError("histogram text is not base64") from exc
        return cls.from_bytes(raw)


class FrozenHistogram(Histogram):
    """A trimmed, read-only histogram: what rolling windows keep for closed intervals."""

    __slots__ = ("_lo",)

    def record(self, value: float) -> None:
        raise TypeError("a frozen histogram cannot record; use .copy() for a live one")

    def record_many(self, value: float, times: int) -> None:
        raise TypeError("a frozen histogram cannot record; use .copy() for a live one")

    def record_all(self, values: Sequence[float]) -> None:
        raise TypeError("a frozen histogram cannot record; use .copy() for a live one")

    def merge(self, other: Histogram) -> Histogram:
        raise TypeError("a frozen histogram cannot change; merge it into a live one")

    def freeze(self) -> FrozenHistogram:
        return self


EMPTY: FrozenHistogram = Histogram().freeze()


def merge_all(histograms: Iterable[Histogram]) -> Histogram:
    """One histogram holding every sample of ``histograms``."""
    total = Histogram()
    for h in histograms:
        total.merge(h)
    return total


def _put_varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _get_varint(data: bytes, position: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
