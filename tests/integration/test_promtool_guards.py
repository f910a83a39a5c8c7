"""``promtool check metrics`` on a scrape with guard and cache events in it."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import require_command
from tests.unit.guard.test_guard_metrics import Stack, _samples, _scrape

pytestmark = [pytest.mark.integration, pytest.mark.promtool]


def test_promtool_accepts_guard_and_cache_counters() -> None:
    promtool = require_command("promtool", "prometheus")
    statuses, text, _ = _scrape(Stack())
    assert statuses["shed"] == 503
    assert sum(_samples(text).values()) > 0  # real events, not only zeros
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert result.stdout.strip() == b"", result.stdout.decode()  # no lint warnings either
