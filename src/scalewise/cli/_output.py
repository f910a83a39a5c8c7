"""The only place the CLI prints: tables and progress on stderr, results on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from scalewise.units import format_duration, format_size

err = Console(stderr=True)
out = Console()


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def seconds(value: float | None) -> str:
    return "—" if value is None else format_duration(value)


def scaling_tables(doc: dict[str, Any]) -> None:
    """Render a ``/health/scaling`` document as three tables."""
    windows = Table(title="Service (all workers)", title_justify="left")
    for column in (
        "window",
        "req",
        "rps",
        "err",
        "p50",
        "p95",
        "p99",
        "conc pk/avg",
        "busy",
        "queue p95",
    ):
        windows.add_column(column, justify="right", no_wrap=True)
    for name, w in doc["windows"].items():
        lat, queue, conc = w["latency"], w["queue_time"], w["concurrency"]
        windows.add_row(
            name,
            str(w["requests"]),
            f"{w['rps']:.1f}",
            f"{100 * w['error_rate']:.1f}%",
            seconds(lat["p50"]),
            seconds(lat["p95"]),
            seconds(lat["p99"]),
            f"{conc['peak']}/{conc['avg']:.1f}",
            f"{100 * w['busy_ratio']:.0f}%",
            seconds(queue["p95"]) if queue else "—",
        )
    out.print(windows)
    routes = Table(
        title=f"Routes (last {doc['routes']['window']}, by time spent)", title_justify="left"
    )
    for column in ("route", "req", "rps", "err", "p50", "p95", "p99", "time"):
        routes.add_column(
            column, justify="right" if column != "route" else "left", no_wrap=column != "route"
        )
    for r in doc["routes"]["top"]:
        lat = r["latency"]
        routes.add_row(
            f"{r['method']} {r['route']}",
            str(r["requests"]),
            f"{r['rps']:.1f}",
            f"{100 * r['error_rate']:.1f}%",
            seconds(lat["p50"]),
            seconds(lat["p95"]),
            seconds(lat["p99"]),
            f"{100 * r['time_share']:.0f}%",
        )
    out.print(routes)
    p, inst = doc["process"], doc["instance"]
    rss = "—" if p["rss_bytes"] is None else format_size(p["rss_bytes"])
    cpu = "—" if p["cpu_percent"] is None else f"{p['cpu_percent']:.0f}%"
    mem_pct = p["memory_percent_of_limit"]
    out.print(
        f"[bold]Process[/]: {doc['workers']['count']} worker(s), CPU {cpu}, RSS {rss} "
        f"({'—' if mem_pct is None else f'{mem_pct:.1f}%'} of "
        f"{format_size(p['memory_limit_bytes'])}, {p['memory_limit_source']}), "
        f"open fds {p['open_fds'] if p['open_fds'] is not None else '—'}, "
        f"event-loop lag {seconds(p['event_loop_lag_seconds'])}"
    )
    out.print(
        f"[bold]Instance profile[/]: {inst['name']} — {inst['reason']}; suggested "
        f"max_concurrent={inst['max_concurrent']}, db_pool_size={inst['db_pool_size']}, "
        f"cache_entries={inst['cache_entries']}"
    )


def policy_table(doc: dict[str, Any]) -> None:
    """Render the policy part of a status document: rules, states, recommendation."""
    from datetime import UTC, datetime  # noqa: PLC0415

    when = doc.get("evaluated_at")
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if when else "—"
    rules = Table(
        title=f"Policy {doc.get('preset') or ''} (evaluated {stamp})", title_justify="left"
    )
    for column in ("rule", "condition", "for", "value", "state", "action"):
        rules.add_column(column, no_wrap=column != "rule")
    colours = {"firing": "red", "pending": "yellow", "inactive": "green"}
    for r in doc["rules"]:
        state = r["state"]
        rules.add_row(
            f"{r['name']} ({r['metric']})",
            r["condition"],
            format_duration(r["for_seconds"]) if r["for_seconds"] else "0s",
            r["value_text"],
            f"[{colours.get(state, 'white')}]{state}[/]",
            r["action"],
        )
    out.print(rules)
    rec = doc.get("recommendation")
    if not rec:
        return
    cost = ""
    if rec.get("cost_before") is not None and rec.get("cost_after") is not None:
        cost = f" (${rec['cost_before']:.0f}/month → ${rec['cost_after']:.0f}/month)"
    target = f"{rec['target_plan'] or '—'} × {rec['target_instances']}"
    out.print(f"[bold]Recommendation[/]: {rec['action']} ({rec['kind']}) → {target}{cost}")
    for reason in rec.get("reasons", []):
        out.print(f"  • {reason}")
    if rec.get("missing"):
        out.print(
            f"  [yellow]no data for[/]: {', '.join(rec['missing'])} "
            "(no scale-down is decided on missing data)"
        )


class LoadProgress:
    """Live load-test progress on stderr: a bar with rate, VUs, p95, errors and time left.

    On a terminal it redraws in place; otherwise (CI logs) it prints one line every 10 s.
    """

    def __init__(self, plan: Any, every: int = 10) -> None:
        from rich.live import Live  # noqa: PLC0415 - only long commands need it

        self.planned = max((ex.start_time + ex.duration for ex in plan.executors), default=0.0)
        self.every = every
        self.count = 0
        live = Live(console=err, refresh_per_second=4, transient=True)
        self.live = live if err.is_terminal else None

    def __enter__(self) -> LoadProgress:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def line(
        self, elapsed: float, rps: float, vus: int, p95: float, errors: float, extra: str = ""
    ) -> str:
        share = min(1.0, elapsed / self.planned) if self.planned else 1.0
        bar = "█" * int(share * 20) + "·" * (20 - int(share * 20))
        left = max(0.0, self.planned - elapsed)
        return (
            f"{bar} {format_duration(elapsed)} / {format_duration(self.planned)}"
            f"  {rps:8.1f} req/s  {vus:5d} VUs  p95 {p95 * 1000:8.1f} ms"
            f"  errors {errors:6.2%}  left {format_duration(left)}{extra}"
        )

    def update(self, progress: Any) -> None:
        iv = progress.interval
        p95 = iv.trend("http_req_duration").quantile(0.95) if iv.requests else 0.0
        errors = iv.failed / iv.requests if iv.requests else 0.0
        warn = "  ⚠ generator busy" if progress.cpu >= 0.9 or progress.loop_lag >= 0.05 else ""
        self.show(self.line(progress.elapsed, iv.rps, progress.vus, p95, errors, warn))

    def show(self, text: str) -> None:
        self.count += 1
        if self.live is not None:
            self.live.update(text)
        elif self.count % self.every == 0:
            err.print(text, highlight=False)
