"""The ``Store`` protocol every history backend implements.

Synchronous on purpose: the writers are background threads (the monitor's flusher, the
policy daemon) and the CLI; an async caller wraps calls in ``asyncio.to_thread``. Driver
errors are wrapped at this edge into :class:`~scalewise.errors.StoreError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from scalewise.metrics.windows import IntervalSnapshot
from scalewise.policy.model import Recommendation, RuleState


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each resolution is kept; older data is merged into the next coarser one.

    Defaults: 10 s intervals for 2 days, 1 min for 14 days, 10 min for 400 days: a year of
    one instance is about 130 000 rows instead of 3.2 million.
    """

    raw: float = 2 * 86400.0
    minute: float = 14 * 86400.0
    ten_minutes: float = 400 * 86400.0


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """One notification attempt, as sent (or failed)."""

    at: float
    receiver: str
    group_key: str
    status: str  # "firing" | "resolved"
    ok: bool
    detail: str = ""


class Store(Protocol):
    """History of one service (several instances, told apart by ``instance``)."""

    def write_snapshots(self, instance: str, snapshots: Sequence[IntervalSnapshot]) -> None:
        """Insert or replace snapshots (idempotent per instance, worker and start)."""
        ...

    def read_snapshots(
        self, start: float, end: float, instance: str | None = None
    ) -> list[IntervalSnapshot]:
        """Snapshots with ``start <= snap.start < end``, oldest first, any resolution."""
        ...

    def save_rule_states(self, states: Sequence[RuleState]) -> None: ...

    def load_rule_states(self) -> dict[str, RuleState]: ...

    def record_decision(self, decision: Recommendation) -> None: ...

    def decisions(self, since: float) -> list[Recommendation]: ...

    def record_notification(self, record: NotificationRecord) -> None: ...

    def notifications(self, since: float) -> list[NotificationRecord]: ...

    def apply_retention(self, now: float, retention: Retention | None = None) -> dict[str, Any]:
        """Downsample and delete by age; returns counts of rows merged and removed."""
        ...

    def close(self) -> None: ...
