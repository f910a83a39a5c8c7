"""Grouping, timing and delivery of notifications, off the request path.

Alertmanager's semantics, simplified (one route, every receiver gets every group):

* alerts are grouped by the ``group_by`` labels (``...`` groups by all labels); the group key
  is ``{}:{<group labels>}`` as Alertmanager writes it for its root route;
* a new group is first flushed ``group_wait`` after its first alert (at once if that alert
  started longer than ``group_wait`` ago, as Alertmanager does after a restart); after each
  flush the group ticks again ``group_interval`` later, so changes are never sent sooner;
* at each tick, each receiver is notified when Alertmanager's ``DedupStage.needsUpdate``
  says so: a new firing alert, newly resolved alerts, everything resolved, or an unchanged
  firing group whose last notification is at least ``repeat_interval`` old;
* resolved alerts are sent once (``send_resolved`` is always on) and then leave the group;
  an alert that fired and resolved between two ticks is not sent at all.

:meth:`Dispatcher.plan` is the pure step: given ``now`` it says what is due and updates the
notification log as if delivery succeeds; :meth:`Dispatcher.mark_failed` undoes that for a
delivery that finally failed, so the next tick tries again. :meth:`Dispatcher.submit` hands
alerts to a background thread through a bounded queue and returns at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from scalewise.clock import Clock, SystemClock
from scalewise.errors import NotifyError
from scalewise.policy.model import Notifications, Receiver
from scalewise.policy.notify.base import (
    Alert,
    Notification,
    Notifier,
    NotifyRejected,
    group_key,
    validate_receivers,
)
from scalewise.policy.notify.email import EmailNotifier
from scalewise.policy.notify.slack import SlackNotifier
from scalewise.policy.notify.webhook import WebhookNotifier
from scalewise.store.base import NotificationRecord

logger = logging.getLogger("scalewise.notify")

MAX_BACKOFF: Final = 60.0
#: A group never ticks more often than this, whatever ``group_interval`` says (no busy loop).
MIN_INTERVAL: Final = 1.0
ALL_LABELS: Final = "..."


class NotificationSink(Protocol):
    """The one store method the dispatcher needs (any :class:`~scalewise.store.base.Store`)."""

    def record_notification(self, record: NotificationRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class _LogEntry:
    """Alertmanager's notification-log entry: what a receiver was last told about a group."""

    at: float
    firing: frozenset[str]
    resolved: frozenset[str]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification due to one receiver; ``at`` is the tick that produced it."""

    receiver: Receiver
    notification: Notification
    at: float
    previous: _LogEntry | None = field(default=None, repr=False, compare=False)
    written: _LogEntry | None = field(default=None, repr=False, compare=False)

    @property
    def group_key(self) -> str:
        return self.notification.group_key

    @property
    def status(self) -> str:
        return self.notification.status


@dataclass(slots=True)
class _Group:
    labels: dict[str, str]
    alerts: dict[str, Alert]
    next_flush: float
    flushed: bool = False


def needs_update(
    entry: _LogEntry | None,
    firing: frozenset[str],
    resolved: frozenset[str],
    now: float,
    repeat: float,
) -> bool:
    """Alertmanager's ``DedupStage.needsUpdate`` with ``send_resolved`` on."""
    if entry is None:
        return bool(firing)
    if not firing <= entry.firing:
        return True
    if not firing:
        return bool(entry.firing)
    if not resolved <= entry.resolved:
        return True
    return now - entry.at >= repeat


def notifier_for(receiver: Receiver, external_url: str = "") -> Notifier:
    """The notifier of a receiver's ``kind``, with the receiver's timeout."""
    if receiver.kind == "email":
        return EmailNotifier(
            receiver.smtp_host,
            receiver.smtp_port,
            receiver.sender,
            receiver.to,
            timeout=receiver.timeout,
            external_url=external_url,
        )
    url, timeout = receiver.url or "", receiver.timeout
    if receiver.kind == "slack":
        return SlackNotifier(url, timeout=timeout, external_url=external_url)
    return WebhookNotifier(url, timeout=timeout, external_url=external_url)


class Dispatcher:
    """Groups alerts, decides what is due, and delivers it with retries on a background thread.

    ``send`` replaces the notifiers (tests, custom transports); ``notifiers`` maps receiver
    names to ready-made notifiers; other receivers get :func:`notifier_for`.
    """

    def __init__(
        self,
        notifications: Notifications,
        store: NotificationSink | None = None,
        clock: Clock | None = None,
        send: Callable[[Delivery], None] | None = None,
        *,
        notifiers: Mapping[str, Notifier] | None = None,
        queue_size: int = 256,
        external_url: str = "",
        log_every: float = 60.0,
    ) -> None:
        validate_receivers(notifications.receivers)
        self.config = notifications
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.external_url = external_url
        self.log_every = log_every
        self.dropped = 0
        self.history: deque[NotificationRecord] = deque(maxlen=100)
        self._send = send or self._notify
        self._notifiers: dict[str, Notifier] = dict(notifiers or {})
        self._groups: dict[str, _Group] = {}
        self._log: dict[tuple[str, str], _LogEntry] = {}
        self._state = threading.Lock()  # groups and log; taken after _cond, never before
        self._cond = threading.Condition()  # inbox, busy, closed
        self._inbox: deque[tuple[tuple[Alert, ...], float]] = deque()
        self._queue_size = max(1, queue_size)
        self._busy = False
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: dict[str, tuple[float | None, int]] = {}
        self._warn_lock = threading.Lock()  # warnings and lazily created notifiers

    # -- the pure part: state in, deliveries out ------------------------------------------

    def group_labels(self, alert: Alert) -> dict[str, str]:
        if ALL_LABELS in self.config.group_by:
            return dict(alert.labels)
        return {k: alert.labels[k] for k in self.config.group_by if k in alert.labels}

    def ingest(self, alerts: Iterable[Alert], now: float) -> None:
        """Merge alerts into their groups (latest wins per fingerprint) on this thread.

        :meth:`submit` is the queued form the background thread ingests from.
        """
        with self._state:
            for alert in alerts:
                self._ingest_one(alert, now)

    def _ingest_one(self, alert: Alert, now: float) -> None:
        labels = self.group_labels(alert)
        key = group_key(labels)
        group = self._groups.get(key)
        fp = alert.fingerprint
        if alert.resolved and not self._known_firing(key, group, fp):
            return  # nobody was told it fired: nothing to resolve
        if group is None:
            group = self._groups[key] = _Group(labels, {}, now + self.config.group_wait)
        if not group.flushed and alert.starts_at + self.config.group_wait < now:
            group.next_flush = min(group.next_flush, now)
        group.alerts[fp] = alert

    def _known_firing(self, key: str, group: _Group | None, fp: str) -> bool:
        if group is not None and fp in group.alerts:
            return True
        return any(fp in self._log[(key, r.name)].firing for r in self._receivers_logged(key))

    def _receivers_logged(self, key: str) -> list[Receiver]:
        return [r for r in self.config.receivers if (key, r.name) in self._log]

    def next_due(self) -> float | None:
        """When the earliest group ticks next (``None`` when there are no groups)."""
        with self._state:
            return min((g.next_flush for g in self._groups.values()), default=None)

    def plan(self, now: float) -> list[Delivery]:
        """Deliveries due at ``now``; assumes they will succeed (see :meth:`mark_failed`)."""
        deliveries: list[Delivery] = []
        with self._state:
            for key in [k for k, g in self._groups.items() if g.next_flush <= now]:
                deliveries += self._flush(key, self._groups[key], now)
        return deliveries

    def _flush(self, key: str, group: _Group, now: float) -> list[Delivery]:
        group.next_flush = now + max(self.config.group_interval, MIN_INTERVAL)
        group.flushed = True
        alerts = tuple(group.alerts.values())
        firing = frozenset(fp for fp, a in group.alerts.items() if not a.resolved)
        resolved = frozenset(group.alerts) - firing
        out = []
        for receiver in self.config.receivers:
            previous = self._log.get((key, receiver.name))
            if not needs_update(previous, firing, resolved, now, self.config.repeat_interval):
                continue
            written = self._log[(key, receiver.name)] = _LogEntry(now, firing, resolved)
            notification = Notification(receiver.name, key, dict(group.labels), alerts)
            out.append(Delivery(receiver, notification, now, previous, written))
        for fp in resolved:
            del group.alerts[fp]
        if not group.alerts:
            del self._groups[key]
            for receiver in self._receivers_logged(key):
                if not self._log[(key, receiver.name)].firing:
                    del self._log[(key, receiver.name)]
        return out

    def mark_failed(self, delivery: Delivery) -> None:
        """Forget a failed delivery, so the group's next tick sends it again."""
        key, name = delivery.group_key, delivery.receiver.name
        with self._state:
            current = self._log.get((key, name))
            if current is not None and current is not delivery.written:
                return  # a newer tick has already planned for this receiver
            if delivery.previous is None:
                self._log.pop((key, name), None)
            else:
                self._log[(key, name)] = delivery.previous
            group = self._groups.get(key)
            if group is None:
                next_flush = delivery.at + max(self.config.group_interval, MIN_INTERVAL)
                labels = dict(delivery.notification.group_labels)
                group = self._groups[key] = _Group(labels, {}, next_flush, flushed=True)
            for alert in delivery.notification.resolved:
                group.alerts.setdefault(alert.fingerprint, alert)

    # -- delivery: retries, logging, records ----------------------------------------------

    def notifier(self, receiver: Receiver) -> Notifier:
        """The receiver's notifier, created once (deliveries run on several threads)."""
        with self._warn_lock:
            if receiver.name not in self._notifiers:
                self._notifiers[receiver.name] = notifier_for(receiver, self.external_url)
            return self._notifiers[receiver.name]

    def _notify(self, delivery: Delivery) -> None:
        self.notifier(delivery.receiver).notify(delivery.notification)

    def deliver(self, delivery: Delivery) -> bool:
        """Send with ``retries`` and exponential ``backoff``; record and log the outcome."""
        attempts, error = 0, ""
        while attempts <= max(0, self.config.retries):
            if attempts and self._stop.wait(self._backoff(attempts)):
                error += "; dispatcher closed before a retry"
                break
            attempts += 1
            try:
                self._send(delivery)
            except NotifyRejected as exc:
                error = str(exc)
                break
            except Exception as exc:  # a broken notifier must not kill the thread
                error = str(exc) if isinstance(exc, NotifyError) else repr(exc)
            else:
                self._record(delivery, True, f"delivered after {attempts} attempt(s)")
                return True
        self.mark_failed(delivery)
        detail = f"failed after {attempts} attempt(s): {error}"
        self._warn(delivery.receiver.name, f"notification to {delivery.receiver.name} {detail}")
        self._record(delivery, False, detail)
        return False

    def _backoff(self, attempt: int) -> float:
        return float(min(self.config.backoff * 2 ** (attempt - 1), MAX_BACKOFF))

    def _record(self, delivery: Delivery, ok: bool, detail: str) -> None:
        name, key, status = delivery.receiver.name, delivery.group_key, delivery.status
        record = NotificationRecord(self.clock.wall(), name, key, status, ok, detail)
        self.history.append(record)
        if self.store is None:
            return
        try:
            self.store.record_notification(record)
        except Exception as exc:  # the store being down must not stop notifications
            self._warn("store", f"could not record a notification: {exc!r}")

    def _warn(self, key: str, message: str) -> None:
        """Log at most once per ``key`` per ``log_every`` seconds, counting what was held back."""
        now = self.clock.monotonic()
        with self._warn_lock:
            last, held = self._warned.get(key, (None, 0))
            if last is not None and now - last < self.log_every:
                self._warned[key] = (last, held + 1)
                return
            self._warned[key] = (now, 0)
        suffix = f" ({held} similar warning(s) suppressed)" if held else ""
        logger.warning("%s%s", message, suffix)

    def run_once(self, now: float) -> list[Delivery]:
        """Plan and deliver what is due at ``now`` on the calling thread (CLI, tests)."""
        deliveries = self.plan(now)
        for delivery in deliveries:
            self.deliver(delivery)
        return deliveries

    # -- the background thread ------------------------------------------------------------

    def submit(self, alerts: Iterable[Alert], now: float | None = None) -> None:
        """Queue alerts for the background thread and return at once; never blocks on I/O.

        ``now`` is wall-clock seconds, like rule-state timestamps (default: the clock's).
        """
        item = (tuple(alerts), self.clock.wall() if now is None else now)
        with self._cond:
            if self._closed:
                self._warn("queue", "notification dispatcher is closed; alerts dropped")
                return
            if len(self._inbox) >= self._queue_size:
                self._inbox.popleft()
                self.dropped += 1
                self._warn("queue", f"notification queue full: {self.dropped} batch(es) dropped")
            self._inbox.append(item)
            self._start_worker()
            self._cond.notify_all()

    def _start_worker(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="scalewise-notify", daemon=True)
            self._thread.start()

    def _due_now(self) -> bool:
        due = self.next_due()
        return due is not None and due <= self.clock.wall()

    def _wait_time(self) -> float:
        due = self.next_due()
        return 60.0 if due is None else min(max(due - self.clock.wall(), 0.0), 60.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._inbox or self._closed or self._due_now()):
                    self._cond.wait(self._wait_time())
                if self._closed and not self._inbox:
                    return
                batch, self._busy = list(self._inbox), True
                self._inbox.clear()
            try:
                for alerts, at in batch:
                    self.ingest(alerts, at)
                self._deliver_all(self.plan(self.clock.wall()))
            except Exception:
                logger.exception("notification dispatcher cycle failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver_all(self, deliveries: list[Delivery]) -> None:
        """One thread per delivery, so a hanging receiver does not hold up the others."""
        if len(deliveries) <= 1:
            for delivery in deliveries:
                self.deliver(delivery)
            return
        threads = [
            threading.Thread(target=self.deliver, args=(d,), daemon=True) for d in deliveries
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until queued alerts are ingested and what is due now is sent; False on timeout.

        Groups still inside ``group_wait`` or ``group_interval`` are not forced out.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._inbox or self._busy or (self._thread is not None and self._due_now()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (interrupting backoff waits) and close the notifiers."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for notifier in self._notifiers.values():
            notifier.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
