"""``scalewise demo``: the main job on embedded defaults, end to end on this machine.

Start the bundled service → measure it step by step with the load tester → fit the Universal
Scalability Law → size every plan for a target load and SLO → show what the service's own
policy (the ``balanced`` preset) made of the load → write the HTML report. No external service.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import click

from scalewise.cli import _options, _output


@click.command()
@click.option(
    "--slo", default="p95<250ms", show_default=True, help="Latency objective to plan for."
)
@click.option(
    "--daily-users",
    type=click.FloatRange(min=0, min_open=True),
    default=10_000,
    show_default=True,
    help="Daily users to plan for (30 requests each, peak ×3).",
)
@click.option(
    "--steps",
    "levels",
    callback=_options.concurrency_levels,
    default="1,2,4,8,16,32",
    show_default=True,
    help="Concurrency levels of the stepped load.",
)
@click.option(
    "--step-duration",
    type=click.FloatRange(2, 60),
    default=4.0,
    show_default=True,
    help="Seconds per step (the first is warm-up).",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("scalewise-demo.html"),
    show_default=True,
    help="HTML report to write.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan and the policy as JSON.")
def demo(slo: str, daily_users: float, levels: tuple[int, ...], step_duration: float, report: Path,
         as_json: bool) -> None:  # fmt: skip
    """Start the bundled example service on 127.0.0.1, measure it, and plan its capacity.

    The service (Starlette under uvicorn, instrumented with ScalewiseMiddleware) has a
    CPU-bound, an I/O-bound, a cached and an upload route. The load steps through the
    concurrency levels, stopping early at saturation or an SLO breach. Nothing leaves loopback,
    and every step stops on its own; the whole run takes well under 90 s.

    \b
    Examples:
      scalewise demo
      scalewise demo --daily-users 200000 --slo 'p99<500ms' --report demo.html
    """
    from scalewise.capacity import planning  # noqa: PLC0415 - scipy and the load tester
    from scalewise.capacity.report import plan_report  # noqa: PLC0415
    from scalewise.cli.plan import _show_step, print_plan  # noqa: PLC0415
    from scalewise.demo.run import (  # noqa: PLC0415
        demo_plan,
        fetch,
        free_port,
        start_service,
        stop_service,
        write_config,
    )

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="scalewise-demo-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        _output.err.print(f"starting the example service on {base} …")
        proc = start_service(port, config=write_config(Path(tmp)))
        try:
            request = planning.PlanRequest(
                url=base, slo_text=slo, daily_users=daily_users, levels=levels,
                step_duration=step_duration,
            )  # fmt: skip
            _output.err.print(f"stepped load, {step_duration:g} s per step (Ctrl-C stops) …")
            measured, cpu = planning.measure(request, on_step=_show_step, plan=demo_plan(base))
            time.sleep(2.5)  # one more evaluation interval, so the policy saw the last step
            doc = fetch(base, "/health/scaling")
        finally:
            stop_service(proc)
    result = planning.plan_for(request, measured, cpu)
    report.write_text(plan_report(result, title="scalewise demo: capacity plan"), encoding="utf-8")
    if as_json:
        _output.emit_json({"plan": result.to_dict(), "policy": doc.get("policy")})
        return
    print_plan(result)
    _policy(doc)
    _output.err.print(
        f"done in {time.monotonic() - started:.0f} s. HTML report: {report.resolve()}"
    )


def _policy(doc: dict[str, Any]) -> None:
    policy = doc.get("policy")
    if not policy:
        return
    _output.out.print(
        "\n[bold]The service's own policy[/] (preset 'balanced', evaluated in the app on what "
        "this load made it measure; rules with long 'for:' durations stay pending in a demo):"
    )
    _output.policy_table(policy)
