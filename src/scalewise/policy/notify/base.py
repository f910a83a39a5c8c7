"""Alerts as Alertmanager models them, the notification of one group, and the Notifier seam.

An :class:`Alert` is identified by its label set; its :attr:`Alert.fingerprint` is computed
exactly as Alertmanager does (FNV-1a 64 over the sorted label names and values, each followed
by the byte ``0xff``; printed as 16 hex digits), so receivers that de-duplicate by fingerprint
see the same identity they would get from a real Alertmanager.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from scalewise.errors import ConfigError, NotifyError, RuleError
from scalewise.policy.metrics import format_value as catalog_format_value
from scalewise.policy.model import Receiver, Rule, RuleState, Status
from scalewise.units import format_duration

#: What Alertmanager writes for "no end time yet" (Go's zero ``time.Time``).
ZERO_TIME: Final = "0001-01-01T00:00:00Z"

_FNV_OFFSET: Final = 14695981039346656037
_FNV_PRIME: Final = 1099511628211
_MASK: Final = 0xFFFFFFFFFFFFFFFF
_SEPARATOR: Final = b"\xff"
KINDS: Final = ("webhook", "slack", "email")


class NotifyRejected(NotifyError):
    """The receiver refused the notification (HTTP 4xx): retrying would not change its mind."""


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's alert fingerprint: ``labelSetToFingerprint`` of prometheus/common."""
    value = _FNV_OFFSET
    for name in sorted(labels):
        for byte in name.encode() + _SEPARATOR + labels[name].encode() + _SEPARATOR:
            value = ((value ^ byte) * _FNV_PRIME) & _MASK
    return f"{value:016x}"


def rfc3339(seconds: float | None) -> str:
    """UTC RFC 3339 as Go prints it (fraction only when non-zero); ``None`` → the zero time."""
    if seconds is None:
        return ZERO_TIME
    moment = datetime.fromtimestamp(seconds, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def label_set_string(labels: Mapping[str, str]) -> str:
    """``{a="1", b="2"}``: the label-set notation Alertmanager uses inside a group key."""
    inner = ", ".join(f"{name}={_quote(labels[name])}" for name in sorted(labels))
    return "{" + inner + "}"


def group_key(group_labels: Mapping[str, str]) -> str:
    """``{}:{alertname="HighLatency"}``: the root route's key, then the group's label set."""
    return "{}:" + label_set_string(group_labels)


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


@dataclass(frozen=True, slots=True, eq=True)
class Alert:
    """One alert: firing while ``ends_at`` is ``None``, resolved once it has an end time."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: float = 0.0
    ends_at: float | None = None
    generator_url: str = ""

    __hash__ = None  # type: ignore[assignment]  # dict fields: identity is the fingerprint

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def resolved(self) -> bool:
        return self.ends_at is not None

    @property
    def status(self) -> str:
        return "resolved" if self.resolved else "firing"

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    def to_dict(self) -> dict[str, Any]:
        """One element of the webhook payload's ``alerts`` list."""
        return {
            "status": self.status,
            "labels": dict(sorted(self.labels.items())),
            "annotations": dict(sorted(self.annotations.items())),
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(self.ends_at),
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }


def _common(maps: list[Mapping[str, str]]) -> dict[str, str]:
    """The pairs every map shares (Alertmanager's ``commonLabels``/``commonAnnotations``)."""
    if not maps:
        return {}
    first, *rest = maps
    return {k: v for k, v in sorted(first.items()) if all(m.get(k) == v for m in rest)}


def _alert_order(alert: Alert) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """Alertmanager sorts a group by ``job``, then ``instance``, then the whole label set."""
    labels = alert.labels
    return labels.get("job", ""), labels.get("instance", ""), tuple(sorted(labels.items()))


@dataclass(frozen=True, slots=True)
class Notification:
    """What one receiver is told about one group of alerts at one time."""

    receiver: str
    group_key: str
    group_labels: Mapping[str, str]
    alerts: tuple[Alert, ...]

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if not a.resolved)

    @property
    def resolved(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.resolved)

    @property
    def status(self) -> str:
        """``firing`` if any alert still fires, else ``resolved`` (as Alertmanager says)."""
        return "firing" if self.firing else "resolved"

    @property
    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    @property
    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])

    @property
    def title(self) -> str:
        """``[FIRING:2] HighLatency (service="api")``, like Alertmanager's default subject."""
        count = f":{len(self.firing)}" if self.status == "firing" else ""
        names = sorted({a.name for a in self.alerts if a.name})
        extra = {k: v for k, v in self.group_labels.items() if k != "alertname"}
        suffix = f" {label_set_string(extra)}" if extra else ""
        return f"[{self.status.upper()}{count}] {', '.join(names) or 'alerts'}{suffix}"

    def sorted_alerts(self) -> tuple[Alert, ...]:
        return tuple(sorted(self.alerts, key=_alert_order))


class Notifier(Protocol):
    """Delivers one notification once; the dispatcher owns retries, timing and threads.

    Synchronous on purpose: notifiers only run on the dispatcher's background thread, never
    on the request path, and ``smtplib`` is synchronous anyway.
    """

    def notify(self, notification: Notification) -> None:
        """Deliver or raise :class:`~scalewise.errors.NotifyError` (``NotifyRejected`` = final)."""
        ...

    def close(self) -> None: ...


def validate_receivers(receivers: Iterable[Receiver]) -> None:
    """Fail early with the field at fault: unknown kind, missing URL or recipients, a twin."""
    seen: set[str] = set()
    for i, receiver in enumerate(receivers):
        path = f"notifications.receivers[{i}]"
        if receiver.name in seen:
            raise ConfigError("policy", f"{path}.name", "a unique receiver name", receiver.name)
        seen.add(receiver.name)
        if receiver.kind not in KINDS:
            raise ConfigError("policy", f"{path}.kind", f"one of {', '.join(KINDS)}", receiver.kind)
        if receiver.kind in ("webhook", "slack") and not receiver.url:
            raise ConfigError("policy", f"{path}.url", f"a URL for a {receiver.kind} receiver")
        if receiver.kind == "email" and not receiver.to:
            raise ConfigError("policy", f"{path}.to", "at least one e-mail address")


# -- alerts from rule states ---------------------------------------------------------------

ValueFormatter = Callable[[Rule, float], str]


def format_value(rule: Rule, value: float) -> str:
    """A value of ``rule.metric`` in human units, as the metric catalog shows it.

    Names outside the catalog (a ``promql:`` rule's own label) fall back to a duration for
    names that say so, else a plain number; pass your own ``format_value`` to override.
    """
    try:
        return catalog_format_value(rule.metric, value)
    except RuleError:
        pass
    metric = rule.metric.lower()
    if any(word in metric for word in ("latency", "lag", "seconds", "duration")):
        return format_duration(value)
    return f"{value:.4g}"


def _annotations(rule: Rule, value: float | None, formatter: ValueFormatter) -> dict[str, str]:
    shown = "no data" if value is None else formatter(rule, value)
    condition = f"{rule.op.value} {formatter(rule, rule.threshold)}"
    held = f" for {format_duration(rule.for_)}" if rule.for_ else ""
    summary = f"{rule.name}: {rule.metric} is {shown} ({condition}{held})"
    description = rule.description or (
        f"{rule.metric} over {format_duration(rule.window)} was {shown}, "
        f"threshold {condition}{held}; suggested action: {rule.action.value}."
    )
    return {"summary": summary, "description": description}


def _labels(rule: Rule, service: str, instance: str) -> dict[str, str]:
    """Rule labels override the caller's; ``alertname`` is always the rule's name."""
    labels = {"severity": rule.severity, "action": rule.action.value}
    if service:
        labels["service"] = service
    if instance:
        labels["instance"] = instance
    labels.update(rule.labels)
    labels["alertname"] = rule.name
    return labels


def alert_from_state(
    rule: Rule,
    state: RuleState,
    *,
    service: str = "",
    instance: str = "",
    generator_url: str = "",
    format_value: ValueFormatter = format_value,
) -> Alert | None:
    """The alert a rule state stands for: firing, resolved, or ``None`` (pending/inactive).

    Like Prometheus, pending rules are not sent; a rule that stopped firing becomes a
    resolved alert ending at ``resolved_at``.
    """
    if state.status is Status.FIRING:
        ends_at = None
    elif state.resolved_at is not None and state.fired_at is not None:
        ends_at = state.resolved_at
    else:
        return None
    starts_at = state.fired_at or state.active_at or state.evaluated_at or 0.0
    return Alert(
        labels=_labels(rule, service, instance),
        annotations=_annotations(rule, state.value, format_value),
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=generator_url,
    )


def alerts_from_states(
    rules: Iterable[Rule],
    states: Mapping[str, RuleState] | Iterable[RuleState],
    *,
    service: str = "",
    instance: str = "",
    generator_url: str = "",
    format_value: ValueFormatter = format_value,
) -> list[Alert]:
    """Alerts for every firing or resolved rule; states of unknown rules are skipped."""
    by_name = {rule.name: rule for rule in rules}
    items = states.values() if isinstance(states, Mapping) else states
    alerts = []
    for state in items:
        rule = by_name.get(state.rule)
        if rule is None:
            continue
        alert = alert_from_state(
            rule,
            state,
            service=service,
            instance=instance,
            generator_url=generator_url,
            format_value=format_value,
        )
        if alert is not None:
            alerts.append(alert)
    return alerts
