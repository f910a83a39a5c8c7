"""``scalewise watch``: the evaluation daemon (rules → decision → notifications → hook)."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from scalewise.cli import _options, _output


def build_runner(
    path: str | None,
    store_url: str | None,
    prometheus: str | None,
    selector: str,
    notify: bool = True,
) -> tuple[Any, Any, Any]:
    """The policy runner, its value source and the store, from config and flags."""
    from scalewise.config import load_config  # noqa: PLC0415
    from scalewise.errors import ConfigError  # noqa: PLC0415
    from scalewise.policy.history import StoreValues  # noqa: PLC0415
    from scalewise.policy.notify.dispatcher import Dispatcher  # noqa: PLC0415
    from scalewise.policy.runner import PolicyRunner  # noqa: PLC0415
    from scalewise.store.factory import store_from_url  # noqa: PLC0415

    cfg = load_config(path)
    policy = cfg.policy_object()
    if not policy.rules:
        raise ConfigError(
            path or "scalewise.yaml",
            "policy.rules",
            "at least one rule (scalewise init --preset mvp writes some)",
        )
    store = store_from_url(store_url or cfg.store_url())
    source: Any
    if prometheus:
        from scalewise.policy.prometheus import PrometheusSource  # noqa: PLC0415

        source = PrometheusSource(prometheus, selector=selector)
    else:
        source = StoreValues(policy, store, interval=cfg.metrics_options().interval)
    dispatcher = None
    if notify and policy.notifications.receivers:
        dispatcher = Dispatcher(policy.notifications, store=store)
    runner = PolicyRunner(policy, source, store, dispatcher=dispatcher)
    return runner, source, store


@click.command("watch")
@_options.config_file("Config file with a policy: section (default ./scalewise.yaml).")
@_options.store_url()
@click.option(
    "--prometheus",
    default=None,
    help="Evaluate against this Prometheus (fleet mode), e.g. http://127.0.0.1:9090.",
)
@click.option("--selector", default="", help="Label matchers for fleet mode, e.g. 'job=\"api\"'.")
@click.option("--once", is_flag=True, help="Evaluate once now and exit (for cron).")
@click.option(
    "--max-runtime",
    type=click.FloatRange(0),
    default=0.0,
    help="Stop after this many seconds (0: run until interrupted).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON status line per evaluation.")
def watch(
    path: str | None,
    store_url: str | None,
    prometheus: str | None,
    selector: str,
    once: bool,
    max_runtime: float,
    as_json: bool,
) -> None:
    """Evaluate the scaling policy every evaluation interval and act on it.

    Reads interval snapshots that instrumented apps write to the store (or queries
    Prometheus), keeps rule states in the store so `for:` survives restarts, sends
    notifications and runs the command hook (dry-run unless configured otherwise).

    \b
    Example:
      scalewise watch --store sqlite:///scalewise.db
      scalewise watch --prometheus http://127.0.0.1:9090 --selector 'job="api"' --once --json
    """
    runner, source, store = build_runner(path, store_url, prometheus, selector)
    started = time.monotonic()
    last_retention = time.monotonic()
    try:
        while True:
            now = time.time()
            if hasattr(source, "refresh"):
                try:
                    source.refresh(now)
                except Exception as exc:  # store locked or down: no data this round, say so
                    _output.err.print(f"[yellow]warning:[/] cannot read the store: {exc}")
            if time.monotonic() - last_retention >= 3600:
                last_retention = time.monotonic()
                _apply_retention(store, now, path)
            if once or runner.due(now):
                runner.run_once(now)
                _report(runner, as_json)
                if once:
                    return
            if max_runtime and time.monotonic() - started >= max_runtime:
                return
            wait = max(0.5, runner.evaluator.next_due(time.time()) - time.time())
            if max_runtime:
                wait = min(wait, max(0.0, max_runtime - (time.monotonic() - started)) + 0.01)
            time.sleep(wait)
    except KeyboardInterrupt:
        _output.err.print("stopped")
    finally:
        runner.close()
        store.close()


def _apply_retention(store: Any, now: float, path: str | None) -> None:
    from scalewise.config import load_config  # noqa: PLC0415

    try:
        store.apply_retention(now, load_config(path).retention())
    except Exception as exc:
        _output.err.print(f"[yellow]warning:[/] store retention failed: {exc}")


def _report(runner: Any, as_json: bool) -> None:
    doc = runner.status.to_dict(runner.policy)
    if as_json:
        click.echo(json.dumps(doc, default=str))
        return
    _output.policy_table(doc)
