"""``scalewise status``: rules, states, values and the current recommendation.

With a URL it reads a running service's ``/health/scaling`` (which carries the policy when the
app evaluates it in-process); without, it evaluates the configured policy once against the
store (or Prometheus), without notifying or acting.
"""

from __future__ import annotations

import time

import click
import httpx

from scalewise.cli import _output
from scalewise.errors import ScalewiseError


@click.command()
@click.argument("url", required=False)
@click.option(
    "--path",
    default="/health/scaling",
    show_default=True,
    help="Where the service serves scalewise's scaling document.",
)
@click.option(
    "--file",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file with the policy (without URL).",
)
@click.option("--store", "store_url", default=None, help="History store URL (without URL).")
@click.option("--prometheus", default=None, help="Evaluate against Prometheus (without URL).")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
def status(
    url: str | None,
    path: str,
    config_path: str | None,
    store_url: str | None,
    prometheus: str | None,
    as_json: bool,
) -> None:
    """Show load, latency, errors, limits, rule states and the recommendation.

    \b
    Examples:
      scalewise status http://127.0.0.1:8000      # a running service
      scalewise status --store sqlite:///scalewise.db --json
    """
    if url is None:
        _local(config_path, store_url, prometheus, as_json)
        return
    try:
        response = httpx.get(url.rstrip("/") + path, timeout=10)
        response.raise_for_status()
        doc = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ScalewiseError(f"could not read {url.rstrip('/')}{path}: {exc}") from exc
    if as_json:
        _output.emit_json(doc)
        return
    _output.scaling_tables(doc)
    if doc.get("policy"):
        _output.policy_table(doc["policy"])


def _local(
    config_path: str | None, store_url: str | None, prometheus: str | None, as_json: bool
) -> None:
    from scalewise.cli.watch import build_runner  # noqa: PLC0415

    runner, source, store = build_runner(config_path, store_url, prometheus, "", notify=False)
    try:
        now = time.time()
        if hasattr(source, "refresh"):
            source.refresh(now)
        runner.run_once(now, act=False)
        doc = runner.status.to_dict(runner.policy)
    finally:
        runner.close()
        store.close()
    if as_json:
        _output.emit_json(doc)
    else:
        _output.policy_table(doc)
