"""``scalewise cost`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from scalewise.cli.cost import cost


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cost, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_default_table_lists_every_plan_and_instance_count() -> None:
    code, out = _run()
    assert code == 0
    for name in ("Starter", "Standard", "Pro", "Pro Plus", "Pro Max", "Pro Ultra"):
        assert name in out
    assert "$425" in out  # seed 000: Pro Plan (5 instances): $425/month
    assert "$4,500" in out  # Pro Ultra × 10
    assert "per 1 000" not in out


def test_daily_requests_are_converted_and_priced() -> None:
    code, out = _run("--plan", "standard", "--instances", "3", "--daily-requests", "10000")
    assert code == 0
    assert "10,000 requests/day ÷ 86 400 s = 0.1157 req/s" in out
    assert "300,000 per 30-day month" in out
    assert "Standard × 3 = $75/month; $0.2500 per 1 000 requests" in out
    assert "Starter" not in out


def test_json_output() -> None:
    code, out = _run("--rps", "2", "--instances", "12", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["rate"]["rps"] == 2.0
    assert doc["rate"]["monthly_requests"] == 5_184_000
    starter = doc["plans"][0]
    assert starter["name"] == "Starter"
    (row,) = starter["costs"]
    assert row["monthly_cost"] == 84.0
    assert row["within_max_instances"] is False
    assert row["cost_per_1000_requests"] == 84.0 / 5184


def test_custom_plan_file(tmp_path: Path) -> None:
    path = tmp_path / "plans.yaml"
    path.write_text(
        "plans:\n  - {name: tiny, cpu: 0.25, memory: 256MiB, price_month: 4, max_instances: 2}\n"
    )
    code, out = _run("--plans", str(path), "--instances", "3")
    assert code == 0
    assert "tiny" in out
    assert "—" in out  # 3 > max_instances 2
    assert "Standard" not in out


def test_bad_input_is_a_usage_error(tmp_path: Path) -> None:
    code, out = _run("--plan", "Enterprise")
    assert code == 2
    assert "unknown plan 'Enterprise'" in out
    assert _run("--rps", "1", "--daily-requests", "5")[0] == 2
    assert _run("--rps", "0")[0] == 2
    bad = tmp_path / "plans.yaml"
    bad.write_text("plans: [{name: a, cpu: 1, memory: lots, price_month: 1}]")
    code, out = _run("--plans", str(bad))
    assert code == 2
    assert "plans[0].memory" in out


def test_help_has_an_example() -> None:
    code, out = _run("--help")
    assert code == 0
    assert "scalewise cost --plan standard --instances 3 --daily-requests 10000" in out
