"""Run the demo: start the example service on 127.0.0.1, measure it step by step, plan.

Everything stays on loopback; every step of the load is bounded in time, and the server is
stopped by its PID. The service runs in a temporary directory with a ``scalewise.yaml`` made
from the ``balanced`` preset (intervals shortened so a one-minute demo has something to show),
so its in-app policy evaluates the seeds' rules on what the load made it measure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import httpx
import yaml

from scalewise.errors import ScalewiseError
from scalewise.loadtest.scenario import LoadPlan, plan_from_dict
from scalewise.policy.presets import preset_yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: The demo's request mix over the service's route kinds (the flaky route stays out: its
#: deliberate 5 % errors would stop the ladder at its first step).
MIX: Final = (
    {"name": "io", "url": "/io?ms=20", "weight": 40},
    {"name": "cpu", "url": "/cpu?rounds=400", "weight": 25},
    *({"name": "cached", "url": f"/cached/{k}", "weight": 2.5} for k in range(8)),
    {"name": "upload", "method": "POST", "url": "/upload", "body": "x" * 64_000, "weight": 5},
)


def demo_plan(base_url: str) -> LoadPlan:
    """The load plan of the demo: the mix above against the service at ``base_url``."""
    raw = {"target": base_url, "requests": [dict(r) for r in MIX]}
    return plan_from_dict(raw, source="scalewise demo")


def write_config(directory: Path) -> Path:
    """``balanced`` preset, with 2 s intervals and evaluation so a short run shows states."""
    config = yaml.safe_load(preset_yaml("balanced"))
    config["metrics"] = {**config.get("metrics", {}), "interval": "2s", "multiprocess_dir": "off"}
    config["store"] = {"url": f"sqlite:///{directory / 'scalewise.db'}"}
    config["policy"] = {**config["policy"], "evaluation_interval": "2s", "in_app": True}
    path = directory / "scalewise.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_service(
    port: int, app: str = "scalewise.demo.service:app", config: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start uvicorn on loopback in a child process and wait until it answers /health."""
    env = {**os.environ, **({"SCALEWISE_CONFIG": str(config)} if config else {})}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=config.parent if config else None,
        env=env,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise ScalewiseError(f"the demo service exited at start-up:\n{err}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    stop_service(proc)
    raise ScalewiseError("the demo service did not answer /health within 20 s")


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    """Stop the child we started, by its PID: SIGTERM, then SIGKILL after 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def fetch(base_url: str, path: str) -> Any:
    response = httpx.get(base_url + path, timeout=10)
    response.raise_for_status()
    return response.json() if path != "/metrics" else response.text
