"""``guards:`` in scalewise.yaml: rate limits, shedding, timeouts, body limits, response cache.

Flat fields, so each has an environment variable of its own (``SCALEWISE_GUARDS_MAX_CONCURRENT``)
and the seeds' names work as aliases (``SCALEWISE_MAX_CONCURRENT_REQUESTS``,
``SCALEWISE_REQUEST_TIMEOUT``, ``SCALEWISE_MAX_UPLOAD_SIZE``, ``SCALEWISE_MAX_CACHE_ENTRIES``,
``SCALEWISE_MAX_CACHE_SIZE``). Every guard is off until its field is set, except the request
timeout (30 s) and the body limit (10 MB), which the seeds set everywhere. Mappings (tiers,
routes) may come from an environment variable as inline YAML: ``{free: 60/minute}``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainValidator
from pydantic_core import PydanticCustomError

from scalewise.units import DURATION_EXPECTED, parse_duration, parse_size

_OFF = frozenset({"", "off", "false", "no", "none", "null"})


def _fail(expected: str) -> PydanticCustomError:
    return PydanticCustomError("scalewise", "expected {expected}", {"expected": expected})


def _off(value: object) -> bool:
    return (
        value is None
        or value is False
        or (isinstance(value, str) and value.strip().lower() in _OFF)
    )


def _duration_or_off(value: object) -> float | None:
    if _off(value):
        return None
    try:
        seconds = parse_duration(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _fail(f"{DURATION_EXPECTED}, or off") from None
    if seconds <= 0:
        raise _fail("a duration greater than 0, or off")
    return seconds


def _duration_zero_ok(value: object) -> float:
    try:
        seconds = parse_duration(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _fail(DURATION_EXPECTED) from None
    if seconds < 0:
        raise _fail("a duration of 0 or more")
    return seconds


def _size_or_off(value: object) -> int | None:
    if _off(value):
        return None
    try:
        size = parse_size(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _fail("a size like '10MB', or off") from None
    if size <= 0:
        raise _fail("a size greater than 0, or off")
    return size


def _count_or_off(minimum: int) -> Any:
    def check(value: object) -> int | None:
        if _off(value):
            return None
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise _fail(f"a whole number of at least {minimum}, or off") from None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _fail(f"a whole number of at least {minimum}, or off")
        return value

    return check


def _whole(minimum: int) -> Any:
    check = _count_or_off(minimum)

    def whole(value: object) -> int:
        result = check(value)
        if result is None:
            raise _fail(f"a whole number of at least {minimum}")
        return int(result)

    return whole


def _positive_size(value: object) -> int:
    size = _size_or_off(value)
    if size is None:
        raise _fail("a size like '64MB'")
    return size


def _inline_yaml(value: object) -> object:
    """Mappings and lists from environment variables arrive as text: read them as YAML."""
    if isinstance(value, str):
        try:
            return yaml.safe_load(value) if value.strip() else {}
        except yaml.YAMLError:
            raise _fail("a mapping like '{free: 60/minute, pro: 600/minute}'") from None
    return value


def _rate_or_off(value: object) -> str | None:
    if _off(value):
        return None
    from scalewise.errors import ConfigError  # noqa: PLC0415
    from scalewise.guard.algorithms import Rate  # noqa: PLC0415 - checked here, built later

    try:
        Rate.parse(str(value))
    except ConfigError as exc:
        raise _fail(exc.expected) from None
    return str(value)


def _backend(value: object) -> str:
    if value == "memory" or (
        isinstance(value, str) and value.startswith(("redis://", "rediss://", "unix://"))
    ):
        return str(value)
    raise _fail("'memory' or a Redis URL like 'redis://127.0.0.1:6379/0'")


OptDuration = Annotated[float | None, PlainValidator(_duration_or_off)]
OptSize = Annotated[int | None, PlainValidator(_size_or_off)]
OptRate = Annotated[str | None, PlainValidator(_rate_or_off)]
Paths = Annotated[
    tuple[str, ...],
    BeforeValidator(lambda v: [p.strip() for p in v.split(",")] if isinstance(v, str) else v),
]
Rates = Annotated[
    dict[str, Annotated[str, PlainValidator(_rate_or_off)]], BeforeValidator(_inline_yaml)
]


class GuardsSection(BaseModel):
    """``guards:`` — each field documented in docs/guards.md, with the seed it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Rate limiting per user (GCRA): "100/minute"; off by default.
    rate_limit: OptRate = None
    rate_limit_burst: Annotated[int | None, PlainValidator(_count_or_off(1))] = None
    rate_limit_tiers: Rates = {}
    rate_limit_routes: Rates = {}
    rate_limit_backend: Annotated[str, PlainValidator(_backend)] = "memory"
    rate_limit_fail_open: bool = True
    rate_limit_headers: bool = True
    rate_limit_exempt: Paths = ()
    api_key_header: str | None = "x-api-key"
    jwt_key: str | None = None
    jwt_algorithms: Paths = ("HS256",)
    jwt_claim: str = "sub"
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    tier_claim: str | None = "tier"
    invalid_token: Literal["fallback", "reject"] = "fallback"
    trusted_proxies: Paths = ()
    # Concurrency limit and load shedding (seed 000's MAX_CONCURRENT_REQUESTS); off by default.
    max_concurrent: Annotated[int | None, PlainValidator(_count_or_off(1))] = None
    max_queue: Annotated[int | None, PlainValidator(_count_or_off(0))] = None
    queue_timeout: Annotated[float, PlainValidator(_duration_zero_ok)] = 1.0
    adaptive: Literal["", "gradient2", "aimd"] = ""
    shed_exempt: Paths = ()
    # Timeouts and body limits (seed 000's REQUEST_TIMEOUT_SECONDS, MAX_UPLOAD_SIZE_MB).
    request_timeout: OptDuration = 30.0
    max_body: OptSize = 10_000_000
    # Response cache for GET routes, with single-flight (seed 001's MAX_CACHE_ENTRIES, _SIZE_MB).
    cache_routes: Annotated[dict[str, str | float], BeforeValidator(_inline_yaml)] = {}
    cache_ttl: Annotated[float, PlainValidator(_duration_zero_ok)] = 30.0
    cache_max_entries: Annotated[int, PlainValidator(_whole(1))] = 1000
    cache_max_bytes: Annotated[int, PlainValidator(_positive_size)] = 64_000_000
