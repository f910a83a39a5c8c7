"""The policy loop: evaluate rules → decide → notify → act, once per evaluation interval.

Used by ``scalewise watch`` (a daemon reading the store or Prometheus) and inside the app
(a background thread of the monitor). Everything here runs off the request path; a failing
store, notifier or hook is logged and the loop goes on. No decision is made on missing data:
rules without data are listed in the status, as the HPA lists missing metrics.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from scalewise.clock import Clock, SystemClock
from scalewise.metrics.windows import IntervalSnapshot
from scalewise.policy.actions import run_command_hook
from scalewise.policy.decide import decide, format_value
from scalewise.policy.evaluator import Evaluator, ValueSource
from scalewise.policy.metrics import SnapshotSource, metric_spec
from scalewise.policy.model import Action, Comparison, Policy, Recommendation, Rule, RuleState
from scalewise.policy.notify.base import alerts_from_states
from scalewise.policy.notify.dispatcher import Dispatcher
from scalewise.policy.replicas import HPAState
from scalewise.store.base import Store

logger = logging.getLogger("scalewise")


class SnapshotValues:
    """Rule values from interval snapshots (the live ring, the store, or a CSV replay).

    Keeps only as much history as the longest rule window needs, so a daemon that runs for
    months holds a bounded amount of memory.
    """

    def __init__(
        self,
        policy: Policy,
        interval: float = 10.0,
        snapshots: Iterable[IntervalSnapshot] = (),
        keep: float | None = None,
    ) -> None:
        self.interval = interval
        longest = max((r.window for r in policy.rules), default=900.0)
        # ``keep=math.inf`` holds everything (a replay walks the whole period).
        self.keep = longest + 2 * interval if keep is None else keep
        self._snaps: deque[IntervalSnapshot] = deque()
        self._source = SnapshotSource((), interval)
        self.latest = -math.inf
        self.add(snapshots)

    def add(self, snapshots: Iterable[IntervalSnapshot]) -> None:
        fresh = sorted(snapshots, key=lambda s: s.start)
        if not fresh:
            return
        self._snaps.extend(fresh)
        self.latest = max(self.latest, fresh[-1].end)
        # Trim in chunks (a tenth of the history at a time): a rebuild is not free.
        horizon = self.latest - self.keep
        if (
            math.isfinite(horizon)
            and self._snaps
            and (self._snaps[0].end < horizon - self.keep / 10)
        ):
            while self._snaps and self._snaps[0].end < horizon:
                self._snaps.popleft()
            self._source = SnapshotSource(self._snaps, self.interval)
        else:
            self._source.extend(fresh)  # rebuilds by itself if the batch goes back in time

    def value(self, rule: Rule, now: float) -> float | None:
        if rule.promql is not None or not rule.metric:
            return None  # promql rules need Prometheus (scalewise watch --prometheus)
        return self._source.value(rule.metric, rule.window, now)


@dataclass
class PolicyStatus:
    """What ``scalewise status`` and ``/health/scaling`` show of the policy."""

    evaluated_at: float | None = None
    states: dict[str, RuleState] = field(default_factory=dict)
    recommendation: Recommendation | None = None
    hook: dict[str, Any] | None = None

    def to_dict(self, policy: Policy) -> dict[str, Any]:
        rules = []
        for rule in policy.rules:
            state = self.states.get(rule.name)
            value = state.value if state else None
            rules.append(
                {
                    "name": rule.name,
                    "metric": rule.metric if rule.promql is None else "promql",
                    "condition": f"{rule.op.value} {format_value(rule.metric, rule.threshold)}",
                    "for_seconds": rule.for_,
                    "action": rule.action.value,
                    "state": state.status.value if state else "inactive",
                    "value": value,
                    "value_text": format_value(rule.metric, value)
                    if value is not None
                    else "no data",
                    "active_since": state.active_at if state else None,
                    "firing_since": state.fired_at if state else None,
                }
            )
        rec = self.recommendation
        return {
            "preset": policy.preset,
            "evaluated_at": self.evaluated_at,
            "evaluation_interval": policy.evaluation_interval,
            "rules": rules,
            "recommendation": rec.to_dict() if rec else None,
            "hook": self.hook,
        }


class PolicyRunner:
    """One policy's loop. Call :meth:`run_once` when :meth:`due`; :meth:`close` at the end."""

    def __init__(
        self,
        policy: Policy,
        source: ValueSource,
        store: Store | None = None,
        clock: Clock | None = None,
        *,
        service: str = "",
        instance: str = "",
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.policy = policy
        self.clock: Clock = clock or SystemClock()
        self.store = store
        self.evaluator = Evaluator(policy, source, store, self.clock)
        self.service, self.instance = service, instance
        if dispatcher is None and policy.notifications.receivers:
            dispatcher = Dispatcher(policy.notifications, store=store, clock=self.clock)
        self.dispatcher = dispatcher
        self.status = PolicyStatus()
        self.current_plan = policy.current_plan
        self.instances = policy.instances
        self.last_change_at = self._last_change(store, policy.cooldown)
        self.hpa_state = HPAState()  # the autoscaler's scale history (behavior, windows)

    def _last_change(self, store: Store | None, cooldown: float) -> float | None:
        """The last scale recommendation still inside the cooldown, from the store, so a
        restart (or ``watch --once`` from cron) does not recommend the same change again."""
        if store is None:
            return None
        try:
            recent = store.decisions(self.clock.wall() - cooldown)
        except Exception as exc:
            logger.warning("scalewise: cannot read past decisions: %s", exc)
            return None
        changes = [d.at for d in recent if d.action in ("scale_up", "scale_down")]
        return max(changes, default=None)

    def due(self, now: float) -> bool:
        return self.evaluator.due(now)

    def run_once(self, now: float | None = None, act: bool = True) -> Recommendation:
        """Evaluate every rule at ``now``, decide, and unless ``act`` is false, record,
        notify and run the hook (``scalewise status`` only looks)."""
        now = self.evaluator.slot(self.clock.wall() if now is None else now)
        states = self.evaluator.evaluate(now)
        rec = decide(
            self.policy,
            states,
            now,
            last_change_at=self.last_change_at,
            current_plan=self.current_plan,
            current_instances=self.instances,
            hpa_values=hpa_values(self.policy, self.evaluator.source, now, self.instances),
            hpa_state=self.hpa_state,
        )
        previous = self.status.recommendation
        self.status = PolicyStatus(now, dict(states), rec, self.status.hook)
        if not act:
            return rec
        if rec.action in ("scale_up", "scale_down"):
            self.last_change_at = now  # starts the cooldown, acted on or not
            self._act(rec)
        if self.store is not None and (previous is None or _changed(previous, rec)):
            try:
                self.store.record_decision(rec)
            except Exception as exc:
                logger.warning("scalewise: could not record the decision: %s", exc)
        if self.dispatcher is not None:
            alerts = alerts_from_states(
                self.policy.rules, states, service=self.service, instance=self.instance
            )
            self.dispatcher.submit(alerts, now)
        return rec

    def _act(self, rec: Recommendation) -> None:
        logger.warning(
            "scalewise: recommendation %s (%s): %s -> %s x%d; %s",
            rec.action,
            rec.kind,
            rec.current_plan,
            rec.target_plan,
            rec.target_instances,
            "; ".join(rec.reasons),
        )
        if not self.policy.command.argv:
            return
        result = run_command_hook(self.policy.command, rec)
        self.status.hook = result.to_dict()
        if result.ok and not result.dry_run:  # the change was made: it is the new baseline
            self.current_plan, self.instances = rec.target_plan, rec.target_instances

    def close(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.close()


#: Metric kinds that add up over replicas: the HPA wants their per-replica average.
_ADDITIVE = frozenset({"rate", "count", "percent", "megabytes", "bytes"})
#: The window HPA targets are read over (the HPA reads current metrics; a minute smooths them).
HPA_WINDOW = 60.0


def hpa_values(
    policy: Policy, source: ValueSource, now: float, replicas: int
) -> dict[str, float | None] | None:
    """Per-replica values of ``policy.horizontal.targets`` for the HPA formula (None = off).

    Snapshot sources add figures over instances (rps, CPU %, memory), so those are divided
    by the replica count; latencies and ratios are already per request.
    """
    hz = policy.horizontal
    if hz is None or not hz.targets:
        return None
    out: dict[str, float | None] = {}
    for target in hz.targets:
        probe = Rule(
            name=f"hpa:{target.metric}",
            metric=target.metric,
            op=Comparison.GT,
            threshold=target.target,
            action=Action.NOTIFY,
            window=HPA_WINDOW,
        )
        try:
            value = source.value(probe, now)
        except Exception:
            value = None
        if value is not None and metric_spec(target.metric).kind in _ADDITIVE:
            value /= max(1, replicas)
        out[target.metric] = value
    return out


def _changed(a: Recommendation, b: Recommendation) -> bool:
    return (a.action, a.target_plan, a.target_instances, a.firing) != (
        b.action,
        b.target_plan,
        b.target_instances,
        b.firing,
    )
