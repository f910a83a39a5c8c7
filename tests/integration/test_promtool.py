"""``promtool check metrics`` (Prometheus's own linter) on a real scrape of a real server."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.conftest import require_command

pytestmark = [pytest.mark.integration, pytest.mark.promtool]


def test_promtool_accepts_a_real_scrape(uvicorn_server) -> None:
    promtool = require_command("promtool", "prometheus")
    with httpx.Client(base_url=uvicorn_server.url) as client:
        for i in range(20):
            client.get(f"/items/{i}", headers={"X-Request-Start": "t=1"})
        client.get("/teapot")
        client.get("/stream", params={"chunks": "2", "delay": "0.01"})
        client.get("/nowhere")
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=response.content,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert result.stdout.strip() == b"", result.stdout.decode()  # no lint warnings either
