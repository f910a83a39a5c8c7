"""``scalewise replay``: what would this policy have decided over recorded history?"""

from __future__ import annotations

import time
from typing import Any

import click

from scalewise.cli import _options, _output
from scalewise.units import parse_duration


@click.command("replay")
@_options.config_file("Config file with the policy to try (default ./scalewise.yaml).")
@_options.store_url()
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Replay a CSV of intervals instead of the store (see docs/policy.md).",
)
@click.option("--since", default="7d", show_default=True, help="How far back to start.")
@click.option("--until", default="0s", show_default=True, help="How far back to stop.")
@click.option("--json", "as_json", is_flag=True, help="Print the timeline as JSON.")
def replay(
    path: str | None,
    store_url: str | None,
    csv_path: str | None,
    since: str,
    until: str,
    as_json: bool,
) -> None:
    """Evaluate a policy over recorded history and print the timeline of its decisions.

    Nothing is notified and no hook runs: this is for tuning thresholds and durations.

    \b
    Example:
      scalewise replay --since 7d              # what would this policy have done last week?
      scalewise replay --csv history.csv --json
    """
    from scalewise.config import load_config  # noqa: PLC0415
    from scalewise.policy.replay import load_csv, replay_timeline  # noqa: PLC0415
    from scalewise.store.factory import store_from_url  # noqa: PLC0415

    cfg = load_config(path)
    policy = cfg.policy_object()
    interval = cfg.metrics_options().interval
    for name, value in (("--since", since), ("--until", until)):
        try:
            parse_duration(value)
        except ValueError as exc:
            raise click.BadParameter(f"{exc}, got {value!r}", param_hint=name) from None
    start_ago, end_ago = parse_duration(since), parse_duration(until)
    if csv_path:
        snapshots = load_csv(csv_path)
        end = max((s.end for s in snapshots), default=time.time())
    else:
        store = store_from_url(store_url or cfg.store_url())
        end = time.time() - end_ago
        longest = max((r.window for r in policy.rules), default=0.0)
        snapshots = store.read_snapshots(end - start_ago - longest, end)
        store.close()
    start = end - start_ago if not csv_path else min((s.start for s in snapshots), default=end)
    _output.err.print(f"replaying {len(snapshots)} intervals, {len(policy.rules)} rules …")
    timeline = replay_timeline(policy, snapshots, start, end, interval)
    if as_json:
        _output.emit_json(timeline)
    else:
        _show(timeline)


def _show(timeline: dict[str, Any]) -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    def stamp(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")

    for event in timeline["events"]:
        if event["kind"] == "rule":
            _output.out.print(
                f"{stamp(event['at'])}  {event['rule']}: {event['from']} → "
                f"{event['to']}  ({event['value_text']})"
            )
        else:
            _output.out.print(
                f"{stamp(event['at'])}  [bold]{event['action']}[/] → "
                f"{event['target']}  {event['reason']}"
            )
    summary = timeline["summary"]
    _output.out.print(
        f"[bold]{summary['evaluations']} evaluations[/]: "
        f"{summary['scale_up']} scale-up, {summary['scale_down']} scale-down "
        f"recommendations, {summary['firing_rules']} rules fired at least once."
    )
