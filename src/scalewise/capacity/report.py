"""Self-contained HTML reports for a USL fit and a capacity plan (inline SVG, no network).

Why HTML: the report is attached to a ticket or a pull request and must open anywhere, so it
carries the measured points, the fitted curve, the SLO line and the plan table in one file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from scalewise.capacity.planner import CapacityPlan, PlanOption
from scalewise.capacity.usl import UslFit
from scalewise.charts import html_page, html_table, line_chart
from scalewise.units import format_duration

_CURVE_POINTS = 120


def fit_curve(fit: UslFit, up_to: float) -> list[tuple[float, float]]:
    """The fitted X(N) sampled from 0 to ``up_to`` for drawing."""
    return [(up_to * i / _CURVE_POINTS, fit.throughput(up_to * i / _CURVE_POINTS))
            for i in range(_CURVE_POINTS + 1)]  # fmt: skip


def _curve_end(fit: UslFit, loads: Sequence[float]) -> float:
    """Draw past the data to the peak, but never more than twice the largest load."""
    top = max(loads)
    return min(max(top, fit.n_max * 1.25), 2 * top) if math.isfinite(fit.n_max) else top * 1.25


def _fmt(value: float, digits: int = 4) -> str:
    return "∞" if not math.isfinite(value) else f"{value:.{digits}g}"


def fit_table(fit: UslFit) -> str:
    """Coefficients and derived figures, with what each means."""
    rows = [
        ("σ (contention)", _fmt(fit.sigma), "share of work that is serialised"),
        ("κ (coherency)", _fmt(fit.kappa), "cost of keeping workers in step (retrograde)"),
        ("λ (throughput at N=1)", _fmt(fit.lam), "what one unit of load completes"),
        ("R²", f"{fit.r2:.4f}", f"{fit.n_points} points, {fit.n_levels} load levels"),
        ("N* (peak load)", _fmt(fit.n_max), "√((1−σ)/κ): beyond it throughput falls"),
        ("X_max (peak throughput)", _fmt(fit.x_max), "X(N*), or λ/σ when κ = 0"),
        ("λ/σ (Amdahl limit)", _fmt(fit.x_limit), "the ceiling without coherency cost"),
    ]
    return html_table(["figure", "value", "meaning"], rows)


def _list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def fit_report(
    fit: UslFit, load: Sequence[float], throughput: Sequence[float], *, title: str = "USL fit"
) -> str:
    """A page with the measured points, the fitted curve and the coefficient table."""
    measured = list(zip(load, throughput, strict=True))
    hlines = {"X_max": fit.x_max} if math.isfinite(fit.x_max) else None
    chart = line_chart(
        {"USL fit": fit_curve(fit, _curve_end(fit, load))},
        points={"measured": measured},
        hlines=hlines,
        title="Throughput by load",
        x_label="load (concurrency N)",
        y_label="throughput X",
    )
    formula = "X(N) = λN / (1 + σ(N−1) + κN(N−1))"
    body = f"<p>{escape(formula)}</p>\n{chart}\n{fit_table(fit)}"
    if fit.notes:
        body += "\n<h2>Notes</h2>\n" + _list(fit.notes)
    return html_page(title, body)


def _option_row(option: PlanOption, plan: CapacityPlan) -> list[object]:
    latency = option.predicted_latency
    marks = ["✔ recommended"] if option is plan.recommended else []
    if not option.fits:
        marks.append(f"over max {option.plan.max_instances}")
    if not option.meets_slo:
        marks.append("model above SLO")
    elif option.instances > option.instances_for_rate:
        marks.append(f"+{option.instances - option.instances_for_rate} for latency")
    return [
        option.plan.name,
        option.plan.cpu,
        option.instances,
        f"${option.monthly_cost:,.2f}",
        option.capacity_rps,
        option.usable_rps,
        f"{option.utilisation:.0%}",
        "unstable" if latency is None else format_duration(latency),
        ", ".join(marks),
    ]


def plan_table(plan: CapacityPlan) -> str:
    """Every plan sized for the target: instances, $/month, capacity and predicted latency."""
    headers = [
        "plan", "CPU", "instances", "$/month", "req/s per instance at SLO",
        f"usable req/s ({plan.headroom:.0%})", "utilisation", f"predicted {plan.slo.name}", "",
    ]  # fmt: skip
    return html_table(headers, [_option_row(o, plan) for o in plan.options])


def summary_lines(plan: CapacityPlan) -> list[str]:
    """The plan in a few plain sentences (for the report and for a terminal)."""
    lines = [f"Target: {plan.target.rps:.4g} req/s at peak, SLO {plan.slo}."]
    if plan.target.conversion:
        lines.append(f"Peak load: {plan.target.conversion}.")
    lines.append(f"Capacity of the measured instance at the SLO: {plan.capacity_basis}.")
    rec = plan.recommended
    if rec is not None:
        latency = "—" if rec.predicted_latency is None else format_duration(rec.predicted_latency)
        lines.append(
            f"Cheapest plan meeting the target: {rec.instances} × {rec.plan.name} = "
            f"${rec.monthly_cost:,.2f}/month (predicted {plan.slo.name} {latency})."
        )
    elif plan.shortfall:
        lines.append(plan.shortfall[0].upper() + plan.shortfall[1:] + ".")
    return lines


def _summary(plan: CapacityPlan) -> str:
    return "".join(f"<p>{escape(line)}</p>\n" for line in summary_lines(plan))


def _plan_charts(plan: CapacityPlan) -> str:
    loads = [s.concurrency for s in plan.steps]
    measured = [(s.concurrency, s.throughput) for s in plan.steps]
    series = {"USL fit": fit_curve(plan.usl, _curve_end(plan.usl, loads))} if plan.usl else {}
    throughput = line_chart(
        series,
        points={"measured": measured},
        hlines={"capacity at SLO": plan.capacity_rps, "usable": plan.usable_rps},
        title="Throughput by concurrency (one measured instance)",
        x_label="concurrency",
        y_label="req/s",
    )
    latencies = [
        (s.concurrency, lat)
        for s in plan.steps
        if (lat := s.latency(plan.slo.quantile)) is not None
    ]
    latency = line_chart(
        {plan.slo.name: latencies},
        points={plan.slo.name + " measured": latencies},
        hlines={f"SLO {plan.slo}": plan.slo.seconds},
        title=f"Latency ({plan.slo.name}) by concurrency",
        x_label="concurrency",
        y_label="seconds",
    )
    return f"{throughput}\n{latency}"


def plan_report(plan: CapacityPlan, *, title: str = "scalewise capacity plan") -> str:
    """The full plan: summary, charts with the SLO line, the plan table and the assumptions."""
    parts = [_summary(plan), _plan_charts(plan), "<h2>Plans</h2>", plan_table(plan)]
    if plan.usl is not None:
        parts += ["<h2>Universal Scalability Law fit</h2>", fit_table(plan.usl)]
    parts += ["<h2>Assumptions</h2>", _list(plan.assumptions)]
    if plan.notes:
        parts += ["<h2>Notes</h2>", _list(plan.notes)]
    return html_page(title, "\n".join(parts))
