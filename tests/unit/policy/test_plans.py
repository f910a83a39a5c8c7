"""The plan catalog: the seeds' tiers, YAML loading with field paths, tiers and costs."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalewise.errors import ConfigError
from scalewise.policy.model import Action, Plan
from scalewise.policy.plans import (
    DEFAULT_PLANS,
    cost_matrix,
    cost_per_1000_requests,
    daily_requests_to_rps,
    find_plan,
    load_plans,
    monthly_cost,
    next_plan,
    parse_plans,
)

MIB, GIB = 2**20, 2**30


def _plan(name: str) -> Plan:
    return find_plan(DEFAULT_PLANS, name)


def test_default_catalog_is_the_seeds_tier_table() -> None:
    table = [(p.name, p.cpu, p.memory_bytes, p.price_month) for p in DEFAULT_PLANS]
    assert table == [
        ("Starter", 0.5, 512 * MIB, 7.0),
        ("Standard", 1.0, 2 * GIB, 25.0),
        ("Pro", 2.0, 4 * GIB, 85.0),
        ("Pro Plus", 4.0, 8 * GIB, 175.0),
        ("Pro Max", 4.0, 16 * GIB, 225.0),
        ("Pro Ultra", 8.0, 32 * GIB, 450.0),
    ]


def test_seed_000_cost_estimates() -> None:
    # "Pro Plan (5 instances): $425/month"; Starter $7; Standard $25 (base).
    assert monthly_cost(_plan("Pro"), 5) == 425.0
    assert monthly_cost(_plan("Starter"), 1) == 7.0
    assert monthly_cost(_plan("standard"), 1) == 25.0


def test_cost_per_1000_requests_over_a_30_day_month() -> None:
    # Seed 000: Starter "Capacity: ~1,000 requests/day" → 30 000 requests a month for $7.
    rps = daily_requests_to_rps(1000)
    assert cost_per_1000_requests(_plan("Starter"), 1, rps) == pytest.approx(7 / 30)
    assert cost_per_1000_requests(_plan("Standard"), 2, 1.0) == pytest.approx(50 / 2592)
    with pytest.raises(ValueError, match="positive"):
        cost_per_1000_requests(_plan("Standard"), 1, 0.0)


def test_next_plan_walks_the_tiers_and_stops_at_the_edges() -> None:
    assert next_plan(DEFAULT_PLANS, "Starter", "up") == _plan("Standard")
    assert next_plan(DEFAULT_PLANS, "pro_plus", Action.SCALE_UP) == _plan("Pro Max")
    assert next_plan(DEFAULT_PLANS, _plan("Pro"), "down") == _plan("Standard")
    assert next_plan(DEFAULT_PLANS, "Pro Ultra", "up") is None
    assert next_plan(DEFAULT_PLANS, "Starter", Action.SCALE_DOWN) is None
    with pytest.raises(ValueError, match="direction"):
        next_plan(DEFAULT_PLANS, "Starter", "sideways")


def test_tiers_are_ordered_by_price_not_file_order() -> None:
    shuffled = (DEFAULT_PLANS[3], DEFAULT_PLANS[0], DEFAULT_PLANS[5], DEFAULT_PLANS[1])
    assert next_plan(shuffled, "Starter", "up") == _plan("Standard")
    assert next_plan(shuffled, "Standard", "up") == _plan("Pro Plus")


def test_unknown_plan_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="one of Starter, Standard, Pro") as info:
        find_plan(DEFAULT_PLANS, "Enterprise")
    assert info.value.got == "Enterprise"


def test_load_plans_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "plans.yaml"
    path.write_text(
        "plans:\n"
        "  - {name: small, cpu: 0.25, memory: 256MiB, price_month: 5}\n"
        "  - {name: big, cpu: 2, memory: 2GB, price_month: 40.5, max_instances: 4}\n"
    )
    small, big = load_plans(path)
    assert small == Plan("small", 0.25, 256 * MIB, 5.0, 1)
    assert big == Plan("big", 2.0, 2_000_000_000, 40.5, 4)


@pytest.mark.parametrize(
    ("body", "field", "expected"),
    [
        ("plans: []", "plans", "non-empty list"),
        ("nothing: here", "plans", "top-level 'plans:'"),
        ("plans: [{cpu: 1, memory: 1GB, price_month: 1}]", "plans[0].name", "plan name"),
        ("plans: [{name: a, memory: 1GB, price_month: 1}]", "plans[0].cpu", "required"),
        ("plans: [{name: a, cpu: 0, memory: 1GB, price_month: 1}]", "plans[0].cpu", "positive"),
        ("plans: [{name: a, cpu: 1, memory: lots, price_month: 1}]", "plans[0].memory", "size"),
        ("plans: [{name: a, cpu: 1, memory: 1GB, price_month: -3}]", "plans[0].price_month", "≥ 0"),
        (
            "plans: [{name: a, cpu: 1, memory: 1GB, price_month: 1, max_instances: 0}]",
            "plans[0].max_instances",
            "whole number",
        ),
        ("plans: [{name: a, cpu: 1, memory: 1GB, price: 1}]", "plans[0].price", "one of"),
        ("plans: [1]", "plans[0]", "mapping"),
        ("plans: [{", "plans", "valid YAML"),
    ],
)
def test_bad_plan_files_name_the_file_and_field(
    tmp_path: Path, body: str, field: str, expected: str
) -> None:
    path = tmp_path / "plans.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_plans(path)
    assert info.value.source == str(path)
    assert info.value.path == field
    assert expected in str(info.value)


def test_duplicate_names_and_missing_file() -> None:
    data = [
        {"name": "Pro", "cpu": 1, "memory": "1GB", "price_month": 1},
        {"name": "pro", "cpu": 2, "memory": "2GB", "price_month": 2},
    ]
    with pytest.raises(ConfigError, match=r"inline: policy.plans\[1\].name"):
        parse_plans(data, "inline", "policy.plans")
    with pytest.raises(ConfigError, match="readable YAML file"):
        load_plans("/nonexistent/plans.yaml")


def test_cost_matrix_covers_every_plan_and_count() -> None:
    rows = cost_matrix(DEFAULT_PLANS, (1, 12), rps=2.0)
    assert len(rows) == 12
    first = rows[0]
    assert (first.plan.name, first.instances, first.monthly, first.allowed) == (
        "Starter",
        1,
        7,
        True,
    )
    assert first.per_1000_requests == pytest.approx(7 / (2 * 2592))
    assert not rows[1].allowed  # 12 > max_instances 10
    assert cost_matrix(DEFAULT_PLANS, (1,))[0].per_1000_requests is None
    assert rows[0].to_dict()["monthly_cost"] == 7.0
