"""What both middleware do at construction: settle the options and build the monitor."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from scalewise.errors import ConfigError
from scalewise.metrics.monitor import Monitor
from scalewise.options import MetricsOptions


def build_monitor(
    owner: str, options: MetricsOptions | None, monitor: Monitor | None, overrides: dict[str, Any]
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
    if options is None:
        from scalewise.config import load_config  # noqa: PLC0415 - pydantic at start-up only

        options = load_config().metrics_options()
    return Monitor(with_overrides(owner, options, overrides))


def with_overrides(
    owner: str, options: MetricsOptions, overrides: dict[str, Any]
) -> MetricsOptions:
    """``options`` with keyword overrides applied; an unknown name is a ConfigError."""
    if not overrides:
        return options
    known = {f.name for f in fields(MetricsOptions)}
    for name in overrides:
        if name not in known:
            raise ConfigError(owner, name, f"one of {', '.join(sorted(known))}")
    return replace(options, **overrides)
