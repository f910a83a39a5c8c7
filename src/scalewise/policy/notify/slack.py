"""A Slack-compatible incoming webhook: one message per group, readable at a glance.

The body is ``{"text": ..., "blocks": [...]}``; ``text`` alone carries the whole message, so
Slack-compatible receivers that ignore Block Kit (Mattermost, Rocket.Chat, Discord's
``/slack`` endpoint) still show it.
"""

from __future__ import annotations

from typing import Any, Final

from scalewise.policy.notify.base import Alert, Notification
from scalewise.policy.notify.webhook import WebhookNotifier

#: Slack limits: header text 150 characters, section text 3 000; a group lists at most this many.
MAX_LISTED: Final = 20
_HEADER_MAX: Final = 150
_SECTION_MAX: Final = 3000


def alert_line(alert: Alert) -> str:
    """``FIRING latency_high: latency_p95 is 2.4s (> 2s for 1h)``, one line per alert."""
    summary = alert.annotations.get("summary") or alert.name
    return f"{alert.status.upper()} {summary}"


def alert_lines(notification: Notification, limit: int = MAX_LISTED) -> list[str]:
    """Alert lines, firing first, cut at ``limit`` with a count of the rest."""
    alerts = notification.firing + notification.resolved
    lines = [alert_line(a) for a in alerts[:limit]]
    if len(alerts) > limit:
        lines.append(f"... and {len(alerts) - limit} more")
    return lines


def slack_payload(notification: Notification, *, external_url: str = "") -> dict[str, Any]:
    """The incoming-webhook JSON: a fallback ``text`` plus header, list and context blocks."""
    title = notification.title
    lines = alert_lines(notification)
    listing = "\n".join(f"• {line}" for line in lines)
    context = f"receiver {notification.receiver} · group {notification.group_key}"
    if external_url:
        context += f" · {external_url}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:_HEADER_MAX]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": listing[:_SECTION_MAX]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context[:_SECTION_MAX]}]},
    ]
    return {"text": f"{title}\n{listing}", "blocks": blocks}


class SlackNotifier(WebhookNotifier):
    """POSTs :func:`slack_payload` to a Slack (or compatible) incoming-webhook URL; the HTTP
    handling (timeout, keep-alive, error classes) is the webhook notifier's."""

    kind = "slack"
    label = "slack webhook"

    def payload(self, notification: Notification) -> dict[str, Any]:
        return slack_payload(notification, external_url=self.external_url)
