"""The public surface: ``__all__`` is sorted, complete and resolvable; guards load lazily."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import scalewise


def test_every_public_name_resolves() -> None:
    for name in scalewise.__all__:
        assert getattr(scalewise, name) is not None, name


def test_all_is_sorted_and_unique() -> None:
    assert list(scalewise.__all__) == sorted(set(scalewise.__all__))


def test_importing_scalewise_does_not_load_the_guards() -> None:
    code = "import sys, scalewise; print(any(m.startswith('scalewise.guard') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        scalewise.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_keyword_overrides_are_typed_as_exactly_the_option_fields() -> None:
    """``MetricsOverrides`` types the middleware's ``**overrides``; it must not drift from
    ``MetricsOptions``, or a valid option would be a type error (or a dead one allowed)."""
    from dataclasses import fields
    from typing import get_type_hints

    from scalewise.options import MetricsOptions, MetricsOverrides

    assert set(get_type_hints(MetricsOverrides)) == {f.name for f in fields(MetricsOptions)}


def test_the_package_ships_its_typing_marker() -> None:
    assert (Path(scalewise.__file__).parent / "py.typed").is_file()
