"""``scalewise check-config``: validate scalewise.yaml and SCALEWISE_* variables."""

from __future__ import annotations

import click

from scalewise.cli import _output


@click.command("check-config")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default: $SCALEWISE_CONFIG, else ./scalewise.yaml if present).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the effective config as JSON.")
def check_config(path: str | None, as_json: bool) -> None:
    """Check the configuration, warn about policies that would flap, print effective values.

    Exit code 0 when valid, 2 with one message naming the file, field and expectation.

    \b
    Example:
      SCALEWISE_METRICS_INTERVAL=5s scalewise check-config --file scalewise.yaml --json
    """
    from scalewise.config import load_config  # noqa: PLC0415 - pydantic only when needed
    from scalewise.policy.rules import flapping_warnings  # noqa: PLC0415

    cfg = load_config(path)
    policy = cfg.policy_object()
    warnings = flapping_warnings(policy)
    payload = cfg.model_dump(mode="json")
    if as_json:
        _output.emit_json({"valid": True, "warnings": warnings, "config": payload})
        return
    _output.out.print(f"[green]configuration is valid[/] ({len(policy.rules)} rule(s))")
    for warning in warnings:
        _output.err.print(f"[yellow]warning:[/] {warning}")
    for section, values in payload.items():
        if isinstance(values, dict) and section != "policy":
            for key, value in values.items():
                _output.out.print(f"  {section}.{key} = {value!r}")
    for rule in policy.rules:
        _output.out.print(
            f"  policy rule {rule.name}: {rule.metric} {rule.op.value} "
            f"{rule.threshold:g} for {rule.for_:g}s → {rule.action.value}"
        )
