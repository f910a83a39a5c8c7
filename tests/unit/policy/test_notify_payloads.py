"""Alert model and payload shapes: Alertmanager webhook v4, Slack, e-mail; no sockets."""

from __future__ import annotations

import email
import email.policy
import json
from typing import Any

import httpx
import pytest

from scalewise.errors import ConfigError, NotifyError
from scalewise.policy.model import Action, Comparison, Receiver, Rule, RuleState, Status
from scalewise.policy.notify import (
    ZERO_TIME,
    Alert,
    Notification,
    NotifyRejected,
    WebhookNotifier,
    alerts_from_states,
    email_message,
    fingerprint,
    group_key,
    rfc3339,
    slack_payload,
    validate_receivers,
    webhook_payload,
)

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z

LATENCY = Rule(
    name="HighLatency",
    metric="latency_avg",
    op=Comparison.GT,
    threshold=8.0,
    action=Action.SCALE_UP,
    window=300.0,
    for_=3600.0,
    severity="critical",
    labels={"team": "api"},
)
ERRORS = Rule(
    name="HighErrorRate",
    metric="error_rate",
    op=Comparison.GT,
    threshold=0.05,
    action=Action.SCALE_UP,
    for_=3600.0,
)
MEMORY = Rule(
    name="HighMemory",
    metric="memory_mb",
    op=Comparison.GT,
    threshold=400.0,
    action=Action.INVESTIGATE,
    for_=1800.0,
)


def firing(rule: str, value: float, at: float = T0) -> RuleState:
    return RuleState(rule, Status.FIRING, active_at=at - 3600, fired_at=at, value=value)


def notification(*alerts: Alert, labels: dict[str, str] | None = None) -> Notification:
    group = labels if labels is not None else {"alertname": alerts[0].labels["alertname"]}
    return Notification("ops", group_key(group), group, alerts)


def make_alerts() -> list[Alert]:
    states = [firing("HighLatency", 9.2), firing("HighErrorRate", 0.072)]
    return alerts_from_states([LATENCY, ERRORS, MEMORY], states, service="api", instance="web-1")


# -- fingerprints and times ---------------------------------------------------------------


def test_fingerprint_matches_prometheus_label_set_fingerprint() -> None:
    # Test vectors of prometheus/common model/signature_test.go (TestMetricToFingerprint).
    labels = {"name": "garland, briggs", "fear": "love is not enough"}
    assert fingerprint(labels) == f"{5799056148416392346:016x}"
    assert fingerprint({}) == f"{14695981039346656037:016x}"


def test_fingerprint_is_stable_and_order_independent() -> None:
    a = fingerprint({"alertname": "X", "service": "api", "instance": "i-1"})
    b = fingerprint({"instance": "i-1", "service": "api", "alertname": "X"})
    assert a == b
    assert len(a) == 16
    assert int(a, 16) >= 0
    assert fingerprint({"alertname": "X", "service": "web"}) != fingerprint({"alertname": "X"})
    # label names and values are separated, so shifting a character changes the hash
    assert fingerprint({"ab": "c"}) != fingerprint({"a": "bc"})


def test_rfc3339_is_utc_and_zero_time_for_none() -> None:
    assert rfc3339(T0) == "2023-11-14T22:13:20Z"
    assert rfc3339(T0 + 0.25) == "2023-11-14T22:13:20.25Z"
    assert rfc3339(None) == ZERO_TIME == "0001-01-01T00:00:00Z"


# -- alerts from rule states --------------------------------------------------------------


def test_alert_from_firing_state_has_alertmanager_fields() -> None:
    latency, errors = make_alerts()
    assert latency.labels == {
        "alertname": "HighLatency",
        "severity": "critical",
        "action": "scale_up",
        "team": "api",
        "service": "api",
        "instance": "web-1",
    }
    assert latency.status == "firing"
    assert latency.starts_at == T0
    assert latency.to_dict()["endsAt"] == ZERO_TIME
    assert latency.to_dict()["startsAt"] == "2023-11-14T22:13:20Z"
    summary = latency.annotations["summary"]
    assert "9.2s" in summary
    assert "> 8s" in summary
    assert "for 1h" in summary
    assert "7.2%" in errors.annotations["summary"]
    assert "> 5%" in errors.annotations["summary"]
    assert errors.labels["severity"] == "warning"
    assert latency.fingerprint == fingerprint(latency.labels)


def test_resolved_pending_and_unknown_states() -> None:
    resolved = RuleState("HighMemory", Status.INACTIVE, fired_at=T0, resolved_at=T0 + 600)
    pending = RuleState("HighLatency", Status.PENDING, active_at=T0, value=9.0)
    unknown = RuleState("NoSuchRule", Status.FIRING, fired_at=T0)
    never = RuleState("HighErrorRate", Status.INACTIVE)
    alerts = alerts_from_states([LATENCY, ERRORS, MEMORY], [resolved, pending, unknown, never])
    assert len(alerts) == 1
    (memory,) = alerts
    assert memory.status == "resolved"
    assert memory.to_dict()["endsAt"] == "2023-11-14T22:23:20Z"
    assert "no data" in memory.annotations["summary"]
    assert "400MB" in memory.annotations["summary"]
    assert "service" not in memory.labels


def test_values_outside_the_catalog_are_still_readable() -> None:
    rule = Rule("Slow", "http_request_duration_seconds", Comparison.GT, 0.5, Action.NOTIFY)
    (alert,) = alerts_from_states([rule], [firing("Slow", 0.75)])
    assert "is 750ms (> 500ms)" in alert.annotations["summary"]
    other = Rule("Jobs", "jobs_waiting", Comparison.GE, 10, Action.NOTIFY, for_=60)
    (alert,) = alerts_from_states([other], [firing("Jobs", 12)])
    assert "is 12 (>= 10 for 1m)" in alert.annotations["summary"]


def test_rule_description_is_used_and_alertname_cannot_be_overridden() -> None:
    rule = Rule(
        "Queue",
        "gauge:queue_depth",
        Comparison.GT,
        100,
        Action.NOTIFY,
        description="Queue is backing up",
        labels={"alertname": "Other", "severity": "page"},
    )
    (alert,) = alerts_from_states([rule], {"Queue": firing("Queue", 250)})
    assert alert.labels["alertname"] == "Queue"
    assert alert.labels["severity"] == "page"
    assert alert.annotations["description"] == "Queue is backing up"
    assert "250" in alert.annotations["summary"]


# -- the Alertmanager webhook payload ------------------------------------------------------

# The documented shape of webhook_config's body (Alertmanager configuration docs), version 4.
PAYLOAD_SCHEMA: dict[str, type] = {
    "version": str,
    "groupKey": str,
    "truncatedAlerts": int,
    "status": str,
    "receiver": str,
    "groupLabels": dict,
    "commonLabels": dict,
    "commonAnnotations": dict,
    "externalURL": str,
    "alerts": list,
}
ALERT_SCHEMA: dict[str, type] = {
    "status": str,
    "labels": dict,
    "annotations": dict,
    "startsAt": str,
    "endsAt": str,
    "generatorURL": str,
    "fingerprint": str,
}


def check_schema(payload: dict[str, Any]) -> None:
    assert set(payload) == set(PAYLOAD_SCHEMA)
    for key, kind in PAYLOAD_SCHEMA.items():
        assert isinstance(payload[key], kind), key
    assert payload["version"] == "4"
    assert payload["status"] in {"firing", "resolved"}
    for name in ("groupLabels", "commonLabels", "commonAnnotations"):
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in payload[name].items())
    for alert in payload["alerts"]:
        assert set(alert) == set(ALERT_SCHEMA)
        for key, kind in ALERT_SCHEMA.items():
            assert isinstance(alert[key], kind), key
        assert alert["status"] in {"firing", "resolved"}
        assert len(alert["fingerprint"]) == 16
        assert alert["startsAt"].endswith("Z")
    json.dumps(payload)  # serialisable as is


def test_webhook_payload_matches_documented_schema() -> None:
    alerts = make_alerts()
    note = notification(*alerts, labels={"service": "api"})
    payload = webhook_payload(note, external_url="http://scalewise.local:8000")
    check_schema(payload)
    assert payload["groupKey"] == '{}:{service="api"}'
    assert payload["receiver"] == "ops"
    assert payload["status"] == "firing"
    assert payload["truncatedAlerts"] == 0
    assert payload["groupLabels"] == {"service": "api"}
    assert payload["commonLabels"] == {
        "action": "scale_up",
        "instance": "web-1",
        "service": "api",
    }
    assert payload["commonAnnotations"] == {}
    assert payload["externalURL"] == "http://scalewise.local:8000"
    assert {a["labels"]["alertname"] for a in payload["alerts"]} == {"HighLatency", "HighErrorRate"}


def test_webhook_payload_truncates_to_max_alerts() -> None:
    alerts = [
        Alert({"alertname": "Many", "instance": f"web-{i}"}, {"summary": "x"}, T0) for i in range(5)
    ]
    payload = webhook_payload(notification(*alerts), max_alerts=2)
    check_schema(payload)
    assert len(payload["alerts"]) == 2
    assert payload["truncatedAlerts"] == 3
    assert payload["commonLabels"] == {"alertname": "Many"}
    assert payload["commonAnnotations"] == {"summary": "x"}
    # sorted like Alertmanager: by instance, so the first two are kept
    assert [a["labels"]["instance"] for a in payload["alerts"]] == ["web-0", "web-1"]


def test_webhook_status_is_resolved_only_when_every_alert_is() -> None:
    up = Alert({"alertname": "A", "instance": "1"}, starts_at=T0)
    down = Alert({"alertname": "A", "instance": "2"}, starts_at=T0, ends_at=T0 + 60)
    assert webhook_payload(notification(up, down))["status"] == "firing"
    payload = webhook_payload(notification(down))
    check_schema(payload)
    assert payload["status"] == "resolved"
    assert payload["alerts"][0]["endsAt"] == "2023-11-14T22:14:20Z"


def test_webhook_notifier_maps_http_statuses() -> None:
    seen: list[dict[str, Any]] = []
    statuses = iter([200, 500, 404, 429])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(next(statuses), text="nope")

    notifier = WebhookNotifier("http://hook.test/alerts", transport=httpx.MockTransport(handler))
    note = notification(*make_alerts())
    notifier.notify(note)
    with pytest.raises(NotifyError, match="HTTP 500") as retryable:
        notifier.notify(note)
    assert not isinstance(retryable.value, NotifyRejected)
    with pytest.raises(NotifyRejected, match="HTTP 404"):
        notifier.notify(note)
    with pytest.raises(NotifyError, match="HTTP 429") as limited:
        notifier.notify(note)
    assert not isinstance(limited.value, NotifyRejected)
    notifier.close()
    assert seen[0]["version"] == "4"


# -- Slack and e-mail -----------------------------------------------------------------------


def test_slack_payload_is_one_readable_message() -> None:
    payload = slack_payload(notification(*make_alerts(), labels={"service": "api"}))
    assert set(payload) == {"text", "blocks"}
    text = payload["text"]
    assert text.startswith('[FIRING:2] HighErrorRate, HighLatency {service="api"}')
    assert "FIRING HighLatency: latency_avg is 9.2s (> 8s for 1h)" in text
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "context"]
    assert len(payload["blocks"][0]["text"]["text"]) <= 150
    json.dumps(payload)


def test_slack_payload_caps_long_groups() -> None:
    alerts = [Alert({"alertname": "Many", "instance": f"i{i}"}, starts_at=T0) for i in range(30)]
    text = slack_payload(notification(*alerts))["text"]
    assert "... and 10 more" in text
    assert text.count("FIRING Many") == 20


def test_email_message_lists_alerts() -> None:
    resolved = Alert({"alertname": "HighMemory"}, {"summary": "memory back to normal"}, T0, T0 + 5)
    alerts = [*make_alerts(), resolved]
    message = email_message(
        notification(*alerts, labels={}), "scalewise@example.com", ["a@example.com", "b@x.org"]
    )
    parsed = email.message_from_bytes(bytes(message), policy=email.policy.default)
    assert parsed["Subject"] == "[FIRING:2] HighErrorRate, HighLatency, HighMemory"
    assert parsed["From"] == "scalewise@example.com"
    assert parsed["To"] == "a@example.com, b@x.org"
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "Firing (2):" in text
    assert "Resolved (1):" in text
    assert "HighLatency: latency_avg is 9.2s" in text
    assert "resolved 2023-11-14T22:13:25Z" in text
    html = parsed.get_body(preferencelist=("html",))
    assert html is not None
    assert "<li><b>RESOLVED</b> memory back to normal</li>" in html.get_content()


def test_receivers_are_validated_with_their_path() -> None:
    with pytest.raises(ConfigError, match=r"receivers\[0\]\.kind"):
        validate_receivers([Receiver("x", "pager")])
    with pytest.raises(ConfigError, match=r"receivers\[1\]\.url"):
        validate_receivers([Receiver("a", "webhook", url="http://x"), Receiver("b", "slack")])
    with pytest.raises(ConfigError, match=r"receivers\[0\]\.to"):
        validate_receivers([Receiver("mail", "email")])
    with pytest.raises(ConfigError, match=r"receivers\[1\]\.name"):
        validate_receivers([Receiver("a", "email", to=("x@y",)), Receiver("a", "email", to=("z",))])
