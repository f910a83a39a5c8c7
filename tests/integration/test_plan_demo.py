"""``scalewise plan`` and ``scalewise demo`` end to end on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Server, free_port, uvicorn_argv

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def app() -> Iterator[Server]:
    port = free_port()
    server = Server(uvicorn_argv("loadtest_app:app", port), port)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def scalewise(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [sys.executable, "-c", "from scalewise.cli import main; main()", *args]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=180, env=env, cwd=cwd, check=False
    )


def test_plan_measures_fits_and_sizes_the_catalog(app: Server, tmp_path: Path) -> None:
    done = scalewise(
        "plan", f"{app.url}/slow?ms=20", "--slo", "p95<200ms", "--daily-users", "100000",
        "--steps", "1,2,4,8", "--step-duration", "2s", "--json",
        "--out", str(tmp_path / "steps.json"), "--report", str(tmp_path / "plan.html"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["recommended"] is not None
    assert [s["concurrency"] for s in doc["steps"]] == [1, 2, 4, 8]
    # 20 ms per request: each concurrent user adds about 50 req/s.
    assert 25 < doc["steps"][0]["throughput"] < 60
    assert doc["steps"][-1]["throughput"] > 3 * doc["steps"][0]["throughput"]
    assert "step 4/4" in done.stderr
    assert (tmp_path / "plan.html").read_text().count("<svg") >= 2
    again = scalewise("plan", "--from", str(tmp_path / "steps.json"), "--slo", "p95<200ms",
                      "--target-rps", "5000", "--json")  # fmt: skip
    assert json.loads(again.stdout)["target"]["rps"] == 5000


def test_plan_rejects_bad_input_clearly(app: Server) -> None:
    no_unit = scalewise("plan", app.url, "--slo", "p95<300", "--target-rps", "10")
    assert no_unit.returncode == 2
    assert "unit" in no_unit.stderr
    both = scalewise("plan", app.url, "--slo", "p95<300ms")
    assert both.returncode == 2
    assert "--target-rps" in both.stderr


def test_demo_runs_the_main_job_end_to_end(tmp_path: Path) -> None:
    done = scalewise("demo", "--steps", "1,2,4,8", "--step-duration", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Cheapest plan meeting the target" in done.stdout
    assert "USL fit" in done.stdout
    assert "Policy balanced" in done.stdout
    assert (tmp_path / "scalewise-demo.html").is_file()
