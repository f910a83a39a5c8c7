"""Notifications: Alertmanager-compatible webhook, Slack-compatible webhook and SMTP e-mail.

Build alerts from rule states with :func:`alerts_from_states`, hand them to a
:class:`Dispatcher` (grouping, ``group_wait``/``group_interval``/``repeat_interval``,
retries with backoff, a background thread), and receivers get one message per group.
"""

from __future__ import annotations

from scalewise.policy.notify.base import (
    ZERO_TIME,
    Alert,
    Notification,
    Notifier,
    NotifyRejected,
    alert_from_state,
    alerts_from_states,
    fingerprint,
    format_value,
    group_key,
    rfc3339,
    validate_receivers,
)
from scalewise.policy.notify.dispatcher import (
    Delivery,
    Dispatcher,
    NotificationSink,
    needs_update,
    notifier_for,
)
from scalewise.policy.notify.email import EmailNotifier, email_message, email_text
from scalewise.policy.notify.slack import SlackNotifier, slack_payload
from scalewise.policy.notify.webhook import WebhookNotifier, webhook_payload

__all__ = [
    "ZERO_TIME",
    "Alert",
    "Delivery",
    "Dispatcher",
    "EmailNotifier",
    "Notification",
    "NotificationSink",
    "Notifier",
    "NotifyRejected",
    "SlackNotifier",
    "WebhookNotifier",
    "alert_from_state",
    "alerts_from_states",
    "email_message",
    "email_text",
    "fingerprint",
    "format_value",
    "group_key",
    "needs_update",
    "notifier_for",
    "rfc3339",
    "slack_payload",
    "validate_receivers",
    "webhook_payload",
]
