"""The plan catalog: tiers with CPU, memory and a monthly price, and what a setup costs.

The default catalog is the Render-style tier table the seeds plan with. It is editable data:
prices are as of the seeds (2025), and a ``plans:`` YAML file (:func:`load_plans`) replaces it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from scalewise.errors import ConfigError
from scalewise.policy.model import Action, Plan
from scalewise.units import SIZE_EXPECTED, parse_size

_MIB: Final = 2**20
_GIB: Final = 2**30
#: A billing month, as the seeds' "$/month" means it: 30 days.
SECONDS_PER_MONTH: Final = 30 * 86_400
SECONDS_PER_DAY: Final = 86_400

# Sources (seed files in the design's seeds/ folder):
# - Starter 0.5 CPU / 512 MB / $7: seed 001 ("MVP Instance Specifications"), seed 002 (every
#   service "Starter ($7/month) … 0.5 CPU, 512 MB RAM"), seed 000 ("Starter plan ($7/month)").
# - Standard 1 CPU / 2 GB / $25: seed 001 ("Scaling Target": 1 vCPU, 2GB RAM, $25/month) and
#   seed 000 ("Target: Standard ($25/month)").
# - Pro $85: seed 000 (Pro setup "API service: $85"; "Pro Plan (5 instances): $425/month").
#   Its 2 CPU / 4 GB are not in the seeds (seed 003's "2 CPU, 4GB RAM" server is the same size).
# - Pro Plus, Pro Max, Pro Ultra: not in the seeds; Render's published web-service tiers, which
#   the seeds' Starter/Standard/Pro rows come from. Check them before relying on them.
# max_instances = 10 is our choice (seed 000 plans "autoscaling (2-5 instances)"), not a limit
# of any provider. Memory is binary (MiB/GiB) because container limits are set that way.
DEFAULT_PLANS: Final[tuple[Plan, ...]] = (
    Plan("Starter", 0.5, 512 * _MIB, 7.0, max_instances=10),
    Plan("Standard", 1.0, 2 * _GIB, 25.0, max_instances=10),
    Plan("Pro", 2.0, 4 * _GIB, 85.0, max_instances=10),
    Plan("Pro Plus", 4.0, 8 * _GIB, 175.0, max_instances=10),
    Plan("Pro Max", 4.0, 16 * _GIB, 225.0, max_instances=10),
    Plan("Pro Ultra", 8.0, 32 * _GIB, 450.0, max_instances=10),
)

_FIELDS: Final = {"name", "cpu", "memory", "price_month", "max_instances"}


def load_plans(path: str | Path) -> tuple[Plan, ...]:
    """Read ``plans: [{name, cpu, memory: 2GB, price_month: 25, max_instances: 10}, …]``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, "plans", f"a readable YAML file ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, "plans", f"valid YAML ({exc})") from exc
    if not isinstance(data, Mapping) or "plans" not in data:
        raise ConfigError(source, "plans", "a top-level 'plans:' list", type(data).__name__)
    return parse_plans(data["plans"], source)


def parse_plans(data: object, source: str, path: str = "plans") -> tuple[Plan, ...]:
    """Plans from already-loaded YAML/JSON data; errors name ``source`` and the field path."""
    if not isinstance(data, list) or not data:
        raise ConfigError(source, path, "a non-empty list of plans", data)
    plans = tuple(_parse_plan(item, source, f"{path}[{i}]") for i, item in enumerate(data))
    seen: set[str] = set()
    for i, plan in enumerate(plans):
        key = _key(plan.name)
        if key in seen:
            raise ConfigError(source, f"{path}[{i}].name", "a name used once", plan.name)
        seen.add(key)
    return plans


def _parse_plan(item: object, source: str, path: str) -> Plan:
    if not isinstance(item, Mapping):
        raise ConfigError(source, path, "a mapping with name, cpu, memory, price_month", item)
    unknown = sorted(set(map(str, item)) - _FIELDS)
    if unknown:
        raise ConfigError(source, f"{path}.{unknown[0]}", f"one of {sorted(_FIELDS)}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(source, f"{path}.name", "a plan name", name)
    try:
        memory = parse_size(_required(item, "memory", source, path))
    except ValueError:
        raise ConfigError(source, f"{path}.memory", SIZE_EXPECTED, item["memory"]) from None
    return Plan(
        name=name.strip(),
        cpu=_number(_required(item, "cpu", source, path), source, f"{path}.cpu", positive=True),
        memory_bytes=memory,
        price_month=_number(
            _required(item, "price_month", source, path), source, f"{path}.price_month"
        ),
        max_instances=_count(item.get("max_instances", 1), source, f"{path}.max_instances"),
    )


def _required(item: Mapping[str, Any], key: str, source: str, path: str) -> Any:
    if key not in item:
        raise ConfigError(source, f"{path}.{key}", "a value (the field is required)")
    return item[key]


def _number(value: object, source: str, path: str, positive: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):  # type: ignore[operator]
        kind = "a positive number" if positive else "a number ≥ 0"
        raise ConfigError(source, path, kind, value)
    return float(value)  # type: ignore[arg-type]


def _count(value: object, source: str, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(source, path, "a whole number ≥ 1", value)
    return value


def _key(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def tiers(catalog: Iterable[Plan]) -> list[Plan]:
    """The catalog from cheapest to dearest (then by memory and CPU); file order is irrelevant."""
    return sorted(catalog, key=lambda p: (p.price_month, p.memory_bytes, p.cpu))


def find_plan(
    catalog: Sequence[Plan], name: str, source: str = "plan catalog", path: str = "plan"
) -> Plan:
    """The plan called ``name`` (case, ``_`` and ``-`` ignored: ``pro_plus`` is ``Pro Plus``)."""
    for plan in catalog:
        if _key(plan.name) == _key(name):
            return plan
    names = ", ".join(p.name for p in tiers(catalog))
    raise ConfigError(source, path, f"one of {names}", name)


def next_plan(catalog: Sequence[Plan], current: str | Plan, direction: str) -> Plan | None:
    """The next tier up (``"up"``/``scale_up``) or down; ``None`` at the top or bottom."""
    plan = find_plan(catalog, current if isinstance(current, str) else current.name)
    if direction in {"up", Action.SCALE_UP}:
        step = 1
    elif direction in {"down", Action.SCALE_DOWN}:
        step = -1
    else:
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    ordered = tiers(catalog)
    target = ordered.index(plan) + step
    return ordered[target] if 0 <= target < len(ordered) else None


def monthly_cost(plan: Plan, instances: int) -> float:
    """Price of ``instances`` copies of ``plan`` for a month (providers bill per instance)."""
    return plan.price_month * instances


def requests_per_month(rps: float) -> float:
    return rps * SECONDS_PER_MONTH


def daily_requests_to_rps(requests_per_day: float) -> float:
    """``10 000`` requests/day → ``0.1157`` requests/s (÷ 86 400)."""
    return requests_per_day / SECONDS_PER_DAY


def cost_per_1000_requests(plan: Plan, instances: int, rps: float) -> float:
    """Monthly cost ÷ thousands of requests in a 30-day month at a steady ``rps``."""
    if not rps > 0:
        raise ValueError(f"a request rate must be positive, got {rps!r}")
    return monthly_cost(plan, instances) / (requests_per_month(rps) / 1000)


@dataclass(frozen=True, slots=True)
class CostRow:
    """One cell of the cost calculator: a plan at an instance count."""

    plan: Plan
    instances: int
    monthly: float
    per_1000_requests: float | None
    allowed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.name,
            "instances": self.instances,
            "monthly_cost": round(self.monthly, 2),
            "cost_per_1000_requests": self.per_1000_requests,
            "within_max_instances": self.allowed,
        }


def cost_matrix(
    catalog: Iterable[Plan], counts: Sequence[int], rps: float | None = None
) -> list[CostRow]:
    """Every plan × instance count, cheapest tier first (the seeds' cost calculator)."""
    rows = []
    for plan in tiers(catalog):
        for n in counts:
            per_k = cost_per_1000_requests(plan, n, rps) if rps else None
            rows.append(CostRow(plan, n, monthly_cost(plan, n), per_k, n <= plan.max_instances))
    return rows
