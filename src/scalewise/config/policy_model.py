"""The ``policy:`` section at the file boundary: a field reader and the plain sub-sections.

:class:`Fields` reads one YAML mapping and records every problem with its path instead of
stopping at the first; :mod:`scalewise.policy.rules` builds the rules and the whole
:class:`~scalewise.policy.model.Policy` on it. :class:`PolicySection` is the pydantic face of
the section in :class:`~scalewise.config.model.ScalewiseConfig`: it runs that parser and hands
its problems to pydantic with their paths, so ``load_config`` reports them with the file name,
next to any other section's problems.

Why not pydantic models field by field: a threshold's unit depends on the rule's metric
(``8s`` for latency, ``5%`` for an error rate), and every bad field must be reported at once
with its path; one small reader does both, with the same words as the rest of the config.
"""

from __future__ import annotations

import difflib
import math
import shlex
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NamedTuple, TypeVar

from pydantic import ConfigDict, RootModel, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from scalewise.errors import ConfigError
from scalewise.policy.model import CommandHook, Notifications, Plan, Policy, Receiver
from scalewise.units import DURATION_EXPECTED, parse_duration, parse_size

T = TypeVar("T")
Loc = tuple[str | int, ...]


class Problem(NamedTuple):
    """One bad field: where (path inside ``policy:``), what was expected, what was found."""

    loc: Loc
    expected: str
    got: object = None


def dotted(loc: Loc, prefix: str = "policy") -> str:
    """``("rules", 2, "for")`` → ``"policy.rules[2].for"``."""
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def policy_error(source: str, problems: list[Problem]) -> ConfigError:
    """One error: the first problem in its attributes, every problem on its own line."""
    errors = [ConfigError(source, dotted(p.loc), p.expected, p.got) for p in problems]
    if len(errors) > 1:
        errors[0].args = ("\n".join(str(e) for e in errors),)
    return errors[0]


# -- reading fields without stopping at the first problem ----------------------------------


class Fields:
    """One mapping at ``loc``: getters record a Problem and return a default instead of raising."""

    def __init__(self, data: object, loc: Loc, problems: list[Problem], known: Iterable[str]):
        self.loc, self.problems, self.ok = loc, problems, True
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            problems.append(Problem(loc, "a mapping of keys to values", type(data).__name__))
            self.ok, data = False, {}
        self.data: Mapping[Any, Any] = data
        known = tuple(known)
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(str(key), f"one of the known keys: {', '.join(known)}{hint}", key)

    def fail(self, key: str | int | None, expected: str, got: object = None) -> None:
        loc = self.loc if key is None else (*self.loc, key)
        self.problems.append(Problem(loc, expected, got))

    def get(self, key: str, parse: Callable[[Any], T], default: T) -> T:
        if key not in self.data:
            return default
        try:
            return parse(self.data[key])
        except (ValueError, TypeError) as exc:
            self.fail(key, str(exc), self.data[key])
            return default

    def need(self, key: str, parse: Callable[[Any], T], what: str) -> T | None:
        if self.data.get(key) is None:
            self.fail(key, f"{what} (required)")
            return None
        return self.get(key, parse, None)

    def items(self, key: str) -> list[tuple[Loc, object]]:
        """The entries of a list field with their paths; a problem if it is not a list."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, "a list", type(value).__name__)
            return []
        return [((*self.loc, key, i), item) for i, item in enumerate(value)]


def duration(minimum: float = 0.0) -> Callable[[object], float]:
    expected = DURATION_EXPECTED + (", greater than 0" if minimum > 0 else "")

    def parse(value: object) -> float:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(expected)
        seconds = parse_duration(value)  # its ValueError says what is expected
        if seconds < minimum or (minimum > 0 and seconds == 0):
            raise ValueError(expected)
        return seconds

    return parse


def whole(minimum: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"a whole number of at least {minimum}")
        return value

    return parse


def number(value: object, expected: str = "a number", minimum: float = -math.inf) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip().lstrip("$"))
        except ValueError:
            raise ValueError(expected) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(expected)
    if not math.isfinite(value) or value < minimum:
        raise ValueError(expected)
    return float(value)


def choice(options: Iterable[str]) -> Callable[[object], str]:
    options = tuple(options)

    def parse(value: object) -> str:
        if value not in options:
            raise ValueError("one of " + ", ".join(options))
        return str(value)

    return parse


def text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty string")
    return value


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def strings(value: object) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
        raise ValueError("a string or a list of strings")
    return tuple(items)


_PLAN_KEYS: Final = ("name", "cpu", "memory", "price_month", "max_instances")


def read_plans(parent: Fields) -> tuple[Plan, ...]:
    """``plans:``: the catalog, overriding the default one (memory like '512MB', decimal)."""
    plans: list[Plan] = []
    for loc, item in parent.items("plans"):
        f = Fields(item, loc, parent.problems, _PLAN_KEYS)
        name = f.need("name", text, "the plan's name")
        cpu = f.need("cpu", lambda v: number(v, "a number of CPUs greater than 0", 1e-9), "CPUs")
        memory = f.need("memory", size, "its memory, like '512MB' or '2GB'")
        price = f.need("price_month", lambda v: number(v, "a price ≥ 0", 0.0), "price per month")
        most = f.get("max_instances", whole(1), 1)
        if name is not None and any(p.name == name for p in plans):
            f.fail("name", "a plan name not used by an earlier plan", name)
        elif None not in (name, cpu, memory, price):
            plans.append(
                Plan(str(name), float(cpu or 0), int(memory or 0), float(price or 0), most)
            )
    return tuple(plans)


def size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("a size like '512MB' or a number of bytes")
    return parse_size(value)


_RECEIVER_KEYS: Final = ("name", "kind", "url", "smtp_host", "smtp_port", "sender", "to", "timeout")
_NOTIFY_KEYS: Final = (
    *("receivers", "group_by", "group_wait", "group_interval", "repeat_interval"),
    *("retries", "backoff"),
)


def _receiver(f: Fields) -> Receiver | None:
    name = f.need("name", text, "the receiver's name")
    kind = f.need("kind", choice(("webhook", "slack", "email")), "webhook, slack or email")
    url = f.get("url", _url, None)
    if kind in {"webhook", "slack"} and url is None and "url" not in f.data:
        f.fail("url", f"the {kind} URL (required for kind {kind})")
    to: tuple[str, ...] = f.get("to", strings, ())
    if kind == "email" and not to and "to" not in f.data:
        f.fail("to", "the addresses to mail (required for kind email)")
    if name is None or kind is None:
        return None
    return Receiver(
        name=name,
        kind=kind,
        url=url,
        smtp_host=f.get("smtp_host", text, "127.0.0.1"),
        smtp_port=f.get("smtp_port", whole(1), 25),
        sender=f.get("sender", text, "scalewise@localhost"),
        to=to,
        timeout=f.get("timeout", duration(minimum=1e-9), 10.0),
    )


def _url(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError("an http:// or https:// URL")
    return value


def read_notifications(parent: Fields) -> Notifications:
    """``notifications:``: receivers, and Alertmanager's grouping and repeat intervals."""
    f = Fields(parent.data.get("notifications"), ("notifications",), parent.problems, _NOTIFY_KEYS)
    receivers: list[Receiver] = []
    for loc, item in f.items("receivers"):
        r = Fields(item, loc, f.problems, _RECEIVER_KEYS)
        receiver = _receiver(r) if r.ok else None
        if receiver is not None and any(x.name == receiver.name for x in receivers):
            r.fail("name", "a receiver name not used by an earlier receiver", receiver.name)
        elif receiver is not None:
            receivers.append(receiver)
    default = Notifications()
    return Notifications(
        receivers=tuple(receivers),
        group_by=f.get("group_by", strings, default.group_by),
        group_wait=f.get("group_wait", duration(), default.group_wait),
        group_interval=f.get("group_interval", duration(minimum=1e-9), default.group_interval),
        repeat_interval=f.get("repeat_interval", duration(minimum=1e-9), default.repeat_interval),
        retries=f.get("retries", whole(0), default.retries),
        backoff=f.get("backoff", duration(), default.backoff),
    )


def _argv(value: object) -> tuple[str, ...]:
    """A list of arguments; one string is split like a shell would (but never run by one)."""
    try:
        argv = shlex.split(value) if isinstance(value, str) else strings(value)
    except ValueError:
        argv = ()
    if not argv:
        raise ValueError("a command as a list of arguments, like [kubectl, scale, ...]")
    return tuple(argv)


def read_command(parent: Fields) -> CommandHook:
    """``command:``: the hook run with the decision in its environment; dry-run by default."""
    f = Fields(parent.data.get("command"), ("command",), parent.problems, _COMMAND_KEYS)
    return CommandHook(
        argv=f.get("argv", _argv, ()),
        dry_run=f.get("dry_run", boolean, True),
        timeout=f.get("timeout", duration(minimum=1e-9), 60.0),
    )


_COMMAND_KEYS: Final = ("argv", "dry_run", "timeout")


class PolicySection(RootModel[Policy]):
    """``policy:`` in ``scalewise.yaml``, parsed into a Policy (``.root``).

    Problems become pydantic errors with their paths (``policy.rules[2].for``), which the
    loader reports as one ConfigError naming the file.
    """

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, Policy):
            return data
        # Imported here: the rules import this module's reader (no import cycle at load).
        from scalewise.policy.rules import check_policy  # noqa: PLC0415

        policy, problems = check_policy(data)
        if problems:
            errors = [
                InitErrorDetails(
                    type=PydanticCustomError(
                        "scalewise", "expected {expected}", {"expected": p.expected}
                    ),
                    loc=p.loc,
                    input=p.got,
                )
                for p in problems
            ]
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return policy
