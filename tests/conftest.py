"""Shared fixtures: servers on free loopback ports, and skips that become failures in CI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ROOT = Path(__file__).resolve().parent.parent


def require(condition: bool, reason: str) -> None:
    """Skip when a server or tool is missing, except in CI, where that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def require_command(name: str, package: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} not installed (Debian package {package})")
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server process we started on 127.0.0.1; stopped by its PID, never by name."""

    def __init__(
        self,
        argv: Sequence[str],
        port: int,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            list(argv),
            env={**os.environ, **(env or {})},
            cwd=cwd or ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self, path: str = "/health", timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"server exited early:\n{err}")
            try:
                if httpx.get(self.url + path, timeout=1).status_code < 500:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"server on {self.url} not ready after {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()


def uvicorn_argv(app: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--app-dir",
        str(ROOT / "tests" / "apps"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        *extra,
    ]


@pytest.fixture
def uvicorn_server() -> Iterator[Server]:
    """The Starlette test app under a real uvicorn on a free loopback port."""
    port = free_port()
    server = Server(
        uvicorn_argv("starlette_app:app", port), port, env={"SCALEWISE_MULTIPROCESS_DIR": "off"}
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
