"""Rule values from the history store, read incrementally (what ``scalewise watch`` uses)."""

from __future__ import annotations

import math

from scalewise.metrics.windows import IntervalSnapshot
from scalewise.policy.model import Policy, Rule
from scalewise.policy.runner import SnapshotValues
from scalewise.store.base import Store

#: Workers write a closed interval within a second or two; read only intervals that closed
#: this long ago, so none arrives after the cursor has passed it.
SETTLE = 5.0


class StoreValues:
    """A :class:`SnapshotValues` kept up to date from ``store`` by a moving cursor."""

    def __init__(
        self, policy: Policy, store: Store, interval: float = 10.0, instance: str | None = None
    ) -> None:
        self.store = store
        self.instance = instance
        self.values = SnapshotValues(policy, interval)
        self.interval = interval
        self.cursor = -math.inf

    def refresh(self, now: float) -> int:
        """Read what closed since the last call; returns how many snapshots arrived."""
        until = math.floor((now - SETTLE) / self.interval) * self.interval - self.interval
        since = until - self.values.keep if self.cursor == -math.inf else self.cursor
        if until <= since:
            return 0
        fresh: list[IntervalSnapshot] = self.store.read_snapshots(since, until, self.instance)
        self.values.add(fresh)
        self.cursor = until
        return len(fresh)

    def value(self, rule: Rule, now: float) -> float | None:
        """The rule's value over the window ending where settled data ends (the cursor), so
        intervals still arriving do not read as idle time."""
        return self.values.value(rule, min(now, self.cursor))
