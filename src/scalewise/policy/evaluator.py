"""The evaluation loop: every rule of a policy, once per evaluation interval.

:class:`Evaluator` holds the rule states between evaluations, restores them from a store at
start-up and saves them after each evaluation, so ``for:`` survives a restart as it does in
Prometheus. It is synchronous and reads time only from what it is given: the daemon (or an
in-app task) calls :meth:`Evaluator.due` and :meth:`Evaluator.evaluate` from its own loop;
``scalewise replay`` drives the same code over recorded history through :func:`replay`.

Evaluation times are aligned to multiples of ``policy.evaluation_interval`` since the epoch,
like a Prometheus rule group's fixed schedule (Prometheus adds a per-group offset; one policy
needs none), so a restart, a replay and the live loop all evaluate at the same instants.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Final, Protocol

from scalewise.clock import Clock, SystemClock
from scalewise.errors import ConfigError
from scalewise.policy.engine import FOR_GRACE_PERIOD, OUTAGE_TOLERANCE, restore, step
from scalewise.policy.model import Policy, Rule, RuleState

logger = logging.getLogger("scalewise.policy")

#: A failing source or store is logged at most once per rule (or store) in this many seconds.
LOG_EVERY: Final = 600.0


class ValueSource(Protocol):
    """Where rule values come from: the local snapshots, Prometheus, a CSV, a test double.

    ``value`` returns the rule's metric at ``now`` over ``rule.window``, or ``None`` when there
    is no data (an absent series: the condition does not hold). It may raise; the evaluator
    then treats the value as missing and logs the error.
    """

    def value(self, rule: Rule, now: float) -> float | None: ...


class RuleStateStore(Protocol):
    """The part of :class:`~scalewise.store.base.Store` the evaluator uses; any Store is one."""

    def load_rule_states(self) -> dict[str, RuleState]: ...

    def save_rule_states(self, states: Sequence[RuleState]) -> None: ...


class _RateLimitedLog:
    """One warning per key per ``every`` seconds (of the monotonic clock), not per evaluation."""

    def __init__(self, clock: Clock, every: float = LOG_EVERY) -> None:
        self._clock = clock
        self._every = every
        self._last: dict[str, float] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = self._clock.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._every:
            return
        self._last[key] = now
        logger.warning(message, *args)


class Evaluator:
    """Evaluates every rule of ``policy`` against ``source`` and keeps their states.

    With a ``store`` (any :class:`~scalewise.store.base.Store`), states are loaded at
    construction through :func:`~scalewise.policy.engine.restore`, so the downtime is counted
    as Prometheus counts it, and saved after each evaluation. A store that fails is logged
    (rate-limited) and the evaluator carries on in memory.

    Example::

        evaluator = Evaluator(policy, source, store)
        while running:
            now = clock.wall()
            if evaluator.due(now):
                states = evaluator.evaluate(evaluator.slot(now))
            sleep(evaluator.next_due(now) - now)
    """

    def __init__(
        self,
        policy: Policy,
        source: ValueSource,
        store: RuleStateStore | None = None,
        clock: Clock | None = None,
        *,
        outage_tolerance: float = OUTAGE_TOLERANCE,
        grace: float = FOR_GRACE_PERIOD,
    ) -> None:
        if not policy.evaluation_interval > 0:
            raise ConfigError(
                "policy", "evaluation_interval", "a positive duration", policy.evaluation_interval
            )
        self.policy = policy
        self.source = source
        self.store = store
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.interval = float(policy.evaluation_interval)
        self.last_evaluated: float | None = None
        self._log = _RateLimitedLog(self.clock)
        self._states = self._initial_states(outage_tolerance, grace)

    def _initial_states(self, outage_tolerance: float, grace: float) -> dict[str, RuleState]:
        saved: dict[str, RuleState] = {}
        if self.store is not None:
            try:
                saved = self.store.load_rule_states()
            except Exception as exc:
                self._log.warning("store", "cannot load rule states, starting fresh: %s", exc)
        now = self.clock.wall()
        return {
            rule.name: self._resume(rule, saved.get(rule.name), now, outage_tolerance, grace)
            for rule in self.policy.rules
        }

    def _resume(
        self, rule: Rule, saved: RuleState | None, now: float, outage_tolerance: float, grace: float
    ) -> RuleState:
        """Carry on from a state evaluated within the last two intervals as if nothing
        stopped (``scalewise watch --once`` from cron, a new leader taking over); only a
        longer gap is a restart, restored as Prometheus restores it."""
        if (
            saved is not None
            and saved.evaluated_at is not None
            and 0 <= now - saved.evaluated_at <= 2 * self.interval
        ):
            return saved
        return restore(rule, saved, now, outage_tolerance, grace)

    @property
    def states(self) -> dict[str, RuleState]:
        """The current state of each rule, by name (a copy)."""
        return dict(self._states)

    def slot(self, now: float) -> float:
        """The scheduled evaluation time ``now`` falls in: a multiple of the interval."""
        return math.floor(now / self.interval) * self.interval

    def next_due(self, now: float) -> float:
        """When the next scheduled evaluation after ``now`` starts."""
        return self.slot(now) + self.interval

    def due(self, now: float) -> bool:
        """Whether the slot ``now`` falls in has not been evaluated yet."""
        return self.last_evaluated is None or self.slot(now) > self.slot(self.last_evaluated)

    def evaluate(self, now: float | None = None) -> dict[str, RuleState]:
        """Evaluate every rule once at ``now`` (default: the clock's wall time); new states."""
        if now is None:
            now = self.clock.wall()
        states = self._states
        for rule in self.policy.rules:
            states[rule.name] = step(rule, states[rule.name], self._value(rule, now), now)
        self.last_evaluated = now
        if self.store is not None:
            self._save(self.store, list(states.values()))
        return dict(states)

    def _value(self, rule: Rule, now: float) -> float | None:
        """The source's value, or ``None`` when it is missing or the source failed."""
        try:
            value = self.source.value(rule, now)
            return None if value is None else float(value)
        except Exception as exc:
            self._log.warning(
                f"rule:{rule.name}", "rule %s: no value, the source failed: %r", rule.name, exc
            )
            return None

    def _save(self, store: RuleStateStore, states: list[RuleState]) -> None:
        try:
            store.save_rule_states(states)
        except Exception as exc:
            self._log.warning("store", "cannot save rule states: %s", exc)


def evaluation_times(start: float, end: float, interval: float) -> Iterator[float]:
    """Scheduled evaluation times in ``[start, end)``: the multiples of ``interval``."""
    if not interval > 0:
        raise ConfigError("replay", "evaluation_interval", "a positive duration", interval)
    k = math.ceil(start / interval)
    while (t := k * interval) < end:
        yield t
        k += 1


def replay(
    policy: Policy, source: ValueSource, start: float, end: float
) -> Iterator[tuple[float, dict[str, RuleState]]]:
    """Evaluate ``policy`` at every scheduled time in ``[start, end)``, from inactive states.

    Yields ``(time, states)`` lazily, so a month of history streams; this is the timeline
    ``scalewise replay`` prints. Nothing is stored.
    """
    evaluator = Evaluator(policy, source)
    for t in evaluation_times(start, end, evaluator.interval):
        yield t, evaluator.evaluate(t)
