"""E-mail over SMTP with the standard library: one message per group, text plus simple HTML.

Plain SMTP by default (a local relay on port 25); ``starttls=True`` upgrades the connection
and ``username``/``password`` log in after it. Bodies are quoted-printable so they pass
servers without ``8BITMIME``.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from scalewise.errors import ConfigError, NotifyError
from scalewise.policy.notify.base import Alert, Notification, NotifyRejected, rfc3339


def _alert_block(alert: Alert) -> list[str]:
    summary = alert.annotations.get("summary") or alert.name
    lines = [f"- {summary}"]
    description = alert.annotations.get("description")
    if description and description != summary:
        lines.append(f"  {description}")
    when = f"started {rfc3339(alert.starts_at)}"
    if alert.resolved:
        when += f", resolved {rfc3339(alert.ends_at)}"
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
    lines += [f"  {when}", f"  labels: {labels}"]
    return lines


def email_text(notification: Notification, external_url: str = "") -> str:
    """The plain-text body: firing alerts, then resolved ones, then where it came from."""
    lines = [notification.title, ""]
    for heading, alerts in (("Firing", notification.firing), ("Resolved", notification.resolved)):
        if alerts:
            lines.append(f"{heading} ({len(alerts)}):")
            for alert in alerts:
                lines += _alert_block(alert)
            lines.append("")
    lines.append(f"group {notification.group_key}, receiver {notification.receiver}")
    if external_url:
        lines.append(external_url)
    return "\n".join(lines) + "\n"


def email_html(notification: Notification) -> str:
    """A minimal HTML alternative: a heading and one list item per alert."""
    items = "".join(
        f"<li><b>{html.escape(a.status.upper())}</b> "
        f"{html.escape(a.annotations.get('summary') or a.name)}</li>"
        for a in notification.firing + notification.resolved
    )
    return f"<h3>{html.escape(notification.title)}</h3><ul>{items}</ul>"


def email_message(
    notification: Notification,
    sender: str,
    to: Sequence[str],
    *,
    external_url: str = "",
    with_html: bool = True,
) -> EmailMessage:
    """The message for one group; ``Subject`` is the group's title."""
    message = EmailMessage()
    message["Subject"] = notification.title
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    message.set_content(
        email_text(notification, external_url), charset="utf-8", cte="quoted-printable"
    )
    if with_html:
        message.add_alternative(
            email_html(notification), subtype="html", charset="utf-8", cte="quoted-printable"
        )
    return message


class EmailNotifier:
    """Sends one e-mail per notification through ``host:port``; a new connection each time.

    Notifications are minutes apart, so there is nothing to gain from a kept-open SMTP
    session, and a fresh connection never fails on a server-side idle timeout.
    """

    kind = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        to: Sequence[str],
        *,
        timeout: float = 10.0,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        with_html: bool = True,
        external_url: str = "",
    ) -> None:
        if not to:
            raise ConfigError("notifications", "receivers[].to", "at least one address")
        self.host, self.port, self.sender, self.to = host, port, sender, tuple(to)
        self.timeout = timeout
        self.starttls = starttls
        self.username, self.password = username, password
        self.with_html = with_html
        self.external_url = external_url

    def message(self, notification: Notification) -> EmailMessage:
        return email_message(
            notification,
            self.sender,
            self.to,
            external_url=self.external_url,
            with_html=self.with_html,
        )

    def notify(self, notification: Notification) -> None:
        message = self.message(notification)
        where = f"smtp {self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message, self.sender, list(self.to))
        except smtplib.SMTPRecipientsRefused as exc:
            raise NotifyRejected(f"{where}: recipients refused: {exc.recipients}") from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise NotifyRejected(f"{where}: login refused: {exc.smtp_code}") from exc
        except TimeoutError as exc:
            raise NotifyError(f"{where}: timed out after {self.timeout}s") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"{where}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Nothing is kept open between notifications."""
