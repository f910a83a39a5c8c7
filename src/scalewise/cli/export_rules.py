"""``scalewise export-rules``: the same policy as a Prometheus rule file."""

from __future__ import annotations

from pathlib import Path

import click

from scalewise.cli import _output


@click.command("export-rules")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default: $SCALEWISE_CONFIG, else ./scalewise.yaml).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write here instead of standard output.",
)
@click.option(
    "--selector", default="", help="Label matchers added to every metric, e.g. 'job=\"api\"'."
)
@click.option("--group", default="scalewise", show_default=True, help="Rule group name.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary, not the file.")
def export_rules(
    path: str | None, output: str | None, selector: str, group: str, as_json: bool
) -> None:
    """Write the policy's rules as Prometheus alerting rules (check with promtool).

    \b
    Example:
      scalewise export-rules -o scalewise.rules.yml && promtool check rules scalewise.rules.yml
    """
    from scalewise.config import load_config  # noqa: PLC0415
    from scalewise.policy.export import export_prometheus_rules  # noqa: PLC0415

    policy = load_config(path).policy_object()
    text = export_prometheus_rules(policy, group=group, selector=selector)
    if output:
        Path(output).write_text(text)
    if as_json:
        _output.emit_json({"rules": len(policy.rules), "output": output, "text": text})
    elif not output:
        click.echo(text, nl=False)
    else:
        _output.err.print(f"wrote {len(policy.rules)} rule(s) to {output}")
