"""Evaluate the policy inside the app: a background thread in one worker.

With several workers sharing a directory (see ``scalewise.metrics.shared``), the worker that
holds an exclusive lock on ``policy.lock`` evaluates; if it dies, the lock is released and
another worker takes over within a second. The others show the leader's status, which it
publishes with its worker state.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

from scalewise.metrics.windows import IntervalSnapshot
from scalewise.policy.history import StoreValues
from scalewise.policy.model import Policy, Rule
from scalewise.policy.runner import PolicyRunner, SnapshotValues
from scalewise.store.base import Store

logger = logging.getLogger("scalewise")


class _LocalValues:
    """Values from this worker's own closed intervals, handed over by the recorder thread."""

    def __init__(self, policy: Policy, interval: float) -> None:
        self.inbox: deque[IntervalSnapshot] = deque(maxlen=100_000)
        self.values = SnapshotValues(policy, interval)

    def refresh(self, now: float) -> None:
        batch = []
        while self.inbox:
            batch.append(self.inbox.popleft())
        self.values.add(batch)

    def value(self, rule: Rule, now: float) -> float | None:
        return self.values.value(rule, now)


class InAppPolicy:
    """Runs :class:`PolicyRunner` on a daemon thread while this worker is the leader."""

    def __init__(
        self,
        policy: Policy,
        interval: float,
        store: Store | None = None,
        lock_dir: Path | None = None,
        instance: str = "",
    ) -> None:
        self.policy = policy
        self.local = None if store is not None else _LocalValues(policy, interval)
        source: Any = StoreValues(policy, store, interval) if store is not None else self.local
        self.source = source
        self.store, self.instance = store, instance
        # Built on becoming leader, so rule states are restored from the store then (a worker
        # taking over from a dead leader carries on from the leader's last states).
        self.runner: PolicyRunner | None = None
        self.lock_path = lock_dir / "policy.lock" if lock_dir is not None else None
        self._lock_file: IO[str] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.leader = False

    def on_snapshot(self, snapshot: IntervalSnapshot) -> None:
        if self.local is not None:
            self.local.inbox.append(snapshot)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="scalewise-policy", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.runner is not None:
            self.runner.close()

    def _run(self) -> None:
        last_error = -1e9
        while not self._stop.wait(1.0):
            try:
                if self._lead():
                    now = time.time()
                    self.source.refresh(now)
                    if self.runner is None:
                        self.runner = PolicyRunner(
                            self.policy, self.source, self.store, instance=self.instance
                        )
                    if self.runner.due(now):
                        self.runner.run_once(now)
            except Exception:
                if time.monotonic() - last_error >= 60:
                    last_error = time.monotonic()
                    logger.exception("scalewise: policy evaluation failed (app unaffected)")

    def _lead(self) -> bool:
        if self.leader or self.lock_path is None:
            self.leader = True
            return True
        handle = self.lock_path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file, self.leader = handle, True  # held until this process exits
        return True

    def document(self) -> dict[str, Any] | None:
        """The policy status (None until this worker has evaluated as leader)."""
        if not self.leader or self.runner is None or self.runner.status.evaluated_at is None:
            return None
        return self.runner.status.to_dict(self.policy)

    def after_fork(self) -> None:
        with contextlib.suppress(OSError):
            if self._lock_file is not None:
                self._lock_file.close()
        self._lock_file, self.leader, self._thread, self.runner = None, False, None, None
        self._stop = threading.Event()
