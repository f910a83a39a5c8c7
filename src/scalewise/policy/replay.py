"""Replay a policy over recorded intervals: the timeline behind ``scalewise replay``.

Rules are evaluated exactly as the live daemon evaluates them (same engine, same
evaluation interval), decisions with the same cooldown, and each recommended change is taken
as followed (the next decision starts from its plan); nothing is sent and nothing runs.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from scalewise.errors import ConfigError
from scalewise.metrics.histogram import Histogram
from scalewise.metrics.windows import IntervalSnapshot
from scalewise.policy.decide import decide, format_value
from scalewise.policy.evaluator import replay
from scalewise.policy.model import Policy, Status
from scalewise.policy.replicas import HPAState
from scalewise.policy.runner import SnapshotValues, hpa_values

#: CSV columns turned into snapshot fields; any other numeric column becomes a gauge.
_FIELDS = (
    "start",
    "seconds",
    "requests",
    "errors",
    "client_errors",
    "latency",
    "inflight_peak",
    "busy_seconds",
)


def replay_timeline(
    policy: Policy,
    snapshots: Sequence[IntervalSnapshot],
    start: float,
    end: float,
    interval: float = 10.0,
) -> dict[str, Any]:
    """State changes and decision changes between ``start`` and ``end``, with a summary."""
    source = SnapshotValues(policy, interval, snapshots, keep=math.inf)
    plan, instances = policy.current_plan, policy.instances
    hpa = HPAState()
    events: list[dict[str, Any]] = []
    previous: dict[str, Status] = {}
    last_change: float | None = None
    last_action = "hold"
    counts = {"evaluations": 0, "scale_up": 0, "scale_down": 0}
    fired: set[str] = set()
    for at, states in replay(policy, source, start, end):
        counts["evaluations"] += 1
        for name, state in states.items():
            before = previous.get(name, Status.INACTIVE)
            if state.status != before:
                rule = policy.rule(name)
                events.append(
                    {
                        "kind": "rule",
                        "at": at,
                        "rule": name,
                        "from": before.value,
                        "to": state.status.value,
                        "value": state.value,
                        "value_text": format_value(rule.metric, state.value),
                    }
                )
                if state.status == Status.FIRING:
                    fired.add(name)
            previous[name] = state.status
        rec = decide(
            policy,
            states,
            at,
            last_change_at=last_change,
            current_plan=plan,
            current_instances=instances,
            hpa_values=hpa_values(policy, source, at, instances),
            hpa_state=hpa,
        )
        if rec.action in ("scale_up", "scale_down"):
            last_change = at
            counts[rec.action] += 1
            plan, instances = rec.target_plan, rec.target_instances  # as if it was followed
        if "hold" not in (rec.action, last_action) or rec.action != last_action:
            events.append(
                {
                    "kind": "decision",
                    "at": at,
                    "action": rec.action,
                    "target": f"{rec.target_plan or '—'} × {rec.target_instances}",
                    "reason": "; ".join(rec.reasons[:2]),
                    "cost_after": rec.cost_after,
                }
            )
        last_action = rec.action
    return {
        "start": start,
        "end": end,
        "events": events,
        "summary": {**counts, "firing_rules": len(fired)},
    }


def load_csv(path: str | Path) -> list[IntervalSnapshot]:
    """Intervals from a CSV with a header: ``start`` (epoch seconds or ISO 8601) and any of
    ``seconds, requests, errors, client_errors, latency`` (seconds, the interval's typical
    request), ``inflight_peak, busy_seconds``; other numeric columns become gauges
    (``cpu_percent``, ``rss_bytes``, ``memory_percent_of_limit``, ``user:queue_depth`` …)."""
    snaps = []
    with open(path, newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                snaps.append(_row(row))
            except (KeyError, ValueError) as exc:
                raise ConfigError(
                    str(path),
                    f"line {line}",
                    "a 'start' column and numbers in the others",
                    str(exc),
                ) from None
    return sorted(snaps, key=lambda s: s.start)


def _row(row: dict[str, str]) -> IntervalSnapshot:
    raw = row["start"].strip()
    try:
        start = float(raw)
    except ValueError:
        start = datetime.fromisoformat(raw).timestamp()
    number = {k: float(v) for k, v in row.items() if k != "start" and v not in ("", None)}
    requests = int(number.get("requests", 0))
    latency = Histogram()
    if requests and "latency" in number:
        latency.record_many(number["latency"], requests)
    return IntervalSnapshot(
        start=start,
        seconds=number.get("seconds", 10.0),
        requests=requests,
        errors=int(number.get("errors", 0)),
        client_errors=int(number.get("client_errors", 0)),
        inflight_peak=int(number.get("inflight_peak", 0)),
        busy_seconds=number.get("busy_seconds", 0.0),
        latency=latency.freeze(),
        gauges={k: v for k, v in number.items() if k not in _FIELDS},
    )
