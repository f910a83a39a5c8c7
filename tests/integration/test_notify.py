"""Notifications delivered to real receivers on 127.0.0.1: an HTTP server and an SMTP sink.

Both servers are started by the tests (stdlib ``http.server`` and a minimal SMTP sink written
here: EHLO/HELO, MAIL FROM, RCPT TO, DATA, QUIT), on ports the kernel picks, and stopped.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from scalewise.clock import ManualClock
from scalewise.policy.model import (
    Action,
    Comparison,
    Notifications,
    Receiver,
    Rule,
    RuleState,
    Status,
)
from scalewise.policy.notify import Alert, Dispatcher, alerts_from_states
from scalewise.store.base import NotificationRecord

pytestmark = pytest.mark.integration

RULE = Rule("HighLatency", "latency_p95", Comparison.GT, 2.0, Action.SCALE_UP, for_=3600.0)
HANG_LIMIT = 5.0  # the hanging handler gives up after this, so the server always stops


# -- an HTTP receiver -----------------------------------------------------------------------


def http_receiver() -> tuple[ThreadingHTTPServer, SimpleNamespace]:
    """Paths: /ok answers 200, /flaky 500 twice then 200, /hang waits for ``release``."""
    seen = SimpleNamespace(requests=[], release=threading.Event(), flaky=0, lock=threading.Lock())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with seen.lock:
                seen.requests.append((self.path, body, time.monotonic()))
                seen.flaky += self.path == "/flaky"
                status = 500 if self.path == "/flaky" and seen.flaky <= 2 else 200
            if self.path == "/hang":
                seen.release.wait(HANG_LIMIT)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client timed out and went away

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    return server, seen


@pytest.fixture
def http() -> Iterator[SimpleNamespace]:
    server, seen = http_receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    seen.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield seen
    finally:
        seen.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


# -- an SMTP sink ---------------------------------------------------------------------------


def smtp_session(conn: socket.socket, messages: list[dict[str, Any]]) -> None:
    """Speak just enough SMTP for smtplib: greet, take the envelope and DATA, say bye."""
    envelope: dict[str, Any] = {"from": "", "to": []}
    with conn, conn.makefile("rb") as lines:
        conn.sendall(b"220 sink ESMTP\r\n")
        for raw in lines:
            command = raw.decode().strip()
            verb = command.split(" ", 1)[0].upper()
            address = re.search(r"<([^>]*)>", command)
            if verb in {"EHLO", "HELO"}:
                conn.sendall(b"250 sink\r\n")
            elif verb in {"MAIL", "RCPT"} and address:
                if verb == "MAIL":
                    envelope["from"] = address.group(1)
                else:
                    envelope["to"].append(address.group(1))
                conn.sendall(b"250 OK\r\n")
            elif verb == "DATA":
                conn.sendall(b"354 end with <CRLF>.<CRLF>\r\n")
                data = []
                for line in lines:
                    if line == b".\r\n":
                        break
                    data.append(line[1:] if line.startswith(b"..") else line)
                messages.append({**envelope, "data": b"".join(data)})
                conn.sendall(b"250 queued\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"502 not implemented\r\n")


@pytest.fixture
def smtp() -> Iterator[SimpleNamespace]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    sink = SimpleNamespace(port=listener.getsockname()[1], messages=[], stop=threading.Event())

    def serve() -> None:
        while not sink.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5.0)
            smtp_session(conn, sink.messages)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield sink
    finally:
        sink.stop.set()
        thread.join(10)
        listener.close()


# -- helpers --------------------------------------------------------------------------------


def firing_alerts(at: float, value: float = 2.7) -> list[Alert]:
    state = RuleState("HighLatency", Status.FIRING, active_at=at - 3600, fired_at=at, value=value)
    return alerts_from_states([RULE], [state], service="api", instance="web-1")


def dispatcher(
    *receivers: Receiver, clock: ManualClock | None = None, **config: Any
) -> tuple[Dispatcher, list[NotificationRecord]]:
    records: list[NotificationRecord] = []
    settings = {"group_wait": 0.0, "group_interval": 60.0, "retries": 3, "backoff": 0.05}
    notifications = Notifications(receivers=receivers, **{**settings, **config})
    store = SimpleNamespace(record_notification=records.append)
    return Dispatcher(notifications, store=store, clock=clock), records


# -- tests ----------------------------------------------------------------------------------


def test_webhook_receives_alertmanager_payload_then_resolution(http: SimpleNamespace) -> None:
    clock = ManualClock()
    hook = Receiver("hook", "webhook", url=http.url + "/ok", timeout=5.0)
    d, records = dispatcher(hook, clock=clock)
    try:
        fired_at = clock.wall()
        d.submit(firing_alerts(fired_at), now=fired_at)
        assert d.flush(10.0)
        clock.advance(60.0)  # the next group tick
        resolved_at = clock.wall() - 1
        resolved = RuleState(
            "HighLatency", Status.INACTIVE, fired_at=fired_at, resolved_at=resolved_at
        )
        d.submit(alerts_from_states([RULE], [resolved], service="api", instance="web-1"))
        assert d.flush(10.0)
    finally:
        d.close()
    (path, first, _), (_, second, _) = http.requests
    assert path == "/ok"
    assert set(first) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert first["version"] == "4"
    assert first["status"] == "firing"
    assert first["receiver"] == "hook"
    assert first["groupKey"] == '{}:{alertname="HighLatency"}'
    assert first["groupLabels"] == {"alertname": "HighLatency"}
    (alert,) = first["alerts"]
    assert alert["labels"]["service"] == "api"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert "2.7s" in alert["annotations"]["summary"]
    assert second["status"] == "resolved"
    assert second["alerts"][0]["fingerprint"] == alert["fingerprint"]
    assert second["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    assert [(r.status, r.ok) for r in records] == [("firing", True), ("resolved", True)]


def test_slack_receiver_gets_one_message(http: SimpleNamespace) -> None:
    slack = Receiver("chat", "slack", url=http.url + "/slack", timeout=5.0)
    d, records = dispatcher(slack)
    try:
        d.submit(firing_alerts(time.time()))
        assert d.flush(10.0)
    finally:
        d.close()
    ((path, body, _),) = http.requests
    assert path == "/slack"
    assert body["text"].startswith("[FIRING:1] HighLatency")
    assert "latency_p95 is 2.7s (> 2s for 1h)" in body["text"]
    assert body["blocks"][0]["type"] == "header"
    assert records[0].ok


def test_flaky_receiver_is_delivered_after_retries(http: SimpleNamespace) -> None:
    hook = Receiver("flaky", "webhook", url=http.url + "/flaky", timeout=5.0)
    d, records = dispatcher(hook)
    try:
        d.submit(firing_alerts(time.time()))
        assert d.flush(10.0)
    finally:
        d.close()
    assert len(http.requests) == 3
    (record,) = records
    assert record.ok
    assert "3 attempt(s)" in record.detail
    gaps = [b[2] - a[2] for a, b in zip(http.requests, http.requests[1:], strict=False)]
    assert gaps[0] >= 0.05  # exponential backoff: 0.05 s, then 0.1 s
    assert gaps[1] >= 0.1


def test_hanging_receiver_times_out_without_blocking_the_caller(http: SimpleNamespace) -> None:
    hook = Receiver("hang", "webhook", url=http.url + "/hang", timeout=1.0)
    ok = Receiver("ok", "webhook", url=http.url + "/ok", timeout=5.0)
    d, records = dispatcher(hook, ok, retries=1)
    try:
        started = time.monotonic()
        d.submit(firing_alerts(time.time()))
        assert time.monotonic() - started < 0.5  # the hanging receiver takes 2 x 1 s
        assert d.flush(10.0)
    finally:
        d.close()
    by_receiver = {r.receiver: r for r in records}
    assert by_receiver["ok"].ok
    assert not by_receiver["hang"].ok
    assert "timed out" in by_receiver["hang"].detail
    assert "2 attempt(s)" in by_receiver["hang"].detail
    assert records[0].receiver == "ok"  # not held up by the hanging one
    assert [p for p, _, _ in http.requests].count("/hang") == 2


def test_email_reaches_smtp_server(smtp: SimpleNamespace) -> None:
    mail = Receiver(
        "mail",
        "email",
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        sender="scalewise@example.com",
        to=("ops@example.com", "oncall@example.org"),
        timeout=5.0,
    )
    d, records = dispatcher(mail)
    try:
        d.submit(firing_alerts(time.time()))
        assert d.flush(10.0)
    finally:
        d.close()
    (message,) = smtp.messages
    assert message["from"] == "scalewise@example.com"
    assert message["to"] == ["ops@example.com", "oncall@example.org"]
    parsed = email.message_from_bytes(message["data"], policy=email.policy.default)
    assert parsed["Subject"] == "[FIRING:1] HighLatency"
    assert parsed["To"] == "ops@example.com, oncall@example.org"
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "HighLatency: latency_p95 is 2.7s (> 2s for 1h)" in text
    assert "service=api" in text
    assert records[0].ok


def test_unreachable_smtp_server_is_recorded_as_failed() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    mail = Receiver("mail", "email", smtp_port=port, to=("ops@example.com",), timeout=1.0)
    d, records = dispatcher(mail, retries=1, backoff=0.01)
    try:
        d.submit(firing_alerts(time.time()))
        assert d.flush(10.0)
    finally:
        d.close()
    (record,) = records
    assert not record.ok
    assert f"smtp 127.0.0.1:{port}" in record.detail
