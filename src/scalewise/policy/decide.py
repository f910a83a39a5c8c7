"""Rule states, replica math and the plan catalog → one :class:`Recommendation`.

The rules: scale up when *any* ``scale_up`` rule fires; scale down only when *all*
``scale_down`` rules fire (``scale_down_requires: any`` relaxes that), never while a
``scale_up`` rule fires, and never while a scale rule has no data — the HPA's rule that missing
metrics may block a scale-down but not a scale-up. After a change, ``cooldown`` holds every
further change. ``investigate`` and ``notify`` rules only add reasons.

Two ways to scale. Vertical (default): the next or previous tier of the catalog; at the top,
add an instance while the plan's ``max_instances`` allows; going down, remove instances before
changing tier. Horizontal (``policy.horizontal``): the HPA formula over ``hpa_values`` sets the
replica count (see :mod:`scalewise.policy.replicas`); rules still veto a scale-down, and a firing
``scale_up`` rule adds one instance when the HPA proposes no more. Without HPA targets, horizontal
moves one instance at a time on the rules alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from scalewise.errors import ConfigError, RuleError
from scalewise.policy.metrics import format_value as catalog_format
from scalewise.policy.model import (
    Action,
    Horizontal,
    Plan,
    Policy,
    Recommendation,
    Rule,
    RuleState,
    Status,
)
from scalewise.policy.plans import DEFAULT_PLANS, find_plan, monthly_cost, next_plan
from scalewise.policy.replicas import HPAState, ReplicaCalculator, ReplicaDecision
from scalewise.units import format_duration, format_size

UP, DOWN, HOLD = Action.SCALE_UP.value, Action.SCALE_DOWN.value, "hold"


@dataclass(frozen=True, slots=True)
class _Signals:
    """What the rules say, before plans, replicas or cooldown are considered."""

    direction: str
    down_ok: bool
    firing: tuple[Rule, ...]
    missing: tuple[str, ...]
    values: dict[str, float | None]
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Move:
    action: str
    kind: str
    plan: Plan | None
    instances: int
    reasons: tuple[str, ...] = ()
    cooldown_until: float | None = None


def decide(
    policy: Policy,
    states: Mapping[str, RuleState],
    now: float,
    last_change_at: float | None = None,
    current_plan: str | Plan | None = None,
    current_instances: int | None = None,
    hpa_values: Mapping[str, float | None] | None = None,
    hpa_state: HPAState | None = None,
) -> Recommendation:
    """What ``policy`` advises at ``now`` given each rule's :class:`RuleState` by rule name.

    ``hpa_state`` (horizontal only) is the autoscaler's history and is updated in place; keep
    it between calls, as a fresh one cannot scale down within the stabilization window.
    """
    catalog = policy.plans or DEFAULT_PLANS
    plan = _current_plan(catalog, current_plan if current_plan is not None else policy.current_plan)
    instances = policy.instances if current_instances is None else current_instances
    signals = _signals(policy, states)
    if policy.horizontal is not None:
        move = _horizontal(policy.horizontal, signals, plan, instances, now, hpa_values, hpa_state)
    else:
        move = _vertical(signals.direction, catalog, plan, instances)
    move = _cooldown(move, policy.cooldown, last_change_at, now, plan, instances)
    return _recommendation(move, signals, plan, instances, now)


def _current_plan(catalog: Sequence[Plan], current: str | Plan | None) -> Plan | None:
    if current is None:
        return None
    name = current if isinstance(current, str) else current.name
    return find_plan(catalog, name, source="policy", path="policy.current_plan")


# -- rules -------------------------------------------------------------------------------


def _signals(policy: Policy, states: Mapping[str, RuleState]) -> _Signals:
    if policy.scale_down_requires not in {"all", "any"}:
        raise ConfigError(
            "policy", "policy.scale_down_requires", "'all' or 'any'", policy.scale_down_requires
        )
    values: dict[str, float | None] = {}
    firing: list[Rule] = []
    for rule in policy.rules:
        state = states.get(rule.name)
        value = None if state is None else state.value
        # NaN (e.g. 0/0 over an empty window) counts as no data here.
        values[rule.name] = None if value is None or math.isnan(value) else float(value)
        if state is not None and state.status == Status.FIRING:
            firing.append(rule)
    missing = tuple(name for name, value in values.items() if value is None)
    reasons = [describe(rule, values[rule.name]) for rule in firing]
    direction, down_ok, why = _direction(policy, firing, missing)
    reasons.extend(why)
    if missing:
        reasons.append(f"no data for {', '.join(missing)}")
    return _Signals(direction, down_ok, tuple(firing), missing, values, tuple(reasons))


def _direction(
    policy: Policy, firing: list[Rule], missing: tuple[str, ...]
) -> tuple[str, bool, list[str]]:
    """(direction, whether a scale-down is allowed, why)."""
    ups = [r for r in firing if r.action is Action.SCALE_UP]
    downs = [r for r in policy.rules if r.action is Action.SCALE_DOWN]
    down_firing = [r for r in downs if r in firing]
    scale_rules = {r.name for r in policy.rules if r.action in {Action.SCALE_UP, Action.SCALE_DOWN}}
    lacking = [name for name in missing if name in scale_rules]
    need = all if policy.scale_down_requires == "all" else any
    met = bool(downs) and need(r in firing for r in downs)
    if ups:
        why = f"scale up: {len(ups)} scale_up rule(s) firing"
        return UP, False, [why + (" (scale-down vetoed)" if down_firing else "")]
    if lacking:
        return HOLD, False, ["no scale-down while a scale rule has no data (as the HPA does)"]
    if met:
        return DOWN, True, [f"scale down: {_count(down_firing, downs)} scale_down rules firing"]
    if not downs:
        return HOLD, True, ["no scale_up rule firing; no scale_down rules defined"]
    quiet = ", ".join(r.name for r in downs if r not in firing)
    why = (
        f"no scale_up rule firing; scale-down needs {policy.scale_down_requires} scale_down "
        f"rules, {_count(down_firing, downs)} firing (not yet: {quiet})"
    )
    return HOLD, False, [why]


def _count(part: list[Rule], whole: list[Rule]) -> str:
    return f"{len(part)} of {len(whole)}"


def describe(rule: Rule, value: float | None) -> str:
    """``latency_avg 9.2s > 8s for 1h (rule slow_responses)``."""
    text = (
        f"{rule.metric} {format_value(rule.metric, value)} {rule.op.value} "
        f"{format_value(rule.metric, rule.threshold)}"
    )
    if rule.for_ > 0:
        text += f" for {format_duration(rule.for_)}"
    if rule.action in {Action.SCALE_UP, Action.SCALE_DOWN}:
        return f"{text} (rule {rule.name})"
    return f"{text} (rule {rule.name}: {rule.action.value})"


def format_value(metric: str, value: float | None) -> str:
    """A value in its metric's unit, as the catalog defines it (``'8.2s'``, ``'5%'``);
    names outside the catalog (HPA targets, promql rules) get a unit guessed from the name."""
    if value is None:
        return "no data"
    try:
        return catalog_format(metric, value)
    except RuleError:
        return _guess(metric, value)


def _guess(metric: str, value: float) -> str:
    name = metric.lower()
    if any(k in name for k in ("latency", "lag", "duration", "seconds")):
        return format_duration(value)
    if name.endswith("_mb"):
        return f"{value:.4g}MB"
    if "bytes" in name:
        return format_size(value)
    if any(k in name for k in ("error_rate", "ratio", "_pct")):
        return f"{100 * value:.3g}%"
    return f"{value:.4g}"


# -- vertical ----------------------------------------------------------------------------


def _vertical(direction: str, catalog: Sequence[Plan], plan: Plan | None, instances: int) -> _Move:
    if direction == HOLD:
        return _Move(HOLD, "vertical", plan, instances)
    if plan is None:
        why = "no current plan (set policy.current_plan) to pick the next tier from"
        return _Move(direction, "vertical", None, instances, (why,))
    if direction == DOWN and instances > 1:
        why = f"remove an instance before a smaller tier: {instances} → {instances - 1}"
        return _Move(DOWN, "horizontal", plan, instances - 1, (why,))
    target = next_plan(catalog, plan, direction)
    if target is not None:
        why = f"{plan.name} → {target.name} ({_size(target)})"
        return _Move(direction, "vertical", target, instances, (why,))
    if direction == DOWN:
        why = f"{plan.name} is the smallest plan with one instance: nothing to scale down"
        return _Move(HOLD, "vertical", plan, instances, (why,))
    if instances < plan.max_instances:
        why = (
            f"{plan.name} is the largest plan: add an instance "
            f"({instances} → {instances + 1}, max {plan.max_instances})"
        )
        return _Move(UP, "horizontal", plan, instances + 1, (why,))
    why = f"{plan.name} is the largest plan and already runs its {plan.max_instances} instances"
    return _Move(HOLD, "vertical", plan, instances, (why,))


def _size(plan: Plan) -> str:
    return f"{plan.cpu:g} CPU, {format_size(plan.memory_bytes)}, ${plan.price_month:,.2f}/month"


# -- horizontal --------------------------------------------------------------------------


def _horizontal(
    hz: Horizontal,
    signals: _Signals,
    plan: Plan | None,
    instances: int,
    now: float,
    hpa_values: Mapping[str, float | None] | None,
    hpa_state: HPAState | None,
) -> _Move:
    if plan is not None and plan.max_instances < hz.max_replicas:
        hz = replace(hz, max_replicas=max(hz.min_replicas, plan.max_instances))
    if not hz.targets or hpa_values is None:
        return _one_step(signals.direction, hz, plan, instances)
    state = hpa_state if hpa_state is not None else HPAState()
    decision = ReplicaCalculator(hz).step(state, instances, hpa_values, now)
    return _from_hpa(decision, hz, signals, plan, hpa_values)


def _one_step(direction: str, hz: Horizontal, plan: Plan | None, instances: int) -> _Move:
    if direction == UP and instances < hz.max_replicas:
        return _Move(
            UP,
            "horizontal",
            plan,
            instances + 1,
            (f"add an instance: {instances} → {instances + 1}",),
        )
    if direction == DOWN and instances > hz.min_replicas:
        return _Move(
            DOWN,
            "horizontal",
            plan,
            instances - 1,
            (f"remove an instance: {instances} → {instances - 1}",),
        )
    if direction == HOLD:
        return _Move(HOLD, "horizontal", plan, instances)
    bound = (
        f"max_replicas {hz.max_replicas}" if direction == UP else f"min_replicas {hz.min_replicas}"
    )
    return _Move(HOLD, "horizontal", plan, instances, (f"already at {bound}",))


def _from_hpa(
    d: ReplicaDecision,
    hz: Horizontal,
    signals: _Signals,
    plan: Plan | None,
    values: Mapping[str, float | None],
) -> _Move:
    metrics = ", ".join(
        f"{t.metric} {format_value(t.metric, values.get(t.metric))} per replica "
        f"(target {format_value(t.metric, t.target)})"
        for t in hz.targets
    )
    proposal = "no proposal" if d.proposal is None else f"proposes {d.proposal}"
    why = [f"HPA: {metrics} → {proposal}, {d.desired} after limits ({d.reason})"]
    if d.missing:
        why.append(f"HPA metrics without data: {', '.join(d.missing)}")
    change = f"{d.current} → {d.desired} replicas"
    if d.desired > d.current:
        return _Move(UP, "horizontal", plan, d.desired, (*why, change))
    if signals.direction == UP and d.current < hz.max_replicas:
        step = f"the HPA proposes no more, but scale_up rules fire: {d.current} → {d.current + 1}"
        return _Move(UP, "horizontal", plan, d.current + 1, (*why, step))
    if d.desired < d.current and signals.down_ok:
        return _Move(DOWN, "horizontal", plan, d.desired, (*why, change))
    if d.desired < d.current:
        return _Move(HOLD, "horizontal", plan, d.current, (*why, "the rules veto the scale-down"))
    return _Move(HOLD, "horizontal", plan, d.current, tuple(why))


# -- cooldown and result -----------------------------------------------------------------


def _cooldown(
    move: _Move,
    cooldown: float,
    last_change_at: float | None,
    now: float,
    plan: Plan | None,
    instances: int,
) -> _Move:
    if move.action == HOLD or last_change_at is None or now >= last_change_at + cooldown:
        return move
    until = last_change_at + cooldown
    target = (
        move.plan.name
        if move.plan is not None and move.plan != plan
        else f"{move.instances} instance(s)"
    )
    why = (
        f"cooldown: last change {format_duration(now - last_change_at)} ago; would {move.action} "
        f"to {target}, next change allowed in {format_duration(until - now)}"
    )
    return _Move(HOLD, move.kind, plan, instances, (*move.reasons, why), until)


def _recommendation(
    move: _Move, signals: _Signals, plan: Plan | None, instances: int, now: float
) -> Recommendation:
    before = None if plan is None else monthly_cost(plan, instances)
    after = None if move.plan is None else monthly_cost(move.plan, move.instances)
    reasons = [*signals.reasons, *move.reasons]
    if before is not None and after == before:
        reasons.append(f"cost ${before:,.2f} per month (unchanged)")
    elif before is not None and after is not None:
        delta = after - before
        sign = "+" if delta >= 0 else "-"
        reasons.append(f"cost ${before:,.2f} → ${after:,.2f} per month ({sign}${abs(delta):,.2f})")
    return Recommendation(
        action=move.action,
        kind=move.kind,
        at=now,
        current_plan=None if plan is None else plan.name,
        target_plan=None if move.plan is None else move.plan.name,
        current_instances=instances,
        target_instances=move.instances,
        cost_before=before,
        cost_after=after,
        firing=tuple(r.name for r in signals.firing),
        values=dict(signals.values),
        reasons=tuple(reasons),
        missing=signals.missing,
        cooldown_until=move.cooldown_until,
    )
