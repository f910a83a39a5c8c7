"""The rule state machine (Prometheus alerting semantics) and the evaluation loop."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import pytest

from scalewise.clock import ManualClock
from scalewise.errors import ConfigError, StoreError
from scalewise.policy.engine import restore, step
from scalewise.policy.evaluator import Evaluator, evaluation_times, replay
from scalewise.policy.model import Action, Comparison, Policy, Rule, RuleState, Status

IN, P, F = Status.INACTIVE, Status.PENDING, Status.FIRING


def rule(for_: float = 0.0, keep: float = 0.0, name: str = "r", op: str = ">") -> Rule:
    return Rule(
        name=name,
        metric="latency_avg",
        op=Comparison(op),
        threshold=5.0,
        action=Action.SCALE_UP,
        for_=for_,
        keep_firing_for=keep,
    )


def run(r: Rule, values: Sequence[float | None], every: float = 60.0) -> list[RuleState]:
    """States after evaluating ``values`` at 0, every, 2·every …"""
    state, out = RuleState(r.name), []
    for i, value in enumerate(values):
        state = step(r, state, value, i * every)
        out.append(state)
    return out


# -- step: one transition at a time ------------------------------------------------------

ACTIVE = RuleState("r", P, active_at=100.0, evaluated_at=100.0)
FIRING = RuleState("r", F, active_at=0.0, fired_at=60.0, evaluated_at=100.0)
KEEPING = RuleState("r", F, active_at=0.0, fired_at=60.0, keep_firing_since=120.0)
RESOLVED = RuleState("r", IN, active_at=0.0, fired_at=60.0, resolved_at=90.0)


@pytest.mark.parametrize(
    ("for_", "keep", "before", "value", "now", "after"),
    [
        # inactive
        (0, 0, RuleState("r"), 6.0, 200, RuleState("r", F, 200, 200, value=6.0)),
        (60, 0, RuleState("r"), 6.0, 200, RuleState("r", P, 200, value=6.0)),
        (60, 0, RuleState("r"), 5.0, 200, RuleState("r", IN, value=5.0)),
        (60, 0, RuleState("r"), None, 200, RuleState("r", IN)),
        (60, 0, RESOLVED, 6.0, 200, RuleState("r", P, 200, value=6.0)),
        (60, 0, RESOLVED, 1.0, 200, RuleState("r", IN, 0, 60, 90, value=1.0)),
        # pending
        (300, 0, ACTIVE, 6.0, 399, RuleState("r", P, 100, value=6.0)),
        (300, 0, ACTIVE, 6.0, 400, RuleState("r", F, 100, 400, value=6.0)),
        (300, 0, ACTIVE, 1.0, 400, RuleState("r", IN, value=1.0)),
        (300, 0, ACTIVE, None, 400, RuleState("r", IN)),
        (300, 600, ACTIVE, None, 400, RuleState("r", IN)),  # keep_firing_for needs firing
        # firing
        (60, 0, FIRING, 6.0, 200, RuleState("r", F, 0, 60, value=6.0)),
        (60, 0, FIRING, 1.0, 200, RuleState("r", IN, 0, 60, 200, value=1.0)),
        (60, 0, FIRING, None, 200, RuleState("r", IN, 0, 60, 200)),
        (60, 180, FIRING, 1.0, 200, RuleState("r", F, 0, 60, None, 200, 1.0)),
        (60, 180, FIRING, None, 200, RuleState("r", F, 0, 60, None, 200)),
        (60, 180, KEEPING, 1.0, 299, RuleState("r", F, 0, 60, None, 120, 1.0)),
        (60, 180, KEEPING, 1.0, 300, RuleState("r", IN, 0, 60, 300, value=1.0)),
        (60, 180, KEEPING, 6.0, 300, RuleState("r", F, 0, 60, value=6.0)),
        # ``for:`` raised since it fired (a changed policy): back to pending
        (600, 0, FIRING, 6.0, 200, RuleState("r", P, 0, value=6.0)),
        (600, 180, FIRING, 1.0, 200, RuleState("r", P, 0, value=1.0)),
    ],
)
def test_step_transitions(
    for_: float, keep: float, before: RuleState, value: float | None, now: float, after: RuleState
) -> None:
    got = step(rule(for_, keep), before, value, now)
    expected = RuleState(
        after.rule,
        after.status,
        after.active_at,
        after.fired_at,
        after.resolved_at,
        after.keep_firing_since,
        after.value,
        evaluated_at=now,
    )
    assert got == expected


def test_step_returns_states_with_the_rule_name_and_never_mutates() -> None:
    before = RuleState("r")
    after = step(rule(name="r"), before, 9.0, 1.0)
    assert before == RuleState("r")
    assert after.rule == "r"
    assert isinstance(after.status, Status)


@pytest.mark.parametrize(
    ("op", "value", "holds"),
    [
        (">", 5.0, False),
        (">", 5.1, True),
        (">=", 5.0, True),
        ("<", 4.9, True),
        ("<=", 5.0, True),
        ("==", 5.0, True),
        ("!=", 5.0, False),
        (">", math.nan, False),  # PromQL: NaN compares false …
        ("<", math.nan, False),
        ("!=", math.nan, True),  # … except with !=
    ],
)
def test_condition_uses_the_rule_comparison(op: str, value: float, holds: bool) -> None:
    got = step(rule(op=op), RuleState("r"), value, 0.0)
    assert got.status == (F if holds else IN)


def test_for_boundary_fires_at_exactly_for() -> None:
    """``now - active_at >= for``: an evaluation exactly ``for`` after activation fires."""
    states = run(rule(for_=300), [6.0] * 7)
    assert [s.status for s in states] == [P, P, P, P, P, F, F]
    assert states[5].fired_at == 300.0
    assert states[6].fired_at == 300.0
    assert all(s.active_at == 0.0 for s in states)


def test_for_is_measured_between_evaluations() -> None:
    """With a 2-minute interval a 3-minute ``for`` fires at 4 minutes, the first evaluation
    at or after active_at + for, as Prometheus does."""
    states = run(rule(for_=180), [6.0] * 4, every=120.0)
    assert [s.status for s in states] == [P, P, F, F]
    assert states[2].fired_at == 240.0


def test_pending_reset_restarts_the_hold() -> None:
    states = run(rule(for_=180), [6.0, 6.0, 1.0, 6.0, 6.0, 6.0, 6.0])
    assert [s.status for s in states] == [P, P, IN, P, P, P, F]
    assert states[2].resolved_at is None  # it never fired
    assert states[3].active_at == 180.0
    assert states[6].fired_at == 360.0


def test_keep_firing_for_boundary() -> None:
    """The first miss starts the hold; the rule resolves once ``now - since >= keep``."""
    states = run(rule(for_=0, keep=180), [6.0, 1.0, 1.0, 1.0, 1.0])
    assert [s.status for s in states] == [F, F, F, F, IN]
    assert [s.keep_firing_since for s in states] == [None, 60.0, 60.0, 60.0, None]
    assert states[4].resolved_at == 240.0
    assert states[4].fired_at == 0.0


def test_keep_firing_for_hit_resets_the_hold() -> None:
    states = run(rule(keep=120), [6.0, 1.0, 1.0, 6.0, 1.0, 1.0, 1.0])
    assert [s.status for s in states] == [F, F, F, F, F, F, IN]
    assert states[3].keep_firing_since is None
    assert states[4].keep_firing_since == 240.0
    assert {s.fired_at for s in states} == {0.0}  # one firing episode


def test_missing_data_is_an_absent_series() -> None:
    """``None`` counts as the condition not holding, and is recorded as ``None``."""
    states = run(rule(for_=120, keep=60), [6.0, None, 6.0, 6.0, 6.0, None, None])
    assert [s.status for s in states] == [P, IN, P, P, F, F, IN]
    assert [s.value for s in states] == [6.0, None, 6.0, 6.0, 6.0, None, None]


def test_flapping_without_keep_firing_for_resolves_each_time() -> None:
    states = run(rule(), [6.0, 1.0, 6.0, 1.0])
    assert [s.status for s in states] == [F, IN, F, IN]
    assert [s.resolved_at for s in states] == [None, 60.0, None, 180.0]
    assert [s.fired_at for s in states] == [0.0, 0.0, 120.0, 120.0]


# -- restore: Prometheus's ``for`` state restoration -----------------------------------------

HOUR = 3600.0
SAVED = "saved"  # restore() returns the saved state unchanged


@pytest.mark.parametrize(
    ("for_", "saved", "now", "expected"),
    [
        # nothing saved / inactive: as is
        (300, None, 1000, (IN, None, None, None)),
        (300, RuleState("r", IN, 0, 60, 90), 1000, SAVED),
        # firing within the tolerance: kept as saved, keep_firing_since included
        (300, RuleState("r", F, 0, 300, None, 900, 1.0, 1000), 1600, SAVED),
        # pending, remaining > grace: the downtime does not count (active_at moves forward)
        (1800, RuleState("r", P, 0, evaluated_at=600), 1200, (P, 600, None, None)),
        # pending, remaining < grace: fires grace after the restart (1600 + 600 - 1800)
        (1800, RuleState("r", P, 0, evaluated_at=1500), 1600, (P, 400, None, None)),
        # pending with for < grace: the hold restarts
        (300, RuleState("r", P, 0, evaluated_at=120), 200, (P, 200, None, None)),
        # pending that was due to fire (remaining <= 0): kept; it fires at the next step
        (300, RuleState("r", P, 0, evaluated_at=300), 400, SAVED),
        # downtime exactly the tolerance: still restored
        (300, RuleState("r", F, 0, 300, evaluated_at=600), 600 + HOUR, SAVED),
        # after the tolerance: start over; a firing rule is resolved now
        (300, RuleState("r", F, 0, 300, evaluated_at=600), 601 + HOUR, (IN, 0, 300, 601 + HOUR)),
        (1800, RuleState("r", P, 0, evaluated_at=600), 601 + HOUR, (IN, None, None, None)),
        # nothing to measure the downtime by: start over
        (300, RuleState("r", P, 0), 100, (IN, None, None, None)),
    ],
)
def test_restore(
    for_: float, saved: RuleState | None, now: float, expected: str | tuple[object, ...]
) -> None:
    got = restore(rule(for_), saved, now)
    if expected == SAVED:
        assert got == saved
    else:
        assert (got.status, got.active_at, got.fired_at, got.resolved_at) == expected
        assert got.keep_firing_since is None


def test_restore_follows_prometheus_remaining_time_arithmetic() -> None:
    """for 25m, active 20m before going down, 5m down: fires 10m (the grace) after restart."""
    r = rule(for_=1500)
    saved = RuleState("r", P, active_at=0.0, evaluated_at=1200.0)
    state = restore(r, saved, now=1500.0)
    assert state.active_at == 1500.0 + 600.0 - 1500.0
    state = step(r, state, 6.0, 2099.0)
    assert state.status == P
    state = step(r, state, 6.0, 2100.0)
    assert state.status == F


def test_restore_honours_custom_tolerance_and_grace() -> None:
    saved = RuleState("r", P, active_at=0.0, evaluated_at=100.0)
    assert restore(rule(1800), saved, 200.0, outage_tolerance=50.0) == RuleState(
        "r", evaluated_at=100.0
    )
    state = restore(rule(200), saved, 200.0, grace=100.0)  # for ≥ grace, remaining 100 ≥ grace
    assert state.active_at == 100.0


def test_restored_firing_rule_resolves_when_the_condition_is_gone() -> None:
    r = rule(for_=300)
    saved = RuleState("r", F, active_at=0.0, fired_at=300.0, evaluated_at=600.0)
    state = restore(r, saved, 900.0)
    assert step(r, state, 6.0, 900.0).fired_at == 300.0  # no new firing episode
    resolved = step(r, state, 1.0, 900.0)
    assert (resolved.status, resolved.resolved_at, resolved.fired_at) == (IN, 900.0, 300.0)


# -- the evaluator --------------------------------------------------------------------------


class TableSource:
    """Values by rule name and time; a callable or an exception is used as given."""

    def __init__(self, table: dict[str, object]) -> None:
        self.table = table
        self.calls = 0

    def value(self, rule: Rule, now: float) -> float | None:
        self.calls += 1
        entry = self.table.get(rule.name)
        if isinstance(entry, Exception):
            raise entry
        if callable(entry):
            return entry(now)  # type: ignore[no-any-return]
        return entry  # type: ignore[return-value]


class MemoryStore:
    """Just the rule-state half of the Store protocol; optionally broken."""

    def __init__(self, states: dict[str, RuleState] | None = None, broken: bool = False) -> None:
        self.saved = dict(states or {})
        self.broken = broken
        self.saves = 0

    def load_rule_states(self) -> dict[str, RuleState]:
        if self.broken:
            raise StoreError("database is locked")
        return dict(self.saved)

    def save_rule_states(self, states: Sequence[RuleState]) -> None:
        if self.broken:
            raise StoreError("database is locked")
        self.saves += 1
        self.saved.update({s.rule: s for s in states})


def policy(*rules: Rule, interval: float = 60.0) -> Policy:
    return Policy(rules=rules, evaluation_interval=interval)


def test_evaluator_isolates_a_failing_source(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    source = TableSource({"ok": 9.0, "bad": RuntimeError("boom"), "junk": "x"})
    ev = Evaluator(
        policy(rule(name="ok"), rule(name="bad"), rule(name="junk")), source, None, clock
    )
    with caplog.at_level(logging.WARNING, logger="scalewise.policy"):
        first = ev.evaluate(0.0)
        clock.advance(599)
        ev.evaluate(60.0)
        clock.advance(1)
        ev.evaluate(120.0)
    assert first["ok"].status == F
    assert first["bad"] == RuleState("bad", IN, evaluated_at=0.0)
    assert first["junk"].value is None
    messages = [r.getMessage() for r in caplog.records]
    assert sum("rule bad" in m for m in messages) == 2  # once per 10 min, per rule
    assert sum("rule junk" in m for m in messages) == 2
    assert any("boom" in m for m in messages)


def test_evaluator_keeps_states_between_evaluations() -> None:
    ev = Evaluator(policy(rule(for_=120)), TableSource({"r": 6.0}), clock=ManualClock())
    statuses = [ev.evaluate(t)["r"].status for t in (0.0, 60.0, 120.0)]
    assert statuses == [P, P, F]
    assert ev.states["r"].fired_at == 120.0
    assert ev.last_evaluated == 120.0


def test_evaluate_defaults_to_the_clock_wall_time() -> None:
    clock = ManualClock(wall_start=1_000.0)
    ev = Evaluator(policy(rule()), TableSource({"r": 6.0}), clock=clock)
    assert ev.evaluate()["r"].evaluated_at == 1_000.0


def test_due_is_aligned_to_the_evaluation_interval() -> None:
    ev = Evaluator(policy(rule(), interval=60.0), TableSource({}), clock=ManualClock())
    assert ev.due(30.0)
    assert (ev.slot(30.0), ev.next_due(30.0)) == (0.0, 60.0)
    ev.evaluate(30.0)
    assert not ev.due(30.0)
    assert not ev.due(59.999)
    assert ev.due(60.0)
    ev.evaluate(61.0)
    assert not ev.due(119.0)
    assert ev.due(300.0)
    assert ev.slot(1_700_000_010.0) == 1_700_000_000.0 - 1_700_000_000.0 % 60


def test_evaluator_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ConfigError, match="evaluation_interval"):
        Evaluator(policy(rule(), interval=0.0), TableSource({}))


def test_evaluator_saves_and_restores_through_the_store() -> None:
    clock = ManualClock(wall_start=0.0)
    store = MemoryStore()
    r = rule(for_=120)
    first = Evaluator(policy(r), TableSource({"r": 6.0}), store, clock)
    first.evaluate(0.0)
    first.evaluate(60.0)
    assert store.saves == 2
    assert store.saved["r"].status == P

    clock.advance(300.0)  # down for four minutes: within the tolerance, for < grace
    second = Evaluator(policy(r), TableSource({"r": 6.0}), store, clock)
    assert second.states["r"] == RuleState("r", P, active_at=300.0, value=6.0, evaluated_at=60.0)

    clock.advance(2 * HOUR)  # firing, then down past the tolerance
    second.evaluate(420.0)
    assert second.evaluate(480.0)["r"].status == Status.FIRING
    third = Evaluator(policy(r), TableSource({}), store, clock)
    assert third.states["r"].status == IN
    assert third.states["r"].resolved_at == clock.wall()


def test_evaluator_survives_a_broken_store(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore(broken=True)
    with caplog.at_level(logging.WARNING, logger="scalewise.policy"):
        ev = Evaluator(policy(rule()), TableSource({"r": 6.0}), store, ManualClock())
        assert ev.evaluate(0.0)["r"].status == F
        ev.evaluate(60.0)
    messages = [r.getMessage() for r in caplog.records]
    assert any("cannot load" in m for m in messages)
    assert len(messages) == 1  # the save failure shares the store's rate limit


def test_rules_unknown_to_the_store_start_inactive_and_stale_ones_are_dropped() -> None:
    store = MemoryStore({"gone": RuleState("gone", F, 0, 0, evaluated_at=0)})
    ev = Evaluator(policy(rule(name="new")), TableSource({}), store, ManualClock(wall_start=10))
    assert ev.states == {"new": RuleState("new")}


# -- replay ---------------------------------------------------------------------------------


def test_evaluation_times_are_aligned_and_half_open() -> None:
    assert list(evaluation_times(0, 180, 60)) == [0, 60, 120]
    assert list(evaluation_times(1, 181, 60)) == [60, 120, 180]
    assert list(evaluation_times(5, 5, 60)) == []
    with pytest.raises(ConfigError):
        list(evaluation_times(0, 10, 0))


def test_replay_timeline_on_a_constructed_source() -> None:
    """Latency above 5 from minute 2 to 7; for 3m, keep firing for 2m."""
    series = {m * 60.0: (8.0 if 2 <= m <= 7 else 1.0) for m in range(15)}
    source = TableSource({"slow": series.get})
    p = policy(rule(for_=180, keep=120, name="slow"), interval=60.0)
    timeline = list(replay(p, source, 0.0, 15 * 60.0))
    assert [t for t, _ in timeline] == [m * 60.0 for m in range(15)]
    statuses = "".join(states["slow"].status.value[0] for _, states in timeline)
    assert statuses == "iipppfffffiiiii"
    final = timeline[-1][1]["slow"]
    assert (final.fired_at, final.resolved_at) == (300.0, 600.0)


def test_replay_is_lazy() -> None:
    source = TableSource({"r": 1.0})
    timeline = replay(policy(rule()), source, 0.0, 1e12)
    for _ in zip(range(3), timeline, strict=False):
        pass
    assert source.calls == 3
