"""Hand closed interval snapshots to the history store, off the request path.

The recorder calls :meth:`SnapshotWriter.add` when an interval closes (cheap: an append to a
bounded deque); the monitor's background tick calls :meth:`flush`, which writes the batch.
Once an hour the writer also applies the store's retention (downsampling old intervals).
A store that is down or locked loses nothing until the buffer is full (a day of 10 s
intervals by default); then the oldest are dropped and counted. Errors are logged at most
once a minute and never reach the app.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque

from scalewise.metrics.windows import IntervalSnapshot
from scalewise.store.base import Retention, Store

logger = logging.getLogger("scalewise")


class SnapshotWriter:
    """Buffers snapshots and writes them to ``store`` in batches."""

    def __init__(
        self,
        store: Store,
        instance: str | None = None,
        capacity: int = 8640,
        retention: Retention | None = None,
        retention_every: float = 3600.0,
    ) -> None:
        self.store = store
        self.instance = instance or socket.gethostname()
        self.pending: deque[IntervalSnapshot] = deque(maxlen=capacity)
        self.dropped = 0
        self.written = 0
        self.failures = 0
        self._last_log = -1e9
        self.retention = retention or Retention()
        self.retention_every = retention_every
        self._last_retention = time.monotonic()  # not at start-up: workers start together

    def add(self, snapshot: IntervalSnapshot) -> None:
        if len(self.pending) == self.pending.maxlen:
            self.dropped += 1
        self.pending.append(snapshot)

    def flush(self) -> int:
        """Write everything pending; returns how many were written (0 on failure)."""
        if not self.pending:
            return 0
        batch = list(self.pending)
        try:
            self.store.write_snapshots(self.instance, batch)
        except Exception as exc:
            self.failures += 1
            now = time.monotonic()
            if now - self._last_log >= 60.0:
                self._last_log = now
                logger.warning(
                    "scalewise: could not write %d interval snapshot(s) to the "
                    "store, will retry: %s",
                    len(batch),
                    exc,
                )
            return 0
        for _ in batch:
            self.pending.popleft()
        self.written += len(batch)
        self._maybe_apply_retention()
        return len(batch)

    def _maybe_apply_retention(self) -> None:
        """Downsample and expire old rows once an hour (idempotent, so several writers may)."""
        now = time.monotonic()
        if now - self._last_retention < self.retention_every:
            return
        self._last_retention = now
        try:
            self.store.apply_retention(time.time(), self.retention)
        except Exception as exc:
            logger.warning("scalewise: store retention failed, will retry in an hour: %s", exc)
