"""The policy loop: SnapshotValues, PolicyRunner (decide, record, act, restart), StoreValues."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from scalewise.clock import ManualClock
from scalewise.metrics.histogram import FrozenHistogram, Histogram
from scalewise.metrics.persist import SnapshotWriter
from scalewise.metrics.windows import IntervalSnapshot
from scalewise.policy import inapp
from scalewise.policy.history import SETTLE, StoreValues
from scalewise.policy.inapp import InAppPolicy
from scalewise.policy.metrics import SnapshotSource, metric_value
from scalewise.policy.model import (
    Action,
    CommandHook,
    Comparison,
    Policy,
    Recommendation,
    Rule,
    RuleState,
    Status,
)
from scalewise.policy.runner import PolicyRunner, PolicyStatus, SnapshotValues
from scalewise.store.sqlite import SQLiteStore

H = 3600.0
STEP = 10.0  # the metrics interval: one snapshot per 10 s
EVERY = 60.0  # the evaluation interval
T0 = 1_700_000_000.0 // H * H  # an hour boundary
SLOW_FROM = T0 + H  # the synthetic service turns slow here, and stays slow
GT = Comparison.GT
IN, P, F = Status.INACTIVE, Status.PENDING, Status.FIRING

SLOW = Rule("slow", "latency_avg", GT, 8.0, Action.SCALE_UP, window=600.0, for_=1800.0)
POLICY = Policy(rules=(SLOW,), evaluation_interval=EVERY, current_plan="Starter", cooldown=H)

_POOL: dict[float, FrozenHistogram] = {}


def frozen(latency: float, count: int = 10) -> FrozenHistogram:
    """``count`` requests of ``latency`` seconds; built once per value (a small pool)."""
    key = latency * 1000 + count
    if key not in _POOL:
        h = Histogram()
        h.record_many(latency, count)
        _POOL[key] = h.freeze()
    return _POOL[key]


def snap(start: float, latency: float = 1.0, **extra: object) -> IntervalSnapshot:
    fields: dict[str, object] = {
        "requests": 10,
        "inflight_peak": 3,
        "gauges": {"cpu_percent": 40.0, "rss_bytes": 300 * 2**20},
    }
    fields |= extra
    return IntervalSnapshot(start, STEP, latency=frozen(latency), **fields)  # type: ignore[arg-type]


def service(start: float, end: float, latency: Callable[[float], float]) -> list[IntervalSnapshot]:
    """One worker's snapshots for ``[start, end)``; ``latency(t)`` per interval."""
    return [snap(t, latency(t)) for t in _times(start, end)]


def _times(start: float, end: float) -> Iterator[float]:
    k = 0
    while (t := start + k * STEP) < end:
        yield t
        k += 1


def slow_after(t: float) -> float:
    return 10.0 if t >= SLOW_FROM else 1.0


class Live:
    """Feeds a SnapshotValues the way the daemon does: only intervals closed by ``now``."""

    def __init__(self, policy: Policy, history: list[IntervalSnapshot]) -> None:
        self.values = SnapshotValues(policy, STEP)
        self.history = history
        self.fed = 0

    def advance(self, now: float) -> None:
        batch = []
        while self.fed < len(self.history) and self.history[self.fed].end <= now:
            batch.append(self.history[self.fed])
            self.fed += 1
        self.values.add(batch)


def drive(
    runner: PolicyRunner, live: Live, start: float, end: float, act: bool = True
) -> list[tuple[float, Recommendation]]:
    """``run_once`` at every evaluation time in ``[start, end)``."""
    out = []
    t = start
    while t < end:
        live.advance(t)
        out.append((t, runner.run_once(t, act=act)))
        t += EVERY
    return out


def store_at(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "history.db")


def first_above(history: list[IntervalSnapshot], rule: Rule, start: float) -> float:
    """The first evaluation time at which the reference definition exceeds the threshold."""
    t = start
    while (value := metric_value(rule.metric, history, rule.window, t, STEP)) is None or not (
        value > rule.threshold
    ):
        t += EVERY
    return t


# -- states, recommendation, cooldown -----------------------------------------------------


def test_rule_goes_pending_then_firing_after_for_and_recommends_the_next_plan() -> None:
    history = service(T0, T0 + 3 * H, slow_after)
    runner = PolicyRunner(POLICY, (live := Live(POLICY, history)).values)
    timeline = drive(runner, live, T0 + 600, T0 + 3 * H)
    pending_at = first_above(history, SLOW, T0 + 600)
    assert SLOW_FROM < pending_at < SLOW_FROM + 600  # the 10 min average crosses 8 s
    fired_at = pending_at + SLOW.for_  # evaluation times are on the minute: exactly then

    for t, rec in timeline:
        if t < fired_at:
            assert rec.action == "hold", t
            assert rec.firing == ()
    states = dict(timeline)
    up = states[fired_at]
    assert up.action == "scale_up"
    assert up.kind == "vertical"
    assert (up.current_plan, up.target_plan) == ("Starter", "Standard")
    assert (up.current_instances, up.target_instances) == (1, 1)
    assert (up.cost_before, up.cost_after) == (7.0, 25.0)  # the default catalog, seed prices
    assert up.firing == ("slow",)
    assert up.values["slow"] == pytest.approx(10.0)
    assert any("latency_avg" in reason and "slow" in reason for reason in up.reasons)
    assert any("$7.00 → $25.00" in reason for reason in up.reasons)


def test_states_step_inactive_pending_firing_at_the_evaluation_times() -> None:
    history = service(T0, T0 + 3 * H, slow_after)
    live = Live(POLICY, history)
    runner = PolicyRunner(POLICY, live.values)
    pending_at = first_above(history, SLOW, T0 + 600)
    seen: dict[Status, float] = {}
    for k in range(10, 180):
        t = T0 + k * EVERY
        live.advance(t)
        runner.run_once(t)
        state = runner.status.states["slow"]
        seen.setdefault(state.status, t)
        assert runner.status.evaluated_at == t
        if state.status is P:
            assert state.active_at == pending_at
    assert seen == {IN: T0 + 600, P: pending_at, F: pending_at + 1800}
    final = runner.status.states["slow"]
    assert (final.active_at, final.fired_at) == (pending_at, pending_at + 1800)


def test_cooldown_holds_with_a_reason_then_allows_the_next_change() -> None:
    history = service(T0, T0 + 5 * H, slow_after)
    live = Live(POLICY, history)
    runner = PolicyRunner(POLICY, live.values)
    timeline = drive(runner, live, T0 + 600, T0 + 5 * H)
    ups = [t for t, rec in timeline if rec.action == "scale_up"]
    assert len(ups) == 4  # the rule fires from 1h38m on; the cooldown is an hour
    # No hook ran, so nothing changed: Starter → Standard again after each cooldown.
    assert [b - a for a, b in itertools.pairwise(ups)] == [POLICY.cooldown] * 3
    cooling = dict(timeline)[ups[0] + EVERY]
    assert cooling.action == "hold"
    assert cooling.cooldown_until == ups[0] + POLICY.cooldown
    assert cooling.firing == ("slow",)
    assert cooling.target_plan == "Starter"
    reason = next(r for r in cooling.reasons if r.startswith("cooldown"))
    assert "would scale_up to Standard" in reason
    assert runner.last_change_at == ups[-1]


def test_decisions_are_recorded_only_when_they_change(tmp_path: Path) -> None:
    history = service(T0, T0 + 5 * H, slow_after)
    live = Live(POLICY, history)
    with store_at(tmp_path) as store:
        runner = PolicyRunner(POLICY, live.values, store)
        timeline = drive(runner, live, T0 + 600, T0 + 5 * H)
        recorded = store.decisions(0)

    def key(rec: Recommendation) -> tuple[object, ...]:
        return (rec.action, rec.target_plan, rec.target_instances, rec.firing)

    recs = [rec for _, rec in timeline]
    changes = [rec for i, rec in enumerate(recs) if i == 0 or key(rec) != key(recs[i - 1])]
    assert [r.action for r in recorded] == ["hold"] + ["scale_up", "hold"] * 4
    assert [r.at for r in recorded] == [r.at for r in changes]
    assert len(timeline) > 200  # … out of every evaluation
    assert recorded[1] == next(rec for _, rec in timeline if rec.action == "scale_up")


def test_act_false_evaluates_but_records_notifies_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    hook = CommandHook(argv=("sh", "-c", f"echo $SCALEWISE_ACTION > {marker}"), dry_run=False)
    policy = replace(POLICY, command=hook)
    history = service(T0, T0 + 3 * H, slow_after)
    live = Live(policy, history)
    with store_at(tmp_path) as store:
        runner = PolicyRunner(policy, live.values, store)
        timeline = drive(runner, live, T0 + 600, T0 + 3 * H, act=False)
        assert store.decisions(0) == []
    ups = [t for t, rec in timeline if rec.action == "scale_up"]
    assert len(ups) > 1  # nothing started a cooldown: every firing evaluation says scale up
    assert runner.last_change_at is None
    assert runner.status.recommendation is not None
    assert runner.status.recommendation.action == "scale_up"
    assert runner.status.hook is None
    assert not marker.exists()
    assert runner.current_plan == "Starter"


# -- the command hook ------------------------------------------------------------------------


def firing_now(policy: Policy, at: float) -> PolicyRunner:
    """A runner whose only rule fires at its first evaluation (for: 0)."""
    rule = replace(SLOW, for_=0.0)
    values = SnapshotValues(policy, STEP, service(at - 600, at, lambda t: 10.0))
    return PolicyRunner(replace(policy, rules=(rule,)), values)


def still_slow(runner: PolicyRunner, start: float, end: float) -> None:
    values = runner.evaluator.source
    assert isinstance(values, SnapshotValues)
    values.add(service(start, end, lambda t: 10.0))


def test_the_command_hook_runs_on_scale_up_with_the_decision_in_its_environment(
    tmp_path: Path,
) -> None:
    out = tmp_path / "action.txt"
    script = f'echo "$SCALEWISE_ACTION $SCALEWISE_TARGET_PLAN $SCALEWISE_COST_AFTER" > {out}'
    policy = replace(POLICY, command=CommandHook(argv=("sh", "-c", script), dry_run=False))
    runner = firing_now(policy, T0)
    rec = runner.run_once(T0)
    assert rec.action == "scale_up"
    assert out.read_text() == "scale_up Standard 25.00\n"
    assert runner.status.hook is not None
    assert runner.status.hook["returncode"] == 0
    assert runner.status.hook["dry_run"] is False
    # The change was made: Standard is the new baseline for the next decision.
    assert (runner.current_plan, runner.instances) == ("Standard", 1)
    still_slow(runner, T0, T0 + POLICY.cooldown)
    after = runner.run_once(T0 + POLICY.cooldown)
    assert (after.action, after.current_plan, after.target_plan) == ("scale_up", "Standard", "Pro")
    assert (after.cost_before, after.cost_after) == (25.0, 85.0)
    assert runner.current_plan == "Pro"


def test_the_command_hook_in_dry_run_runs_nothing(tmp_path: Path) -> None:
    out = tmp_path / "action.txt"
    argv = ("sh", "-c", f"echo $SCALEWISE_ACTION > {out}")
    policy = replace(POLICY, command=CommandHook(argv=argv, dry_run=True))
    runner = firing_now(policy, T0)
    assert runner.run_once(T0).action == "scale_up"
    assert not out.exists()
    assert runner.status.hook is not None
    assert runner.status.hook["dry_run"] is True
    assert runner.status.hook["returncode"] is None
    assert runner.current_plan == "Starter"  # nothing changed


def test_a_failing_hook_is_reported_and_changes_no_baseline(tmp_path: Path) -> None:
    policy = replace(POLICY, command=CommandHook(argv=("sh", "-c", "exit 3"), dry_run=False))
    runner = firing_now(policy, T0)
    assert runner.run_once(T0).action == "scale_up"
    assert runner.status.hook is not None
    assert runner.status.hook["returncode"] == 3
    assert runner.status.hook["ok"] is False
    assert runner.current_plan == "Starter"


# -- restarts ----------------------------------------------------------------------------------

LONG = Rule("slow", "latency_avg", GT, 8.0, Action.SCALE_UP, window=600.0, for_=H)
LONG_POLICY = replace(POLICY, rules=(LONG,))


def test_a_pending_rule_keeps_active_at_across_a_restart(tmp_path: Path) -> None:
    history = service(T0, T0 + 4 * H, slow_after)
    pending_at = first_above(history, LONG, T0 + 600)
    stop = pending_at + 20 * 60  # 20 minutes into the hour
    with store_at(tmp_path) as store:
        live = Live(LONG_POLICY, history)
        first = PolicyRunner(LONG_POLICY, live.values, store, ManualClock(wall_start=stop))
        drive(first, live, T0 + 600, stop + EVERY)
        first.close()
        saved = store.load_rule_states()["slow"]
        assert (saved.status, saved.active_at, saved.evaluated_at) == (P, pending_at, stop)

    with store_at(tmp_path) as store:  # a new process: new store object, new runner
        clock = ManualClock(wall_start=stop)  # back at once: no downtime to discount
        live = Live(LONG_POLICY, history)
        second = PolicyRunner(LONG_POLICY, live.values, store, clock)
        restored = second.evaluator.states["slow"]
        assert (restored.status, restored.active_at) == (P, pending_at)
        fired = [t for t, rec in drive(second, live, stop + EVERY, T0 + 4 * H) if rec.firing]
    assert fired[0] == pending_at + H  # the hour counted from before the restart


def test_downtime_does_not_count_towards_for(tmp_path: Path) -> None:
    """As Prometheus restores ``for`` state: the outage moves ``active_at`` forward."""
    history = service(T0, T0 + 4 * H, slow_after)
    pending_at = first_above(history, LONG, T0 + 600)
    stop = pending_at + 10 * 60
    with store_at(tmp_path) as store:
        live = Live(LONG_POLICY, history)
        first = PolicyRunner(LONG_POLICY, live.values, store, ManualClock(wall_start=stop))
        drive(first, live, T0 + 600, stop + EVERY)
    down = 5 * 60.0
    with store_at(tmp_path) as store:
        clock = ManualClock(wall_start=stop + down)
        second = PolicyRunner(LONG_POLICY, Live(LONG_POLICY, history).values, store, clock)
        assert second.evaluator.states["slow"].active_at == pending_at + down


def test_one_runner_per_evaluation_like_watch_once_from_cron_still_fires(
    tmp_path: Path,
) -> None:
    """``watch --once`` builds a new runner each run: a state evaluated within two intervals
    is resumed as is, not restored as after an outage (which would restart ``for:``)."""
    rule = replace(LONG, for_=300.0)
    policy = replace(POLICY, rules=(rule,))
    history = service(T0, T0 + 2 * H, lambda t: 10.0)
    db = tmp_path / "cron.db"
    statuses = []
    for k in range(10, 20):  # one "cron job" a minute
        now = T0 + k * EVERY
        with SQLiteStore(db) as store:
            values = SnapshotValues(policy, STEP, [s for s in history if s.end <= now])
            runner = PolicyRunner(policy, values, store, ManualClock(wall_start=now + 2.0))
            runner.run_once(now + 2.0)
            statuses.append(runner.status.states["slow"].status)
            runner.close()
    assert statuses == [P] * 5 + [F] * 5  # fires 5 minutes after it became pending


def test_a_run_after_a_longer_gap_is_a_restart(tmp_path: Path) -> None:
    rule = replace(LONG, for_=300.0)
    policy = replace(POLICY, rules=(rule,))
    with SQLiteStore(tmp_path / "gap.db") as store:
        store.save_rule_states([RuleState("slow", P, active_at=T0, evaluated_at=T0 + 120)])
        later = T0 + 120 + 2 * EVERY + 1  # more than two intervals since the last evaluation
        runner = PolicyRunner(policy, SnapshotValues(policy, STEP), store, ManualClock(0, later))
        assert runner.evaluator.states["slow"].active_at == later  # for < grace: hold again


class Ticks:
    """Stands in for the in-app loop's stop event: each ``wait`` is one tick at a given time."""

    def __init__(self, times: list[float]) -> None:
        self._times = iter(times)
        self.now = math.nan

    def wait(self, timeout: float) -> bool:
        self.now = next(self._times, math.nan)
        return math.isnan(self.now)

    def set(self) -> None:
        self._times = iter(())


def run_ticks(policy: InAppPolicy, times: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the in-app loop (its real ``_run``) once per time in ``times``, no thread."""
    ticks = Ticks(times)
    fake_time = SimpleNamespace(time=lambda: ticks.now, monotonic=time.monotonic)
    with monkeypatch.context() as patch:
        patch.setattr(inapp, "time", fake_time)
        patch.setattr(policy, "_stop", ticks)
        policy._run()


def test_a_worker_taking_over_the_policy_continues_from_the_stored_states(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule = replace(LONG, for_=600.0)
    policy = replace(POLICY, rules=(rule,))
    # Up to the present: the runners restore states by the system clock.
    base = time.time() // EVERY * EVERY - 2 * H
    history = service(base, base + 2 * H, lambda _: 10.0)
    with store_at(tmp_path) as store:
        leader = InAppPolicy(policy, STEP, store, lock_dir=tmp_path)
        follower = InAppPolicy(policy, STEP, store, lock_dir=tmp_path)  # started together
        store.write_snapshots("host", history)
        evaluations = [base + k * EVERY + SETTLE + 2 * STEP for k in range(11, 121)]
        run_ticks(leader, evaluations, monkeypatch)
        run_ticks(follower, evaluations[-3:], monkeypatch)  # not the leader: does nothing
        assert leader.runner is not None
        assert leader.runner.status.states["slow"].status is F
        fired_at = leader.runner.status.states["slow"].fired_at
        assert follower.runner is None
        assert follower.document() is None
        assert leader._lock_file is not None
        leader._lock_file.close()  # the leader's process died: its lock is released
        run_ticks(follower, [evaluations[-1] + EVERY], monkeypatch)
        assert follower.leader
        assert follower.runner is not None
        state = follower.runner.status.states["slow"]
        assert (state.status, state.fired_at) == (F, fired_at)  # not pending again
        doc = follower.document()
        assert doc is not None
        assert doc["rules"][0]["state"] == "firing"
        decisions = store.decisions(0)
    ups = [d.at for d in decisions if d.action == "scale_up"]
    assert fired_at is not None
    # decisions carry the evaluation slot, as rule states do: the leader's, one an hour
    assert ups[:2] == [fired_at, fired_at + H]


def test_a_new_runner_on_the_same_store_keeps_the_cooldown(tmp_path: Path) -> None:
    policy = replace(POLICY, rules=(replace(SLOW, for_=0.0),))
    history = service(T0, T0 + H, lambda t: 10.0)
    actions = []
    for k in range(10, 15):  # `watch --once` from cron, one run a minute
        now = T0 + k * EVERY
        with SQLiteStore(tmp_path / "cron.db") as store:
            values = SnapshotValues(policy, STEP, [s for s in history if s.end <= now])
            runner = PolicyRunner(policy, values, store, ManualClock(wall_start=now))
            actions.append(runner.run_once(now).action)
    assert actions == ["scale_up"] + ["hold"] * 4


# -- PolicyStatus ---------------------------------------------------------------------------


def test_policy_status_document_lists_every_rule_with_state_and_value() -> None:
    policy = replace(
        POLICY,
        rules=(SLOW, Rule("busy", "rps", GT, 100.0, Action.SCALE_UP, window=60.0)),
        preset="custom",
    )
    state = RuleState("slow", P, active_at=T0, value=9.5, evaluated_at=T0 + 60)
    doc = PolicyStatus(T0 + 60, {"slow": state}).to_dict(policy)
    assert doc["preset"] == "custom"
    assert doc["evaluated_at"] == T0 + 60
    assert doc["evaluation_interval"] == EVERY
    slow, busy = doc["rules"]
    assert slow["state"] == "pending"
    assert slow["value_text"] == "9.5s"
    assert slow["active_since"] == T0
    assert slow["condition"] == "> 8s"
    assert busy["state"] == "inactive"
    assert busy["value_text"] == "no data"
    assert doc["recommendation"] is None


# -- SnapshotValues ---------------------------------------------------------------------------

TRIM_POLICY = Policy(
    rules=(
        Rule("p95", "latency_p95", GT, 2.0, Action.SCALE_UP, window=H),
        Rule("avg", "latency_avg", GT, 8.0, Action.SCALE_UP, window=600.0),
        Rule("rate", "rps", GT, 50.0, Action.SCALE_UP, window=300.0),
        Rule("cpu", "cpu_percent", GT, 70.0, Action.SCALE_UP, window=H),
        Rule("peak", "concurrency_peak", GT, 10.0, Action.SCALE_UP, window=H),
        Rule("mem", "memory_mb", GT, 400.0, Action.SCALE_UP, window=1800.0),
    )
)


def varied(k: int) -> IntervalSnapshot:
    """Snapshot number ``k``: every field varies, from a small pool of histograms."""
    t = T0 + k * STEP
    return IntervalSnapshot(
        t,
        STEP,
        requests=10,
        inflight_peak=k % 13,
        latency=frozen(0.05 * (1 + k % 17)),
        gauges={"cpu_percent": float(k % 97), "rss_bytes": float((200 + k % 300) * 2**20)},
    )


def test_snapshot_values_keep_memory_bounded_and_answer_like_a_fresh_source() -> None:
    values = SnapshotValues(TRIM_POLICY, STEP)
    per_minute = int(EVERY / STEP)
    days = 10
    most = 0
    history: list[IntervalSnapshot] = []
    for minute in range(days * 1440):
        batch = [varied(minute * per_minute + i) for i in range(per_minute)]
        history = history[-400:] + batch  # the test keeps only what it compares against
        values.add(batch)
        most = max(most, len(values._snaps))
        if minute % 600 == 599:  # every 10 h, a query builds the columns incrementally
            values.value(TRIM_POLICY.rules[0], batch[-1].end)
    now = T0 + days * 86400.0
    assert values.latest == now
    assert most * STEP <= 1.2 * H  # never more than ~1.2 h of a 1 h policy's history
    kept = list(values._snaps)
    assert kept[-1].end == now
    assert kept[0].start <= now - H  # …and never less than the longest window
    fresh = SnapshotSource(kept, STEP)
    for rule in TRIM_POLICY.rules:
        for at in (now, now - 1.0):
            got = values.value(rule, at)
            assert got is not None
            assert got == pytest.approx(fresh.value(rule.metric, rule.window, at), rel=1e-9)
            reference = metric_value(rule.metric, history, rule.window, at, STEP)
            assert got == pytest.approx(reference, rel=1e-9), rule.name


def test_snapshot_values_accept_a_batch_that_goes_back_in_time() -> None:
    values = SnapshotValues(TRIM_POLICY, STEP)
    snaps = [varied(k) for k in range(360)]
    values.add(snaps[:100])
    values.add(snaps[200:])
    values.add(snaps[100:200])  # late: rebuilds, does not drop or double anything
    rule = TRIM_POLICY.rules[2]
    now = snaps[-1].end
    assert values.value(rule, now) == pytest.approx(metric_value("rps", snaps, 300.0, now, STEP))


def test_snapshot_values_without_data_answer_none() -> None:
    values = SnapshotValues(TRIM_POLICY, STEP)
    assert values.value(TRIM_POLICY.rules[0], T0) is None
    assert values.latest == -math.inf
    values.add([])
    assert values.value(TRIM_POLICY.rules[0], T0) is None


# -- StoreValues --------------------------------------------------------------------------------

RATE = Rule("rate", "rps", GT, 5.0, Action.SCALE_UP, window=300.0)
# The hour-long rule makes StoreValues keep (and the tests see) every snapshot they write.
RATE_POLICY = Policy(
    rules=(RATE, Rule("long", "latency_avg", GT, 8.0, Action.SCALE_UP, window=H)),
    evaluation_interval=STEP,
)


def test_store_values_read_each_written_snapshot_exactly_once(tmp_path: Path) -> None:
    with store_at(tmp_path) as store:
        writer = SnapshotWriter(store, "host-a")
        source = StoreValues(RATE_POLICY, store, STEP)
        arrived = 0
        snaps = [snap(T0 + k * STEP) for k in range(120)]
        for s in snaps:
            writer.add(s)
            assert writer.flush() == 1
            for lag in (0.5, 3.0, 7.0, 9.9):  # several refreshes per interval
                arrived += source.refresh(s.end + lag)
            assert source.refresh(s.end + 9.9) == 0  # again at the same time: nothing new
        starts = [x.start for x in source.values._snaps]
        assert len(starts) == len(set(starts))
        assert starts == [x.start for x in snaps if x.start < source.cursor]
        assert arrived == len(starts)
        assert source.cursor > snaps[-1].start - SETTLE - 3 * STEP  # it keeps up
        last = source.cursor
        # Over a window that ends at the cursor, the store-fed value is the exact one.
        expected = metric_value("latency_avg", snaps, 300.0, last, STEP)
        assert source.value(replace(RATE, metric="latency_avg"), last) == expected
        reference = metric_value("rps", snaps, 300.0, last, STEP)
        assert source.value(RATE, last) == pytest.approx(reference) == pytest.approx(1.0)


def test_store_values_pick_up_snapshots_written_late_but_before_settling(
    tmp_path: Path,
) -> None:
    with store_at(tmp_path) as store:
        fast = SnapshotWriter(store, "host-a")
        slow = SnapshotWriter(store, "host-b")  # another instance: a store that hiccupped
        source = StoreValues(RATE_POLICY, store, STEP)
        for k in range(60):
            start = T0 + k * STEP
            fast.add(snap(start))
            fast.flush()
            slow.add(snap(start, requests=20))
            if k % 2 == 1:  # host-b writes every other interval, up to ~12 s late
                slow.flush()
            source.refresh(start + STEP + 1.0)
        slow.flush()
        source.refresh(T0 + 60 * STEP + 60.0)  # catch up with everything that settled
        kept = list(source.values._snaps)
    keys = [(s.start, s.requests) for s in kept]
    assert len(keys) == len(set(keys))
    per_start: dict[float, int] = {}
    for s in kept:
        per_start[s.start] = per_start.get(s.start, 0) + s.requests
    assert set(per_start.values()) == {30}  # both instances, each once, in every interval
    assert len(per_start) == 60


def test_store_values_never_read_what_is_written_after_the_cursor_passed(
    tmp_path: Path,
) -> None:
    """The documented limit: a snapshot later than the settle time is not read."""
    with store_at(tmp_path) as store:
        source = StoreValues(RATE_POLICY, store, STEP)
        store.write_snapshots("a", [snap(T0 + k * STEP) for k in range(30)])
        source.refresh(T0 + 31 * STEP)
        cursor = source.cursor
        store.write_snapshots("b", [snap(T0)])  # far too late
        assert source.refresh(T0 + 31 * STEP) == 0
        assert source.cursor == cursor
        assert sum(s.start == T0 for s in source.values._snaps) == 1


def test_store_values_rates_are_not_diluted_by_intervals_still_settling(
    tmp_path: Path,
) -> None:
    rule = replace(RATE, window=60.0)
    policy = replace(RATE_POLICY, rules=(rule,))
    with store_at(tmp_path) as store:
        writer = SnapshotWriter(store, "host")
        source = StoreValues(policy, store, STEP)
        for k in range(60):
            s = snap(T0 + k * STEP, requests=100)
            writer.add(s)
            writer.flush()
            source.refresh(s.end + 1.0)
        now = T0 + 60 * STEP + 1.0
        value = source.value(rule, now // EVERY * EVERY)
    assert value == pytest.approx(10.0)


def test_store_values_answer_for_short_windows(tmp_path: Path) -> None:
    """A window of one interval still has data: it ends where settled data ends."""
    rule = replace(RATE, window=STEP)
    policy = replace(RATE_POLICY, rules=(rule,))
    with store_at(tmp_path) as store:
        source = StoreValues(policy, store, STEP)
        store.write_snapshots("host", [snap(T0 + k * STEP, requests=50) for k in range(12)])
        source.refresh(T0 + 12 * STEP + 1.0)
        assert source.value(rule, T0 + 12 * STEP) == pytest.approx(5.0)


def test_horizontal_policy_sizes_replicas_with_the_hpa_formula() -> None:
    """cpu_percent 40 per interval over 1 replica, target 10 per replica → ceil(1·40/10) = 4."""
    from scalewise.policy.model import Horizontal, HPATarget

    busy = Rule("busy", "cpu_percent", GT, 30.0, Action.SCALE_UP, window=60.0)
    policy = Policy(
        rules=(busy,),
        evaluation_interval=EVERY,
        current_plan="Starter",
        instances=1,
        horizontal=Horizontal(targets=(HPATarget("cpu_percent", 10.0),), max_replicas=10),
    )
    values = SnapshotValues(policy, STEP, service(T0, T0 + 600, lambda t: 0.05))
    runner = PolicyRunner(policy, values, clock=ManualClock(start=T0 + 600, wall_start=T0 + 600))
    rec = runner.run_once(T0 + 600, act=False)
    assert (rec.action, rec.kind, rec.target_instances) == ("scale_up", "horizontal", 4)
    assert rec.cost_after == pytest.approx(4 * rec.cost_before)
