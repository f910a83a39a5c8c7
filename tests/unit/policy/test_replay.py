"""``replay_timeline`` over recorded intervals, and ``load_csv``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scalewise.errors import ConfigError
from scalewise.metrics.histogram import FrozenHistogram, Histogram
from scalewise.metrics.windows import IntervalSnapshot
from scalewise.policy.metrics import metric_value
from scalewise.policy.model import Action, Comparison, Policy, Rule
from scalewise.policy.replay import load_csv, replay_timeline

H = 3600.0
STEP = 10.0
T0 = 1_700_000_000.0 // H * H
SLOW_FROM, SLOW_UNTIL = T0 + 30 * 60, T0 + 100 * 60  # 70 slow minutes in two hours

# Seed 001's "Average response time > 8 seconds for 1 hour", over a 10 minute average.
SLOW = Rule("slow_responses", "latency_avg", Comparison.GT, 8.0, Action.SCALE_UP, 600.0, H)
POLICY = Policy(rules=(SLOW,), evaluation_interval=60.0, current_plan="Starter")
# A rule that never fires but looks three hours back, so every interval stays in memory.
WIDE = Rule("wide", "latency_max", Comparison.GT, 1e6, Action.INVESTIGATE, window=3 * H)

# Derived by hand from the history: the 10 minute average passes 8 s once 47 of its 60
# intervals are slow (30 min + 470 s → the evaluation at 38 min); it fires an hour later, and
# resolves when fewer than 47 slow intervals remain in the window (103 min).
PENDING, FIRING, RESOLVED = T0 + 38 * 60, T0 + 98 * 60, T0 + 103 * 60


def frozen(latency: float) -> FrozenHistogram:
    h = Histogram()
    h.record_many(latency, 5)
    return h.freeze()


FAST, SLOWER = frozen(1.0), frozen(10.0)


def history() -> list[IntervalSnapshot]:
    out = []
    for k in range(int(2 * H / STEP)):
        t = T0 + k * STEP
        latency = SLOWER if SLOW_FROM <= t < SLOW_UNTIL else FAST
        out.append(IntervalSnapshot(t, STEP, requests=5, latency=latency))
    return out


def test_the_hand_derived_times_match_the_metric_definition() -> None:
    snaps = history()

    def above(t: float) -> bool:
        value = metric_value("latency_avg", snaps, 600.0, t, STEP)
        return value is not None and value > 8.0

    times = [T0 + k * 60.0 for k in range(120)]
    assert [t for t in times if above(t)] == [t for t in times if PENDING <= t < RESOLVED]


def check_timeline(timeline: dict[str, object]) -> None:
    events = timeline["events"]
    assert isinstance(events, list)
    rules = [(e["at"], e["from"], e["to"]) for e in events if e["kind"] == "rule"]
    assert rules == [
        (PENDING, "inactive", "pending"),
        (FIRING, "pending", "firing"),
        (RESOLVED, "firing", "inactive"),
    ]
    decisions = [e for e in events if e["kind"] == "decision"]
    assert [(e["at"], e["action"]) for e in decisions] == [
        (FIRING, "scale_up"),
        (FIRING + 60, "hold"),  # the cooldown; the rule resolves before it ends
    ]
    up = decisions[0]
    assert up["target"] == "Standard × 1"
    assert up["cost_after"] == 25.0
    assert "slow_responses" in up["reason"]
    firing = next(e for e in events if e["kind"] == "rule" and e["to"] == "firing")
    assert firing["value"] == pytest.approx(10.0)
    assert firing["value_text"] == "10s"
    assert timeline["summary"] == {
        "evaluations": 120,
        "scale_up": 1,
        "scale_down": 0,
        "firing_rules": 1,
    }
    assert (timeline["start"], timeline["end"]) == (T0, T0 + 2 * H)


def test_replay_fires_the_rule_once_and_scales_up_once() -> None:
    check_timeline(replay_timeline(POLICY, history(), T0, T0 + 2 * H, interval=STEP))


def test_replay_timeline_events_and_summary_when_the_history_fits_the_windows() -> None:
    """The same replay with every interval kept in memory (a rule looking 3 h back)."""
    policy = replace(POLICY, rules=(SLOW, WIDE))
    check_timeline(replay_timeline(policy, history(), T0, T0 + 2 * H, interval=STEP))


def test_replay_of_a_quiet_history_has_no_events() -> None:
    snaps = [IntervalSnapshot(T0 + k * STEP, STEP, requests=5, latency=FAST) for k in range(720)]
    policy = replace(POLICY, rules=(SLOW, WIDE))
    timeline = replay_timeline(policy, snaps, T0, T0 + 2 * H, interval=STEP)
    assert timeline["events"] == []
    assert timeline["summary"]["evaluations"] == 120
    assert timeline["summary"]["firing_rules"] == 0


def test_replay_of_nothing_evaluates_and_decides_nothing() -> None:
    timeline = replay_timeline(POLICY, [], T0, T0 + H, interval=STEP)
    assert timeline["events"] == []
    assert timeline["summary"] == {
        "evaluations": 60,
        "scale_up": 0,
        "scale_down": 0,
        "firing_rules": 0,
    }


# -- load_csv ------------------------------------------------------------------------------

HEADER = "start,seconds,requests,errors,latency,inflight_peak,cpu_percent,rss_bytes,user:queue\n"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def test_load_csv_reads_epoch_and_iso_starts_and_gauges(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text(
        HEADER
        + f"{T0 + 10:.0f},10,20,1,0.25,4,55.5,314572800,7\n"
        + f"{iso(T0)},10,0,0,,0,12,1000,\n"  # ISO 8601, an idle interval, empty cells
        + f"{iso(T0 + 20).replace('+00:00', 'Z')},5,3,0,2,1,,,\n"
    )
    first, second, third = load_csv(path)  # sorted by start
    assert [s.start for s in (first, second, third)] == [T0, T0 + 10, T0 + 20]
    assert (first.requests, first.latency.count, first.gauges) == (
        0,
        0,
        {"cpu_percent": 12.0, "rss_bytes": 1000.0},
    )
    assert second.seconds == 10.0
    assert (second.requests, second.errors, second.inflight_peak) == (20, 1, 4)
    assert second.latency.count == 20
    assert second.latency.mean == pytest.approx(0.25)
    assert second.gauges == {"cpu_percent": 55.5, "rss_bytes": 314572800.0, "user:queue": 7.0}
    assert third.seconds == 5.0
    assert third.latency.mean == pytest.approx(2.0)
    assert third.gauges == {}


def test_load_csv_output_drives_the_metric_catalog(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    rows = "".join(f"{T0 + k * 10:.0f},10,50,0,0.1,2,40,{300 * 2**20},12\n" for k in range(6))
    path.write_text(HEADER + rows)
    snaps = load_csv(path)
    now = T0 + 60
    assert metric_value("rps", snaps, 60.0, now) == pytest.approx(5.0)
    assert metric_value("memory_mb", snaps, 60.0, now) == pytest.approx(300.0)
    assert metric_value("gauge:queue", snaps, 60.0, now) == pytest.approx(12.0)
    assert metric_value("cpu_percent", snaps, 60.0, now) == pytest.approx(40.0)


@pytest.mark.parametrize(
    ("row", "why"),
    [
        (f"{T0:.0f},10,lots,0,0.1,1,1,1,1\n", "lots"),
        ("yesterday,10,5,0,0.1,1,1,1,1\n", "yesterday"),
        (",10,5,0,0.1,1,1,1,1\n", ""),
    ],
)
def test_a_bad_csv_row_is_a_config_error_naming_its_line(
    tmp_path: Path, row: str, why: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + f"{T0:.0f},10,5,0,0.1,1,1,1,1\n" + row)
    with pytest.raises(ConfigError) as caught:
        load_csv(path)
    assert caught.value.source == str(path)
    assert caught.value.path == "line 3"
    assert why in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_csv_without_a_start_column_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nostart.csv"
    path.write_text("requests,latency\n5,0.1\n")
    with pytest.raises(ConfigError, match="line 2"):
        load_csv(path)
