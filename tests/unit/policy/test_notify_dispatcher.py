"""Dispatcher timing with explicit ``now`` values, retries and records; no sockets."""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace

import pytest

from scalewise.clock import ManualClock
from scalewise.errors import NotifyError
from scalewise.policy.model import Notifications, Receiver
from scalewise.policy.notify import Alert, Delivery, Dispatcher, NotifyRejected
from scalewise.store.base import NotificationRecord

HOOK = Receiver("hook", "webhook", url="http://127.0.0.1:9/hook")
MAIL = Receiver("mail", "email", to=("ops@example.com",))
CONFIG = Notifications(
    receivers=(HOOK,),
    group_by=("alertname",),
    group_wait=30.0,
    group_interval=300.0,
    repeat_interval=3600.0,
    retries=3,
    backoff=0.0,
)


def alert(name: str, at: float = 0.0, instance: str = "i1", ended: float | None = None) -> Alert:
    return Alert({"alertname": name, "instance": instance}, {"summary": name}, at, ended)


def unsent(notifications: Notifications = CONFIG, **kw: object) -> Dispatcher:
    """A dispatcher whose sends must not happen (the pure planning tests)."""

    def send(delivery: Delivery) -> None:
        raise AssertionError("plan() must not send")

    return Dispatcher(notifications, send=send, **kw)  # type: ignore[arg-type]


def names(deliveries: list[Delivery]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        (d.receiver.name, d.status, tuple(sorted(a.fingerprint for a in d.notification.alerts)))
        for d in deliveries
    ]


def test_new_group_waits_group_wait() -> None:
    d = unsent()
    d.ingest([alert("HighLatency", at=0.0)], now=0.0)
    assert d.next_due() == 30.0
    assert d.plan(29.9) == []
    (delivery,) = d.plan(30.0)
    assert delivery.receiver == HOOK
    assert delivery.group_key == '{}:{alertname="HighLatency"}'
    assert delivery.status == "firing"
    assert delivery.notification.group_labels == {"alertname": "HighLatency"}
    assert d.next_due() == 330.0


def test_old_alert_is_sent_at_once_like_alertmanager_after_restart() -> None:
    d = unsent()
    d.ingest([alert("HighLatency", at=-1000.0)], now=0.0)
    assert len(d.plan(0.0)) == 1


def test_changes_wait_for_group_interval() -> None:
    d = unsent()
    d.ingest([alert("HighLatency", instance="a")], now=0.0)
    assert len(d.plan(30.0)) == 1
    d.ingest([alert("HighLatency", at=100.0, instance="b")], now=100.0)
    assert d.plan(100.0) == []
    assert d.plan(329.0) == []
    (delivery,) = d.plan(330.0)
    assert len(delivery.notification.alerts) == 2


def test_unchanged_group_repeats_every_repeat_interval() -> None:
    d = unsent()
    d.ingest([alert("HighLatency")], now=0.0)
    sent_at = [t for t in range(30, 8000, 300) if d.plan(float(t))]
    # ticks every group_interval; a repeat at the first tick >= 1 h after the last send
    assert sent_at == [30, 3630, 7230]


def test_resolved_alert_is_sent_once_then_the_group_is_gone() -> None:
    d = unsent()
    d.ingest([alert("HighLatency")], now=0.0)
    d.plan(30.0)
    d.ingest([alert("HighLatency", ended=200.0)], now=200.0)
    (delivery,) = d.plan(330.0)
    assert delivery.status == "resolved"
    assert delivery.notification.alerts[0].to_dict()["endsAt"] != "0001-01-01T00:00:00Z"
    assert d.next_due() is None
    assert d.plan(630.0) == []
    # the same resolved alert submitted again (every evaluation does) is not news
    d.ingest([alert("HighLatency", ended=200.0)], now=700.0)
    assert d.next_due() is None


def test_alert_that_fires_and_resolves_inside_group_wait_is_not_sent() -> None:
    d = unsent()
    d.ingest([alert("Blip")], now=0.0)
    d.ingest([alert("Blip", ended=10.0)], now=10.0)
    assert d.plan(30.0) == []
    assert d.next_due() is None


def test_one_of_two_alerts_resolving_is_sent_at_the_next_tick() -> None:
    d = unsent()
    d.ingest([alert("A", instance="1"), alert("A", instance="2")], now=0.0)
    d.plan(30.0)
    d.ingest([alert("A", instance="2", ended=50.0)], now=50.0)
    (delivery,) = d.plan(330.0)
    assert delivery.status == "firing"
    assert {a.status for a in delivery.notification.alerts} == {"firing", "resolved"}
    assert d.plan(630.0) == []  # the firing one alone is unchanged until the repeat


def test_grouping_by_labels() -> None:
    d = unsent()
    d.ingest([alert("A", instance="1"), alert("B", instance="1")], now=0.0)
    assert len(d.plan(30.0)) == 2
    by_instance = Notifications(receivers=(HOOK,), group_by=("instance",), group_wait=30.0)
    d = unsent(by_instance)
    d.ingest([alert("A", instance="1"), alert("B", instance="1")], now=0.0)
    (delivery,) = d.plan(30.0)
    assert delivery.group_key == '{}:{instance="1"}'
    assert len(delivery.notification.alerts) == 2
    d = unsent(Notifications(receivers=(HOOK,), group_by=("...",)))
    d.ingest([alert("A", instance="1"), alert("A", instance="2")], now=0.0)
    assert len(d.plan(30.0)) == 2


def test_each_receiver_gets_each_group() -> None:
    d = unsent(Notifications(receivers=(HOOK, MAIL), group_wait=0.0))
    d.ingest([alert("A")], now=0.0)
    assert sorted(x.receiver.name for x in d.plan(0.0)) == ["hook", "mail"]


def test_failed_delivery_is_planned_again_at_the_next_tick() -> None:
    d = unsent()
    d.ingest([alert("A")], now=0.0)
    (first,) = d.plan(30.0)
    d.mark_failed(first)
    (again,) = d.plan(330.0)
    assert names([again]) == names([first])
    # a failed resolution brings the resolved alert back for the next try
    d.ingest([alert("A", ended=400.0)], now=400.0)
    (resolution,) = d.plan(630.0)
    assert d.next_due() is None
    d.mark_failed(resolution)
    (retry,) = d.plan(930.0)
    assert retry.status == "resolved"
    assert d.next_due() is None


def recording(sends: list[Delivery], failures: list[Exception]) -> Dispatcher:
    def send(delivery: Delivery) -> None:
        sends.append(delivery)
        if failures:
            raise failures.pop(0)

    records: list[NotificationRecord] = []
    store = SimpleNamespace(record_notification=records.append, records=records)
    return Dispatcher(CONFIG, store=store, send=send, clock=ManualClock())


def test_deliver_retries_then_records_success() -> None:
    sends: list[Delivery] = []
    d = recording(sends, [NotifyError("HTTP 500"), NotifyError("HTTP 500")])
    d.ingest([alert("A")], now=0.0)
    (delivery,) = d.plan(30.0)
    assert d.deliver(delivery) is True
    assert len(sends) == 3
    (record,) = d.store.records  # type: ignore[union-attr]
    assert record.ok
    assert record.receiver == "hook"
    assert record.group_key == '{}:{alertname="A"}'
    assert record.status == "firing"
    assert "3 attempt" in record.detail


def test_deliver_gives_up_after_retries_and_plans_again() -> None:
    sends: list[Delivery] = []
    d = recording(sends, [NotifyError("boom")] * 10)
    d.ingest([alert("A")], now=0.0)
    (delivery,) = d.plan(30.0)
    assert d.deliver(delivery) is False
    assert len(sends) == 4  # 1 + retries
    (record,) = d.store.records  # type: ignore[union-attr]
    assert not record.ok
    assert "4 attempt(s): boom" in record.detail
    assert len(d.plan(330.0)) == 1  # not logged as sent


def test_rejected_delivery_is_not_retried() -> None:
    sends: list[Delivery] = []
    d = recording(sends, [NotifyRejected("HTTP 400")])
    d.ingest([alert("A")], now=0.0)
    (delivery,) = d.plan(30.0)
    assert d.deliver(delivery) is False
    assert len(sends) == 1


def test_backoff_is_exponential_and_capped() -> None:
    d = unsent(Notifications(receivers=(HOOK,), backoff=1.5))
    assert [d._backoff(n) for n in (1, 2, 3, 4)] == [1.5, 3.0, 6.0, 12.0]
    assert d._backoff(20) == 60.0


def test_failure_warnings_are_rate_limited_per_receiver(caplog: pytest.LogCaptureFixture) -> None:
    sends: list[Delivery] = []
    d = recording(sends, [NotifyRejected("HTTP 400")] * 3)
    clock = d.clock
    assert isinstance(clock, ManualClock)
    d.ingest([alert("A")], now=0.0)
    with caplog.at_level(logging.WARNING, logger="scalewise.notify"):
        for tick in (30.0, 330.0):  # each failure is planned again at the next tick
            (delivery,) = d.plan(tick)
            d.deliver(delivery)
            clock.advance(20.0)
        assert len(caplog.records) == 1
        clock.advance(60.0)
        (delivery,) = d.plan(630.0)
        d.deliver(delivery)
    assert len(caplog.records) == 2
    assert "1 similar warning(s) suppressed" in caplog.records[1].getMessage()
    assert "notification to hook failed" in caplog.records[0].getMessage()


def test_store_errors_do_not_stop_delivery() -> None:
    def broken(record: NotificationRecord) -> None:
        raise OSError("disk full")

    sent: list[Delivery] = []
    d = Dispatcher(CONFIG, store=SimpleNamespace(record_notification=broken), send=sent.append)
    d.ingest([alert("A")], now=0.0)
    assert d.run_once(30.0)
    assert len(sent) == 1
    assert d.history[-1].ok


def test_submit_returns_at_once_and_the_queue_drops_oldest() -> None:
    entered, release = threading.Event(), threading.Event()
    sent: list[Delivery] = []

    def send(delivery: Delivery) -> None:
        sent.append(delivery)
        entered.set()
        release.wait(5.0)

    config = Notifications(receivers=(HOOK,), group_wait=0.0, group_interval=60.0, backoff=0.0)
    d = Dispatcher(config, send=send, queue_size=2)
    try:
        d.submit([alert("First", at=time.time())])
        assert entered.wait(5.0)  # the worker is now stuck in a send
        started = time.monotonic()
        for name in ("B", "C", "D"):
            d.submit([alert(name, at=time.time())])
        assert time.monotonic() - started < 0.5
        assert d.dropped == 1
        release.set()
        assert d.flush(5.0)
    finally:
        release.set()
        d.close()
    assert sorted(x.notification.alerts[0].name for x in sent) == ["C", "D", "First"]
