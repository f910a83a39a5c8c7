"""What both middleware do at construction: settle the options and build the monitor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

from scalewise.errors import ConfigError
from scalewise.metrics.monitor import Monitor
from scalewise.options import MetricsOptions


def build_monitor(
    owner: str,
    options: MetricsOptions | None,
    monitor: Monitor | None,
    overrides: Mapping[str, Any],
) -> Monitor:
    """The monitor to use: the one given, or a new one from options.

    Without ``options``, they come from ``scalewise.yaml`` and ``SCALEWISE_*`` variables
    (read now, at construction; a bad value raises :class:`ConfigError` at start-up rather
    than on a request). Keyword overrides win over both.
    """
    if monitor is not None:
        if options is not None or overrides:
            raise ConfigError(owner, "monitor", "either monitor= or options, not both")
        return monitor
    if options is not None:
        return Monitor(with_overrides(owner, options, overrides))
    from scalewise.config import load_config  # noqa: PLC0415 - pydantic at start-up only

    cfg = load_config()
    monitor = Monitor(with_overrides(owner, cfg.metrics_options(), overrides))
    attach_from_config(monitor, cfg)
    return monitor


def attach_from_config(monitor: Monitor, cfg: Any) -> None:
    """Persist to ``store.url`` and evaluate ``policy:`` in-app when the config has them."""
    store = None
    if cfg.store.url:
        from scalewise.store.factory import store_from_url  # noqa: PLC0415

        store = store_from_url(cfg.store.url)
        monitor.attach_store(store, cfg.store.instance, cfg.retention())
    policy = cfg.policy_object()
    if policy.rules and policy.in_app:
        monitor.attach_policy(policy, store, cfg.store.instance or "")


def with_overrides(
    owner: str, options: MetricsOptions, overrides: Mapping[str, Any]
) -> MetricsOptions:
    """``options`` with keyword overrides applied; an unknown name is a ConfigError."""
    if not overrides:
        return options
    known = {f.name for f in fields(MetricsOptions)}
    for name in overrides:
        if name not in known:
            raise ConfigError(owner, name, f"one of {', '.join(sorted(known))}")
    return replace(options, **overrides)
