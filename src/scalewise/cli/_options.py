"""Options several commands share, declared once so their names and help stay identical."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def config_file(
    help_text: str = "Config file (default: $SCALEWISE_CONFIG, else ./scalewise.yaml).",
) -> Decorator:
    return click.option(
        "--file", "path", type=click.Path(dir_okay=False), default=None, help=help_text
    )


def store_url() -> Decorator:
    return click.option(
        "--store",
        "store_url",
        default=None,
        help="History store URL (default: store.url, else sqlite:///scalewise.db).",
    )


def as_json(help_text: str) -> Decorator:
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def output_file(name: str, metavar: str, help_text: str) -> Decorator:
    """``--report FILE.html`` / ``--out FILE.json``: a file the command writes."""
    return click.option(
        name, type=click.Path(dir_okay=False, path_type=Path), metavar=metavar, help=help_text
    )


def concurrency_levels(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    """Click callback for ``--steps 1,2,4,8``: increasing whole numbers ≥ 1."""
    if value is None:
        return None
    try:
        levels = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected concurrency levels like 1,2,4,8, got {value!r}"
        ) from None
    if not levels or min(levels) < 1 or list(levels) != sorted(set(levels)):
        raise click.BadParameter(f"expected increasing levels ≥ 1 like 1,2,4,8, got {value!r}")
    return levels
