"""Shared helpers for the benchmarks: machine facts, CPU pinning, statistics, hand-built ASGI
calls, uvicorn servers on loopback, wrk runs, tables and JSON output.

Nothing here is part of scalewise; the scripts import it as a sibling module.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SRC = ROOT / "src"
HOST = "127.0.0.1"

if str(SRC) not in sys.path:  # `python benchmarks/x.py` works with or without PYTHONPATH=src
    sys.path.insert(0, str(SRC))

PACKAGES = (
    "starlette",
    "fastapi",
    "uvicorn",
    "h11",
    "httptools",
    "uvloop",
    "prometheus-client",
    "prometheus-fastapi-instrumentator",
    "starlette-exporter",
    "hdrhistogram",
    "numpy",
    "psutil",
)


# -- machine -------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    """Facts worth printing next to any figure."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "packages": package_versions(),
    }


def pin(cpu: int | None) -> None:
    """Pin this process to one CPU (what ``taskset -c N`` does); ``None`` leaves it alone."""
    if cpu is not None and cpu in os.sched_getaffinity(0) | set(range(os.cpu_count() or 1)):
        os.sched_setaffinity(0, {cpu})


# -- statistics ----------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> tuple[float, float]:
    """(min, max) of the repeats, shown next to medians so noise is visible."""
    return min(values), max(values)


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


# -- in-process ASGI -----------------------------------------------------------------------


def http_scope(path: str, method: str = "GET", query: bytes = b"") -> dict[str, Any]:
    """A complete HTTP scope as uvicorn would build it; copy it per call (apps mutate it)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"scalewise-bench"),
            (b"accept", b"*/*"),
        ],
        "client": (HOST, 50000),
        "server": (HOST, 8000),
        "state": {},
    }


_REQUEST = {"type": "http.request", "body": b"", "more_body": False}


async def receive() -> dict[str, Any]:
    return _REQUEST


async def discard(message: dict[str, Any]) -> None:
    """The fastest possible ``send``: the timed loops use it."""


class Capture:
    """A ``send`` that keeps the status and body, to check a variant answers correctly."""

    def __init__(self) -> None:
        self.status = 0
        self.body = b""

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")


async def call(app: Any, scope: dict[str, Any]) -> Capture:
    """One request through ``app`` in-process; returns what it sent."""
    out = Capture()
    await app(dict(scope), receive, out)
    return out


def find_instance(app: Any, cls: type) -> Any:
    """The ``cls`` instance inside a built Starlette middleware stack (or ``None``)."""
    seen: set[int] = set()
    node = getattr(app, "middleware_stack", None) or app
    while node is not None and id(node) not in seen:
        if isinstance(node, cls):
            return node
        seen.add(id(node))
        node = getattr(node, "app", None)
    return None


# -- servers on loopback -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return int(response.status), response.read()


def server_flavour() -> tuple[str, str]:
    """(loop, http) uvicorn will use: uvloop/httptools when installed, else asyncio/h11."""
    versions = package_versions(("uvloop", "httptools"))
    return (
        "uvloop" if versions["uvloop"] else "asyncio",
        "httptools" if versions["httptools"] else "h11",
    )


@contextlib.contextmanager
def uvicorn_server(
    factory: str, cpu: int | None, probe: str, timeout: float = 30.0
) -> Iterator[tuple[str, int]]:
    """Run ``_apps:<factory>`` under one uvicorn worker on a free loopback port, pinned with
    taskset; yields (base URL, server PID) once ``probe`` answers; stops it by its PID."""
    port = free_port()
    loop, http = server_flavour()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        f"_apps:{factory}",
        "--app-dir",
        str(BENCH_DIR),
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        loop,
        "--http",
        http,
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]  # taskset execs: same PID
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.PIPE)
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"server {factory} exited with {proc.returncode}: {err}")
            try:
                http_get(base + probe, timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server {factory} did not answer {probe}") from None
                time.sleep(0.05)
        yield base, proc.pid
    finally:
        stop_pid(proc)
        log.close()


def stop_pid(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the one process we started, then SIGKILL it if it lingers."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    if proc.stderr:
        proc.stderr.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"cannot read wrk duration {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def wrk(
    url: str, cpu: int | None, threads: int = 1, connections: int = 32, duration: int = 10
) -> dict[str, Any]:
    """One wrk run (pinned with taskset); requests/s, latency percentiles, errors.
    wrk takes whole seconds only."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(duration)}s", "--latency", url]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        stop_pid(proc)  # type: ignore[arg-type]
        raise
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {text} {err.decode(errors='replace')}")
    result: dict[str, Any] = {"command": " ".join(command)}
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    result["rps"] = float(match[1]) if match else 0.0
    match = re.search(r"(\d+) requests in", text)
    result["requests"] = int(match[1]) if match else 0
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.MULTILINE)
        result[f"p{pct}_ms"] = _seconds(match[1]) * 1e3 if match else None
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    result["non_2xx"] = int(match[1]) if match else 0
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    result["socket_errors"] = sum(int(g) for g in match.groups()) if match else 0
    return result


# -- output --------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table (right-aligned numbers), also valid Markdown."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            + " |"
        )

    rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def emit(result: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], str]) -> None:
    """Print the JSON document or the human tables."""
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=False, default=str))
    else:
        print(render(result))


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
        f"load at start {info['loadavg_at_start']}"
    )


def bar_line(name: str, ok: bool | None, detail: str) -> str:
    mark = "n/a " if ok is None else ("MET " if ok else "MISS")
    return f"[{mark}] {name}: {detail}"
