"""``scalewise cost``: the seeds' cost calculator.

Plan × instances → $/month, and $ per 1 000 requests at a rate given in requests per second or
per day.
"""

from __future__ import annotations

from typing import Any, Final

import click
from rich.table import Table

from scalewise.cli import _output
from scalewise.errors import ConfigError
from scalewise.policy.model import Plan
from scalewise.policy.plans import (
    DEFAULT_PLANS,
    SECONDS_PER_DAY,
    CostRow,
    cost_matrix,
    daily_requests_to_rps,
    find_plan,
    load_plans,
    requests_per_month,
)
from scalewise.units import format_size

#: Instance counts shown when ``--instances`` is not given.
DEFAULT_COUNTS: Final = (1, 2, 3, 5, 10)


@click.command()
@click.option("--plan", "plan_name", metavar="NAME", help="Show only this plan (e.g. 'Standard').")
@click.option(
    "--instances",
    type=click.IntRange(min=1),
    metavar="N",
    help=f"Price N instances (default: {', '.join(map(str, DEFAULT_COUNTS))}).",
)
@click.option(
    "--rps",
    type=click.FloatRange(min=0, min_open=True),
    metavar="X",
    help="Steady request rate in requests/s: adds $ per 1,000 requests.",
)
@click.option(
    "--daily-requests",
    type=click.FloatRange(min=0, min_open=True),
    metavar="N",
    help="Requests per day (converted to a rate: N / 86 400 s).",
)
@click.option(
    "--plans",
    "plans_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="A YAML plan catalog ('plans: [{name, cpu, memory, price_month, max_instances}]').",
)
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def cost(
    plan_name: str | None,
    instances: int | None,
    rps: float | None,
    daily_requests: float | None,
    plans_file: str | None,
    as_json: bool,
) -> None:
    """What each plan costs per month, and per 1 000 requests at a given load.

    Prices are the seeds' Render-style tiers unless --plans names your own catalog;
    a month is 30 days.

    \b
    Examples:
      scalewise cost
      scalewise cost --plan standard --instances 3 --daily-requests 10000
      scalewise cost --rps 2.5 --plans plans.yaml --json
    """
    if rps is not None and daily_requests is not None:
        raise click.UsageError("give --rps or --daily-requests, not both")
    catalog = _catalog(plans_file)
    if plan_name is not None:
        try:
            catalog = (find_plan(catalog, plan_name),)
        except ConfigError as exc:
            raise click.BadParameter(
                f"unknown plan {plan_name!r}; expected {exc.expected}", param_hint="--plan"
            ) from None
    rate = daily_requests_to_rps(daily_requests) if daily_requests is not None else rps
    counts = (instances,) if instances is not None else DEFAULT_COUNTS
    rows = cost_matrix(catalog, counts, rate)
    if as_json:
        _output.emit_json(_document(rows, rate, daily_requests, counts))
    else:
        _print(rows, rate, daily_requests, counts)


def _catalog(plans_file: str | None) -> tuple[Plan, ...]:
    if plans_file is None:
        return DEFAULT_PLANS
    try:
        return load_plans(plans_file)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--plans") from None


def _rate_doc(rate: float | None, daily: float | None) -> dict[str, Any] | None:
    if rate is None:
        return None
    return {
        "rps": rate,
        "daily_requests": daily if daily is not None else rate * SECONDS_PER_DAY,
        "monthly_requests": requests_per_month(rate),
        "from": "daily_requests" if daily is not None else "rps",
    }


def _document(
    rows: list[CostRow], rate: float | None, daily: float | None, counts: tuple[int, ...]
) -> dict[str, Any]:
    plans: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = plans.setdefault(
            row.plan.name,
            {
                "name": row.plan.name,
                "cpu": row.plan.cpu,
                "memory_bytes": row.plan.memory_bytes,
                "price_month": row.plan.price_month,
                "max_instances": row.plan.max_instances,
                "costs": [],
            },
        )
        entry["costs"].append(row.to_dict())
    return {
        "month_days": 30,
        "instances": list(counts),
        "rate": _rate_doc(rate, daily),
        "plans": list(plans.values()),
    }


def _print(
    rows: list[CostRow], rate: float | None, daily: float | None, counts: tuple[int, ...]
) -> None:
    if rate is not None:
        _output.out.print(_rate_line(rate, daily))
    by_plan: dict[str, list[CostRow]] = {}
    for row in rows:
        by_plan.setdefault(row.plan.name, []).append(row)
    monthly = _table("$ per month, by instances", counts, sizes=True)
    for cells in by_plan.values():
        plan = cells[0].plan
        prices = [_money(r.monthly) if r.allowed else "—" for r in cells]
        monthly.add_row(plan.name, f"{plan.cpu:g}", format_size(plan.memory_bytes), *prices)
    _output.out.print(monthly)
    if rate is not None:
        per_k = _table("$ per 1 000 requests", counts, sizes=False)
        for name, cells in by_plan.items():
            per_k.add_row(name, *(_per_k(r.per_1000_requests) if r.allowed else "—" for r in cells))
        _output.out.print(per_k)
    if any(not row.allowed for row in rows):
        _output.out.print("— : more instances than the plan's max_instances")
    if len(rows) == 1:
        _output.out.print(_summary(rows[0], rate))


def _table(title: str, counts: tuple[int, ...], sizes: bool) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("plan", no_wrap=True)
    if sizes:
        table.add_column("CPU", justify="right", no_wrap=True)
        table.add_column("memory", justify="right", no_wrap=True)
    for n in counts:
        table.add_column(f"×{n}", justify="right", no_wrap=True)
    return table


def _summary(row: CostRow, rate: float | None) -> str:
    text = f"{row.plan.name} × {row.instances} = {_money(row.monthly)}/month"
    if rate is not None and row.per_1000_requests is not None:
        text += f"; {_per_k(row.per_1000_requests)} per 1 000 requests at {rate:.4g} requests/s"
    return text


def _money(value: float) -> str:
    return f"${value:,.0f}" if float(value).is_integer() else f"${value:,.2f}"


def _rate_line(rate: float, daily: float | None) -> str:
    monthly = requests_per_month(rate)
    if daily is not None:
        return (
            f"Load: {daily:,.0f} requests/day ÷ 86 400 s = {rate:.4g} req/s "
            f"({monthly:,.0f} per 30-day month)"
        )
    return f"Load: {rate:.4g} req/s ({monthly:,.0f} requests per 30-day month)"


def _per_k(value: float | None) -> str:
    if value is None:
        return "—"
    return f"${value:,.4f}" if value >= 0.0001 else f"${value:.2e}"
