"""``scalewise config``: validate scalewise.yaml and SCALEWISE_* variables, show the result."""

from __future__ import annotations

import click

from scalewise.cli import _output


@click.command()
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default: $SCALEWISE_CONFIG, else ./scalewise.yaml if present).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the effective config as JSON.")
def config(path: str | None, as_json: bool) -> None:
    """Check the configuration and print the effective values (file < environment).

    \b
    Example:
      SCALEWISE_METRICS_INTERVAL=5s scalewise config --file scalewise.yaml --json
    """
    from scalewise.config import load_config  # noqa: PLC0415 - pydantic only when needed

    cfg = load_config(path)
    payload = cfg.model_dump(mode="json")
    if as_json:
        _output.emit_json(payload)
        return
    _output.out.print("[green]configuration is valid[/]")
    for section, values in payload.items():
        if isinstance(values, dict):
            for key, value in values.items():
                _output.out.print(f"  {section}.{key} = {value!r}")
        else:
            _output.out.print(f"  {section} = {values!r}")
