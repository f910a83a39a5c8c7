"""``scalewise loadtest``: k6-style load tests from a URL and a preset, or a scenario file.

Exit codes: 0 every threshold passed, 1 a threshold failed (or aborted the run), 2 a bad
scenario, flag or unreachable target, 130 interrupted (the partial report is still written).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from scalewise.cli import _options, _output
from scalewise.units import parse_duration

_EXAMPLES = """
\b
Examples:
  scalewise loadtest http://127.0.0.1:8000/ --preset stress --rate 500
  scalewise loadtest http://127.0.0.1:8000/ --vus 20 --duration 30s \\
      --threshold 'http_req_duration: p(95)<300' --threshold 'http_req_failed: rate<0.01'
  scalewise loadtest scenario.yaml --report report.html --out result.json
  scalewise loadtest scenario.yaml --processes 2
  scalewise loadtest merge part1.json part2.json --report merged.html
"""


class _DefaultRun(click.Group):
    """``scalewise loadtest URL`` means ``scalewise loadtest run URL``; ``merge`` is explicit."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultRun, help=f"Load-test a service (k6 semantics, in Python).\n{_EXAMPLES}")
def loadtest() -> None:
    pass


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise click.BadParameter(f"expected a duration like '30s' or '5m', got {value!r}") from None
    if seconds <= 0:
        raise click.BadParameter(f"expected a duration above 0, got {value!r}")
    return seconds


def _segment(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    from scalewise.loadtest.executors import Segment  # noqa: PLC0415

    if value is None:
        return Segment()
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected i/n such as 1/2, got {value!r}") from None
    if not 1 <= index <= count:
        raise click.BadParameter(f"expected 1 ≤ i ≤ n in i/n, got {value!r}")
    return Segment(index - 1, count)


def _header(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> Any:
    out = []
    for value in values:
        name, sep, text = value.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected 'Name: value', got {value!r}")
        out.append((name.strip(), text.strip()))
    return tuple(out)


@loadtest.command("run", epilog=_EXAMPLES)
@click.argument("target")
@click.option(
    "--preset",
    type=click.Choice(["baseline", "stress", "spike", "soak"]),
    help="Shape of the load (default baseline).",
)
@click.option(
    "--duration", callback=_duration, metavar="TIME", help="How long to send load, e.g. 30s, 5m."
)
@click.option(
    "--vus",
    type=click.IntRange(min=1),
    metavar="N",
    help="Virtual users (closed model; the cap in the open model).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    metavar="R",
    help="Iterations per second (open model, no coordinated omission).",
)
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="'METRIC: EXPR'",
    help="k6 threshold, repeatable: 'http_req_duration: p(95)<300'; 'over 1m' for every window.",
)
@click.option(
    "-X", "--method", default="GET", show_default=True, help="HTTP method for a URL target."
)
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    callback=_header,
    metavar="'Name: value'",
    help="Request header for a URL target, repeatable.",
)
@click.option("--body", metavar="TEXT", help="Request body for a URL target.")
@click.option("--url", metavar="URL", help="Override the scenario file's target URL.")
@_options.as_json("Print the summary as JSON.")
@_options.output_file("--report", "FILE.html", "Write a self-contained HTML report with charts.")
@_options.output_file("--jsonl", "FILE", "Stream one JSON line per interval (time series).")
@_options.output_file(
    "--out", "FILE.json", "Save the full result (for 'loadtest merge' and 'plan --from')."
)
@click.option(
    "--processes",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    help="Processes on this machine, results merged.",
)
@click.option(
    "--segment",
    callback=_segment,
    metavar="i/n",
    help="Run part i of n of the scenario (one per machine; merge after).",
)
@click.option(
    "--poll-every",
    "soak_poll",
    callback=_duration,
    default="30s",
    show_default=True,
    metavar="TIME",
    help="Soak preset: how often to read the target's /health/scaling.",
)
@click.option("--seed", type=int, help="Seed for think times and random data rows.")
@click.option("--quiet", is_flag=True, help="No live progress.")
@click.option("--start-at", type=float, hidden=True)
def run_command(
    target: str,
    as_json: bool,
    report: Path | None,
    out: Path | None,
    processes: int,
    quiet: bool,
    **flags: Any,
) -> None:
    """Load-test TARGET: an http(s) URL (with --preset) or a scenario YAML file."""
    from scalewise.loadtest import distributed, launch  # noqa: PLC0415 - heavy imports

    opts = launch.LoadTestOptions(target=target, **flags)
    launch.check_target(opts)
    plan = launch.build_plan(opts)
    show = not quiet and (sys.stderr.isatty() or not as_json)
    progress = _output.LoadProgress(plan) if show else None
    if processes > 1:
        outcome = distributed.run_processes(plan, opts, processes, sys.argv[1:], progress)
    else:
        with progress or contextlib.nullcontext():
            outcome = launch.run_loadtest(
                plan, opts, on_progress=progress.update if progress else None
            )
    _finish(outcome, as_json=as_json, report=report, out=out)


@loadtest.command("merge", epilog=_EXAMPLES)
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@_options.as_json("Print the merged summary as JSON.")
@_options.output_file("--report", "FILE.html", "Write the merged HTML report.")
@_options.output_file("--out", "FILE.json", "Save the merged result.")
def merge_command(
    files: tuple[Path, ...], as_json: bool, report: Path | None, out: Path | None
) -> None:
    """Combine result files of segments (--segment i/n --out FILE) into one result and report."""
    from scalewise.loadtest import distributed  # noqa: PLC0415

    _finish(distributed.merge_files(files), as_json=as_json, report=report, out=out)


def _finish(outcome: Any, *, as_json: bool, report: Path | None, out: Path | None) -> None:
    """Write the files asked for, print the summary, exit 1 if a threshold failed."""
    from scalewise.loadtest import report as reports  # noqa: PLC0415

    result = outcome.result
    if out is not None:
        reports.write_result(out, result)
    if report is not None:
        reports.write_html(report, result)
    if as_json:
        _output.emit_json(reports.summary_dict(result))
    else:
        reports.print_summary(result, _output.out)
        if report is not None:
            _output.err.print(f"HTML report: {report}")
    if result.meta.get("stopped", "") and str(result.meta["stopped"]).startswith("interrupted"):
        raise SystemExit(130)
    if not result.passed:
        raise SystemExit(1)
