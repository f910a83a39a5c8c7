"""HTML reports: self-contained, with the points, the curve, the SLO line and the plan table."""

from __future__ import annotations

import re

from scalewise.capacity.planner import Slo, Step, Target, plan_capacity
from scalewise.capacity.report import fit_curve, fit_report, plan_report, summary_lines
from scalewise.capacity.usl import fit_points

LOAD = [1, 2, 4, 8, 16, 32]
THROUGHPUT = [100, 190, 340, 520, 640, 600]
STEPS = [
    Step(1, 50, 0.03),
    Step(2, 95, 0.035),
    Step(4, 170, 0.05),
    Step(8, 260, 0.12),
    Step(16, 280, 0.4),
]


def _self_contained(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["']https?://""", html)


def test_fit_curve_follows_the_model() -> None:
    fit = fit_points(LOAD, THROUGHPUT)
    curve = fit_curve(fit, 40)
    assert curve[0] == (0.0, 0.0)
    assert curve[-1][0] == 40
    assert all(y == fit.throughput(x) for x, y in curve)


def test_fit_report_has_points_curve_and_coefficients() -> None:
    fit = fit_points(LOAD, THROUGHPUT)
    html = fit_report(fit, LOAD, THROUGHPUT, title="USL fit: steps.csv")
    _self_contained(html)
    assert "<title>USL fit: steps.csv</title>" in html
    assert html.count("<svg") == 1
    assert 'data-name="USL fit"' in html
    assert 'data-name="measured"' in html
    assert "X_max" in html
    assert f"{fit.sigma:.4g}" in html
    assert f"{fit.n_max:.4g}" in html


def test_plan_report_has_slo_line_plan_table_and_assumptions() -> None:
    plan = plan_capacity(STEPS, Slo(0.95, 0.3), Target.from_daily_users(10_000, 30, 3))
    html = plan_report(plan)
    _self_contained(html)
    assert html.count("<svg") == 2  # throughput and latency
    assert "SLO p95&lt;300ms" in html  # the SLO line's label, escaped
    assert "capacity at SLO" in html
    for option in plan.options:
        assert f"<td>{option.plan.name}</td>" in html
    assert "✔ recommended" in html
    assert "10,000 users × 30 requests/day" in html
    assert "capacity scales linearly with CPU count" in html
    assert "Universal Scalability Law fit" in html


def test_plan_report_without_a_usl_fit_and_with_a_shortfall() -> None:
    flat = [Step(1, 100, 0.01), Step(2, 100, 0.02), Step(4, 100, 0.04), Step(8, 100, 0.08)]
    plan = plan_capacity(flat, Slo(0.95, 0.3), Target(10_000.0))
    html = plan_report(plan)
    _self_contained(html)
    assert 'data-name="USL fit"' not in html
    assert "Universal Scalability Law fit" not in html
    assert "No plan in the catalog serves" in html
    assert "needs 18 × Pro Ultra; catalog max is 10" in html
    assert "over max 10" in html
    assert "no USL fit: σ at bound 1" in html


def test_summary_lines_state_target_capacity_and_choice() -> None:
    plan = plan_capacity(STEPS, Slo(0.95, 0.3), Target(400.0))
    lines = summary_lines(plan)
    assert lines[0] == "Target: 400 req/s at peak, SLO p95<300ms."
    assert lines[1].startswith("Capacity of the measured instance at the SLO: ")
    rec = plan.recommended
    assert rec is not None
    assert f"{rec.instances} × {rec.plan.name} = ${rec.monthly_cost:,.2f}/month" in lines[-1]
