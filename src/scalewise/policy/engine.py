"""The rule state machine, with the semantics of Prometheus alerting rules.

One rule has one state (``inactive`` → ``pending`` → ``firing``). :func:`step` advances it by
one evaluation; :func:`restore` brings a saved state back after a restart. Both are pure and
synchronous: the evaluator owns time, values and the store.

Where this follows Prometheus (``rules/alerting.go`` ``AlertingRule.Eval``; ``rules/group.go``
``Group.RestoreForState``), per evaluation at time ``now``:

- The condition holds when a value is present and ``value op threshold``. A missing value
  (``None``) is an absent series: the condition does not hold. NaN is a present value and, as
  in PromQL, compares false except with ``!=``.
- inactive + condition → pending with ``active_at = now``; with ``for: 0`` the same evaluation
  promotes it to firing (``fired_at = now``), as Prometheus does.
- pending + condition, ``now - active_at >= for`` → firing, ``fired_at = now``. The duration
  is measured between evaluations: a rule fires at the first evaluation at or after
  ``active_at + for``, never in between.
- pending + no condition → inactive, without ``resolved_at`` (it never fired; Prometheus
  deletes the alert and sends nothing).
- firing + no condition → inactive with ``resolved_at = now``; with ``keep_firing_for`` the
  first miss sets ``keep_firing_since`` and the rule stays firing while
  ``now - keep_firing_since < keep_firing_for``. A hit clears ``keep_firing_since``.
- firing while ``now - active_at < for`` (``for:`` was raised since it fired) → back to
  pending (Prometheus ≥ 3.x does this after a rule reload).

Where it differs: Prometheus tracks one alert per output series; a scalewise rule has one
value, so one state. A resolved state keeps ``active_at`` and ``fired_at`` (the notifier sends
them as ``startsAt``) until the condition holds again, instead of Prometheus's 15-minute
``resolvedRetention``.
"""

from __future__ import annotations

from typing import Final

from scalewise.policy.model import Rule, RuleState, Status

#: ``--rules.alert.for-outage-tolerance``: the longest downtime after which ``for`` state is
#: still restored.
OUTAGE_TOLERANCE: Final = 3600.0
#: ``--rules.alert.for-grace-period``: the least time a restored pending rule waits to fire.
FOR_GRACE_PERIOD: Final = 600.0


def condition(rule: Rule, value: float | None) -> bool:
    """Whether ``rule`` holds for ``value``; ``None`` (no data) never holds."""
    return value is not None and rule.op.holds(value, rule.threshold)


def step(rule: Rule, state: RuleState, value: float | None, now: float) -> RuleState:
    """The state after one evaluation of ``rule`` at ``now`` that saw ``value``."""
    if condition(rule, value):
        return _hit(rule, state, value, now)
    return _miss(rule, state, value, now)


def _hit(rule: Rule, state: RuleState, value: float | None, now: float) -> RuleState:
    name = rule.name
    if state.status == Status.INACTIVE:
        if rule.for_ <= 0:
            return RuleState(
                name, Status.FIRING, active_at=now, fired_at=now, value=value, evaluated_at=now
            )
        return RuleState(name, Status.PENDING, active_at=now, value=value, evaluated_at=now)
    active_at = now if state.active_at is None else state.active_at
    held = now - active_at >= rule.for_
    if state.status == Status.PENDING and held:
        return RuleState(
            name, Status.FIRING, active_at=active_at, fired_at=now, value=value, evaluated_at=now
        )
    if state.status == Status.FIRING and held:
        return RuleState(
            name,
            Status.FIRING,
            active_at=active_at,
            fired_at=state.fired_at,
            value=value,
            evaluated_at=now,
        )
    # still pending, or firing although ``for:`` grew since it fired: pending again
    return RuleState(name, Status.PENDING, active_at=active_at, value=value, evaluated_at=now)


def _miss(rule: Rule, state: RuleState, value: float | None, now: float) -> RuleState:
    name = rule.name
    if state.status == Status.INACTIVE:
        return RuleState(
            name,
            Status.INACTIVE,
            active_at=state.active_at,
            fired_at=state.fired_at,
            resolved_at=state.resolved_at,
            value=value,
            evaluated_at=now,
        )
    if state.status == Status.PENDING:  # never fired: nothing to resolve
        return RuleState(name, Status.INACTIVE, value=value, evaluated_at=now)
    active_at = now if state.active_at is None else state.active_at
    if rule.keep_firing_for > 0:
        since = now if state.keep_firing_since is None else state.keep_firing_since
        if now - since < rule.keep_firing_for:
            if now - active_at < rule.for_:  # ``for:`` grew since it fired
                return RuleState(
                    name, Status.PENDING, active_at=active_at, value=value, evaluated_at=now
                )
            return RuleState(
                name,
                Status.FIRING,
                active_at=active_at,
                fired_at=state.fired_at,
                keep_firing_since=since,
                value=value,
                evaluated_at=now,
            )
    return RuleState(
        name,
        Status.INACTIVE,
        active_at=active_at,
        fired_at=state.fired_at,
        resolved_at=now,
        value=value,
        evaluated_at=now,
    )


def restore(
    rule: Rule,
    saved: RuleState | None,
    now: float,
    outage_tolerance: float = OUTAGE_TOLERANCE,
    grace: float = FOR_GRACE_PERIOD,
) -> RuleState:
    """The state to resume from after a restart at ``now``, given the last saved state.

    Follows ``Group.RestoreForState`` of Prometheus 3.x (with the fix, prometheus#19882, that
    stopped skipping rules whose ``for`` is shorter than the grace period). The downtime
    starts at the saved ``evaluated_at`` (Prometheus: the last ``ALERTS_FOR_STATE`` sample);
    the time already spent active is ``evaluated_at - active_at``; ``remaining = for - spent``:

    - no saved state, or an inactive one: returned as is (a fresh inactive state for ``None``).
    - downtime > ``outage_tolerance``, or nothing to measure it by: start over (inactive). A
      rule that was firing keeps ``active_at``/``fired_at`` and gets ``resolved_at = now``,
      so its notification can be closed.
    - ``remaining <= 0``: it had fired (or was due to at its next evaluation): the saved state
      is kept as is, ``status``, ``active_at``, ``fired_at`` and ``keep_firing_since``.
    - ``for < grace``: a pending rule restarts its hold: ``active_at = now``.
    - ``remaining < grace``: it fires ``grace`` after the restart:
      ``active_at = now + grace - for``.
    - otherwise the downtime does not count: ``active_at`` moves forward by the downtime.

    Differences from Prometheus: Prometheus restores only alerts whose condition holds at the
    first evaluation after the restart, and brings a firing alert back as pending for one
    evaluation before it fires again with a new ``FiredAt``. Here the saved state comes back
    and the next :func:`step` applies the condition: firing stays firing with its ``fired_at``
    (no duplicate notification), and a condition that no longer holds resolves it (after
    ``keep_firing_for``) instead of dropping it silently. ``keep_firing_since`` is restored
    too; Prometheus does not persist it, so its ``keep_firing_for`` restarts.
    """
    if saved is None:
        return RuleState(rule.name)
    if saved.status == Status.INACTIVE:
        return saved
    down_at, active_at = saved.evaluated_at, saved.active_at
    if down_at is None or active_at is None or now - down_at > outage_tolerance:
        if saved.status == Status.FIRING:
            return RuleState(
                rule.name,
                active_at=active_at,
                fired_at=saved.fired_at,
                resolved_at=now,
                evaluated_at=down_at,
            )
        return RuleState(rule.name, evaluated_at=down_at)
    remaining = rule.for_ - (down_at - active_at)
    if remaining <= 0:
        return saved
    if rule.for_ < grace:
        active_at = now
    elif remaining < grace:
        active_at = now + grace - rule.for_
    else:
        active_at += max(now - down_at, 0.0)
    return RuleState(
        rule.name, Status.PENDING, active_at=active_at, value=saved.value, evaluated_at=down_at
    )
