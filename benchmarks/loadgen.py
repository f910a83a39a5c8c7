"""One load generator process against nginx: scalewise's client vs wrk -t1 vs Locust FastHttpUser.

Setup, in one run: nginx (worker_processes 1, access_log off, keep-alive without a request
limit) serves a 1 KB static file on a free loopback port, pinned to CPU 1; each generator runs
in turn pinned to CPU 0 with the same number of keep-alive connections and no think time:

* ``wrk -t1 -cN -dDs``: the C reference;
* scalewise: a driver process (this file with ``--drive``) running N concurrent senders that
  reuse one Prepared request on uvloop; it warms up 1 s, then counts requests and its own CPU
  time (``getrusage``) over exactly D seconds;
* Locust FastHttpUser, headless, single process, ``-u N -r N -t Ds``, one task with no wait.

CPU time per request: the scalewise driver measures its own window; wrk and Locust are sampled
from outside (``psutil`` user+system of the process) between 2 s after launch and 1 s before
the end, divided by their reported requests/s times the window (both run at a steady rate after
start-up, and sampling leaves out Locust's ~1 s of imports). The machine has two cores, so
other processes on CPU 0 or 1 lower every figure: look at the load average printed with them.

Run: ``PYTHONPATH=src python benchmarks/loadgen.py [--duration 10] [--connections 50] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as c

SERVER_CPU, CLIENT_CPU = 1, 0
BARS = {"vs_locust": 3.0, "vs_wrk": 0.5, "cpu_us": 25.0}
WARMUP, TAIL = 2.0, 1.0  # outside sampling window for wrk/Locust, seconds
NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    server {{ listen 127.0.0.1:{port}; root {dir}/www; }}
}}
"""
LOCUSTFILE = """\
from locust import task
from locust.contrib.fasthttp import FastHttpUser


class Static(FastHttpUser):
    @task
    def get(self):
        self.client.get("{path}")
"""


# -- processes ----------------------------------------------------------------------------------


def pinned(argv: list[str], cpu: int) -> list[str]:
    """taskset execs the command, so the PID we hold is the generator's own."""
    return ["taskset", "-c", str(cpu), *argv] if shutil.which("taskset") else argv


def start_nginx(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """nginx on a free port serving ``/static.bin`` (1 KB); returns (process, URL)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"  # /usr/sbin is often not on PATH
    (workdir / "www").mkdir()
    (workdir / "www" / "static.bin").write_bytes(bytes(range(256)) * 4)
    for path in (workdir, workdir / "www", workdir / "www" / "static.bin"):
        path.chmod(0o755)  # the worker runs as an unprivileged user when we are root
    port = c.free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, port=port))
    argv = pinned(
        [nginx, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf)], SERVER_CPU
    )
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://{c.HOST}:{port}/static.bin"
    for _ in range(100):  # up to ~5 s
        if proc.poll() is not None:
            raise RuntimeError(
                f"nginx exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            if c.http_get(url)[1] == bytes(range(256)) * 4:
                return proc, url
        except OSError:
            time.sleep(0.05)
    c.stop_pid(proc)
    raise RuntimeError("nginx did not serve the static file")


def sampled(argv: list[str], duration: float, cwd: Path) -> tuple[str, float, float]:
    """Run a generator; (stdout, CPU seconds, wall seconds) of its steady window."""
    import psutil

    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ps = psutil.Process(proc.pid)
    launched = time.perf_counter()
    try:
        time.sleep(WARMUP)
        cpu0, t0 = sum(ps.cpu_times()[:2]), time.perf_counter()
        time.sleep(max(0.5, launched + duration - TAIL - time.perf_counter()))
        cpu1, t1 = sum(ps.cpu_times()[:2]), time.perf_counter()
    except psutil.NoSuchProcess:  # it ended before its own duration: show why
        cpu0 = cpu1 = t0 = t1 = 0.0
    try:
        out, _ = proc.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        c.stop_pid(proc)
        raise
    if proc.returncode != 0 or t1 == 0.0:
        raise RuntimeError(f"{argv[-1]} failed ({proc.returncode}): {out.decode()[-2000:]}")
    return out.decode(errors="replace"), cpu1 - cpu0, t1 - t0


# -- the three generators -----------------------------------------------------------------------


def run_wrk(url: str, connections: int, duration: float, workdir: Path) -> dict[str, Any]:
    argv = pinned(["wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", url], CLIENT_CPU)
    out, cpu, window = sampled(argv, duration, workdir)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "requests": requests,
        "rps": rps,
        "cpu_us": cpu / (rps * window) * 1e6,
        "errors": int(errors[1]) if errors else 0,
    }


def run_locust(url: str, connections: int, duration: float, workdir: Path) -> dict[str, Any]:
    base, path = url.rsplit("/", 1)
    (workdir / "locustfile.py").write_text(LOCUSTFILE.format(path="/" + path))
    argv = [
        shutil.which("locust") or "locust",
        "-f",
        "locustfile.py",
        "--headless",
        "-u",
        str(connections),
        "-r",
        str(connections),
        "-t",
        f"{int(duration)}s",
        "--host",
        base,
        "--only-summary",
        "--csv",
        str(workdir / "locust"),
        "--loglevel",
        "WARNING",
    ]
    _, cpu, window = sampled(pinned(argv, CLIENT_CPU), duration, workdir)
    rows = (workdir / "locust_stats.csv").read_text().splitlines()
    header = rows[0].split(",")
    total = dict(zip(header, next(r for r in rows if ",Aggregated," in r).split(","), strict=True))
    rps = float(total["Requests/s"])
    return {
        "requests": int(total["Request Count"]),
        "rps": rps,
        "cpu_us": cpu / (rps * window) * 1e6 if rps else None,
        "errors": int(total["Failure Count"]),
    }


def run_scalewise(url: str, connections: int, duration: float) -> tuple[int, float]:
    """(requests, CPU seconds) of scalewise driving ``url`` for ``duration`` s, pinned to CPU 0.

    The seam the lead can point at the full ``scalewise loadtest`` CLI later.
    """
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--drive",
        url,
        "--connections",
        str(connections),
        "--duration",
        str(duration),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(c.SRC), env.get("PYTHONPATH")]))
    done = subprocess.run(
        pinned(argv, CLIENT_CPU), capture_output=True, timeout=duration + 60, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"scalewise driver failed: {done.stderr.decode()[-2000:]}")
    result = json.loads(done.stdout)
    if result["failed"]:
        raise RuntimeError(f"scalewise driver saw {result['failed']} failed requests")
    return int(result["requests"]), float(result["cpu_seconds"])


def _scalewise_row(url: str, connections: int, duration: float) -> dict[str, Any]:
    requests, cpu = run_scalewise(url, connections, duration)
    return {
        "requests": requests,
        "rps": requests / duration,
        "cpu_us": cpu / requests * 1e6,
        "errors": 0,
    }


# -- driver (runs in its own pinned process) ----------------------------------------------------


async def drive(url: str, connections: int, duration: float) -> dict[str, Any]:
    """N closed-loop senders on one Prepared request: 1 s warm-up, then a measured window."""
    from scalewise.loadtest.client import HttpClient, Request

    client = HttpClient(timeout=30.0)
    prepared = client.prepare(Request("GET", url))
    loop = asyncio.get_running_loop()
    state = {"run": True, "done": 0, "failed": 0}
    marks: list[tuple[int, float, float]] = []

    def mark() -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        marks.append((state["done"], usage.ru_utime + usage.ru_stime, time.perf_counter()))

    def stop() -> None:
        mark()
        state["run"] = False

    async def sender() -> None:
        send = client.send
        while state["run"]:
            response = await send(prepared)
            state["done"] += 1
            if response.status != 200:
                state["failed"] += 1

    loop.call_later(1.0, mark)
    loop.call_later(1.0 + duration, stop)
    await asyncio.gather(*(sender() for _ in range(connections)))
    await client.aclose()
    (n0, cpu0, t0), (n1, cpu1, t1) = marks
    return {
        "requests": n1 - n0,
        "cpu_seconds": cpu1 - cpu0,
        "seconds": t1 - t0,
        "failed": state["failed"],
    }


# -- report -------------------------------------------------------------------------------------


def measure(duration: float, connections: int, repeat: int) -> dict[str, Any]:
    runners: dict[str, Callable[[str, int, float, Path], dict[str, Any]]] = {
        "wrk -t1": run_wrk,
        "scalewise": lambda u, n, d, _w: _scalewise_row(u, n, d),
        "locust FastHttpUser": run_locust,
    }
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in runners}
    result: dict[str, Any] = {
        "machine": c.machine(),
        "duration_s": duration,
        "connections": connections,
        "repeat": repeat,
    }
    with tempfile.TemporaryDirectory(prefix="scalewise-loadgen-") as tmp:
        nginx, url = start_nginx(Path(tmp))
        try:
            for i in range(repeat):  # interleaved, so drifting load hits every tool alike
                for name, runner in runners.items():
                    workdir = Path(tmp) / f"{name.split()[0]}-{i}"
                    workdir.mkdir()
                    rows[name].append(runner(url, connections, duration, workdir))
        finally:
            c.stop_pid(nginx)
    result["tools"] = {name: _median_row(runs) for name, runs in rows.items()}
    result["runs"] = rows
    rps = {name: tool["rps"] for name, tool in result["tools"].items()}
    result["ratios"] = {
        "scalewise_vs_locust": c.ratio(rps["scalewise"], rps["locust FastHttpUser"]),
        "scalewise_vs_wrk": c.ratio(rps["scalewise"], rps["wrk -t1"]),
    }
    return result


def _median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        key: c.median([r[key] for r in runs if r[key] is not None] or [0.0])
        for key in ("requests", "rps", "cpu_us", "errors")
    }


def render(result: dict[str, Any]) -> str:
    rows = [
        (name, c.fmt(t["rps"], 0), c.fmt(t["cpu_us"], 1), int(t["errors"]))
        for name, t in result["tools"].items()
    ]
    ratios, sw = result["ratios"], result["tools"]["scalewise"]
    return "\n".join(
        [
            c.machine_line(result["machine"]),
            f"nginx 1 KB static file on CPU {SERVER_CPU}; generators on CPU {CLIENT_CPU}, "
            f"{result['connections']} connections, {result['duration_s']} s, "
            f"median of {result['repeat']}",
            "",
            c.table(["generator", "req/s", "CPU µs/request", "errors"], rows),
            "",
            c.bar_line(
                "scalewise ≥ 3× Locust FastHttpUser",
                _ge(ratios["scalewise_vs_locust"], 3.0),
                f"{c.fmt(ratios['scalewise_vs_locust'])}×",
            ),
            c.bar_line(
                "scalewise ≥ 50 % of wrk -t1",
                _ge(ratios["scalewise_vs_wrk"], 0.5),
                f"{c.fmt((ratios['scalewise_vs_wrk'] or 0) * 100, 0)} %",
            ),
            c.bar_line(
                "scalewise CPU ≤ 25 µs/request",
                sw["cpu_us"] <= BARS["cpu_us"],
                f"{c.fmt(sw['cpu_us'], 1)} µs",
            ),
        ]
    )


def _ge(value: float | None, bar: float) -> bool | None:
    return None if value is None else value >= bar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per tool, 5..600")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs; medians shown")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--drive", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        import uvloop

        print(json.dumps(uvloop.run(drive(args.drive, args.connections, args.duration))))
        return
    if not 5 <= args.duration <= 600 or not 1 <= args.connections <= 10_000:
        parser.error("--duration must be 5..600 s and --connections 1..10000")
    missing = [tool for tool in ("wrk", "locust") if not shutil.which(tool)]
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        missing.append("nginx")
    if missing:
        parser.error(f"needs {', '.join(missing)} (Debian: nginx, wrk; PyPI: locust)")
    c.emit(measure(args.duration, args.connections, max(1, args.repeat)), args.json, render)


if __name__ == "__main__":
    main()
