"""The command hook, with real tiny commands: env vars, dry-run, timeout, exit codes, limits."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from scalewise.policy import actions
from scalewise.policy.actions import arun_command_hook, decision_env, run_command_hook
from scalewise.policy.model import CommandHook, Recommendation

pytestmark = pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")

REC = Recommendation(
    action="scale_up",
    kind="vertical",
    at=1_700_000_000.0,
    current_plan="Starter",
    target_plan="Standard",
    current_instances=1,
    target_instances=1,
    cost_before=7.0,
    cost_after=25.0,
    firing=("slow_responses",),
    values={"slow_responses": 9.2},
    reasons=("latency_avg 9.2s > 8s for 1h (rule slow_responses)", "cost $7.00 → $25.00"),
)


def _hook(script: str, timeout: float = 10.0) -> CommandHook:
    return CommandHook(argv=("sh", "-c", script), dry_run=False, timeout=timeout)


def test_decision_reaches_the_command_in_environment_variables() -> None:
    result = run_command_hook(
        _hook('echo "$SCALEWISE_ACTION $SCALEWISE_KIND $SCALEWISE_TARGET_PLAN"'), REC
    )
    assert result.ok
    assert (result.returncode, result.stdout) == (0, "scale_up vertical Standard\n")
    env = decision_env(REC)
    assert env["SCALEWISE_CURRENT_PLAN"] == "Starter"
    assert env["SCALEWISE_TARGET_INSTANCES"] == "1"
    assert (env["SCALEWISE_COST_BEFORE"], env["SCALEWISE_COST_AFTER"]) == ("7.00", "25.00")
    assert env["SCALEWISE_REASONS"].splitlines() == list(REC.reasons)


def test_decision_json_round_trips() -> None:
    result = run_command_hook(_hook('printf %s "$SCALEWISE_DECISION_JSON"'), REC)
    assert json.loads(result.stdout) == REC.to_dict()


def test_argv_is_never_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hook = CommandHook(argv=("echo", f"; touch {marker}"), dry_run=False)
    result = run_command_hook(hook, REC)
    assert result.stdout == f"; touch {marker}\n"
    assert not marker.exists()


def test_dry_run_is_the_default_and_runs_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "ran"
    hook = CommandHook(argv=("sh", "-c", f"touch {marker}"))
    with caplog.at_level(logging.INFO, logger="scalewise.actions"):
        result = run_command_hook(hook, REC)
    assert (result.dry_run, result.returncode, result.ok) == (True, None, True)
    assert not marker.exists()
    assert "dry run: would run sh -c 'touch" in caplog.text
    assert "plan=Standard" in caplog.text


def test_timeout_kills_the_command_and_its_children() -> None:
    result = run_command_hook(_hook("sleep 5; echo late", timeout=0.2), REC)
    assert result.timed_out
    assert not result.ok
    assert result.duration < 3.0
    assert result.stdout == ""
    assert result.error is not None
    assert "timed out after 0.2s" in result.error
    result = run_command_hook(CommandHook(("sleep", "5"), dry_run=False, timeout=0.2), REC)
    assert result.timed_out
    assert result.returncode is not None
    assert result.returncode < 0


def test_exit_code_and_stderr_are_captured_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="scalewise.actions"):
        result = run_command_hook(_hook("echo nope >&2; exit 3"), REC)
    assert (result.returncode, result.stderr, result.ok) == (3, "nope\n", False)
    assert "failed: exit 3; stderr: nope" in caplog.text


def test_output_is_bounded() -> None:
    result = run_command_hook(_hook("head -c 300000 /dev/zero | tr '\\0' x"), REC)
    assert result.returncode == 0
    assert len(result.stdout) == actions.OUTPUT_LIMIT
    assert result.truncated


def test_a_missing_command_is_reported_not_raised() -> None:
    hook = CommandHook(("/nonexistent/scalewise-hook",), dry_run=False)
    result = run_command_hook(hook, REC)
    assert not result.ok
    assert result.error is not None
    assert "could not start" in result.error


def test_hold_and_empty_hooks_run_nothing() -> None:
    hold = Recommendation("hold", "vertical", 0.0, "Starter", "Starter", 1, 1, 7.0, 7.0)
    assert run_command_hook(_hook("exit 1"), hold).skipped == "hold: nothing to change"
    assert run_command_hook(CommandHook(dry_run=False), REC).skipped == "no command configured"


def test_env_replaces_the_inherited_environment() -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TEAM": "ops"}
    result = run_command_hook(_hook('echo "$TEAM ${HOME:-unset} $SCALEWISE_ACTION"'), REC, env)
    assert result.stdout == "ops unset scale_up\n"


def test_async_wrapper_runs_in_a_thread() -> None:
    import asyncio

    result = asyncio.run(arun_command_hook(_hook("echo $SCALEWISE_TARGET_PLAN"), REC))
    assert result.stdout == "Standard\n"
    assert result.to_dict()["ok"] is True
