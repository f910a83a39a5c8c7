"""The Alertmanager webhook: the same JSON (version ``"4"``) a real Alertmanager POSTs.

Any receiver written for Alertmanager's ``webhook_config`` (alert bridges, chat bots,
incident tools) accepts scalewise's notifications unchanged.
"""

from __future__ import annotations

from typing import Any

import httpx

from scalewise.errors import NotifyError
from scalewise.policy.notify.base import Notification, NotifyRejected


def webhook_payload(
    notification: Notification, *, external_url: str = "", max_alerts: int = 0
) -> dict[str, Any]:
    """The documented webhook body; ``max_alerts`` > 0 truncates the list like Alertmanager.

    ``commonLabels``/``commonAnnotations`` are computed over all alerts of the group, before
    truncation, as Alertmanager does.
    """
    alerts = notification.sorted_alerts()
    kept = alerts[:max_alerts] if max_alerts > 0 else alerts
    return {
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": len(alerts) - len(kept),
        "status": notification.status,
        "receiver": notification.receiver,
        "groupLabels": dict(sorted(notification.group_labels.items())),
        "commonLabels": notification.common_labels,
        "commonAnnotations": notification.common_annotations,
        "externalURL": external_url,
        "alerts": [alert.to_dict() for alert in kept],
    }


def post_json(client: httpx.Client, url: str, body: dict[str, Any], what: str) -> None:
    """POST JSON; 2xx is success, 4xx is final (:class:`NotifyRejected`), the rest retryable."""
    try:
        response = client.post(url, json=body)
    except httpx.TimeoutException as exc:
        raise NotifyError(f"{what} {url}: timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise NotifyError(f"{what} {url}: {type(exc).__name__}: {exc}") from exc
    if response.is_success:
        return
    detail = f"{what} {url}: HTTP {response.status_code} {response.text[:200]!r}"
    if 400 <= response.status_code < 500 and response.status_code != 429:
        raise NotifyRejected(detail)
    raise NotifyError(detail)


class WebhookNotifier:
    """POSTs the Alertmanager payload to ``url`` with one timeout per request.

    The HTTP client is created on first use and reused (keep-alive) until :meth:`close`.
    """

    kind = "webhook"
    label = "webhook"  # how errors name the receiver

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        external_url: str = "",
        max_alerts: int = 0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.external_url = external_url
        self.max_alerts = max_alerts
        self._transport = transport
        self._client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout, transport=self._transport)
        return self._client

    def payload(self, notification: Notification) -> dict[str, Any]:
        return webhook_payload(
            notification, external_url=self.external_url, max_alerts=self.max_alerts
        )

    def notify(self, notification: Notification) -> None:
        post_json(self._http(), self.url, self.payload(notification), self.label)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
