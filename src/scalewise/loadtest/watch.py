"""Stop conditions checked once per interval while a run is going.

Three reasons to stop early, each stated in the result's ``stopped`` field:

- an ``abortOnFail`` threshold failed (k6's semantics, after its ``delayAbortEval``);
- a *breaking point* (``break_when``, the stress preset): a condition such as
  ``http_req_failed: rate>0.05`` held over the last ``break_window`` seconds. A break condition
  is a threshold read the other way round — "stop when this holds" — so it is judged as the
  threshold with the opposite operator, by the same code. More than 5 % of arrivals dropped
  over the window (every VU busy) is a breaking point too;
- the target stopped accepting connections: every one of the last requests (20 or more) was
  refused, so the run ends with one clear message instead of thousands of errors.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from scalewise.loadtest.executors import ArrivalRate, RampingArrivalRate, RampingVus
from scalewise.loadtest.results import IntervalStats, RunResult, Totals
from scalewise.loadtest.thresholds import Threshold, parse_thresholds, should_abort

if TYPE_CHECKING:
    from scalewise.loadtest.runner import Progress
    from scalewise.loadtest.scenario import LoadPlan

_OPPOSITE: Final = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "===": "!=", "!=": "=="}
#: Requests in a row that must all be refused before the target counts as gone.
UNREACHABLE_AFTER: Final = 20
_UNREACHABLE: Final = ("refused", "dns")
#: With break conditions set, arrivals that find every VU busy also mark a breaking point: the
#: service holds requests so long that the generator's VU cap, not the rate, limits the load.
DROPPED_BREAK: Final = 0.05


class Watch:
    """Judges the live run each interval; ``check`` returns a stop reason or ``None``."""

    def __init__(self, plan: LoadPlan, thresholds: list[Threshold]) -> None:
        self.plan = plan
        self.abort = [t for t in thresholds if t.abort_on_fail]
        raw = parse_thresholds(plan.break_when, source=plan.source) if plan.break_when else []
        self.breaks = [
            replace(t, op=_OPPOSITE[t.op], abort_on_fail=True, window=plan.break_window)
            for t in raw
        ]
        self.recent: deque[IntervalStats] = deque(maxlen=max(1, int(plan.break_window) + 1))
        self.refused_run = 0
        self.breaking_point: dict[str, Any] | None = None

    def check(self, p: Progress) -> str | None:
        iv = p.interval
        self.recent.append(iv)
        reason = self._unreachable(iv)
        if reason:
            return reason
        if self.breaks:
            live = RunResult({}, Totals(), list(self.recent), p.interval.width)
            broken = should_abort(self.breaks, live, p.elapsed)
            if broken:
                condition = f"{broken[0].metric} {broken[0].expression}"
                self.breaking_point = self._describe(condition, broken[0].observed, p)
                return f"breaking point: {condition}"
            dropped = self._dropped_share()
            if dropped is not None:
                condition = f"dropped_iterations above {DROPPED_BREAK:.0%} of arrivals"
                self.breaking_point = self._describe(condition, dropped, p)
                return f"breaking point: {condition} (every VU busy: responses too slow)"
        if self.abort:
            totals = p.recorder.totals()
            live = RunResult({}, totals, p.recorder.series, p.interval.width)
            failed = should_abort(self.abort, live, p.elapsed)
            if failed:
                return f"threshold {failed[0].metric}: {failed[0].expression} failed (abortOnFail)"
        return None

    def _unreachable(self, iv: IntervalStats) -> str | None:
        refused = sum(iv.errors.get(kind, 0) for kind in _UNREACHABLE)
        self.refused_run = self.refused_run + refused if refused == iv.requests else 0
        if self.refused_run >= UNREACHABLE_AFTER:
            return f"target unreachable: the last {self.refused_run} requests were refused"
        return None

    def _dropped_share(self) -> float | None:
        """Share of arrivals dropped over the break window, once the window is full."""
        if len(self.recent) < (self.recent.maxlen or 1):
            return None
        arrivals = sum(iv.requests + iv.dropped for iv in self.recent)
        share = sum(iv.dropped for iv in self.recent) / arrivals if arrivals else 0.0
        return share if share > DROPPED_BREAK else None

    def _describe(self, condition: str, observed: float, p: Progress) -> dict[str, Any]:
        """Where it broke: the offered load then, and what the target still delivered."""
        window = self.recent[0]
        for iv in list(self.recent)[1:]:
            window = window.combine(iv, concurrent=False)
        out: dict[str, Any] = {
            "at_seconds": round(p.elapsed, 1),
            "condition": condition,
            "observed": round(observed, 4),
            "achieved_rps": round(window.rps, 1),
            "p95_ms": round(window.trend("http_req_duration").quantile(0.95) * 1000, 1),
            "error_rate": round(window.failed / window.requests, 4) if window.requests else None,
            "vus": p.vus,
        }
        for ex in self.plan.executors:
            offset = p.elapsed - ex.start_time
            if isinstance(ex, RampingArrivalRate) and 0 <= offset <= ex.duration:
                out["offered_rps"] = round(ex.rate_at(offset), 1)
            elif isinstance(ex, RampingVus) and 0 <= offset <= ex.duration:
                out["offered_vus"] = ex.target_vus(offset)
            elif isinstance(ex, ArrivalRate) and 0 <= offset <= ex.duration:
                out["offered_rps"] = round(ex.cumulative(offset) / max(offset, 1e-9), 1)
        return out

    def findings(self) -> dict[str, Any]:
        if self.breaking_point is not None:
            return {"breaking_point": self.breaking_point}
        if self.breaks:
            return {"breaking_point": None, "note": "no breaking point within the planned load"}
        return {}
