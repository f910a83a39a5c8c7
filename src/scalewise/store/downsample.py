"""Merge fine interval snapshots into coarser ones, keeping every total exact; and the rows
snapshots are stored as.

Retention turns a year of 10 s snapshots into 1-minute and 10-minute ones. What a merged
snapshot says must be what the fine ones said, added up: request, error and disconnect
counts add; histograms merge (the histogram of the union, so counts and quantiles over the
coarse snapshot are exactly those over the fine ones); busy time adds; the in-flight peak is
the maximum; gauges (CPU %, RSS …) are levels, so they average, weighted by the seconds each
snapshot covered. Routes merge the same way, route by route.

Two paths give the same result: :func:`merge_snapshots` over
:class:`~scalewise.metrics.windows.IntervalSnapshot` objects (the reference), and
:func:`merge_rows` over stored rows, which retention runs: it merges histograms as sparse
bucket lists straight from their bytes instead of building 1 100-bucket arrays, about 3×
faster (a test checks that both paths produce the same row). Pure functions; the stores
decide which rows to merge and when.
"""

from __future__ import annotations

import base64
import json
import math
import operator
import struct
from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate
from typing import Any

from scalewise.metrics.histogram import BUCKETS, EMPTY, FrozenHistogram, Histogram, merge_all
from scalewise.metrics.windows import IntervalSnapshot, RouteSnapshot

#: A stored snapshot: instance, worker, start, resolution, seconds, requests, errors,
#: client_errors, disconnects, inflight_peak, busy_seconds, latency, ttfb, queue_time (bytes
#: of :meth:`Histogram.to_bytes`, None when empty), routes, gauges (JSON text, None when empty).
Row = tuple[Any, ...]
_HISTOGRAM_COLUMNS = (11, 12, 13)

# The histogram's byte layout (metrics/histogram.py): a header, then varint pairs of
# (gap to the previous non-zero bucket, count).
_HEADER = struct.Struct("<BdddQ")
_FORMAT_VERSION = 1
_EMPTY_BYTES = EMPTY.to_bytes()
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_DECODER = json.JSONDecoder()


def bucket_start(t: float, resolution: float) -> float:
    """Start of the ``resolution``-wide bucket holding ``t`` (aligned to multiples of it)."""
    return math.floor(t / resolution) * resolution


# -- fast paths over frozen histograms ------------------------------------------------------
# ``Histogram.from_bytes(b).freeze()`` and ``live.merge(f).freeze()`` each scan the full
# 1 100-bucket layout (~70 µs); retention and replay handle millions of histograms. These
# build the trimmed frozen form directly, with the same result (tests compare them), and
# should move into metrics/histogram.py.


def frozen_from_span(
    lo: int, counts: list[int], count: int, total: float, low: float, high: float
) -> FrozenHistogram:
    """The frozen histogram whose bucket ``lo + i`` holds ``counts[i]`` (no zero at either end)."""
    frozen = FrozenHistogram.__new__(FrozenHistogram)
    frozen._counts = counts
    frozen._lo = lo
    frozen.count, frozen.sum, frozen.min, frozen.max = count, total, low, high
    return frozen


def _varints(payload: bytes) -> list[int]:
    values: list[int] = []
    append = values.append
    value = shift = 0
    for byte in payload:
        if byte < 0x80:
            append(value | byte << shift)
            value = shift = 0
        else:
            value |= (byte & 0x7F) << shift
            shift += 7
    if shift:
        raise ValueError("truncated varint")
    return values


def _parse(data: bytes) -> tuple[int, float, float, float, int, list[int], Sequence[int]] | None:
    """(count, sum, min, max, first bucket, positions from it, counts); None when empty."""
    version, total, low, high, count = _HEADER.unpack_from(data)
    if count == 0 and len(data) == _HEADER.size and version == _FORMAT_VERSION:
        return None
    # The first gap is the first bucket's index (two bytes); the gaps and counts after it are
    # usually below 128, one byte each, and need no varint decoding at all.
    at, shift, lo = _HEADER.size, 0, -1
    while data[at] & 0x80:
        lo += (data[at] & 0x7F) << shift
        shift += 7
        at += 1
    lo += (data[at] << shift) + 1
    rest = data[at + 1 :]
    values: Sequence[int] = rest if max(rest, default=0) < 0x80 else _varints(rest)
    counts, gaps = values[0::2], values[1::2]
    positions = list(accumulate(map((1).__add__, gaps), initial=0))
    if (
        version != _FORMAT_VERSION
        or len(positions) != len(counts)
        or lo + positions[-1] >= BUCKETS
        or sum(counts) != count
        or 0 in counts
    ):
        raise ValueError("not the layout this decoder knows")
    return count, total, low, high, lo, positions, counts


def decode_histogram(blob: bytes | None) -> FrozenHistogram:
    """``Histogram.from_bytes(blob).freeze()``, about 6× faster; ``None`` is ``EMPTY``."""
    if blob is None:
        return EMPTY
    data = bytes(blob)
    try:
        parsed = _parse(data)
    except (ValueError, IndexError, struct.error):
        # Anything unusual (another version, corrupt): the histogram's own decoder handles
        # it or raises HistogramError.
        return Histogram.from_bytes(data).freeze()
    if parsed is None:
        return EMPTY
    count, total, low, high, lo, positions, counts = parsed
    span = [0] * (positions[-1] + 1)
    for position, n in zip(positions, counts, strict=True):
        span[position] = n
    return frozen_from_span(lo, span, count, total, low, high)


def _put_varints(values: Sequence[int]) -> bytes:
    if max(values, default=0) < 0x80:
        return bytes(values)
    out = bytearray()
    for value in values:
        n = value
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
    return bytes(out)


def merge_blobs(blobs: Iterable[bytes | None]) -> bytes | None:
    """The bytes of the merge of encoded histograms (``None`` for none), without decoding
    them into bucket arrays; equal to ``merge_all(...).to_bytes()``."""
    parts = [bytes(b) for b in blobs if b is not None]
    if len(parts) <= 1:
        return parts[0] if parts else None
    try:
        parsed = [p for p in map(_parse, parts) if p is not None]
    except (ValueError, IndexError, struct.error):
        merged = merge_all(Histogram.from_bytes(data) for data in parts)
        return merged.to_bytes() if merged.count else None
    if len(parsed) <= 1:
        return next((d for d in parts if len(d) > _HEADER.size), None)
    acc: dict[int, int] = {}
    count, total, low, high = 0, 0.0, math.inf, 0.0
    for n, part_sum, part_min, part_max, lo, positions, counts in parsed:
        count += n
        total += part_sum
        low = min(low, part_min)
        high = max(high, part_max)
        for index, c in zip(map(lo.__add__, positions), counts, strict=True):
            acc[index] = acc.get(index, 0) + c
    indices = sorted(acc)
    values = [0] * (2 * len(indices))
    values[1::2] = [acc[i] for i in indices]
    # Gaps: the first bucket's index, then the empty buckets between neighbours.
    values[2::2] = map(operator.sub, indices[1:], map((1).__add__, indices))
    header = _HEADER.pack(_FORMAT_VERSION, total, low, high, count)
    return header + _put_varints((indices[0],)) + _put_varints(values[1:])


def merge_histograms(histograms: Iterable[Histogram]) -> FrozenHistogram:
    """The frozen histogram of every sample in ``histograms`` (``EMPTY`` when none)."""
    parts = [h for h in histograms if h.count]
    if not parts:
        return EMPTY
    if not all(isinstance(h, FrozenHistogram) for h in parts):
        return merge_all(parts).freeze()
    if len(parts) == 1:
        return parts[0]  # type: ignore[return-value]
    lo = min(h._lo for h in parts)
    span = [0] * (max(h._lo + len(h._counts) for h in parts) - lo)
    count, total, low, high = 0, 0.0, math.inf, 0.0
    for h in parts:
        at = h._lo - lo
        end = at + len(h._counts)
        span[at:end] = map(operator.add, span[at:end], h._counts)
        count += h.count
        total += h.sum
        low = min(low, h.min)
        high = max(high, h.max)
    return frozen_from_span(lo, span, count, total, low, high)


def _average(gauges: Iterable[tuple[Mapping[str, float], float]]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for values, seconds in gauges:
        for name, value in values.items():
            acc = sums.get(name)
            if acc is None:
                acc = sums[name] = [0.0, 0.0, 0.0, 0.0]  # weighted sum, weight, sum, n
            acc[0] += value * seconds
            acc[1] += seconds
            acc[2] += value
            acc[3] += 1
    return {
        # Zero-length snapshots carry no weight; if all are, fall back to the plain mean.
        name: acc[0] / acc[1] if acc[1] > 0 else acc[2] / acc[3]
        for name, acc in sums.items()
    }


def merge_gauges(snapshots: Sequence[IntervalSnapshot]) -> dict[str, float]:
    """Average of each gauge over the snapshots that report it, weighted by their seconds."""
    return _average((snap.gauges, snap.seconds) for snap in snapshots)


def merge_routes(snapshots: Iterable[IntervalSnapshot]) -> dict[str, RouteSnapshot]:
    """Per-route totals over ``snapshots``: counts add, latency histograms merge."""
    grouped: dict[str, list[RouteSnapshot]] = {}
    for snap in snapshots:
        for name, route in snap.routes.items():
            grouped.setdefault(name, []).append(route)
    return {
        name: RouteSnapshot(
            requests=sum(r.requests for r in routes),
            errors=sum(r.errors for r in routes),
            client_errors=sum(r.client_errors for r in routes),
            latency=merge_histograms(r.latency for r in routes),
        )
        for name, routes in grouped.items()
    }


def merge_snapshots(
    snapshots: Sequence[IntervalSnapshot], start: float, resolution: float
) -> IntervalSnapshot:
    """One snapshot starting at ``start`` covering ``snapshots`` (one instance and worker).

    It lasts ``resolution`` seconds, or as long as its longest part if that is longer (an
    interval coarser than the resolution is never squeezed into less time than it covered).
    """
    if not snapshots:
        raise ValueError("merge_snapshots needs at least one snapshot")
    workers = {s.worker for s in snapshots}
    if len(workers) > 1:
        raise ValueError(f"cannot merge snapshots of different workers {sorted(workers)}")
    return IntervalSnapshot(
        start=start,
        seconds=max(resolution, *(s.seconds for s in snapshots)),
        requests=sum(s.requests for s in snapshots),
        errors=sum(s.errors for s in snapshots),
        client_errors=sum(s.client_errors for s in snapshots),
        disconnects=sum(s.disconnects for s in snapshots),
        inflight_peak=max(s.inflight_peak for s in snapshots),
        busy_seconds=sum(s.busy_seconds for s in snapshots),
        latency=merge_histograms(s.latency for s in snapshots),
        ttfb=merge_histograms(s.ttfb for s in snapshots),
        queue_time=merge_histograms(s.queue_time for s in snapshots),
        routes=merge_routes(snapshots),
        gauges=merge_gauges(snapshots),
        worker=snapshots[0].worker,
    )


def group_by_bucket(
    snapshots: Iterable[IntervalSnapshot], resolution: float
) -> dict[tuple[int, float], list[IntervalSnapshot]]:
    """Snapshots grouped by ``(worker, bucket start)``, each group oldest first."""
    groups: dict[tuple[int, float], list[IntervalSnapshot]] = {}
    for snap in sorted(snapshots, key=lambda s: s.start):
        groups.setdefault((snap.worker, bucket_start(snap.start, resolution)), []).append(snap)
    return groups


def downsample(snapshots: Iterable[IntervalSnapshot], resolution: float) -> list[IntervalSnapshot]:
    """Merge one instance's snapshots into ``resolution``-wide ones, per worker, oldest first.

    Example:
        >>> fine = [IntervalSnapshot(start=t, seconds=10, requests=2) for t in range(0, 120, 10)]
        >>> [(s.start, s.seconds, s.requests) for s in downsample(fine, 60)]
        [(0, 60, 12), (60, 60, 12)]
    """
    if resolution <= 0:
        raise ValueError(f"a resolution is a number of seconds > 0, got {resolution!r}")
    groups = group_by_bucket(snapshots, resolution)
    merged = [merge_snapshots(group, start, resolution) for (_, start), group in groups.items()]
    return sorted(merged, key=lambda s: (s.start, s.worker))


def totals(snapshots: Iterable[IntervalSnapshot]) -> Mapping[str, float]:
    """Sums that downsampling must preserve exactly (used by tests and the benchmark)."""
    snaps = list(snapshots)
    return {
        "requests": sum(s.requests for s in snaps),
        "errors": sum(s.errors for s in snaps),
        "client_errors": sum(s.client_errors for s in snaps),
        "disconnects": sum(s.disconnects for s in snaps),
        "latency_count": sum(s.latency.count for s in snaps),
        "route_requests": sum(r.requests for s in snaps for r in s.routes.values()),
        "route_latency_count": sum(r.latency.count for s in snaps for r in s.routes.values()),
    }


# -- rows --------------------------------------------------------------------------------


def _json(data: Mapping[str, Any]) -> str | None:
    return _ENCODER.encode(data) if data else None


def _loads(text: str | None) -> dict[str, Any]:
    """JSON object text (None for none); the decoder's C scanner without ``json.loads``'s
    wrappers, which cost more than the scan for the short texts rows hold."""
    return _DECODER.raw_decode(text)[0] if text else {}


def snapshot_row(instance: str, snap: IntervalSnapshot, resolution: float) -> Row:
    """The stored form of ``snap`` (``resolution`` 0 for snapshots as written)."""
    s = snap
    counts = (s.requests, s.errors, s.client_errors, s.disconnects, s.inflight_peak)
    hists = tuple(h.to_bytes() if h.count else None for h in (s.latency, s.ttfb, s.queue_time))
    routes = _json({name: r.to_dict() for name, r in s.routes.items()})
    key = (instance, s.worker, s.start, resolution)
    return (*key, s.seconds, *counts, s.busy_seconds, *hists, routes, _json(dict(s.gauges)))


def _route(data: Mapping[str, Any]) -> RouteSnapshot:
    """``RouteSnapshot.from_dict`` with the fast histogram decoder."""
    latency = decode_histogram(base64.urlsafe_b64decode(data["latency"]))
    return RouteSnapshot(
        int(data["requests"]), int(data["errors"]), int(data["client_errors"]), latency
    )


def row_snapshot(row: Row) -> IntervalSnapshot:
    """Inverse of :func:`snapshot_row` (instance and resolution are not part of a snapshot)."""
    routes = _loads(row[14])
    return IntervalSnapshot(
        start=float(row[2]),
        seconds=float(row[4]),
        requests=int(row[5]),
        errors=int(row[6]),
        client_errors=int(row[7]),
        disconnects=int(row[8]),
        inflight_peak=int(row[9]),
        busy_seconds=float(row[10]),
        latency=decode_histogram(row[11]),
        ttfb=decode_histogram(row[12]),
        queue_time=decode_histogram(row[13]),
        routes={name: _route(r) for name, r in routes.items()},
        gauges={k: float(v) for k, v in _loads(row[15]).items()},
        worker=int(row[1]),
    )


def _merge_route_texts(texts: Iterable[str | None]) -> str | None:
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for text in texts:
        for name, route in _loads(text).items():
            grouped.setdefault(name, []).append(route)
    merged = {}
    for name, routes in grouped.items():
        blob = merge_blobs(base64.urlsafe_b64decode(r["latency"]) for r in routes)
        merged[name] = {
            "requests": sum(int(r["requests"]) for r in routes),
            "errors": sum(int(r["errors"]) for r in routes),
            "client_errors": sum(int(r["client_errors"]) for r in routes),
            "latency": base64.urlsafe_b64encode(blob or _EMPTY_BYTES).decode("ascii"),
        }
    return _json(merged)


def merge_rows(rows: Sequence[Row], start: float, resolution: float) -> Row:
    """:func:`merge_snapshots` on stored rows of one instance and worker, oldest first."""
    if not rows:
        raise ValueError("merge_rows needs at least one row")
    columns = list(zip(*rows, strict=True))
    if len(set(columns[0])) > 1 or len(set(columns[1])) > 1:
        raise ValueError("cannot merge rows of different instances or workers")
    hists = tuple(merge_blobs(columns[i]) for i in _HISTOGRAM_COLUMNS)
    gauges = _average(
        (_loads(text), seconds) for text, seconds in zip(columns[15], columns[4], strict=True)
    )
    sums = tuple(sum(columns[i]) for i in (5, 6, 7, 8))
    return (
        *(rows[0][0], rows[0][1], start, resolution),
        max(resolution, *columns[4]),
        *sums,
        max(columns[9]),
        sum(columns[10]),
        *hists,
        _merge_route_texts(columns[14]),
        _json(gauges),
    )
