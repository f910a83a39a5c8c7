"""What a soak test is for: does memory grow, does latency drift, over hours?

If the target runs scalewise, :class:`ScalingPoller` reads its ``/health/scaling`` every
``every`` seconds during the run (the service's own RSS, summed over its workers), and
:func:`soak_findings` fits a least-squares line through those samples (MB per hour) and through
the p95 of every interval of the run (ms per hour), besides comparing the first and last tenth.
A line rather than last-minus-first, because one garbage-collection spike at either end would
otherwise decide the verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Final
from urllib.parse import urljoin

import httpx

from scalewise.loadtest.results import RunResult

DEFAULT_PATH: Final = "/health/scaling"
#: At most this many samples are kept (one every 30 s covers 33 hours).
MAX_SAMPLES: Final = 4000


@dataclass(slots=True)
class ScalingPoller:
    """Polls the target's ``/health/scaling`` for its memory; bounded in samples and time."""

    target: str
    every: float = 30.0
    path: str = DEFAULT_PATH
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds, rss bytes)
    problem: str | None = None

    async def run(self, stop: asyncio.Event, limit: float) -> None:
        """Poll until ``stop`` is set or ``limit`` seconds have passed."""
        url = urljoin(self.target.rstrip("/") + "/", self.path.lstrip("/"))
        start = perf_counter()
        async with httpx.AsyncClient(timeout=5.0) as client:
            while not stop.is_set() and perf_counter() - start < limit:
                found, rss = await self._sample(client, url)
                if not found:
                    return  # not a scalewise service: one clear note, no more traffic
                if rss is not None and len(self.samples) < MAX_SAMPLES:
                    self.samples.append((perf_counter() - start, rss))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.every)

    async def _sample(self, client: httpx.AsyncClient, url: str) -> tuple[bool, float | None]:
        """(is it scalewise's document, the RSS in it — None until the service has sampled)."""
        try:
            response = await client.get(url)
            process = response.json()["process"] if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            process = None
        if not isinstance(process, dict):
            self.problem = f"{url} did not answer with scalewise's scaling document"
            return False, None
        rss = process.get("rss_bytes")
        return True, float(rss) if isinstance(rss, (int, float)) and rss > 0 else None


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour; None for fewer than 3."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx <= 0:
        return None
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return sxy / sxx * 3600


def soak_findings(result: RunResult, poller: ScalingPoller | None) -> dict[str, Any]:
    """Memory growth per hour and latency drift, each with the data it rests on."""
    series = [iv for iv in result.series if iv.requests]
    p95 = [(iv.start, iv.trend("http_req_duration").quantile(0.95) * 1000) for iv in series]
    tenth = max(1, len(p95) // 10)
    first = sorted(v for _, v in p95[:tenth])
    last = sorted(v for _, v in p95[-tenth:])
    out: dict[str, Any] = {
        "latency_drift_ms_per_hour": _round(slope_per_hour(p95)),
        "p95_first_tenth_ms": _round(first[len(first) // 2]) if first else None,
        "p95_last_tenth_ms": _round(last[len(last) // 2]) if last else None,
    }
    if poller is None or not poller.samples:
        out["memory_growth_mb_per_hour"] = None
        out["memory_note"] = (poller.problem if poller else None) or "memory not polled"
        return out
    mb = [(t, rss / 2**20) for t, rss in poller.samples]
    out["memory_growth_mb_per_hour"] = _round(slope_per_hour(mb))
    out["memory_start_mb"] = _round(mb[0][1])
    out["memory_end_mb"] = _round(mb[-1][1])
    out["memory_samples"] = len(mb)
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
