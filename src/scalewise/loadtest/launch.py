"""From what the user typed to a finished run: plan, run, judge, and what the run found.

``scalewise loadtest`` and ``scalewise plan`` both come through :func:`run_loadtest`, so a quick
``URL --preset stress`` and a full scenario file share every rule: flags override a file's
scenarios the way k6's ``--vus``/``--duration`` do, thresholds from the file and from
``--threshold`` are judged together, and the result carries its findings (the stress breaking
point, the soak's memory growth).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scalewise.errors import ScenarioError
from scalewise.loadtest.client import Transport
from scalewise.loadtest.executors import Segment
from scalewise.loadtest.presets import preset_scenario
from scalewise.loadtest.report import JsonlWriter
from scalewise.loadtest.results import RunResult
from scalewise.loadtest.runner import Progress, Runner, run
from scalewise.loadtest.scenario import LoadPlan, load_plan, plan_from_dict
from scalewise.loadtest.soak import ScalingPoller, soak_findings
from scalewise.loadtest.thresholds import evaluate, parse_cli_threshold, parse_thresholds
from scalewise.loadtest.watch import Watch


@dataclass(frozen=True, slots=True)
class LoadTestOptions:
    """Everything ``scalewise loadtest`` takes; defaults make ``URL`` alone a baseline run."""

    target: str
    preset: str | None = None
    duration: float | None = None
    vus: int | None = None
    rate: float | None = None
    thresholds: tuple[str, ...] = ()
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    url: str | None = None
    segment: Segment = field(default_factory=Segment)
    seed: int | None = None
    start_at: float | None = None
    interval: float = 1.0
    jsonl: Path | None = None
    soak_poll: float = 30.0

    @property
    def is_file(self) -> bool:
        return "://" not in self.target


def build_plan(opts: LoadTestOptions) -> LoadPlan:
    """The plan for these options: a scenario file (flags override), or a preset on a URL."""
    cli_thresholds = _cli_thresholds(opts.thresholds)
    if opts.is_file:
        plan = load_plan(opts.target, target=opts.url)
        if opts.duration or opts.vus or opts.rate or opts.preset:
            plan = _override(plan, opts)
    else:
        request: dict[str, Any] = {"method": opts.method, "headers": dict(opts.headers)}
        if opts.body is not None:
            request["body"] = opts.body
        preset = opts.preset or "baseline"
        raw = preset_scenario(
            preset, opts.target, duration=opts.duration, vus=opts.vus, rate=opts.rate,
            request=request,
        )  # fmt: skip
        plan = plan_from_dict(raw, source=f"--preset {preset}")
        plan = replace(plan, preset=preset)
    merged = {**plan.thresholds}
    for metric, exprs in cli_thresholds.items():
        merged[metric] = [*merged.get(metric, []), *exprs]
    parse_thresholds(merged, source=plan.source)  # every expression checked before any traffic
    return replace(plan, thresholds=merged)


def _override(plan: LoadPlan, opts: LoadTestOptions) -> LoadPlan:
    """k6's rule: ``--vus``/``--duration``/``--rate`` replace the file's scenarios with one."""
    raw = preset_scenario(
        opts.preset or "baseline", plan.target, duration=opts.duration, vus=opts.vus,
        rate=opts.rate,
    )  # fmt: skip
    shaped = plan_from_dict(raw, source=plan.source)
    return replace(
        plan, executors=shaped.executors, break_when=shaped.break_when or plan.break_when
    )


def _cli_thresholds(exprs: Sequence[str]) -> dict[str, list[Any]]:
    """``--threshold 'METRIC: EXPR'`` flags as a scenario's ``thresholds:`` mapping."""
    out: dict[str, list[Any]] = {}
    for text in exprs:
        th = parse_cli_threshold(text, source="--threshold")
        # The expression is what follows the metric's colon (tags may hold colons too).
        after = text.split("}", 1)[1] if "{" in text.split(":", 1)[0] else text
        out.setdefault(th.label, []).append(after.split(":", 1)[1].strip())
    return out


@dataclass(slots=True)
class Outcome:
    """A finished (or stopped) run, judged."""

    result: RunResult
    findings: dict[str, Any]

    @property
    def passed(self) -> bool:
        return self.result.passed


def run_loadtest(
    plan: LoadPlan,
    opts: LoadTestOptions,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    transport: Transport | None = None,
) -> Outcome:
    """Run the plan to the end (or to a stop), then judge thresholds and gather findings."""
    thresholds = parse_thresholds(plan.thresholds, source=plan.source)
    watch = Watch(plan, thresholds)
    poller = ScalingPoller(plan.target, every=opts.soak_poll) if plan.preset == "soak" else None
    jsonl = JsonlWriter(opts.jsonl) if opts.jsonl else None

    def progress(p: Progress) -> None:
        if jsonl is not None:
            jsonl.write(p.interval)
        if on_progress is not None:
            on_progress(p)

    runner = Runner(
        plan,
        transport=transport,
        interval=opts.interval,
        segment=opts.segment,
        seed=opts.seed,
        start_at=opts.start_at,
        on_interval=progress,
        watch=watch,
        companion=poller.run if poller else None,
    )
    try:
        result = run(runner, handle_signals=transport is None)
    finally:
        if jsonl is not None:
            jsonl.close()
    return judge(result, plan.thresholds, plan.source, watch.findings(), poller)


def judge(
    result: RunResult,
    thresholds: Mapping[str, Sequence[Any]],
    source: str,
    findings: Mapping[str, Any] | None = None,
    poller: ScalingPoller | None = None,
) -> Outcome:
    """Evaluate thresholds on a result (also a merged one) and attach the findings."""
    result.thresholds = evaluate(parse_thresholds(thresholds, source=source), result)
    found = dict(findings or {})
    if result.meta.get("preset") == "soak" or poller is not None:
        found["soak"] = soak_findings(result, poller)
    result.meta["findings"] = found
    return Outcome(result, found)


def check_target(opts: LoadTestOptions) -> None:
    """Raise a ScenarioError for a target that is neither a URL nor an existing file."""
    if opts.is_file and not Path(opts.target).is_file():
        expected = "an http(s):// URL or an existing scenario file"
        raise ScenarioError("(arguments)", "TARGET", expected, opts.target)
