"""One scenario over several processes or machines, results merged as if one process ran it.

``--processes N`` starts N copies of the same command, each with ``--segment i/N`` (k6's
execution segments: VUs and iteration counts split evenly, open-model arrivals striped), a shared
start time, and a result file of its own; this process shows their combined progress from their
JSONL streams, then merges the files. Across machines the same happens by hand:
``--segment i/n --out part-i.json`` on each, then ``scalewise loadtest merge part-*.json``.
Histograms merge exactly, so the merged p99 is the p99 of all requests, not an average of p99s.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from scalewise.errors import LoadTestError
from scalewise.loadtest.launch import LoadTestOptions, Outcome, judge
from scalewise.loadtest.results import IntervalStats, RunResult, merge
from scalewise.loadtest.scenario import LoadPlan

#: Seconds the children get to import and connect before the common start.
START_DELAY: Final = 2.0
#: Flags of the parent that a child must not repeat (it writes its own files, quietly).
_PARENT_ONLY: Final = {"--processes", "--report", "--out", "--jsonl", "--segment", "--start-at"}
_PARENT_FLAGS: Final = {"--json", "--quiet"}


def child_argv(argv: Sequence[str]) -> list[str]:
    """The parent's arguments without the options only the parent acts on."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _PARENT_ONLY:
            skip = "=" not in arg
            continue
        if name in _PARENT_FLAGS:
            continue
        out.append(arg)
    if out and out[0] == "loadtest":
        out = out[1:]
    if out and out[0] == "run":
        out = out[1:]
    return out


def run_processes(
    plan: LoadPlan, opts: LoadTestOptions, count: int, argv: Sequence[str], progress: Any
) -> Outcome:
    """Run ``count`` segment processes of this command and merge their results."""
    with tempfile.TemporaryDirectory(prefix="scalewise-lt-") as tmp:
        start_at = time.time() + START_DELAY
        base = [sys.executable, "-c", "from scalewise.cli import main; main()", "loadtest", "run"]
        children = []
        for i in range(count):
            extra = [
                "--segment", f"{i + 1}/{count}", "--start-at", repr(start_at),
                "--out", f"{tmp}/part-{i}.json", "--jsonl", f"{tmp}/part-{i}.jsonl", "--quiet",
            ]  # fmt: skip
            children.append(
                subprocess.Popen(
                    [*base, *child_argv(argv), *extra],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            )
        try:
            _follow(children, Path(tmp), count, progress, plan.duration + START_DELAY + 30)
        finally:
            for child in children:
                if child.poll() is None:
                    child.terminate()
            errors = [c.communicate()[1].decode(errors="replace").strip() for c in children]
        files = [Path(tmp) / f"part-{i}.json" for i in range(count)]
        missing = [i for i, f in enumerate(files) if not f.is_file()]
        if missing:
            detail = next((e for e in errors if e), "no error output")
            raise LoadTestError(f"{len(missing)} of {count} load processes failed: {detail}")
        return merge_files(files, thresholds=plan.thresholds, source=plan.source)


def _follow(
    children: list[subprocess.Popen[bytes]], tmp: Path, count: int, progress: Any, limit: float
) -> None:
    """Show combined progress from the children's JSONL files until all have exited."""
    deadline = time.monotonic() + limit
    with progress if progress is not None else contextlib.nullcontext():
        while any(c.poll() is None for c in children):
            if time.monotonic() > deadline:
                raise LoadTestError("load processes did not finish in time; stopped them")
            time.sleep(0.5)
            latest = [_last_interval(tmp / f"part-{i}.jsonl") for i in range(count)]
            ready = [iv for iv in latest if iv is not None]
            if progress is not None and len(ready) == count:
                iv = ready[0]
                for other in ready[1:]:
                    iv = iv.combine(other, concurrent=True)
                p95 = iv.trend("http_req_duration").quantile(0.95) if iv.requests else 0.0
                errors = iv.failed / iv.requests if iv.requests else 0.0
                progress.show(progress.line(iv.end, iv.rps, iv.vus, p95, errors, f"  ×{count}"))


def _last_interval(path: Path) -> IntervalStats | None:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 256_000))  # the tail is enough
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return IntervalStats.from_dict(json.loads(line))
        except (ValueError, KeyError):
            continue
    return None


def merge_files(
    files: Iterable[Path], *, thresholds: Any = None, source: str | None = None
) -> Outcome:
    """Merge saved results (segments of one scenario) and judge the thresholds they carry."""
    results = []
    for file in files:
        try:
            results.append(RunResult.from_dict(json.loads(Path(file).read_text())))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LoadTestError(f"{file}: not a scalewise load-test result ({exc})") from None
    merged = merge(results)
    spec = thresholds if thresholds is not None else merged.meta.get("thresholds") or {}
    return judge(merged, spec, source or str(merged.meta.get("source", "(merged)")))
