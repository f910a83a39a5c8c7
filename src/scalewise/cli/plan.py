"""``scalewise plan``: what do I need for N users, and what will it cost?

Load test → fitted model → tier × instances × $/month for a target load and latency SLO.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from scalewise.cli import _options, _output
from scalewise.units import format_duration, parse_duration, parse_percent

_EXAMPLES = """
\b
Examples:
  scalewise plan http://127.0.0.1:8000/items --slo 'p95<300ms' --target-rps 200
  scalewise plan http://127.0.0.1:8000/ --slo 'p99<1s' --daily-users 10000 \\
      --requests-per-user 30 --peak-factor 3 --report plan.html
  scalewise plan --from steps.json --slo 'p95<300ms' --target-rps 50 --json
"""


def _seconds(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError:
        raise click.BadParameter(f"expected a duration like '5s', got {value!r}") from None


def _share(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    try:
        share = parse_percent(value)
    except ValueError:
        raise click.BadParameter(f"expected a share like 70% or 0.7, got {value!r}") from None
    if not 0 < share <= 1:
        raise click.BadParameter(f"expected a share in (0, 100 %], got {value!r}")
    return share


@click.command(epilog=_EXAMPLES)
@click.argument("url", required=False)
@click.option("--slo", required=True, metavar="'p95<300ms'", help="Latency objective.")
@click.option(
    "--target-rps",
    type=click.FloatRange(min=0, min_open=True),
    metavar="R",
    help="Peak requests per second to plan for.",
)
@click.option(
    "--daily-users",
    type=click.FloatRange(min=0, min_open=True),
    metavar="N",
    help="Daily users (with --requests-per-user and --peak-factor) instead of a rate.",
)
@click.option(
    "--requests-per-user",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    metavar="N",
    help="Requests each user makes per day.",
)
@click.option(
    "--peak-factor",
    type=click.FloatRange(min=1),
    default=3.0,
    show_default=True,
    metavar="F",
    help="Peak rate over the daily average.",
)
@click.option(
    "--headroom",
    callback=_share,
    default="70%",
    show_default=True,
    help="Plan for this share of the measured capacity.",
)
@click.option(
    "--steps",
    "levels",
    callback=_options.concurrency_levels,
    metavar="1,2,4,…",
    help="Concurrency levels to step through (default 1,2,4,8,16,32,64).",
)
@click.option(
    "--step-duration",
    callback=_seconds,
    default="5s",
    show_default=True,
    help="Seconds per step (the first second is warm-up).",
)
@click.option(
    "--cpu",
    type=click.FloatRange(min=0, min_open=True),
    metavar="CORES",
    help="CPU cores of the measured instance (default: its /health/scaling, else 1).",
)
@click.option(
    "--plans",
    "plans_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="A YAML plan catalog (default: the seeds' plans).",
)
@click.option(
    "--from",
    "from_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Plan from a saved result (plan --out, or loadtest --out) instead of a run.",
)
@_options.output_file("--out", "FILE.json", "Save the measured steps (for --from).")
@_options.output_file(
    "--report", "FILE.html", "Write the HTML report: points, fitted curve, SLO line, plan table."
)
@_options.as_json("Print the plan as JSON.")
def plan(url: str | None, slo: str, from_file: Path | None, out: Path | None,
         report: Path | None, as_json: bool, **opts: Any) -> None:  # fmt: skip
    """Measure URL step by step, fit the USL, and size every plan for a target load and SLO."""
    from scalewise.capacity import planning  # noqa: PLC0415 - scipy and the load tester

    if (url is None) == (from_file is None):
        raise click.UsageError("give a URL to measure, or --from FILE, not both")
    if (opts["target_rps"] is None) == (opts["daily_users"] is None):
        raise click.UsageError("give --target-rps or --daily-users (not both)")
    request = planning.PlanRequest(url=url, slo_text=slo, **opts)
    if from_file is not None:
        steps = planning.steps_from_file(from_file, request)
        cpu = opts["cpu"] or 1.0
    else:
        steps, cpu = planning.measure(request, on_step=_show_step)
    if out is not None:
        out.write_text(json.dumps(planning.steps_file(request, steps), indent=2))
    result = planning.plan_for(request, steps, cpu)
    if report is not None:
        from scalewise.capacity.report import plan_report  # noqa: PLC0415

        report.write_text(plan_report(result), encoding="utf-8")
    if as_json:
        _output.emit_json(result.to_dict())
    else:
        print_plan(result)
        if report is not None:
            _output.err.print(f"HTML report: {report}")
    if result.recommended is None:
        raise SystemExit(1)


def _show_step(index: int, total: int, measured: Any) -> None:
    step = measured.step
    p95 = "—" if step.p95 is None else format_duration(step.p95)
    line = (
        f"step {index + 1}/{total}: {step.concurrency:g} concurrent → "
        f"{step.throughput:,.1f} req/s, p95 {p95}, errors {step.error_rate:.1%}"
    )
    if measured.reason:
        line += f"  (stop: {measured.reason})"
    _output.err.print(line, highlight=False)


def print_plan(result: Any) -> None:
    """The plan as a short text, a table of options, and the assumptions."""
    from scalewise.capacity.report import summary_lines  # noqa: PLC0415

    for line in summary_lines(result):
        _output.out.print(line, highlight=False)
    if result.usl is not None:
        u = result.usl
        n_max = "∞" if u.n_max == float("inf") else f"{u.n_max:.3g}"
        _output.out.print(
            f"USL fit: σ={u.sigma:.4g} κ={u.kappa:.4g} λ={u.lam:.4g} R²={u.r2:.3f} "
            f"N*={n_max} X_max={u.x_max:.4g} req/s",
            highlight=False,
        )
    table = Table(title="Plans", title_justify="left")
    for column in (
        "plan",
        "instances",
        "$/month",
        "usable req/s",
        f"predicted {result.slo.name}",
        "",
    ):
        table.add_column(column, justify="left" if column == "plan" else "right")
    for o in result.options:
        latency = "—" if o.predicted_latency is None else format_duration(o.predicted_latency)
        mark = "◀ cheapest" if o is result.recommended else ("" if o.fits else "too small")
        table.add_row(o.plan.name, str(o.instances), f"{o.monthly_cost:,.2f}",
                      f"{o.usable_rps:,.1f}", latency, mark)  # fmt: skip
    _output.out.print(table)
    for line in result.assumptions:
        _output.out.print(f"• {line}", highlight=False, style="dim")
