"""``scalewise status URL``: read a running service's ``/health/scaling`` and show it."""

from __future__ import annotations

import click
import httpx

from scalewise.cli import _output
from scalewise.errors import ScalewiseError


@click.command()
@click.argument("url")
@click.option(
    "--path",
    default="/health/scaling",
    show_default=True,
    help="Where the service serves scalewise's scaling document.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
def status(url: str, path: str, as_json: bool) -> None:
    """Show a running service's load, latency, errors and limits.

    \b
    Example:
      scalewise status http://127.0.0.1:8000
    """
    try:
        response = httpx.get(url.rstrip("/") + path, timeout=10)
        response.raise_for_status()
        doc = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ScalewiseError(f"could not read {url.rstrip('/')}{path}: {exc}") from exc
    if as_json:
        _output.emit_json(doc)
    else:
        _output.scaling_tables(doc)
