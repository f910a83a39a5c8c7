"""The policy's value types, shared by the parser, the engine, the store and the CLI.

Units inside these objects are always base units: seconds, fractions (0.05 = 5 %), bytes,
requests per second, counts. Human units (``2s``, ``5%``, ``400MB``) exist only in
``scalewise.yaml`` and in output.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final


class Action(StrEnum):
    """What a firing rule asks for."""

    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    INVESTIGATE = "investigate"
    NOTIFY = "notify"


class Comparison(StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="
    NE = "!="

    def holds(self, value: float, threshold: float) -> bool:
        return _OPS[self](value, threshold)


_OPS: Final[dict[Comparison, Callable[[float, float], bool]]] = {
    Comparison.GT: operator.gt,
    Comparison.GE: operator.ge,
    Comparison.LT: operator.lt,
    Comparison.LE: operator.le,
    Comparison.EQ: operator.eq,
    Comparison.NE: operator.ne,
}


class Status(StrEnum):
    """Prometheus alert states: inactive → pending → firing."""

    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


@dataclass(frozen=True, slots=True)
class Rule:
    """One threshold with a duration: ``metric`` over ``window`` ``op`` ``threshold`` for ``for_``.

    ``metric`` is a catalog name (``latency_p95``, ``error_rate``, ``memory_mb``,
    ``gauge:queue_depth`` …, see ``scalewise.policy.metrics``); ``promql`` replaces it with a
    PromQL expression evaluated by Prometheus (fleet mode).
    """

    name: str
    metric: str
    op: Comparison
    threshold: float
    action: Action
    window: float = 300.0
    for_: float = 0.0
    keep_firing_for: float = 0.0
    severity: str = "warning"
    labels: Mapping[str, str] = field(default_factory=dict)
    promql: str | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class RuleState:
    """Where one rule is in its state machine; persisted so ``for:`` survives restarts.

    ``active_at``: when the condition started holding (Prometheus ``ActiveAt``);
    ``fired_at``: when it became firing; ``keep_firing_since``: when the condition stopped
    holding while firing (Prometheus ``KeepFiringSince``); ``value``: the last value seen
    (``None`` when data was missing).
    """

    rule: str
    status: Status = Status.INACTIVE
    active_at: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    keep_firing_since: float | None = None
    value: float | None = None
    evaluated_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "status": self.status.value,
            "active_at": self.active_at,
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
            "keep_firing_since": self.keep_firing_since,
            "value": self.value,
            "evaluated_at": self.evaluated_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleState:
        return cls(
            rule=str(data["rule"]),
            status=Status(data["status"]),
            active_at=data.get("active_at"),
            fired_at=data.get("fired_at"),
            resolved_at=data.get("resolved_at"),
            keep_firing_since=data.get("keep_firing_since"),
            value=data.get("value"),
            evaluated_at=data.get("evaluated_at"),
        )


# -- decisions: how firing rules become a recommendation ---------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """One tier of the catalog (editable data; defaults come from the seeds' price tables)."""

    name: str
    cpu: float
    memory_bytes: int
    price_month: float
    max_instances: int = 1


@dataclass(frozen=True, slots=True)
class HPAPolicy:
    """One Kubernetes HPA ``behavior`` policy: change by ``value`` pods or percent per period."""

    type: str  # "Pods" | "Percent"
    value: int
    period: float  # seconds


@dataclass(frozen=True, slots=True)
class HPARules:
    """Kubernetes ``behavior.scaleUp`` / ``behavior.scaleDown``."""

    stabilization_window: float
    select_policy: str = "Max"  # "Max" | "Min" | "Disabled"
    policies: tuple[HPAPolicy, ...] = ()


#: Kubernetes defaults (autoscaling/v2): scale up at once by max(100 %, 4 pods) per 15 s;
#: scale down by up to 100 % per 15 s after a 300 s stabilization window.
DEFAULT_SCALE_UP: Final = HPARules(
    stabilization_window=0.0,
    select_policy="Max",
    policies=(HPAPolicy("Percent", 100, 15.0), HPAPolicy("Pods", 4, 15.0)),
)
DEFAULT_SCALE_DOWN: Final = HPARules(
    stabilization_window=300.0, select_policy="Max", policies=(HPAPolicy("Percent", 100, 15.0),)
)


@dataclass(frozen=True, slots=True)
class HPATarget:
    """Scale replicas so that ``metric`` (per replica) approaches ``target``."""

    metric: str
    target: float


@dataclass(frozen=True, slots=True)
class Horizontal:
    """Replica math by the HPA formula: ``ceil(current × value / target)``."""

    targets: tuple[HPATarget, ...] = ()
    min_replicas: int = 1
    max_replicas: int = 10
    tolerance: float = 0.1
    scale_up: HPARules = DEFAULT_SCALE_UP
    scale_down: HPARules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True, slots=True)
class Receiver:
    """Where notifications go: ``kind`` is ``webhook`` (Alertmanager payload), ``slack`` or
    ``email``; ``url`` for the first two, SMTP settings for e-mail."""

    name: str
    kind: str
    url: str | None = None
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    sender: str = "scalewise@localhost"
    to: tuple[str, ...] = ()
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Notifications:
    """Alertmanager's grouping and repeat semantics (its defaults), plus retries."""

    receivers: tuple[Receiver, ...] = ()
    group_by: tuple[str, ...] = ("alertname",)
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0
    retries: int = 3
    backoff: float = 1.0


@dataclass(frozen=True, slots=True)
class CommandHook:
    """Run a user command with the decision in environment variables; dry-run by default."""

    argv: tuple[str, ...] = ()
    dry_run: bool = True
    timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class Policy:
    """A whole policy as ``scalewise.yaml``'s ``policy:`` section describes it."""

    rules: tuple[Rule, ...] = ()
    evaluation_interval: float = 60.0
    scale_down_requires: str = "all"  # "all" | "any"
    cooldown: float = 600.0
    plans: tuple[Plan, ...] = ()
    current_plan: str | None = None
    instances: int = 1
    horizontal: Horizontal | None = None
    notifications: Notifications = field(default_factory=Notifications)
    command: CommandHook = field(default_factory=CommandHook)
    preset: str | None = None
    #: Evaluate inside the app (one leader worker); false when ``scalewise watch`` does it.
    in_app: bool = True

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """What the policy advises now, with the rules and values behind it.

    ``action`` is ``scale_up``, ``scale_down`` or ``hold``; ``kind`` is ``vertical`` (another
    plan) or ``horizontal`` (another replica count); costs are per month in the catalog's
    currency. ``reasons`` are human sentences; ``missing`` names rules that had no data (no
    decision is made on missing data, as the HPA does).
    """

    action: str
    kind: str
    at: float
    current_plan: str | None
    target_plan: str | None
    current_instances: int
    target_instances: int
    cost_before: float | None
    cost_after: float | None
    firing: tuple[str, ...] = ()
    values: Mapping[str, float | None] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    cooldown_until: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "kind": self.kind,
            "at": self.at,
            "current_plan": self.current_plan,
            "target_plan": self.target_plan,
            "current_instances": self.current_instances,
            "target_instances": self.target_instances,
            "cost_before": self.cost_before,
            "cost_after": self.cost_after,
            "firing": list(self.firing),
            "values": dict(self.values),
            "reasons": list(self.reasons),
            "missing": list(self.missing),
            "cooldown_until": self.cooldown_until,
        }
