"""``scalewise demo``: the main job on embedded defaults, end to end on this machine."""

from __future__ import annotations

import asyncio
import time

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from scalewise.cli import _output


@click.command()
@click.option(
    "--duration",
    type=click.FloatRange(1, 600),
    default=12.0,
    show_default=True,
    help="Seconds of load.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="Simulated users, each sending its next request on reply.",
)
@click.option(
    "--max-requests",
    type=click.IntRange(1),
    default=100_000,
    show_default=True,
    help="Stop after this many requests even if time remains.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the service's /health/scaling document as JSON."
)
def demo(duration: float, concurrency: int, max_requests: int, as_json: bool) -> None:
    """Start the bundled example service on 127.0.0.1, load it, and show what scalewise saw.

    The service (Starlette under uvicorn, instrumented with ScalewiseMiddleware) has a
    CPU-bound, an I/O-bound, a cached, a flaky and an upload route. Nothing leaves loopback,
    and the load stops on its own.

    \b
    Example:
      scalewise demo --duration 10 --concurrency 8
    """
    from scalewise.demo.run import drive, fetch, free_port, start_service, stop_service  # noqa: PLC0415

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    _output.err.print(f"starting the example service on {base} …")
    proc = start_service(port)
    try:
        with Progress(
            TextColumn("[bold]load[/]"),
            BarColumn(),
            TextColumn("{task.description}"),
            TimeRemainingColumn(),
            console=_output.err,
            transient=True,
        ) as bar:
            task = bar.add_task("", total=duration)

            def progress(result: object, elapsed: float) -> None:
                sent = getattr(result, "sent", 0)
                bar.update(
                    task,
                    completed=min(elapsed, duration),
                    description=f"{sent} requests, {sent / max(elapsed, 1e-9):.0f}/s",
                )

            started = time.monotonic()
            result = asyncio.run(drive(base, duration, concurrency, max_requests, progress))
            bar.update(task, completed=duration)
        doc = fetch(base, "/health/scaling")
        scrape = fetch(base, "/metrics")
    finally:
        stop_service(proc)
    if as_json:
        _output.emit_json(doc)
        return
    _output.err.print(
        f"client: {result.sent} requests in {time.monotonic() - started:.1f}s, "
        f"{result.failed} transport errors, statuses {dict(sorted(result.statuses.items()))}"
    )
    _output.scaling_tables(doc)
    series = sum(
        1 for line in scrape.splitlines() if line.startswith("scalewise_http_requests_total{")
    )
    _output.out.print(
        f"[bold]/metrics[/]: {len(scrape.splitlines())} lines, {series} request series "
        f"(route templates, not raw paths)."
    )
