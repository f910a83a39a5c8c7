"""The monitor: one worker's recorder plus the background work around it.

Background work (never on the request path): sampling CPU/RSS/fds once a second, probing
event-loop lag, closing idle intervals, and publishing this worker's state for its siblings.
ASGI apps run it as an asyncio task started on the first request or at lifespan startup;
WSGI apps run it on a daemon thread. Reads (``/metrics``, ``/health/scaling``) merge this
worker's live state with its siblings' published files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scalewise.clock import Clock
from scalewise.metrics.gauges import GaugeRegistry
from scalewise.metrics.persist import SnapshotWriter
from scalewise.metrics.process import (
    ContainerLimits,
    InstanceProfile,
    LoopLagMonitor,
    ProcessSampler,
    instance_profile,
    read_container_limits,
)
from scalewise.metrics.recorder import Recorder
from scalewise.metrics.series import SeriesTable
from scalewise.metrics.shared import WorkerFiles, resolve_directory
from scalewise.metrics.windows import IntervalSnapshot
from scalewise.options import MetricsOptions
from scalewise.store.base import Retention, Store

logger = logging.getLogger("scalewise")
SAMPLE_EVERY = 1.0


@dataclass(slots=True)
class FleetView:
    """Merged figures of every worker this process can see."""

    series: SeriesTable
    snapshots: list[IntervalSnapshot]
    gauges: list[dict[str, float]]
    inflight: int
    workers: list[int]
    started: float
    now: float
    dead_workers: list[int] = field(default_factory=list)
    #: CPU seconds of exited workers, so process_cpu_seconds_total never goes backwards.
    exited_cpu_seconds: float = 0.0
    #: The policy status of whichever worker evaluates the policy (None without a policy).
    policy: dict[str, Any] | None = None


class Monitor:
    """Owns a :class:`Recorder` and keeps it fed with process stats and peers' figures."""

    def __init__(
        self,
        options: MetricsOptions | None = None,
        clock: Clock | None = None,
        limits: ContainerLimits | None = None,
    ) -> None:
        self.options = options or MetricsOptions()
        self.recorder = Recorder(self.options, clock=clock)
        self.limits = limits or read_container_limits()
        self.profile: InstanceProfile = instance_profile(self.limits)
        self.sampler = ProcessSampler(limits=self.limits)
        self.lag = LoopLagMonitor(self.options.loop_lag_interval)
        self.lock = threading.Lock()
        self.ready = True
        self.ready_checks: list[Callable[[], bool]] = []
        self.files: WorkerFiles | None = None
        self.writer: SnapshotWriter | None = None
        self.policy: Any = None  # scalewise.policy.inapp.InAppPolicy, when configured
        self.user_gauges = GaugeRegistry()
        self._open_files()
        # gunicorn --preload builds the app (and this monitor) in the master, then forks:
        # each child must start its own figures under its own pid.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (m := ref()) and m._after_fork())
        self.task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_sample = 0.0
        self._last_flush = 0.0
        self._last_error = 0.0

    def _open_files(self) -> None:
        directory = resolve_directory(self.options.multiprocess_dir)
        self.files = WorkerFiles(directory, self.recorder.worker) if directory else None

    def _after_fork(self) -> None:
        self.recorder.reset(os.getpid())  # in place: the middleware holds this object
        if self.writer is not None:
            self.writer.pending.clear()
            self.recorder.snapshot_listeners.append(self.writer.add)
        if self.policy is not None:
            self.policy.after_fork()
            self.recorder.snapshot_listeners.append(self.policy.on_snapshot)
        self.task, self._thread = None, None
        self._stop = threading.Event()
        self.sampler = ProcessSampler(limits=self.limits)
        self._open_files()

    # -- background work -----------------------------------------------------------------

    def ensure_task(self) -> None:
        """Start the asyncio background task once, on the running loop."""
        if self.policy is not None:
            self.policy.start()
        if self.task is None or self.task.done():
            self.lag.start()
            self.task = asyncio.get_running_loop().create_task(self._run_async())
            # The middleware tests ``task is None`` on every request: cheaper than done().
            self.task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        if self.task is task:
            self.task = None

    def ensure_thread(self) -> None:
        """Start the background thread once (WSGI servers have no loop to borrow)."""
        if self.policy is not None:
            self.policy.start()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run_thread, name="scalewise-monitor", daemon=True
            )
            self._thread.start()

    async def _run_async(self) -> None:
        while True:
            await asyncio.sleep(min(SAMPLE_EVERY, self.options.flush_interval))
            work = self.step(lag=self.lag.max_since_reset())
            if work is not None:  # file and database writes stay off the event loop
                await asyncio.to_thread(self._io, work)

    def _run_thread(self) -> None:
        while not self._stop.wait(min(SAMPLE_EVERY, self.options.flush_interval)):
            with self.lock:  # only the in-memory part holds the lock requests need
                work = self.step(lag=None)
            if work is not None:
                self._io(work)

    def stop(self) -> None:
        self._stop.set()
        if self.task is not None:
            self.task.cancel()
        self.lag.stop()

    def step(self, lag: float | None) -> dict[str, Any] | None:
        """The in-memory part of a background tick; returns the I/O it leaves to do.

        Errors are logged at most once a minute and never raised.
        """
        try:
            now = time.monotonic()
            if now - self._last_sample >= SAMPLE_EVERY:
                self._last_sample = now
                self.recorder.gauges.update(self.sample_gauges(lag))
                self.recorder.gauges.update(self.user_gauges.collect())
            self.recorder.tick()
            if self.files is not None and now - self._last_flush >= self.options.flush_interval:
                self._last_flush = now
                return {"state": self.state()}
            if self.writer is not None and self.writer.pending:
                return {}
        except Exception:
            self.log_error("background tick failed")
        return None

    def _io(self, work: dict[str, Any]) -> None:
        try:
            if "state" in work and self.files is not None:
                self.files.publish(work["state"])
            if self.writer is not None:
                self.writer.flush()
        except Exception:
            self.log_error("background write failed")

    def attach_policy(self, policy: Any, store: Store | None = None, instance: str = "") -> Any:
        """Evaluate ``policy`` in a background thread (one worker leads; see policy.inapp)."""
        from scalewise.policy.inapp import InAppPolicy  # noqa: PLC0415 - only with a policy

        lock_dir = self.files.directory if self.files is not None else None
        self.policy = InAppPolicy(policy, self.options.interval, store, lock_dir, instance)
        self.recorder.snapshot_listeners.append(self.policy.on_snapshot)
        return self.policy

    def attach_store(
        self, store: Store, instance: str | None = None, retention: Retention | None = None
    ) -> SnapshotWriter:
        """Persist every closed interval to ``store`` (written by the background tick)."""
        self.writer = SnapshotWriter(store, instance, retention=retention)
        self.recorder.snapshot_listeners.append(self.writer.add)
        return self.writer

    def log_error(self, what: str) -> None:
        self.recorder.count("internal_errors")
        now = time.monotonic()
        if now - self._last_error >= 60.0:
            self._last_error = now
            logger.exception("scalewise: %s (app unaffected; next report in 60 s)", what)

    def sample_gauges(self, lag: float | None) -> dict[str, float]:
        stats = self.sampler.sample()
        gauges = {
            "cpu_percent": stats.cpu_percent,
            "cpu_seconds": stats.cpu_seconds,
            "rss_bytes": float(stats.rss_bytes),
            "memory_percent_of_limit": stats.memory_percent_of_limit,
            "cpu_percent_of_limit": stats.cpu_percent_of_limit,
            "inflight": float(self.recorder.inflight),
        }
        if stats.open_fds is not None:
            gauges["open_fds"] = float(stats.open_fds)
        if lag is not None:
            gauges["loop_lag_seconds"] = lag
        return gauges

    # -- state for siblings and readers ----------------------------------------------------

    def state(self) -> dict[str, Any]:
        """This worker's figures as JSON-ready data (what siblings read)."""
        rec = self.recorder
        return {
            "worker": rec.worker,
            "started": rec.started_at,
            "updated": rec.now(),
            "inflight": rec.inflight,
            "gauges": dict(rec.gauges),
            "series": rec.table.to_dict(),
            "snapshots": [s.to_dict() for s in rec.recent(self.options.history)],
            "policy": self.policy.document() if self.policy is not None else None,
        }

    def fleet(self) -> FleetView:
        """Merge this worker's live figures with every sibling's last published state."""
        rec = self.recorder
        now = rec.now()
        tables = [rec.table]
        snapshots = rec.windows.recent(self.options.history, now, rec.gauges)
        gauges = [dict(rec.gauges)]
        workers, dead, exited_cpu = [rec.worker], [], 0.0
        policy_doc = self.policy.document() if self.policy is not None else None
        inflight, started = rec.inflight, rec.started_at
        for peer in self.files.peers() if self.files is not None else ():
            with contextlib.suppress(KeyError, TypeError, ValueError):
                tables.append(SeriesTable.from_dict(peer.data["series"]))
                snapshots.extend(IntervalSnapshot.from_dict(s) for s in peer.data["snapshots"])
                started = min(started, float(peer.data["started"]))
                if peer.alive:
                    workers.append(peer.worker)
                    inflight += int(peer.data["inflight"])
                    policy_doc = policy_doc or peer.data.get("policy")
                    gauges.append({k: float(v) for k, v in peer.data["gauges"].items()})
                else:
                    dead.append(peer.worker)
                    exited_cpu += float(peer.data["gauges"].get("cpu_seconds", 0.0))
        series = SeriesTable.merged(tables) or rec.table
        return FleetView(
            series,
            snapshots,
            gauges,
            inflight,
            sorted(workers),
            started,
            now,
            sorted(dead),
            exited_cpu,
            policy_doc,
        )
