"""The policy commands through the real entry point (``scalewise.cli.main``) under CliRunner.

``main`` registers the subcommands and maps errors to exit codes (2 bad configuration or
usage, 1 a failed check), so these tests see exactly what a user's shell sees.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import click
import pytest
from click.testing import CliRunner, Result
from tests.conftest import require_command

from scalewise.cli import cli, main
from scalewise.metrics.histogram import Histogram
from scalewise.metrics.windows import IntervalSnapshot
from scalewise.store.sqlite import SQLiteStore

COMMANDS = (
    "demo",
    "status",
    "check-config",
    "init",
    "watch",
    "replay",
    "export-rules",
    "cost",
    "loadtest",
    "plan",
    "fit",
)
STEP = 10.0


class _EntryPoint(click.Command):
    """The console script as CliRunner sees a command: ``main()`` with ``sys.argv`` set."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **_: Any
    ) -> None:
        with mock.patch.object(sys, "argv", [prog_name or "scalewise", *(args or ())]):
            main()


ENTRY = _EntryPoint("scalewise")


def scalewise(*args: str) -> Result:
    return CliRunner().invoke(ENTRY, list(args))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCALEWISE_CONFIG", raising=False)
    return tmp_path


# -- help ------------------------------------------------------------------------------------


def test_main_registers_every_subcommand() -> None:
    assert scalewise("--help").exit_code == 0
    assert set(COMMANDS) <= set(cli.commands)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = scalewise(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_the_root_help_has_examples() -> None:
    result = scalewise("--help")
    assert result.exit_code == 0
    assert "Examples" in result.output
    for command in COMMANDS:
        assert command in result.output


def test_an_unknown_option_is_a_usage_error() -> None:
    result = scalewise("init", "--no-such-option")
    assert result.exit_code == 2
    assert "no-such-option" in result.output


# -- init and check-config ---------------------------------------------------------------


@pytest.mark.parametrize("preset", ["mvp", "balanced", "starter"])
def test_init_writes_a_file_that_check_config_accepts(workdir: Path, preset: str) -> None:
    result = scalewise("init", "--preset", preset)
    assert result.exit_code == 0, result.output
    text = (workdir / "scalewise.yaml").read_text()
    assert f"preset: {preset}" in text
    assert text.startswith("#")  # commented, for people to edit
    checked = scalewise("check-config")
    assert checked.exit_code == 0, checked.output
    assert "configuration is valid" in checked.stdout
    assert "warning" not in checked.stderr  # presets do not flap


def test_init_json_says_what_it_wrote(workdir: Path) -> None:
    result = scalewise("init", "--preset", "mvp", "--file", "conf.yaml", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"file": "conf.yaml", "preset": "mvp", "rules": 8}
    assert (workdir / "conf.yaml").exists()


def test_init_refuses_to_overwrite_without_force(workdir: Path) -> None:
    target = workdir / "scalewise.yaml"
    target.write_text("# mine\n")
    result = scalewise("init", "--preset", "mvp")
    assert result.exit_code == 1
    assert "--force" in result.stderr
    assert target.read_text() == "# mine\n"
    assert scalewise("init", "--preset", "starter", "--force").exit_code == 0
    assert "preset: starter" in target.read_text()


def test_init_with_an_unknown_preset_names_the_presets(workdir: Path) -> None:
    result = scalewise("init", "--preset", "nope")
    assert result.exit_code == 2
    for name in ("mvp", "balanced", "starter"):
        assert name in result.stderr
    assert "'nope'" in result.stderr
    assert not (workdir / "scalewise.yaml").exists()


def test_check_config_names_the_bad_rule_field(workdir: Path) -> None:
    (workdir / "bad.yaml").write_text(
        "policy: {rules: [{name: x, metric: latency_p95, above: 5%, action: scale_up}]}\n"
    )
    result = scalewise("check-config", "--file", "bad.yaml")
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()  # one error, one line
    assert "bad.yaml" in line
    assert "policy.rules[0]" in line
    assert "duration" in line


def test_check_config_reports_every_bad_field(workdir: Path) -> None:
    (workdir / "scalewise.yaml").write_text(
        "policy:\n"
        "  rules:\n"
        "    - {name: a, metric: latency_p95, above: 5%, action: scale_up}\n"
        "    - {name: b, metric: no_such_metric, above: 1, action: scale_up}\n"
        "    - {name: c, metric: rps, above: 1, for: soon, action: scale_up}\n"
    )
    result = scalewise("check-config")
    assert result.exit_code == 2
    for index in range(3):
        assert f"policy.rules[{index}]" in result.stderr


FLAPPING = """\
policy:
  rules:
    - {name: hot, metric: cpu_percent, above: 70%, action: scale_up}
    - {name: cool, metric: cpu_percent, below: 80%, action: scale_down}
"""


def test_check_config_json_carries_flapping_warnings(workdir: Path) -> None:
    (workdir / "scalewise.yaml").write_text(FLAPPING)
    result = scalewise("check-config", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["valid"] is True
    (warning,) = doc["warnings"]
    assert "'hot'" in warning
    assert "'cool'" in warning
    assert "flap" in warning
    assert doc["config"]["policy"] is not None
    assert doc["config"]["metrics"]["interval"] == 10.0


def test_check_config_prints_flapping_warnings_on_stderr(workdir: Path) -> None:
    (workdir / "scalewise.yaml").write_text(FLAPPING)
    result = scalewise("check-config")
    assert result.exit_code == 0
    assert "flap" in result.stderr
    assert "flap" not in result.stdout


# -- export-rules and cost -------------------------------------------------------------------


@pytest.mark.promtool
def test_exported_rules_pass_promtool(workdir: Path) -> None:
    promtool = require_command("promtool", "prometheus")
    assert scalewise("init", "--preset", "balanced").exit_code == 0
    result = scalewise("export-rules", "-o", "rules.yml", "--selector", 'job="api"')
    assert result.exit_code == 0, result.output
    assert "rule(s) to rules.yml" in result.stderr
    check = subprocess.run(
        [promtool, "check", "rules", "rules.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout


@pytest.mark.promtool
def test_every_preset_exports_rules_promtool_accepts(workdir: Path) -> None:
    promtool = require_command("promtool", "prometheus")
    for preset in ("mvp", "balanced", "starter"):
        assert scalewise("init", "--preset", preset, "--force").exit_code == 0
        assert scalewise("export-rules", "-o", f"{preset}.yml").exit_code == 0
    check = subprocess.run(
        [promtool, "check", "rules", "mvp.yml", "balanced.yml", "starter.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_export_rules_json_and_stdout(workdir: Path) -> None:
    assert scalewise("init", "--preset", "mvp").exit_code == 0
    plain = scalewise("export-rules")
    assert plain.exit_code == 0
    assert plain.stdout.startswith("groups:") or "groups:" in plain.stdout
    summary = scalewise("export-rules", "--json")
    doc = json.loads(summary.stdout)
    assert doc["rules"] == 8
    assert doc["output"] is None
    assert doc["text"] == plain.stdout


def test_cost_json_for_daily_requests() -> None:
    result = scalewise("cost", "--daily-requests", "50000", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["rate"]["rps"] == pytest.approx(50_000 / 86_400)
    assert doc["rate"]["monthly_requests"] == pytest.approx(1_500_000)
    starter = doc["plans"][0]
    assert starter["name"] == "Starter"
    one = starter["costs"][0]
    assert one["monthly_cost"] == 7.0
    assert one["cost_per_1000_requests"] == pytest.approx(7.0 / 1500)


# -- watch, status, replay against a store ------------------------------------------------------

POLICY_YAML = """\
metrics: {interval: 10s}
policy:
  evaluation_interval: 1m
  current_plan: starter
  cooldown: 1h
  rules:
    - {name: busy, metric: rps, window: 5m, above: 1, for: 0s, action: scale_up}
    - {name: slow, metric: latency_p95, window: 5m, above: 2s, for: 10m, action: scale_up}
"""


def write_history(db: Path, start: float, end: float, requests: int = 50) -> int:
    """One instance's 10 s snapshots for ``[start, end)``: 5 rps at 100 ms by default."""
    hist = Histogram()
    hist.record_many(0.1, requests)
    latency = hist.freeze()
    first = math.ceil(start / STEP) * STEP
    snaps = [
        IntervalSnapshot(first + k * STEP, STEP, requests=requests, latency=latency)
        for k in range(int((end - first) // STEP))
    ]
    with SQLiteStore(db) as store:
        store.write_snapshots("web-1", snaps)
    return len(snaps)


@pytest.fixture
def busy_store(workdir: Path) -> Path:
    """scalewise.yaml with a small policy and the last hour of a busy service in x.db."""
    (workdir / "scalewise.yaml").write_text(POLICY_YAML)
    now = time.time()
    write_history(workdir / "x.db", now - 3600, now)
    return workdir / "x.db"


def test_watch_once_prints_one_json_status_line_and_records_the_decision(
    busy_store: Path,
) -> None:
    result = scalewise("watch", "--once", "--json", "--store", "sqlite:///x.db")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.strip().splitlines()
    doc = json.loads(line)
    busy, slow = doc["rules"]
    assert (busy["name"], busy["state"]) == ("busy", "firing")
    assert busy["value"] == pytest.approx(5.0)
    assert (slow["name"], slow["state"]) == ("slow", "inactive")
    assert slow["value"] == pytest.approx(0.1, rel=0.02)
    rec = doc["recommendation"]
    assert (rec["action"], rec["target_plan"], rec["cost_after"]) == ("scale_up", "Standard", 25.0)
    with SQLiteStore(busy_store) as store:
        (decision,) = store.decisions(0)
        states = store.load_rule_states()
    assert decision.action == "scale_up"
    assert states["busy"].status.value == "firing"


def test_status_evaluates_without_recording_a_decision(busy_store: Path) -> None:
    result = scalewise("status", "--store", "sqlite:///x.db", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["state"] for r in doc["rules"]] == ["firing", "inactive"]
    assert doc["recommendation"]["action"] == "scale_up"
    assert doc["hook"] is None
    with SQLiteStore(busy_store) as store:
        assert store.decisions(0) == []


def test_status_table_shows_rules_and_the_recommendation(busy_store: Path) -> None:
    result = scalewise("status", "--store", "sqlite:///x.db")
    assert result.exit_code == 0, result.output
    assert "busy" in result.stdout
    assert "firing" in result.stdout
    assert "Recommendation" in result.stdout
    assert "scale_up" in result.stdout


def test_watch_without_rules_is_a_config_error(workdir: Path) -> None:
    (workdir / "scalewise.yaml").write_text("metrics: {interval: 10s}\n")
    result = scalewise("watch", "--once", "--store", "sqlite:///x.db")
    assert result.exit_code == 2
    assert "policy.rules" in result.stderr


def test_watch_on_an_empty_store_reports_no_data_and_holds(workdir: Path) -> None:
    (workdir / "scalewise.yaml").write_text(POLICY_YAML)
    result = scalewise("watch", "--once", "--json", "--store", "sqlite:///empty.db")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["value_text"] for r in doc["rules"]] == ["no data", "no data"]
    assert doc["recommendation"]["action"] == "hold"
    assert doc["recommendation"]["missing"] == ["busy", "slow"]


def test_replay_from_the_store_prints_the_timeline_as_json(busy_store: Path) -> None:
    result = scalewise("replay", "--since", "2h", "--json", "--store", "sqlite:///x.db")
    assert result.exit_code == 0, result.output
    timeline = json.loads(result.stdout)
    assert timeline["summary"]["evaluations"] == 120
    assert timeline["summary"]["firing_rules"] == 1
    assert timeline["summary"]["scale_up"] >= 1
    kinds = {e["kind"] for e in timeline["events"]}
    assert kinds == {"rule", "decision"}
    assert any(e["kind"] == "rule" and e["rule"] == "busy" for e in timeline["events"])
    assert "replaying" in result.stderr


def test_replay_from_the_store_sees_the_whole_period(busy_store: Path) -> None:
    result = scalewise("replay", "--since", "2h", "--json", "--store", "sqlite:///x.db")
    timeline = json.loads(result.stdout)
    fired = next(e for e in timeline["events"] if e["kind"] == "rule" and e["to"] == "firing")
    assert fired["at"] <= timeline["end"] - 3300  # the hour of traffic, from its start


def test_replay_table_output(busy_store: Path) -> None:
    result = scalewise("replay", "--since", "2h", "--store", "sqlite:///x.db")
    assert result.exit_code == 0, result.output
    assert "evaluations" in result.stdout
    assert "busy: inactive → firing" in result.stdout


def test_replay_from_a_csv(workdir: Path) -> None:
    (workdir / "scalewise.yaml").write_text(POLICY_YAML)
    start = 1_700_000_000.0 // 3600 * 3600
    # Five minutes (no longer than the policy's windows), 5 rps from the second minute on.
    rows = "".join(f"{start + k * STEP:.0f},10,{50 if k >= 12 else 0},0.1\n" for k in range(30))
    (workdir / "h.csv").write_text("start,seconds,requests,latency\n" + rows)
    result = scalewise("replay", "--csv", "h.csv", "--json")
    assert result.exit_code == 0, result.output
    timeline = json.loads(result.stdout)
    assert (timeline["start"], timeline["end"]) == (start, start + 300)
    assert timeline["summary"]["evaluations"] == 5
    assert [(e["at"], e["to"]) for e in timeline["events"] if e["kind"] == "rule"] == [
        (start + 180, "firing")  # 300 requests in the 180 s measured: 1.7 rps > 1
    ]


def test_replay_with_a_bad_duration_is_a_usage_error(workdir: Path) -> None:
    (workdir / "scalewise.yaml").write_text(POLICY_YAML)
    result = scalewise("replay", "--since", "lastweek", "--store", "sqlite:///x.db")
    assert result.exit_code == 2
    assert "a duration like" in result.output


def test_replay_bad_duration_error_names_the_option_and_the_value(workdir: Path) -> None:
    (workdir / "scalewise.yaml").write_text(POLICY_YAML)
    result = scalewise("replay", "--since", "lastweek", "--store", "sqlite:///x.db")
    assert "--since" in result.output
    assert "lastweek" in result.output
