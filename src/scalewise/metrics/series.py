"""Cumulative Prometheus series: counters and ``le``-bucket histograms keyed by label values.

Labels are bounded by construction: the recorder maps routes to templates and caps them,
methods to a fixed set, statuses to classes. These cells are plain Python objects updated on
the request path; the exposition module renders them, and worker files carry them (as
``to_dict``) so several workers merge by adding.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class BucketCounts:
    """A Prometheus histogram cell: per-bucket counts (non-cumulative), sum and count."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def observe_all(self, values: Sequence[float]) -> None:
        """``observe(v)`` for each of ``values``, as the recorder's batch fold needs it.

        A batch larger than the bucket list is sorted once and cut at each bound by
        bisection (cost per bound, not per value); a small one is placed value by value.
        """
        counts, bounds = self.counts, self.bounds
        if len(values) > len(bounds):
            ordered = sorted(values)
            below = 0
            for i, bound in enumerate(bounds):
                at_most = bisect_right(ordered, bound, below)
                counts[i] += at_most - below
                below = at_most
            counts[-1] += len(ordered) - below
        else:
            for value in values:
                counts[bisect_left(bounds, value)] += 1
        self.count += len(values)
        self.sum = sum(values, self.sum)

    def cumulative(self) -> list[int]:
        running, out = 0, []
        for n in self.counts:
            running += n
            out.append(running)
        return out

    def add(self, other: BucketCounts) -> None:
        if other.bounds != self.bounds:
            raise ValueError("cannot add histograms with different buckets")
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.count += other.count
        self.sum += other.sum

    def to_dict(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum": self.sum}

    @classmethod
    def from_dict(cls, bounds: Sequence[float], data: Mapping[str, Any]) -> BucketCounts:
        cell = cls(bounds)
        counts = [int(n) for n in data["counts"]]
        if len(counts) != len(cell.counts):
            raise ValueError("bucket count mismatch")
        cell.counts = counts
        cell.count = sum(counts)
        cell.sum = float(data["sum"])
        return cell


class RequestSeries:
    """One (method, route, status class) series: its request counter and duration histogram."""

    __slots__ = ("duration", "key", "labels")

    def __init__(self, labels: tuple[str, str, str], bounds: Sequence[float]) -> None:
        self.labels = labels
        self.key = f"{labels[0]} {labels[1]}"  # the rolling-window route key
        self.duration = BucketCounts(bounds)


class SeriesTable:
    """All request series plus the process-wide counters, mergeable across workers."""

    def __init__(self, bounds: Sequence[float], queue_bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.requests: dict[tuple[str, str, str], RequestSeries] = {}
        self.queue_time = BucketCounts(queue_bounds)
        self.ttfb = BucketCounts(bounds)  # streamed responses only; see ttfb_all()
        self.streamed = BucketCounts(bounds)  # the same responses' total duration
        self.counters: dict[str, float] = {
            "exceptions": 0,
            "disconnects": 0,
            "route_overflow": 0,
            "busy_seconds": 0.0,
            "internal_errors": 0,
        }

    def series(self, method: str, route: str, status_class: str) -> RequestSeries:
        labels = (method, route, status_class)
        cell = self.requests.get(labels)
        if cell is None:
            cell = self.requests[labels] = RequestSeries(labels, self.bounds)
        return cell

    def to_dict(self) -> dict[str, Any]:
        return {
            "bounds": list(self.bounds),
            "queue_bounds": list(self.queue_time.bounds),
            "requests": [[*s.labels, s.duration.to_dict()] for s in list(self.requests.values())],
            "queue_time": self.queue_time.to_dict(),
            "ttfb": self.ttfb.to_dict(),
            "streamed": self.streamed.to_dict(),
            "counters": dict(self.counters),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeriesTable:
        table = cls(data["bounds"], data["queue_bounds"])
        for method, route, status, cell in data["requests"]:
            table.series(method, route, status).duration = BucketCounts.from_dict(
                table.bounds, cell
            )
        table.queue_time = BucketCounts.from_dict(table.queue_time.bounds, data["queue_time"])
        table.ttfb = BucketCounts.from_dict(table.bounds, data["ttfb"])
        if "streamed" in data:
            table.streamed = BucketCounts.from_dict(table.bounds, data["streamed"])
        table.counters.update({k: float(v) for k, v in data["counters"].items()})
        return table

    def ttfb_all(self) -> BucketCounts:
        """TTFB of every request: one-piece responses count with their total duration."""
        cell = BucketCounts(self.bounds)
        for series in list(self.requests.values()):
            cell.add(series.duration)
        for i, (n, streamed) in enumerate(zip(self.ttfb.counts, self.streamed.counts, strict=True)):
            cell.counts[i] += n - streamed
        cell.count += self.ttfb.count - self.streamed.count
        cell.sum += self.ttfb.sum - self.streamed.sum
        return cell

    @classmethod
    def merged(cls, tables: Iterable[SeriesTable]) -> SeriesTable | None:
        """The sum of several workers' tables (``None`` when given none)."""
        tables = list(tables)
        if not tables:
            return None
        total = cls(tables[0].bounds, tables[0].queue_time.bounds)
        for t in tables:
            if t.bounds != total.bounds or t.queue_time.bounds != total.queue_time.bounds:
                continue  # a worker started with other buckets; its series cannot add up
            for labels, s in list(t.requests.items()):
                total.series(*labels).duration.add(s.duration)
            total.queue_time.add(t.queue_time)
            total.ttfb.add(t.ttfb)
            total.streamed.add(t.streamed)
            for k, v in t.counters.items():
                total.counters[k] = total.counters.get(k, 0) + v
        return total
