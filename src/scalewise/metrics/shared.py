"""Several workers, one view: each worker publishes its state to a file; readers merge them.

Under ``gunicorn -w N`` or ``uvicorn --workers N`` a request for ``/metrics`` reaches one
worker. prometheus_client's answer (multiprocess mode) memory-maps every metric value, drops
custom collectors and gauges' meaning, and needs its directory wiped between runs. scalewise
keeps recording in plain process memory and lets a background thread write a compact JSON
state (cumulative series, the interval ring, gauges) every ``flush_interval`` into
``<dir>/worker-<pid>.json`` with an atomic rename. The worker that answers merges its live
state with its siblings' files: counters and histograms add, windows combine slot by slot.

``"auto"`` picks ``$TMPDIR/scalewise-<master pid>`` when this process is a worker of a
process manager (a multiprocessing child, as uvicorn's workers are, or a gunicorn worker),
so nothing needs wiping: a new master gets a new directory. Files of dead workers stay: their
counters keep counting in the sum (Prometheus counters must not go backwards), while their
in-flight gauge and process stats are dropped.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "worker-"


def resolve_directory(option: str | None) -> Path | None:
    """The shared directory for ``option`` (``"auto"``, a path, or ``None`` for none)."""
    if option is None:
        return None
    if option != "auto":
        return Path(option)
    is_worker = multiprocessing.parent_process() is not None or _is_gunicorn_worker()
    if not is_worker:
        return None
    return Path(tempfile.gettempdir()) / f"scalewise-{os.getppid()}"


def _is_gunicorn_worker() -> bool:
    """True in a process forked by a gunicorn master (not the master, not a test run)."""
    if "gunicorn" not in sys.modules:
        return False
    argv0 = sys.argv[0] if sys.argv else ""
    launched_by_gunicorn = os.path.basename(argv0) == "gunicorn" or argv0.endswith(
        os.path.join("gunicorn", "__main__.py")
    )
    return launched_by_gunicorn and os.getppid() != 1


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class PeerState:
    """What one sibling worker last published."""

    worker: int
    alive: bool
    data: Mapping[str, Any]


class WorkerFiles:
    """One worker's handle on the shared directory."""

    def __init__(self, directory: Path, worker: int | None = None) -> None:
        self.directory = directory
        self.worker = os.getpid() if worker is None else worker
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.directory / f"{PREFIX}{self.worker}.json"

    def publish(self, state: Mapping[str, Any]) -> None:
        """Atomically replace this worker's file."""
        tmp = self.path.with_suffix(f".tmp{time.monotonic_ns()}")
        tmp.write_text(json.dumps(state, separators=(",", ":")))
        os.replace(tmp, self.path)

    def peers(self) -> Iterator[PeerState]:
        """Every other worker's last state; unreadable or half-written files are skipped."""
        for path in self.directory.glob(f"{PREFIX}*.json"):
            if path == self.path:
                continue
            try:
                worker = int(path.stem[len(PREFIX) :])
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            yield PeerState(worker=worker, alive=pid_alive(worker), data=data)

    def remove(self) -> None:
        """Delete this worker's file (tests, one-off processes); workers keep theirs."""
        with contextlib.suppress(OSError):
            self.path.unlink()
