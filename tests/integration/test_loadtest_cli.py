"""``scalewise loadtest`` end to end against real uvicorn apps on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Server, free_port, uvicorn_argv

pytestmark = pytest.mark.integration


def serve(app: str) -> Iterator[Server]:
    port = free_port()
    server = Server(uvicorn_argv(app, port), port)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def app() -> Iterator[Server]:
    yield from serve("loadtest_app:app")


@pytest.fixture(scope="module")
def stalling() -> Iterator[Server]:
    yield from serve("stall_app:app")


def scalewise(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [sys.executable, "-c", "from scalewise.cli import main; main()", *args]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def summary(*args: str) -> dict[str, Any]:
    done = scalewise("loadtest", *args, "--json", "--quiet")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_constant_arrival_rate_sends_its_exact_count(app: Server) -> None:
    doc = summary(f"{app.url}/ok", "--rate", "200", "--duration", "2s")
    assert doc["metrics"]["http_reqs"]["count"] == 400
    assert doc["metrics"]["dropped_iterations"]["count"] == 0
    assert doc["statuses"] == {"200": 400}


def test_thresholds_set_the_exit_code(app: Server) -> None:
    base = ("loadtest", f"{app.url}/ok", "--vus", "2", "--duration", "1s", "--quiet")
    passing = scalewise(*base, "--threshold", "http_req_failed: rate<0.01")
    assert passing.returncode == 0, passing.stderr
    failing = scalewise(*base, "--threshold", "http_req_duration: p(99)<0.0001")
    assert failing.returncode == 1
    assert "✗" in failing.stdout or "failed" in failing.stdout
    errors = scalewise("loadtest", f"{app.url}/error", "--vus", "1", "--duration", "1s",
                       "--quiet", "--threshold", "http_req_failed: rate<0.5")  # fmt: skip
    assert errors.returncode == 1


def test_bad_threshold_and_unreachable_target_fail_clearly(app: Server) -> None:
    bad = scalewise("loadtest", f"{app.url}/ok", "--threshold", "http_req_duration: p95<1")
    assert bad.returncode == 2
    assert "--threshold" in bad.stderr
    assert "Traceback" not in bad.stderr
    gone = scalewise("loadtest", f"http://127.0.0.1:{free_port()}/", "--duration", "1s")
    assert gone.returncode == 2
    assert gone.stderr.count("\n") <= 2
    assert "cannot reach" in gone.stderr


def test_open_model_shows_the_stall_a_closed_loop_hides(stalling: Server) -> None:
    url = f"{stalling.url}/fast"
    open_model = summary(url, "--rate", "100", "--duration", "4s", "--vus", "200")
    closed = summary(url, "--vus", "1", "--duration", "4s")
    open_p90 = open_model["metrics"]["http_req_duration"]["p(90)"]
    closed_p90 = closed["metrics"]["http_req_duration"]["p(90)"]
    # About 30 % of open-model requests arrive during a 300 ms stall each second.
    assert open_p90 > 50
    assert closed_p90 < 20


def test_two_segments_merge_to_one_runs_counts(app: Server, tmp_path: Path) -> None:
    args = (f"{app.url}/ok", "--rate", "150", "--duration", "2s", "--quiet")
    for i in (1, 2):
        done = scalewise(
            "loadtest", *args, "--segment", f"{i}/2", "--out", str(tmp_path / f"{i}.json")
        )
        assert done.returncode == 0, done.stderr
    merged = scalewise("loadtest", "merge", str(tmp_path / "1.json"), str(tmp_path / "2.json"),
                       "--json", "--report", str(tmp_path / "m.html"))  # fmt: skip
    assert merged.returncode == 0, merged.stderr
    one = summary(*args)
    doc = json.loads(merged.stdout)
    assert doc["metrics"]["http_reqs"]["count"] == one["metrics"]["http_reqs"]["count"] == 300
    assert (tmp_path / "m.html").read_text().count("<svg") >= 3


def test_processes_merge_their_results(app: Server) -> None:
    doc = summary(f"{app.url}/ok", "--rate", "200", "--duration", "2s", "--processes", "2")
    assert doc["metrics"]["http_reqs"]["count"] == 400


def test_scenario_file_with_data_checks_and_ten_file_upload(app: Server, tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("user\nann\nbob\n")
    for i in range(10):
        (tmp_path / f"doc{i}.txt").write_text("x" * (100 + i))
    files = [f"doc{i}.txt" for i in range(10)]
    (tmp_path / "s.yaml").write_text(
        f"""
target: {app.url}
data: users.csv
requests:
  - {{name: upload, method: POST, url: /upload, form: {{user: "${{user}}"}},
     files: {{doc: {files}}}, checks: {{status: 200, body_contains: '"doc"'}}}}
scenarios:
  batch: {{executor: shared-iterations, vus: 2, iterations: 6}}
thresholds:
  checks: ["rate==1"]
"""
    )
    doc = summary(str(tmp_path / "s.yaml"))
    assert doc["passed"], doc["thresholds"]
    assert doc["metrics"]["http_reqs"]["count"] == 6


def test_ctrl_c_stops_cleanly_and_writes_the_partial_report(app: Server, tmp_path: Path) -> None:
    report = tmp_path / "partial.html"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [
        sys.executable,
        "-c",
        "from scalewise.cli import main; main()",
        "loadtest",
        f"{app.url}/ok",
        "--vus",
        "2",
        "--duration",
        "60s",
        "--quiet",
        "--report",
        str(report),
    ]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert report.is_file()
    assert b"interrupted" in out


@pytest.fixture(scope="module")
def measured() -> Iterator[Server]:
    """The Starlette test app with ScalewiseMiddleware: it serves /health/scaling."""
    port = free_port()
    server = Server(uvicorn_argv("starlette_app:app", port), port,
                    env={"SCALEWISE_MULTIPROCESS_DIR": "off"})  # fmt: skip
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_soak_reports_memory_growth_and_latency_drift(measured: Server) -> None:
    doc = summary(f"{measured.url}/", "--preset", "soak", "--rate", "50", "--duration", "5s",
                  "--poll-every", "1s")  # fmt: skip
    soak = doc["meta"]["findings"]["soak"]
    assert soak.get("memory_samples", 0) >= 3, soak
    assert soak["memory_growth_mb_per_hour"] is not None
    assert soak["latency_drift_ms_per_hour"] is not None


def test_soak_against_a_service_without_scalewise_says_so(app: Server) -> None:
    doc = summary(f"{app.url}/ok", "--preset", "soak", "--rate", "20", "--duration", "2s",
                  "--poll-every", "1s")  # fmt: skip
    soak = doc["meta"]["findings"]["soak"]
    assert soak["memory_growth_mb_per_hour"] is None
    assert "/health/scaling" in soak["memory_note"]


def test_stress_stops_at_the_breaking_point(app: Server) -> None:
    # /slow?ms=300 with at most 20 VUs saturates near 66 req/s; the ramp to 400/s breaks it.
    doc = summary(f"{app.url}/slow?ms=300", "--preset", "stress", "--rate", "400",
                  "--duration", "20s", "--vus", "20")  # fmt: skip
    point = doc["meta"]["findings"]["breaking_point"]
    assert doc["meta"]["stopped"].startswith("breaking point")
    assert point["offered_rps"] < 400
    assert doc["meta"]["duration"] < 20
